//! A broker shard's retention ring: the last events it routed, bounded by count and
//! age, so a client asking for `cursor=earliest` can see what happened before it
//! connected (a page opened mid-call sees the call so far).
//!
//! The ring is indexed by account: a replay for one account walks only that
//! account's retained events, never every tenant's. One tenant's `cursor=earliest`
//! then costs in proportion to its own history, and cannot make a shard scan the
//! whole ring on every request (issue #8). The limits stay shard-wide: a single
//! arrival-order queue decides what to evict, and each eviction pops the front of
//! that event's account ring, which holds the same event since both are in order.

use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::account::AccountIdx;
use crate::event::SharedEvent;
use crate::filter::Filter;

/// An event with the shard's sequence number, the order the shard routed it in.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Position in the shard's sequence, from 1.
    pub seq: u64,
    /// The event.
    pub event: SharedEvent,
}

/// The bounded, account-indexed ring of one shard.
#[derive(Debug)]
pub struct Retention {
    /// Every retained event's account and arrival, oldest first: what the count and
    /// age limits evict, in the shard's order.
    arrivals: VecDeque<(AccountIdx, Instant)>,
    /// Each account's retained events, oldest first; an account with none has no
    /// entry, so the map never outgrows the ring.
    by_account: FxHashMap<AccountIdx, VecDeque<Stamped>>,
    max_events: usize,
    max_age: Duration,
    last_seq: u64,
}

impl Retention {
    /// An empty ring keeping at most `max_events` events no older than `max_age`.
    pub fn new(max_events: usize, max_age: Duration) -> Retention {
        Retention {
            arrivals: VecDeque::new(),
            by_account: FxHashMap::default(),
            max_events,
            max_age,
            last_seq: 0,
        }
    }

    /// Stamps the next sequence number on an event and keeps it. Returns the stamped
    /// event and how many old events were evicted.
    pub fn push(&mut self, event: SharedEvent, now: Instant) -> (Stamped, usize) {
        self.last_seq += 1;
        let stamped = Stamped {
            seq: self.last_seq,
            event,
        };
        let account = stamped.event.account;
        self.arrivals.push_back((account, now));
        self.by_account
            .entry(account)
            .or_default()
            .push_back(stamped.clone());
        (stamped, self.evict(now))
    }

    fn evict(&mut self, now: Instant) -> usize {
        let mut evicted = 0;
        while let Some(&(account, at)) = self.arrivals.front() {
            if self.arrivals.len() <= self.max_events
                && now.saturating_duration_since(at) <= self.max_age
            {
                break;
            }
            self.arrivals.pop_front();
            if let Some(ring) = self.by_account.get_mut(&account) {
                ring.pop_front();
                if ring.is_empty() {
                    self.by_account.remove(&account);
                }
            }
            evicted += 1;
        }
        evicted
    }

    /// The last sequence number handed out: everything up to it is either retained,
    /// evicted, or was routed before.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Retained events of `account` that match any of `filters`, oldest first,
    /// reading only that account's events. Returns the events and how many old
    /// events were evicted first.
    pub fn matching(
        &mut self,
        account: AccountIdx,
        filters: &[std::sync::Arc<Filter>],
        now: Instant,
    ) -> (Vec<Stamped>, usize) {
        let evicted = self.evict(now);
        let events = self
            .by_account
            .get(&account)
            .into_iter()
            .flatten()
            .filter(|s| {
                let fields = s.event.fields();
                filters.iter().any(|f| f.matches(&fields))
            })
            .cloned()
            .collect();
        (events, evicted)
    }

    /// Removes the retained events `pick` chooses and returns them oldest first with
    /// their arrival times, for a shard handing their slots to another: the rest keep
    /// their order and sequence numbers.
    pub fn take_where(
        &mut self,
        pick: impl Fn(&SharedEvent) -> bool,
    ) -> Vec<(SharedEvent, Instant)> {
        let mut rings = std::mem::take(&mut self.by_account);
        let arrivals = std::mem::take(&mut self.arrivals);
        let mut taken = Vec::new();
        for (account, at) in arrivals {
            // An account's ring holds its arrivals in the same order, so its front is
            // the event of this arrival.
            let Some(stamped) = rings.get_mut(&account).and_then(VecDeque::pop_front) else {
                continue;
            };
            if pick(&stamped.event) {
                taken.push((stamped.event, at));
            } else {
                self.arrivals.push_back((account, at));
                self.by_account
                    .entry(account)
                    .or_default()
                    .push_back(stamped);
            }
        }
        taken
    }

    /// Keeps events another shard handed over (oldest first, with their arrival
    /// times), stamped with this shard's next numbers, after what it holds. Returns
    /// how many old events were evicted. An adopted event older than this shard's
    /// newest is evicted by age once it reaches the front of the ring, so it can
    /// outstay `max_age` by as long as the newer events before it; the count bound
    /// holds as ever.
    pub fn adopt(&mut self, events: Vec<(SharedEvent, Instant)>, now: Instant) -> usize {
        for (event, at) in events {
            self.last_seq += 1;
            let account = event.account;
            self.arrivals.push_back((account, at));
            self.by_account
                .entry(account)
                .or_default()
                .push_back(Stamped {
                    seq: self.last_seq,
                    event,
                });
        }
        self.evict(now)
    }

    /// Events retained.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Draft, Event};
    use crate::filter::ScopeGrant;
    use std::sync::Arc;

    fn event(account: u32, type_name: &str) -> SharedEvent {
        Arc::new(Event::build(
            AccountIdx(account),
            "AC",
            Draft {
                type_name: type_name.into(),
                call_sid: None,
                scope: None,
                data: serde_json::Map::new().into(),
            },
            "t",
        ))
    }

    #[test]
    fn a_hand_off_takes_what_it_picks_and_the_adopter_restamps_it_in_order() {
        let now = Instant::now();
        let mut from = Retention::new(100, Duration::from_secs(60));
        for (account, ty) in [(0, "a.1"), (1, "b.1"), (0, "a.2"), (0, "c.1"), (1, "b.2")] {
            from.push(event(account, ty), now);
        }
        let taken = from.take_where(|e| e.type_name.starts_with('b') || &*e.type_name == "a.2");
        let names: Vec<&str> = taken.iter().map(|(e, _)| &*e.type_name).collect();
        assert_eq!(names, ["b.1", "a.2", "b.2"]);
        assert_eq!(from.len(), 2);
        let all = Arc::new(Filter::all(ScopeGrant::All));
        let (left, _) = from.matching(AccountIdx(0), std::slice::from_ref(&all), now);
        let left: Vec<(u64, &str)> = left.iter().map(|s| (s.seq, &*s.event.type_name)).collect();
        assert_eq!(
            left,
            [(1, "a.1"), (4, "c.1")],
            "the rest keep their numbers"
        );

        let mut to = Retention::new(100, Duration::from_secs(60));
        to.push(event(1, "x.1"), now);
        assert_eq!(to.adopt(taken, now), 0);
        assert_eq!(to.len(), 4);
        let (got, _) = to.matching(AccountIdx(1), &[all], now);
        let got: Vec<(u64, &str)> = got.iter().map(|s| (s.seq, &*s.event.type_name)).collect();
        assert_eq!(got, [(1, "x.1"), (2, "b.1"), (4, "b.2")]);
        assert_eq!(to.last_seq(), 4);
    }

    #[test]
    fn stamps_in_order_and_bounds_count() {
        let mut r = Retention::new(3, Duration::from_secs(60));
        let now = Instant::now();
        for n in 1..=5 {
            let (s, _) = r.push(event(0, "call.start"), now);
            assert_eq!(s.seq, n);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.last_seq(), 5);
        let all = Arc::new(Filter::all(ScopeGrant::All));
        let (events, _) = r.matching(AccountIdx(0), &[all], now);
        assert_eq!(
            events.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
    }

    #[test]
    fn filters_by_account_and_filter_and_age() {
        let mut r = Retention::new(100, Duration::from_millis(10));
        let t0 = Instant::now();
        r.push(event(0, "call.start"), t0);
        let t1 = t0 + Duration::from_millis(20);
        let (_, evicted) = r.push(event(0, "gather.end"), t1);
        assert_eq!(evicted, 1, "the first event aged out");
        r.push(event(1, "call.start"), t1);
        r.push(event(0, "call.end"), t1);
        let calls = Arc::new(Filter::parse(Some("call.*"), &[], None, ScopeGrant::All).unwrap());
        let (events, evicted) = r.matching(AccountIdx(0), &[calls], t1);
        assert_eq!(evicted, 0);
        assert_eq!(events.len(), 1);
        assert_eq!(&*events[0].event.type_name, "call.end");
    }

    /// What a replay can read for one account: its own ring, nothing else.
    fn readable(r: &Retention, account: u32) -> Vec<u64> {
        r.by_account
            .get(&AccountIdx(account))
            .map(|ring| ring.iter().map(|s| s.seq).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_replay_reads_only_its_accounts_events() {
        let mut r = Retention::new(10_000, Duration::from_secs(60));
        let now = Instant::now();
        for n in 0..5_000 {
            let account = if n % 1000 == 0 { 0 } else { 1 };
            r.push(event(account, "call.start"), now);
        }
        assert_eq!(r.len(), 5_000);
        assert_eq!(readable(&r, 0), vec![1, 1001, 2001, 3001, 4001]);
        let all = Arc::new(Filter::all(ScopeGrant::All));
        let (events, _) = r.matching(AccountIdx(0), std::slice::from_ref(&all), now);
        assert_eq!(
            events.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![1, 1001, 2001, 3001, 4001]
        );
        let (events, _) = r.matching(AccountIdx(7), &[all], now);
        assert!(events.is_empty(), "an account with nothing retained");
    }

    #[test]
    fn shard_wide_limits_evict_across_accounts_in_arrival_order() {
        let mut r = Retention::new(4, Duration::from_secs(60));
        let now = Instant::now();
        for account in [0, 1, 0, 2, 1, 0] {
            r.push(event(account, "call.start"), now);
        }
        // Seqs 1 (account 0) and 2 (account 1) went first, whatever their account.
        assert_eq!(r.len(), 4);
        assert_eq!(readable(&r, 0), vec![3, 6]);
        assert_eq!(readable(&r, 1), vec![5]);
        assert_eq!(readable(&r, 2), vec![4]);
        // Age evicts everything; empty accounts leave no entry behind.
        let later = now + Duration::from_secs(61);
        let all = Arc::new(Filter::all(ScopeGrant::All));
        let (events, evicted) = r.matching(AccountIdx(0), &[all], later);
        assert!(events.is_empty());
        assert_eq!(evicted, 4);
        assert!(r.is_empty());
        assert!(r.by_account.is_empty(), "no entry per departed account");
    }
}
