//! The event log of a durable single node (`data_dir`): every accepted request is
//! kept before it is answered `202`, then routed, in the order it was kept
//! (API.md §8 "Durability", docs/durability.md).
//!
//! One writer thread owns the log's write side. Publishes queue their encoded
//! requests to it; it takes everything queued in one transaction (a *group
//! commit*: one `fsync` for many publishes under load), then, in sequence order,
//! gives each event its position ([`crate::cluster::order`]), takes the message's
//! landing ticket and routes the events into the shards, and only then answers the
//! publishers. Routing from the one thread that numbers the messages keeps the
//! shards' order the log's order, and an event is never kept without being routed
//! (a publisher that went away does not leave it behind).
//!
//! Between groups the writer prunes what retention no longer keeps, a bounded
//! number of messages per transaction, so delivery never waits behind a long
//! prune. Reads of a client's history run on the blocking pool against a
//! snapshot, beside the writer (redb's readers do not block its writer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::clients::{ClientWrite, KeptClient};
use super::events::{Bounds, LogState, StoredMessage, Writes};
use super::records::RecordWrite;
use super::{Store, StoreError};
use crate::account::{AccountIdx, Accounts};
use crate::cluster::history::{Collect, History, Query};
use crate::cluster::order::{self, Landed, Landings, PER_MESSAGE};
use crate::cluster::wire;
use crate::event::{Event, SharedEvent};
use crate::metrics::Metrics;
use crate::outbox::GAP_UNKNOWN;
use crate::publisher::Publisher;

/// Most requests one group commit takes.
const MAX_GROUP: usize = 1024;

/// Most encoded bytes one group commit takes (it may pass this by one request).
const MAX_GROUP_BYTES: usize = 16 << 20;

/// How often the writer looks for what retention no longer keeps.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Most messages one pruning transaction drops.
const PRUNE_BUDGET: usize = 4096;

/// How often the writer looks for clients no signed URL can bring back.
const PRUNE_CLIENTS_EVERY: Duration = Duration::from_secs(60);

/// What the log needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    /// Retention on disk (`retention.max_age_secs`, `retention.store_max_events`).
    pub bounds: Bounds,
    /// Largest event a kept message may hold (`publish.max_event_bytes`).
    pub max_event_bytes: usize,
    /// How long a client's row without a webhook outlives its last change
    /// (`auth.max_url_lifetime_secs`), in milliseconds.
    pub clients_max_age_ms: u64,
}

/// The node's event log. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    ops: mpsc::Sender<Op>,
    store: Arc<Store>,
    accounts: Arc<Accounts>,
    settings: LogSettings,
    metrics: Metrics,
}

/// What the writer is asked to do.
enum Op {
    /// Keep a publish request, then route it.
    Append(Append),
    /// Keep a client's subscriptions, then answer.
    Client {
        write: ClientWrite,
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
    /// Keep a call router's record (nobody waits).
    Record(RecordWrite),
    /// Keep a webhook's delivered cursor from now on, with every commit, or
    /// within [`PRUNE_EVERY`] (a crash before then delivers a few events twice).
    Watch(Weak<DeliveredCursor>),
    /// Commit what waits now, then answer (the end of a drain).
    Flush {
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// One request on its way to the writer.
struct Append {
    account: AccountIdx,
    events: Vec<Event>,
    message: StoredMessage,
    reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

impl EventLog {
    /// Opens the log in `store` and starts its writer, which routes what it keeps
    /// through `publisher`. Every account's watermark starts after the last kept
    /// message, with the log's identity as the cursors' epoch, so cursors handed
    /// out before a restart name positions of this log.
    pub fn start(
        store: Arc<Store>,
        landed: Landings,
        accounts: Arc<Accounts>,
        publisher: Publisher,
        settings: LogSettings,
        metrics: Metrics,
    ) -> Result<EventLog, StoreError> {
        let state = store.log_state()?;
        for (index, _) in accounts.iter().enumerate() {
            let account = AccountIdx(u32::try_from(index).unwrap_or(u32::MAX));
            landed
                .of(account)
                .start_after(state.last_seq, state.identity);
        }
        metrics.store_events.set(saturating_i64(state.events));
        let (ops, queue) = mpsc::channel();
        let writer = Writer {
            store: store.clone(),
            state,
            cursors: Vec::new(),
            landed,
            publisher,
            settings,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                ops,
                store,
                accounts,
                settings,
                metrics,
            }),
        })
    }

    /// Keeps a request's events, then routes them; resolves once both are done
    /// (`202` means kept). Routing is not held to `publish.shard_queue`: a
    /// publish checks it first ([`Publisher::check_room`]), and the call router's
    /// own events are not held to it (see [`Publisher::route_call_event`]).
    pub async fn append(&self, account: AccountIdx, events: Vec<Event>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let message = StoredMessage {
            account_sid: inner.accounts.get(account).sid.to_string(),
            accepted_ms: now_ms(),
            events: u32::try_from(events.len()).unwrap_or(u32::MAX),
            batch: wire::encode(&events),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let append = Append {
            account,
            events,
            message,
            reply,
        };
        inner
            .ops
            .send(Op::Append(append))
            .map_err(|_| StoreError::Stopped)?;
        answer.await.unwrap_or(Err(StoreError::Stopped))
    }

    /// Keeps a client's whole list of subscriptions (an empty one forgets the
    /// client); resolves once it is on disk.
    pub async fn keep_client(
        &self,
        account: AccountIdx,
        client: &str,
        kept: KeptClient,
    ) -> Result<(), StoreError> {
        let write = ClientWrite::Client {
            account_sid: self.inner.accounts.get(account).sid.to_string(),
            client: client.to_owned(),
            kept,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .ops
            .send(Op::Client { write, reply })
            .map_err(|_| StoreError::Stopped)?;
        answer.await.unwrap_or(Err(StoreError::Stopped))
    }

    /// Commits the webhooks' cursors that wait for the next tick; resolves once
    /// they are on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .ops
            .send(Op::Flush { reply })
            .map_err(|_| StoreError::Stopped)?;
        answer.await.unwrap_or(Err(StoreError::Stopped))
    }

    /// Keeps a change to the call router's records with the next commit, which
    /// starts at once; nobody waits for it (a call's program never stalls on the
    /// disk), so a crash may lose the last few milliseconds of changes.
    pub fn keep_record(&self, write: RecordWrite) {
        let _ = self.inner.ops.send(Op::Record(write));
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The delivered cursor of webhook `sid`, for its worker to keep up to date:
    /// `from` is where a restored webhook's callback had acknowledged up to (it
    /// is owed what comes after; 0 for a new one).
    pub fn delivered_cursor(
        &self,
        sid: &str,
        landed: Arc<Landed>,
        from: u64,
    ) -> Arc<DeliveredCursor> {
        let cursor = Arc::new(DeliveredCursor {
            sid: sid.to_owned(),
            landed,
            head: AtomicU64::new(from.saturating_add(1)),
        });
        let _ = self.inner.ops.send(Op::Watch(Arc::downgrade(&cursor)));
        cursor
    }

    /// Reads a client's history from the log, on the blocking pool; `None` when
    /// the store cannot be read.
    pub async fn history(&self, query: Query) -> Option<History> {
        let inner = self.inner.clone();
        let read = actix_web::rt::task::spawn_blocking(move || inner.read_history(&query)).await;
        match read {
            Ok(Ok(history)) => {
                self.inner
                    .metrics
                    .store_history_events
                    .inc_by(history.events.len() as u64);
                Some(history)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read a client's history from the store");
                None
            }
            Err(_) => None,
        }
    }
}

impl Inner {
    fn read_history(&self, query: &Query) -> Result<History, StoreError> {
        let sid = &self.accounts.get(query.account).sid;
        let from = match query.after {
            0 => 0,
            after => order::message_of(after),
        };
        let mut kept = Collect::new(query);
        let mut unreadable = 0u64;
        let span = self.store.read_account(sid, from, |seq, message| {
            match wire::events_at(
                query.account,
                sid,
                &message.batch,
                self.settings.max_event_bytes,
                seq,
            ) {
                Ok(events) => kept.offer(events),
                Err(_) => unreadable += 1,
            }
        })?;
        if unreadable > 0 {
            tracing::warn!(
                messages = unreadable,
                "kept messages that do not check out were skipped"
            );
        }
        // Every sequence up to here has been pruned.
        let pruned_upto = match span.first {
            0 => span.last,
            first => first - 1,
        };
        let gap = if query.after != 0 && order::message_of(query.after) < pruned_upto {
            GAP_UNKNOWN
        } else {
            0
        };
        let end = order::position(span.last, (PER_MESSAGE - 1) as usize);
        Ok(kept.finish(end, gap))
    }
}

/// How far a webhook's callback has acknowledged the event log, so a restarted
/// node queues what it had not (docs/durability.md, "Sessions and webhooks").
///
/// The webhook keeps `head`, the lowest position it still holds (or owes); the
/// log's writer keeps, with each commit, every position below it and at or
/// below the landed watermark: an event below the watermark that the webhook
/// wanted has already been pushed into its queue (that is what landing means),
/// so it is either delivered or counted in `head`. The writer reads the
/// watermark before `head`, so an event landing in between is counted.
pub struct DeliveredCursor {
    sid: String,
    landed: Arc<Landed>,
    /// The lowest position queued or owed; `u64::MAX` when nothing is.
    head: AtomicU64,
}

impl std::fmt::Debug for DeliveredCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveredCursor")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

impl DeliveredCursor {
    /// The webhook's lowest queued (or owed) position is now `head`
    /// (`None`: nothing).
    pub fn set_head(&self, head: Option<u64>) {
        self.head.store(head.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// An event at `position` was queued.
    pub fn lower_head(&self, position: u64) {
        self.head.fetch_min(position, Ordering::AcqRel);
    }

    /// Every position up to here has been delivered, or was not wanted.
    fn safe(&self) -> u64 {
        let upto = self.landed.upto();
        let head = self.head.load(Ordering::Acquire);
        head.saturating_sub(1).min(upto)
    }
}

/// The writer thread's state.
struct Writer {
    store: Arc<Store>,
    state: LogState,
    /// Webhooks' delivered cursors, with the position last written.
    cursors: Vec<(Weak<DeliveredCursor>, u64)>,
    landed: Landings,
    publisher: Publisher,
    settings: LogSettings,
    metrics: Metrics,
}

impl Writer {
    /// Commits and routes queued requests until every [`EventLog`] is dropped,
    /// writing webhooks' cursors and pruning every [`PRUNE_EVERY`].
    fn run(mut self, queue: mpsc::Receiver<Op>) {
        let mut ticked = Instant::now();
        let mut clients_pruned = Instant::now();
        loop {
            match queue.recv_timeout(PRUNE_EVERY.saturating_sub(ticked.elapsed())) {
                Ok(first) => {
                    let group = gather(first, &queue);
                    self.commit(group, false);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.commit(Vec::new(), true);
                    return;
                }
            }
            if ticked.elapsed() >= PRUNE_EVERY {
                ticked = Instant::now();
                self.commit(Vec::new(), true);
                self.prune();
            }
            if clients_pruned.elapsed() >= PRUNE_CLIENTS_EVERY {
                clients_pruned = Instant::now();
                let pruned = self.store.prune_clients(
                    now_ms(),
                    self.settings.clients_max_age_ms,
                    PRUNE_BUDGET,
                );
                if let Err(error) = pruned {
                    tracing::warn!(%error, "cannot forget stale clients");
                }
            }
        }
    }

    /// Keeps a group in one transaction, with the webhooks' cursors waiting,
    /// then routes and answers each request in order. Cursors alone wait for
    /// the next commit or `tick`.
    fn commit(&mut self, group: Vec<Op>, tick: bool) {
        let (mut appends, mut clients, mut replies) = (Vec::new(), Vec::new(), Vec::new());
        let mut records = Vec::new();
        let mut tick = tick;
        for op in group {
            match op {
                Op::Append(append) => appends.push(append),
                Op::Client { write, reply } => {
                    clients.push(write);
                    replies.push(reply);
                }
                Op::Watch(cursor) => self.cursors.push((cursor, 0)),
                Op::Record(write) => records.push(write),
                Op::Flush { reply } => {
                    tick = true;
                    replies.push(reply);
                }
            }
        }
        let cursors_only = appends.is_empty() && clients.is_empty() && records.is_empty();
        let moved = if cursors_only && !tick {
            Vec::new()
        } else {
            self.moved_cursors()
        };
        if cursors_only && moved.is_empty() {
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
            return;
        }
        clients.extend(moved.iter().map(|&(at, position)| ClientWrite::Delivered {
            sid: self.cursor_sid(at),
            position,
        }));
        if !appends.is_empty() {
            self.metrics.store_group_size.observe(appends.len() as f64);
        }
        let messages: Vec<&StoredMessage> = appends.iter().map(|a| &a.message).collect();
        let writes = Writes {
            messages: &messages,
            clients: &clients,
            records: &records,
        };
        let seqs = match self.store.write(&mut self.state, writes) {
            Ok(seqs) => seqs,
            Err(error) => {
                tracing::error!(%error, requests = appends.len(), "cannot keep accepted events or clients");
                let failed = || Err(StoreError::Io(error.to_string()));
                for append in appends {
                    let _ = append.reply.send(failed());
                }
                for reply in replies {
                    let _ = reply.send(failed());
                }
                return;
            }
        };
        self.metrics
            .store_events
            .set(saturating_i64(self.state.events));
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
        for (append, seq) in appends.into_iter().zip(seqs) {
            let routed = self.route(append.account, append.events, seq);
            let _ = append.reply.send(routed);
        }
    }

    /// The webhooks' cursors that moved since last written, as (index, new
    /// position); forgets those of webhooks that are gone.
    fn moved_cursors(&mut self) -> Vec<(usize, u64)> {
        self.cursors.retain(|(cursor, _)| cursor.strong_count() > 0);
        self.cursors
            .iter()
            .enumerate()
            .filter_map(|(at, (cursor, written))| {
                let safe = cursor.upgrade()?.safe();
                (safe > *written).then_some((at, safe))
            })
            .collect()
    }

    fn cursor_sid(&self, at: usize) -> String {
        self.cursors[at]
            .0
            .upgrade()
            .map(|cursor| cursor.sid.clone())
            .unwrap_or_default()
    }

    /// Gives a kept message's events their positions and routes them with the
    /// message's ticket.
    fn route(&self, account: AccountIdx, events: Vec<Event>, seq: u64) -> Result<(), StoreError> {
        let one_call = wire::one_call(events.iter().map(|e| e.call_sid.as_deref()));
        let events: Vec<SharedEvent> = events
            .into_iter()
            .enumerate()
            .map(|(index, mut event)| {
                event.position = order::position(seq, index);
                event.one_call_message = one_call;
                Arc::new(event)
            })
            .collect();
        let ticket = Arc::new(self.landed.of(account).read(seq));
        // Not held to a queue's bound, so only stopped shards refuse.
        self.publisher
            .route_kept(account, events, ticket)
            .map_err(|_| StoreError::ShuttingDown)
    }

    fn prune(&mut self) {
        match self.store.prune(
            &mut self.state,
            self.settings.bounds,
            now_ms(),
            PRUNE_BUDGET,
        ) {
            Ok(0) => {}
            Ok(dropped) => {
                self.metrics.store_pruned.inc_by(dropped as u64);
                self.metrics
                    .store_events
                    .set(saturating_i64(self.state.events));
            }
            Err(error) => tracing::warn!(%error, "cannot prune the event log"),
        }
    }
}

/// `first` and whatever else is queued now, within the group's bounds.
fn gather(first: Op, queue: &mpsc::Receiver<Op>) -> Vec<Op> {
    let size = |op: &Op| match op {
        Op::Append(append) => append.message.batch.len(),
        _ => 0,
    };
    let mut bytes = size(&first);
    let mut group = vec![first];
    while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
        let Ok(next) = queue.try_recv() else { break };
        bytes += size(&next);
        group.push(next);
    }
    group
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_cursor_stays_below_what_is_queued_and_what_has_not_landed() {
        let landed = Landed::new();
        landed.start_after(4, 2);
        let cursor = DeliveredCursor {
            sid: "SU1".into(),
            landed: landed.clone(),
            head: AtomicU64::new(u64::MAX),
        };
        let last_of = |seq| order::position(seq, (PER_MESSAGE - 1) as usize);
        assert_eq!(cursor.safe(), last_of(4), "nothing queued: what has landed");
        let six = landed.read(6);
        cursor.lower_head(order::position(6, 2));
        assert_eq!(cursor.safe(), last_of(4), "6 has not landed yet");
        drop(six);
        assert_eq!(
            cursor.safe(),
            order::position(6, 2) - 1,
            "6 landed, but its event is still queued"
        );
        cursor.set_head(None);
        assert_eq!(cursor.safe(), last_of(6), "delivered");
    }
}
