//! `BrokerShard`: one partition of the event stream.
//!
//! Owns: the shard's sequence and retention ring (for `cursor=earliest`), and the
//! aggregated subscription index of the proxies (one entry per distinct filter a
//! proxy needs, however many clients share it).
//! Receives: `Publish` from the HTTP publish edge (via the distributor);
//! `AddUpstream`, `RemoveUpstream` and `Replay` from proxies; `Expect` and `Release`
//! from the shard supervisor and `Adopt` from another shard when slots move (see
//! [`super::handoff`]). Sends: one `Deliver` per proxy per publish batch, carrying
//! only the events that proxy asked for, each stamped with the shard's sequence
//! number.
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
use tokio::sync::{oneshot, watch};

use super::distributor::{call_slot, slot_of};
use super::handoff::Incoming;
use super::placement::Placeable;
use super::proxy::{Deliver, EventProxy, ProxyId};
use super::restart::Running;
use super::slots::ShardId;
use crate::account::AccountIdx;
use crate::cluster::order::Ticket;
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
    /// Cluster mode: the stream message these events came in, passed on to every
    /// proxy that takes some and dropped here once routed (then, once every
    /// proxy has pushed its part, the message has landed).
    pub ticket: Option<Arc<Ticket>>,
}

const _: () = assert!(std::mem::size_of::<Publish>() <= 40);

/// A proxy's filter went from 0 to 1 local subscription: start forwarding matches.
/// `ack` is answered once the filter is in the index (sent with `do_send`, so it is
/// enqueued at once whatever the mailbox holds: see `Distributor::with_map`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddUpstream {
    /// Told when the filter is registered.
    pub ack: oneshot::Sender<()>,
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
    /// The answering shard (its sequence numbers are its own).
    pub shard: ShardId,
    /// Matching retained events, oldest first.
    pub events: Vec<Stamped>,
    /// The shard's last sequence number when it answered.
    pub watermark: u64,
}

/// From the supervisor, before the map gives these slots to this shard: hold
/// publishes until their [`Adopt`] arrives (see [`super::handoff`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Expect {
    /// The slots.
    pub slots: Vec<u16>,
}

/// From the supervisor, once the map gives these slots to `to`: everything
/// published here before is routed by the time this is handled, so hand the slots'
/// retained events and call-pinned filters to `to`. Sent with `do_send` under the
/// map's lock (so it is queued at once); `done` is told once `to` has them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    /// The slots.
    pub slots: Vec<u16>,
    /// Their new owner.
    pub to: Addr<BrokerShard>,
    /// Told when the new owner has adopted them.
    pub done: oneshot::Sender<()>,
}

/// From a shard releasing these slots: what it held of them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt {
    /// The slots.
    pub slots: Vec<u16>,
    /// Their retained events, oldest first, with their arrival times.
    pub retained: Vec<(SharedEvent, Instant)>,
    /// Upstream filters pinned to calls of these slots: key, account, filter.
    pub upstreams: Vec<(u64, u32, Arc<Filter>)>,
    /// The proxies those filters belong to.
    pub links: Vec<(ProxyId, Addr<EventProxy>, IntGauge)>,
}

/// From a proxy taking sessions over from another: this shard's last sequence
/// number, answered after the registrations the proxy queued before it, so every
/// later event those want reaches the proxy (see `proxy::moving`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watermark {
    /// Told this shard's id and last sequence number.
    pub ack: oneshot::Sender<(ShardId, u64)>,
}

/// From the proxy supervisor: a proxy retired; forget its registrations and link.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachProxy {
    /// The retired proxy.
    pub proxy: ProxyId,
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
///
/// It can also make a shard panic while routing an event of a given type
/// ([`ShardHold::poison`]), so tests can replay a bug that panics mid-batch, hold
/// back the answers to `cursor=earliest` replays ([`ShardHold::hold_replays`]), so
/// tests can show that a slow replay holds up nobody else, hold a session move
/// between its two cuts ([`ShardHold::hold_watermarks`]), and stop a shard
/// ([`ShardHold::stop_shard`]), so tests can show it is restarted.
#[derive(Debug, Clone)]
pub struct ShardHold {
    held: Arc<watch::Sender<bool>>,
    replays_held: Arc<watch::Sender<bool>>,
    watermarks_held: Arc<watch::Sender<bool>>,
    /// Watermark answers waiting for [`ShardHold::release_watermarks`].
    watermarks_waiting: Arc<std::sync::atomic::AtomicUsize>,
    poison: Arc<parking_lot::Mutex<Option<Box<str>>>>,
    /// The id of a shard to stop after its next batch, plus one (0: none).
    stop: Arc<std::sync::atomic::AtomicU32>,
}

impl ShardHold {
    /// A hold that is released until [`ShardHold::hold`].
    pub fn new() -> ShardHold {
        ShardHold {
            held: Arc::new(watch::Sender::new(false)),
            replays_held: Arc::new(watch::Sender::new(false)),
            watermarks_held: Arc::new(watch::Sender::new(false)),
            watermarks_waiting: Arc::default(),
            poison: Arc::default(),
            stop: Arc::default(),
        }
    }

    /// From now on, the answers to a proxy's [`Watermark`] (a session move's cut,
    /// taken when asked) wait for [`ShardHold::release_watermarks`]: the move
    /// stays in the middle, both proxies holding events, for as long as a test
    /// wants.
    pub fn hold_watermarks(&self) {
        self.watermarks_held.send_replace(true);
    }

    /// Sends the watermark answers held so far, and holds no more.
    pub fn release_watermarks(&self) {
        self.watermarks_held.send_replace(false);
    }

    /// How many watermark answers are held now.
    pub fn watermarks_waiting(&self) -> usize {
        self.watermarks_waiting
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Shard `id` stops (its actor ends, as one killed by a bug would) once it has
    /// routed its next batch; its supervisor restarts it ([`super::restart`]).
    pub fn stop_shard(&self, id: ShardId) {
        self.stop
            .store(u32::from(id) + 1, std::sync::atomic::Ordering::SeqCst);
    }

    fn take_stop(&self, id: ShardId) -> bool {
        self.stop
            .compare_exchange(
                u32::from(id) + 1,
                0,
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
            )
            .is_ok()
    }

    /// From now on, replays are answered (as of when they were asked) only once
    /// [`ShardHold::release_replays`] is called.
    pub fn hold_replays(&self) {
        self.replays_held.send_replace(true);
    }

    /// Sends the replay answers held so far, and holds no more.
    pub fn release_replays(&self) {
        self.replays_held.send_replace(false);
    }

    async fn replays_released(&self) {
        let _ = self.replays_held.subscribe().wait_for(|held| !held).await;
    }

    /// From now on, batches keep their queue slots.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Gives back the slots kept so far, and keeps no more.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// From now on, a shard routing an event of this type panics.
    pub fn poison(&self, type_name: &str) {
        *self.poison.lock() = Some(type_name.into());
    }

    fn is_poison(&self, type_name: &str) -> bool {
        self.poison.lock().as_deref() == Some(type_name)
    }

    async fn released(&self) {
        // The sender lives in `self`, so waiting cannot fail.
        let _ = self.held.subscribe().wait_for(|held| !held).await;
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
        Arc::ptr_eq(&self.held, &other.held)
    }
}

struct ProxyLink {
    addr: Addr<EventProxy>,
    depth: IntGauge,
}

/// What every shard is made with, so the ones made at start and the ones the
/// supervisor adds later are alike.
#[derive(Clone)]
pub struct ShardFactory {
    /// Retention: most events, oldest age.
    pub retention: (usize, Duration),
    /// The server's metrics.
    pub metrics: Metrics,
    /// A test's [`ShardHold`].
    pub hold: Option<ShardHold>,
    /// actix's mailbox capacity hint.
    pub mailbox: usize,
}

impl ShardFactory {
    /// Shard `id` and its depth gauge (`switchboard_mailbox_depth{actor="shard"}`).
    pub fn make(&self, id: ShardId) -> (BrokerShard, IntGauge) {
        let depth = self
            .metrics
            .mailbox_depth
            .with_label_values(&["shard", &id.to_string()]);
        let shard = BrokerShard::new(
            id,
            self.retention,
            depth.clone(),
            self.metrics.clone(),
            self.hold.clone(),
        );
        (shard, depth)
    }
}

/// One broker shard (see the module docs).
pub struct BrokerShard {
    id: ShardId,
    /// Slots on their way here, and the publishes held for them.
    incoming: Incoming<Publish>,
    /// Replays asked for while a hand-off was awaited, answered once it arrives.
    waiting_replays: Vec<(Replay, oneshot::Sender<Replayed>)>,
    retention: Retention,
    upstream: SubscriptionIndex<u64>,
    proxies: FxHashMap<ProxyId, ProxyLink>,
    depth: IntGauge,
    /// `switchboard_filter_evaluations_total{actor="shard"}`.
    evaluations: IntCounter,
    /// `switchboard_shard_events_total{index}` of this shard.
    routed: IntCounter,
    /// `switchboard_shard_busy_seconds_total{index}` of this shard.
    busy: prometheus::Counter,
    metrics: Metrics,
    scratch: Vec<u64>,
    hold: Option<ShardHold>,
    /// This shard in `switchboard_shards`.
    _running: Running,
}

impl BrokerShard {
    /// A shard with an empty index; `id` is carried in every `Deliver` so proxies
    /// can tell shards' sequences apart. `hold` is a test's [`ShardHold`], `None` in
    /// a real server.
    pub fn new(
        id: ShardId,
        retention: (usize, Duration),
        depth: IntGauge,
        metrics: Metrics,
        hold: Option<ShardHold>,
    ) -> BrokerShard {
        BrokerShard {
            id,
            incoming: Incoming::default(),
            waiting_replays: Vec::new(),
            retention: Retention::new(retention.0, retention.1),
            upstream: SubscriptionIndex::new(),
            proxies: FxHashMap::default(),
            depth,
            evaluations: metrics.filter_evaluations.with_label_values(&["shard"]),
            routed: metrics.shard_events.with_label_values(&[&id.to_string()]),
            busy: metrics.shard_busy.with_label_values(&[&id.to_string()]),
            _running: Running::new(metrics.shards.clone()),
            metrics,
            scratch: Vec::new(),
            hold,
        }
    }
}

impl Actor for BrokerShard {
    type Context = Context<Self>;
}

/// Restarted in place (see [`super::restart`]): its slots, retention, registrations
/// and queued publishes are all still here.
impl Supervised for BrokerShard {}

impl Placeable for BrokerShard {
    const NAME: &'static str = "shard";
}

impl Drop for BrokerShard {
    fn drop(&mut self) {
        self.metrics.shard_retained.sub(self.retention.len() as i64);
    }
}

/// Upstream index key: proxy in the high bits so matches group by proxy.
fn upstream_key(proxy: ProxyId, key: u32) -> u64 {
    (u64::from(proxy.0) << 32) | u64::from(key)
}

/// The proxy of an upstream index key.
fn proxy_of(key: u64) -> ProxyId {
    ProxyId((key >> 32) as u32)
}

impl Handler<Publish> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        if let Some(msg) = self.incoming.admit(msg) {
            let started = Instant::now();
            self.route_guarded(msg);
            self.busy.inc_by(started.elapsed().as_secs_f64());
        }
        if self.hold.as_ref().is_some_and(|h| h.take_stop(self.id)) {
            ctx.stop();
        }
    }
}

impl BrokerShard {
    /// Routes a batch; a panic while routing it (a bug) drops that batch, counts it
    /// and gives its queue slot back, and the shard goes on with the next: one bad
    /// batch must not take a shard's calls, retention and registrations down with
    /// it, nor leave its publishes answering 503 for good.
    fn route_guarded(&mut self, msg: Publish) {
        let depth = self.depth.clone();
        let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.route(msg)));
        if routed.is_err() {
            // `route` spawns the task that gives the slot back last, so it never ran;
            // the batch (with its share slot) was dropped by the unwind.
            depth.dec();
            self.metrics.shard_panics.inc();
            tracing::error!(
                shard = self.id,
                "routing a batch panicked: the batch is dropped, the shard goes on"
            );
        }
    }

    /// Stamps, retains and forwards a batch; its queue slots are given back (in a
    /// task of their own) once every proxy has taken its part.
    fn route(&mut self, msg: Publish) {
        self.routed.inc_by(msg.events.len() as u64);
        let mut batches: Vec<(ProxyId, Vec<Stamped>)> = Vec::new();
        let now = Instant::now();
        let mut evaluated = 0;
        for event in msg.events {
            if self
                .hold
                .as_ref()
                .is_some_and(|h| h.is_poison(&event.type_name))
            {
                panic!("a test poisoned events of this type");
            }
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
                let proxy = proxy_of(*key);
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
                // Queued at once whatever the proxy's mailbox holds (see `Deliver`);
                // the bound is this shard's own depth, released once these acks
                // come back.
                let (taken, ack) = oneshot::channel();
                link.addr.do_send(Deliver {
                    shard: self.id,
                    events,
                    taken,
                    ticket: msg.ticket.clone(),
                });
                acks.push(ack);
            }
        }
        let depth = self.depth.clone();
        let slot = msg.slot;
        let hold = self.hold.clone();
        actix::spawn(async move {
            if join_all(acks).await.iter().any(Result::is_err) {
                tracing::warn!("a proxy went away during delivery");
            }
            if let Some(hold) = hold {
                hold.released().await;
            }
            depth.dec();
            drop(slot);
        });
    }

    fn replayed(&mut self, msg: &Replay) -> Replayed {
        let (events, evicted) = self
            .retention
            .matching(msg.account, &msg.filters, Instant::now());
        self.metrics.shard_retained.sub(evicted as i64);
        Replayed {
            shard: self.id,
            events,
            watermark: self.retention.last_seq(),
        }
    }
}

impl Handler<Expect> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: Expect, _ctx: &mut Self::Context) {
        self.incoming.expect(&msg.slots);
    }
}

impl Handler<Release> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: Release, _ctx: &mut Self::Context) {
        let mut moving = [false; super::distributor::SLOTS];
        for &slot in &msg.slots {
            moving[usize::from(slot)] = true;
        }
        let retained = self.retention.take_where(|event| {
            moving[usize::from(slot_of(event.account, event.call_sid.as_deref()))]
        });
        self.metrics.shard_retained.sub(retained.len() as i64);
        // A filter pinned to a call lives where the call does; the others stay
        // registered here too, for the slots this shard keeps.
        let upstreams = self.upstream.take_where(|_, filter| {
            filter
                .call_sid_eq()
                .is_some_and(|sid| moving[usize::from(call_slot(sid))])
        });
        self.metrics
            .aggregated_subscriptions
            .sub(upstreams.len() as i64);
        let mut links: Vec<(ProxyId, Addr<EventProxy>, IntGauge)> = Vec::new();
        for (key, _, _) in &upstreams {
            let proxy = proxy_of(*key);
            if links.iter().all(|(p, _, _)| *p != proxy) {
                if let Some(link) = self.proxies.get(&proxy) {
                    links.push((proxy, link.addr.clone(), link.depth.clone()));
                }
            }
        }
        let adopted = msg.to.send(Adopt {
            slots: msg.slots,
            retained,
            upstreams,
            links,
        });
        let done = msg.done;
        actix::spawn(async move {
            if let Err(error) = adopted.await {
                tracing::error!(cause = %error, "a shard went away while adopting slots");
            }
            let _ = done.send(());
        });
    }
}

impl Handler<Adopt> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: Adopt, _ctx: &mut Self::Context) {
        let now = Instant::now();
        let count = msg.retained.len() as i64;
        let evicted = self.retention.adopt(msg.retained, now);
        self.metrics.shard_retained.add(count - evicted as i64);
        for (proxy, addr, depth) in msg.links {
            self.proxies
                .entry(proxy)
                .or_insert(ProxyLink { addr, depth });
        }
        for (key, account, filter) in msg.upstreams {
            if self.upstream.insert(account, key, filter).is_none() {
                self.metrics.aggregated_subscriptions.inc();
            }
        }
        for publish in self.incoming.arrived(&msg.slots) {
            self.route_guarded(publish);
        }
        if !self.incoming.awaiting() {
            for (replay, reply) in std::mem::take(&mut self.waiting_replays) {
                let _ = reply.send(self.replayed(&replay));
            }
        }
    }
}

impl Handler<AddUpstream> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: AddUpstream, _ctx: &mut Self::Context) {
        self.proxies.entry(msg.proxy).or_insert(ProxyLink {
            addr: msg.addr,
            depth: msg.depth,
        });
        // A proxy may register a filter twice with a new shard (once for the shard's
        // arrival, once for a subscription made meanwhile): counted once.
        let key = upstream_key(msg.proxy, msg.key);
        if self.upstream.insert(msg.account, key, msg.filter).is_none() {
            self.metrics.aggregated_subscriptions.inc();
        }
        let _ = msg.ack.send(());
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

impl Handler<Watermark> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: Watermark, _ctx: &mut Self::Context) {
        let answer = (self.id, self.retention.last_seq());
        match self.hold.clone() {
            Some(hold) if *hold.watermarks_held.borrow() => {
                use std::sync::atomic::Ordering::SeqCst;
                hold.watermarks_waiting.fetch_add(1, SeqCst);
                actix::spawn(async move {
                    let _ = hold
                        .watermarks_held
                        .subscribe()
                        .wait_for(|held| !held)
                        .await;
                    hold.watermarks_waiting.fetch_sub(1, SeqCst);
                    let _ = msg.ack.send(answer);
                });
            }
            _ => {
                let _ = msg.ack.send(answer);
            }
        }
    }
}

impl Handler<DetachProxy> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: DetachProxy, _ctx: &mut Self::Context) {
        let removed = self
            .upstream
            .take_where(|key, _| proxy_of(key) == msg.proxy);
        self.metrics
            .aggregated_subscriptions
            .sub(removed.len() as i64);
        self.proxies.remove(&msg.proxy);
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
    type Result = ResponseFuture<Replayed>;

    fn handle(&mut self, msg: Replay, _ctx: &mut Self::Context) -> Self::Result {
        if !self.incoming.awaiting() {
            let replayed = self.replayed(&msg);
            let hold = self.hold.clone();
            return Box::pin(async move {
                if let Some(hold) = hold {
                    hold.replays_released().await;
                }
                replayed
            });
        }
        // Slots are on their way with their history: answer once it is here.
        let (tx, rx) = oneshot::channel();
        self.waiting_replays.push((msg, tx));
        let shard = self.id;
        Box::pin(async move {
            rx.await.unwrap_or(Replayed {
                shard,
                events: Vec::new(),
                watermark: 0,
            })
        })
    }
}
