//! The cluster's order of events, and how far this node has landed it.
//!
//! Every event read from the stream gets a **position**: its message's stream
//! sequence × [`PER_MESSAGE`] plus its index in the message (a request carries at
//! most 1,000 events). Positions order the whole cluster the same way on every node,
//! so a cursor made of one is understood by any node (docs/cluster.md, "Cursors").
//!
//! A node routes messages into its shards in stream order, but the shards work in
//! parallel: a client may be handed position 11 (one call) before position 10
//! (another call) has passed through its shard. A cursor that is "the last position
//! sent" would then skip 10 on a resume. So outboxes in cluster mode release an
//! event only once everything before it has **landed**: every message up to its own
//! has been routed by every shard it went to and pushed into every outbox that
//! wanted it. [`Landed`] keeps that watermark. The consumer takes a [`Ticket`] for
//! each message it reads and hands clones of it along with the message's events;
//! the shards drop theirs once every proxy has taken its part, and the last drop
//! marks the message landed. A ticket rides with the work, so hand-offs between
//! shards, retired proxies and dropped batches need no bookkeeping of their own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::history::{History, Query};
use crate::account::{AccountIdx, Accounts};
use crate::outbox::Outbox;

/// Positions per stream message: above the most events a request may carry.
pub const PER_MESSAGE: u64 = 1024;

/// The position of the `index`th event of the message stored at `stream_seq`.
pub fn position(stream_seq: u64, index: usize) -> u64 {
    stream_seq
        .saturating_mul(PER_MESSAGE)
        .saturating_add(index as u64 % PER_MESSAGE)
}

/// The stream sequence of the message holding `position`.
pub fn message_of(position: u64) -> u64 {
    position / PER_MESSAGE
}

/// The last position of the message stored at `stream_seq`.
fn last_of(stream_seq: u64) -> u64 {
    position(stream_seq, (PER_MESSAGE - 1) as usize)
}

/// Each account's landed watermark: an account's messages are read (or, on a
/// durable single node, kept) in sequence order, and its clients' cursors only
/// ever name its events.
#[derive(Clone)]
pub struct Landings(Arc<[Arc<Landed>]>);

impl Landings {
    /// The watermark of `account`.
    pub fn of(&self, account: AccountIdx) -> Arc<Landed> {
        self.0[account.0 as usize].clone()
    }
}

/// Where a client's history is read back from when its outbox here does not
/// reach back to its cursor.
#[derive(Clone)]
pub enum Source {
    /// Cluster mode: the JetStream stream.
    Stream(super::Backbone),
    /// A durable single node: its store (`data_dir`).
    Store(crate::store::log::EventLog),
}

/// What the node's proxies need when events carry positions (cluster mode, or a
/// single node with `data_dir`): the landed watermarks their outboxes release by,
/// and where a resuming client's history is read from (set once that has started:
/// the proxies start first).
#[derive(Clone)]
pub struct OrderLink {
    /// How far this node has landed each account's events.
    pub landed: Landings,
    source: Arc<OnceLock<Source>>,
}

impl OrderLink {
    /// A link for a node serving `accounts`.
    pub fn new(accounts: &Accounts) -> OrderLink {
        OrderLink {
            landed: Landings(accounts.iter().map(|_| Landed::new()).collect()),
            source: Arc::default(),
        }
    }

    /// Histories are read from `source` from now on (set once; later calls do
    /// nothing).
    pub fn read_history_from(&self, source: Source) {
        let _ = self.source.set(source);
    }

    /// The node's event log, on a durable single node.
    pub fn log(&self) -> Option<&crate::store::log::EventLog> {
        match self.source.get()? {
            Source::Store(log) => Some(log),
            Source::Stream(_) => None,
        }
    }

    /// Where histories are read from, as the `replays_total` label.
    pub fn history_label(&self) -> &'static str {
        match self.source.get() {
            Some(Source::Store(_)) => "store",
            _ => "stream",
        }
    }

    /// Reads a client's history; `None` when it cannot be read now (the client is
    /// then told of a gap of unknown size).
    pub async fn history(&self, query: Query) -> Option<History> {
        match self.source.get()? {
            Source::Stream(backbone) => backbone.history(query).await.ok(),
            Source::Store(log) => log.history(query).await,
        }
    }
}

/// How far this node has landed the stream (see the module docs). Shared by the
/// consumer, the shards (through tickets) and every outbox.
#[derive(Debug, Default)]
pub struct Landed {
    /// Every event at or below this position that this node will route is in its
    /// outboxes; 0 until the consumer has found where the stream stands.
    upto: AtomicU64,
    /// The stream's identity in cursors (even: an outbox's own epochs are odd).
    epoch: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Messages read and not landed yet, oldest first: `(stream_seq, landed)`.
    open: VecDeque<(u64, bool)>,
    /// The last message read (or skipped past when the consumer started).
    last: u64,
    /// Outboxes holding events above the watermark, to wake when it moves.
    waiters: Vec<Weak<Outbox>>,
}

/// One message on its way through the node's shards: the message has landed once
/// every clone is dropped.
#[derive(Debug)]
pub struct Ticket {
    stream_seq: u64,
    landed: Arc<Landed>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.landed.finish(self.stream_seq);
    }
}

impl Landed {
    /// A watermark at nothing, before the consumer has read anything.
    pub fn new() -> Arc<Landed> {
        Arc::new(Landed::default())
    }

    /// The highest landed position (0: nothing known yet).
    pub fn upto(&self) -> u64 {
        self.upto.load(Ordering::Acquire)
    }

    /// The stream's identity, part of every cluster cursor (0 until known).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The consumer starts reading after `last_stored` of the stream identified by
    /// `identity` (its name and creation time): messages up to there will never be
    /// routed here, so they count as landed (an empty stream: everything before
    /// its first message).
    pub fn start_after(&self, last_stored: u64, identity: u64) {
        self.epoch.store(identity & !1, Ordering::Relaxed);
        let mut state = self.state.lock();
        if state.open.is_empty() && state.last <= last_stored {
            state.last = last_stored;
            self.advance(state);
        }
    }

    /// The consumer read the message stored at `stream_seq` (in stream order).
    pub fn read(self: &Arc<Self>, stream_seq: u64) -> Ticket {
        let mut state = self.state.lock();
        state.open.push_back((stream_seq, false));
        state.last = state.last.max(stream_seq);
        Ticket {
            stream_seq,
            landed: self.clone(),
        }
    }

    /// Wakes `outbox` once the watermark next moves.
    pub fn wake_on_landing(&self, outbox: Weak<Outbox>) {
        self.state.lock().waiters.push(outbox);
    }

    fn finish(&self, stream_seq: u64) {
        let mut state = self.state.lock();
        // Tickets are taken in stream order, so `open` is sorted.
        if let Ok(at) = state
            .open
            .binary_search_by_key(&stream_seq, |(seq, _)| *seq)
        {
            state.open[at].1 = true;
        }
        let before = state.open.len();
        while state.open.front().is_some_and(|(_, landed)| *landed) {
            state.open.pop_front();
        }
        if state.open.len() != before {
            self.advance(state);
        }
    }

    /// Publishes the new watermark and wakes the outboxes waiting for it.
    fn advance(&self, mut state: parking_lot::MutexGuard<'_, State>) {
        let landed = match state.open.front() {
            Some((oldest, _)) => oldest.saturating_sub(1),
            None => state.last,
        };
        self.upto.fetch_max(last_of(landed), Ordering::AcqRel);
        let waiters = std::mem::take(&mut state.waiters);
        drop(state);
        for outbox in waiters.iter().filter_map(Weak::upgrade) {
            outbox.landed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_messages_then_events_within_them() {
        assert!(position(7, 999) < position(8, 0));
        assert_eq!(message_of(position(7, 999)), 7);
        assert_eq!(last_of(7) + 1, position(8, 0));
        assert_eq!(position(u64::MAX, 3), u64::MAX, "saturates, never wraps");
    }

    #[test]
    fn a_message_lands_when_its_last_ticket_drops_and_only_after_the_ones_before() {
        let landed = Landed::new();
        landed.start_after(4, 0xabcd);
        assert_eq!(landed.upto(), last_of(4));
        assert_eq!(landed.epoch(), 0xabcc, "even: never an outbox's own epoch");
        let five = Arc::new(landed.read(5));
        let five_elsewhere = five.clone(); // its events went to two shards
        let six = landed.read(6);
        drop(six);
        assert_eq!(landed.upto(), last_of(4), "6 landed, 5 not yet");
        drop(five);
        assert_eq!(landed.upto(), last_of(4), "5 still in one shard");
        drop(five_elsewhere);
        assert_eq!(landed.upto(), last_of(6), "5 and 6 both landed");
    }

    #[test]
    fn a_consumer_starting_on_an_empty_stream_knows_where_it_stands() {
        let landed = Landed::new();
        assert_eq!(landed.upto(), 0, "not started: no position to hand out");
        landed.start_after(0, 7);
        assert_eq!(landed.upto(), last_of(0), "everything before message 1");
        let first = landed.read(1);
        assert_eq!(landed.upto(), last_of(0));
        drop(first);
        assert_eq!(landed.upto(), last_of(1));
    }

    #[test]
    fn messages_the_consumer_skips_do_not_hold_the_watermark() {
        let landed = Landed::new();
        assert_eq!(landed.upto(), 0, "nothing known before the consumer starts");
        drop(landed.read(3));
        // 4 was never read (deleted, or another stream's): 5 lands past it.
        drop(landed.read(5));
        assert_eq!(landed.upto(), last_of(5));
        // A restart after what was read changes nothing.
        landed.start_after(2, 1);
        assert_eq!(landed.upto(), last_of(5));
    }
}
