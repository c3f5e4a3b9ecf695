//! The distributor: which broker shard owns an event.
//!
//! Events of one call hash (by `call_sid`) to one shard, which stamps and forwards them
//! in order, so each subscriber sees a call's events in publication order. Events with
//! no call hash by account, which keeps an account's call-less events ordered too.
//! The shard map is immutable and swapped whole behind a read-mostly lock, so a
//! publish takes the lock once to clone an `Arc` and never blocks on a rebalance.

use std::sync::Arc;

use actix::Addr;
use parking_lot::RwLock;
use prometheus::IntGauge;

use super::shard::BrokerShard;
use crate::account::AccountIdx;
use crate::filter::Filter;
use crate::hash::fnv1a_64;

/// One shard as publishers see it.
#[derive(Clone)]
pub struct ShardHandle {
    /// The shard actor.
    pub addr: Addr<BrokerShard>,
    /// Publish batches accepted for this shard and not yet handed to its proxies:
    /// the `switchboard_mailbox_depth{actor="shard"}` gauge itself, maintained by
    /// publishers and the shard because actix cannot report mailbox depth.
    pub depth: IntGauge,
}

/// An immutable assignment of hash ranges to shards.
pub struct ShardMap {
    /// The shards, indexed by `hash % len`.
    pub shards: Vec<ShardHandle>,
}

impl ShardMap {
    /// The index of the shard for an event of this account and call.
    pub fn shard_for(&self, account: AccountIdx, call_sid: Option<&str>) -> usize {
        let hash = match call_sid {
            Some(sid) => fnv1a_64(sid.as_bytes()),
            None => fnv1a_64(&account.0.to_le_bytes()),
        };
        (hash % self.shards.len() as u64) as usize
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

/// Holds the current shard map.
pub struct Distributor {
    map: RwLock<Arc<ShardMap>>,
}

impl Distributor {
    /// A distributor over an initial map (must have at least one shard).
    pub fn new(map: ShardMap) -> Distributor {
        assert!(
            !map.shards.is_empty(),
            "a shard map needs at least one shard"
        );
        Distributor {
            map: RwLock::new(Arc::new(map)),
        }
    }

    /// The map to use for one publish.
    pub fn current(&self) -> Arc<ShardMap> {
        self.map.read().clone()
    }
}
