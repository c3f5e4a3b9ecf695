//! Cluster mode: several nodes joined through NATS JetStream (docs/api.md §8,
//! docs/cluster.md).
//!
//! A publish on any node goes into one JetStream stream as one message per request
//! (so a request is stored all or nothing), subject `<stream>.<AccountSid>.<slot>`,
//! and is answered `202` only once JetStream has acknowledged it; while NATS is
//! unreachable publishes answer 503 and nothing is accepted. Every node reads the
//! stream with one ordered consumer and routes what it reads into its own shards,
//! exactly as a local publish would be routed, so its proxies, aggregation and
//! transports work unchanged. The stream's order is the cluster's order: a call's
//! events reach every node in the order JetStream stored them.
//!
//! The NATS connection and the consumer run on the thread that started the server
//! (the actix `System`'s), not on the HTTP workers; a worker publishing only hands a
//! message to the connection's queue and awaits its acknowledgement.

pub mod clients;
mod consumer;
mod demand;
pub mod history;
pub mod order;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream;
use tokio::sync::{mpsc, watch};

use crate::account::{AccountIdx, Accounts};
use crate::actors::distributor::slot_of;
use crate::config::{ClusterConfig, Config};
use crate::event::SharedEvent;
use crate::limits::Quotas;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use order::OrderLink;

/// How long a publish waits for JetStream's acknowledgement before it is refused.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a publish was not accepted by the backbone.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// Not connected to NATS now: nothing was sent.
    #[error("the cluster's NATS server is unreachable; retry shortly")]
    Unavailable,
    /// Sent, but JetStream did not acknowledge it in time or refused it.
    #[error("the cluster's NATS server did not acknowledge the events; retry shortly")]
    NotAcknowledged,
    /// The encoded request is larger than NATS takes in one message.
    #[error(
        "in cluster mode a publish must fit one NATS message: {size} bytes encoded, at most {max}"
    )]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The server's `max_payload`.
        max: usize,
    },
}

/// The node's link to the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Backbone {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The stream's name, also its subjects' first token.
    stream: String,
    accounts: Arc<Accounts>,
    metrics: Metrics,
    /// Counts the connections made to NATS: the consumers start over on each.
    connections: watch::Sender<u64>,
    /// Whether the stream is known to exist since the last connection.
    stream_ready: AtomicBool,
    /// Running consumers that do not read now.
    unready: AtomicUsize,
    /// Requests for an account's consumer, to the manager.
    demand: mpsc::UnboundedSender<demand::Need>,
    /// How far this node has landed each account's messages.
    landed: order::Landings,
    /// What the consumers check messages against.
    settings: consumer::Settings,
    /// The thread the connection and the consumer run on: reads of the stream for
    /// the proxies run there too.
    arbiter: actix_rt::ArbiterHandle,
    /// The bucket of shared client sessions, once made.
    clients: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
}

impl Backbone {
    /// Connects to `config.cluster.nats_url` and starts the node's consumer, which
    /// routes what it reads through `publisher`. An unreachable NATS is not an
    /// error: the client keeps trying, publishes answer 503 and `/readyz` fails
    /// until it connects (a node may start before its NATS server). The consumer
    /// stops when `shutdown` turns true.
    pub async fn start(
        config: &Config,
        link: &OrderLink,
        accounts: Arc<Accounts>,
        quotas: Arc<Quotas>,
        publisher: Publisher,
        metrics: Metrics,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Backbone, async_nats::ConnectError> {
        let cluster = &config.cluster;
        let gauge = metrics.backbone_connected.clone();
        let (connections, _) = watch::channel(0u64);
        let connected = connections.clone();
        let client = async_nats::ConnectOptions::new()
            .name(node_name(cluster))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let gauge = gauge.clone();
                let connected = connected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            gauge.set(1);
                            connected.send_modify(|count| *count += 1);
                        }
                        async_nats::Event::Disconnected => gauge.set(0),
                        other => tracing::info!(event = %other, "nats"),
                    }
                }
            })
            .connect(cluster.nats_url.as_str())
            .await?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(ACK_TIMEOUT);
        let (demand, needs) = mpsc::unbounded_channel();
        let backbone = Backbone {
            inner: Arc::new(Inner {
                client,
                jetstream,
                stream: cluster.stream.clone(),
                accounts,
                metrics,
                connections,
                stream_ready: AtomicBool::new(false),
                unready: AtomicUsize::new(0),
                demand,
                landed: link.landed.clone(),
                settings: consumer::Settings {
                    max_age: Duration::from_secs(config.retention.max_age_secs),
                    max_event_bytes: config.publish.max_event_bytes,
                    clients_max_age: Duration::from_secs(config.auth.max_url_lifetime_secs),
                    consumer_grace: Duration::from_secs(cluster.consumer_grace_secs),
                },
                arbiter: actix_rt::Arbiter::current(),
                clients: tokio::sync::OnceCell::new(),
            }),
        };
        link.read_history_from(order::Source::Stream(backbone.clone()));
        actix_rt::spawn(demand::manage(
            backbone.clone(),
            publisher,
            quotas,
            needs,
            shutdown,
        ));
        Ok(backbone)
    }

    /// Whether the node is connected to NATS now: publishes are taken.
    pub fn connected(&self) -> bool {
        self.inner.client.connection_state() == State::Connected
    }

    /// Whether the node is connected, the stream exists and every consumer the
    /// node runs reads (`/readyz`): publishes are taken and delivered here.
    pub fn ready(&self) -> bool {
        self.connected()
            && self.inner.stream_ready.load(Ordering::Relaxed)
            && self.inner.unready.load(Ordering::Relaxed) == 0
    }

    /// Stores one request's events in the stream, all or nothing, and returns once
    /// JetStream has acknowledged them. Refused at once, with nothing sent, while
    /// NATS is unreachable, so a 503 does not leave a message queued in the client
    /// to be stored later.
    pub async fn publish(
        &self,
        account: AccountIdx,
        events: &[SharedEvent],
    ) -> Result<(), BackboneError> {
        let inner = &self.inner;
        let failed = |reason: &str| {
            inner
                .metrics
                .backbone_publish_failures
                .with_label_values(&[reason])
                .inc();
        };
        if !self.connected() {
            failed("unavailable");
            return Err(BackboneError::Unavailable);
        }
        let Some(first) = events.first() else {
            return Ok(());
        };
        let payload = wire::encode(events.iter().map(|e| &**e));
        let max = inner.client.server_info().max_payload;
        if payload.len() > max {
            failed("too_large");
            return Err(BackboneError::TooLarge {
                size: payload.len(),
                max,
            });
        }
        let sid = &inner.accounts.get(account).sid;
        let subject = format!(
            "{}.{sid}.{}",
            inner.stream,
            slot_of(account, first.call_sid.as_deref())
        );
        // JetStream drops a second message with the same id within its duplicate
        // window: a message the client resends after a reconnect is stored once.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            first.id.to_string().as_str(),
        );
        let started = Instant::now();
        let acked = match inner
            .jetstream
            .publish_with_headers(subject, headers, payload.into())
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if !acked {
            failed("not_acknowledged");
            return Err(BackboneError::NotAcknowledged);
        }
        inner
            .metrics
            .backbone_publish_ack
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// This node's name in NATS: `cluster.node_id`, or `node-` and random hex.
fn node_name(cluster: &ClusterConfig) -> String {
    if cluster.node_id.is_empty() {
        format!("node-{}", &crate::account::random_hex()[..8])
    } else {
        cluster.node_id.clone()
    }
}

/// The account sid in a subject of `stream`: `<stream>.<AccountSid>.<slot>`.
fn subject_account<'a>(stream: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject.strip_prefix(stream)?.strip_prefix('.')?;
    let (sid, slot) = rest.split_once('.')?;
    slot.parse::<u16>().ok().map(|_| sid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_names_its_account_only_when_well_formed() {
        let ok = "SWITCHBOARD.AC00000000000000000000000000000001.17";
        assert_eq!(
            subject_account("SWITCHBOARD", ok),
            Some("AC00000000000000000000000000000001")
        );
        for bad in [
            "SWITCHBOARDX.AC1.17",
            "OTHER.AC1.17",
            "SWITCHBOARD.AC1",
            "SWITCHBOARD.AC1.x",
            "SWITCHBOARD.AC1.17.9",
        ] {
            assert_eq!(subject_account("SWITCHBOARD", bad), None, "{bad}");
        }
    }
}
