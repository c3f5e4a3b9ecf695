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

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::events::{Bounds, LogState, StoredMessage};
use super::{Store, StoreError};
use crate::account::{AccountIdx, Accounts};
use crate::cluster::history::{Collect, History, Query};
use crate::cluster::order::{self, Landings, PER_MESSAGE};
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

/// What the log needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    /// Retention on disk (`retention.max_age_secs`, `retention.store_max_events`).
    pub bounds: Bounds,
    /// Largest event a kept message may hold (`publish.max_event_bytes`).
    pub max_event_bytes: usize,
}

/// The node's event log. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    appends: mpsc::Sender<Append>,
    store: Arc<Store>,
    accounts: Arc<Accounts>,
    settings: LogSettings,
    metrics: Metrics,
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
        let (appends, queue) = mpsc::channel();
        let writer = Writer {
            store: store.clone(),
            state,
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
                appends,
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
            .appends
            .send(append)
            .map_err(|_| StoreError::Stopped)?;
        answer.await.unwrap_or(Err(StoreError::Stopped))
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

/// The writer thread's state.
struct Writer {
    store: Arc<Store>,
    state: LogState,
    landed: Landings,
    publisher: Publisher,
    settings: LogSettings,
    metrics: Metrics,
}

impl Writer {
    /// Commits and routes queued requests until every [`EventLog`] is dropped,
    /// pruning between groups.
    fn run(mut self, queue: mpsc::Receiver<Append>) {
        let mut pruned_at = Instant::now();
        loop {
            match queue.recv_timeout(PRUNE_EVERY) {
                Ok(first) => {
                    let group = gather(first, &queue);
                    self.commit(group);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if pruned_at.elapsed() >= PRUNE_EVERY {
                pruned_at = Instant::now();
                self.prune();
            }
        }
    }

    /// Keeps a group in one transaction, then routes and answers each request in
    /// order.
    fn commit(&mut self, group: Vec<Append>) {
        self.metrics.store_group_size.observe(group.len() as f64);
        let messages = group.iter().map(|append| &append.message);
        let seqs = match self.store.append(&mut self.state, messages) {
            Ok(seqs) => seqs,
            Err(error) => {
                tracing::error!(%error, requests = group.len(), "cannot keep accepted events");
                for append in group {
                    let _ = append.reply.send(Err(StoreError::Io(error.to_string())));
                }
                return;
            }
        };
        self.metrics
            .store_events
            .set(saturating_i64(self.state.events));
        for (append, seq) in group.into_iter().zip(seqs) {
            let routed = self.route(append.account, append.events, seq);
            let _ = append.reply.send(routed);
        }
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
            .map_err(|_| StoreError::Stopped)
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
fn gather(first: Append, queue: &mpsc::Receiver<Append>) -> Vec<Append> {
    let mut bytes = first.message.batch.len();
    let mut group = vec![first];
    while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
        let Ok(next) = queue.try_recv() else { break };
        bytes += next.message.batch.len();
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
