//! Routing accepted events to their broker shards, all or nothing: the one path every
//! event takes into the router, whether it came from the publish endpoint, a client
//! event or the built-in call router.

use std::sync::Arc;

use crate::account::{AccountIdx, Accounts};
use crate::actors::distributor::{Distributor, ShardMap};
use crate::actors::shard::Publish;
use crate::cluster::order::Ticket;
use crate::event::{self, Draft, Event, EventId, SharedEvent};
use crate::limits::fair_share::{share_of, ShardShares, ShareSlot};
use crate::limits::{record_refusal, Limit};
use crate::metrics::{family, Metrics};

/// Pause before offering accepted events again to a shard whose queue is full.
const SHARD_FULL_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// Why events were not routed. Nothing of the request was published in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A target shard already has `publish.shard_queue` batches in flight.
    #[error("a broker shard's queue is full; retry shortly")]
    Overloaded,
    /// The shards are gone: the server is stopping.
    #[error("the server is shutting down")]
    Stopped,
    /// The account already holds its fair share of a target shard's queue, so other
    /// accounts can still publish to that shard.
    #[error("publish.shard_queue: this account already holds its share ({share} batches) of a broker shard's queue; retry shortly")]
    AccountShare {
        /// Batches one account may have in flight per shard.
        share: i64,
    },
}

/// Builds events and hands them to their shards. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    accounts: Arc<Accounts>,
    distributor: Arc<Distributor>,
    metrics: Metrics,
    shard_queue: i64,
}

impl Publisher {
    /// A publisher over the running shards; `shard_queue` bounds each shard's
    /// in-flight batches.
    pub fn new(
        accounts: Arc<Accounts>,
        distributor: Arc<Distributor>,
        metrics: Metrics,
        shard_queue: usize,
    ) -> Publisher {
        Publisher {
            accounts,
            distributor,
            metrics,
            shard_queue: shard_queue as i64,
        }
    }

    /// Builds validated events (one id and timestamp each) and hands them to their
    /// shards' mailboxes, all or nothing. Returns the ids in order.
    ///
    /// It does not wait for the shards: a shard's mailbox keeps order (a later replay
    /// request queues behind the events), the queue slot taken here bounds what is in
    /// flight, and a reply would cost the publishing thread a second wake-up per
    /// request for nothing the caller can use.
    pub fn route(
        &self,
        account: AccountIdx,
        drafts: Vec<Draft>,
    ) -> Result<Vec<EventId>, PublishError> {
        self.route_within(account, drafts, self.shard_queue)
    }

    /// Routes one event of the built-in call router. It is not held to
    /// `publish.shard_queue`: a call's program awaits each of its events, so the call
    /// router has at most one event in flight per live call (bounded by
    /// `limits.calls_per_account`), and refusing it would lose the event or stall the
    /// call behind a tenant that floods the shard. It still counts in the shard's depth,
    /// so other publishers see the load.
    pub fn route_call_event(&self, account: AccountIdx, draft: Draft) -> Result<(), PublishError> {
        self.route_within(account, vec![draft], i64::MAX).map(drop)
    }

    fn route_within(
        &self,
        account: AccountIdx,
        drafts: Vec<Draft>,
        limit: i64,
    ) -> Result<Vec<EventId>, PublishError> {
        let events = self.build(account, drafts);
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        self.route_events(account, events, limit, None)?;
        Ok(ids)
    }

    /// Builds the events of a request, stamped with one acceptance time.
    pub fn build(&self, account: AccountIdx, drafts: Vec<Draft>) -> Vec<SharedEvent> {
        self.events(account, drafts).map(Arc::new).collect()
    }

    /// [`Publisher::build`], before the events are shared: a durable node gives
    /// them their positions once they are kept.
    pub fn build_owned(&self, account: AccountIdx, drafts: Vec<Draft>) -> Vec<Event> {
        self.events(account, drafts).collect()
    }

    /// A request's events, stamped with one acceptance time, built as they are
    /// taken (one allocation for the request's list, whichever form it takes).
    fn events(&self, account: AccountIdx, drafts: Vec<Draft>) -> impl Iterator<Item = Event> + '_ {
        let timestamp = event::now_rfc3339();
        let sid = &self.accounts.get(account).sid;
        drafts
            .into_iter()
            .map(move |draft| Event::build(account, sid, draft, &timestamp))
    }

    /// Whether the shards of `events` would take them now, held to
    /// `publish.shard_queue` as [`Publisher::route`] is; nothing is held after.
    /// A durable node asks before it keeps a request, so one it would refuse is
    /// never kept (and replayed after a restart to a publisher told 503).
    pub fn check_room(&self, account: AccountIdx, events: &[Event]) -> Result<(), PublishError> {
        self.distributor.with_map(|map| {
            let mut targets: Vec<usize> = events
                .iter()
                .map(|event| map.shard_for(account, event.call_sid.as_deref()))
                .collect();
            targets.sort_unstable();
            targets.dedup();
            let slots = reserve(
                map,
                &targets,
                self.shard_queue,
                self.distributor.shares(),
                account,
            )
            .inspect_err(|error| {
                if matches!(error, PublishError::AccountShare { .. }) {
                    record_refusal(&self.metrics, account, Limit::ShardShare);
                }
            })?;
            for &shard in &targets {
                map.shards[shard].depth.dec();
            }
            drop(slots);
            Ok(())
        })
    }

    /// Routes events a durable node has kept, with their message's ticket. Not
    /// held to `publish.shard_queue`: the request was checked against it before it
    /// was kept ([`Publisher::check_room`]), and a kept event must not be refused.
    pub fn route_kept(
        &self,
        account: AccountIdx,
        events: Vec<SharedEvent>,
        ticket: Arc<Ticket>,
    ) -> Result<(), PublishError> {
        self.route_events(account, events, i64::MAX, Some(ticket))
    }

    /// Routes events read from the cluster's stream, held to
    /// `publish.shard_queue` but waiting while a target shard's queue is full
    /// rather than dropping them; `Err` only once the shards are gone.
    pub async fn route_accepted(
        &self,
        account: AccountIdx,
        events: Vec<SharedEvent>,
        ticket: Arc<Ticket>,
    ) -> Result<(), PublishError> {
        loop {
            let ticket = Some(ticket.clone());
            match self.route_events(account, events.clone(), self.shard_queue, ticket) {
                Err(PublishError::Overloaded | PublishError::AccountShare { .. }) => {
                    tokio::time::sleep(SHARD_FULL_PAUSE).await;
                }
                done => return done,
            }
        }
    }

    fn route_events(
        &self,
        account: AccountIdx,
        events: Vec<SharedEvent>,
        limit: i64,
        ticket: Option<Arc<Ticket>>,
    ) -> Result<(), PublishError> {
        let families = Families::count(&events);

        // Enqueued with the map held, so a hand-off of a slot started after this
        // finds these events in the old owner's mailbox (see `Distributor::with_map`).
        self.distributor.with_map(|map| {
            let batches = split_by_shard(map, events);
            let targets = batches.iter().enumerate().filter(|(_, b)| !b.is_empty());
            // A shard only goes away while the server stops or once it has handed
            // its slots on; check before taking slots so a refused request holds
            // nothing.
            if targets
                .clone()
                .any(|(shard, _)| !map.shards[shard].addr.connected())
            {
                return Err(PublishError::Stopped);
            }
            let targets: Vec<usize> = (0..batches.len())
                .filter(|&i| !batches[i].is_empty())
                .collect();
            let slots = reserve(map, &targets, limit, self.distributor.shares(), account)
                .inspect_err(|error| {
                    if matches!(error, PublishError::AccountShare { .. }) {
                        record_refusal(&self.metrics, account, Limit::ShardShare);
                    }
                })?;
            let sends = batches
                .into_iter()
                .enumerate()
                .filter(|(_, events)| !events.is_empty())
                .zip(slots);
            for ((shard, events), slot) in sends {
                // Queued even above the mailbox's capacity hint: `reserve` is the bound.
                map.shards[shard].addr.do_send(Publish {
                    events,
                    slot,
                    ticket: ticket.clone(),
                });
            }
            Ok(())
        })?;
        for (f, n) in families.0 {
            self.metrics.published.with_label_values(&[f]).inc_by(n);
        }
        Ok(())
    }
}

/// How many events of a request fall in each metrics family, so the counter of each
/// is looked up once per request rather than once per event. A request mixes few
/// families, so a short list beats a map.
struct Families(smallvec::SmallVec<[(&'static str, u64); 2]>);

impl Families {
    fn count(events: &[SharedEvent]) -> Families {
        let mut counts = smallvec::SmallVec::<[(&'static str, u64); 2]>::new();
        for event in events {
            let f = family(&event.type_name);
            match counts.iter_mut().find(|(seen, _)| *seen == f) {
                Some((_, n)) => *n += 1,
                None => counts.push((f, 1)),
            }
        }
        Families(counts)
    }
}

/// Groups events by owning shard, keeping publication order within each shard.
fn split_by_shard(map: &ShardMap, events: Vec<SharedEvent>) -> Vec<Vec<SharedEvent>> {
    let mut batches: Vec<Vec<SharedEvent>> = vec![Vec::new(); map.shards.len()];
    for event in events {
        let shard = map.shard_for(event.account, event.call_sid.as_deref());
        batches[shard].push(event);
    }
    batches
}

/// Takes one queue slot on every target shard, and one slot of the account's share
/// of each, or none: a request either goes to all of its shards or is refused whole,
/// so a batch is never half published. Returns the share slots in target order.
fn reserve(
    map: &ShardMap,
    targets: &[usize],
    limit: i64,
    shares: &ShardShares,
    account: AccountIdx,
) -> Result<Vec<ShareSlot>, PublishError> {
    let mut slots = Vec::with_capacity(targets.len());
    for (n, &shard) in targets.iter().enumerate() {
        // The account's share first: a refused account never touches the shard's
        // depth, so its refused requests cannot crowd out other accounts even for
        // an instant.
        let Some(slot) = shares.take(usize::from(map.shards[shard].id), account, limit) else {
            for &taken in &targets[..n] {
                map.shards[taken].depth.dec();
            }
            // Dropping `slots` gives the shares taken so far back.
            return Err(PublishError::AccountShare {
                share: share_of(limit),
            });
        };
        slots.push(slot);
        let depth = &map.shards[shard].depth;
        depth.inc();
        if depth.get() > limit {
            for &taken in &targets[..=n] {
                map.shards[taken].depth.dec();
            }
            return Err(PublishError::Overloaded);
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use actix::dev::channel;
    use prometheus::IntGauge;

    use super::*;
    use crate::actors::distributor::ShardHandle;
    use crate::actors::shard::BrokerShard;

    const A: AccountIdx = AccountIdx(0);
    const B: AccountIdx = AccountIdx(1);

    /// A map of `n` shards whose actors never run: `reserve` only reads the depths.
    fn shard_map(n: usize) -> ShardMap {
        let shards = (0..n)
            .map(|i| ShardHandle {
                id: i as u16,
                addr: actix::Addr::new(channel::channel::<BrokerShard>(1).0),
                depth: IntGauge::new(format!("depth_{i}"), "test").unwrap(),
            })
            .collect();
        ShardMap::new(shards)
    }

    fn depths(map: &ShardMap) -> Vec<i64> {
        map.shards.iter().map(|s| s.depth.get()).collect()
    }

    #[test]
    fn a_full_shard_refuses_the_whole_request_and_gives_every_slot_back() {
        let (map, shares) = (shard_map(3), ShardShares::default());
        // Two other accounts fill shard 2's queue of 2 (a share is 1 slot of it).
        let held = [B, AccountIdx(2)].map(|other| reserve(&map, &[2], 2, &shares, other).unwrap());
        assert_eq!(depths(&map), [0, 0, 2]);

        let refused = reserve(&map, &[0, 1, 2], 2, &shares, A);
        assert_eq!(refused.unwrap_err(), PublishError::Overloaded);
        assert_eq!(
            depths(&map),
            [0, 0, 2],
            "shards 0 and 1 got their slots back"
        );
        // A's share slots of shards 0 and 1 came back too: it can take its whole
        // share (1 of 2) on each again.
        let again = reserve(&map, &[0, 1], 2, &shares, A).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(depths(&map), [1, 1, 2]);
        drop(held);
    }

    #[test]
    fn an_account_over_its_share_is_refused_whole_without_touching_depths() {
        let (map, shares) = (shard_map(2), ShardShares::default());
        // A holds its share (2 of a queue of 4) of shard 1.
        let held: Vec<_> = (0..2)
            .map(|_| reserve(&map, &[1], 4, &shares, A).unwrap())
            .collect();
        assert_eq!(depths(&map), [0, 2]);

        let refused = reserve(&map, &[0, 1], 4, &shares, A);
        assert_eq!(
            refused.unwrap_err(),
            PublishError::AccountShare { share: 2 }
        );
        assert_eq!(
            depths(&map),
            [0, 2],
            "shard 0's slot went back, 1 was not taken"
        );
        // The share slot taken on shard 0 went back with it, and B still finds
        // room on shard 1.
        reserve(&map, &[0], 4, &shares, A).unwrap();
        reserve(&map, &[1], 4, &shares, B).unwrap();
        assert_eq!(depths(&map), [1, 3]);
        drop(held);
    }

    #[test]
    fn an_accepted_request_takes_one_slot_per_target_shard_only() {
        let (map, shares) = (shard_map(3), ShardShares::default());
        let slots = reserve(&map, &[0, 2], 4, &shares, A).unwrap();
        assert_eq!(slots.len(), 2, "one share slot per target shard");
        assert_eq!(depths(&map), [1, 0, 1], "shard 1 has no batch and no slot");
        // Share slots go back with the batch; the depth is the shard's to release
        // once its proxies took the batch.
        drop(slots);
        assert_eq!(depths(&map), [1, 0, 1]);
        let slots: Vec<_> = (0..2)
            .map(|_| reserve(&map, &[0], 4, &shares, A).unwrap())
            .collect();
        assert_eq!(depths(&map), [3, 0, 1]);
        drop(slots);
    }
}
