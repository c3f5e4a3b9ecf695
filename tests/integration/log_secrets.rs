//! Secrets and response bodies never reach the logs (issue #8), held against
//! the real binary: `switchboard serve` runs as a child process with
//! `RUST_LOG=debug` (every crate at debug, reqwest's and actix's included),
//! its stderr goes to a file, and the test drives requests and failures that
//! carry secrets, each a unique random marker:
//!
//! - the account's auth token, right and wrong, in Basic auth (and the
//!   `Authorization` header's base64);
//! - `signature=` values of signed Stream, WebSocket, ClientEvents and control
//!   URLs, valid, invalid and expired;
//! - a webhook callback whose query holds a key, answering 500 so the router
//!   retries and logs the failures (its host and port may be logged; the
//!   query may not);
//! - application answers: non-TwiML text, a 500 with a body, a `<Play>` URL
//!   answering 404 with a body, a `<Redirect>` to a document answering a
//!   body, a status callback answering 500 with a body, application URLs whose
//!   query holds a key — none of those bodies may reach stderr nor any
//!   `call.*` event (`call.error` and `call.warning` included);
//! - event payloads (`data`), published and sent as client events: tenant data,
//!   not logged at any level.
//!
//! The server must still work afterwards. It is then stopped with SIGTERM and
//! its whole stderr is read before anything is asserted about it.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::{
    create_sub, eventually_metrics, request, scrape, sid_of, subs_path, ws_connect, HookReceiver,
};
use crate::common::twilio::{Api, AppServer, EventLog, CALL_WAIT};
use crate::common::{
    event, free_port, now_secs, random_hex, sign, sign_with_expires, Creds, Reply, TestServer, WAIT,
};
use crate::process::{spawn_with, wait_ready, Options};

const CALLER: &str = "+14155550100";
/// Failed webhook deliveries that will be retried (docs/api.md §8 metrics).
const RETRIES: &str = "switchboard_webhook_retries_total";

/// The secrets planted in this run: `(what, marker)`. Markers are lowercase
/// alphanumerics, so URL encoding, JSON escaping and XML leave them intact.
#[derive(Default)]
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    /// A fresh marker for `what`, remembered for the final check.
    fn plant(&mut self, what: &'static str) -> String {
        let marker = format!("zq{}", random_hex(12));
        self.keep(what, &marker);
        marker
    }

    /// Remembers a secret the test did not make up (a signature, a token).
    fn keep(&mut self, what: &'static str, secret: &str) {
        self.0.push((what, secret.to_owned()));
    }

    /// The secrets found in `text`, each with the first line holding it.
    fn found_in(&self, text: &str) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(what, secret)| {
                text.lines()
                    .find(|line| line.contains(secret.as_str()))
                    .map(|line| format!("{what} ({secret}) in: {line}"))
            })
            .collect()
    }
}

/// The `signature` value of a signed path+query.
fn signature_of(signed: &str) -> &str {
    signed
        .rsplit_once("&signature=")
        .map(|(_, sig)| sig)
        .expect("a signed URL ends with &signature=")
}

/// `Basic base64(user:pass)`, as the header goes over the wire.
fn basic_header(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

#[track_caller]
fn assert_status(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
}

async fn post_json(srv: &TestServer, path: &str, creds: Creds<'_>, body: &Value) -> Reply {
    request(
        srv,
        Method::POST,
        path,
        creds,
        Some(("application/json", body.to_string())),
    )
    .await
}

#[tokio::test]
async fn secrets_and_response_bodies_never_reach_debug_logs_or_call_events() {
    let mut secrets = Secrets::default();
    let sid = format!("AC{}", random_hex(16));
    let token = random_hex(16);
    secrets.keep("the auth token", &token);
    secrets.keep("the Authorization header", &basic_header(&sid, &token));

    let mut child = spawn_with(
        &sid,
        &token,
        &Options {
            config: "[egress]\nallow_private_networks = true\n\
                     [sim]\ntime_scale = 0.01\nring_secs = 1.0\n\
                     [webhook]\ninitial_backoff_ms = 10\nmax_backoff_secs = 1\ndrain_secs = 1\n",
            env: &[("RUST_LOG", "debug"), ("NO_COLOR", "1")],
            capture_stderr: true,
            ..Default::default()
        },
    );
    wait_ready(&crate::common::http_client(), &child.base).await;
    let srv = child.handle();
    let creds = srv.creds(0);
    let stream_path = srv.stream_path(0);
    let events_path = format!("/v1/Accounts/{sid}/Events");
    let client_events_path = format!("/v1/Accounts/{sid}/ClientEvents");

    // --- The auth token: a wrong one (holding a marker) on every surface, and
    // the right one on the wrong account.
    let wrong = secrets.plant("a wrong auth token");
    secrets.keep("a wrong Authorization header", &basic_header(&sid, &wrong));
    let bad: Creds<'_> = Some((&sid, &wrong));
    let rest_calls = format!("/2010-04-01/Accounts/{sid}/Calls.json");
    for (method, path) in [
        (Method::GET, stream_path.clone()),
        (
            Method::GET,
            format!("{stream_path}?transport=poll&timeout=1"),
        ),
        (Method::POST, events_path.clone()),
        (Method::POST, client_events_path.clone()),
        (Method::POST, subs_path(&srv, 0, "prober")),
        (Method::GET, rest_calls.clone()),
        (Method::POST, "/v1/Sim/Calls".to_owned()),
    ] {
        let reply = request(
            &srv,
            method.clone(),
            &path,
            bad,
            Some(("application/json", "{}".to_owned())),
        )
        .await;
        assert_status(&reply, 401, &format!("{method} {path} with a wrong token"));
    }
    assert_eq!(
        ws_connect(&srv, &stream_path, bad).await.err().map(|e| e.0),
        Some(401),
        "a WebSocket with a wrong token"
    );
    let other_account = format!("/v1/Accounts/AC{}/Events", random_hex(16));
    let reply = post_json(&srv, &other_account, creds, &json!({"type": "x.y"})).await;
    assert!(
        (400..500).contains(&reply.status),
        "the right token on another account's path: {} {}",
        reply.status,
        reply.text()
    );

    // --- Signed URLs: valid, invalid and expired signatures.
    let signed_stream = sign(
        &token,
        &format!("{stream_path}?client=browser&types=note.*"),
    );
    secrets.keep("a valid Stream signature", signature_of(&signed_stream));
    let (mut browser, _) = srv.stream_signed(&signed_stream).await;
    let signed_ws = sign(&token, &format!("{stream_path}?client=wsbrowser"));
    secrets.keep("a valid WebSocket signature", signature_of(&signed_ws));
    ws_connect(&srv, &signed_ws, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("signed WebSocket: {status} {body}"))
        .close()
        .await;
    let forged = secrets.plant("an invalid signature");
    let expires = now_secs() + 600;
    let forged_stream =
        format!("{stream_path}?client=browser&expires={expires}&signature={forged}");
    assert_status(
        &srv.rejected(&forged_stream, None).await,
        401,
        "a forged Stream URL",
    );
    let forged_poll =
        format!("{stream_path}?client=browser&transport=poll&expires={expires}&signature={forged}");
    let reply = request(&srv, Method::GET, &forged_poll, None, None).await;
    assert_status(&reply, 401, "a forged long-poll URL");
    assert_eq!(
        ws_connect(&srv, &forged_stream, None)
            .await
            .err()
            .map(|e| e.0),
        Some(401),
        "a forged WebSocket URL"
    );
    let expired = sign_with_expires(
        &token,
        &format!("{stream_path}?client=late"),
        now_secs() - 60,
    );
    secrets.keep("an expired URL's signature", signature_of(&expired));
    assert_status(
        &srv.rejected(&expired, None).await,
        401,
        "an expired Stream URL",
    );

    let signed_client_events = sign(&token, &format!("{client_events_path}?client=browser"));
    secrets.keep(
        "a valid ClientEvents signature",
        signature_of(&signed_client_events),
    );
    let forged_client_events =
        format!("{client_events_path}?client=browser&expires={expires}&signature={forged}");
    let reply = post_json(
        &srv,
        &forged_client_events,
        None,
        &json!({"type": "client.note", "data": {"n": "forged"}}),
    )
    .await;
    assert_status(&reply, 401, "a forged ClientEvents URL");

    // A signed control URL used with a method it was not signed for (logged
    // as a refusal naming account and client, never the query).
    let signed_control = sign(
        &token,
        &format!("{}?types=note.*&method=GET", subs_path(&srv, 0, "browser")),
    );
    secrets.keep("a control URL's signature", signature_of(&signed_control));
    let reply = request(&srv, Method::POST, &signed_control, None, None).await;
    assert_status(&reply, 403, "a GET-signed control URL used to POST");

    // --- Event payloads: published, and sent as client events (signed and Basic).
    let (mut notes, _) = srv.stream_basic(0, "types=note.*,client.*").await;
    let published = secrets.plant("a published event's data");
    srv.publish(0, &event("note.created", None, json!({ "n": published })))
        .await;
    notes.until_marker(&published, WAIT).await;
    browser.until_marker(&published, WAIT).await;
    let refused_payload = secrets.plant("the data of an event refused for its credentials");
    let reply = post_json(
        &srv,
        &events_path,
        bad,
        &event("note.created", None, json!({ "n": refused_payload })),
    )
    .await;
    assert_status(&reply, 401, "publishing with a wrong token");
    let invalid_payload = secrets.plant("the data of an invalid event");
    let reply = post_json(
        &srv,
        &events_path,
        creds,
        &json!({"type": "Not A Type", "data": {"n": invalid_payload}}),
    )
    .await;
    assert_status(&reply, 400, "publishing an invalid event");
    let client_note = secrets.plant("a signed client event's data");
    let reply = post_json(
        &srv,
        &signed_client_events,
        None,
        &json!({"type": "client.note", "data": {"n": client_note}}),
    )
    .await;
    reply.accepted(1);
    notes.until_marker(&client_note, WAIT).await;
    let basic_note = secrets.plant("a Basic client event's data");
    let reply = post_json(
        &srv,
        &format!("{client_events_path}?client=server"),
        creds,
        &json!({"type": "client.note", "data": {"n": basic_note}}),
    )
    .await;
    reply.accepted(1);
    notes.until_marker(&basic_note, WAIT).await;

    // --- Webhooks whose callback query holds a key, both failing and retried,
    // each failure logged: one to a closed port (a connection error), then one
    // answering 500. The callbacks' host and port may be logged; not the query.
    let key = secrets.plant("a webhook callback's query");
    let hook_data = secrets.plant("a webhook event's data");
    let closed = format!("http://127.0.0.1:{}/gone?key={key}", free_port());
    let hook = HookReceiver::start(usize::MAX).await;
    let answering = hook.url(&format!("/hook?key={key}"));
    for (client, callback) in [("unreachable", &closed), ("failing", &answering)] {
        let retries_before = scrape(&srv).await.value(RETRIES, &[]);
        let sub = create_sub(
            &srv,
            0,
            client,
            &[("types", "hook.*"), ("callback", callback)],
        )
        .await;
        srv.publish(0, &event("hook.ping", None, json!({ "n": hook_data })))
            .await;
        eventually_metrics(&srv, &format!("3 retries of the {client} webhook"), |s| {
            s.value(RETRIES, &[]) >= retries_before + 3.0
        })
        .await;
        let one = format!("{}/{}", subs_path(&srv, 0, client), sid_of(&sub));
        let reply = request(&srv, Method::DELETE, &one, creds, None).await;
        assert_status(&reply, 204, "DELETE the webhook subscription");
    }
    hook.wait_for(WAIT, "3 failed deliveries", |reqs| reqs.len() >= 3)
        .await;

    // --- Applications that answer bodies which must go nowhere.
    let app = AppServer::start(&token);
    let app_key = secrets.plant("an application URL's query");
    let junk = secrets.plant("a non-TwiML answer");
    app.respond(
        "/junk",
        200,
        "text/xml",
        &format!("this is not TwiML: {junk}"),
    );
    let boom = secrets.plant("a 500 answer's body");
    app.respond("/boom", 500, "text/plain", &format!("stack trace: {boom}"));
    let play = secrets.plant("a failed Play fetch's body");
    app.respond(
        "/missing.mp3",
        404,
        "text/plain",
        &format!("not here: {play}"),
    );
    let leak = secrets.plant("a redirected document's body");
    app.twiml(
        "/redirect",
        &format!(
            "<Response><Play>{}</Play><Redirect>{}</Redirect></Response>",
            app.url(&format!("/missing.mp3?key={app_key}")),
            app.url(&format!("/leak?key={app_key}")),
        ),
    );
    app.respond(
        "/leak",
        200,
        "text/xml",
        &format!("<{leak}>{leak}</{leak}>"),
    );
    let status_body = secrets.plant("a failed status callback's body");
    app.respond(
        "/status",
        500,
        "text/plain",
        &format!("nope: {status_body}"),
    );

    let api = Api::new(&srv, 0);
    let status_callback = app.url(&format!("/status?key={app_key}"));
    let mut numbers = Vec::new();
    let unreachable = format!("http://127.0.0.1:{}/gone?key={app_key}", free_port());
    let voice_urls = ["/junk", "/boom", "/redirect"]
        .map(|path| app.url(&format!("{path}?key={app_key}")))
        .into_iter()
        .chain([unreachable]);
    // Fixed, distinct numbers: this server is the test's own.
    for (n, voice_url) in voice_urls.enumerate() {
        let number = format!("+1415555100{n}");
        api.provision(
            &number,
            &[
                ("VoiceUrl", voice_url.as_str()),
                ("StatusCallback", status_callback.as_str()),
            ],
        )
        .await;
        numbers.push(number);
    }
    let mut log = EventLog::open(&srv, 0, "types=call.*").await;
    let mut calls = Vec::new();
    for number in &numbers {
        calls.push(api.sim_call(CALLER, number).await);
    }
    log.until("every call's call.end", CALL_WAIT, |evs| {
        calls.iter().all(|call| {
            evs.iter()
                .any(|ev| ev["type"] == json!("call.end") && ev["call_sid"] == json!(call))
        })
    })
    .await;
    app.wait_requests("/status", calls.len(), WAIT).await;
    app.wait_requests("/leak", 1, WAIT).await;
    app.wait_requests("/missing.mp3", 1, WAIT).await;

    // Each failure happened, as the event its subscribers see.
    let code_of = |call: &str, ty: &str| -> Vec<Value> {
        log.of_call(call)
            .iter()
            .filter(|ev| ev["type"] == json!(ty))
            .map(|ev| ev["data"]["error_code"].clone())
            .collect()
    };
    let expected = [
        (0, "call.error", 12100),
        (1, "call.error", 11200),
        (2, "call.warning", 11200),
        (2, "call.error", 12100),
        (3, "call.error", 11200),
    ];
    for (call, ty, code) in expected {
        assert_eq!(
            code_of(&calls[call], ty),
            [json!(code)],
            "{ty} of call #{call}:\n{}",
            log.dump()
        );
    }
    let bodies = [&junk, &boom, &play, &leak, &status_body];
    for ev in &log.events {
        let text = ev.to_string();
        for body in bodies {
            assert!(
                !text.contains(body.as_str()),
                "an application's answer reached a call event: {ev}"
            );
        }
    }

    // --- The server still works.
    let after = random_hex(8);
    srv.publish(0, &event("note.after", None, json!({ "n": after })))
        .await;
    notes.until_marker(&after, WAIT).await;
    assert_status(&srv.get("/readyz").await, 200, "GET /readyz");

    // --- Stop it, read everything it wrote, then look.
    child.sigterm();
    let exit = child.wait_exit(WAIT + Duration::from_secs(5)).await;
    assert!(exit.success(), "exit status {exit:?}");
    let stderr = child.stderr();
    assert!(
        stderr.lines().any(|line| line.contains(" DEBUG ")),
        "the server logged at debug (else this test proves nothing):\n{stderr}"
    );
    let leaks = secrets.found_in(&stderr);
    assert!(
        leaks.is_empty(),
        "secrets reached the server's stderr:\n{}",
        leaks.join("\n")
    );
}
