//! The actors of the event router and the topology that wires them.
//!
//! Data flow of one event: HTTP publish → [`distributor`] picks the shard by call sid →
//! [`shard::BrokerShard`] matches its proxies' aggregated filters → one
//! [`proxy::Deliver`] per interested proxy → [`proxy::EventProxy`] matches client
//! subscriptions and pushes into each matched client's outbox → the connection's
//! writer drains it. [`session::ClientSession`] keeps each client's lifecycle.

pub mod call;
pub mod distributor;
pub mod proxy;
pub mod session;
pub mod shard;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};

use crate::account::{AccountIdx, Accounts};
use crate::config::Config;
use crate::egress::Egress;
use crate::limits::Quotas;
use crate::metrics::Metrics;
use crate::outbox;
use distributor::{Distributor, ShardHandle, ShardMap};
use proxy::{EventProxy, ProxyId, ProxySettings, WebhookSettings};
use shard::BrokerShard;

/// The running actors: shards and proxies on dedicated arbiters, and the distributor.
/// Passed to the HTTP layer by value in its state (no global registry), so two servers
/// can run in one process.
pub struct Topology {
    /// Shard map for publishers.
    pub distributor: Arc<Distributor>,
    /// Event proxies; a client's proxy is chosen by hashing its account and id.
    pub proxies: Vec<Addr<EventProxy>>,
    /// `[limits]` and what each account holds against them.
    pub quotas: Arc<Quotas>,
    arbiters: Vec<Arbiter>,
}

impl Topology {
    /// Starts `config.shards` shards and `config.proxies` proxies (0 = one per core)
    /// round-robin on one arbiter per shard. Must run inside an actix `System`.
    /// Webhooks are delivered with `egress`'s client, so callbacks obey API.md §5.
    pub fn start(
        config: &Config,
        accounts: &Arc<Accounts>,
        metrics: &Metrics,
        egress: &Egress,
    ) -> Topology {
        let shard_count = Config::resolve_count(config.shards);
        let proxy_count = Config::resolve_count(config.proxies);
        let arbiters: Vec<Arbiter> = (0..shard_count).map(|_| Arbiter::new()).collect();
        let mailbox = config.publish.shard_queue;
        let retention = (
            config.retention.shard_max_events,
            Duration::from_secs(config.retention.max_age_secs),
        );
        let shards = arbiters
            .iter()
            .enumerate()
            .map(|(index, arbiter)| {
                let depth = metrics
                    .mailbox_depth
                    .with_label_values(&["shard", &index.to_string()]);
                let (shard_depth, metrics) = (depth.clone(), metrics.clone());
                let addr = BrokerShard::start_in_arbiter(&arbiter.handle(), move |ctx| {
                    // A hint only: publishers bound the queue with `depth` themselves.
                    ctx.set_mailbox_capacity(mailbox);
                    BrokerShard::new(index as u16, retention, shard_depth, metrics)
                });
                ShardHandle { addr, depth }
            })
            .collect();
        let distributor = Arc::new(Distributor::new(ShardMap { shards }));
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
                let (distributor, metrics, settings) =
                    (distributor.clone(), metrics.clone(), settings.clone());
                let arbiter = &arbiters[i % arbiters.len()];
                EventProxy::start_in_arbiter(&arbiter.handle(), move |_ctx| {
                    EventProxy::new(
                        ProxyId(i as u16),
                        metrics
                            .mailbox_depth
                            .with_label_values(&["proxy", &i.to_string()]),
                        distributor,
                        metrics,
                        settings,
                    )
                })
            })
            .collect();
        Topology {
            distributor,
            proxies,
            quotas,
            arbiters,
        }
    }

    /// The proxy that holds this client's session.
    pub fn proxy_for(&self, account: AccountIdx, client: &str) -> &Addr<EventProxy> {
        let hash = client.bytes().fold(
            u64::from(account.0).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3),
        );
        &self.proxies[(hash % self.proxies.len() as u64) as usize]
    }

    /// Stops the arbiters (and with them every shard and proxy).
    pub fn stop(&self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
