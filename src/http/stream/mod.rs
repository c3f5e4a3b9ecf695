//! `GET /v1/Accounts/{AccountSid}/Stream` (docs/api.md §4): authenticate, validate, connect
//! the client's session through its proxy, then hand the connection to its transport:
//! WebSocket for an `Upgrade: websocket` request, long-poll for `transport=poll`,
//! SSE otherwise.

pub mod frame_guard;
pub mod params;
pub mod poll;
pub mod reassembly;
pub mod sse;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};
use tokio::sync::OwnedSemaphorePermit;

use super::{control, ApiError, AppState};
use crate::account::AccountIdx;
use crate::actors::proxy::{Connect, Connected, NewSubscription, ResumeFrom};
use crate::actors::session::Detached;
use crate::auth::Principal;
use crate::clock::{self, unix_now};
use crate::config::CorsConfig;
use crate::cursor::{account_tag, Cursor, CursorText};
use crate::event::notice;
use crate::grant::Grant;
use crate::outbox::{Drain, Entry};
use crate::wire::write_event_at;
use params::{StreamParams, Transport, EARLIEST};

/// Most bytes of one SSE chunk or one long-poll response (unless a single event is
/// larger): a slow reader is bounded in bytes, not in events, and what does not fit
/// stays in the client's outbox for the next chunk or poll.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Room kept in a chunk for what surrounds the events: a `stream.gap` notice and a
/// long-poll's `{"events":[…],"cursor":"…"}`.
const CHUNK_ENVELOPE: usize = 1024;

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
    payload: web::Payload,
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
    let resume = match params.cursor.as_deref() {
        None => ResumeFrom::Pending,
        Some(EARLIEST) => ResumeFrom::Earliest,
        Some(text) => {
            let cursor = Cursor::decode(text, tag)?;
            ResumeFrom::Cursor(cursor.epoch, cursor.seq)
        }
    };
    let websocket = is_websocket(&req);
    if websocket && params.transport == Transport::Poll {
        return Err(ApiError::parameter(
            "transport: poll cannot be used on a WebSocket upgrade",
        ));
    }
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "the server is shutting down",
        ));
    }
    if let Some(filter) = &params.filter {
        state.topology.quotas.check_filter(account, filter)?;
    }
    let ephemeral = params.client.is_none();
    let client: Arc<str> = params
        .client
        .unwrap_or_else(|| format!("cl{}", &crate::account::random_hex()[..16]))
        .into();
    let expires = params.expires;
    let grant = Arc::new(params.grant);
    // A replay waits for its turn before it asks anything of the proxy, and keeps
    // it until the replayed events are first written (see `Connection::drain_within`).
    let replay_turn = match resume {
        ResumeFrom::Earliest => Some(replay_turn(&state).await?),
        _ => None,
    };
    control::shared::arrive(&state, account, (!ephemeral).then_some(&client)).await;
    let connected = state
        .ask_proxy(Connect {
            account,
            client: client.clone(),
            subscription: params.filter.map(|filter| NewSubscription {
                filter: Arc::new(filter),
                expires,
                callback: None,
            }),
            default: NewSubscription {
                filter: Arc::new(params.default_filter),
                expires,
                callback: None,
            },
            resume,
            ephemeral,
        })
        .await??;
    if connected.subscribed && !ephemeral {
        control::shared::share(&state, account, &client, &connected.subscriptions).await;
    }
    let closes_at = match principal {
        Principal::SignedUrl { expires, .. } => Some(expires),
        Principal::Account(_) => None,
    };
    let conn = Connection::new(
        state.clone(),
        (account, client),
        grant,
        connected,
        closes_at,
        replay_turn,
    );
    if websocket {
        return ws::respond(&req, payload, conn);
    }
    Ok(match params.transport {
        Transport::Poll => {
            let limit = state.config.stream.max_poll_secs;
            let timeout = params
                .timeout
                .unwrap_or(poll::DEFAULT_TIMEOUT_SECS)
                .min(limit);
            poll::respond(conn, Duration::from_secs(timeout)).await
        }
        Transport::Sse => sse::respond(&state, conn),
    })
}

/// A connection's cursors for one numbering of its outbox (see [`Connection::cursors`]).
pub struct Cursors {
    account_tag: u32,
    epoch: u64,
}

impl Cursors {
    /// The cursor of the event numbered `seq`.
    pub fn at(&self, seq: u64) -> CursorText {
        Cursor {
            account_tag: self.account_tag,
            epoch: self.epoch,
            seq,
        }
        .encode()
    }
}

/// A pass through a worker's queue shorter than this means it has caught up, and a
/// finished replay's turn may go to the next (see [`ReplayTurn::pass_on`]).
const CAUGHT_UP: Duration = Duration::from_micros(100);

/// Longest a finished replay's turn waits for the worker to catch up, so a worker
/// busy with other work still serves replays (at most 200 a second on it then).
const MOST_HELD: Duration = Duration::from_millis(5);

/// One of the node's `stream.replays_at_once` turns for a `cursor=earliest` replay,
/// counted in `switchboard_replays_in_progress` until it is dropped.
pub struct ReplayTurn {
    _permit: OwnedSemaphorePermit,
    in_progress: prometheus::IntGauge,
}

impl ReplayTurn {
    /// Gives the turn to the next replay once this worker thread has caught up:
    /// after a pass through its queue (`yield_now` resumes after the I/O driver's
    /// next poll and what was ready then) that took under [`CAUGHT_UP`], or after
    /// [`MOST_HELD`] at most, so replays are background work that starts in the
    /// worker's slack, and a publish that arrived during one is handled before the
    /// next begins. On one core in a reconnect storm, passing the turn on at once
    /// left publishes waiting behind back-to-back replays (p99 3 ms); after one pass,
    /// p99 was 0.9 ms and p50 0.6 ms; waiting for a short pass took p50 to 0.15 ms
    /// at the same replay rate (docs/loadtest.md, "storm").
    fn pass_on(self) {
        actix_rt::spawn(async move {
            let held = Instant::now();
            loop {
                let pass = Instant::now();
                tokio::task::yield_now().await;
                if pass.elapsed() < CAUGHT_UP || held.elapsed() > MOST_HELD {
                    break;
                }
            }
            drop(self);
        });
    }
}

impl Drop for ReplayTurn {
    fn drop(&mut self) {
        self.in_progress.dec();
    }
}

/// Waits up to [`crate::http::PROXY_DEADLINE`] for a replay turn.
async fn replay_turn(state: &AppState) -> Result<ReplayTurn, ApiError> {
    let waited = tokio::time::timeout(
        crate::http::PROXY_DEADLINE,
        state.replays.clone().acquire_owned(),
    )
    .await;
    match waited {
        Ok(Ok(permit)) => {
            let in_progress = state.metrics.replays_in_progress.clone();
            in_progress.inc();
            Ok(ReplayTurn {
                _permit: permit,
                in_progress,
            })
        }
        // The semaphore is never closed; a timeout is the only refusal.
        Ok(Err(_)) | Err(_) => Err(ApiError::unavailable(
            "replays_busy",
            "stream.replays_at_once replays are in progress; retry shortly",
        )),
    }
}

fn is_websocket(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// One open publication channel, whatever its transport: renders what it writes and,
/// when dropped, tells the session the channel is gone.
pub struct Connection {
    /// Shared, not copied: `AppState` is some 700 bytes of handles, and every idle
    /// stream holds its connection for as long as it is open.
    state: web::Data<AppState>,
    account: AccountIdx,
    account_sid: Arc<str>,
    tag: u32,
    client: Arc<str>,
    /// This connection's own grant: which scoped events it is written, what its client
    /// events may do. Never the client's: another URL of the client keeps its own.
    grant: Arc<Grant>,
    connected: Connected,
    /// The last sequence number this connection has read, written or withheld: the
    /// cursor to hand out when nothing was written.
    read_upto: AtomicU64,
    /// When a signed URL's stream must end with `stream.expired` (unix seconds).
    pub closes_at: Option<u64>,
    /// The delivered and writes counters and latency histogram of this connection's
    /// transport, looked up once: a label lookup hashes the label on every call.
    delivery_metrics: std::sync::OnceLock<DeliveryMetrics>,
    /// A `cursor=earliest` connection's turn among the node's replays, given back
    /// once its first events are taken for writing.
    replay_turn: parking_lot::Mutex<Option<ReplayTurn>>,
    /// Whether `replay_turn` holds a turn: every drain reads this, not the lock.
    replaying: std::sync::atomic::AtomicBool,
}

impl Connection {
    fn new(
        state: web::Data<AppState>,
        (account, client): (AccountIdx, Arc<str>),
        grant: Arc<Grant>,
        connected: Connected,
        closes_at: Option<u64>,
        replay_turn: Option<ReplayTurn>,
    ) -> Connection {
        let account_sid: Arc<str> = state.account_sid(account).into();
        Connection {
            state,
            account,
            tag: account_tag(&account_sid),
            account_sid,
            client,
            grant,
            read_upto: AtomicU64::new(connected.position),
            connected,
            closes_at,
            delivery_metrics: std::sync::OnceLock::new(),
            replaying: std::sync::atomic::AtomicBool::new(replay_turn.is_some()),
            replay_turn: parking_lot::Mutex::new(replay_turn),
        }
    }

    /// The cursor text for a sequence number of this client's outbox.
    pub fn cursor(&self, seq: u64) -> CursorText {
        self.cursors().at(seq)
    }

    /// Cursors in the outbox's current numbering, for a chunk of events: the
    /// numbering is read once, not once an event (each read takes the outbox's lock).
    pub fn cursors(&self) -> Cursors {
        Cursors {
            account_tag: self.tag,
            epoch: self.connected.outbox.epoch(),
        }
    }

    /// The cursor before the connection's first event.
    pub fn start_cursor(&self) -> CursorText {
        self.cursor(self.connected.position)
    }

    /// The cursor after everything this connection has read, including events its
    /// grant withheld, so a client resuming from it is not offered them again.
    pub fn read_cursor(&self) -> CursorText {
        self.cursor(self.read_upto.load(Ordering::Relaxed))
    }

    /// Takes what is new for this connection, at most one chunk's worth
    /// ([`MAX_CHUNK_BYTES`]); the rest follows in the next chunk or poll.
    pub fn drain(&self) -> Drain {
        self.drain_within(MAX_CHUNK_BYTES - CHUNK_ENVELOPE)
    }

    /// Takes what is new for this connection, up to `max_bytes` of events but at
    /// least one (see [`crate::outbox::Outbox::drain`]), minus the scoped events its
    /// own grant does not cover (docs/api.md §4: whichever of the client's subscriptions
    /// matched them). Withheld events still move the client's position on: this
    /// connection never sees them and a later connection resuming after it does not
    /// either, while one resuming from an earlier cursor is offered them again and
    /// judged by its own grant. So cursors stay in order, with no stall and no
    /// duplicate.
    pub fn drain_within(&self, max_bytes: usize) -> Drain {
        match self
            .connected
            .outbox
            .drain(self.connected.conn, Instant::now(), max_bytes)
        {
            Drain::Events { gap, mut entries } => {
                // The replay is read and merged, its first chunk taken: the next
                // replay may start (dropping the permit gives the turn back).
                if self.replaying.load(Ordering::Relaxed) {
                    self.replaying.store(false, Ordering::Relaxed);
                    if let Some(turn) = self.replay_turn.lock().take() {
                        turn.pass_on();
                    }
                }
                if let Some(last) = entries.last() {
                    self.read_upto.store(last.seq, Ordering::Relaxed);
                }
                let before = entries.len();
                entries.retain(|entry| self.grant.sees(entry.event.scope.as_deref()));
                let withheld = before - entries.len();
                if withheld > 0 {
                    self.state.metrics.events_withheld.inc_by(withheld as u64);
                }
                Drain::Events { gap, entries }
            }
            superseded => superseded,
        }
    }

    /// Waits until something is pushed for the client (or a takeover).
    pub async fn woken(&self) {
        self.connected.outbox.woken().await
    }

    /// The client's outbox, for transports that wait on it from elsewhere.
    pub fn outbox(&self) -> Arc<crate::outbox::Outbox> {
        self.connected.outbox.clone()
    }

    /// Passes a wake-up on to the connection that took over from this one.
    pub fn pass_wake(&self) {
        self.connected.outbox.wake();
    }

    /// The `stream.open` notice, written once, first. It takes the subscription views
    /// it lists: an open stream has no other use for them, and holding them was a
    /// tenth of an idle stream's memory.
    pub fn open_notice(&mut self) -> Bytes {
        let subscriptions = std::mem::take(&mut self.connected.subscriptions);
        let mut data = Map::new();
        data.insert("client".into(), Value::from(&*self.client));
        data.insert("subscriptions".into(), json!(subscriptions));
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

    /// A `stream.error` notice carrying an API error body.
    pub fn error_notice(&self, error: &ApiError) -> Bytes {
        let mut data = Map::new();
        data.insert("status".into(), json!(error.status.as_u16()));
        data.insert("code".into(), json!(error.code));
        data.insert("message".into(), json!(error.message));
        notice(&self.account_sid, "stream.error", data)
    }

    /// One event's JSON with its cursor inside (WebSocket frames, long-poll lists).
    pub fn event_with_cursor(entry: &Entry, cursors: &Cursors) -> Bytes {
        let mut buf = BytesMut::with_capacity(entry.event.json_open.len() + 96);
        write_event_at(&mut buf, entry, Some(&cursors.at(entry.seq)));
        buf.freeze()
    }

    /// Counts one write of delivered events and their end-to-end latency for a
    /// transport (a connection has one).
    pub fn delivered(&self, transport: &str, entries: &[Entry]) {
        let DeliveryMetrics {
            delivered,
            writes,
            latency,
        } = self.delivery_metrics.get_or_init(|| {
            let metrics = &self.state.metrics;
            DeliveryMetrics {
                delivered: metrics.delivered.with_label_values(&[transport]),
                writes: metrics.delivery_writes.with_label_values(&[transport]),
                latency: metrics.delivery_latency.with_label_values(&[transport]),
            }
        });
        delivered.inc_by(entries.len() as u64);
        writes.inc();
        // One clock read for the whole chunk: its events are written together.
        let now = Instant::now();
        for entry in entries {
            let latency_secs = now.saturating_duration_since(entry.event.accepted_at);
            latency.observe(latency_secs.as_secs_f64());
        }
    }

    /// The open-connections gauge of a transport.
    pub fn gauge(&self, transport: &str) -> prometheus::IntGauge {
        self.state
            .metrics
            .connections
            .with_label_values(&[transport])
    }

    /// When the server ends this connection on its own (a signed URL's expiry, or
    /// `stream.max_connection_secs`), and whether that is an expiry.
    /// Checked arithmetic: a far `expires` is a far deadline, never an overflow.
    pub fn deadline(&self) -> Option<(tokio::time::Instant, bool)> {
        let now = tokio::time::Instant::now();
        let expiry = self.closes_at.map(|at| {
            (
                clock::after_tokio(now, clock::until_unix(at, unix_now())),
                true,
            )
        });
        let max = self.state.config.stream.max_connection_secs;
        let limit = (max > 0).then(|| (clock::after_tokio(now, Duration::from_secs(max)), false));
        match (expiry, limit) {
            (Some(e), Some(l)) => Some(if e.0 <= l.0 { e } else { l }),
            (e, l) => e.or(l),
        }
    }

    /// The server's drain signal.
    pub fn shutdown(&self) -> tokio::sync::watch::Receiver<bool> {
        self.state.shutdown.clone()
    }

    /// The app state (for client events sent over the connection).
    pub fn state(&self) -> &AppState {
        self.state.get_ref()
    }

    /// The connection's account, client and grant: the sender of its client events.
    pub fn sender(&self) -> (AccountIdx, Arc<str>, Arc<Grant>) {
        (self.account, self.client.clone(), self.grant.clone())
    }
}

/// A transport's delivery metrics, as one connection counts them.
struct DeliveryMetrics {
    delivered: prometheus::IntCounter,
    writes: prometheus::IntCounter,
    latency: prometheus::Histogram,
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
