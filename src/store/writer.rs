//! The event log's writer thread: it owns the log's write side.
//!
//! Publishes queue their encoded requests to it; it takes everything queued in
//! one transaction (a *group commit*: one `fsync` for many publishes under
//! load), then, in sequence order, gives each event its position
//! ([`crate::cluster::order`]), takes the message's landing ticket and routes the
//! events into the shards, and only then answers the publishers. Routing from the
//! one thread that numbers the messages keeps the shards' order the log's order,
//! and an event is never kept without being routed (a publisher that went away
//! does not leave it behind). Clients' rows and call records ride in the same
//! commits, and webhooks' cursors with every commit (or within a second).
//!
//! Between groups the writer prunes what retention no longer keeps, a bounded
//! number of messages per transaction, so delivery never waits behind a long
//! prune.

use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::clients::ClientWrite;
use super::delivered::DeliveredCursor;
use super::events::{LogState, StoredMessage, Writes};
use super::log::LogSettings;
use super::records::RecordWrite;
use super::{Store, StoreError};
use crate::account::AccountIdx;
use crate::cluster::order::{self, Landings};
use crate::cluster::wire;
use crate::event::{Event, SharedEvent};
use crate::metrics::Metrics;
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
/// What the writer is asked to do.
pub(super) enum Op {
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
pub(super) struct Append {
    pub(super) account: AccountIdx,
    pub(super) events: Vec<Event>,
    pub(super) message: StoredMessage,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Starts the writer on `store`'s log as it stands (`state`); returns where to
/// send it work. It stops once every sender is dropped.
pub(super) fn spawn(
    store: Arc<Store>,
    state: LogState,
    landed: Landings,
    publisher: Publisher,
    settings: LogSettings,
    metrics: Metrics,
) -> Result<mpsc::Sender<Op>, StoreError> {
    let (ops, queue) = mpsc::channel();
    let writer = Writer {
        store,
        state,
        cursors: Vec::new(),
        landed,
        publisher,
        settings,
        metrics,
    };
    std::thread::Builder::new()
        .name("event-log".into())
        .spawn(move || writer.run(queue))
        .map_err(|e| StoreError::Io(e.to_string()))?;
    Ok(ops)
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
        clients.extend(
            moved
                .iter()
                .map(|(_, sid, position)| ClientWrite::Delivered {
                    sid: sid.clone(),
                    position: *position,
                }),
        );
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
        for (at, _, position) in moved {
            self.cursors[at].1 = position;
        }
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
        for (append, seq) in appends.into_iter().zip(seqs) {
            let routed = self.route(append.account, append.events, seq);
            let _ = append.reply.send(routed);
        }
    }

    /// The webhooks' cursors that moved since last written, as (index, sid, new
    /// position); forgets those of webhooks that are gone.
    fn moved_cursors(&mut self) -> Vec<(usize, String, u64)> {
        self.cursors.retain(|(cursor, _)| cursor.strong_count() > 0);
        self.cursors
            .iter()
            .enumerate()
            .filter_map(|(at, (cursor, written))| {
                let cursor = cursor.upgrade()?;
                let safe = cursor.safe();
                (safe > *written).then(|| (at, cursor.sid().to_owned(), safe))
            })
            .collect()
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

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
