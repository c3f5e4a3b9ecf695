//! The distributor: which broker shard owns an event.
//!
//! Events of one call hash (by `call_sid`) to one of [`SLOTS`] virtual slots, and each
//! slot belongs to one shard, which stamps and forwards its events in order, so each
//! subscriber sees a call's events in publication order. Events with no call hash by
//! account, which keeps an account's call-less events ordered too. Slots, not
//! `hash % shards`, so that the shard count can change by moving whole slots (every
//! call in a slot moves with it, the rest stay put) instead of remapping nearly every
//! call. The shard map is immutable and swapped whole behind a read-mostly lock, so a
//! publish takes the lock once to clone an `Arc` and never blocks on a rebalance.

use std::sync::Arc;

use actix::Addr;
use parking_lot::RwLock;
use prometheus::IntGauge;

use super::shard::BrokerShard;
use super::slots::{self, ShardId};
use crate::account::AccountIdx;
use crate::filter::Filter;
use crate::hash::fnv1a_64;
use crate::limits::fair_share::ShardShares;

/// One shard as publishers see it.
#[derive(Clone)]
pub struct ShardHandle {
    /// Its id, never reused (the index of its metrics, its sequence's name).
    pub id: ShardId,
    /// The shard actor.
    pub addr: Addr<BrokerShard>,
    /// Publish batches accepted for this shard and not yet handed to its proxies:
    /// the `switchboard_mailbox_depth{actor="shard"}` gauge itself, maintained by
    /// publishers and the shard because actix cannot report mailbox depth.
    pub depth: IntGauge,
}

/// How many virtual slots calls hash to: far more than shards will ever be, so slots
/// spread evenly over any shard count, and few enough that the map is 2 KiB.
pub const SLOTS: usize = 1024;

/// The slot of an event of this account and call: FNV-1a, stable across processes
/// and versions, so a slot means the same calls on every node and after a restart.
pub fn slot_of(account: AccountIdx, call_sid: Option<&str>) -> u16 {
    match call_sid {
        Some(sid) => call_slot(sid),
        None => (fnv1a_64(&account.0.to_le_bytes()) % SLOTS as u64) as u16,
    }
}

/// The slot of a call, whatever its account: where a filter pinned to it lives.
pub fn call_slot(call_sid: &str) -> u16 {
    (fnv1a_64(call_sid.as_bytes()) % SLOTS as u64) as u16
}

/// An immutable assignment of slots to shards.
pub struct ShardMap {
    /// The shards, in the order they were added.
    pub shards: Vec<ShardHandle>,
    /// The owner of each slot, as a position in `shards`: what a publish looks up.
    owners: Box<[u16]>,
}

impl ShardMap {
    /// A map over `shards` (at least one, at most [`SLOTS`]) with the slots dealt
    /// evenly.
    pub fn new(shards: Vec<ShardHandle>) -> ShardMap {
        assert!(
            (1..=SLOTS).contains(&shards.len()),
            "a shard map needs 1 to {SLOTS} shards"
        );
        let ids: Vec<ShardId> = shards.iter().map(|s| s.id).collect();
        ShardMap::with_owners(shards, slots::dealt(&ids))
    }

    /// A map over `shards` where slot `s` belongs to the shard with id
    /// `owner_ids[s]`, each of which must be in `shards`.
    pub fn with_owners(shards: Vec<ShardHandle>, owner_ids: Vec<ShardId>) -> ShardMap {
        assert_eq!(owner_ids.len(), SLOTS, "every slot has an owner");
        let owners = owner_ids
            .iter()
            .map(|id| {
                let at = shards.iter().position(|s| s.id == *id);
                at.expect("a slot's owner is in the map") as u16
            })
            .collect();
        ShardMap { shards, owners }
    }

    /// The index of the shard for an event of this account and call.
    pub fn shard_for(&self, account: AccountIdx, call_sid: Option<&str>) -> usize {
        usize::from(self.owners[usize::from(slot_of(account, call_sid))])
    }

    /// The owner of each slot, by id (for the supervisor, which moves slots).
    pub fn owner_ids(&self) -> Vec<ShardId> {
        self.owners
            .iter()
            .map(|&at| self.shards[usize::from(at)].id)
            .collect()
    }

    /// How many slots the shard at `index` owns.
    pub fn slots_of(&self, index: usize) -> usize {
        self.owners
            .iter()
            .filter(|&&owner| usize::from(owner) == index)
            .count()
    }

    /// The shards a proxy registers `filter` with: the one that owns its call when
    /// it is pinned to one (`call_sid=`: no other shard ever sees that call's
    /// events), else every shard.
    pub fn shards_for_filter(&self, account: AccountIdx, filter: &Filter) -> &[ShardHandle] {
        match filter.call_sid_eq() {
            Some(sid) => {
                let index = self.shard_for(account, Some(sid));
                &self.shards[index..=index]
            }
            None => &self.shards,
        }
    }
}

/// Holds the current shard map, and each shard's fair shares of its queue.
pub struct Distributor {
    map: RwLock<Arc<ShardMap>>,
    shares: ShardShares,
}

impl Distributor {
    /// A distributor over an initial map.
    pub fn new(map: ShardMap) -> Distributor {
        Distributor {
            map: RwLock::new(Arc::new(map)),
            shares: ShardShares::default(),
        }
    }

    /// The map as it is now, for reading at leisure (the topology, a replay's
    /// fan-out). Whatever must reach a slot's owner in order with a hand-off is
    /// sent inside [`Distributor::with_map`] instead.
    pub fn current(&self) -> Arc<ShardMap> {
        self.map.read().clone()
    }

    /// Runs `send` with the current map, which cannot change until it returns: a
    /// publish (or a registration for one call) enqueued here lands in a mailbox
    /// before any hand-off of its slot that the supervisor starts after, so a
    /// slot's events reach its old owner first or its new owner only. `send` must
    /// not wait.
    pub fn with_map<R>(&self, send: impl FnOnce(&ShardMap) -> R) -> R {
        send(&self.map.read())
    }

    /// Replaces the map: `change` gets the current one and returns the next, and
    /// whatever it sends is enqueued while no publish can be (see
    /// [`Distributor::with_map`]).
    pub fn replace(&self, change: impl FnOnce(&ShardMap) -> ShardMap) {
        let mut map = self.map.write();
        let next = change(&map);
        self.shares
            .retain(|id| next.shards.iter().any(|s| usize::from(s.id) == id));
        *map = Arc::new(next);
    }

    /// The accounts' shares of each shard's queue (`limits::fair_share`).
    pub fn shares(&self) -> &ShardShares {
        &self.shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_has_one_slot_everywhere() {
        // FNV-1a of the sid, fixed: the same slot in every process and release.
        let sid = "CA0123456789abcdef0123456789abcdef";
        assert_eq!(
            slot_of(AccountIdx(7), Some(sid)),
            slot_of(AccountIdx(9), Some(sid))
        );
        assert_eq!(
            u64::from(slot_of(AccountIdx(0), Some(sid))),
            fnv1a_64(sid.as_bytes()) % SLOTS as u64
        );
        // Call-less events go by account.
        assert_ne!(
            (0..64)
                .map(|a| slot_of(AccountIdx(a), None))
                .collect::<std::collections::HashSet<_>>()
                .len(),
            1
        );
    }
}
