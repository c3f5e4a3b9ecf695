//! Fixtures for the call router (docs/api.md §7, docs/call-router.md): an
//! application server the test scripts (`AppServer`, TwiML per path, every
//! request recorded and its `X-Twilio-Signature` checked by an independent
//! implementation of Twilio's algorithm), helpers for the Twilio-style REST
//! API and the simulated network, and an event log over an SSE stream.
//!
//! Written from the contract, not from the server's code.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use sha1::Sha1;

use super::channels::{post_form, request, send_json};
use super::{random_hex, serve_local, Reply, SseEvent, SseStream, TestServer};

/// Twilio's API version, as the router sends and writes it.
pub const API_VERSION: &str = "2010-04-01";

/// Bound on one whole simulated call at `sim.time_scale = 0.01`.
pub const CALL_WAIT: Duration = Duration::from_secs(20);

/// A server for call-router tests: simulated media 100× faster than real time
/// and a one (simulated) second ring.
pub fn sim_server() -> TestServer {
    TestServer::start(|config| {
        config.sim.time_scale = 0.01;
        config.sim.ring_secs = 1.0;
    })
}

/// A fresh E.164 number in the US fictional-ish range (`+1415555` + 4 digits).
pub fn fresh_number() -> String {
    let n = u16::from_str_radix(&random_hex(2), 16).unwrap_or(0) % 10_000;
    format!("+1415555{n:04}")
}

// ---------------------------------------------------------------------------
// Twilio's request signature

/// `X-Twilio-Signature` as Twilio computes it: standard padded base64 of
/// HMAC-SHA1(auth token, full URL followed by every POST parameter sorted by
/// name, each name then its value). For a GET, `params` is empty and the URL
/// carries its query.
pub fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // By name; equal names keep a deterministic order by value.
    sorted.sort();
    let mut data = String::from(url);
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Constant-time-ish comparison is irrelevant in a test; plain equality.
pub fn twilio_signature_valid(
    token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    twilio_signature(token, url, params) == signature
}

// ---------------------------------------------------------------------------
// The application server

/// One request the application server got.
#[derive(Debug, Clone)]
pub struct AppRequest {
    pub method: String,
    /// The full URL as the router requested it: `http://{Host}{path?query}`.
    pub url: String,
    pub path: String,
    /// Query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// Form-encoded body parameters (POST), in order.
    pub form: Vec<(String, String)>,
    /// The `X-Twilio-Signature` header, if any.
    pub signature: Option<String>,
    /// What the signature should have been for this URL and these params.
    pub expected_signature: String,
    /// Whether the header was present and matched.
    pub signature_ok: bool,
    /// When it arrived.
    pub at: Instant,
    /// The status the app answered.
    pub answered: u16,
}

impl AppRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A webhook parameter: from the form body (POST), else from the query.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .chain(self.query.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// One line for failure messages.
    pub fn summary(&self) -> String {
        format!(
            "{} {} -> {} (signature {:?}, expected {:?}) form {:?}",
            self.method,
            self.url,
            self.answered,
            self.signature,
            self.expected_signature,
            self.form
        )
    }

    /// Asserts a present, valid `X-Twilio-Signature`.
    #[track_caller]
    pub fn assert_signed(&self) {
        assert!(
            self.signature_ok,
            "X-Twilio-Signature does not verify: {}",
            self.summary()
        );
    }

    /// Asserts the webhook parameter `name` is `value`.
    #[track_caller]
    pub fn assert_param(&self, name: &str, value: &str) {
        assert_eq!(
            self.param(name),
            Some(value),
            "webhook parameter {name}: {}",
            self.summary()
        );
    }
}

/// What the app answers: `(status, content type, body)`.
pub type Answer = (u16, String, String);

type Handler = Arc<dyn Fn(&AppRequest) -> Answer + Send + Sync>;

struct AppState {
    token: String,
    port: u16,
    routes: Mutex<HashMap<String, Handler>>,
    requests: Mutex<Vec<AppRequest>>,
    notify: tokio::sync::Notify,
}

/// A Twilio-style application: an actix-web server on `127.0.0.1:0` in its
/// own thread and actix `System`, answering per path what the test registered
/// (404 for anything else), recording every request with its signature check.
pub struct AppServer {
    pub port: u16,
    state: Arc<AppState>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for AppServer {
    fn drop(&mut self) {
        // `stop` sends the command at once; its completion is not awaited.
        drop(self.handle.stop(false));
    }
}

impl AppServer {
    /// Starts an app whose requests are checked against `token` (the auth
    /// token of the account the router signs for).
    pub fn start(token: &str) -> AppServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind app server");
        let port = listener.local_addr().expect("local_addr").port();
        let state = Arc::new(AppState {
            token: token.to_string(),
            port,
            routes: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            notify: tokio::sync::Notify::new(),
        });
        let data = web::Data::from(state.clone());
        let handle = serve_local("twilio-app", listener, move |cfg| {
            cfg.app_data(data.clone())
                .default_service(web::to(handle_app_request));
        });
        AppServer {
            port,
            state,
            handle,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers `path` with whatever `f` returns for the request.
    pub fn route(&self, path: &str, f: impl Fn(&AppRequest) -> Answer + Send + Sync + 'static) {
        self.state
            .routes
            .lock()
            .insert(path.to_string(), Arc::new(f));
    }

    /// Answers `path` with `status` and a body of `content_type`.
    pub fn respond(&self, path: &str, status: u16, content_type: &str, body: &str) {
        let answer: Answer = (status, content_type.to_string(), body.to_string());
        self.route(path, move |_| answer.clone());
    }

    /// Answers `path` with a TwiML document (200, `text/xml`).
    pub fn twiml(&self, path: &str, body: &str) {
        self.respond(path, 200, "text/xml", body);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<AppRequest> {
        self.state.requests.lock().clone()
    }

    /// The requests so far to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<AppRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits (bounded) until at least `n` requests to `path` arrived; returns
    /// them.
    pub async fn wait_requests(&self, path: &str, n: usize, within: Duration) -> Vec<AppRequest> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.state.notify.notified();
            let got = self.requests_to(path);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let got = self.requests_to(path);
                if got.len() >= n {
                    return got;
                }
                let all: Vec<String> = self.requests().iter().map(AppRequest::summary).collect();
                panic!(
                    "app: {n} request(s) to {path} never arrived within {within:?}; requests: {all:#?}"
                );
            }
        }
    }

    /// The first request to `path` (waiting for it, bounded).
    pub async fn first_request(&self, path: &str) -> AppRequest {
        self.wait_requests(path, 1, crate::common::WAIT).await[0].clone()
    }
}

async fn handle_app_request(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let at = Instant::now();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("127.0.0.1:{}", state.port));
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| req.path().to_string());
    let url = format!("http://{host}{path_and_query}");
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> = if is_form || (req.method() == "POST" && !body.is_empty()) {
        form_urlencoded::parse(&body).into_owned().collect()
    } else {
        Vec::new()
    };
    let signature = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let signed_params: &[(String, String)] = if req.method() == "POST" { &form } else { &[] };
    let expected_signature = twilio_signature(&state.token, &url, signed_params);
    let signature_ok = signature.as_deref() == Some(expected_signature.as_str());

    let mut record = AppRequest {
        method: req.method().to_string(),
        url,
        path: req.path().to_string(),
        query,
        headers,
        form,
        signature,
        expected_signature,
        signature_ok,
        at,
        answered: 404,
    };
    let handler = state.routes.lock().get(&record.path).cloned();
    let (status, content_type, body) = match handler {
        Some(handler) => handler(&record),
        None => (404, "text/plain".to_string(), "no such path".to_string()),
    };
    record.answered = status;
    state.requests.lock().push(record);
    state.notify.notify_waiters();
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .content_type(content_type)
    .body(body)
}

// ---------------------------------------------------------------------------
// REST API and simulated network

/// The Twilio-style REST API and the sim endpoints of one account.
pub struct Api<'a> {
    pub server: &'a TestServer,
    pub account: usize,
}

impl<'a> Api<'a> {
    pub fn new(server: &'a TestServer, account: usize) -> Api<'a> {
        Api { server, account }
    }

    pub fn sid(&self) -> &str {
        self.server.sid(self.account)
    }

    /// `/2010-04-01/Accounts/{sid}/{rel}`.
    pub fn path(&self, rel: &str) -> String {
        format!("/{API_VERSION}/Accounts/{}/{rel}", self.sid())
    }

    /// Runs `script` with Twilio's own Python helper library: `client` is a
    /// `twilio.rest.Client` of this account pointed at the server, `env` holds
    /// the variables given, and the script prints one JSON value as its last
    /// line, which is returned. `None` when twilio-python is not installed (the
    /// caller returns; under CI that fails instead, see `require_python_module`).
    pub async fn twilio_python(&self, script: &str, env: &[(&str, &str)]) -> Option<Value> {
        let python = super::require_python_module("twilio")?;
        let program = format!(
            "import json, os\nfrom twilio.rest import Client\n\
             client = Client(os.environ['ACCOUNT_SID'], os.environ['AUTH_TOKEN'])\n\
             client.api.base_url = os.environ['SWITCHBOARD_BASE']\n{script}"
        );
        let mut command = tokio::process::Command::new(python);
        command
            .args(["-c", &program])
            .env("SWITCHBOARD_BASE", self.server.base_url())
            .env("ACCOUNT_SID", self.sid())
            .env("AUTH_TOKEN", self.server.token(self.account))
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("twilio-python ran within 60 s")
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "twilio-python failed:\n{script}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        Some(serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}")))
    }

    /// `POST` a form to `rel` with this account's Basic credentials.
    pub async fn post(&self, rel: &str, params: &[(&str, &str)]) -> Reply {
        post_form(
            self.server,
            &self.path(rel),
            self.server.creds(self.account),
            params,
        )
        .await
    }

    /// `GET rel` with this account's Basic credentials.
    pub async fn get(&self, rel: &str) -> Reply {
        request(
            self.server,
            Method::GET,
            &self.path(rel),
            self.server.creds(self.account),
            None,
        )
        .await
    }

    /// Provisions `number` with extra parameters (`VoiceUrl`, `SmsUrl`, …);
    /// asserts 201 and returns the resource.
    pub async fn provision(&self, number: &str, params: &[(&str, &str)]) -> Value {
        let mut all = vec![("PhoneNumber", number)];
        all.extend_from_slice(params);
        let reply = self.post("IncomingPhoneNumbers.json", &all).await;
        let body = created(&reply, "POST IncomingPhoneNumbers.json");
        assert_eq!(
            body["phone_number"],
            json!(number),
            "phone_number in {body}"
        );
        assert_sid(&body["sid"], "PN");
        body
    }

    /// Provisions a fresh number whose voice app is `voice_url`.
    pub async fn voice_number(&self, voice_url: &str) -> String {
        let number = fresh_number();
        self.provision(&number, &[("VoiceUrl", voice_url)]).await;
        number
    }

    /// `GET Calls/{sid}.json`, asserting 200.
    pub async fn call(&self, call_sid: &str) -> Value {
        let reply = self.get(&format!("Calls/{call_sid}.json")).await;
        assert_eq!(
            reply.status,
            200,
            "GET Calls/{call_sid}.json: {}",
            reply.text()
        );
        reply.json()
    }

    /// Polls `GET Calls/{sid}.json` (bounded) until its status is final;
    /// returns the resource.
    pub async fn final_call(&self, call_sid: &str) -> Value {
        let deadline = Instant::now() + crate::common::WAIT;
        loop {
            let call = self.call(call_sid).await;
            let status = call["status"].as_str().unwrap_or("");
            if FINAL_STATUSES.contains(&status) {
                return call;
            }
            assert!(
                Instant::now() < deadline,
                "call {call_sid} never reached a final status: {call}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /v1/Sim/{rel}` with a JSON body and this account's credentials.
    pub async fn sim(&self, rel: &str, body: &Value) -> Reply {
        send_json(
            self.server,
            Method::POST,
            &format!("/v1/Sim/{rel}"),
            self.server.creds(self.account),
            body,
        )
        .await
    }

    /// A simulated inbound call; asserts 201 and returns its CallSid.
    pub async fn sim_call(&self, from: &str, to: &str) -> String {
        let reply = self.sim("Calls", &json!({"from": from, "to": to})).await;
        let body = created(&reply, "POST /v1/Sim/Calls");
        assert_sid(&body["call_sid"], "CA");
        body["call_sid"].as_str().unwrap_or("").to_string()
    }

    /// The caller presses `digits`; asserts 202.
    pub async fn sim_digits(&self, call_sid: &str, digits: &str) {
        let reply = self
            .sim(
                &format!("Calls/{call_sid}/Digits"),
                &json!({ "digits": digits }),
            )
            .await;
        assert_eq!(
            reply.status,
            202,
            "POST /v1/Sim/Calls/{call_sid}/Digits: {}",
            reply.text()
        );
    }

    /// The far party hangs up; asserts 202.
    pub async fn sim_hangup(&self, call_sid: &str) {
        let reply = self
            .sim(&format!("Calls/{call_sid}/Hangup"), &json!({}))
            .await;
        assert_eq!(
            reply.status,
            202,
            "POST /v1/Sim/Calls/{call_sid}/Hangup: {}",
            reply.text()
        );
    }

    /// A simulated inbound SMS; asserts 201 and returns its MessageSid.
    pub async fn sim_message(&self, from: &str, to: &str, body: &str) -> String {
        let reply = self
            .sim("Messages", &json!({"from": from, "to": to, "body": body}))
            .await;
        let created = created(&reply, "POST /v1/Sim/Messages");
        assert_sid(&created["message_sid"], "SM");
        created["message_sid"].as_str().unwrap_or("").to_string()
    }

    /// A client event as client `client` with Basic auth; asserts 202.
    pub async fn client_event(&self, client: &str, event: &Value) {
        let reply = send_json(
            self.server,
            Method::POST,
            &format!("/v1/Accounts/{}/ClientEvents?client={client}", self.sid()),
            self.server.creds(self.account),
            event,
        )
        .await;
        assert_eq!(
            reply.status,
            202,
            "POST ClientEvents {event}: {}",
            reply.text()
        );
    }
}

/// Call statuses after which nothing changes.
pub const FINAL_STATUSES: [&str; 5] = ["completed", "busy", "no-answer", "failed", "canceled"];

/// Asserts a 201 with a JSON body; returns the body.
#[track_caller]
pub fn created(reply: &Reply, what: &str) -> Value {
    assert_eq!(reply.status, 201, "{what}: {}", reply.text());
    assert!(
        reply.content_type().starts_with("application/json"),
        "{what}: Content-Type {:?}",
        reply.content_type()
    );
    reply.json()
}

/// Asserts `value` is a sid: `prefix` and 32 hex digits.
#[track_caller]
pub fn assert_sid(value: &Value, prefix: &str) {
    let sid = value.as_str().unwrap_or("");
    assert!(
        sid.len() == 34
            && sid.starts_with(prefix)
            && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{value} is not {prefix} + 32 hex"
    );
}

/// Asserts a Twilio-style error: the status, a JSON body `{"code": code
/// (a number), "message": non-empty, "more_info":
/// "https://www.twilio.com/docs/errors/{code}", "status": status}`. Returns
/// the message.
#[track_caller]
pub fn assert_twilio_error(reply: &Reply, status: u16, code: u64) -> String {
    assert_eq!(
        reply.status,
        status,
        "expected a {status} (code {code}), got: {}",
        reply.text()
    );
    assert!(
        reply.content_type().starts_with("application/json"),
        "error {} has Content-Type {:?}: {}",
        reply.status,
        reply.content_type(),
        reply.text()
    );
    let body = reply.json();
    assert_eq!(body["code"], json!(code), "code (a number) in {body}");
    assert_eq!(body["status"], json!(status), "status in {body}");
    let message = body["message"].as_str().unwrap_or("").to_string();
    assert!(!message.is_empty(), "message in {body}");
    assert_eq!(
        body["more_info"],
        json!(format!("https://www.twilio.com/docs/errors/{code}")),
        "more_info in {body}"
    );
    message
}

// ---------------------------------------------------------------------------
// Events

/// Every event read from one stream, kept for assertions over many calls.
pub struct EventLog {
    stream: SseStream,
    pub events: Vec<Value>,
}

impl EventLog {
    pub fn new(stream: SseStream) -> EventLog {
        EventLog {
            stream,
            events: Vec::new(),
        }
    }

    /// Opens a Basic-auth stream of `account` with `query` and logs it.
    pub async fn open(server: &TestServer, account: usize, query: &str) -> EventLog {
        let (stream, _open) = server.stream_basic(account, query).await;
        EventLog::new(stream)
    }

    /// Reads until `done` holds for everything seen so far (bounded by
    /// `within`); panics with what was seen otherwise.
    pub async fn until(&mut self, what: &str, within: Duration, done: impl Fn(&[Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(&self.events) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.stream.next_event(left).await {
                Ok(SseEvent { data, .. }) => self.events.push(data),
                Err(err) => panic!("waiting for {what}: {err}; events so far:\n{}", self.dump()),
            }
        }
    }

    /// Reads until an event of type `ty` for `call_sid` (any call if `None`)
    /// has been seen; returns the first such event.
    pub async fn until_event(&mut self, ty: &str, call_sid: Option<&str>) -> Value {
        let pred = |ev: &Value| ev["type"] == json!(ty) && of_call(ev, call_sid);
        self.until(&format!("{ty} of {call_sid:?}"), CALL_WAIT, |evs| {
            evs.iter().any(pred)
        })
        .await;
        self.events
            .iter()
            .find(|ev| pred(ev))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Reads until the `n`-th event of type `ty` (for `call_sid` if given).
    pub async fn until_count(&mut self, ty: &str, call_sid: Option<&str>, n: usize) {
        self.until(&format!("{n} × {ty} of {call_sid:?}"), CALL_WAIT, |evs| {
            evs.iter()
                .filter(|ev| ev["type"] == json!(ty) && of_call(ev, call_sid))
                .count()
                >= n
        })
        .await;
    }

    /// The events of one call, in order.
    pub fn of_call(&self, call_sid: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|ev| ev["call_sid"] == json!(call_sid))
            .cloned()
            .collect()
    }

    /// The types of one call's events, in order.
    pub fn types_of(&self, call_sid: &str) -> Vec<String> {
        self.of_call(call_sid)
            .iter()
            .map(|ev| ev["type"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The events of type `ty`, in order.
    pub fn of_type(&self, ty: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|ev| ev["type"] == json!(ty))
            .cloned()
            .collect()
    }

    /// The one event of type `ty` of `call` (asserting there is exactly one).
    #[track_caller]
    pub fn one_of(&self, ty: &str, call: &str) -> Value {
        let events: Vec<Value> = self
            .of_call(call)
            .into_iter()
            .filter(|ev| ev["type"] == json!(ty))
            .collect();
        assert_eq!(events.len(), 1, "one {ty} of {call}:\n{}", self.dump());
        events[0].clone()
    }

    /// Everything seen, one line per event, for failure messages.
    pub fn dump(&self) -> String {
        self.events
            .iter()
            .map(|ev| {
                format!(
                    "  {} {} {}",
                    ev["type"].as_str().unwrap_or("?"),
                    ev["call_sid"].as_str().unwrap_or("-"),
                    ev["data"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Whether `ev` belongs to `call_sid` (any event if `None`).
fn of_call(ev: &Value, call_sid: Option<&str>) -> bool {
    match call_sid {
        None => true,
        Some(sid) => ev["call_sid"] == json!(sid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_validator_reproduces_twilios_published_example() {
        // https://www.twilio.com/docs/usage/security#validating-requests
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            twilio_signature("12345", url, &params),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        // Order of the POST parameters does not matter; their values do.
        let mut shuffled = params.clone();
        shuffled.reverse();
        assert!(twilio_signature_valid(
            "12345",
            url,
            &shuffled,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
        let mut changed = params;
        changed[2].1 = "1235".to_string();
        assert!(!twilio_signature_valid(
            "12345",
            url,
            &changed,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
    }
}
