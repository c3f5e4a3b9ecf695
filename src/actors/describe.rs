//! The live topology (docs/api.md §8, `GET /v1/Admin/Topology`): every shard and proxy is
//! asked what it holds, each with a deadline, so an actor that does not answer in
//! time shows as such instead of stalling the answer.

use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;

use super::ask::ask;
use super::distributor::SLOTS;
use super::proxy::{DescribeProxy, ProxyLoad};
use super::shard::{DescribeShard, ShardLoad};
use super::slots::ShardId;
use super::Topology;

/// One shard in the topology.
#[derive(Debug, Serialize)]
pub struct ShardView {
    /// Its id (the `index` label of its metrics; never reused).
    pub index: ShardId,
    /// Virtual slots it owns (of [`SLOTS`]).
    pub slots: usize,
    /// Whether it answered within the deadline; the figures below are absent if not.
    pub answered: bool,
    /// What it holds.
    #[serde(flatten)]
    pub load: Option<ShardLoad>,
}

/// One proxy in the topology.
#[derive(Debug, Serialize)]
pub struct ProxyView {
    /// Its id (the `index` label of its metrics; never reused).
    pub index: u32,
    /// Whether it answered within the deadline; the figures below are absent if not.
    pub answered: bool,
    /// What it holds.
    #[serde(flatten)]
    pub load: Option<ProxyLoad>,
}

/// Sums over the actors that answered.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Shards running.
    pub shards: usize,
    /// Proxies running.
    pub proxies: usize,
    /// Client sessions.
    pub sessions: usize,
    /// Client subscriptions (what clients asked for).
    pub client_subscriptions: usize,
    /// Distinct filters in the proxies.
    pub filters: usize,
    /// Upstream subscriptions summed over shards (what aggregation left).
    pub upstream_subscriptions: usize,
}

/// The answer of `GET /v1/Admin/Topology`.
#[derive(Debug, Serialize)]
pub struct TopologyView {
    /// How many virtual slots calls hash to.
    pub slots: usize,
    /// The shards, in map order.
    pub shards: Vec<ShardView>,
    /// The proxies.
    pub proxies: Vec<ProxyView>,
    /// Sums.
    pub totals: Totals,
}

impl TopologyView {
    /// Assembles the view from each shard's id, slot count and answer and each
    /// proxy's answer (`None`: no answer in time).
    pub fn new(
        shards: Vec<(ShardId, usize, Option<ShardLoad>)>,
        proxies: Vec<(u32, Option<ProxyLoad>)>,
    ) -> TopologyView {
        let mut totals = Totals {
            shards: shards.len(),
            proxies: proxies.len(),
            ..Totals::default()
        };
        for load in shards.iter().filter_map(|(_, _, load)| load.as_ref()) {
            totals.upstream_subscriptions += load.upstream_subscriptions;
        }
        for load in proxies.iter().filter_map(|(_, load)| load.as_ref()) {
            totals.sessions += load.sessions;
            totals.client_subscriptions += load.client_subscriptions;
            totals.filters += load.filters;
        }
        TopologyView {
            slots: SLOTS,
            shards: shards
                .into_iter()
                .map(|(index, slots, load)| ShardView {
                    index,
                    slots,
                    answered: load.is_some(),
                    load,
                })
                .collect(),
            proxies: proxies
                .into_iter()
                .map(|(index, load)| ProxyView {
                    index,
                    answered: load.is_some(),
                    load,
                })
                .collect(),
            totals,
        }
    }
}

impl Topology {
    /// The live topology, each actor given `deadline` to answer.
    pub async fn describe(&self, deadline: Duration) -> TopologyView {
        let map = self.distributor.current();
        let shards = join_all(map.shards.iter().enumerate().map(|(index, shard)| {
            let slots = map.slots_of(index);
            async move {
                let load = ask(&shard.addr, DescribeShard, deadline).await.ok();
                (shard.id, slots, load)
            }
        }));
        let proxies = join_all(
            self.directory
                .proxies()
                .into_iter()
                .map(|proxy| async move {
                    let load = ask(&proxy.addr, DescribeProxy, deadline).await.ok();
                    (proxy.id.0, load)
                }),
        );
        let (shards, proxies) = futures_util::future::join(shards, proxies).await;
        TopologyView::new(shards, proxies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_what_answered_and_absent_figures_are_left_out() {
        let shard = |upstream| ShardLoad {
            retained_events: 5,
            upstream_subscriptions: upstream,
            queue_depth: 0,
        };
        let proxy = ProxyLoad {
            sessions: 1000,
            client_subscriptions: 1002,
            filters: 2,
            queue_depth: 1,
            forwarding: 0,
        };
        let view = TopologyView::new(
            vec![
                (0, 512, Some(shard(2))),
                (1, 512, None),
                (3, 0, Some(shard(1))),
            ],
            vec![(0, Some(proxy)), (1, None)],
        );
        assert_eq!(
            view.totals,
            Totals {
                shards: 3,
                proxies: 2,
                sessions: 1000,
                client_subscriptions: 1002,
                filters: 2,
                upstream_subscriptions: 3,
            }
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["slots"], 1024);
        assert_eq!(
            json["shards"][0],
            serde_json::json!({"index": 0, "slots": 512, "answered": true,
                "retained_events": 5, "upstream_subscriptions": 2, "queue_depth": 0})
        );
        assert_eq!(
            json["shards"][1],
            serde_json::json!({"index": 1, "slots": 512, "answered": false})
        );
        assert_eq!(json["proxies"][0]["sessions"], 1000);
        assert_eq!(
            json["proxies"][1],
            serde_json::json!({"index": 1, "answered": false})
        );
    }
}
