//! Merging a `cursor=earliest` replay into a client's outbox, and telling later live
//! deliveries from replayed ones, without the actor.
//!
//! The proxy asks every shard for what it retains; each answers the matching events
//! and its sequence number when it answered (the watermark). Deliveries that raced
//! with the replay wait in the proxy's mailbox; those at or below their shard's
//! watermark were in the replay, so [`ReplayCoverage`] drops them and the client gets
//! each event once.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::event::SharedEvent;
use crate::outbox::{Entry, MatchedSubs};

/// Per shard, the sequence number up to which a replay covered a client.
#[derive(Debug, Clone, Default)]
pub struct ReplayCoverage(FxHashMap<u16, u64>);

impl ReplayCoverage {
    /// Whether the live delivery of `shard`'s event number `seq` was replayed.
    pub fn covers(&self, shard: u16, seq: u64) -> bool {
        self.0.get(&shard).is_some_and(|&upto| seq <= upto)
    }
}

/// One shard's answer, reduced to the events the client's stream subscriptions
/// matched, in the shard's order.
pub struct ShardReplay {
    /// The shard's index.
    pub shard: u16,
    /// Its last sequence number when it answered.
    pub watermark: u64,
    /// Matched events, oldest first, with the subscriptions they matched.
    pub events: Vec<(SharedEvent, MatchedSubs)>,
}

/// What [`merge`] made of the replies and the cache.
pub struct Merged {
    /// The outbox's new content: each event once, in acceptance order.
    pub events: Vec<(SharedEvent, MatchedSubs)>,
    /// What later live deliveries to skip.
    pub coverage: ReplayCoverage,
    /// How many events came from the shards rather than the cache.
    pub replayed: u64,
}

/// Merges the shards' replies with the client's cached events: an event both replayed
/// and cached is kept once (with the replay's subscriptions), and the order within each
/// shard, so each call's, is kept.
pub fn merge(replies: Vec<ShardReplay>, cached: Vec<Entry>) -> Merged {
    let mut coverage = ReplayCoverage::default();
    // Ids the server made (random, not a tenant's), so a fast hash is safe: the
    // keyed one was a tenth of a replay's CPU in a reconnect storm.
    let total = replies.iter().map(|r| r.events.len()).sum::<usize>() + cached.len();
    let mut seen = FxHashSet::with_capacity_and_hasher(total, Default::default());
    let mut replayed = 0u64;
    let mut lists: Vec<Vec<(SharedEvent, MatchedSubs)>> = Vec::with_capacity(replies.len() + 1);
    for reply in replies {
        coverage.0.insert(reply.shard, reply.watermark);
        let list: Vec<_> = reply
            .events
            .into_iter()
            .filter(|(event, _)| seen.insert(event.id))
            .collect();
        replayed += list.len() as u64;
        lists.push(list);
    }
    lists.push(
        cached
            .into_iter()
            .filter(|entry| seen.insert(entry.event.id))
            .map(|entry| (entry.event, entry.subs))
            .collect(),
    );
    Merged {
        events: merge_by_acceptance(lists),
        coverage,
        replayed,
    }
}

/// Merges lists that are each in order into one, taking the earliest-accepted head
/// each time: the order within each list (a shard's, so a call's) is kept.
fn merge_by_acceptance(
    lists: Vec<Vec<(SharedEvent, MatchedSubs)>>,
) -> Vec<(SharedEvent, MatchedSubs)> {
    let total = lists.iter().map(Vec::len).sum();
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<(SharedEvent, MatchedSubs)>>> = lists
        .into_iter()
        .map(|l| l.into_iter().peekable())
        .collect();
    let mut merged = Vec::with_capacity(total);
    loop {
        let next = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, h)| h.peek().map(|(e, _)| (e.accepted_at, i)))
            .min();
        match next {
            Some((_, i)) => merged.extend(heads[i].next()),
            None => return merged,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::account::AccountIdx;
    use crate::event::{Draft, Event};

    /// An event accepted `ms` after `t0`, marked `n` in its type.
    fn event(t0: Instant, ms: u64, n: u32) -> SharedEvent {
        let draft = Draft {
            type_name: format!("call.e{n}"),
            call_sid: None,
            scope: None,
            data: serde_json::Map::new().into(),
        };
        let mut event = Event::build(AccountIdx(0), "AC0", draft, "t");
        event.accepted_at = t0 + Duration::from_millis(ms);
        Arc::new(event)
    }

    fn subs(sid: &str) -> MatchedSubs {
        MatchedSubs::from_iter([Arc::from(sid)])
    }

    fn names(events: &[(SharedEvent, MatchedSubs)]) -> Vec<&str> {
        events.iter().map(|(e, _)| &*e.type_name).collect()
    }

    #[test]
    fn live_deliveries_up_to_each_shards_watermark_are_skipped() {
        let replies = vec![
            ShardReplay {
                shard: 0,
                watermark: 7,
                events: Vec::new(),
            },
            ShardReplay {
                shard: 2,
                watermark: 0,
                events: Vec::new(),
            },
        ];
        let coverage = merge(replies, Vec::new()).coverage;
        assert!(coverage.covers(0, 1) && coverage.covers(0, 7));
        assert!(
            !coverage.covers(0, 8),
            "published after the replay answered"
        );
        assert!(!coverage.covers(2, 1), "shard 2 had nothing yet");
        assert!(
            !coverage.covers(1, 1),
            "a shard that did not answer covers nothing"
        );
        assert!(
            !ReplayCoverage::default().covers(0, 0),
            "no replay, no skipping"
        );
    }

    #[test]
    fn an_event_replayed_and_cached_is_kept_once_in_acceptance_order() {
        let t0 = Instant::now();
        let (e1, e2, e3, e4) = (
            event(t0, 1, 1),
            event(t0, 2, 2),
            event(t0, 3, 3),
            event(t0, 4, 4),
        );
        let replies = vec![
            ShardReplay {
                shard: 0,
                watermark: 9,
                events: vec![(e1.clone(), subs("SUr")), (e3.clone(), subs("SUr"))],
            },
            ShardReplay {
                shard: 1,
                watermark: 9,
                events: vec![(e2.clone(), subs("SUr"))],
            },
        ];
        // The cache holds e3 (also replayed) and e4 (aged out of the shard's ring).
        let cached = [(e3, 1), (e4, 2)]
            .into_iter()
            .map(|(event, seq)| Entry {
                seq,
                event,
                subs: subs("SUc"),
                at: t0,
            })
            .collect();
        let merged = merge(replies, cached);
        assert_eq!(
            names(&merged.events),
            ["call.e1", "call.e2", "call.e3", "call.e4"]
        );
        assert_eq!(
            &*merged.events[2].1[0], "SUr",
            "the replay's copy of e3 is kept"
        );
        assert_eq!(merged.replayed, 3);
    }
}
