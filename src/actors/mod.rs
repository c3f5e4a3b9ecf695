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
pub mod distributor;
pub mod handoff;
pub mod placement;
pub mod proxy;
pub mod replay;
pub mod restart;
pub mod scaling;
pub mod session;
pub mod shard;
pub mod slots;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use crate::account::{AccountIdx, Accounts};
use crate::config::Config;
use crate::egress::Egress;
use crate::hash::fnv1a_64_from;
use crate::limits::Quotas;
use crate::metrics::Metrics;
use crate::outbox;
use distributor::{Distributor, ShardHandle, ShardMap};
use placement::Placement;
use proxy::{EventProxy, ProxyId, ProxySettings, WebhookSettings};
use scaling::{Marks, Scaler};
use shard::ShardFactory;
use slots::ShardId;
use supervisor::ShardSupervisor;

/// actix's default mailbox capacity, a back-pressure hint for senders that wait;
/// what reaches a proxy is bounded by its senders (shards' queues, sessions' quotas).
const PROXY_MAILBOX: usize = 16;

/// The actors: shards and proxies, placed on the HTTP worker threads (see
/// [`placement`]), and the distributor. Passed to the HTTP layer by value in its state
/// (no global registry), so two servers can run in one process.
pub struct Topology {
    /// Shard map for publishers.
    pub distributor: Arc<Distributor>,
    /// Event proxies; a client's proxy is chosen by hashing its account and id.
    pub proxies: Vec<Addr<EventProxy>>,
    /// `[limits]` and what each account holds against them.
    pub quotas: Arc<Quotas>,
    placement: Arc<Placement>,
}

impl Topology {
    /// Creates `config.shards` shards and `config.proxies` proxies (0 = one per core),
    /// spread round-robin over `threads` worker threads; each thread starts its share
    /// with [`Topology::start_share`]. Webhooks are delivered with `egress`'s client,
    /// so callbacks obey API.md §5.
    pub fn start(
        config: &Config,
        accounts: &Arc<Accounts>,
        metrics: &Metrics,
        egress: &Egress,
        threads: usize,
    ) -> Topology {
        // One per core, or as configured, within the supervisor's bounds.
        let (shards_min, shards_max) = config.shard_bounds();
        let shard_count = Config::resolve_count(config.shards).clamp(shards_min, shards_max);
        let proxy_count = Config::resolve_count(config.proxies);
        let placement = Arc::new(Placement::new(threads, metrics.actor_restarts.clone()));
        let factory = ShardFactory {
            retention: (
                config.retention.shard_max_events,
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
        let settings = ProxySettings {
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
        let proxies = (0..proxy_count)
            .map(|i| {
                let proxy = EventProxy::new(
                    ProxyId(i as u16),
                    metrics
                        .mailbox_depth
                        .with_label_values(&["proxy", &i.to_string()]),
                    distributor.clone(),
                    metrics.clone(),
                    settings.clone(),
                );
                placement.place(i, PROXY_MAILBOX, proxy)
            })
            .collect::<Vec<_>>();
        if shards_min < shards_max {
            let scaling = &config.scaling;
            let scaler = Scaler::new(Marks {
                min: shards_min,
                max: shards_max,
                high: scaling.shard_high_events_per_sec as f64,
                queue_high: (config.publish.shard_queue / 2) as i64,
                low: scaling.shard_low_events_per_sec as f64,
                retire_after: Duration::from_secs(scaling.retire_after_secs),
            });
            let supervisor = ShardSupervisor::new(
                distributor.clone(),
                placement.clone(),
                proxies.clone(),
                factory,
                scaler,
                Duration::from_millis(scaling.interval_ms),
            );
            placement.place(0, PROXY_MAILBOX, supervisor);
        }
        Topology {
            distributor,
            proxies,
            quotas,
            placement,
        }
    }

    /// Starts this worker thread's share of the shards and proxies; called once on
    /// each HTTP worker thread, from the app factory.
    pub fn start_share(&self) {
        self.placement.start_share();
    }

    /// The proxy that holds this client's session.
    pub fn proxy_for(&self, account: AccountIdx, client: &str) -> &Addr<EventProxy> {
        // Seeded by the account (spread by the golden-ratio constant) rather than
        // hashing its bytes first: the same placement as ever, one FNV-1a.
        let seed = u64::from(account.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let hash = fnv1a_64_from(seed, client.as_bytes());
        &self.proxies[(hash % self.proxies.len() as u64) as usize]
    }
}
