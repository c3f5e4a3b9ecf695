//! Shared fixtures: an in-process server on a free port (`TestServer`), a
//! signed-URL helper written from docs/api.md §4 (`signing`), an SSE reader over a
//! real socket (`sse`) and publish helpers.
//!
//! Nothing here calls into the crate except `switchboard::serve` and its
//! `Config`: the point of these tests is to hold the server against the
//! written contract, so the helpers are written from the spec, not from the
//! server's code.

pub mod call_sequences;
pub mod captured;
pub mod channels;
pub mod nats;
pub mod scrape;
pub mod signing;
pub mod sse;
pub mod tools;
pub mod twilio;
pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde_json::{json, Value};

pub use signing::{now_secs, sign, sign_with_expires, signature};
pub use sse::{SseError, SseEvent, SseFrame, SseStream};
pub use tools::{require_python_module, require_tool};

/// Upper bound for any single wait on the server (a response, an event).
pub const WAIT: Duration = Duration::from_secs(10);

/// HTTP Basic credentials `(AccountSid, AuthToken)`, or none.
pub type Creds<'a> = Option<(&'a str, &'a str)>;

/// `n` random bytes as lowercase hex (2n characters).
pub fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
}

/// A loopback port that was free a moment ago, for a child process to bind.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// An HTTP client for requests to child processes (no proxy, every request
/// bounded by `WAIT`).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("reqwest client")
}

/// Runs a one-worker actix-web server for a test's fake application or receiver
/// on its own thread and `System`, listening on `listener`, with the routes
/// `configure` sets; returns once it serves. Stop it through the handle.
pub fn serve_local(
    name: &str,
    listener: TcpListener,
    configure: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
) -> actix_web::dev::ServerHandle {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("{name}-{port}"))
        .spawn(move || {
            let result = actix_rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    actix_web::App::new().configure(configure.clone())
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(0)
                .listen(listener)?
                .run();
                let _ = tx.send(server.handle());
                server.await
            });
            if let Err(err) = result {
                eprintln!("test server on {port} stopped: {err}");
            }
        })
        .expect("spawn test server thread");
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{name} server did not start in 10 s"))
}

/// A fresh, syntactically valid call sid (`CA` + 32 hex).
pub fn new_call_sid() -> String {
    format!("CA{}", random_hex(16))
}

/// A fresh, syntactically valid account sid that no server knows.
pub fn unknown_account_sid() -> String {
    format!("AC{}", random_hex(16))
}

/// One published event: `{"type", "call_sid"?, "data"}`.
pub fn event(ty: &str, call_sid: Option<&str>, data: Value) -> Value {
    let mut ev = json!({ "type": ty, "data": data });
    if let Some(call) = call_sid {
        ev["call_sid"] = json!(call);
    }
    ev
}

/// A server running `switchboard::serve` in its own thread and actix
/// `System`, on `127.0.0.1:<free port>`, with two generated accounts.
/// Dropping it asks the server to shut down (without waiting for it).
/// `TestServer::attach` makes one for a server started elsewhere.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `(sid, token)` of the two accounts configured on this server.
    pub accounts: Vec<(String, String)>,
    /// Client for ordinary requests (every request bounded by `WAIT`).
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Starts a server with two fresh accounts, `workers = 2`, and whatever
    /// `tweak` changes, then waits (bounded) until `GET /healthz` answers 200.
    pub fn start(tweak: impl FnOnce(&mut switchboard::Config)) -> TestServer {
        let accounts: Vec<(String, String)> = (0..2)
            .map(|_| (format!("AC{}", random_hex(16)), random_hex(16)))
            .collect();
        TestServer::start_with_accounts(accounts, tweak)
    }

    /// Like [`TestServer::start`] with given accounts `(sid, token)`, so several
    /// servers (the nodes of a cluster) can share the same ones.
    pub fn start_with_accounts(
        accounts: Vec<(String, String)>,
        tweak: impl FnOnce(&mut switchboard::Config),
    ) -> TestServer {
        let mut config = switchboard::Config::default();
        config.workers = 2;
        config.accounts = accounts
            .iter()
            .map(|(sid, token)| switchboard::config::AccountConfig {
                sid: sid.clone(),
                auth_token: token.clone(),
            })
            .collect();
        // The tests' apps and receivers listen on 127.0.0.1; egress tests set false.
        config.egress.allow_private_networks = Some(true);
        tweak(&mut config);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        config.listen = addr;

        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
        std::thread::Builder::new()
            .name(format!("switchboard-{}", addr.port()))
            .spawn(move || {
                let result = actix_rt::System::new().block_on(switchboard::serve(
                    config,
                    listener,
                    async move {
                        let _ = shutdown_rx.await;
                    },
                ));
                let _ = done_tx.send(match result {
                    Ok(()) => "serve returned Ok".to_string(),
                    Err(err) => format!("serve returned an error: {err}"),
                });
            })
            .expect("spawn server thread");

        wait_until_healthy(addr, &done_rx);

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .expect("reqwest client");
        TestServer {
            addr,
            accounts,
            client,
            shutdown: Some(shutdown_tx),
        }
    }

    /// A handle on a server running elsewhere (the real binary as a child
    /// process: `process::Server::handle`) with these accounts, so every
    /// helper here can drive it. Dropping it stops nothing: the child's owner
    /// does that.
    pub fn attach(addr: SocketAddr, accounts: Vec<(String, String)>) -> TestServer {
        TestServer {
            addr,
            accounts,
            client: http_client(),
            shutdown: None,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sid(&self, account: usize) -> &str {
        &self.accounts[account].0
    }

    pub fn token(&self, account: usize) -> &str {
        &self.accounts[account].1
    }

    /// Basic credentials of one of the two accounts.
    pub fn creds(&self, account: usize) -> Creds<'_> {
        Some((self.sid(account), self.token(account)))
    }

    /// `/v1/Accounts/{sid}/Stream` for a configured account.
    pub fn stream_path(&self, account: usize) -> String {
        format!("/v1/Accounts/{}/Stream", self.sid(account))
    }

    /// A publish handle that can move into spawned tasks.
    pub fn publisher(&self, account: usize) -> Publisher {
        Publisher {
            client: self.client.clone(),
            base: self.base_url(),
            sid: self.sid(account).to_string(),
            token: self.token(account).to_string(),
        }
    }

    /// `POST /v1/Accounts/{path_sid}/Events` with any credentials, content
    /// type (none: no header) and body; returns the whole reply.
    pub async fn post_events(
        &self,
        path_sid: &str,
        creds: Creds<'_>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let url = format!("{}/v1/Accounts/{}/Events", self.base_url(), path_sid);
        let mut req = self.client.post(url).body(body);
        if let Some((user, pass)) = creds {
            req = req.basic_auth(user, Some(pass));
        }
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let resp = req.send().await.expect("POST /Events: no response");
        Reply::read(resp).await
    }

    /// A plain `GET` (not a stream) on this server.
    pub async fn get(&self, path_and_query: &str) -> Reply {
        let resp = self
            .client
            .get(format!("{}{}", self.base_url(), path_and_query))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path_and_query}: {err}"));
        Reply::read(resp).await
    }

    /// Publishes a JSON body (object or array) as `account`; the raw reply.
    pub async fn try_publish(&self, account: usize, body: &Value) -> Reply {
        self.post_events(
            self.sid(account),
            self.creds(account),
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// Publishes a JSON body as `account`, asserting 202; returns the ids.
    pub async fn publish(&self, account: usize, body: &Value) -> Vec<String> {
        self.publisher(account).publish(body).await
    }

    /// Publishes NDJSON lines as `account`, asserting 202; returns the ids.
    pub async fn publish_ndjson(&self, account: usize, lines: &[Value]) -> Vec<String> {
        self.publisher(account).publish_ndjson(lines).await
    }

    /// `GET path_and_query` as an SSE request. `Ok` when the server answered
    /// 200 (the body is then an SSE stream), otherwise the whole (bounded)
    /// error reply.
    pub async fn open_stream(
        &self,
        path_and_query: &str,
        creds: Creds<'_>,
    ) -> Result<SseStream, Reply> {
        channels::open_sse_with(self, path_and_query, creds, &[]).await
    }

    /// Opens a stream that must succeed and reads its `stream.open` notice.
    pub async fn stream(&self, path_and_query: &str, creds: Creds<'_>) -> (SseStream, SseEvent) {
        let mut stream = match self.open_stream(path_and_query, creds).await {
            Ok(stream) => stream,
            Err(reply) => panic!(
                "GET {path_and_query}: expected a 200 stream, got {} {}",
                reply.status,
                reply.text()
            ),
        };
        let content_type = stream
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "GET {path_and_query}: Content-Type {content_type:?}"
        );
        let open = stream.expect_open().await;
        (stream, open)
    }

    /// A Basic-auth stream of `account` with `query` (may be empty).
    pub async fn stream_basic(&self, account: usize, query: &str) -> (SseStream, SseEvent) {
        let pq = if query.is_empty() {
            self.stream_path(account)
        } else {
            format!("{}?{}", self.stream_path(account), query)
        };
        self.stream(&pq, self.creds(account)).await
    }

    /// A stream opened with an (already signed) path+query and no Basic auth.
    pub async fn stream_signed(&self, signed_path_and_query: &str) -> (SseStream, SseEvent) {
        self.stream(signed_path_and_query, None).await
    }

    /// A stream request that must be refused; returns the error reply.
    pub async fn rejected(&self, path_and_query: &str, creds: Creds<'_>) -> Reply {
        match self.open_stream(path_and_query, creds).await {
            Err(reply) => reply,
            Ok(mut stream) => {
                let first = stream.next_event(Duration::from_secs(2)).await;
                panic!("GET {path_and_query}: expected a refusal, got a 200 stream; first event: {first:?}")
            }
        }
    }
}

impl TestServer {
    /// Starts the server's drain (what SIGTERM does in the binary).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Ask the server to stop; its thread winds down on its own. Waiting
        // for it here would block the test's runtime while the client's
        // connections (driven by that runtime) are still open.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `GET /healthz` over a raw socket until it answers 200 (bounded),
/// failing early if the server thread stopped.
fn wait_until_healthy(addr: SocketAddr, done: &std::sync::mpsc::Receiver<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match done.try_recv() {
            Ok(msg) => panic!("server stopped before it was healthy: {msg}"),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                panic!("server thread panicked before it was healthy")
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        match healthz_once(addr) {
            Ok(status_line) if status_line.starts_with("HTTP/1.1 200") => return,
            Ok(status_line) => last = status_line,
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("server on {addr} not healthy within 15 s: last answer {last:?}");
}

fn healthz_once(addr: SocketAddr) -> std::io::Result<String> {
    status_line(addr, "/healthz")
}

/// The status line of `GET path` on `addr` over a raw socket, for checks that run
/// outside any runtime (a server or a tool starting up), every step bounded.
pub fn status_line(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    sock.set_write_timeout(Some(Duration::from_secs(1)))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// A cloneable publish handle for one account.
#[derive(Clone)]
pub struct Publisher {
    client: reqwest::Client,
    base: String,
    pub sid: String,
    token: String,
}

impl Publisher {
    /// Posts a raw body with this account's credentials; the whole reply.
    pub async fn post(&self, content_type: &str, body: String) -> Reply {
        let resp = self
            .client
            .post(format!("{}/v1/Accounts/{}/Events", self.base, self.sid))
            .basic_auth(&self.sid, Some(&self.token))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("POST /Events: no response");
        Reply::read(resp).await
    }

    /// Publishes a JSON object or array, asserting a well-formed 202.
    pub async fn publish(&self, body: &Value) -> Vec<String> {
        let expected = body.as_array().map_or(1, Vec::len);
        let reply = self.post("application/json", body.to_string()).await;
        reply.accepted(expected)
    }

    /// Publishes NDJSON lines, asserting a well-formed 202.
    pub async fn publish_ndjson(&self, lines: &[Value]) -> Vec<String> {
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        let reply = self.post("application/x-ndjson", body).await;
        reply.accepted(lines.len())
    }
}

/// A fully read HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("reading the reply body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "reply {} is not JSON ({err}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts a 202 `{"accepted": n, "ids": [n × "EV"+32 hex]}`; returns ids.
    pub fn accepted(&self, n: usize) -> Vec<String> {
        assert_eq!(
            self.status,
            202,
            "expected 202, got {}: {}",
            self.status,
            self.text()
        );
        assert!(
            self.content_type().starts_with("application/json"),
            "202 Content-Type {:?}",
            self.content_type()
        );
        let body = self.json();
        assert_eq!(body["accepted"], json!(n), "accepted count in {body}");
        let ids: Vec<String> = body["ids"]
            .as_array()
            .unwrap_or_else(|| panic!("no ids array in {body}"))
            .iter()
            .map(|id| {
                id.as_str()
                    .unwrap_or_else(|| panic!("id not a string in {body}"))
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), n, "ids in {body}");
        for id in &ids {
            assert_event_id(id);
        }
        ids
    }

    /// Asserts an error reply: the status, a JSON Content-Type, and a body
    /// `{"status": status, "code": code, "message": non-empty}`. Returns the
    /// message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert!(
            self.status < 500,
            "bad input got a {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(self.status, status, "status; body {}", self.text());
        self.assert_error_body(code)
    }

    /// An error reply whose code is one of `codes` (status not pinned, but
    /// never a 5xx and the body must agree with the status line).
    #[track_caller]
    pub fn assert_error_shape(&self, codes: &[&str]) -> String {
        assert!(
            self.status < 500,
            "bad input got a {}: {}",
            self.status,
            self.text()
        );
        let code = self.json()["code"].as_str().unwrap_or("").to_string();
        assert!(
            codes.contains(&code.as_str()),
            "code {code:?} not in {codes:?}: {}",
            self.text()
        );
        self.assert_error_body(&code)
    }

    /// The body checks of `assert_error`: JSON Content-Type and a body
    /// `{"status": <the status line's>, "code": code, "message": non-empty}`.
    #[track_caller]
    pub fn assert_error_body(&self, code: &str) -> String {
        assert!(
            self.content_type().starts_with("application/json"),
            "error {} has Content-Type {:?}: {}",
            self.status,
            self.content_type(),
            self.text()
        );
        let body = self.json();
        assert_eq!(body["status"], json!(self.status), "status field in {body}");
        assert_eq!(body["code"], json!(code), "code field in {body}");
        let message = body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message string in {body}"))
            .to_string();
        assert!(!message.is_empty(), "empty message in {body}");
        message
    }
}

/// `EV` followed by 32 hex digits.
#[track_caller]
pub fn assert_event_id(id: &str) {
    assert!(
        id.len() == 34 && id.starts_with("EV") && id[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "event id {id:?} is not EV + 32 hex"
    );
}

/// RFC 3339 UTC with milliseconds and `Z`: `YYYY-MM-DDTHH:MM:SS.mmmZ`, and
/// within a few minutes of now.
#[track_caller]
pub fn assert_timestamp(ts: &str) {
    let pattern = "dddd-dd-ddTdd:dd:dd.dddZ";
    let shape_ok = ts.len() == pattern.len()
        && ts.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        });
    assert!(shape_ok, "timestamp {ts:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
    let parsed = chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|err| panic!("timestamp {ts:?}: {err}"));
    let skew = (chrono::Utc::now().timestamp_millis() - parsed.timestamp_millis()).abs();
    assert!(
        skew < 300_000,
        "timestamp {ts:?} is {skew} ms away from now"
    );
}

/// A JSON value that is either a list of strings or one comma-separated
/// string, as a list (for fields whose exact encoding the spec leaves open).
pub fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect(),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

/// The subscription sids listed by a `stream.open` notice.
pub fn open_subscription_sids(open: &SseEvent) -> Vec<String> {
    open.data["data"]["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("stream.open without data.subscriptions: {}", open.data))
        .iter()
        .map(|sub| {
            sub["sid"]
                .as_str()
                .unwrap_or_else(|| panic!("subscription without sid: {sub}"))
                .to_string()
        })
        .collect()
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
