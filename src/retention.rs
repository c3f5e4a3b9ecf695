//! A broker shard's retention ring: the last events it routed, bounded by count and
//! age, so a client asking for `cursor=earliest` can see what happened before it
//! connected (a page opened mid-call sees the call so far).

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

/// The bounded ring of one shard.
#[derive(Debug)]
pub struct Retention {
    ring: VecDeque<(Stamped, Instant)>,
    max_events: usize,
    max_age: Duration,
    last_seq: u64,
}

impl Retention {
    /// An empty ring keeping at most `max_events` events no older than `max_age`.
    pub fn new(max_events: usize, max_age: Duration) -> Retention {
        Retention {
            ring: VecDeque::new(),
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
        self.ring.push_back((stamped.clone(), now));
        (stamped, self.evict(now))
    }

    fn evict(&mut self, now: Instant) -> usize {
        let mut evicted = 0;
        while let Some((_, at)) = self.ring.front() {
            if self.ring.len() <= self.max_events
                && now.saturating_duration_since(*at) <= self.max_age
            {
                break;
            }
            self.ring.pop_front();
            evicted += 1;
        }
        evicted
    }

    /// The last sequence number handed out: everything up to it is either retained,
    /// evicted, or was routed before.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Retained events of `account` that match any of `filters`, oldest first.
    /// Returns the events and how many old events were evicted first.
    pub fn matching(
        &mut self,
        account: AccountIdx,
        filters: &[std::sync::Arc<Filter>],
        now: Instant,
    ) -> (Vec<Stamped>, usize) {
        let evicted = self.evict(now);
        let events = self
            .ring
            .iter()
            .filter(|(s, _)| s.event.account == account)
            .filter(|(s, _)| {
                let fields = s.event.fields();
                filters.iter().any(|f| f.matches(&fields))
            })
            .map(|(s, _)| s.clone())
            .collect();
        (events, evicted)
    }

    /// Events retained.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
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
                data: serde_json::Map::new(),
            },
            "t",
        ))
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
}
