//! Which accounts this node reads: one ordered consumer per account that has a
//! client session here (a stream, a control-channel subscription or a webhook),
//! however many sessions it has; none for the others. The node's shards and
//! proxies then aggregate the account's clients as on a standalone node.
//!
//! A request about to make a session asks first ([`Backbone::need`]): the
//! account's consumer is started if it is not running, and the request waits
//! (bounded) until it reads, so events stored after the session is made are read
//! here. A consumer whose account has had no session for
//! `cluster.consumer_grace_secs` is stopped: a client that reconnects at once
//! does not restart it. The manager also makes
//! the stream itself when NATS is (again) reachable, so publishes are taken
//! whether or not any node reads them yet.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot, watch};

use super::{consumer, Backbone};
use crate::account::AccountIdx;
use crate::limits::Quotas;
use crate::publisher::Publisher;

/// How often the manager looks at the sessions held.
const TICK: Duration = Duration::from_millis(250);

/// The longest a request waits for its account's consumer to read.
const NEED_WAIT: Duration = Duration::from_secs(5);

/// A request for an account's consumer, answered once it reads.
pub type Need = (AccountIdx, oneshot::Sender<()>);

/// A running consumer of one account, as the manager sees it.
struct Reader {
    stop: watch::Sender<bool>,
    reading: watch::Receiver<bool>,
    lag: Arc<AtomicU64>,
    /// The last time the account had a session here, or asked for one.
    wanted_at: Instant,
}

/// Counts the running consumers that do not read now (`/readyz` fails while
/// any does): one while held, by a consumer between its reads.
pub struct Unready<'a>(&'a AtomicUsize);

impl<'a> Unready<'a> {
    /// One more consumer not reading.
    pub fn new(count: &'a AtomicUsize) -> Unready<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Unready(count)
    }
}

impl Drop for Unready<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backbone {
    /// Makes sure this node reads `account`'s messages, before a session of it is
    /// made here: waits (at most a few seconds) until its consumer reads. Returns
    /// at once while NATS is unreachable (the consumer starts once it is).
    pub async fn need(&self, account: AccountIdx) {
        if !self.connected() {
            let _ = self.inner.demand.send((account, oneshot::channel().0));
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.demand.send((account, tx)).is_ok() {
            let _ = tokio::time::timeout(NEED_WAIT, rx).await;
        }
    }
}

/// Runs the consumers this node needs until the server stops.
pub async fn manage(
    backbone: Backbone,
    publisher: Publisher,
    quotas: Arc<Quotas>,
    mut needs: mpsc::UnboundedReceiver<Need>,
    mut shutdown: watch::Receiver<bool>,
) {
    let inner = backbone.inner.clone();
    let mut running: FxHashMap<AccountIdx, Reader> = FxHashMap::default();
    let mut tick = tokio::time::interval(TICK);
    let mut connections = inner.connections.subscribe();
    let start = |account: AccountIdx| {
        let (stop, stopped) = watch::channel(false);
        let (is_reading, reading) = watch::channel(false);
        let lag = Arc::new(AtomicU64::new(0));
        actix_rt::spawn(consumer::run(
            backbone.clone(),
            publisher.clone(),
            account,
            consumer::Signals {
                stop: stopped,
                report: consumer::Report {
                    reading: is_reading,
                    lag: lag.clone(),
                },
            },
        ));
        Reader {
            stop,
            reading,
            lag,
            wanted_at: Instant::now(),
        }
    };
    loop {
        tokio::select! {
            need = needs.recv() => {
                let Some((account, answer)) = need else { break };
                let reader = running.entry(account).or_insert_with(|| start(account));
                reader.wanted_at = Instant::now();
                let mut reading = reader.reading.clone();
                actix_rt::spawn(async move {
                    let _ = reading.wait_for(|reading| *reading).await;
                    let _ = answer.send(());
                });
            }
            _ = tick.tick() => {
                if backbone.connected() && !inner.stream_ready.load(Ordering::Relaxed) {
                    make_stream(&backbone).await;
                }
                let now = Instant::now();
                for (account, _) in inner.accounts.iter() {
                    if quotas.sessions_held(account) > 0 {
                        running.entry(account).or_insert_with(|| start(account)).wanted_at = now;
                    }
                }
                running.retain(|_, reader| {
                    let idle = now.saturating_duration_since(reader.wanted_at)
                        > inner.settings.consumer_grace;
                    if idle {
                        let _ = reader.stop.send(true);
                    }
                    !idle
                });
                let lag: u64 = running.values().map(|r| r.lag.load(Ordering::Relaxed)).sum();
                inner.metrics.backbone_lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
            _ = connections.changed() => {
                // A restarted NATS may have lost the stream (a memory store).
                inner.stream_ready.store(false, Ordering::Relaxed);
            }
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        }
        inner.metrics.backbone_consumers.set(running.len() as i64);
    }
    for reader in running.values() {
        let _ = reader.stop.send(true);
    }
}

/// Makes the stream if it is missing (the first node of a cluster, a NATS that
/// lost it): publishes need it whether or not a consumer reads.
async fn make_stream(backbone: &Backbone) {
    let inner = &backbone.inner;
    let made = inner
        .jetstream
        .get_or_create_stream(stream::Config {
            name: inner.stream.clone(),
            subjects: vec![format!("{}.>", inner.stream)],
            max_age: inner.settings.max_age,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await;
    match made {
        Ok(_) => inner.stream_ready.store(true, Ordering::Relaxed),
        Err(error) => {
            tracing::warn!(%error, stream = %inner.stream, "cannot make the cluster's stream")
        }
    }
}
