//! The HTTP surface: one module per surface, each with a `configure` function, and
//! the shared state handlers get. Handlers extract, authenticate and validate, send one
//! message, and map the result to a response; the logic lives in the actors and plain
//! structs behind them.

pub mod admin;
pub mod client_events;
pub mod console;
pub mod control;
pub mod error;
pub mod front;
pub mod health;
pub mod metrics;
pub mod publish;
pub mod queues;
pub mod signed_urls;
pub mod sim;
pub mod stream;
pub mod twilio;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio::sync::watch;

use crate::account::{AccountIdx, Accounts};
use crate::actors::ask::{ask, AskError};
use crate::actors::proxy::{EventProxy, ForClient, Routed};
use crate::actors::Topology;
use crate::auth::{AuthError, Principal};
use crate::callrouter::CallRouter;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
pub use error::ApiError;

/// What every handler can reach. Cloned into each worker; everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Account registry.
    pub accounts: Arc<Accounts>,
    /// Shards, proxies and the distributor.
    pub topology: Arc<Topology>,
    /// Routes events into the shards.
    pub publisher: Publisher,
    /// Numbers, calls and messages (docs/api.md §7).
    pub call_router: Arc<CallRouter>,
    /// The server's metrics.
    pub metrics: Metrics,
    /// The egress rules (docs/api.md §5): check tenant-supplied URLs with
    /// [`Egress::check_url`](crate::egress::Egress::check_url).
    pub egress: crate::egress::Egress,
    /// Set when draining: publishes get 503 and `/readyz` fails.
    pub draining: Arc<AtomicBool>,
    /// Flips to `true` on shutdown so open streams write `stream.shutdown` and close.
    pub shutdown: watch::Receiver<bool>,
    /// `stream.replays_at_once` permits, one per `cursor=earliest` replay in
    /// progress (see [`stream`]).
    pub replays: Arc<tokio::sync::Semaphore>,
    /// Cluster mode's link to NATS JetStream; `None` on a standalone node.
    pub backbone: Option<crate::cluster::Backbone>,
    /// A durable single node's event log (`data_dir`); `None` without one and in
    /// cluster mode (where JetStream keeps the events).
    pub log: Option<crate::store::log::EventLog>,
    /// Whether what the node keeps is back (with `data_dir`, its webhooks are
    /// made again once the proxies run); `/readyz` answers 503 until then.
    pub restored: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    /// Whether a publish waits for its events to be kept before its `202` (in
    /// JetStream, or in the node's event log), so it is served by actix-web's
    /// route rather than the front door's synchronous lane.
    pub fn publish_waits(&self) -> bool {
        self.backbone.is_some() || self.log.is_some()
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Counts an authentication failure and turns it into the API error.
    pub fn auth_failed(&self, error: AuthError) -> ApiError {
        self.metrics
            .auth_failures
            .with_label_values(&[error.reason()])
            .inc();
        tracing::debug!(reason = error.reason(), "authentication failed");
        ApiError::from(error)
    }

    /// Authenticates a request to `/v1/Accounts/{sid}/…` (Basic or signed URL).
    pub fn authenticate(
        &self,
        req: &actix_web::HttpRequest,
        path_sid: &str,
    ) -> Result<Principal, ApiError> {
        let authorization = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        crate::auth::authenticate(
            &self.accounts,
            path_sid,
            authorization,
            req.uri().path(),
            req.query_string(),
            crate::auth::Validity {
                now: crate::clock::unix_now(),
                max_lifetime: self.config.auth.max_url_lifetime_secs,
            },
        )
        .map_err(|e| self.auth_failed(e))
    }

    /// The sid text of an account index.
    pub fn account_sid(&self, account: AccountIdx) -> &str {
        &self.accounts.get(account).sid
    }

    /// Asks the proxy of the client `msg` is about, as the directory says, giving it
    /// [`PROXY_DEADLINE`] in all: a proxy that is stuck or flooded costs the caller
    /// a 503 with `Retry-After`, never a request that hangs. A proxy that answers
    /// [`Routed::Elsewhere`] (the client is another's, or moving between proxies)
    /// is asked again through the directory after a short pause. Every request a
    /// handler makes of a proxy is safe to repeat (a connect resumes by cursor, a
    /// create is idempotent, and "elsewhere" means nothing was done).
    pub async fn ask_proxy<M, T>(&self, msg: M) -> Result<T, ApiError>
    where
        EventProxy: actix::Handler<M>,
        M: actix::Message<Result = Routed<T>> + ForClient + Clone + Send + 'static,
        T: Send + 'static,
    {
        let (account, client) = msg.client();
        let draining = || ApiError::unavailable("draining", "the server is shutting down");
        let late = || {
            ApiError::unavailable(
                "proxy_timeout",
                "the client's event proxy did not answer in time; retry shortly",
            )
        };
        let deadline = tokio::time::Instant::now() + PROXY_DEADLINE;
        let mut pause = Duration::from_millis(1);
        loop {
            let proxy = self
                .topology
                .directory
                .route(account, client)
                .ok_or_else(draining)?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match ask(&proxy.addr, msg.clone(), left).await {
                Ok(Routed::Here(answer)) => return Ok(answer),
                // A proxy retired since the directory was read: ask again, unless
                // the whole server is stopping.
                Err(AskError::Gone) if self.is_draining() => return Err(draining()),
                Ok(Routed::Elsewhere) | Err(AskError::Gone) => {}
                Err(AskError::Late) => return Err(late()),
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(late());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// How long a request waits for the client's proxy before answering 503 with
/// `Retry-After`.
pub const PROXY_DEADLINE: Duration = Duration::from_secs(10);

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, config: &Config) {
    health::configure(cfg);
    admin::configure(cfg);
    metrics::configure(cfg);
    publish::configure(cfg);
    stream::configure(cfg, &config.cors);
    control::configure(cfg, &config.cors);
    client_events::configure(cfg, &config.cors);
    signed_urls::configure(cfg);
    twilio::configure(cfg);
    sim::configure(cfg);
    console::configure(cfg);
}

/// The account sid in `/v1/Accounts/{sid}/{leaf}`, or `None` for any other path: one
/// non-empty segment between the two, as actix-web's router matches `{sid}`. Shared by
/// the routes matched without a pattern and the front door's lanes, so both agree on
/// what the path is.
pub fn account_path_sid<'a>(path: &'a str, leaf: &str) -> Option<&'a str> {
    let sid = path
        .strip_prefix("/v1/Accounts/")?
        .strip_suffix(leaf)?
        .strip_suffix('/')?;
    (!sid.is_empty() && !sid.contains('/')).then_some(sid)
}

/// The JSON 404 for unknown routes.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
