//! The shard supervisor: grows and shrinks the broker shards with load (docs/api.md §8).
//!
//! Every `scaling.interval_ms` it reads each shard's events per second and asks
//! [`Scaler`] what to do. Adding a shard: make it (on a worker thread), put it in the
//! map with no slots, have every proxy register its filters with it, then give it
//! its share of slots. Retiring one: deal its slots to the others, then drop it from
//! the map; it stops once its mailbox is empty. Slots move as the
//! [`handoff`](super::handoff) module describes, so every call's events keep their
//! order across the move and none is lost; one change runs at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::directory::Directory;
use super::distributor::{Distributor, ShardHandle, ShardMap};
use super::placement::{Placeable, Placement};
use super::proxy::AttachShard;
use super::proxy_supervisor::ChangeLock;
use super::scaling::{Decision, Load, Scaler};
use super::shard::{Expect, Release, ShardFactory};
use super::slots::{self, Move, ShardId};
use crate::metrics::Metrics;

/// Sets `switchboard_shard_slots{index}` for every shard of `map`.
pub fn export_slots(map: &ShardMap, metrics: &Metrics) {
    for (position, shard) in map.shards.iter().enumerate() {
        metrics
            .shard_slots
            .with_label_values(&[&shard.id.to_string()])
            .set(map.slots_of(position) as i64);
    }
}

/// A shard's counters at a look.
#[derive(Debug, Clone, Copy)]
struct Seen {
    events: u64,
    busy_secs: f64,
}

/// What the supervisor works with.
pub struct ShardSupervisor {
    distributor: Arc<Distributor>,
    placement: Arc<Placement>,
    directory: Arc<Directory>,
    factory: ShardFactory,
    scaler: Scaler,
    interval: Duration,
    changes: ChangeLock,
    /// What each shard had done at the last look, and when that was.
    last: (FxHashMap<ShardId, Seen>, Instant),
    next_id: ShardId,
    /// A change is under way: the next looks wait for it.
    busy: bool,
}

impl ShardSupervisor {
    /// A supervisor over the shards in `distributor`, adding shards with ids after
    /// theirs.
    pub fn new(
        distributor: Arc<Distributor>,
        placement: Arc<Placement>,
        directory: Arc<Directory>,
        factory: ShardFactory,
        scaler: Scaler,
        interval: Duration,
        changes: ChangeLock,
    ) -> ShardSupervisor {
        let next_id = distributor
            .current()
            .shards
            .iter()
            .map(|s| s.id + 1)
            .max()
            .unwrap_or(0);
        ShardSupervisor {
            distributor,
            placement,
            directory,
            factory,
            scaler,
            interval,
            changes,
            last: (FxHashMap::default(), Instant::now()),
            next_id,
            busy: false,
        }
    }

    /// Each shard's events per second and busy fraction since the last look, and its
    /// queue now.
    fn loads(&mut self) -> Vec<Load> {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last.1).as_secs_f64();
        let per_sec = |delta: f64| if elapsed > 0.0 { delta / elapsed } else { 0.0 };
        let map = self.distributor.current();
        let mut counts = FxHashMap::default();
        let loads = map
            .shards
            .iter()
            .map(|shard| {
                let label = shard.id.to_string();
                let metrics = &self.factory.metrics;
                let now_seen = Seen {
                    events: metrics.shard_events.with_label_values(&[&label]).get(),
                    busy_secs: metrics.shard_busy.with_label_values(&[&label]).get(),
                };
                counts.insert(shard.id, now_seen);
                let before = self.last.0.get(&shard.id).copied().unwrap_or(now_seen);
                Load {
                    shard: shard.id,
                    events_per_sec: per_sec(now_seen.events.saturating_sub(before.events) as f64),
                    busy: per_sec((now_seen.busy_secs - before.busy_secs).max(0.0)),
                    queued: shard.depth.get(),
                }
            })
            .collect();
        self.last = (counts, now);
        loads
    }

    fn look(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Ok(guard) = self.changes.clone().try_lock_owned() else {
            return; // the proxy supervisor is moving sessions
        };
        let loads = self.loads();
        let change: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> =
            match self.scaler.decide(&loads, Instant::now()) {
                Decision::Hold => return,
                Decision::Add => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let (shard, depth) = self.factory.make(id);
                    let addr = self
                        .placement
                        .spawn(usize::from(id), self.factory.mailbox, shard);
                    let handle = ShardHandle { id, addr, depth };
                    let proxies = self.directory.proxies();
                    let proxies = proxies.into_iter().map(|p| p.addr).collect();
                    Box::pin(add(
                        self.distributor.clone(),
                        proxies,
                        handle,
                        self.factory.metrics.clone(),
                    ))
                }
                Decision::Retire(id) => Box::pin(retire(
                    self.distributor.clone(),
                    id,
                    self.factory.metrics.clone(),
                )),
            };
        self.busy = true;
        let change = async move {
            change.await;
            drop(guard);
        };
        ctx.spawn(
            fut::wrap_future::<_, Self>(change).map(|(), supervisor, _| {
                supervisor.busy = false;
            }),
        );
    }
}

impl Actor for ShardSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |supervisor, ctx| supervisor.look(ctx));
    }
}

/// Restarted in place after a panic: a change under way is dropped with the
/// context's futures, so the next look may start another.
impl Supervised for ShardSupervisor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.busy = false;
    }
}

impl Placeable for ShardSupervisor {
    const NAME: &'static str = "supervisor";
}

/// Puts `shard` in the map, has every proxy register with it, then gives it its
/// share of slots.
async fn add(
    distributor: Arc<Distributor>,
    proxies: Vec<Addr<super::proxy::EventProxy>>,
    shard: ShardHandle,
    metrics: Metrics,
) {
    let (id, addr) = (shard.id, shard.addr.clone());
    distributor.replace(|map| {
        let mut shards = map.shards.clone();
        shards.push(shard);
        ShardMap::with_owners(shards, map.owner_ids())
    });
    let attached = proxies.iter().map(|proxy| {
        proxy.send(AttachShard {
            shard: addr.clone(),
        })
    });
    if join_all(attached).await.iter().any(Result::is_err) {
        tracing::warn!(shard = id, "a proxy went away while a shard was added");
    }
    let (mut owners, others) = owners_and_others(&distributor, id);
    let moves = slots::take_for_new(&mut owners, &others, id);
    hand_over(&distributor, owners, &moves, |_| true).await;
    metrics.shard_changes.with_label_values(&["added"]).inc();
    export_slots(&distributor.current(), &metrics);
    tracing::info!(shard = id, slots = moves.len(), "shard added");
}

/// Deals shard `id`'s slots to the others and drops it from the map.
async fn retire(distributor: Arc<Distributor>, id: ShardId, metrics: Metrics) {
    let (mut owners, remaining) = owners_and_others(&distributor, id);
    if remaining.is_empty() {
        return;
    }
    let moves = slots::give_away(&mut owners, id, &remaining);
    hand_over(&distributor, owners, &moves, |shard| shard != id).await;
    let label = id.to_string();
    let _ = metrics.shard_slots.remove_label_values(&[&label]);
    let _ = metrics.shard_events.remove_label_values(&[&label]);
    let _ = metrics.shard_busy.remove_label_values(&[&label]);
    let _ = metrics
        .mailbox_depth
        .remove_label_values(&["shard", &label]);
    metrics.shard_changes.with_label_values(&["retired"]).inc();
    export_slots(&distributor.current(), &metrics);
    tracing::info!(shard = id, slots = moves.len(), "shard retired");
}

/// The current owner of each slot, and the ids of the shards other than `id`.
fn owners_and_others(distributor: &Distributor, id: ShardId) -> (Vec<ShardId>, Vec<ShardId>) {
    let map = distributor.current();
    let others = map
        .shards
        .iter()
        .map(|s| s.id)
        .filter(|&s| s != id)
        .collect();
    (map.owner_ids(), others)
}

/// Moves the slots: each new owner is told to expect its slots, then (with no
/// publish in between) the map becomes `owners` over the shards `keep` keeps and
/// each old owner is told to release; resolves once every new owner has its slots.
async fn hand_over(
    distributor: &Distributor,
    owners: Vec<ShardId>,
    moves: &[Move],
    keep: impl Fn(ShardId) -> bool,
) {
    let mut by_pair: FxHashMap<(ShardId, ShardId), Vec<u16>> = FxHashMap::default();
    for m in moves {
        by_pair.entry((m.from, m.to)).or_default().push(m.slot);
    }
    let mut done = Vec::with_capacity(by_pair.len());
    distributor.replace(|map| {
        let addr = |id: ShardId| {
            map.shards
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.addr.clone())
                .expect("a moving slot's shards are in the map")
        };
        for ((_, to), slots) in &by_pair {
            addr(*to).do_send(Expect {
                slots: slots.clone(),
            });
        }
        for ((from, to), slots) in by_pair {
            let (tx, rx) = oneshot::channel();
            addr(from).do_send(Release {
                slots,
                to: addr(to),
                done: tx,
            });
            done.push(rx);
        }
        let shards = map.shards.iter().filter(|s| keep(s.id)).cloned().collect();
        ShardMap::with_owners(shards, owners)
    });
    if join_all(done).await.iter().any(Result::is_err) {
        tracing::error!("a shard went away while handing slots over");
    }
}
