//! `BrokerShard`: one partition of the event stream.
//!
//! Owns: the shard's sequence and retention ring (for `cursor=earliest`), and the
//! aggregated subscription index of the proxies (one entry per distinct filter a
//! proxy needs, however many clients share it).
//! Receives: `Publish` from the HTTP publish edge (via the distributor);
//! `AddUpstream`, `RemoveUpstream` and `Replay` from proxies. Sends: one `Deliver`
//! per proxy per publish batch, carrying only the events that proxy asked for, each
//! stamped with the shard's sequence number.
//! Bounds: publishers reserve a slot in `depth` before sending (refused with 503 above
//! `publish.shard_queue`); the slot is released when every proxy has taken the batch,
//! so the bound covers the whole shard → proxy edge, not just this mailbox.
//! On stop: pending `Publish` replies fail, and publishers answer 503.

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::watch;

use super::proxy::{Deliver, EventProxy, ProxyId};
use crate::account::AccountIdx;
use crate::event::SharedEvent;
use crate::filter::{Filter, SubscriptionIndex};
use crate::limits::fair_share::ShareSlot;
use crate::metrics::Metrics;
use crate::retention::{Retention, Stamped};

/// Publish a batch of events (all owned by this shard, in order). Resolves once every
/// proxy that wants any of them has taken them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    /// Events in publication order.
    pub events: Vec<SharedEvent>,
    /// The publishing account's slot of its share of this shard's queue, held until
    /// the batch is handed on, like the shard's own `depth` slot.
    pub slot: ShareSlot,
}

const _: () = assert!(std::mem::size_of::<Publish>() <= 32);

/// A proxy's filter went from 0 to 1 local subscription: start forwarding matches.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddUpstream {
    /// The subscribing proxy.
    pub proxy: ProxyId,
    /// Its address, kept for forwarding.
    pub addr: Addr<EventProxy>,
    /// Its depth gauge, raised per forwarded batch.
    pub depth: IntGauge,
    /// The proxy's key for this filter.
    pub key: u32,
    /// The account the filter belongs to.
    pub account: u32,
    /// The filter.
    pub filter: Arc<Filter>,
}

/// A proxy no longer needs a filter (after its grace period at 0).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveUpstream {
    /// The proxy.
    pub proxy: ProxyId,
    /// Its key for the filter.
    pub key: u32,
}

/// Retained events of an account that match any of the filters (`cursor=earliest`),
/// and the sequence number they go up to: events the proxy later receives with a
/// higher number are new to it, the others it has seen here.
#[derive(Message)]
#[rtype(result = "Replayed")]
pub struct Replay {
    /// The account.
    pub account: AccountIdx,
    /// The client's subscription filters.
    pub filters: Vec<Arc<Filter>>,
}

/// The answer to [`Replay`].
#[derive(Debug, MessageResponse)]
pub struct Replayed {
    /// Matching retained events, oldest first.
    pub events: Vec<Stamped>,
    /// The shard's last sequence number when it answered.
    pub watermark: u64,
}

/// What a shard holds, for the live topology (`GET /v1/Admin/Topology`).
#[derive(Message)]
#[rtype(result = "ShardLoad")]
pub struct DescribeShard;

/// The answer to [`DescribeShard`].
#[derive(Debug, Clone, Copy, serde::Serialize, MessageResponse)]
pub struct ShardLoad {
    /// Events it retains for `cursor=earliest`.
    pub retained_events: usize,
    /// The proxies' distinct filters registered with it.
    pub upstream_subscriptions: usize,
    /// Publish batches queued for it.
    pub queue_depth: i64,
}

/// Keeps the shards' `publish.shard_queue` slots taken while held, so tests can fill
/// a queue without racing the shard: a held shard forwards each batch as usual and
/// only gives the batch's slot back once released. Only a [`crate::Config`] built in
/// code can carry one (the config file, environment and command line cannot), and
/// the server never builds one itself.
#[derive(Debug, Clone)]
pub struct ShardHold(Arc<watch::Sender<bool>>);

impl ShardHold {
    /// A hold that is released until [`ShardHold::hold`].
    pub fn new() -> ShardHold {
        ShardHold(Arc::new(watch::Sender::new(false)))
    }

    /// From now on, batches keep their queue slots.
    pub fn hold(&self) {
        self.0.send_replace(true);
    }

    /// Gives back the slots kept so far, and keeps no more.
    pub fn release(&self) {
        self.0.send_replace(false);
    }

    async fn released(&self) {
        // The sender lives in `self`, so waiting cannot fail.
        let _ = self.0.subscribe().wait_for(|held| !held).await;
    }
}

impl Default for ShardHold {
    fn default() -> ShardHold {
        ShardHold::new()
    }
}

/// The same hold, not an equal state: configs compare equal when they share it.
impl PartialEq for ShardHold {
    fn eq(&self, other: &ShardHold) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

struct ProxyLink {
    addr: Addr<EventProxy>,
    depth: IntGauge,
}

/// One broker shard (see the module docs).
pub struct BrokerShard {
    index: u16,
    retention: Retention,
    upstream: SubscriptionIndex<u64>,
    proxies: FxHashMap<ProxyId, ProxyLink>,
    depth: IntGauge,
    /// `switchboard_filter_evaluations_total{actor="shard"}`.
    evaluations: IntCounter,
    metrics: Metrics,
    scratch: Vec<u64>,
    hold: Option<ShardHold>,
}

impl BrokerShard {
    /// A shard with an empty index; `index` is its place in the shard map, carried in
    /// every `Deliver` so proxies can tell shards' sequences apart. `hold` is a
    /// test's [`ShardHold`], `None` in a real server.
    pub fn new(
        index: u16,
        retention: (usize, Duration),
        depth: IntGauge,
        metrics: Metrics,
        hold: Option<ShardHold>,
    ) -> BrokerShard {
        BrokerShard {
            index,
            retention: Retention::new(retention.0, retention.1),
            upstream: SubscriptionIndex::new(),
            proxies: FxHashMap::default(),
            depth,
            evaluations: metrics.filter_evaluations.with_label_values(&["shard"]),
            metrics,
            scratch: Vec::new(),
            hold,
        }
    }
}

impl Actor for BrokerShard {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.metrics.shards.inc();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.metrics.shards.dec();
        self.metrics.shard_retained.sub(self.retention.len() as i64);
    }
}

/// Upstream index key: proxy in the high bits so matches group by proxy.
fn upstream_key(proxy: ProxyId, key: u32) -> u64 {
    (u64::from(proxy.0) << 32) | u64::from(key)
}

impl Handler<Publish> for BrokerShard {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        let mut batches: Vec<(ProxyId, Vec<Stamped>)> = Vec::new();
        let now = Instant::now();
        let mut evaluated = 0;
        for event in msg.events {
            let (event, evicted) = self.retention.push(event, now);
            self.metrics.shard_retained.add(1 - evicted as i64);
            let event = &event;
            self.scratch.clear();
            evaluated += self.upstream.matches(
                event.event.account.0,
                &event.event.fields(),
                &mut self.scratch,
            );
            let mut last = None;
            for key in &self.scratch {
                let proxy = ProxyId((key >> 32) as u16);
                if last == Some(proxy) {
                    continue; // keys are sorted, so one proxy's keys are adjacent
                }
                last = Some(proxy);
                match batches.iter_mut().find(|(p, _)| *p == proxy) {
                    Some((_, events)) => events.push(event.clone()),
                    None => batches.push((proxy, vec![event.clone()])),
                }
            }
        }
        self.evaluations.inc_by(evaluated as u64);
        let mut acks = Vec::with_capacity(batches.len());
        for (proxy, events) in batches {
            if let Some(link) = self.proxies.get(&proxy) {
                link.depth.inc();
                // `send` always enqueues (actix #515); the bound is this shard's own
                // depth, which is only released once these acks come back.
                acks.push(link.addr.send(Deliver {
                    shard: self.index,
                    events,
                }));
            }
        }
        let depth = self.depth.clone();
        let slot = msg.slot;
        let hold = self.hold.clone();
        Box::pin(async move {
            for result in join_all(acks).await {
                if let Err(error) = result {
                    tracing::warn!(cause = %error, "a proxy went away during delivery");
                }
            }
            if let Some(hold) = hold {
                hold.released().await;
            }
            depth.dec();
            drop(slot);
        })
    }
}

impl Handler<AddUpstream> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: AddUpstream, _ctx: &mut Self::Context) {
        self.proxies.entry(msg.proxy).or_insert(ProxyLink {
            addr: msg.addr,
            depth: msg.depth,
        });
        self.upstream
            .insert(msg.account, upstream_key(msg.proxy, msg.key), msg.filter);
        self.metrics.aggregated_subscriptions.inc();
    }
}

impl Handler<RemoveUpstream> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: RemoveUpstream, _ctx: &mut Self::Context) {
        if self
            .upstream
            .remove(upstream_key(msg.proxy, msg.key))
            .is_some()
        {
            self.metrics.aggregated_subscriptions.dec();
        }
    }
}

impl Handler<DescribeShard> for BrokerShard {
    type Result = ShardLoad;

    fn handle(&mut self, _: DescribeShard, _ctx: &mut Self::Context) -> ShardLoad {
        ShardLoad {
            retained_events: self.retention.len(),
            upstream_subscriptions: self.upstream.len(),
            queue_depth: self.depth.get(),
        }
    }
}

impl Handler<Replay> for BrokerShard {
    type Result = Replayed;

    fn handle(&mut self, msg: Replay, _ctx: &mut Self::Context) -> Replayed {
        let (events, evicted) = self
            .retention
            .matching(msg.account, &msg.filters, Instant::now());
        self.metrics.shard_retained.sub(evicted as i64);
        Replayed {
            events,
            watermark: self.retention.last_seq(),
        }
    }
}
