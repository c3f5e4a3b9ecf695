//! The egress rules (docs/api.md §5), replayed as an attacker would: webhooks and
//! applications aimed at loopback (directly and through a DNS name), redirects
//! that leave the allow-list or never end, a TwiML answer that never ends, and a
//! redirect to a service whose answer must not come back in `call.error`.
//!
//! Everything listens on 127.0.0.1, so the servers here refuse private networks
//! explicitly (`egress.allow_private_networks = false`) and list the test's own
//! "public" hosts in `webhook.allowed_hosts` where a reachable app is needed.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::common::channels::{
    create_sub, eventually_metrics, marked, post_form, subs_path, HookReceiver,
};
use crate::common::twilio::{assert_twilio_error, Api, AppServer, EventLog, CALL_WAIT};
use crate::common::{new_call_sid, serve_local, TestServer, WAIT};

/// A caller for the simulated inbound calls.
const CALLER: &str = "+14155550100";

/// What the streaming app offers: far beyond the 64 KiB a document may have.
const HUGE_BODY: usize = 64 * 1024 * 1024;

type Handler = Arc<dyn Fn(&str) -> HttpResponse + Send + Sync>;

/// An HTTP server on 127.0.0.1 answering each path as the test scripts it (any
/// status, headers or streamed body), recording the paths requested.
struct Scripted {
    port: u16,
    paths: Arc<Mutex<Vec<String>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl Scripted {
    fn start(answer: impl Fn(&str) -> HttpResponse + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted server");
        let port = listener.local_addr().expect("local_addr").port();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(answer);
        let recorded = paths.clone();
        let handle = serve_local("scripted", listener, move |cfg| {
            let (handler, recorded) = (handler.clone(), recorded.clone());
            cfg.default_service(web::to(move |req: HttpRequest| {
                let (handler, recorded) = (handler.clone(), recorded.clone());
                async move {
                    recorded.lock().push(req.path().to_owned());
                    handler(req.path())
                }
            }));
        });
        Scripted {
            port,
            paths,
            handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requested(&self) -> Vec<String> {
        self.paths.lock().clone()
    }
}

/// A 302 to `location`.
fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", location))
        .finish()
}

/// A 200 whose chunked body (no `Content-Length`) goes on for [`HUGE_BODY`]
/// bytes, counting what was handed to the socket and noticing when the server
/// drops the body unfinished — which it does when the client hangs up.
#[derive(Clone, Default)]
struct Endless {
    sent: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

/// Sets its flag when actix drops the body stream.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Endless {
    fn response(&self, head: &'static str) -> HttpResponse {
        let flag = DropFlag(self.dropped.clone());
        let sent = self.sent.clone();
        let chunk = Bytes::from(vec![b' '; 64 * 1024]);
        let chunks = std::iter::once(Bytes::from_static(head.as_bytes()))
            .chain(std::iter::repeat_n(chunk, HUGE_BODY / (64 * 1024)));
        let body = futures_util::stream::iter(chunks).map(move |chunk| {
            let _alive = &flag;
            sent.fetch_add(chunk.len(), Ordering::SeqCst);
            Ok::<_, std::io::Error>(chunk)
        });
        HttpResponse::Ok().content_type("text/xml").streaming(body)
    }

    /// Waits (bounded) until the body was dropped, then asserts it was not sent
    /// whole: the reader stopped early.
    async fn wait_abandoned(&self) {
        let deadline = tokio::time::Instant::now() + CALL_WAIT;
        while !self.dropped.load(Ordering::SeqCst) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the endless body was never abandoned"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sent = self.sent.load(Ordering::SeqCst);
        assert!(sent < HUGE_BODY, "the whole {sent}-byte body was read");
    }
}

/// A server for call tests (media 100× faster than real time) that refuses
/// private networks except on `allowed_hosts`.
fn strict_sim_server(allowed_hosts: Vec<String>) -> TestServer {
    TestServer::start(move |c| {
        c.sim.time_scale = 0.01;
        c.sim.ring_secs = 1.0;
        c.egress.allow_private_networks = Some(false);
        c.webhook.allowed_hosts = allowed_hosts;
    })
}

/// Places a simulated inbound call to a fresh number whose voice app is
/// `voice_url` and reads its events until `call.end`.
async fn call_to_end(server: &TestServer, voice_url: &str) -> (EventLog, String) {
    let api = Api::new(server, 0);
    let number = api.voice_number(voice_url).await;
    let mut log = EventLog::open(server, 0, "types=call.*").await;
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.end", Some(&call)).await;
    (log, call)
}

/// The call's single `call.error`, asserting its code.
#[track_caller]
fn the_error(log: &EventLog, call: &str, code: u64) -> Value {
    let errors: Vec<Value> = log
        .of_call(call)
        .into_iter()
        .filter(|ev| ev["type"] == json!("call.error"))
        .collect();
    assert_eq!(errors.len(), 1, "one call.error:\n{}", log.dump());
    assert_eq!(
        errors[0]["data"]["error_code"],
        json!(code),
        "{}",
        log.dump()
    );
    errors[0].clone()
}

// ---------------------------------------------------------------------------
// Webhooks

#[tokio::test]
async fn webhooks_to_loopback_are_refused_by_literal_and_by_name() {
    let server = TestServer::start(|c| {
        c.egress.allow_private_networks = Some(false);
        c.webhook.initial_backoff_ms = 10;
    });
    let receiver = HookReceiver::start(0).await;

    // An IP literal is refused before the subscription exists, naming `callback`.
    let message = post_form(
        &server,
        &subs_path(&server, 0, "ssrf"),
        server.creds(0),
        &[("types", "call.*"), ("callback", &receiver.url("/hook"))],
    )
    .await
    .assert_error(400, "invalid_parameter");
    assert!(
        message.starts_with("callback") && message.contains("private"),
        "{message}"
    );

    // A name is checked where it is connected: `localhost` resolves to loopback,
    // as a rebinding name would at connect time.
    let by_name = format!("http://localhost:{}/hook", receiver.port);
    create_sub(
        &server,
        0,
        "ssrf",
        &[("types", "call.*"), ("callback", &by_name)],
    )
    .await;
    server
        .publish(0, &marked("call.progress", &new_call_sid(), "1"))
        .await;
    // Terminator: two refused connection attempts, each counted and retried.
    eventually_metrics(&server, "two refused webhook attempts", |s| {
        s.value(
            "switchboard_egress_refused_total",
            &[("reason", "private_address")],
        ) >= 2.0
            && s.value("switchboard_webhook_retries_total", &[]) >= 2.0
    })
    .await;
    assert!(
        receiver.snapshot().is_empty(),
        "the receiver on loopback was reached: {:?}",
        receiver.snapshot().len()
    );
}

#[tokio::test]
async fn a_listed_host_is_reachable_on_a_private_network() {
    let receiver = HookReceiver::start(0).await;
    let listed = format!("127.0.0.1:{}", receiver.port);
    let server = TestServer::start(move |c| {
        c.egress.allow_private_networks = Some(false);
        c.webhook.allowed_hosts = vec![listed];
    });
    create_sub(
        &server,
        0,
        "listed",
        &[("types", "call.*"), ("callback", &receiver.url("/hook"))],
    )
    .await;
    server
        .publish(0, &marked("call.progress", &new_call_sid(), "1"))
        .await;
    receiver
        .wait_for(WAIT, "acknowledged one batch", |reqs| {
            reqs.iter().any(|r| r.answered == 200)
        })
        .await;
}

#[tokio::test]
async fn a_webhook_answering_302_is_not_followed_and_counts_as_failed() {
    let target = HookReceiver::start(0).await;
    let target_url = target.url("/elsewhere");
    let redirector = Scripted::start(move |_| found(&target_url));
    let server = TestServer::start(|c| c.webhook.initial_backoff_ms = 10);
    create_sub(
        &server,
        0,
        "redirected",
        &[("types", "call.*"), ("callback", &redirector.url("/hook"))],
    )
    .await;
    server
        .publish(0, &marked("call.progress", &new_call_sid(), "1"))
        .await;
    // Terminator: the redirector was asked twice, each a failed delivery.
    eventually_metrics(&server, "two failed deliveries", |s| {
        s.value(
            "switchboard_webhook_requests_total",
            &[("outcome", "error")],
        ) >= 2.0
    })
    .await;
    assert!(redirector.requested().len() >= 2, "retried after the 302");
    assert!(target.snapshot().is_empty(), "the 302 was followed");
    let scrape = crate::common::channels::scrape(&server).await;
    assert_eq!(
        scrape.value("switchboard_webhook_events_total", &[]),
        0.0,
        "nothing acknowledged"
    );
}

// ---------------------------------------------------------------------------
// The call router

#[tokio::test]
async fn a_redirect_off_the_allow_list_is_never_requested_and_fails_the_call() {
    let internal = AppServer::start("unused");
    internal.twiml("/secret", "<Response><Hangup/></Response>");
    let secret_url = internal.url("/secret");
    let app = Scripted::start(move |_| found(&secret_url));
    let server = strict_sim_server(vec![format!("127.0.0.1:{}", app.port)]);

    let (log, call) = call_to_end(&server, &app.url("/voice")).await;
    let error = the_error(&log, &call, 11200);
    let message = error["data"]["error_message"].as_str().unwrap_or("");
    assert!(
        message.contains("webhook.allowed_hosts") && !message.contains(&internal.port.to_string()),
        "names the rule, not the redirect target: {message}"
    );
    assert_eq!(app.requested(), vec!["/voice".to_string()]);
    assert!(
        internal.requests().is_empty(),
        "the unlisted private URL was requested"
    );
}

#[tokio::test]
async fn redirect_chains_end_after_five() {
    // `/hop/N` redirects to `/hop/N-1`; `/hop/0` is the document.
    let app = Scripted::start(|path| match path.strip_prefix("/hop/") {
        Some("0") => HttpResponse::Ok()
            .content_type("text/xml")
            .body("<Response><Hangup/></Response>"),
        Some(n) => match n.parse::<u32>() {
            Ok(n) => found(&format!("/hop/{}", n - 1)),
            Err(_) => HttpResponse::NotFound().finish(),
        },
        None => HttpResponse::NotFound().finish(),
    });
    let server = strict_sim_server(vec![format!("127.0.0.1:{}", app.port)]);

    let (log, call) = call_to_end(&server, &app.url("/hop/5")).await;
    assert!(
        log.of_call(&call)
            .iter()
            .all(|ev| ev["type"] != json!("call.error")),
        "five redirects are followed:\n{}",
        log.dump()
    );
    assert!(app.requested().contains(&"/hop/0".to_string()));

    let before = app.requested().len();
    let (log, call) = call_to_end(&server, &app.url("/hop/6")).await;
    the_error(&log, &call, 11200);
    let chain: Vec<String> = app.requested()[before..].to_vec();
    assert_eq!(
        chain,
        (1..=6)
            .rev()
            .map(|n| format!("/hop/{n}"))
            .collect::<Vec<_>>(),
        "the sixth redirect is not followed"
    );
}

#[tokio::test]
async fn a_twiml_answer_without_length_is_cut_at_64_kib_with_11750() {
    let endless = Endless::default();
    let body = endless.clone();
    let app = Scripted::start(move |_| body.response("<Response><Say>"));
    let server = strict_sim_server(vec![format!("127.0.0.1:{}", app.port)]);

    let (log, call) = call_to_end(&server, &app.url("/voice")).await;
    the_error(&log, &call, 11750);
    let final_call = Api::new(&server, 0).final_call(&call).await;
    assert_eq!(final_call["status"], json!("failed"), "{final_call}");
    endless.wait_abandoned().await;
    eventually_metrics(&server, "the cut counted", |s| {
        s.value(
            "switchboard_egress_refused_total",
            &[("reason", "response_too_large")],
        ) >= 1.0
            && s.value("switchboard_call_errors_total", &[("code", "11750")]) >= 1.0
    })
    .await;
}

#[tokio::test]
async fn a_webhook_answer_without_length_is_discarded_after_64_kib() {
    let endless = Endless::default();
    let body = endless.clone();
    let receiver = Scripted::start(move |_| body.response("ok"));
    let server = TestServer::start(|_| {});
    create_sub(
        &server,
        0,
        "endless",
        &[("types", "call.*"), ("callback", &receiver.url("/hook"))],
    )
    .await;
    server
        .publish(0, &marked("call.progress", &new_call_sid(), "1"))
        .await;
    // A 2xx acknowledges the batch; its body is abandoned, not read to the end.
    eventually_metrics(&server, "the batch acknowledged", |s| {
        s.value("switchboard_webhook_events_total", &[]) >= 1.0
    })
    .await;
    endless.wait_abandoned().await;
}

#[tokio::test]
async fn application_urls_on_private_addresses_are_refused() {
    let app = AppServer::start("unused");
    app.twiml("/voice", "<Response><Hangup/></Response>");
    let server = strict_sim_server(Vec::new());
    let api = Api::new(&server, 0);

    // An IP literal is refused before the number exists, naming the parameter.
    let reply = api
        .post(
            "IncomingPhoneNumbers.json",
            &[
                ("PhoneNumber", "+14155550111"),
                ("VoiceUrl", &app.url("/voice")),
            ],
        )
        .await;
    let message = assert_twilio_error(&reply, 400, 21205);
    assert!(message.starts_with("VoiceUrl"), "{message}");

    // A name resolving to loopback is refused where it is connected.
    let by_name = format!("http://localhost:{}/voice", app.port);
    let (log, call) = call_to_end(&server, &by_name).await;
    let error = the_error(&log, &call, 11200);
    let message = error["data"]["error_message"].as_str().unwrap_or("");
    assert!(message.contains("private network"), "{message}");
    assert!(app.requests().is_empty(), "the app on loopback was reached");
}

#[tokio::test]
async fn call_errors_and_warnings_never_echo_the_answer() {
    let server = TestServer::start(|c| c.sim.time_scale = 0.01);
    let app = AppServer::start(server.token(0));
    // The issue's replay: a document redirects to a service whose answer is not
    // TwiML; then the other ways a body's bytes reached messages.
    app.twiml(
        "/voice",
        "<Response><Redirect>/internal</Redirect></Response>",
    );
    app.respond("/internal", 200, "text/plain", "SECRET-BODY-123");
    app.twiml("/root", "<SECRET-BODY-123/>");
    app.twiml("/verb", "<Response><SECRET-BODY-123/><Hangup/></Response>");
    app.twiml(
        "/attr",
        r#"<Response><Gather numDigits="SECRET-BODY-123"/></Response>"#,
    );
    app.twiml(
        "/xml",
        "<Response><Say a='1' a='SECRET-BODY-123'/></Response>",
    );
    for path in ["/voice", "/root", "/verb", "/attr", "/xml"] {
        let (log, call) = call_to_end(&server, &app.url(path)).await;
        let problems: Vec<Value> = log
            .of_call(&call)
            .into_iter()
            .filter(|ev| ev["type"] == json!("call.error") || ev["type"] == json!("call.warning"))
            .collect();
        assert!(
            !problems.is_empty(),
            "{path}: no call.error or call.warning"
        );
        for problem in problems {
            let text = problem["data"].to_string();
            assert!(
                !text.contains("SECRET") && !text.contains("BODY-123"),
                "{path}: {text}"
            );
        }
    }
}
