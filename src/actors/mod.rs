//! The actors of the event router and the topology that wires them.
//!
//! Data flow of one event: HTTP publish → [`distributor`] picks the shard by call sid →
//! [`shard::BrokerShard`] matches its proxies' aggregated filters → one
//! [`proxy::Deliver`] per interested proxy → [`proxy::EventProxy`] matches client
//! subscriptions and pushes into each matched client's outbox → the connection's
//! writer drains it. [`session::ClientSession`] keeps each client's lifecycle.

pub mod ask;
pub mod call;
pub mod describe;
pub mod directory;
pub mod distributor;
pub mod handoff;
pub mod placement;
pub mod proxy;
pub mod proxy_supervisor;
pub mod replay;
pub mod restart;
pub mod scaling;
pub mod session;
pub mod shard;
pub mod slots;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use crate::account::Accounts;
use crate::cluster::order::OrderLink;
use crate::config::Config;
use crate::egress::Egress;
use crate::limits::Quotas;
use crate::metrics::Metrics;
use crate::outbox;
use directory::{Directory, ProxyHandle};
use distributor::{Distributor, ShardHandle, ShardMap};
use placement::Placement;
use proxy::{ProxyFactory, ProxyId, ProxySettings, WebhookSettings};
use proxy_supervisor::{ProxySupervisor, PROXY_MAILBOX};
use scaling::{Marks, ProxyMarks, ProxyScaler, Scaler};
use shard::ShardFactory;
use slots::ShardId;
use supervisor::ShardSupervisor;

/// The actors: shards and proxies, placed on the HTTP worker threads (see
/// [`placement`]), and the distributor. Passed to the HTTP layer by value in its state
/// (no global registry), so two servers can run in one process.
pub struct Topology {
    /// Shard map for publishers.
    pub distributor: Arc<Distributor>,
    /// Event proxies, and which holds each client.
    pub directory: Arc<Directory>,
    /// `[limits]` and what each account holds against them.
    pub quotas: Arc<Quotas>,
    placement: Arc<Placement>,
}

impl Topology {
    /// Creates `config.shards` shards and `config.proxies` proxies (0 = one per core),
    /// spread round-robin over `threads` worker threads; each thread starts its share
    /// with [`Topology::start_share`]. Webhooks are delivered with `egress`'s client,
    /// so callbacks obey docs/api.md §5.
    pub fn start(
        config: &Config,
        accounts: &Arc<Accounts>,
        metrics: &Metrics,
        egress: &Egress,
        threads: usize,
        order: Option<OrderLink>,
    ) -> Topology {
        // One per core, or as configured, within the supervisor's bounds.
        let (shards_min, shards_max) = config.shard_bounds();
        let shard_count = Config::resolve_count(config.shards).clamp(shards_min, shards_max);
        let (proxies_min, proxies_max) = config.proxy_bounds();
        let proxy_count = Config::resolve_count(config.proxies).clamp(proxies_min, proxies_max);
        let placement = Arc::new(Placement::new(threads, metrics.actor_restarts.clone()));
        let factory = ShardFactory {
            // With positions (cluster mode, `data_dir`) `cursor=earliest` reads the
            // stream or the event log, never the shards' rings: they keep nothing.
            retention: (
                if order.is_some() {
                    0
                } else {
                    config.retention.shard_max_events
                },
                Duration::from_secs(config.retention.max_age_secs),
            ),
            metrics: metrics.clone(),
            hold: config.shard_hold.clone(),
            // A hint only: publishers bound the queue with `depth` themselves.
            mailbox: config.publish.shard_queue,
        };
        let shards = (0..shard_count)
            .map(|index| {
                let id = index as ShardId;
                let (shard, depth) = factory.make(id);
                let addr = placement.place(index, factory.mailbox, shard);
                ShardHandle { id, addr, depth }
            })
            .collect();
        let map = ShardMap::new(shards);
        supervisor::export_slots(&map, metrics);
        let distributor = Arc::new(Distributor::new(map));
        let quotas = Arc::new(Quotas::new(
            &config.limits,
            accounts.iter().count(),
            metrics.clone(),
        ));
        let directory = Arc::new(Directory::default());
        let settings = ProxySettings {
            order,
            directory: directory.clone(),
            quotas: quotas.clone(),
            limits: outbox::Limits {
                max_events: config.retention.max_events,
                max_age: Duration::from_secs(config.retention.max_age_secs),
            },
            idle_ttl: Duration::from_secs(config.stream.idle_ttl_secs),
            webhooks: WebhookSettings {
                client: egress.webhook_client(Duration::from_secs(config.webhook.timeout_secs)),
                config: config.webhook.clone(),
                accounts: accounts.clone(),
            },
        };
        let proxy_factory = ProxyFactory {
            distributor: distributor.clone(),
            metrics: metrics.clone(),
            settings,
        };
        for i in 0..proxy_count {
            let id = ProxyId(i as u32);
            let (proxy, sessions, depth) = proxy_factory.make(id);
            let addr = placement.place(i, PROXY_MAILBOX, proxy);
            directory.add(ProxyHandle {
                id,
                addr,
                sessions,
                depth,
            });
        }
        // One topology change at a time: a session move counts on the shard map
        // staying as it is, a shard's arrival on every proxy registering with it.
        let changes = proxy_supervisor::ChangeLock::default();
        let scaling = &config.scaling;
        let retire_after = Duration::from_secs(scaling.retire_after_secs);
        let interval = Duration::from_millis(scaling.interval_ms);
        if shards_min < shards_max {
            let scaler = Scaler::new(Marks {
                min: shards_min,
                max: shards_max,
                high: scaling.shard_high_events_per_sec as f64,
                queue_high: (config.publish.shard_queue / 2) as i64,
                busy_high: scaling.shard_high_busy,
                low: scaling.shard_low_events_per_sec as f64,
                retire_after,
            });
            let supervisor = ShardSupervisor::new(
                distributor.clone(),
                placement.clone(),
                directory.clone(),
                factory,
                scaler,
                interval,
                changes.clone(),
            );
            placement.place(0, PROXY_MAILBOX, supervisor);
        }
        if proxies_min < proxies_max {
            let scaler = ProxyScaler::new(ProxyMarks {
                min: proxies_min,
                max: proxies_max,
                sessions_per_proxy: scaling.sessions_per_proxy,
                retire_after,
            });
            let supervisor = ProxySupervisor::new(
                directory.clone(),
                distributor.clone(),
                placement.clone(),
                proxy_factory,
                scaler,
                interval,
                changes,
            );
            placement.place(0, PROXY_MAILBOX, supervisor);
        }
        Topology {
            distributor,
            directory,
            quotas,
            placement,
        }
    }

    /// Starts this worker thread's share of the shards and proxies; called once on
    /// each HTTP worker thread, from the app factory.
    pub fn start_share(&self) {
        self.placement.start_share();
    }
}
