//! The call router's loop and size bounds (docs/api.md §7 "Bounds") replayed as an
//! attacker would: applications that answer each other forever, a `<Redirect>`
//! to itself, a call that never hangs up. Each test counts the requests on the
//! application's side and proves the loop stopped with the bound's event.

use serde_json::{json, Value};

use crate::common::twilio::{fresh_number, sim_server, Api, AppServer, EventLog, CALL_WAIT};
use crate::common::TestServer;

const CALLER: &str = "+14155550100";

/// Two distinct fresh numbers.
fn two_numbers() -> (String, String) {
    let a = fresh_number();
    let mut b = fresh_number();
    while b == a {
        b = fresh_number();
    }
    (a, b)
}

/// Waits for a request to `path` of an SMS app that does not reply: because the
/// router runs SMS apps in the order their messages arrive, a request to it made
/// after the loop's end proves the loop has made no request since.
async fn terminator(server: &TestServer, app: &AppServer, taken: &[&str]) {
    let api = Api::new(server, 0);
    let mut number = fresh_number();
    while taken.contains(&number.as_str()) {
        number = fresh_number();
    }
    app.twiml("/quiet", "<Response/>");
    api.provision(&number, &[("SmsUrl", &app.url("/quiet"))])
        .await;
    api.sim_message(CALLER, &number, "terminator").await;
    app.wait_requests("/quiet", 1, CALL_WAIT).await;
}

/// Serves `/a`, which answers an SMS with one to `b`, and `/b`, which answers with
/// one to `a`: an endless loop between two numbers.
fn ping_pong(app: &AppServer, a: &str, b: &str) {
    app.twiml(
        "/a",
        &format!(r#"<Response><Message to="{b}">ping</Message></Response>"#),
    );
    app.twiml(
        "/b",
        &format!(r#"<Response><Message to="{a}">pong</Message></Response>"#),
    );
}

#[tokio::test]
async fn an_sms_loop_between_two_numbers_fails_at_the_tenth_hop() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    let (a, b) = two_numbers();
    // Each app answers every SMS with one to the other number: the attack.
    ping_pong(&app, &a, &b);
    api.provision(&a, &[("SmsUrl", &app.url("/a"))]).await;
    api.provision(&b, &[("SmsUrl", &app.url("/b"))]).await;
    let mut log = EventLog::open(&server, 0, "types=message.*").await;

    api.sim_message(CALLER, &a, "start").await;
    let failed = log.until_event("message.failed", None).await;
    assert_eq!(failed["data"]["error_code"], json!(14107), "{failed}");
    assert!(
        failed["data"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("loop")),
        "message.failed data.error_message: {failed}"
    );
    // Odd hops arrive at a: hop 9 does, and a's reply would be hop 10.
    assert_eq!(failed["data"]["from"], json!(a), "{failed}");
    assert_eq!(failed["data"]["to"], json!(b), "{failed}");

    terminator(&server, &app, &[&a, &b]).await;
    let requests = app.requests_to("/a").len() + app.requests_to("/b").len();
    assert_eq!(
        requests, 9,
        "the apps ran for hops 1 to 9 only, never for the tenth"
    );
    assert_eq!(log.of_type("message.failed").len(), 1, "{}", log.dump());
    assert_eq!(log.of_type("message.received").len(), 9, "{}", log.dump());

    let sid = failed["data"]["message_sid"].as_str().unwrap_or("");
    let record = api.get(&format!("Messages/{sid}.json")).await;
    assert_eq!(
        record.status,
        200,
        "GET Messages/{sid}.json: {}",
        record.text()
    );
    let record: Value = record.json();
    assert_eq!(record["status"], json!("failed"), "{record}");
    assert_eq!(record["error_code"], json!(14107), "{record}");
    assert_eq!(record["direction"], json!("outbound-reply"), "{record}");
}

#[tokio::test]
async fn a_calls_message_verb_starts_a_chain_that_is_bounded_too() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    let (a, b) = two_numbers();
    app.twiml(
        "/voice",
        &format!(r#"<Response><Message to="{b}">from a call</Message></Response>"#),
    );
    ping_pong(&app, &a, &b);
    api.provision(
        &a,
        &[("SmsUrl", &app.url("/a")), ("VoiceUrl", &app.url("/voice"))],
    )
    .await;
    api.provision(&b, &[("SmsUrl", &app.url("/b"))]).await;
    let mut log = EventLog::open(&server, 0, "types=message.failed").await;

    api.sim_call(CALLER, &a).await;
    let failed = log.until_event("message.failed", None).await;
    assert_eq!(failed["data"]["error_code"], json!(14107), "{failed}");
    terminator(&server, &app, &[&a, &b]).await;
    let requests = app.requests_to("/a").len() + app.requests_to("/b").len();
    assert_eq!(requests, 9, "the call's SMS is hop 1; hops 2 to 9 ran apps");
}

/// The events of `call` end with `call.error` (`code`) then `call.end` `failed`.
#[track_caller]
fn assert_ended_with_error(log: &EventLog, call: &str, code: u64) {
    let events = log.of_call(call);
    let n = events.len();
    assert!(n >= 2, "{}", log.dump());
    assert_eq!(events[n - 2]["type"], json!("call.error"), "{}", log.dump());
    assert_eq!(
        events[n - 2]["data"]["error_code"],
        json!(code),
        "{}",
        log.dump()
    );
    assert_eq!(events[n - 1]["type"], json!("call.end"), "{}", log.dump());
    assert_eq!(
        events[n - 1]["data"]["status"],
        json!("failed"),
        "{}",
        log.dump()
    );
}

#[tokio::test]
async fn a_redirect_to_itself_ends_the_call_after_100_documents() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/loop", "<Response><Redirect>/loop</Redirect></Response>");
    let number = api.voice_number(&app.url("/loop")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;

    let call = api.sim_call(CALLER, &number).await;
    // call.end is published after the call stopped fetching: nothing follows it.
    log.until_event("call.end", Some(&call)).await;
    assert_ended_with_error(&log, &call, 14106);
    assert_eq!(
        app.requests_to("/loop").len(),
        100,
        "the app is asked for 100 documents, not one more"
    );
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("failed"), "{done}");
}

#[tokio::test]
async fn documents_that_let_time_pass_are_not_a_loop() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    // An IVR menu repeating itself: each round lets a second of simulated time pass.
    app.route("/menu", |req| {
        let round = req
            .param("round")
            .unwrap_or("0")
            .parse::<u32>()
            .unwrap_or(0);
        let body = if round >= 120 {
            "<Response><Hangup/></Response>".to_string()
        } else {
            format!(
                r#"<Response><Pause length="1"/><Redirect>/menu?round={}</Redirect></Response>"#,
                round + 1
            )
        };
        (200, "text/xml".to_string(), body)
    });
    let number = api.voice_number(&app.url("/menu")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;
    let call = api.sim_call(CALLER, &number).await;
    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{}", log.dump());
    assert!(log.of_type("call.error").is_empty(), "{}", log.dump());
    assert_eq!(app.requests_to("/menu").len(), 121);
}

#[tokio::test]
async fn time_limit_ends_a_long_pause_completed() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/hold", r#"<Response><Pause length="3600"/></Response>"#);
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;

    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", "+16505550199"),
                ("From", &from),
                ("Url", &app.url("/hold")),
                ("TimeLimit", "5"),
            ],
        )
        .await;
    assert_eq!(reply.status, 201, "POST Calls.json: {}", reply.text());
    let call = reply.json()["sid"].as_str().unwrap_or("").to_string();
    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    let duration: u64 = done["duration"].as_str().unwrap_or("").parse().unwrap_or(0);
    assert!(
        (5..60).contains(&duration),
        "ended at its 5 s TimeLimit, not after the hour-long Pause: {done}"
    );

    let bad = api
        .post(
            "Calls.json",
            &[
                ("To", "+16505550199"),
                ("From", &from),
                ("Url", &app.url("/hold")),
                ("TimeLimit", "-1"),
            ],
        )
        .await;
    let message = crate::common::twilio::assert_twilio_error(&bad, 400, 20001);
    assert!(message.contains("TimeLimit"), "{message}");
}

#[tokio::test]
async fn max_call_secs_ends_a_call_nobody_hangs_up() {
    let server = TestServer::start(|config| {
        config.sim.time_scale = 0.01;
        config.call_router.max_call_secs = 5;
    });
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/hold", r#"<Response><Pause length="3600"/></Response>"#);
    let number = api.voice_number(&app.url("/hold")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;
    let call = api.sim_call(CALLER, &number).await;
    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
    let duration = end["data"]["duration"].as_u64().unwrap_or(0);
    assert!((5..60).contains(&duration), "{end}");
}

#[tokio::test]
async fn call_events_pass_a_busy_shard_instead_of_being_dropped() {
    let server = TestServer::start(|config| {
        config.sim.time_scale = 0.01;
        config.shards = 1;
        config.publish.shard_queue = 1;
    });
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    let says = "<Say>a</Say>".repeat(40);
    app.twiml("/talk", &format!("<Response>{says}</Response>"));
    let number = api.voice_number(&app.url("/talk")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;

    // Another publisher keeps the only shard's one queue slot busy meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..4 {
        let publisher = server.publisher(1);
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let body = json!({"type": "noise.tick", "data": {}});
            for _ in 0..5_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _ = publisher.post("application/json", body.to_string()).await;
            }
        }));
    }
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.end", Some(&call)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for flooder in flooders {
        let _ = flooder.await;
    }
    let types = log.types_of(&call);
    let count = |ty: &str| types.iter().filter(|t| *t == ty).count();
    assert_eq!(count("say.start"), 40, "{types:?}");
    assert_eq!(count("say.end"), 40, "{types:?}");
    assert_eq!(types.first().map(String::as_str), Some("call.start"));
}

#[tokio::test]
async fn queue_verbs_that_never_wait_are_a_loop_too() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    // A caller whose wait document leaves at once, back into the queue again; an
    // agent dialling a queue that does not exist, over and over.
    app.twiml(
        "/enqueue",
        r#"<Response><Enqueue action="/enqueue" waitUrl="/leave">loop</Enqueue></Response>"#,
    );
    app.twiml("/leave", "<Response><Leave/></Response>");
    app.twiml(
        "/agent",
        r#"<Response><Dial action="/agent"><Queue>nobody-made-this</Queue></Dial></Response>"#,
    );
    let caller_number = api.voice_number(&app.url("/enqueue")).await;
    let agent_number = api.voice_number(&app.url("/agent")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;

    for (number, path) in [(caller_number, "/enqueue"), (agent_number, "/agent")] {
        let call = api.sim_call(CALLER, &number).await;
        log.until_event("call.end", Some(&call)).await;
        assert_ended_with_error(&log, &call, 14106);
        assert_eq!(
            app.requests_to(path).len(),
            100,
            "{path}: 100 documents, not one more"
        );
    }
}
