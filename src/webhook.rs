//! Webhook delivery: POSTing a webhook subscription's matched events to its callback.
//!
//! **Owns** one bounded queue of matched events per webhook subscription and the one
//! worker task that drains it. **Called by** the event proxy that holds the
//! subscription: it [`Webhook::start`]s the worker from inside its handler, then
//! [`Webhook::push`]es matched events on its hot path (a lock and a wake, never an
//! await), forwards expiry changes ([`Webhook::set_expires`]) and [`Webhook::close`]s
//! the webhook when the subscription is removed or expires. The HTTP edge checks a
//! `callback` with [`Egress::check_url`](crate::egress::Egress::check_url) before the
//! subscription is accepted, and the worker's client comes from
//! [`Egress::webhook_client`](crate::egress::Egress::webhook_client): no redirects
//! (a 3xx is a failed delivery, retried), no private networks unless allowed.
//!
//! **Delivery** (design.md "Webhooks"): the worker takes up to `webhook.max_batch`
//! events from the head of the queue, leaving them queued, and POSTs them as one JSON
//! array signed with `X-Switchboard-Signature`. A 2xx acknowledges (removes) them;
//! anything else is retried with the *same* batch after a full-jitter exponential
//! backoff, so events arrive in order and none is skipped. One batch is in flight at a
//! time per webhook; every webhook has its own task, so a slow or dead callback holds
//! up only its own queue, never the proxy or another webhook.
//!
//! **Bounds**: at most `retention.max_events` events are queued; when full, the oldest
//! is dropped (`switchboard_events_dropped_total`). An event dropped while its batch
//! was in flight may still reach the receiver (delivery is at-least-once). Requests
//! time out after `webhook.timeout_secs`; at most 64 KiB of a response body is read.
//!
//! **Close and expiry**: retries stop once the subscription has expired (unix now >
//! `expires`) and on [`Webhook::close`] (also run when the last handle is dropped):
//! the worker ends, abandoning any request in flight, and every event still queued is
//! counted in `switchboard_webhook_giveups_total`. Events pushed after that are counted
//! as give-ups at once. `switchboard_webhook_pending_events` always equals the events
//! queued across all webhooks.
//!
//! **Drain**: on SIGTERM the server waits ([`flush`]) up to `webhook.drain_secs` for
//! the workers to empty their queues before the proxies stop and close the webhooks.
//!
//! **With `data_dir`** ([`Webhook::keep`]): the worker keeps the lowest position it
//! still holds in a [`DeliveredCursor`], which the event log writes with its
//! commits; a webhook made again after a restart waits for what it is owed after
//! that position ([`Webhook::prefill`]), so what a crash or a drain left queued is
//! delivered by the next process (docs/durability.md).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use tokio::sync::{watch, Notify};
use tracing::Instrument;

use crate::clock::{self, unix_now};
use crate::config::WebhookConfig;
use crate::event::SharedEvent;
use crate::metrics::Metrics;
use crate::outbox::{Entry, MatchedSubs};
use crate::store::delivered::DeliveredCursor;
use crate::wire;

/// The header carrying the callback signature (docs/api.md §5).
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";

/// The `User-Agent` of every callback request, so receivers can tell the router apart.
pub const USER_AGENT_VALUE: &str = "Switchboard-Webhook/1";

/// The shortest retry delay, whatever the jitter draws: a dead receiver is not hammered.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Most bytes of a response body read (and discarded) so the connection can be
/// reused; a longer body is abandoned (docs/api.md §5).
const MAX_RESPONSE_DRAIN: usize = 64 * 1024;

/// The `transport` label of webhook deliveries.
const TRANSPORT: &str = "webhook";

/// Why one callback request failed; every variant is retried.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// No response: the URL could not become a request, the connection was refused
    /// or reset, or the timeout passed.
    #[error("request failed: {0}")]
    Request(String),
    /// A response that is not 2xx.
    #[error("status {0}")]
    Status(u16),
}

/// A webhook subscription's delivery queue and the handle on its worker.
///
/// The proxy keeps it (as `Arc<Webhook>`) next to the subscription; dropping the last
/// handle closes it like [`Webhook::close`].
pub struct Webhook {
    inner: Arc<Inner>,
}

/// What the handle and the worker share.
struct Inner {
    /// The callback, exactly as given: it is also the signed prefix.
    url: Arc<str>,
    /// The account's token, the signature key.
    token: Arc<str>,
    /// `scheme://host[:port]` of the callback, for logs (paths and queries may carry
    /// secrets).
    target: Box<str>,
    max_events: usize,
    max_batch: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    state: Mutex<State>,
    /// Wakes the worker when events are queued (a stored permit if it is busy).
    wake: Notify,
    /// Becomes `true` once, on close: ends the worker wherever it waits.
    closed: watch::Sender<bool>,
    /// With `data_dir`: where acknowledged deliveries are kept ([`Webhook::keep`]).
    kept: OnceLock<Arc<DeliveredCursor>>,
    metrics: Metrics,
}

/// The queue and the subscription facts the worker needs, under one lock.
struct State {
    /// Undelivered events in order; the in-flight batch is a prefix of it.
    queue: VecDeque<Entry>,
    /// Sequence number of the next pushed event, so an acknowledgement removes exactly
    /// the events of its batch that are still queued.
    next_seq: u64,
    /// The subscription's expiry, unix seconds.
    expires: Option<u64>,
    /// Closed or given up: nothing is queued any more.
    closed: bool,
    /// Waiting for the events a restarted node owes it ([`Webhook::prefill`]):
    /// nothing is sent meanwhile, so they go first.
    held: bool,
}

impl Webhook {
    /// Spawns the delivery worker on the current actix/tokio runtime (it is called
    /// from inside a proxy actor's handler) and returns the handle the proxy keeps.
    ///
    /// The worker is an ordinary task on the caller's runtime, so webhooks of one proxy
    /// share its thread but never wait for one another. `max_events` is the queue
    /// bound (`retention.max_events`). Panics, like `tokio::spawn`, when called outside
    /// a runtime.
    pub fn start(
        client: reqwest::Client,
        url: Arc<str>,
        token: Arc<str>,
        expires: Option<u64>,
        config: &WebhookConfig,
        max_events: usize,
        metrics: Metrics,
    ) -> Arc<Webhook> {
        let target: Box<str> = log_target(&url).into();
        let (closed, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            url,
            token,
            target,
            max_events: max_events.max(1),
            max_batch: config.max_batch.max(1),
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            max_backoff: Duration::from_secs(config.max_backoff_secs),
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                next_seq: 1,
                expires,
                closed: false,
                held: false,
            }),
            wake: Notify::new(),
            closed,
            kept: OnceLock::new(),
            metrics,
        });
        let span = tracing::info_span!("webhook", callback = %inner.target);
        tokio::spawn(run(Arc::clone(&inner), client).instrument(span));
        tracing::debug!(callback = %inner.target, ?expires, "webhook started");
        Arc::new(Webhook { inner })
    }

    /// Queues one matched event; never blocks or awaits (called on the proxy's hot
    /// path). Bounded by max_events: when full, the oldest undelivered event is dropped
    /// and counted in metrics.events_dropped.
    ///
    /// After [`Webhook::close`] (or a give-up at expiry) the event is not queued and is
    /// counted as a give-up.
    pub fn push(&self, event: SharedEvent, subs: MatchedSubs) {
        let inner = &self.inner;
        let metrics = &inner.metrics;
        {
            let mut state = inner.state.lock();
            if state.closed {
                drop(state);
                metrics.webhook_giveups.inc();
                return;
            }
            let mut dropped = 0u64;
            while state.queue.len() >= inner.max_events {
                if state.queue.pop_front().is_none() {
                    break;
                }
                dropped += 1;
            }
            if let Some(cursor) = inner.kept.get() {
                cursor.lower_head(event.position);
            }
            state.enqueue(event, subs);
            drop(state);
            if dropped > 0 {
                metrics.events_dropped.inc_by(dropped);
                metrics.webhook_pending.sub(gauge_delta(dropped));
            }
            metrics.webhook_pending.inc();
        }
        inner.wake.notify_one();
    }

    /// With `data_dir`: keeps how far the callback has acknowledged the event
    /// log in `cursor`; `held`, the webhook waits for [`Webhook::prefill`] before
    /// it sends anything. Called right after [`Webhook::start`], before any push.
    pub fn keep(&self, cursor: Arc<DeliveredCursor>, held: bool) {
        let mut state = self.inner.state.lock();
        state.held = held;
        if !held {
            // A new webhook owes nothing from before now.
            cursor.set_head(lowest_position(&state.queue));
        }
        let _ = self.inner.kept.set(cursor);
    }

    /// The events a restarted node owes this webhook (read back from the event
    /// log, oldest first), merged with those pushed meanwhile by position, each
    /// once; then delivery starts. Bounded like [`Webhook::push`].
    pub fn prefill(&self, owed: Vec<SharedEvent>, sid: Arc<str>) {
        let inner = &self.inner;
        let metrics = &inner.metrics;
        let mut state = inner.state.lock();
        state.held = false;
        if state.closed {
            drop(state);
            metrics.webhook_giveups.inc_by(owed.len() as u64);
            return;
        }
        let before = state.queue.len();
        let mut all: Vec<(SharedEvent, MatchedSubs)> = owed
            .into_iter()
            .map(|event| (event, MatchedSubs::from_iter([sid.clone()])))
            .chain(state.queue.drain(..).map(|entry| (entry.event, entry.subs)))
            .collect();
        // Stable: of two copies of a position, the owed one (first) is kept.
        all.sort_by_key(|(event, _)| event.position);
        all.dedup_by_key(|(event, _)| event.position);
        let dropped = all.len().saturating_sub(inner.max_events);
        for (event, subs) in all.into_iter().skip(dropped) {
            state.enqueue(event, subs);
        }
        let after = state.queue.len();
        if let Some(cursor) = inner.kept.get() {
            cursor.set_head(lowest_position(&state.queue));
        }
        drop(state);
        metrics.events_dropped.inc_by(dropped as u64);
        metrics
            .webhook_pending
            .add(gauge_delta(after as u64) - gauge_delta(before as u64));
        inner.wake.notify_one();
    }

    /// The subscription's expiry changed (retries stop at expiry).
    ///
    /// A worker waiting out a backoff sees the new value when it wakes.
    pub fn set_expires(&self, expires: Option<u64>) {
        self.inner.state.lock().expires = expires;
    }

    /// The subscription was removed or expired: the worker stops; events still queued
    /// are counted as give-ups (metrics.webhook_giveups += n).
    ///
    /// A request in flight is abandoned. Idempotent; also run on drop.
    pub fn close(&self) {
        let (given_up, already) = self.inner.give_up();
        self.inner.closed.send_replace(true);
        if !already {
            tracing::debug!(callback = %self.inner.target, given_up, "webhook closed");
        }
    }

    /// Events queued and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.inner.state.lock().queue.len()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("callback", &self.inner.target)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Queues an event at the back, with the next sequence number.
    fn enqueue(&mut self, event: SharedEvent, subs: MatchedSubs) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Entry {
            seq,
            event,
            subs,
            at: Instant::now(),
        });
    }
}

impl Inner {
    /// Marks the webhook closed and empties its queue, counting give-ups. Returns how
    /// many events were given up and whether it was already closed.
    fn give_up(&self) -> (usize, bool) {
        let mut state = self.state.lock();
        let already = state.closed;
        state.closed = true;
        let n = state.queue.len();
        state.queue.clear();
        drop(state);
        if n > 0 {
            self.metrics.webhook_giveups.inc_by(n as u64);
            self.metrics.webhook_pending.sub(gauge_delta(n as u64));
        }
        (n, already)
    }

    /// Copies (Arc clones) up to `max_batch` events from the head of the queue, which
    /// keeps them until they are acknowledged. `None` when closed.
    fn take_batch(&self) -> Option<Vec<Entry>> {
        let state = self.state.lock();
        if state.closed {
            return None;
        }
        if state.held {
            return Some(Vec::new());
        }
        Some(state.queue.iter().take(self.max_batch).cloned().collect())
    }

    /// Removes the acknowledged batch (those of its events still queued: some may have
    /// been dropped by the bound meanwhile) and counts the delivery.
    fn acknowledge(&self, batch: &[Entry]) {
        let Some(last) = batch.last().map(|entry| entry.seq) else {
            return;
        };
        let removed = {
            let mut state = self.state.lock();
            let mut removed = 0u64;
            while state.queue.front().is_some_and(|entry| entry.seq <= last) {
                state.queue.pop_front();
                removed += 1;
            }
            if let Some(cursor) = self.kept.get() {
                cursor.set_head(lowest_position(&state.queue));
            }
            removed
        };
        let metrics = &self.metrics;
        metrics.webhook_pending.sub(gauge_delta(removed));
        metrics.webhook_requests.with_label_values(&["ok"]).inc();
        let n = batch.len() as u64;
        metrics.webhook_events.inc_by(n);
        metrics.delivered.with_label_values(&[TRANSPORT]).inc_by(n);
        let latency = metrics.delivery_latency.with_label_values(&[TRANSPORT]);
        for entry in batch {
            latency.observe(entry.event.accepted_at.elapsed().as_secs_f64());
        }
    }

    /// The expiry as it is now, and whether it has passed.
    fn expiry(&self) -> (Option<u64>, bool) {
        let expires = self.state.lock().expires;
        let expired = expires.is_some_and(|at| unix_now() > at);
        (expires, expired)
    }
}

/// The worker: one batch in flight at a time, retried until acknowledged, closed or
/// expired.
async fn run(inner: Arc<Inner>, client: reqwest::Client) {
    let mut closed = inner.closed.subscribe();
    loop {
        let Some(batch) = inner.take_batch() else {
            return;
        };
        if batch.is_empty() {
            tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => return,
                () = inner.wake.notified() => continue,
            }
        }
        let body = render(&batch);
        let mut signed = Vec::with_capacity(inner.url.len() + body.len());
        signed.extend_from_slice(inner.url.as_bytes());
        signed.extend_from_slice(&body);
        let signature = crate::auth::sign_base64(&inner.token, &signed);
        drop(signed);

        let mut attempt: u32 = 0;
        loop {
            let (expires, expired) = inner.expiry();
            if expired {
                let (given_up, _) = inner.give_up();
                tracing::warn!(
                    given_up,
                    expires,
                    attempts = attempt,
                    "webhook subscription expired before its callback acknowledged; giving up"
                );
                return;
            }
            let result = tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => return,
                result = send(&client, &inner, body.clone(), &signature) => result,
            };
            match result {
                Ok(()) => {
                    inner.acknowledge(&batch);
                    tracing::debug!(
                        events = batch.len(),
                        attempts = attempt + 1,
                        "webhook batch acknowledged"
                    );
                    break;
                }
                Err(error) => {
                    let metrics = &inner.metrics;
                    metrics.webhook_requests.with_label_values(&["error"]).inc();
                    metrics.webhook_retries.inc();
                    let delay = backoff(
                        attempt,
                        inner.initial_backoff,
                        inner.max_backoff,
                        &mut rand::thread_rng(),
                    );
                    tracing::warn!(
                        %error,
                        events = batch.len(),
                        attempt = attempt + 1,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "webhook callback failed; retrying the batch"
                    );
                    attempt = attempt.saturating_add(1);
                    let wake_at = retry_at(delay, expires);
                    tokio::select! {
                        biased;
                        _ = closed.wait_for(|closed| *closed) => return,
                        () = tokio::time::sleep_until(wake_at.into()) => {}
                    }
                }
            }
        }
    }
}

/// The lowest position queued: the queue is in arrival order, and events of
/// different shards arrive out of position order.
fn lowest_position(queue: &VecDeque<Entry>) -> Option<u64> {
    queue.iter().map(|entry| entry.event.position).min()
}

/// On drain (docs/api.md §8), waits until every webhook queue is empty — the workers go on
/// delivering and retrying meanwhile — or `within` has passed. Errs with the events
/// still queued, which closing the webhooks then gives up (and counts).
///
/// The queues live inside the proxies' actors; `switchboard_webhook_pending_events`
/// is their exact sum (see the module's doc), so it is what is watched, every 10 ms:
/// a drain happens once per process, and nothing else would wake it.
pub async fn flush(metrics: &Metrics, within: Duration) -> Result<(), u64> {
    let deadline = Instant::now().checked_add(within);
    loop {
        let pending = u64::try_from(metrics.webhook_pending.get()).unwrap_or(0);
        if pending == 0 {
            return Ok(());
        }
        if deadline.is_some_and(|at| Instant::now() >= at) {
            return Err(pending);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One POST of a rendered batch.
async fn send(
    client: &reqwest::Client,
    inner: &Inner,
    body: Bytes,
    signature: &str,
) -> Result<(), AttemptError> {
    let response = client
        .post(&*inner.url)
        .timeout(inner.timeout)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await
        .map_err(request_error)?;
    let status = response.status();
    drain(response).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(AttemptError::Status(status.as_u16()))
    }
}

/// Reads (a bounded part of) the response body so the connection can be reused; the
/// body itself is never looked at (nor logged).
async fn drain(response: reqwest::Response) {
    let _ = crate::egress::read_capped(response, MAX_RESPONSE_DRAIN).await;
}

/// A request error with its causes, without the URL (it may carry secrets).
fn request_error(error: reqwest::Error) -> AttemptError {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    AttemptError::Request(text)
}

/// `[` + each event as delivered (with its subscriptions) joined by `,` + `]`.
fn render(batch: &[Entry]) -> Bytes {
    let size: usize = batch
        .iter()
        .map(|entry| entry.event.json_open.len() + 64)
        .sum();
    let mut buf = BytesMut::with_capacity(size + 2);
    buf.put_u8(b'[');
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        wire::write_event(&mut buf, entry);
    }
    buf.put_u8(b']');
    buf.freeze()
}

/// Full-jitter backoff: uniform in [0, min(max, initial · 2^attempt)], but at least
/// [`MIN_BACKOFF`].
fn backoff(attempt: u32, initial: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    let cap = initial.saturating_mul(factor).min(max);
    let drawn = if cap.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(rng.gen_range(0.0..=cap.as_secs_f64()))
    };
    drawn.max(MIN_BACKOFF)
}

/// When to retry: after `delay`, or as soon as the subscription counts as expired
/// (unix now > expires) if that comes first, so a long backoff does not outlive it.
/// Checked arithmetic throughout: a subscription's `expires` may be any u64.
fn retry_at(delay: Duration, expires: Option<u64>) -> Instant {
    let now = Instant::now();
    let after_delay = clock::after(now, delay);
    let Some(expires) = expires else {
        return after_delay;
    };
    let left = clock::until_unix(expires.saturating_add(1), unix_now());
    after_delay.min(clock::after(now, left.max(MIN_BACKOFF)))
}

/// A count as a gauge delta.
fn gauge_delta(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `scheme://host[:port]` of a URL, for logs.
fn log_target(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("");
            match parsed.port() {
                Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
                None => format!("{}://{host}", parsed.scheme()),
            }
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountIdx;
    use crate::event::{Draft, Event};
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TOKEN: &str = "test-token-0123456789";
    /// Every wait in these tests ends by this.
    const DEADLINE: Duration = Duration::from_secs(15);

    /// One request as the receiver saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        path_and_query: String,
        signature: Option<String>,
        content_type: Option<String>,
        user_agent: Option<String>,
        body: Bytes,
        status: u16,
    }

    struct Receiver {
        seen: Arc<Mutex<Vec<Seen>>>,
        /// Requests answered 500 before the receiver starts answering 200.
        fail_first: usize,
        count: AtomicUsize,
    }

    /// A callback receiver on 127.0.0.1:0 that records every request.
    struct Server {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        handle: actix_web::dev::ServerHandle,
    }

    impl Server {
        async fn stop(self) {
            self.handle.stop(false).await;
        }
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().clone()
        }
    }

    async fn record(req: HttpRequest, body: web::Bytes, rx: web::Data<Receiver>) -> HttpResponse {
        let n = rx.count.fetch_add(1, Ordering::SeqCst);
        let status = if n < rx.fail_first { 500 } else { 200 };
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        rx.seen.lock().push(Seen {
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or_default(),
            signature: header("x-switchboard-signature"),
            content_type: header("content-type"),
            user_agent: header("user-agent"),
            body,
            status,
        });
        if status == 200 {
            HttpResponse::Ok().body("ok")
        } else {
            HttpResponse::InternalServerError().body("try again")
        }
    }

    async fn receiver(fail_first: usize) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let data = web::Data::new(Receiver {
            seen: Arc::clone(&seen),
            fail_first,
            count: AtomicUsize::new(0),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", 0))
        .expect("bind a receiver");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Server {
            url: format!("http://{addr}/hooks/in?tenant=a&x=%20y"),
            seen,
            handle,
        }
    }

    fn config(max_batch: usize) -> WebhookConfig {
        WebhookConfig {
            allowed_hosts: Vec::new(),
            initial_backoff_ms: 20,
            max_backoff_secs: 1,
            timeout_secs: 5,
            max_batch,
            ..WebhookConfig::default()
        }
    }

    #[tokio::test]
    async fn flush_waits_for_the_queues_to_empty_within_its_window() {
        let metrics = Metrics::new();
        assert_eq!(flush(&metrics, Duration::ZERO).await, Ok(()));
        metrics.webhook_pending.add(3);
        assert_eq!(flush(&metrics, Duration::from_millis(20)).await, Err(3));
        let emptied = metrics.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            emptied.webhook_pending.sub(3);
        });
        assert_eq!(flush(&metrics, Duration::from_secs(10)).await, Ok(()));
    }

    fn event(n: usize) -> SharedEvent {
        let mut data = serde_json::Map::new();
        data.insert("n".into(), n.into());
        data.insert("text".into(), "line one\nline \"two\" é".into());
        Arc::new(Event::build(
            AccountIdx(0),
            "AC0123456789abcdef0123456789abcdef",
            Draft {
                type_name: "call.progress".into(),
                call_sid: Some("CA0123456789abcdef0123456789abcdef".into()),
                scope: None,
                data: data.into(),
            },
            "2026-01-02T03:04:05.678Z",
        ))
    }

    fn subs() -> MatchedSubs {
        MatchedSubs::from_iter([Arc::from("SU1"), Arc::from("SU2")])
    }

    /// Polls `cond` until it holds, failing the test after [`DEADLINE`].
    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let polled = tokio::time::timeout(DEADLINE, async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(polled.is_ok(), "timed out waiting for {what}");
    }

    /// The signature computed here, independently of `auth::sign_base64`.
    fn expected_signature(url: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TOKEN.as_bytes()).expect("any key length");
        mac.update(url.as_bytes());
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The ids of a request body, checking each element's shape.
    fn ids(body: &[u8]) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_slice(body).expect("body is JSON");
        let array = value.as_array().expect("body is an array");
        array
            .iter()
            .map(|event| {
                assert_eq!(event["subscriptions"], serde_json::json!(["SU1", "SU2"]));
                assert_eq!(event["type"], "call.progress");
                event["id"].as_str().expect("id").to_owned()
            })
            .collect()
    }

    fn requests(metrics: &Metrics, outcome: &str) -> u64 {
        metrics.webhook_requests.with_label_values(&[outcome]).get()
    }

    #[actix_rt::test]
    async fn delivers_in_order_signed_batches_and_retries_the_same_batch() {
        let server = receiver(2).await;
        let metrics = Metrics::new();
        let max_batch = 3;
        let hook = Webhook::start(
            reqwest::Client::new(),
            Arc::from(server.url.as_str()),
            Arc::from(TOKEN),
            None,
            &config(max_batch),
            1000,
            metrics.clone(),
        );
        let mut pushed = Vec::new();
        for n in 0..10 {
            let ev = event(n);
            pushed.push(ev.id.to_string());
            hook.push(ev, subs());
        }
        assert_eq!(metrics.webhook_pending.get(), 10);
        until("the first events acknowledged", || hook.pending() == 0).await;
        // More events after the queue emptied wake the idle worker.
        for n in 10..14 {
            let ev = event(n);
            pushed.push(ev.id.to_string());
            hook.push(ev, subs());
        }
        until("every event acknowledged", || hook.pending() == 0).await;
        let expected_ok = 4 + 2; // 10 events in batches of 3, then 4 in batches of 3
        until("the acknowledgements counted", || {
            requests(&metrics, "ok") == expected_ok
        })
        .await;

        let seen = server.seen();
        let mut acknowledged = Vec::new();
        let mut previous: Option<&Seen> = None;
        for request in &seen {
            assert_eq!(request.path_and_query, "/hooks/in?tenant=a&x=%20y");
            assert_eq!(request.content_type.as_deref(), Some("application/json"));
            assert_eq!(request.user_agent.as_deref(), Some(USER_AGENT_VALUE));
            assert_eq!(
                request.signature.as_deref(),
                Some(expected_signature(&server.url, &request.body).as_str()),
                "signature over url + raw body"
            );
            let batch = ids(&request.body);
            assert!(!batch.is_empty() && batch.len() <= max_batch, "{batch:?}");
            // Each batch is a contiguous run of what was pushed, starting right after
            // what was acknowledged: nothing skipped, nothing reordered.
            let start = acknowledged.len();
            assert_eq!(batch[..], pushed[start..start + batch.len()]);
            if let Some(prev) = previous.filter(|p| p.status != 200) {
                assert_eq!(prev.body, request.body, "a failed batch is retried as is");
            }
            if request.status == 200 {
                acknowledged.extend(batch);
            }
            previous = Some(request);
        }
        assert_eq!(acknowledged, pushed);
        assert_eq!(seen.iter().filter(|r| r.status != 200).count(), 2);
        assert_eq!(metrics.webhook_retries.get(), 2);
        assert_eq!(requests(&metrics, "error"), 2);
        assert_eq!(metrics.webhook_events.get(), 14);
        assert_eq!(metrics.delivered.with_label_values(&["webhook"]).get(), 14);
        assert_eq!(
            metrics
                .delivery_latency
                .with_label_values(&["webhook"])
                .get_sample_count(),
            14
        );
        assert_eq!(metrics.webhook_pending.get(), 0);
        assert_eq!(metrics.webhook_giveups.get(), 0);
        hook.close();
        server.stop().await;
    }

    #[actix_rt::test]
    async fn gives_up_at_expiry_when_the_receiver_always_fails() {
        let server = receiver(usize::MAX).await;
        let metrics = Metrics::new();
        let hook = Webhook::start(
            reqwest::Client::new(),
            Arc::from(server.url.as_str()),
            Arc::from(TOKEN),
            Some(unix_now() + 1),
            &config(2),
            1000,
            metrics.clone(),
        );
        for n in 0..3 {
            hook.push(event(n), subs());
        }
        until("the queued events given up", || {
            metrics.webhook_giveups.get() == 3
        })
        .await;
        assert_eq!(hook.pending(), 0);
        assert_eq!(metrics.webhook_pending.get(), 0);
        assert!(metrics.webhook_retries.get() >= 1);
        assert_eq!(requests(&metrics, "ok"), 0);
        assert_eq!(metrics.webhook_events.get(), 0);
        assert!(!server.seen().is_empty());
        until("the worker ended", || Arc::strong_count(&hook.inner) == 1).await;
        // The worker is gone: a later event is given up at once, never queued.
        hook.push(event(3), subs());
        assert_eq!(hook.pending(), 0);
        assert_eq!(metrics.webhook_giveups.get(), 4);
        assert_eq!(metrics.webhook_pending.get(), 0);
        server.stop().await;
    }

    #[actix_rt::test]
    async fn close_gives_up_queued_events_and_ends_the_worker() {
        let server = receiver(usize::MAX).await;
        let metrics = Metrics::new();
        let hook = Webhook::start(
            reqwest::Client::new(),
            Arc::from(server.url.as_str()),
            Arc::from(TOKEN),
            None,
            &config(10),
            1000,
            metrics.clone(),
        );
        hook.push(event(0), subs());
        hook.push(event(1), subs());
        until("a failed attempt", || metrics.webhook_retries.get() >= 1).await;
        hook.close();
        assert_eq!(hook.pending(), 0);
        assert_eq!(metrics.webhook_giveups.get(), 2);
        assert_eq!(metrics.webhook_pending.get(), 0);
        until("the worker ended", || Arc::strong_count(&hook.inner) == 1).await;
        hook.close(); // idempotent
        assert_eq!(metrics.webhook_giveups.get(), 2);
        server.stop().await;
    }

    #[actix_rt::test]
    async fn dropping_the_last_handle_closes() {
        let server = receiver(usize::MAX).await;
        let metrics = Metrics::new();
        let hook = Webhook::start(
            reqwest::Client::new(),
            Arc::from(server.url.as_str()),
            Arc::from(TOKEN),
            None,
            &config(10),
            1000,
            metrics.clone(),
        );
        hook.push(event(0), subs());
        let inner = Arc::clone(&hook.inner);
        drop(hook);
        assert_eq!(metrics.webhook_giveups.get(), 1);
        assert_eq!(metrics.webhook_pending.get(), 0);
        until("the worker ended", || Arc::strong_count(&inner) == 1).await;
        server.stop().await;
    }

    #[actix_rt::test]
    async fn bounded_queue_drops_the_oldest_and_pending_sums_webhooks() {
        let server = receiver(0).await;
        let metrics = Metrics::new();
        let start = |max_events| {
            Webhook::start(
                reqwest::Client::new(),
                Arc::from(server.url.as_str()),
                Arc::from(TOKEN),
                None,
                &config(10),
                max_events,
                metrics.clone(),
            )
        };
        let small = start(3);
        let other = start(100);
        // Nothing awaits between these pushes, so the workers have not run yet.
        let mut kept = Vec::new();
        for n in 0..5 {
            let ev = event(n);
            if n >= 2 {
                kept.push(ev.id.to_string());
            }
            small.push(ev, subs());
        }
        other.push(event(5), subs());
        other.push(event(6), subs());
        assert_eq!(small.pending(), 3);
        assert_eq!(other.pending(), 2);
        assert_eq!(metrics.webhook_pending.get(), 5);
        assert_eq!(metrics.events_dropped.get(), 2);
        until("both queues delivered", || {
            small.pending() == 0 && other.pending() == 0
        })
        .await;
        assert_eq!(metrics.webhook_pending.get(), 0);
        let delivered: Vec<String> = server.seen().iter().flat_map(|r| ids(&r.body)).collect();
        let small_ids: Vec<&String> = delivered.iter().filter(|id| kept.contains(id)).collect();
        assert_eq!(small_ids, kept.iter().collect::<Vec<_>>());
        assert_eq!(delivered.len(), 5);
        server.stop().await;
    }

    #[actix_rt::test]
    async fn a_hanging_callback_does_not_hold_up_another_webhook() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let hang_addr = listener.local_addr().expect("addr");
        let held = Arc::new(Mutex::new(Vec::new()));
        let holder = Arc::clone(&held);
        let acceptor = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                holder.lock().push(socket);
            }
        });
        let server = receiver(0).await;
        let metrics = Metrics::new();
        let stuck = Webhook::start(
            reqwest::Client::new(),
            Arc::from(format!("http://{hang_addr}/hook")),
            Arc::from(TOKEN),
            None,
            &config(10),
            1000,
            metrics.clone(),
        );
        let fine = Webhook::start(
            reqwest::Client::new(),
            Arc::from(server.url.as_str()),
            Arc::from(TOKEN),
            None,
            &config(10),
            1000,
            metrics.clone(),
        );
        stuck.push(event(0), subs());
        until("the hanging callback connected", || !held.lock().is_empty()).await;
        fine.push(event(1), subs());
        until("the healthy callback acknowledged", || fine.pending() == 0).await;
        assert_eq!(stuck.pending(), 1);
        assert_eq!(metrics.webhook_pending.get(), 1);
        stuck.close();
        assert_eq!(metrics.webhook_pending.get(), 0);
        assert_eq!(metrics.webhook_giveups.get(), 1);
        acceptor.abort();
        server.stop().await;
    }

    #[actix_rt::test]
    async fn refused_connections_and_unusable_urls_are_retried_with_backoff() {
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr")
        }; // closed again: connections are refused
        let metrics = Metrics::new();
        let start = |url: String| {
            Webhook::start(
                reqwest::Client::new(),
                Arc::from(url),
                Arc::from(TOKEN),
                None,
                &config(10),
                1000,
                metrics.clone(),
            )
        };
        let hooks = [
            start(format!("http://{refused}/hook")),
            start("not a url".to_owned()),
        ];
        for hook in &hooks {
            hook.push(event(0), subs());
        }
        until("several failed attempts each", || {
            metrics.webhook_retries.get() >= 6
        })
        .await;
        assert_eq!(requests(&metrics, "error"), metrics.webhook_retries.get());
        assert_eq!(requests(&metrics, "ok"), 0);
        for hook in &hooks {
            assert_eq!(hook.pending(), 1, "nothing skipped while failing");
            hook.close();
        }
        assert_eq!(metrics.webhook_giveups.get(), 2);
        assert_eq!(metrics.webhook_pending.get(), 0);
    }

    #[test]
    fn backoff_is_full_jitter_capped_and_at_least_ten_ms() {
        let mut rng = rand::thread_rng();
        let initial = Duration::from_millis(20);
        let max = Duration::from_secs(1);
        for attempt in [0, 1, 2, 5, 31, 32, 1000, u32::MAX] {
            let cap = initial
                .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
                .min(max);
            for _ in 0..200 {
                let delay = backoff(attempt, initial, max, &mut rng);
                assert!(delay >= MIN_BACKOFF, "{delay:?}");
                assert!(delay <= cap.max(MIN_BACKOFF), "{attempt}: {delay:?}");
            }
        }
        assert_eq!(
            backoff(0, Duration::ZERO, max, &mut rng),
            MIN_BACKOFF,
            "never a busy loop"
        );
        // The jitter spreads retries out rather than always waiting the cap.
        let draws: Vec<Duration> = (0..200)
            .map(|_| backoff(10, initial, max, &mut rng))
            .collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(500)));
    }

    #[test]
    fn retry_wakes_by_expiry() {
        let long = Duration::from_secs(3600);
        let at = retry_at(long, Some(unix_now() + 1));
        assert!(at <= Instant::now() + Duration::from_secs(3));
        let at = retry_at(long, Some(unix_now().saturating_sub(10)));
        assert!(at <= Instant::now() + MIN_BACKOFF);
        assert!(retry_at(long, None) >= Instant::now() + Duration::from_secs(3599));
    }

    /// A subscription's `expires` may be any u64 and backoffs come from the config:
    /// neither may overflow the retry clock (it used to panic the worker).
    #[test]
    fn retry_clock_survives_huge_values() {
        let now = Instant::now();
        let at = retry_at(Duration::from_secs(1), Some(u64::MAX));
        assert!(
            at >= now + Duration::from_millis(900) && at <= Instant::now() + Duration::from_secs(2)
        );
        assert!(retry_at(Duration::MAX, Some(u64::MAX)) >= now + clock::FAR_FUTURE);
        assert!(retry_at(Duration::MAX, None) >= now + clock::FAR_FUTURE);
    }
}
