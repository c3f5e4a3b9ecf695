//! `serve`: starts the actors and the HTTP server on a listener the caller bound, runs
//! until the `shutdown` future resolves, then drains (mini-redis's `server::run` shape,
//! so `main`, tests and benches share one entry point).

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_service::IntoServiceFactory;
use actix_web::{web, App};
use tokio::sync::watch;

use crate::account::Accounts;
use crate::actors::Topology;
use crate::callrouter::sink::EventSink;
use crate::callrouter::{CallRouter, RouterSettings};
use crate::cluster::order::{OrderLink, Source};
use crate::config::Config;
use crate::egress::Egress;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::store::events::Bounds;
use crate::store::log::{EventLog, LogSettings};

/// How long open connections get to finish after streams were told to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long live calls get, once hung up by a drain, to publish `call.end` and
/// request their status callbacks: one application request in flight and the
/// callback, each bounded by the applications' 15 s time-out, usually far less.
const CALLS_DRAIN: Duration = Duration::from_secs(20);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listener could not be used, or the server failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    /// The cluster's NATS URL or options are unusable (an unreachable server is not
    /// an error: the node keeps trying).
    #[error("cluster: {0}")]
    Cluster(#[from] async_nats::ConnectError),
    /// The data directory's store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Runs the server until `shutdown` resolves, then drains: readiness fails, publishes
/// get 503, every stream flushes what was accepted and closes with `stream.shutdown`,
/// and the call returns once connections have closed (or after a bounded wait).
///
/// Must be called inside an actix `System` (`actix_rt::System::new().block_on(…)`).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    let metrics = Metrics::new();
    let accounts = Accounts::new(&config.accounts);
    let egress = Egress::new(
        &config.webhook.allowed_hosts,
        config.egress.private_networks_allowed(),
        metrics.clone(),
    );
    let store = match config.data_dir.as_str() {
        "" => None,
        dir => Some(Arc::new(crate::store::Store::open(
            std::path::Path::new(dir),
            metrics.clone(),
        )?)),
    };
    let workers = Config::resolve_count(config.workers);
    let clustered = config.cluster.enabled();
    // Events carry positions in cluster mode (the stream's) and on a durable
    // single node (its event log's).
    let order = (clustered || store.is_some()).then(|| OrderLink::new(&accounts));
    let topology = Arc::new(Topology::start(
        &config,
        &accounts,
        &metrics,
        &egress,
        workers,
        order.clone(),
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));
    let grace = Duration::from_secs(config.drain_grace_secs);
    let publisher = Publisher::new(
        accounts.clone(),
        topology.distributor.clone(),
        metrics.clone(),
        config.publish.shard_queue,
    );
    let backbone = match order.as_ref().filter(|_| clustered) {
        Some(link) => Some(
            crate::cluster::Backbone::start(
                &config,
                link,
                accounts.clone(),
                topology.quotas.clone(),
                publisher.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };
    // In cluster mode JetStream keeps the events; the store keeps the rest.
    let log = match (&store, &order) {
        (Some(store), Some(link)) if !clustered => {
            let log = EventLog::start(
                store.clone(),
                link.landed.clone(),
                accounts.clone(),
                publisher.clone(),
                LogSettings {
                    bounds: Bounds {
                        max_age_ms: config.retention.max_age_secs.saturating_mul(1000),
                        max_events: config.retention.store_max_events as u64,
                    },
                    max_event_bytes: config.publish.max_event_bytes,
                    clients_max_age_ms: config.auth.max_url_lifetime_secs.saturating_mul(1000),
                },
                metrics.clone(),
            )?;
            link.read_history_from(Source::Store(log.clone()));
            Some(log)
        }
        _ => None,
    };
    let sink = match (
        reqwest::Url::parse(&config.call_router.publish_url),
        &backbone,
        &log,
    ) {
        (Ok(base), _, _) => EventSink::remote(base, accounts.clone()),
        (Err(_), Some(backbone), _) => EventSink::Cluster {
            publisher: Box::new(publisher.clone()),
            backbone: backbone.clone(),
        },
        (Err(_), None, Some(log)) => EventSink::Kept {
            publisher: Box::new(publisher.clone()),
            log: log.clone(),
        },
        (Err(_), None, None) => EventSink::InProcess(Box::new(publisher.clone())),
    };
    let call_router = CallRouter::new(
        accounts.clone(),
        sink,
        egress.clone(),
        metrics.clone(),
        topology.quotas.clone(),
        RouterSettings {
            sim: config.sim.clone(),
            base_url: format!("http://{}", listener.local_addr()?),
            keep_ended: config.call_router.keep_ended,
            max_call_secs: config.call_router.max_call_secs,
            start: crate::actors::call::start,
            store: store.clone(),
            log: log.clone(),
        },
    );
    let restored = call_router.restore_numbers()?;
    let queues = call_router.restore_queues()?;
    let interrupted = call_router.restore_records()?;
    if store.is_some() {
        tracing::info!(
            numbers = restored,
            queues,
            interrupted_calls = interrupted.len(),
            data_dir = %config.data_dir,
            "restored from the data directory"
        );
    }
    let calls = call_router.clone();
    let webhook_drain = Duration::from_secs(config.webhook.drain_secs);
    let drain_timeout = Duration::from_secs(config.drain_timeout_secs);
    let webhook_metrics = metrics.clone();
    let replays = Arc::new(tokio::sync::Semaphore::new(config.replays_at_once(workers)));
    let state = AppState {
        call_router,
        publisher,
        accounts,
        config: Arc::new(config),
        topology: topology.clone(),
        metrics,
        egress,
        draining: draining.clone(),
        shutdown: shutdown_rx,
        replays,
        backbone,
        log: log.clone(),
        restored: Arc::new(AtomicBool::new(log.is_none())),
    };
    let data_log = log;
    let data = web::Data::new(state);
    if let Some(backbone) = &data.backbone {
        // Another node changed a client's subscriptions: the same here, if this
        // node holds the client.
        let state = data.clone();
        backbone.watch_clients(data.shutdown.clone(), move |account, client, shared| {
            let state = state.clone();
            async move { http::control::shared::adopt(&state, account, client, shared, false).await }
        });
    }
    let restoring = data.clone();
    let builder = actix_server::Server::build();
    let graceful = builder.graceful_shutdown_signal();
    let server = builder
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(DRAIN_TIMEOUT.as_secs())
        .listen("switchboard", listener, move || {
            // Runs once on each worker thread as it starts: its shards and proxies too.
            data.topology.start_share();
            let state = data.clone();
            let data = data.clone();
            http::front::factory(
                move || {
                    let config = data.config.clone();
                    App::new()
                        .app_data(data.clone())
                        .configure(|cfg| http::configure(cfg, &config))
                        .default_service(web::to(http::not_found))
                        .into_factory()
                },
                state,
                graceful.clone(),
            )
        })?
        .run();
    // Kept webhooks need the proxies, which start with the worker threads:
    // `/readyz` answers 503 until they are back.
    actix_web::rt::spawn(async move {
        let clients = http::control::shared::restore_webhooks(&restoring).await;
        if clients > 0 {
            tracing::info!(clients, "restored kept webhook subscriptions");
        }
        // Once subscriptions are back, so the restored webhooks hear of it too.
        restoring
            .call_router
            .announce_interrupted(interrupted)
            .await;
        restoring.restored.store(true, Ordering::Relaxed);
    });
    let handle = server.handle();
    let flush_log = data_log;
    actix_web::rt::spawn(async move {
        shutdown.await;
        tracing::info!(grace_secs = grace.as_secs(), "draining");
        draining.store(true, Ordering::Relaxed);
        tokio::time::sleep(grace).await;
        let deadline = tokio::time::Instant::now() + drain_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            // Calls end (call.end, status callbacks) before streams get
            // stream.shutdown.
            if let Err(running) = calls.end_calls(CALLS_DRAIN.min(drain_timeout)).await {
                tracing::warn!(running, "calls still running when the drain moved on");
            }
            let _ = shutdown_tx.send(true);
            // Webhook workers deliver what was accepted before the proxies stop
            // them.
            if let Err(given_up) = crate::webhook::flush(&webhook_metrics, webhook_drain).await {
                tracing::warn!(
                    given_up,
                    "webhook events still undelivered at the end of the drain are given up"
                );
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                timeout_secs = drain_timeout.as_secs(),
                "drain_timeout_secs passed: stopping now"
            );
            let _ = shutdown_tx.send(true);
        }
        // Webhooks' delivered cursors are on disk before the process ends.
        if let Some(log) = flush_log {
            if let Err(error) = log.flush().await {
                tracing::warn!(%error, "cannot keep the webhooks' last cursors");
            }
        }
        // A drain done in time gives open connections up to DRAIN_TIMEOUT to
        // close; one that ran out of time stops them now.
        handle.stop(drained.is_ok()).await;
    });
    // The shards and proxies stop with the worker threads they run on.
    server.await?;
    tracing::info!("stopped");
    Ok(())
}
