//! `GET /v1/Accounts/{AccountSid}/Stream` (API.md §4): authenticate, validate, connect
//! the client's session through its proxy, then hand the connection to a transport.

pub mod params;
pub mod sse;

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{ApiError, AppState};
use crate::account::AccountIdx;
use crate::actors::proxy::{Connect, Connected, NewSubscription};
use crate::actors::session::Detached;
use crate::auth::{unix_now, Principal};
use crate::config::CorsConfig;
use crate::cursor::{account_tag, Cursor};
use crate::event::notice;
use crate::outbox::Entry;
use params::{StreamParams, Transport};

/// Registers the stream route, with CORS for browsers on other origins.
pub fn configure(cfg: &mut web::ServiceConfig, cors: &CorsConfig) {
    cfg.service(
        web::resource("/v1/Accounts/{account_sid}/Stream")
            .wrap(cors_policy(cors))
            .route(web::get().to(stream)),
    );
}

/// CORS for browser-facing endpoints: they carry their own authentication (a signed
/// URL or Basic credentials), so any origin is allowed unless the config lists some.
pub fn cors_policy(cors: &CorsConfig) -> Cors {
    let policy = Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE", "OPTIONS"])
        .allow_any_header()
        .expose_any_header()
        .max_age(3600);
    if cors.allowed_origins.iter().any(|o| o == "*") {
        policy.allow_any_origin()
    } else {
        cors.allowed_origins
            .iter()
            .fold(policy, |policy, origin| policy.allowed_origin(origin))
    }
}

async fn stream(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = state.authenticate(&req, &path)?;
    let account = principal.account();
    let last_event_id = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok());
    let params = StreamParams::parse(req.query_string(), principal, last_event_id, unix_now())?;
    let tag = account_tag(state.account_sid(account));
    let cursor = params
        .cursor
        .as_deref()
        .map(|text| Cursor::decode(text, tag))
        .transpose()?;
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "the server is shutting down",
        ));
    }
    if params.transport == Transport::Poll {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "transport: poll is not available yet; omit transport for SSE",
        ));
    }
    let ephemeral = params.client.is_none();
    let client: Arc<str> = params
        .client
        .unwrap_or_else(|| format!("cl{}", &crate::account::random_hex()[..16]))
        .into();
    let expires = params.expires;
    let connected = state
        .topology
        .proxy_for(account, &client)
        .send(Connect {
            account,
            client: client.clone(),
            subscription: params.filter.map(|filter| NewSubscription {
                filter: Arc::new(filter),
                expires,
            }),
            default: NewSubscription {
                filter: Arc::new(params.default_filter),
                expires,
            },
            cursor: cursor.map(|c| (c.epoch, c.seq)),
            ephemeral,
        })
        .await
        .map_err(|_| ApiError::unavailable("draining", "the server is shutting down"))?;
    let closes_at = match principal {
        Principal::SignedUrl { expires, .. } => Some(expires),
        Principal::Account(_) => None,
    };
    let conn = Connection::new(&state, account, client, connected, closes_at);
    Ok(sse::respond(&state, conn))
}

/// One open publication channel, whatever its transport: renders what it writes and,
/// when dropped, tells the session the channel is gone.
pub struct Connection {
    state: AppState,
    account_sid: Arc<str>,
    tag: u32,
    client: Arc<str>,
    connected: Connected,
    /// When a signed URL's stream must end with `stream.expired` (unix seconds).
    pub closes_at: Option<u64>,
}

impl Connection {
    fn new(
        state: &AppState,
        account: AccountIdx,
        client: Arc<str>,
        connected: Connected,
        closes_at: Option<u64>,
    ) -> Connection {
        let account_sid: Arc<str> = state.account_sid(account).into();
        Connection {
            state: state.clone(),
            tag: account_tag(&account_sid),
            account_sid,
            client,
            connected,
            closes_at,
        }
    }

    /// The cursor text for a sequence number of this client's outbox.
    pub fn cursor(&self, seq: u64) -> String {
        Cursor {
            account_tag: self.tag,
            epoch: self.connected.outbox.epoch(),
            seq,
        }
        .encode()
    }

    /// The `stream.open` notice.
    pub fn open_notice(&self) -> Bytes {
        let mut data = Map::new();
        data.insert("client".into(), Value::from(&*self.client));
        data.insert("subscriptions".into(), json!(self.connected.subscriptions));
        notice(&self.account_sid, "stream.open", data)
    }

    /// A `stream.gap` notice; `dropped` is `null` when the count is unknown.
    pub fn gap_notice(&self, dropped: u64) -> Bytes {
        let mut data = Map::new();
        let dropped = (dropped != crate::outbox::GAP_UNKNOWN).then_some(dropped);
        data.insert("dropped".into(), json!(dropped));
        self.state.metrics.gaps.inc();
        notice(&self.account_sid, "stream.gap", data)
    }

    /// A notice with no data (`stream.expired`, `stream.shutdown`).
    pub fn bare_notice(&self, type_name: &str) -> Bytes {
        notice(&self.account_sid, type_name, Map::new())
    }

    /// Counts delivered events and their end-to-end latency for a transport.
    pub fn delivered(&self, transport: &str, entries: &[Entry]) {
        let metrics = &self.state.metrics;
        metrics
            .delivered
            .with_label_values(&[transport])
            .inc_by(entries.len() as u64);
        let latency = metrics.delivery_latency.with_label_values(&[transport]);
        for entry in entries {
            latency.observe(entry.event.accepted_at.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // do_send: the session must learn that its channel closed, or it never starts
        // its idle countdown; this is rare (once per connection) and cannot be refused.
        self.connected.session.do_send(Detached {
            conn: self.connected.conn,
        });
    }
}
