//! A client's outbox: the bounded, retained sequence of events matched for it.
//!
//! The proxy that owns the client's subscriptions pushes into it (no actor message per
//! event) and wakes the one writer of the client's open connection (its SSE body,
//! WebSocket or long-poll); the writer drains everything new into one chunk. Delivered events stay until the retention
//! limits (count and age) push them out, so a reconnect with a cursor can resume
//! exactly after the last event it saw. An event evicted before it was written is
//! counted and reported to the next writer as a gap: never lost silently.
//!
//! In cluster mode an outbox numbers its events by their cluster-wide positions
//! instead ([`Outbox::in_cluster_order`]): events wait in `held` until everything
//! before them has landed on this node ([`crate::cluster::order`]), and are then
//! released in position order, so a cursor is a position any node can resume from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::sync::Notify;

use crate::cluster::order::{self, Landed};
use crate::event::SharedEvent;
use crate::wire;

/// The gap size reported when a cursor from an older session makes the number of
/// missed events unknowable (`stream.gap` then says `"dropped": null`).
pub const GAP_UNKNOWN: u64 = u64::MAX;

/// Subscription sids an event matched, shared with the subscription itself.
pub type MatchedSubs = SmallVec<[Arc<str>; 2]>;

/// One retained event with the client's sequence number.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in this outbox's sequence (from 1), or in cluster mode the event's
    /// cluster-wide position; the cursor's `seq`.
    pub seq: u64,
    /// The shared event.
    pub event: SharedEvent,
    /// Which of the client's subscriptions it matched.
    pub subs: MatchedSubs,
    /// When it entered the outbox, for the age limit.
    pub at: Instant,
}

/// Retention limits, from `[retention]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most events kept.
    pub max_events: usize,
    /// Oldest event kept.
    pub max_age: Duration,
}

/// What a writer gets from [`Outbox::drain`].
#[derive(Debug)]
pub enum Drain {
    /// Another connection took over this client's channel: stop writing.
    Superseded,
    /// New events (possibly none) and how many were dropped unseen before them.
    Events {
        /// Events evicted before they were written (to report as `stream.gap`).
        gap: u64,
        /// The new events, in order.
        entries: Vec<Entry>,
    },
}

/// Where a new connection starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// After whatever the previous connection was sent: cached events first.
    Pending,
    /// After the given sequence number of this outbox's epoch.
    After(u64),
    /// A cursor of another epoch (a session that no longer exists): what happened in
    /// between is unknown.
    Unknown,
}

#[derive(Debug)]
struct State {
    epoch: u64,
    ring: VecDeque<Entry>,
    next_seq: u64,
    sent_upto: u64,
    gap: u64,
    conn: u64,
    /// Cluster mode: events above the landed watermark, by position.
    held: BTreeMap<u64, Entry>,
    /// Cluster mode: positions at or below this are released or were replayed, so
    /// a live delivery of one is a duplicate.
    covered: u64,
}

/// The bounded outbox shared by a proxy (producer) and a writer (consumer).
#[derive(Debug)]
pub struct Outbox {
    limits: Limits,
    state: Mutex<State>,
    notify: Notify,
    next_conn: AtomicU64,
    /// Cluster mode: the node's landed watermark, which releases held events.
    landed: Option<Arc<Landed>>,
    /// Cluster mode: already listed to be woken when the watermark moves.
    waiting: AtomicBool,
}

impl Outbox {
    /// A new, empty outbox with a random epoch.
    pub fn new(limits: Limits) -> Arc<Outbox> {
        Outbox::make(limits, None, 0)
    }

    /// A new, empty outbox in the cluster's order: its entries are numbered by
    /// position and released once `landed` has passed them. A first connection
    /// starts after what has landed now.
    pub fn in_cluster_order(limits: Limits, landed: Arc<Landed>) -> Arc<Outbox> {
        let upto = landed.upto();
        Outbox::make(limits, Some(landed), upto)
    }

    fn make(limits: Limits, landed: Option<Arc<Landed>>, start: u64) -> Arc<Outbox> {
        Arc::new(Outbox {
            limits,
            state: Mutex::new(State {
                epoch: new_epoch(),
                ring: VecDeque::new(),
                next_seq: 1,
                sent_upto: start,
                gap: 0,
                conn: 0,
                held: BTreeMap::new(),
                covered: start,
            }),
            notify: Notify::new(),
            next_conn: AtomicU64::new(1),
            landed,
            waiting: AtomicBool::new(false),
        })
    }

    /// This outbox's epoch, part of every cursor it hands out: in cluster mode the
    /// stream's, so that every node reads the cursor alike.
    pub fn epoch(&self) -> u64 {
        match &self.landed {
            Some(landed) => landed.epoch(),
            None => self.state.lock().epoch,
        }
    }

    /// Whether entries are numbered by cluster position.
    pub fn in_positions(&self) -> bool {
        self.landed.is_some()
    }

    /// Replaces the retained sequence with what `merge` makes of it (a
    /// `cursor=earliest` replay merged with what was cached), renumbered from 1
    /// under a new epoch so that no cursor of the old numbering can point into the
    /// new one, if connection `conn` (the one that asked for the replay) is still the
    /// current one. `merge` gets the retained entries themselves, taken out rather
    /// than copied, and returns the new content and whatever else it found. That
    /// connection stays attached and will be sent everything. Returns the change in
    /// retained events with `merge`'s other answer, or `None` (and `merge` is not
    /// called) when another connection took over meanwhile: it asked for something
    /// else, and renumbering under it would send it again what it was already sent.
    pub fn rebuild_with<R>(
        &self,
        conn: u64,
        now: Instant,
        merge: impl FnOnce(Vec<Entry>) -> (Vec<(SharedEvent, MatchedSubs)>, R),
    ) -> Option<(i64, R)> {
        let mut state = self.state.lock();
        if state.conn != conn {
            return None;
        }
        let before = state.ring.len() as i64;
        let (events, answer) = merge(std::mem::take(&mut state.ring).into());
        state.epoch = new_epoch();
        state.ring = events
            .into_iter()
            .zip(1..)
            .map(|((event, subs), seq)| Entry {
                seq,
                event,
                subs,
                at: now,
            })
            .collect();
        state.next_seq = state.ring.len() as u64 + 1;
        state.sent_upto = 0;
        state.gap = 0;
        self.evict(&mut state, now);
        Some((state.ring.len() as i64 - before, answer))
    }

    /// Appends an event. Returns how many retained events were evicted to make room
    /// or by age, and how many of those had not been written yet (a gap). Does not
    /// wake the writer: the proxy calls [`Outbox::wake`] once per batch (in
    /// cluster mode for what was released at once; the watermark wakes it for
    /// what was held).
    ///
    /// In cluster mode the event waits in `held` until it has landed (the watermark
    /// wakes the writer then), and an event at a position already released or
    /// replayed is a duplicate and dropped (counted in `total`, as if evicted).
    pub fn push(self: &Arc<Self>, event: SharedEvent, subs: MatchedSubs, now: Instant) -> Evicted {
        if self.landed.is_some() {
            return self.hold(event, subs, now);
        }
        let mut state = self.state.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.ring.push_back(Entry {
            seq,
            event,
            subs,
            at: now,
        });
        self.evict(&mut state, now)
    }

    fn hold(self: &Arc<Self>, event: SharedEvent, subs: MatchedSubs, now: Instant) -> Evicted {
        let position = event.position;
        let mut state = self.state.lock();
        if position <= state.covered || state.held.contains_key(&position) {
            return Evicted {
                total: 1,
                unsent: 0,
            };
        }
        let entry = Entry {
            seq: position,
            event,
            subs,
            at: now,
        };
        let upto = self.landed.as_ref().map_or(0, |landed| landed.upto());
        if state.held.is_empty() && releasable(&entry, upto) {
            state.covered = position;
            state.ring.push_back(entry);
            return self.evict(&mut state, now);
        }
        state.held.insert(position, entry);
        drop(state);
        self.wait_for_landing();
        Evicted::default()
    }

    /// Wakes the writer of the open connection, if any (a stored permit otherwise).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Cluster mode: the watermark moved. Releases what has landed and wakes the
    /// writer if anything was.
    pub fn landed(self: &Arc<Self>) {
        self.waiting.store(false, Ordering::Release);
        let mut state = self.state.lock();
        let released = self.release(&mut state);
        let more = !state.held.is_empty();
        if released {
            self.evict(&mut state, Instant::now());
        }
        drop(state);
        if released {
            self.notify.notify_one();
        }
        if more {
            self.wait_for_landing();
        }
    }

    /// Moves the held events that have landed into the ring, in position order.
    fn release(&self, state: &mut State) -> bool {
        let Some(landed) = &self.landed else {
            return false;
        };
        let upto = landed.upto();
        let mut released = false;
        while let Some(entry) = state.held.first_entry() {
            if !releasable(entry.get(), upto) {
                break;
            }
            let entry = entry.remove();
            state.covered = state.covered.max(entry.seq);
            state.ring.push_back(entry);
            released = true;
        }
        released
    }

    /// Asks the watermark to wake this outbox when it moves, once.
    fn wait_for_landing(self: &Arc<Self>) {
        let Some(landed) = &self.landed else { return };
        if !self.waiting.swap(true, Ordering::AcqRel) {
            landed.wake_on_landing(Arc::downgrade(self));
        }
        // It may have moved between the last release and the listing.
        let ready = self
            .state
            .lock()
            .held
            .first_key_value()
            .is_some_and(|(_, entry)| releasable(entry, landed.upto()));
        if ready {
            self.landed();
        }
    }

    /// Waits until the outbox is woken.
    pub async fn woken(&self) {
        self.notify.notified().await
    }

    fn evict(&self, state: &mut State, now: Instant) -> Evicted {
        let mut evicted = Evicted::default();
        while let Some(front) = state.ring.front() {
            let too_many = state.ring.len() > self.limits.max_events;
            let too_old = now.saturating_duration_since(front.at) > self.limits.max_age;
            if !(too_many || too_old) {
                break;
            }
            if front.seq > state.sent_upto {
                evicted.unsent += 1;
                state.gap = state.gap.saturating_add(1);
                state.sent_upto = front.seq;
            }
            evicted.total += 1;
            state.ring.pop_front();
        }
        evicted
    }

    /// Starts a new connection, superseding any other, and positions it.
    /// Returns the connection id and the last sequence number before its first event.
    /// In cluster mode `After` takes a position this outbox [covers](Outbox::covers).
    pub fn attach(&self, resume: Resume) -> (u64, u64) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock();
        state.conn = conn;
        let first_retained = state.ring.front().map_or(state.next_seq, |e| e.seq);
        match resume {
            Resume::Pending => {}
            Resume::After(position) if self.landed.is_some() => {
                state.gap = 0;
                state.sent_upto = position;
            }
            Resume::After(seq) => {
                let seq = seq.min(state.next_seq - 1);
                if seq + 1 < first_retained {
                    // Events between the cursor and the oldest retained one are gone.
                    state.gap = first_retained - seq - 1;
                    state.sent_upto = first_retained - 1;
                } else {
                    state.gap = 0;
                    state.sent_upto = seq;
                }
            }
            Resume::Unknown => {
                state.gap = GAP_UNKNOWN;
            }
        }
        let position = state.sent_upto;
        drop(state);
        // Wake the superseded writer so it notices, and this one to drain at once.
        self.notify.notify_waiters();
        self.notify.notify_one();
        (conn, position)
    }

    /// Cluster mode: whether this outbox has everything its client wants after
    /// `position`, so a connection resuming there needs nothing from the stream:
    /// it handed out that very cursor (an event it retains, or where its last
    /// connection stood), and has been filled since.
    pub fn covers(&self, position: u64) -> bool {
        let state = self.state.lock();
        position == state.sent_upto
            || state
                .ring
                .binary_search_by_key(&position, |entry| entry.seq)
                .is_ok()
    }

    /// Cluster mode: merges what the stream holds for the client after `after` (0:
    /// from its start), read up to position `end`, with what this outbox holds, if
    /// connection `conn` (the one that asked) is still the current one. The
    /// connection is then positioned at `after`, with `gap` events (or
    /// [`GAP_UNKNOWN`]) reported missing before the history. Each position is kept
    /// once, and a later live delivery of a position up to `end` is a duplicate.
    /// Returns the change in events held and retained, or `None` when another
    /// connection took over meanwhile.
    pub fn merge_history(
        self: &Arc<Self>,
        conn: u64,
        after: u64,
        history: Vec<(SharedEvent, MatchedSubs)>,
        end: u64,
        gap: u64,
        now: Instant,
    ) -> Option<i64> {
        let mut state = self.state.lock();
        if state.conn != conn {
            return None;
        }
        let before = (state.ring.len() + state.held.len()) as i64;
        // What the ring holds after the cursor is released again, in order with
        // the history.
        let keep = state.ring.partition_point(|entry| entry.seq <= after);
        let later = state.ring.split_off(keep);
        for entry in later {
            state.held.insert(entry.seq, entry);
        }
        for (event, subs) in history {
            let position = event.position;
            if position > after {
                state.held.entry(position).or_insert(Entry {
                    seq: position,
                    event,
                    subs,
                    at: now,
                });
            }
        }
        let released_upto = state.ring.back().map_or(after, |entry| entry.seq);
        state.covered = end.max(released_upto);
        state.sent_upto = after;
        state.gap = gap;
        self.release(&mut state);
        self.evict(&mut state, now);
        let grew = (state.ring.len() + state.held.len()) as i64 - before;
        let waiting = !state.held.is_empty();
        drop(state);
        if waiting {
            self.wait_for_landing();
        }
        Some(grew)
    }

    /// Takes what the connection has not been sent yet, oldest first, up to
    /// `max_bytes` as measured by [`wire::framed_len`] but always at least one event,
    /// so a slow reader is bounded in bytes rather than in events and an event larger
    /// than the cap still goes. What does not fit stays (retained, in order) and the
    /// outbox wakes itself, so the writer's next chunk or the next poll picks it up
    /// after the cursor of the last event taken: no gap, no duplicate.
    pub fn drain(&self, conn: u64, now: Instant, max_bytes: usize) -> Drain {
        let mut state = self.state.lock();
        if state.conn != conn {
            return Drain::Superseded;
        }
        self.release(&mut state);
        self.evict(&mut state, now);
        let start = if self.landed.is_some() {
            // Positions are sparse, and the unsent entries are the newest few:
            // counted from the back (a binary search was a tenth of a cluster
            // fan-out's CPU, in cache misses).
            let sent_upto = state.sent_upto;
            let unsent = state
                .ring
                .iter()
                .rev()
                .take_while(|entry| entry.seq > sent_upto)
                .count();
            state.ring.len() - unsent
        } else {
            first_unsent(&state)
        };
        let mut budget = max_bytes;
        let taken = state
            .ring
            .range(start..)
            .enumerate()
            .take_while(|(i, entry)| {
                let cost = wire::framed_len(entry);
                let fits = *i == 0 || cost <= budget;
                budget = budget.saturating_sub(cost);
                fits
            })
            .count();
        let entries: Vec<Entry> = state.ring.range(start..start + taken).cloned().collect();
        if start + taken < state.ring.len() {
            self.notify.notify_one();
        }
        if let Some(last) = entries.last() {
            state.sent_upto = last.seq;
        }
        Drain::Events {
            gap: std::mem::take(&mut state.gap),
            entries,
        }
    }

    /// Marks a connection gone (if it is still the current one). Returns true if it was.
    pub fn detach(&self, conn: u64) -> bool {
        let mut state = self.state.lock();
        if state.conn == conn {
            state.conn = 0;
            true
        } else {
            false
        }
    }

    /// The sequence number after which the current connection's next event comes:
    /// the cursor to hand out before any event (`stream.open`, an empty long-poll).
    pub fn position(&self) -> u64 {
        self.state.lock().sent_upto
    }

    /// Whether a connection is attached.
    pub fn is_attached(&self) -> bool {
        self.state.lock().conn != 0
    }

    /// Events currently retained (the `cached events` gauge counts these).
    pub fn len(&self) -> usize {
        self.state.lock().ring.len()
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Cluster mode: whether a held entry may go now that everything up to `upto` has
/// landed. Its own message must have landed too, unless the message was of one
/// call: one shard routed all of it, in the batch that brought this entry, so
/// once the messages before it have landed nothing can come before it.
fn releasable(entry: &Entry, upto: u64) -> bool {
    let position = entry.seq;
    position <= upto
        || (entry.event.one_call_message
            && upto.saturating_add(1) >= order::position(order::message_of(position), 0))
}

/// The ring index of the first entry after `sent_upto`. Sequence numbers in the ring
/// are consecutive (push adds `next_seq`, eviction pops the front, a rebuild numbers
/// from 1), so this is arithmetic: a binary search touched ~14 cold entries per drain
/// and, with a thousand clients' outboxes, took 15% of a fan-out's CPU in cache misses.
fn first_unsent(state: &State) -> usize {
    let front = state.ring.front().map_or(state.next_seq, |e| e.seq);
    let start = (state.sent_upto + 1).saturating_sub(front);
    usize::try_from(start).map_or(state.ring.len(), |start| start.min(state.ring.len()))
}

fn new_epoch() -> u64 {
    rand::random::<u64>() | 1
}

/// What a push evicted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// Retained events removed.
    pub total: u64,
    /// Of those, events never written to any connection.
    pub unsent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountIdx;
    use crate::event::{Draft, Event};

    fn event(n: u64) -> SharedEvent {
        let mut data = serde_json::Map::new();
        data.insert("n".into(), n.into());
        Arc::new(Event::build(
            AccountIdx(0),
            "AC",
            Draft {
                type_name: "t".into(),
                call_sid: None,
                scope: None,
                data: data.into(),
            },
            "now",
        ))
    }

    fn seqs(drain: Drain) -> (u64, Vec<u64>) {
        match drain {
            Drain::Events { gap, entries } => (gap, entries.iter().map(|e| e.seq).collect()),
            Drain::Superseded => panic!("superseded"),
        }
    }

    fn outbox(max_events: usize) -> Arc<Outbox> {
        Outbox::new(Limits {
            max_events,
            max_age: Duration::from_secs(60),
        })
    }

    #[test]
    fn the_first_unsent_index_is_the_binary_search_answer_in_every_state() {
        // Pushes past the bound (evictions), drains of every size, resumes before,
        // inside and after the retained range, and a rebuild.
        let o = outbox(7);
        let now = Instant::now();
        let (mut conn, _) = o.attach(Resume::Pending);
        for round in 0u64..60 {
            for n in 0..round % 5 {
                o.push(event(n), MatchedSubs::new(), now);
            }
            {
                let state = o.state.lock();
                let expected = state.ring.partition_point(|e| e.seq <= state.sent_upto);
                assert_eq!(first_unsent(&state), expected, "round {round}");
            }
            match round % 4 {
                0 => drop(o.drain(conn, now, 1)),
                1 => conn = o.attach(Resume::After(round.saturating_sub(9))).0,
                2 => conn = o.attach(Resume::After(round * 3)).0,
                _ if round == 31 => {
                    o.rebuild_with(conn, now, |_| (vec![(event(0), MatchedSubs::new()); 3], ()));
                }
                _ => drop(o.drain(conn, now, usize::MAX)),
            }
        }
    }

    #[test]
    fn drains_only_new_events() {
        let o = outbox(10);
        let now = Instant::now();
        let (conn, _) = o.attach(Resume::Pending);
        o.push(event(1), MatchedSubs::new(), now);
        o.push(event(2), MatchedSubs::new(), now);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![1, 2]));
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![]));
        o.push(event(3), MatchedSubs::new(), now);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![3]));
    }

    #[test]
    fn overflow_while_away_is_a_gap() {
        let o = outbox(3);
        let now = Instant::now();
        for n in 1..=5 {
            o.push(event(n), MatchedSubs::new(), now);
        }
        let (conn, _) = o.attach(Resume::Pending);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (2, vec![3, 4, 5]));
    }

    #[test]
    fn resume_after_cursor() {
        let o = outbox(3);
        let now = Instant::now();
        let (conn, _) = o.attach(Resume::Pending);
        for n in 1..=3 {
            o.push(event(n), MatchedSubs::new(), now);
        }
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)).1, vec![1, 2, 3]);
        let (conn, pos) = o.attach(Resume::After(1));
        assert_eq!(pos, 1);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![2, 3]));
        o.push(event(4), MatchedSubs::new(), now);
        o.push(event(5), MatchedSubs::new(), now);
        // Ring holds 3,4,5: a cursor at 1 missed event 2.
        let (conn, _) = o.attach(Resume::After(1));
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (1, vec![3, 4, 5]));
    }

    #[test]
    fn age_limit_evicts() {
        let o = Outbox::new(Limits {
            max_events: 100,
            max_age: Duration::from_millis(10),
        });
        let then = Instant::now();
        o.push(event(1), MatchedSubs::new(), then);
        let later = then + Duration::from_millis(50);
        o.push(event(2), MatchedSubs::new(), later);
        let (conn, _) = o.attach(Resume::Pending);
        assert_eq!(seqs(o.drain(conn, later, usize::MAX)), (1, vec![2]));
    }

    #[test]
    fn rebuild_renumbers_under_a_new_epoch() {
        let o = outbox(10);
        let now = Instant::now();
        let (conn, _) = o.attach(Resume::Pending);
        o.push(event(9), MatchedSubs::new(), now);
        let old_epoch = o.epoch();
        let grew = o.rebuild_with(conn, now, |cached| {
            assert_eq!(cached.len(), 1, "the cache is handed over");
            let merged = vec![
                (event(1), MatchedSubs::new()),
                (event(2), MatchedSubs::new()),
                (cached[0].event.clone(), cached[0].subs.clone()),
            ];
            (merged, "answer")
        });
        assert_eq!(grew, Some((2, "answer")));
        assert_ne!(o.epoch(), old_epoch);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![1, 2, 3]));
        o.push(event(10), MatchedSubs::new(), now);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![4]));
    }

    #[test]
    fn a_replay_for_a_superseded_connection_changes_nothing() {
        let o = outbox(10);
        let now = Instant::now();
        let (asked, _) = o.attach(Resume::Pending);
        o.push(event(1), MatchedSubs::new(), now);
        // Another connection takes over while the replay is on its way.
        let (current, _) = o.attach(Resume::Pending);
        let epoch = o.epoch();
        let replay = vec![
            (event(0), MatchedSubs::new()),
            (event(1), MatchedSubs::new()),
        ];
        assert_eq!(o.rebuild_with(asked, now, |_| (replay, ())), None);
        assert_eq!(
            o.epoch(),
            epoch,
            "the numbering the current connection reads"
        );
        assert_eq!(seqs(o.drain(current, now, usize::MAX)), (0, vec![1]));
    }

    #[test]
    fn drains_are_capped_in_bytes_and_continue_where_they_stopped() {
        use futures_util::FutureExt;
        let o = outbox(100);
        let now = Instant::now();
        let (conn, _) = o.attach(Resume::Pending);
        assert!(
            o.woken().now_or_never().is_some(),
            "attach wakes the writer"
        );
        for n in 1..=5 {
            o.push(event(n), MatchedSubs::new(), now);
        }
        let one = wire::framed_len(&o.state.lock().ring[0]);
        // Room for two events: two come, the rest wait and the writer is re-woken.
        assert_eq!(seqs(o.drain(conn, now, 2 * one + 1)), (0, vec![1, 2]));
        assert!(o.woken().now_or_never().is_some(), "re-woken for the rest");
        // A cap smaller than one event still lets one through.
        assert_eq!(seqs(o.drain(conn, now, 1)), (0, vec![3]));
        assert!(o.woken().now_or_never().is_some());
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![4, 5]));
        assert!(o.woken().now_or_never().is_none(), "nothing left, no wake");
        assert_eq!(seqs(o.drain(conn, now, 1)), (0, vec![]));
    }

    /// An event at cluster position `position`.
    fn at(position: u64) -> SharedEvent {
        let mut event = Arc::try_unwrap(event(position)).expect("fresh");
        event.position = position;
        Arc::new(event)
    }

    fn in_order(landed: &Arc<Landed>) -> Arc<Outbox> {
        Outbox::in_cluster_order(
            Limits {
                max_events: 100,
                max_age: Duration::from_secs(60),
            },
            landed.clone(),
        )
    }

    use crate::cluster::order::position;

    #[test]
    fn in_cluster_order_events_wait_until_everything_before_them_has_landed() {
        use futures_util::FutureExt;
        let landed = Landed::new();
        landed.start_after(9, 0);
        let o = in_order(&landed);
        let now = Instant::now();
        let (conn, start) = o.attach(Resume::Pending);
        assert_eq!(
            start,
            position(9, 1023),
            "a first connection starts after what landed"
        );
        let _ = o.woken().now_or_never();
        // Messages 10 and 11 are read; 11's event reaches the outbox first (another
        // shard was quicker).
        let ten = landed.read(10);
        let eleven = landed.read(11);
        o.push(at(position(11, 0)), MatchedSubs::new(), now);
        assert_eq!(
            seqs(o.drain(conn, now, usize::MAX)),
            (0, vec![]),
            "11 waits for 10"
        );
        drop(eleven);
        assert!(
            o.woken().now_or_never().is_none(),
            "10 has not landed: nothing to wake for"
        );
        o.push(at(position(10, 2)), MatchedSubs::new(), now);
        drop(ten);
        assert!(
            o.woken().now_or_never().is_some(),
            "landing wakes the writer"
        );
        assert_eq!(
            seqs(o.drain(conn, now, usize::MAX)),
            (0, vec![position(10, 2), position(11, 0)]),
            "released in position order, numbered by position"
        );
        // A late copy of a released position is a duplicate.
        let evicted = o.push(at(position(10, 2)), MatchedSubs::new(), now);
        assert_eq!(evicted.total, 1);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![]));
        assert!(o.covers(position(10, 2)) && o.covers(position(11, 0)));
        assert!(!o.covers(position(10, 3)), "never handed out");
    }

    #[test]
    fn an_event_of_a_one_call_message_goes_at_once_when_everything_before_has_landed() {
        let landed = Landed::new();
        landed.start_after(9, 0);
        let o = in_order(&landed);
        let now = Instant::now();
        let (conn, _) = o.attach(Resume::Pending);
        let alone = |p: u64| {
            let mut event = Arc::try_unwrap(at(p)).expect("fresh");
            event.one_call_message = true;
            Arc::new(event)
        };
        // 9 has landed, and message 10's events are all of one call: released as
        // pushed, before 10's ticket drops.
        let ten = landed.read(10);
        o.push(alone(position(10, 0)), MatchedSubs::new(), now);
        o.push(alone(position(10, 1)), MatchedSubs::new(), now);
        assert_eq!(
            seqs(o.drain(conn, now, usize::MAX)),
            (0, vec![position(10, 0), position(10, 1)])
        );
        // 11 comes while 10 is still on its way elsewhere: it waits for 10.
        let eleven = landed.read(11);
        o.push(alone(position(11, 0)), MatchedSubs::new(), now);
        assert_eq!(seqs(o.drain(conn, now, usize::MAX)), (0, vec![]));
        drop(ten);
        assert_eq!(
            seqs(o.drain(conn, now, usize::MAX)),
            (0, vec![position(11, 0)])
        );
        drop(eleven);
    }

    #[test]
    fn a_history_merges_with_what_was_held_each_position_once() {
        let landed = Landed::new();
        landed.start_after(1, 0);
        let o = in_order(&landed);
        let now = Instant::now();
        let (conn, _) = o.attach(Resume::Pending);
        // Live: 5 landed, 7 on its way.
        drop(landed.read(5));
        let seven = landed.read(7);
        o.push(at(position(5, 0)), MatchedSubs::new(), now);
        o.push(at(position(7, 0)), MatchedSubs::new(), now);
        // The stream had 3, 5 and 6 after the cursor at 2 (read up to 7's end),
        // and 2 itself (the cursor's own) which is not sent again.
        let history = [
            position(2, 0),
            position(3, 0),
            position(5, 0),
            position(6, 0),
        ]
        .into_iter()
        .map(|p| (at(p), MatchedSubs::new()))
        .collect();
        let grew = o.merge_history(conn, position(2, 0), history, position(7, 1023), 0, now);
        assert_eq!(
            grew,
            Some(2),
            "3 and 6 are new; 5 was there, 2 is before the cursor"
        );
        assert_eq!(o.position(), position(2, 0));
        assert_eq!(
            seqs(o.drain(conn, now, usize::MAX)),
            (0, vec![position(3, 0), position(5, 0)]),
            "6 and 7 wait for 7 to land"
        );
        // 6 arrives live too, after the history had it: once.
        o.push(at(position(6, 0)), MatchedSubs::new(), now);
        drop(seven);
        assert_eq!(
            seqs(o.drain(conn, now, usize::MAX)),
            (0, vec![position(6, 0), position(7, 0)])
        );
        // A read for a connection superseded meanwhile changes nothing.
        let (current, _) = o.attach(Resume::Pending);
        assert_eq!(
            o.merge_history(conn, 0, Vec::new(), 0, GAP_UNKNOWN, now),
            None
        );
        assert_eq!(seqs(o.drain(current, now, usize::MAX)), (0, vec![]));
    }

    #[test]
    fn a_new_connection_supersedes_the_old() {
        let o = outbox(3);
        let (old, _) = o.attach(Resume::Pending);
        let (new, _) = o.attach(Resume::Pending);
        assert!(matches!(
            o.drain(old, Instant::now(), usize::MAX),
            Drain::Superseded
        ));
        assert!(!o.detach(old));
        assert!(o.detach(new));
        assert!(!o.is_attached());
    }
}
