//! The proxy supervisor: grows and shrinks the event proxies with their sessions
//! (docs/api.md §8, "Scaling inside a node").
//!
//! Every `scaling.interval_ms` it reads each proxy's sessions and asks
//! [`ProxyScaler`] what to do. Adding a proxy: make it (on a worker thread) and put
//! it in the directory, where new sessions find it as the least loaded. Retiring
//! one: the directory stops giving it new sessions, its sessions move to the others
//! a batch at a time ([`super::proxy::moving`]: no stream dropped, no event lost or
//! repeated), and once it holds none and no moved session's actor still writes to
//! it, it leaves the directory, the shards forget its registrations, and it stops
//! when the last handle on it goes. One topology change runs at a time, shared with
//! the shard supervisor: a move counts on the shard map staying as it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::ask::ask;
use super::directory::{Directory, ProxyHandle};
use super::distributor::Distributor;
use super::placement::{Placeable, Placement};
use super::proxy::{DescribeProxy, MoveOut, ProxyFactory, ProxyId};
use super::scaling::{Decision, Fill, ProxyScaler};
use super::shard::DetachProxy;
use crate::metrics::Metrics;

/// actix's default mailbox capacity, a back-pressure hint for senders that wait;
/// what reaches a proxy is bounded by its senders (shards' queues, sessions' quotas).
pub const PROXY_MAILBOX: usize = 16;

/// How long a retirement tries to move a proxy's sessions before giving up (and
/// letting it accept sessions again): sessions waiting on a request are skipped and
/// tried again, so a client busy for this long keeps its proxy.
const RETIRE_WITHIN: Duration = Duration::from_secs(10);
/// The longest one batch of moves may take before the retirement is abandoned.
const MOVE_DEADLINE: Duration = Duration::from_secs(5);
/// The pause between rounds of a retirement that moved nothing.
const RETRY: Duration = Duration::from_millis(20);

/// One topology change at a time (shards or proxies), shared by the supervisors.
pub type ChangeLock = Arc<Mutex<()>>;

/// What the proxy supervisor works with.
pub struct ProxySupervisor {
    directory: Arc<Directory>,
    distributor: Arc<Distributor>,
    placement: Arc<Placement>,
    factory: ProxyFactory,
    scaler: ProxyScaler,
    interval: Duration,
    changes: ChangeLock,
    next_id: u32,
    /// A retirement is under way: the next looks wait for it.
    busy: bool,
}

impl ProxySupervisor {
    /// A supervisor over the proxies in `directory`, adding proxies with ids after
    /// theirs.
    pub fn new(
        directory: Arc<Directory>,
        distributor: Arc<Distributor>,
        placement: Arc<Placement>,
        factory: ProxyFactory,
        scaler: ProxyScaler,
        interval: Duration,
        changes: ChangeLock,
    ) -> ProxySupervisor {
        let next_id = directory
            .proxies()
            .iter()
            .map(|p| p.id.0 + 1)
            .max()
            .unwrap_or(0);
        ProxySupervisor {
            directory,
            distributor,
            placement,
            factory,
            scaler,
            interval,
            changes,
            next_id,
            busy: false,
        }
    }

    fn look(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Ok(guard) = self.changes.clone().try_lock_owned() else {
            return; // the shard supervisor is changing the map
        };
        let fills: Vec<Fill> = self
            .directory
            .proxies()
            .iter()
            .map(|p| Fill {
                proxy: p.id,
                sessions: usize::try_from(p.sessions.get()).unwrap_or(0),
            })
            .collect();
        match self.scaler.decide(&fills, Instant::now()) {
            Decision::Hold => {}
            Decision::Add => self.add(),
            Decision::Retire(id) => {
                self.busy = true;
                let retiring = retire(
                    self.directory.clone(),
                    self.distributor.clone(),
                    id,
                    self.factory.metrics.clone(),
                    guard,
                );
                ctx.spawn(
                    fut::wrap_future::<_, Self>(retiring).map(|(), supervisor, _| {
                        supervisor.busy = false;
                    }),
                );
            }
        }
    }

    /// Makes a proxy and puts it in the directory: new sessions find it at once.
    fn add(&mut self) {
        let id = ProxyId(self.next_id);
        self.next_id += 1;
        let (proxy, sessions, depth) = self.factory.make(id);
        let addr = self.placement.spawn(id.0 as usize, PROXY_MAILBOX, proxy);
        self.directory.add(ProxyHandle {
            id,
            addr,
            sessions,
            depth,
        });
        let metrics = &self.factory.metrics;
        metrics.proxy_changes.with_label_values(&["added"]).inc();
        tracing::info!(proxy = id.0, "proxy added");
    }
}

impl Actor for ProxySupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |supervisor, ctx| supervisor.look(ctx));
    }
}

/// Restarted in place after a panic: a retirement under way is dropped with the
/// context's futures, so its proxy takes sessions again (no retirement is under
/// way any more) and the next look may start another.
impl Supervised for ProxySupervisor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.busy = false;
        for proxy in self.directory.proxies() {
            self.directory.start_accepting(proxy.id);
        }
    }
}

impl Placeable for ProxySupervisor {
    const NAME: &'static str = "supervisor";
}

/// Moves proxy `id`'s sessions to the others and retires it (see the module docs);
/// `_change` is held until it is done.
async fn retire(
    directory: Arc<Directory>,
    distributor: Arc<Distributor>,
    id: ProxyId,
    metrics: Metrics,
    _change: OwnedMutexGuard<()>,
) {
    let Some(handle) = directory.proxies().into_iter().find(|p| p.id == id) else {
        return;
    };
    directory.stop_accepting(id);
    if !empty_out(&directory, &handle).await {
        directory.start_accepting(id);
        tracing::warn!(proxy = id.0, "proxy kept: its sessions could not all move");
        return;
    }
    directory.remove(id);
    // Queued with the map held, like every registration: each shard forgets the
    // proxy after whatever it was sent before.
    distributor.with_map(|map| {
        for shard in &map.shards {
            shard.addr.do_send(DetachProxy { proxy: id });
        }
    });
    let label = id.0.to_string();
    let _ = metrics.proxy_sessions.remove_label_values(&[&label]);
    let _ = metrics
        .mailbox_depth
        .remove_label_values(&["proxy", &label]);
    metrics.proxy_changes.with_label_values(&["retired"]).inc();
    tracing::info!(proxy = id.0, "proxy retired");
    // The proxy stops once the last handle on it is dropped (this one among them).
}

/// Moves every session of the proxy to the accepting ones, a share to each, round
/// after round, until it holds none and no moved session's actor writes to it any
/// more; false if that did not happen within [`RETIRE_WITHIN`].
async fn empty_out(directory: &Directory, proxy: &ProxyHandle) -> bool {
    let until = tokio::time::Instant::now() + RETIRE_WITHIN;
    while tokio::time::Instant::now() < until {
        let Ok(load) = ask(&proxy.addr, DescribeProxy, MOVE_DEADLINE).await else {
            return false;
        };
        if load.sessions == 0 && load.forwarding == 0 {
            return true;
        }
        let targets = directory.accepting();
        if targets.is_empty() {
            return false;
        }
        let share = load.sessions.div_ceil(targets.len());
        let mut moved = 0;
        for target in targets.into_iter().filter(|_| share > 0) {
            let (done, moved_now) = oneshot::channel();
            proxy.addr.do_send(MoveOut {
                to: target,
                max: share,
                done,
            });
            match tokio::time::timeout(MOVE_DEADLINE, moved_now).await {
                Ok(Ok(n)) => moved += n,
                _ => {
                    tracing::error!(proxy = proxy.id.0, "a move did not finish in time");
                    return false;
                }
            }
        }
        if moved == 0 {
            tokio::time::sleep(RETRY).await;
        }
    }
    false
}
