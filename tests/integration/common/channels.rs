//! Helpers for the other surfaces of the router, written from docs/api.md §4–§6 and
//! docs/design.md: SSE requests with extra headers (`Last-Event-ID`), long-poll
//! requests, WebSocket streams, the control channel, `/metrics` scrapes, and a
//! webhook receiver on a loopback port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sha1::Sha1;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::scrape::Scrape;
use super::{event, Creds, Reply, SseEvent, SseStream, TestServer, WAIT};

/// A client without a whole-request timeout, for requests that may
/// legitimately take longer than `WAIT` (long-polls); callers bound them.
fn long_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// An event on `call` with the test marker `data.n = n`.
pub fn marked(ty: &str, call: &str, n: &str) -> Value {
    event(ty, Some(call), json!({ "n": n }))
}

/// The markers (`data.n`) of delivered events, in order; `-` for none.
pub fn markers(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|ev| ev.marker().unwrap_or_else(|| "-".to_string()))
        .collect()
}

/// The markers of delivered events given as JSON values.
pub fn value_markers(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|ev| match &ev["data"]["n"] {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// `[s, …]` of a string list, for comparisons.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Any request on the test server: method, path+query, credentials, an
/// optional `(content type, body)`. Bounded by `WAIT`.
pub async fn request(
    server: &TestServer,
    method: reqwest::Method,
    path_and_query: &str,
    creds: Creds<'_>,
    body: Option<(&str, String)>,
) -> Reply {
    request_with_headers(server, method, path_and_query, creds, body, &[]).await
}

/// POSTs a client event (JSON) to a `ClientEvents` path and query.
pub async fn post_client_event(
    server: &TestServer,
    path_and_query: &str,
    creds: Creds<'_>,
    body: &Value,
) -> Reply {
    request(
        server,
        reqwest::Method::POST,
        path_and_query,
        creds,
        Some(("application/json", body.to_string())),
    )
    .await
}

/// `request` with extra headers (such as `Origin`).
pub async fn request_with_headers(
    server: &TestServer,
    method: reqwest::Method,
    path_and_query: &str,
    creds: Creds<'_>,
    body: Option<(&str, String)>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = long_client().request(
        method.clone(),
        format!("{}{}", server.base_url(), path_and_query),
    );
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some((user, pass)) = creds {
        req = req.basic_auth(user, Some(pass));
    }
    if let Some((content_type, body)) = body {
        req = req.header(CONTENT_TYPE, content_type).body(body);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .unwrap_or_else(|_| panic!("{method} {path_and_query}: no answer in {WAIT:?}"))
        .unwrap_or_else(|err| panic!("{method} {path_and_query}: {err}"));
    tokio::time::timeout(WAIT, Reply::read(resp))
        .await
        .unwrap_or_else(|_| panic!("{method} {path_and_query}: body not finished in {WAIT:?}"))
}

/// `GET path_and_query` as an SSE request with extra headers (such as
/// `Last-Event-ID`). `Ok` with the open stream on 200, else the error reply.
pub async fn open_sse_with(
    server: &TestServer,
    path_and_query: &str,
    creds: Creds<'_>,
    headers: &[(&str, &str)],
) -> Result<SseStream, Reply> {
    let mut req = long_client()
        .get(format!("{}{}", server.base_url(), path_and_query))
        .header("Accept", "text/event-stream");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some((user, pass)) = creds {
        req = req.basic_auth(user, Some(pass));
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .unwrap_or_else(|_| panic!("GET {path_and_query}: no response headers in {WAIT:?}"))
        .unwrap_or_else(|err| panic!("GET {path_and_query}: {err}"));
    if resp.status().as_u16() == 200 {
        Ok(SseStream::new(resp))
    } else {
        Err(tokio::time::timeout(WAIT, Reply::read(resp))
            .await
            .unwrap_or_else(|_| panic!("GET {path_and_query}: error body not finished")))
    }
}

/// Like `open_sse_with` but the stream must open; returns it and its
/// `stream.open` notice.
pub async fn sse_with(
    server: &TestServer,
    path_and_query: &str,
    creds: Creds<'_>,
    headers: &[(&str, &str)],
) -> (SseStream, SseEvent) {
    match open_sse_with(server, path_and_query, creds, headers).await {
        Ok(mut stream) => {
            let open = stream.expect_open().await;
            (stream, open)
        }
        Err(reply) => panic!(
            "GET {path_and_query} {headers:?}: expected a 200 stream, got {} {}",
            reply.status,
            reply.text()
        ),
    }
}

/// One `GET …?transport=poll…` whose answer must come within `within`;
/// returns the reply and how long it took.
pub async fn poll_within(
    server: &TestServer,
    path_and_query: &str,
    creds: Creds<'_>,
    within: Duration,
) -> (Reply, Duration) {
    let started = Instant::now();
    let mut req = long_client().get(format!("{}{}", server.base_url(), path_and_query));
    if let Some((user, pass)) = creds {
        req = req.basic_auth(user, Some(pass));
    }
    let reply = tokio::time::timeout(within, async {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path_and_query}: {err}"));
        Reply::read(resp).await
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path_and_query}: no complete answer within {within:?}"));
    (reply, started.elapsed())
}

/// A long-poll answer: asserts `200 {"events": [...], "cursor"?}` and
/// returns the events and the cursor (if any).
#[track_caller]
pub fn poll_body(reply: &Reply) -> (Vec<Value>, Option<String>) {
    assert_eq!(
        reply.status,
        200,
        "long-poll answered {}: {}",
        reply.status,
        reply.text()
    );
    assert!(
        reply.content_type().starts_with("application/json"),
        "long-poll Content-Type {:?}",
        reply.content_type()
    );
    let body = reply.json();
    let events = body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("long-poll answer without an events array: {body}"))
        .clone();
    let cursor = match &body["cursor"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("long-poll cursor is not a string: {other} in {body}"),
    };
    (events, cursor)
}

/// A `/metrics` scrape (must be 200).
pub async fn scrape(server: &TestServer) -> Scrape {
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200, "GET /metrics: {}", reply.text());
    Scrape::parse(&reply.text())
}

/// Polls `/metrics` until `check` holds (bounded by `WAIT`), for values that
/// settle asynchronously; returns the last scrape.
pub async fn eventually_metrics(
    server: &TestServer,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = scrape(server).await;
        if check(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "never true within {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (bounded) until the server counts exactly `n` open SSE connections:
/// after a client hangs up, the server notices at its next write (use a short
/// `stream.heartbeat_secs`).
pub async fn wait_sse_connections(server: &TestServer, n: usize) {
    eventually_metrics(server, &format!("{n} open SSE connections"), |s| {
        s.value("switchboard_connections", &[("transport", "sse")]) == n as f64
    })
    .await;
}

// ---------------------------------------------------------------------------
// Control channel

/// `/v1/Accounts/{sid}/Clients/{client}/Subscriptions` of `account`.
pub fn subs_path(server: &TestServer, account: usize, client: &str) -> String {
    format!(
        "/v1/Accounts/{}/Clients/{client}/Subscriptions",
        server.sid(account)
    )
}

/// An `application/x-www-form-urlencoded` body from pairs (repeatable keys).
pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `POST` a form-encoded body to a path.
pub async fn post_form(
    server: &TestServer,
    path: &str,
    creds: Creds<'_>,
    pairs: &[(&str, &str)],
) -> Reply {
    request(
        server,
        reqwest::Method::POST,
        path,
        creds,
        Some(("application/x-www-form-urlencoded", form(pairs))),
    )
    .await
}

/// `method` with a JSON body to a path.
pub async fn send_json(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    creds: Creds<'_>,
    body: &Value,
) -> Reply {
    request(
        server,
        method,
        path,
        creds,
        Some(("application/json", body.to_string())),
    )
    .await
}

/// Creates a subscription of `client` with `account`'s Basic credentials and a
/// form body; asserts 201 and returns the subscription.
pub async fn create_sub(
    server: &TestServer,
    account: usize,
    client: &str,
    pairs: &[(&str, &str)],
) -> Value {
    let reply = post_form(
        server,
        &subs_path(server, account, client),
        server.creds(account),
        pairs,
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "POST subscription {pairs:?}: {} {}",
        reply.status,
        reply.text()
    );
    let body = reply.json();
    assert!(
        body["sid"].as_str().is_some_and(|s| s.starts_with("SU")),
        "sid in {body}"
    );
    body
}

/// The `sid` of a subscription object.
#[track_caller]
pub fn sid_of(sub: &Value) -> String {
    sub["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid in {sub}"))
        .to_string()
}

/// The `subscriptions` sids a delivered event lists, sorted.
#[track_caller]
pub fn matched_subs(ev: &Value) -> Vec<String> {
    let mut sids: Vec<String> = ev["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no subscriptions array in {ev}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("subscription sid not a string in {ev}"))
                .to_string()
        })
        .collect();
    sids.sort();
    sids
}

/// The `where` clauses of a subscription as `field op value` text without
/// blanks, whether listed as strings or as `{field, op, value}` objects.
pub fn where_list(value: &Value) -> Vec<String> {
    let items = match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => s.replace(' ', ""),
            Value::Object(o) => {
                let part = |k: &str| match &o.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                format!("{}{}{}", part("field"), part("op"), part("value"))
            }
            other => other.to_string(),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// WebSocket

type WsInner = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket stream to the server, read one JSON text frame at a time.
pub struct Ws {
    inner: WsInner,
}

/// Opens `ws://…{path_and_query}` with optional Basic credentials. `Err`
/// carries the refusal's status and body text.
pub async fn ws_connect(
    server: &TestServer,
    path_and_query: &str,
    creds: Creds<'_>,
) -> Result<Ws, (u16, String)> {
    let url = format!("ws://{}{}", server.addr, path_and_query);
    let mut req = url
        .as_str()
        .into_client_request()
        .unwrap_or_else(|err| panic!("ws request {url}: {err}"));
    if let Some((user, pass)) = creds {
        let value = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
        req.headers_mut()
            .insert("Authorization", value.parse().expect("header value"));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Err(_) => panic!("ws {path_and_query}: no handshake answer in {WAIT:?}"),
        Ok(Ok((inner, _resp))) => Ok(Ws { inner }),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((status, body))
        }
        Ok(Err(err)) => panic!("ws {path_and_query}: {err}"),
    }
}

impl Ws {
    /// The next text frame as JSON, skipping pings and pongs, within `timeout`.
    pub async fn next_json(&mut self, timeout: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next()).await {
                Err(_) => return Err(format!("no text frame within {timeout:?}")),
                Ok(None) => return Err("connection closed".to_string()),
                Ok(Some(Err(err))) => return Err(format!("transport error: {err}")),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return serde_json::from_str(&text)
                        .map_err(|err| format!("text frame is not JSON ({err}): {text:?}"))
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(format!("close frame: {frame:?}"))
                }
                Ok(Some(Ok(Message::Binary(bytes)))) => {
                    return Err(format!("unexpected binary frame of {} bytes", bytes.len()))
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next text frame, which must come within `WAIT`.
    pub async fn expect_json(&mut self) -> Value {
        self.next_json(WAIT)
            .await
            .unwrap_or_else(|err| panic!("waiting for a text frame: {err}"))
    }

    /// Reads frames until one satisfies `pred` (included), within `WAIT`.
    pub async fn until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_json(left).await {
                Ok(frame) => {
                    let done = pred(&frame);
                    got.push(frame);
                    if done {
                        return got;
                    }
                }
                Err(err) => panic!("{err}; frames so far: {got:?}"),
            }
        }
    }

    /// Reads frames until the one whose `data.n` is `marker` (included).
    pub async fn until_marker(&mut self, marker: &str) -> Vec<Value> {
        self.until(|f| value_markers(std::slice::from_ref(f))[0] == marker)
            .await
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.inner.send(Message::Text(text.to_string())))
            .await
            .expect("ws send timed out")
            .expect("ws send");
    }

    /// Closes the connection (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.close(None)).await;
    }
}

// ---------------------------------------------------------------------------
// Webhooks

/// base64 (standard, padded) of HMAC-SHA1(token, url + body): the
/// `X-Switchboard-Signature` of docs/api.md §5.
pub fn webhook_signature(token: &str, url: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// One request a `HookReceiver` got, and the status it answered.
#[derive(Debug, Clone)]
pub struct HookRequest {
    pub method: String,
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl HookRequest {
    /// The events of this request (its body must be a JSON array).
    #[track_caller]
    pub fn events(&self) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "webhook body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        });
        body.as_array()
            .unwrap_or_else(|| panic!("webhook body is not a JSON array: {body}"))
            .clone()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 server on `127.0.0.1:0` that records every request
/// and answers `500` to the first `fail_first` requests, `200` after.
pub struct HookReceiver {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<HookRequest>>>,
    /// Set: every request is answered `500` (a callback gone bad).
    failing: Arc<std::sync::atomic::AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HookReceiver {
    pub async fn start(fail_first: usize) -> HookReceiver {
        HookReceiver::start_on(0, fail_first).await
    }

    /// Like [`HookReceiver::start`], on a chosen port (a receiver that was down
    /// comes up). A port still held by a receiver just dropped (its listener
    /// goes when its aborted task is next polled) is tried again, within `WAIT`.
    pub async fn start_on(port: u16, fail_first: usize) -> HookReceiver {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => break listener,
                Err(error)
                    if error.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("bind hook receiver: {error}"),
            }
        };
        let port = listener.local_addr().expect("local_addr").port();
        let requests: Arc<Mutex<Vec<HookRequest>>> = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reqs, note, fails) = (requests.clone(), notify.clone(), failing.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (reqs, note, fails) = (reqs.clone(), note.clone(), fails.clone());
                tokio::spawn(async move {
                    let fail = Fail {
                        first: fail_first,
                        from_now: fails,
                    };
                    let _ = serve_hook_connection(sock, reqs, note, fail).await;
                });
            }
        });
        HookReceiver {
            port,
            requests,
            failing,
            notify,
            task,
        }
    }

    /// Every request from now on is answered `500`, on open connections too.
    pub fn fail_from_now(&self) {
        self.failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A copy of the requests so far.
    pub fn snapshot(&self) -> Vec<HookRequest> {
        self.requests.lock().clone()
    }

    /// Waits (bounded by `within`) until `done` holds for the requests so far.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[HookRequest]) -> bool,
    ) -> Vec<HookRequest> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.notify.notified();
            let snapshot = self.snapshot();
            if done(&snapshot) {
                return snapshot;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let snapshot = self.snapshot();
                if done(&snapshot) {
                    return snapshot;
                }
                let summary: Vec<String> = snapshot
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} -> {}: {}",
                            r.method,
                            r.target,
                            r.answered,
                            String::from_utf8_lossy(&r.body)
                        )
                    })
                    .collect();
                panic!("webhook receiver: never {what} within {within:?}; requests: {summary:#?}");
            }
        }
    }
}

/// When a `HookReceiver` answers `500`.
struct Fail {
    /// The first this many requests.
    first: usize,
    /// Everything once set.
    from_now: Arc<std::sync::atomic::AtomicBool>,
}

async fn serve_hook_connection(
    sock: TcpStream,
    requests: Arc<Mutex<Vec<HookRequest>>>,
    notify: Arc<tokio::sync::Notify>,
    fail: Fail,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or(0);
                if size == 0 {
                    // Trailers until a blank line.
                    loop {
                        let mut t = String::new();
                        if reader.read_line(&mut t).await? == 0 || t.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0u8; size + 2];
                reader.read_exact(&mut chunk).await?;
                chunk.truncate(size);
                body.extend_from_slice(&chunk);
            }
        } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0u8; len];
            reader.read_exact(&mut body).await?;
        }
        let answered = {
            let mut reqs = requests.lock();
            let failing = fail.from_now.load(std::sync::atomic::Ordering::Relaxed);
            let answered = if failing || reqs.len() < fail.first {
                500
            } else {
                200
            };
            reqs.push(HookRequest {
                method,
                target,
                headers,
                body,
                answered,
            });
            answered
        };
        let reason = if answered == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let reply = format!("HTTP/1.1 {answered} {reason}\r\nContent-Length: 0\r\n\r\n");
        reader.get_mut().write_all(reply.as_bytes()).await?;
        reader.get_mut().flush().await?;
        notify.notify_waiters();
    }
}

/// The `Access-Control-Allow-Origin` of a reply, if any.
pub fn allow_origin(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) for `path`.
pub async fn preflight(server: &TestServer, path: &str, origin: &str, method: &str) -> Reply {
    request_with_headers(
        server,
        reqwest::Method::OPTIONS,
        path,
        None,
        None,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
    )
    .await
}
