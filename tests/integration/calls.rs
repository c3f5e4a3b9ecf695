//! The built-in call router (API.md §7, docs/call-router.md), held from the
//! outside: Twilio-style REST, the simulated network, TwiML executed against
//! an application server the test scripts (`common::twilio::AppServer`, which
//! checks every `X-Twilio-Signature` with its own implementation of Twilio's
//! algorithm), and the call events that come out on a stream.
//!
//! Every server runs with `sim.time_scale = 0.01` (simulated media a hundred
//! times faster) and `sim.ring_secs = 1.0` (the no-answer `Dial` test rings for
//! 5.0 against a shorter timeout); every wait is bounded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::request;
use crate::common::twilio::{
    assert_sid, assert_twilio_error, created, fresh_number, sim_server, Api, AppServer, EventLog,
    API_VERSION, CALL_WAIT,
};
use crate::common::{free_port, new_call_sid, TestServer, WAIT};

const CALLER: &str = "+14155550100";
/// A number no account owns: the simulated far end answers it.
const EXTERNAL: &str = "+16505550199";

/// `duration` of a call resource or event: simulated seconds, written as a
/// string like Twilio's (an event may carry a number).
#[track_caller]
fn sim_seconds(value: &Value) -> f64 {
    let parsed = match value {
        Value::String(s) => s.parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    parsed.unwrap_or_else(|| panic!("duration {value} is not a number of seconds"))
}

/// A date as Twilio writes it: RFC 2822 in UTC, `Thu, 26 Nov 2026 07:20:50 +0000`.
#[track_caller]
fn assert_rfc2822(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    assert!(
        text.ends_with(" +0000") && chrono::DateTime::parse_from_rfc2822(text).is_ok(),
        "{what} {text:?} is not an RFC 2822 UTC date"
    );
}

/// Position of the first event of type `ty` in `types` at or after `from`.
#[track_caller]
fn pos(types: &[String], ty: &str, from: usize) -> usize {
    types
        .iter()
        .skip(from)
        .position(|t| t == ty)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no {ty} at or after #{from} in {types:?}"))
}

/// Provisions a number whose voice app is `voice_url`, opens a stream of
/// `types`, places a simulated inbound call and reads until its `call.end`.
async fn inbound_call_to_end(
    server: &TestServer,
    voice_url: &str,
    types: &str,
) -> (EventLog, String) {
    let api = Api::new(server, 0);
    let number = api.voice_number(voice_url).await;
    let mut log = EventLog::open(server, 0, types).await;
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.end", Some(&call)).await;
    (log, call)
}

/// The call ended with `call.error` (`error_code`) right before `call.end`,
/// and its resource reached a final status.
async fn assert_failed_cleanly(server: &TestServer, log: &EventLog, call: &str, code: u64) {
    let types = log.types_of(call);
    let n = types.len();
    assert!(
        n >= 2 && types[n - 2] == "call.error" && types[n - 1] == "call.end",
        "call.error then call.end last: {types:?}\n{}",
        log.dump()
    );
    assert_eq!(
        types.iter().filter(|t| *t == "call.error").count(),
        1,
        "one call.error: {types:?}"
    );
    let events = log.of_call(call);
    let error = &events[n - 2];
    assert_eq!(
        error["data"]["error_code"],
        json!(code),
        "call.error data.error_code (a number): {error}"
    );
    assert!(
        error["data"]["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "call.error data.error_message: {error}"
    );
    Api::new(server, 0).final_call(call).await;
}

// ---------------------------------------------------------------------------
// 1. A full IVR

#[tokio::test]
async fn full_ivr_says_gathers_plays_and_hangs_up_with_signed_webhooks() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    // `timeout` (simulated seconds, 3 s real here) leaves the test time to
    // answer the prompt; the default of 5 simulated seconds is 50 ms.
    app.twiml(
        "/ivr",
        r#"<Response><Say>Welcome to the demo</Say><Gather numDigits="4" timeout="300" action="/digits"><Say>Enter your code</Say></Gather></Response>"#,
    );
    let template = app.url("/audio/{Digits}.mp3");
    app.twiml(
        "/digits",
        &format!("<Response><Play>{template}</Play><Hangup/></Response>"),
    );
    app.respond("/audio/1234.mp3", 200, "audio/mpeg", "ID3-not-really-audio");
    let number = api.voice_number(&app.url("/ivr")).await;

    let mut log = EventLog::open(&server, 0, "types=call.*,say.*,gather.*,play.*").await;
    let call = api.sim_call(CALLER, &number).await;

    // Once the Gather has started and its prompt is done, the caller types.
    log.until("the Gather's prompt", CALL_WAIT, |evs| {
        let call_evs: Vec<&Value> = evs
            .iter()
            .filter(|ev| ev["call_sid"] == json!(call))
            .collect();
        call_evs
            .iter()
            .position(|ev| ev["type"] == "gather.start")
            .is_some_and(|i| call_evs[i..].iter().any(|ev| ev["type"] == "say.end"))
    })
    .await;
    api.sim_digits(&call, "1234").await;
    log.until_event("call.end", Some(&call)).await;

    let types = log.types_of(&call);
    assert_eq!(
        types,
        [
            "call.start",
            "say.start",
            "say.end",
            "gather.start",
            "say.start",
            "say.end",
            "gather.end",
            "play.start",
            "play.end",
            "call.end"
        ],
        "event sequence of the call:\n{}",
        log.dump()
    );
    let events = log.of_call(&call);
    for ev in &events {
        assert_eq!(ev["account_sid"], json!(server.sid(0)), "account of {ev}");
    }
    let start = &events[0]["data"];
    assert_eq!(start["from"], json!(CALLER), "call.start data: {start}");
    assert_eq!(start["to"], json!(number), "call.start data: {start}");
    assert_eq!(
        start["direction"],
        json!("inbound"),
        "call.start data: {start}"
    );
    assert_eq!(
        start["status"],
        json!("in-progress"),
        "call.start data: {start}"
    );
    assert_eq!(
        events[1]["data"]["text"],
        json!("Welcome to the demo"),
        "first say.start: {}",
        events[1]
    );
    assert_eq!(
        events[4]["data"]["text"],
        json!("Enter your code"),
        "nested say.start: {}",
        events[4]
    );
    assert_eq!(
        events[6]["data"]["digits"],
        json!("1234"),
        "gather.end: {}",
        events[6]
    );
    let played = events[7]["data"]["url"].as_str().unwrap_or("");
    assert!(
        played.ends_with("/audio/1234.mp3"),
        "play.start data.url filled from the template: {}",
        events[7]
    );
    assert_eq!(
        events[9]["data"]["status"],
        json!("completed"),
        "call.end: {}",
        events[9]
    );

    // The webhooks: signed, with Twilio's parameters.
    let ivr = app.first_request("/ivr").await;
    let digits = app.first_request("/digits").await;
    for req in [&ivr, &digits] {
        assert_eq!(req.method, "POST", "{}", req.summary());
        assert!(
            req.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")),
            "form-encoded webhook: {}",
            req.summary()
        );
        req.assert_signed();
        req.assert_param("CallSid", &call);
        req.assert_param("AccountSid", server.sid(0));
        req.assert_param("From", CALLER);
        req.assert_param("To", &number);
        req.assert_param("Direction", "inbound");
        req.assert_param("ApiVersion", API_VERSION);
        req.assert_param("Caller", CALLER);
        req.assert_param("Called", &number);
        assert!(req.param("CallStatus").is_some(), "{}", req.summary());
    }
    digits.assert_param("Digits", "1234");
    // As Twilio: an inbound call's first request is made while it rings.
    ivr.assert_param("CallStatus", "ringing");
    digits.assert_param("CallStatus", "in-progress");
    let media = app.first_request("/audio/1234.mp3").await;
    assert_eq!(media.method, "GET", "{}", media.summary());
    for req in app.requests() {
        if req.path.starts_with("/audio/") {
            // A media fetch need not be signed, but a signature must verify.
            assert!(
                req.signature.is_none() || req.signature_ok,
                "media fetch with a bad signature: {}",
                req.summary()
            );
        } else {
            req.assert_signed();
        }
    }

    let resource = api.final_call(&call).await;
    assert_eq!(resource["sid"], json!(call), "{resource}");
    assert_eq!(resource["account_sid"], json!(server.sid(0)), "{resource}");
    assert_eq!(resource["status"], json!("completed"), "{resource}");
    assert_eq!(resource["direction"], json!("inbound"), "{resource}");
    assert_eq!(resource["from"], json!(CALLER), "{resource}");
    assert_eq!(resource["to"], json!(number), "{resource}");
    assert_eq!(
        resource["uri"],
        json!(format!(
            "/{API_VERSION}/Accounts/{}/Calls/{call}.json",
            server.sid(0)
        )),
        "{resource}"
    );
    assert!(
        resource["duration"].is_string(),
        "duration is simulated seconds as a string: {resource}"
    );
    // Two Says (2 s + 1.5 s) and a Play (2 s) at least.
    let duration = sim_seconds(&resource["duration"]);
    assert!(
        duration >= 5.0,
        "duration {duration} simulated seconds: {resource}"
    );
    assert_eq!(resource["api_version"], json!(API_VERSION), "{resource}");
    assert_eq!(resource["parent_call_sid"], Value::Null, "{resource}");
    for key in ["date_created", "date_updated", "start_time", "end_time"] {
        assert_rfc2822(&resource[key], key);
    }
    // The event says the same as the resource.
    assert_eq!(
        sim_seconds(&events[9]["data"]["duration"]).round(),
        duration.round(),
        "call.end data.duration vs the resource's: {}",
        events[9]
    );
}

#[tokio::test]
async fn a_get_voice_url_gets_the_parameters_in_its_query_signed() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/get", "<Response><Say>by get</Say></Response>");
    let number = fresh_number();
    // The URL's own query is kept, and the parameters appended to it.
    let voice_url = app.url("/get?app=1");
    api.provision(&number, &[("VoiceUrl", &voice_url), ("VoiceMethod", "GET")])
        .await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );

    let req = app.first_request("/get").await;
    assert_eq!(req.method, "GET", "{}", req.summary());
    assert!(
        req.form.is_empty(),
        "a GET has no form body: {}",
        req.summary()
    );
    assert!(
        req.query.iter().any(|(n, v)| n == "app" && v == "1"),
        "the URL's own query kept: {}",
        req.summary()
    );
    req.assert_signed();
    req.assert_param("CallSid", &call);
    req.assert_param("From", CALLER);
    req.assert_param("To", &number);
    req.assert_param("Direction", "inbound");
    req.assert_param("ApiVersion", API_VERSION);
}

// ---------------------------------------------------------------------------
// 2. Outbound calls through REST

#[tokio::test]
async fn an_outbound_call_rings_then_runs_the_apps_twiml() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/outbound", "<Response><Say>Hi</Say></Response>");
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;

    let sent = Instant::now();
    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", EXTERNAL),
                ("From", &from),
                ("Url", &app.url("/outbound")),
            ],
        )
        .await;
    let resource = created(&reply, "POST Calls.json");
    assert_sid(&resource["sid"], "CA");
    let call = resource["sid"].as_str().unwrap_or("").to_string();
    let status = resource["status"].as_str().unwrap_or("");
    assert!(
        status == "queued" || status == "ringing",
        "a new call is queued or ringing: {resource}"
    );
    assert_eq!(resource["direction"], json!("outbound-api"), "{resource}");
    assert_eq!(resource["to"], json!(EXTERNAL), "{resource}");
    assert_eq!(resource["from"], json!(from), "{resource}");
    assert_eq!(resource["api_version"], json!(API_VERSION), "{resource}");

    let req = app.first_request("/outbound").await;
    let ring = Duration::from_millis(10); // ring_secs 1.0 × time_scale 0.01
    assert!(
        req.at.duration_since(sent) >= ring,
        "the app was requested {:?} after the POST, before the ring time",
        req.at.duration_since(sent)
    );
    req.assert_signed();
    req.assert_param("CallSid", &call);
    req.assert_param("AccountSid", server.sid(0));
    req.assert_param("Direction", "outbound-api");
    req.assert_param("From", &from);
    req.assert_param("To", EXTERNAL);
    req.assert_param("ApiVersion", API_VERSION);

    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    let events = log.of_call(&call);
    assert_eq!(
        events[0]["data"]["direction"],
        json!("outbound-api"),
        "{}",
        events[0]
    );
    assert_eq!(
        events[3]["data"]["status"],
        json!("completed"),
        "{}",
        events[3]
    );
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["direction"], json!("outbound-api"), "{done}");
}

#[tokio::test]
async fn an_outbound_call_can_carry_its_twiml_inline() {
    let server = sim_server();
    let api = Api::new(&server, 0);
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;

    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", EXTERNAL),
                ("From", &from),
                ("Twiml", "<Response><Say>x</Say></Response>"),
            ],
        )
        .await;
    let resource = created(&reply, "POST Calls.json with Twiml");
    assert_sid(&resource["sid"], "CA");
    let call = resource["sid"].as_str().unwrap_or("").to_string();

    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_eq!(log.of_call(&call)[1]["data"]["text"], json!("x"));
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test]
async fn rest_status_completed_hangs_up_a_live_call() {
    let server = sim_server();
    let api = Api::new(&server, 0);
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;

    // 3000 simulated seconds: 30 s real, far beyond every wait below.
    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", EXTERNAL),
                ("From", &from),
                ("Twiml", r#"<Response><Pause length="3000"/></Response>"#),
            ],
        )
        .await;
    let call = created(&reply, "POST Calls.json")["sid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    log.until_event("call.start", Some(&call)).await;
    assert_eq!(api.call(&call).await["status"], json!("in-progress"));

    let reply = api
        .post(&format!("Calls/{call}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(
        reply.status,
        200,
        "POST Calls/{call}.json: {}",
        reply.text()
    );
    assert_eq!(reply.json()["sid"], json!(call), "{}", reply.text());

    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert!(done["end_time"].is_string(), "end_time once ended: {done}");
}

#[tokio::test]
async fn a_live_call_is_redirected_by_rest_and_by_a_client_event() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    let hold = r#"<Response><Pause length="3000"/></Response>"#;
    app.twiml("/hold", hold);
    app.twiml("/next", "<Response><Say>moved by rest</Say></Response>");
    app.twiml("/client", "<Response><Say>moved by client</Say></Response>");
    let number = api.voice_number(&app.url("/hold")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;

    // By REST: POST Calls/{sid}.json with Url.
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.start", Some(&call)).await;
    let reply = api
        .post(&format!("Calls/{call}.json"), &[("Url", &app.url("/next"))])
        .await;
    assert_eq!(
        reply.status,
        200,
        "POST Calls/{call}.json Url: {}",
        reply.text()
    );
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_eq!(
        log.of_call(&call)[1]["data"]["text"],
        json!("moved by rest")
    );
    let next = app.first_request("/next").await;
    next.assert_signed();
    next.assert_param("CallSid", &call);

    // By a client event: client.redirect with data.url.
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.start", Some(&call)).await;
    api.client_event(
        "ops",
        &json!({"type": "client.redirect", "call_sid": call, "data": {"url": app.url("/client")}}),
    )
    .await;
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_eq!(
        log.of_call(&call)[1]["data"]["text"],
        json!("moved by client")
    );
    let moved = app.first_request("/client").await;
    moved.assert_signed();
    moved.assert_param("CallSid", &call);
}

// ---------------------------------------------------------------------------
// 3. A conference of three, muted and unmuted by client events

#[tokio::test]
async fn a_conference_of_three_is_muted_and_unmuted_by_client_events() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/conf",
        "<Response><Dial><Conference>room1</Conference></Dial></Response>",
    );
    let number = api.voice_number(&app.url("/conf")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,conference.*").await;

    let mut calls = Vec::new();
    for from in ["+14155550101", "+14155550102", "+14155550103"] {
        calls.push(api.sim_call(from, &number).await);
    }
    let all: BTreeSet<String> = calls.iter().cloned().collect();

    log.until_count("conference.join", None, 3).await;
    let joins = log.of_type("conference.join");
    assert_eq!(joins.len(), 3, "{}", log.dump());
    let mut joined = BTreeSet::new();
    for join in &joins {
        assert_eq!(join["data"]["conference"], json!("room1"), "{join}");
        assert_eq!(
            join["data"]["participant"], join["call_sid"],
            "participant is the joining call: {join}"
        );
        assert_eq!(join["data"]["muted"], json!(false), "{join}");
        joined.insert(
            join["data"]["participant"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert_eq!(joined, all, "one join per call");

    api.client_event("ops", &json!({"type": "client.mute", "call_sid": calls[1]}))
        .await;
    let mute = log.until_event("conference.mute", None).await;
    assert_eq!(mute["data"]["participant"], json!(calls[1]), "{mute}");
    assert_eq!(mute["data"]["muted"], json!(true), "{mute}");
    assert_eq!(mute["data"]["conference"], json!("room1"), "{mute}");

    api.client_event(
        "ops",
        &json!({"type": "client.unmute", "call_sid": calls[1]}),
    )
    .await;
    let unmute = log.until_event("conference.unmute", None).await;
    assert_eq!(unmute["data"]["participant"], json!(calls[1]), "{unmute}");
    assert_eq!(unmute["data"]["muted"], json!(false), "{unmute}");
    assert_eq!(log.of_type("conference.mute").len(), 1, "{}", log.dump());

    for call in &calls {
        api.sim_hangup(call).await;
    }
    log.until_count("call.end", None, 3).await;
    let left: BTreeSet<String> = log
        .of_type("conference.leave")
        .iter()
        .map(|ev| ev["data"]["participant"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(left, all, "one leave per call:\n{}", log.dump());
    assert_eq!(log.of_type("conference.leave").len(), 3, "{}", log.dump());
    for call in &calls {
        let types = log.types_of(call);
        assert_eq!(
            types.last().map(String::as_str),
            Some("call.end"),
            "{call}: {types:?}"
        );
        assert!(
            pos(&types, "conference.join", 0) < pos(&types, "conference.leave", 0),
            "{call}: {types:?}"
        );
        let done = api.final_call(call).await;
        assert_eq!(done["status"], json!("completed"), "{done}");
    }
}

// ---------------------------------------------------------------------------
// 4. SMS in and out

#[tokio::test]
async fn sms_in_gets_the_apps_reply_and_rest_sends_sms() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/sms", "<Response><Message>Got it</Message></Response>");
    let number = fresh_number();
    api.provision(&number, &[("SmsUrl", &app.url("/sms"))])
        .await;
    let mut log = EventLog::open(&server, 0, "types=message.*").await;

    let message = api.sim_message(CALLER, &number, "Hello router").await;
    let received = log.until_event("message.received", None).await;
    assert_eq!(received["data"]["from"], json!(CALLER), "{received}");
    assert_eq!(received["data"]["to"], json!(number), "{received}");
    assert_eq!(
        received["data"]["body"],
        json!("Hello router"),
        "{received}"
    );
    let reply = log.until_event("message.sent", None).await;
    assert_eq!(reply["data"]["body"], json!("Got it"), "{reply}");
    assert_eq!(reply["data"]["to"], json!(CALLER), "{reply}");
    assert_eq!(reply["data"]["from"], json!(number), "{reply}");
    let order: Vec<&str> = log
        .events
        .iter()
        .map(|ev| ev["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        order,
        ["message.received", "message.sent"],
        "{}",
        log.dump()
    );

    let req = app.first_request("/sms").await;
    assert_eq!(req.method, "POST", "{}", req.summary());
    req.assert_signed();
    req.assert_param("Body", "Hello router");
    req.assert_param("From", CALLER);
    req.assert_param("To", &number);
    req.assert_param("MessageSid", &message);
    req.assert_param("SmsSid", &message);
    req.assert_param("NumMedia", "0");
    req.assert_param("AccountSid", server.sid(0));

    // Out through REST.
    let reply = api
        .post(
            "Messages.json",
            &[
                ("To", EXTERNAL),
                ("From", &number),
                ("Body", "Outbound hello"),
            ],
        )
        .await;
    let sent = created(&reply, "POST Messages.json");
    assert_sid(&sent["sid"], "SM");
    assert_eq!(sent["body"], json!("Outbound hello"), "{sent}");
    assert_eq!(sent["to"], json!(EXTERNAL), "{sent}");
    assert_eq!(sent["from"], json!(number), "{sent}");
    assert_eq!(sent["direction"], json!("outbound-api"), "{sent}");
    log.until("message.sent of the REST message", WAIT, |evs| {
        evs.iter()
            .any(|ev| ev["type"] == "message.sent" && ev["data"]["body"] == json!("Outbound hello"))
    })
    .await;
    let event = log
        .of_type("message.sent")
        .into_iter()
        .find(|ev| ev["data"]["body"] == json!("Outbound hello"))
        .unwrap_or(Value::Null);
    assert_eq!(event["data"]["to"], json!(EXTERNAL), "{event}");
    assert_eq!(event["data"]["from"], json!(number), "{event}");
    let sid = sent["sid"].as_str().unwrap_or("");
    let got = api.get(&format!("Messages/{sid}.json")).await;
    assert_eq!(got.status, 200, "GET Messages/{sid}.json: {}", got.text());
    assert_eq!(got.json()["body"], json!("Outbound hello"));

    let reply = api
        .post("Messages.json", &[("To", EXTERNAL), ("From", &number)])
        .await;
    assert_twilio_error(&reply, 400, 21602);
}

// ---------------------------------------------------------------------------
// 5. Failure modes: each ends the call cleanly

#[tokio::test]
async fn an_app_answering_500_ends_the_call_with_11200() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.respond("/boom", 500, "text/plain", "boom");
    let (log, call) = inbound_call_to_end(&server, &app.url("/boom"), "types=call.*").await;
    assert_failed_cleanly(&server, &log, &call, 11200).await;
    app.first_request("/boom").await.assert_signed();
}

#[tokio::test]
async fn an_unreachable_app_ends_the_call_with_11200() {
    let server = sim_server();
    let closed = format!("http://127.0.0.1:{}/gone", free_port());
    let (log, call) = inbound_call_to_end(&server, &closed, "types=call.*").await;
    assert_failed_cleanly(&server, &log, &call, 11200).await;
}

#[tokio::test]
async fn a_body_that_is_not_twiml_ends_the_call_with_12100() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.respond("/junk", 200, "text/xml", "not xml");
    let (log, call) = inbound_call_to_end(&server, &app.url("/junk"), "types=call.*").await;
    assert_failed_cleanly(&server, &log, &call, 12100).await;
}

#[tokio::test]
async fn an_unknown_verb_is_a_12200_warning_and_the_call_goes_on() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.twiml("/foo", "<Response><Foo/><Say>after</Say></Response>");
    let (log, call) = inbound_call_to_end(&server, &app.url("/foo"), "types=call.*,say.*").await;
    let types = log.types_of(&call);
    let events = log.of_call(&call);
    let warning = pos(&types, "call.warning", 0);
    assert_eq!(
        events[warning]["data"]["error_code"],
        json!(12200),
        "{}",
        events[warning]
    );
    let said = pos(&types, "say.start", warning);
    assert_eq!(
        events[said]["data"]["text"],
        json!("after"),
        "{}",
        events[said]
    );
    let said_end = pos(&types, "say.end", said);
    assert_eq!(said_end, types.len() - 2, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("call.end"));
    assert!(!types.contains(&"call.error".to_string()), "{types:?}");
    assert_eq!(
        events[types.len() - 1]["data"]["status"],
        json!("completed"),
        "{}",
        log.dump()
    );
}

#[tokio::test]
async fn a_play_that_fails_to_fetch_is_a_warning_and_the_call_goes_on() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let missing = app.url("/missing.mp3");
    app.twiml(
        "/play",
        &format!("<Response><Play>{missing}</Play><Say>still here</Say></Response>"),
    );
    let (log, call) =
        inbound_call_to_end(&server, &app.url("/play"), "types=call.*,say.*,play.*").await;
    let types = log.types_of(&call);
    let events = log.of_call(&call);
    let warning = pos(&types, "call.warning", 0);
    assert_eq!(
        events[warning]["data"]["error_code"],
        json!(11200),
        "a failed Play fetch: {}",
        events[warning]
    );
    let said = pos(&types, "say.start", warning);
    assert_eq!(
        events[said]["data"]["text"],
        json!("still here"),
        "{}",
        events[said]
    );
    pos(&types, "say.end", said);
    assert_eq!(types.last().map(String::as_str), Some("call.end"));
    assert!(!types.contains(&"call.error".to_string()), "{types:?}");
    let fetch = app.first_request("/missing.mp3").await;
    assert_eq!(fetch.method, "GET", "{}", fetch.summary());
    assert_eq!(fetch.answered, 404);
}

#[tokio::test]
async fn a_redirect_runs_the_new_document() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.twiml("/r1", "<Response><Redirect>/r2</Redirect></Response>");
    app.twiml("/r2", "<Response><Say>redirected</Say></Response>");
    let (log, call) =
        inbound_call_to_end(&server, &app.url("/r1"), "types=call.*,say.*,redirect").await;
    let types = log.types_of(&call);
    let events = log.of_call(&call);
    assert_eq!(
        types,
        ["call.start", "redirect", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    assert!(
        events[1]["data"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/r2")),
        "redirect data.url: {}",
        events[1]
    );
    assert_eq!(events[2]["data"]["text"], json!("redirected"));
    assert_eq!(events[4]["data"]["status"], json!("completed"));
    let r2 = app.first_request("/r2").await;
    r2.assert_signed();
    r2.assert_param("CallSid", &call);
    assert_eq!(r2.method, "POST", "{}", r2.summary());
}

#[tokio::test]
async fn reject_busy_ends_the_call_busy() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.twiml("/reject", r#"<Response><Reject reason="busy"/></Response>"#);
    let (log, call) = inbound_call_to_end(&server, &app.url("/reject"), "types=call.*").await;
    let end = log.of_call(&call).pop().unwrap_or(Value::Null);
    assert_eq!(end["type"], json!("call.end"), "{}", log.dump());
    assert_eq!(end["data"]["status"], json!("busy"), "{}", log.dump());
    let done = Api::new(&server, 0).final_call(&call).await;
    assert_eq!(done["status"], json!("busy"), "{done}");
}

#[tokio::test]
async fn a_client_hangup_event_ends_a_live_call() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.twiml("/hold", r#"<Response><Pause length="3000"/></Response>"#);
    let api = Api::new(&server, 0);
    let number = api.voice_number(&app.url("/hold")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.start", Some(&call)).await;

    api.client_event("ops", &json!({"type": "client.hangup", "call_sid": call}))
        .await;
    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test]
async fn the_status_callback_gets_the_final_status_signed() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/bye", "<Response><Say>bye</Say></Response>");
    app.respond("/status", 200, "text/plain", "");
    let number = fresh_number();
    api.provision(
        &number,
        &[
            ("VoiceUrl", &app.url("/bye")),
            ("StatusCallback", &app.url("/status")),
        ],
    )
    .await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.end", Some(&call)).await;

    let status = app.first_request("/status").await;
    assert_eq!(status.method, "POST", "{}", status.summary());
    status.assert_signed();
    status.assert_param("CallSid", &call);
    status.assert_param("CallStatus", "completed");
    status.assert_param("AccountSid", server.sid(0));
    let duration = status
        .param("CallDuration")
        .unwrap_or_else(|| panic!("no CallDuration: {}", status.summary()));
    sim_seconds(&json!(duration));
}

// ---------------------------------------------------------------------------
// 6. REST errors, Twilio-style

#[tokio::test]
async fn rest_errors_are_twilio_shaped() {
    let server = sim_server();
    let api = Api::new(&server, 0);

    let path = api.path("Calls.json");
    let wrong = request(
        &server,
        Method::GET,
        &path,
        Some((server.sid(0), "not-the-token")),
        None,
    )
    .await;
    assert_twilio_error(&wrong, 401, 20003);
    let none = request(&server, Method::GET, &path, None, None).await;
    assert_twilio_error(&none, 401, 20003);

    let other = Api::new(&server, 1).path("Calls.json");
    let reply = request(&server, Method::GET, &other, server.creds(0), None).await;
    assert_twilio_error(&reply, 403, 20403);

    let unknown = api.get(&format!("Calls/{}.json", new_call_sid())).await;
    assert_twilio_error(&unknown, 404, 20404);

    let from = fresh_number();
    api.provision(&from, &[]).await;
    let reply = api
        .post(
            "Calls.json",
            &[("From", &from), ("Url", "http://127.0.0.1:9/never")],
        )
        .await;
    assert_twilio_error(&reply, 400, 21201);

    let reply = api
        .post("IncomingPhoneNumbers.json", &[("PhoneNumber", &from)])
        .await;
    assert_twilio_error(&reply, 400, 21452);

    // The simulated network only calls numbers of the caller's account.
    let reply = api
        .sim("Calls", &json!({"from": CALLER, "to": EXTERNAL}))
        .await;
    assert_eq!(
        reply.status,
        404,
        "sim call to an unprovisioned number: {}",
        reply.text()
    );
    let reply = Api::new(&server, 1)
        .sim("Calls", &json!({"from": CALLER, "to": from}))
        .await;
    assert!(
        reply.status == 403 || reply.status == 404,
        "sim call to another account's number: {} {}",
        reply.status,
        reply.text()
    );
}

#[tokio::test]
async fn call_lists_are_paged_newest_first_under_calls() {
    let server = sim_server();
    let api = Api::new(&server, 0);
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut sids = Vec::new();
    for _ in 0..3 {
        let reply = api
            .post(
                "Calls.json",
                &[
                    ("To", EXTERNAL),
                    ("From", &from),
                    ("Twiml", "<Response><Hangup/></Response>"),
                ],
            )
            .await;
        sids.push(
            created(&reply, "POST Calls.json")["sid"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }

    let page = api.get("Calls.json?PageSize=2").await;
    assert_eq!(page.status, 200, "GET Calls.json: {}", page.text());
    let page = page.json();
    let listed: Vec<&str> = page["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls array: {page}"))
        .iter()
        .map(|c| c["sid"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        listed,
        [sids[2].as_str(), sids[1].as_str()],
        "newest first: {page}"
    );
    assert_eq!(page["page"], json!(0), "{page}");
    assert_eq!(page["page_size"], json!(2), "{page}");
    let next = page["next_page_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("next_page_uri on a full page: {page}"));
    assert!(
        next.starts_with(&api.path("Calls.json")),
        "next_page_uri {next:?}"
    );

    let rest = request(&server, Method::GET, next, server.creds(0), None).await;
    assert_eq!(rest.status, 200, "GET {next}: {}", rest.text());
    let rest = rest.json();
    let listed: Vec<&str> = rest["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls array: {rest}"))
        .iter()
        .map(|c| c["sid"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(listed, [sids[0].as_str()], "the last page: {rest}");
    assert_eq!(rest["page"], json!(1), "{rest}");
    assert_eq!(rest["next_page_uri"], Value::Null, "{rest}");
}

// ---------------------------------------------------------------------------
// 7. Record and Dial

/// An external number for `Dial` (no account owns it): the simulated far end
/// answers it after the ring time.
const DIALLED: &str = "+14155550177";
/// An external number that rings longer than the `Dial` waits.
const UNANSWERED: &str = "+14155550188";

/// A fresh number that is none of `taken` (`fresh_number` draws from the
/// same `+1415555….` range as the fixed numbers here).
fn number_other_than(taken: &[&str]) -> String {
    loop {
        let number = fresh_number();
        if number != CALLER && !taken.contains(&number.as_str()) {
            return number;
        }
    }
}

/// Provisions a number other than `taken` whose voice app is `voice_url`.
async fn voice_number_other_than(api: &Api<'_>, voice_url: &str, taken: &[&str]) -> String {
    let number = number_other_than(taken);
    api.provision(&number, &[("VoiceUrl", voice_url)]).await;
    number
}

/// The calls `GET Calls.json` lists whose `parent_call_sid` is `parent`.
async fn child_legs(api: &Api<'_>, parent: &str) -> Vec<Value> {
    let reply = api.get("Calls.json?PageSize=1000").await;
    assert_eq!(reply.status, 200, "GET Calls.json: {}", reply.text());
    let page = reply.json();
    page["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls array: {page}"))
        .iter()
        .filter(|call| call["parent_call_sid"] == json!(parent))
        .cloned()
        .collect()
}

/// Polls `GET Calls.json` (bounded) until it lists a leg dialled by `parent`
/// with `status`; returns that leg.
async fn wait_child_leg(api: &Api<'_>, parent: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let legs = child_legs(api, parent).await;
        if let Some(leg) = legs.iter().find(|leg| leg["status"] == json!(status)) {
            assert_eq!(legs.len(), 1, "one leg dialled by {parent}: {legs:?}");
            return leg.clone();
        }
        assert!(
            Instant::now() < deadline,
            "GET Calls.json never listed a {status} leg with parent_call_sid {parent}: {legs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the `call.start` of a call to `to` other than `parent` (the
/// far end of `parent`'s `Dial` to a number of the same account); returns its
/// CallSid.
async fn far_end_call(log: &mut EventLog, parent: &str, to: &str) -> String {
    let pred = |ev: &Value| {
        ev["type"] == "call.start"
            && ev["data"]["to"] == json!(to)
            && ev["call_sid"] != json!(parent)
    };
    log.until(
        &format!("call.start of the far end {to}"),
        CALL_WAIT,
        |evs| evs.iter().any(pred),
    )
    .await;
    log.events
        .iter()
        .find(|ev| pred(ev))
        .and_then(|ev| ev["call_sid"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The last event of `call` is its `call.end` with `status`.
#[track_caller]
fn assert_ended(log: &EventLog, call: &str, status: &str) {
    let end = log.of_call(call).pop().unwrap_or(Value::Null);
    assert_eq!(
        end["type"],
        json!("call.end"),
        "{call} last:\n{}",
        log.dump()
    );
    assert_eq!(end["data"]["status"], json!(status), "{call}: {end}");
}

#[tokio::test]
async fn record_stops_on_its_finish_key_and_posts_the_recording_to_its_action() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/record",
        r##"<Response><Record maxLength="60" timeout="30" finishOnKey="#" action="/recorded"/></Response>"##,
    );
    app.twiml("/recorded", "<Response><Hangup/></Response>");
    let number = api.voice_number(&app.url("/record")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,record.*").await;
    let call = api.sim_call(CALLER, &number).await;

    log.until_event("record.start", Some(&call)).await;
    api.sim_digits(&call, "#").await;
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "record.start", "record.end", "call.end"],
        "{}",
        log.dump()
    );
    let events = log.of_call(&call);
    let end = &events[2];
    let recording_url = end["data"]["recording_url"]
        .as_str()
        .unwrap_or_else(|| panic!("record.end data.recording_url: {end}"))
        .to_string();
    let duration = &end["data"]["recording_duration"];
    assert!(
        duration.is_number(),
        "record.end data.recording_duration is a number: {end}"
    );
    let seconds = sim_seconds(duration);
    assert!(
        (0.0..=60.0).contains(&seconds),
        "recording_duration {seconds} within maxLength: {end}"
    );
    // The `#` sent at once, not the 30 s of silence, ended the recording.
    assert!(
        seconds < 30.0,
        "recording_duration {seconds}: the finish key did not stop the Record: {end}"
    );
    assert_ended(&log, &call, "completed");

    let recorded = app.first_request("/recorded").await;
    assert_eq!(recorded.method, "POST", "{}", recorded.summary());
    recorded.assert_signed();
    recorded.assert_param("CallSid", &call);
    recorded.assert_param("AccountSid", server.sid(0));
    let recording_sid = recorded
        .param("RecordingSid")
        .unwrap_or_else(|| panic!("no RecordingSid: {}", recorded.summary()))
        .to_string();
    assert_sid(&json!(recording_sid), "RE");
    assert!(
        (recording_url.starts_with("http://") || recording_url.starts_with("https://"))
            && recording_url.ends_with(&recording_sid),
        "recording_url {recording_url:?} is a URL ending in the RecordingSid {recording_sid}"
    );
    recorded.assert_param("RecordingUrl", &recording_url);
    let posted = recorded
        .param("RecordingDuration")
        .unwrap_or_else(|| panic!("no RecordingDuration: {}", recorded.summary()));
    assert_eq!(
        sim_seconds(&json!(posted)),
        seconds,
        "RecordingDuration {posted:?} vs the event's {duration}: {}",
        recorded.summary()
    );

    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test]
async fn a_dial_to_an_external_number_bridges_a_child_leg_until_it_hangs_up() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/dial",
        &format!(
            r#"<Response><Dial action="/dialed" timeout="20"><Number>{DIALLED}</Number></Dial></Response>"#
        ),
    );
    app.twiml("/dialed", "<Response><Hangup/></Response>");
    let number = voice_number_other_than(&api, &app.url("/dial"), &[DIALLED]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,dial.*").await;
    let call = api.sim_call(CALLER, &number).await;

    let start = log.until_event("dial.start", Some(&call)).await;
    assert_eq!(start["data"]["to"], json!(DIALLED), "dial.start: {start}");

    // After the ring, the far end answers: a child leg of the dialling call.
    let leg = wait_child_leg(&api, &call, "in-progress").await;
    assert_sid(&leg["sid"], "CA");
    let child = leg["sid"].as_str().unwrap_or("").to_string();
    assert_ne!(child, call, "the leg has its own CallSid: {leg}");
    assert_eq!(leg["direction"], json!("outbound-dial"), "{leg}");
    assert_eq!(leg["to"], json!(DIALLED), "{leg}");
    assert_eq!(leg["account_sid"], json!(server.sid(0)), "{leg}");
    assert_eq!(api.call(&call).await["status"], json!("in-progress"));

    api.sim_hangup(&child).await;
    let end = log.until_event("dial.end", Some(&call)).await;
    assert_eq!(
        end["data"]["dial_call_status"],
        json!("completed"),
        "dial.end: {end}"
    );
    sim_seconds(&end["data"]["duration"]);
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "dial.start", "dial.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_ended(&log, &call, "completed");

    let dialed = app.first_request("/dialed").await;
    assert_eq!(dialed.method, "POST", "{}", dialed.summary());
    dialed.assert_signed();
    dialed.assert_param("CallSid", &call);
    dialed.assert_param("DialCallStatus", "completed");
    dialed.assert_param("DialCallSid", &child);
    let duration = dialed
        .param("DialCallDuration")
        .unwrap_or_else(|| panic!("no DialCallDuration: {}", dialed.summary()));
    sim_seconds(&json!(duration));

    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    let leg = api.final_call(&child).await;
    assert_eq!(leg["status"], json!("completed"), "{leg}");
    assert_eq!(leg["parent_call_sid"], json!(call), "{leg}");
}

#[tokio::test]
async fn a_dial_to_a_number_of_the_same_account_runs_its_app_as_the_far_end() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/far", "<Response><Say>far end here</Say></Response>");
    let far = voice_number_other_than(&api, &app.url("/far"), &[]).await;
    app.twiml(
        "/near",
        &format!("<Response><Dial><Number>{far}</Number></Dial></Response>"),
    );
    let near = voice_number_other_than(&api, &app.url("/near"), &[&far]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*,dial.*").await;
    let call = api.sim_call(CALLER, &near).await;

    let child = far_end_call(&mut log, &call, &far).await;
    log.until_event("call.end", Some(&child)).await;
    assert_eq!(
        log.types_of(&child),
        ["call.start", "say.start", "say.end", "call.end"],
        "the far end's events:\n{}",
        log.dump()
    );
    let far_events = log.of_call(&child);
    assert_eq!(
        far_events[0]["data"]["direction"],
        json!("inbound"),
        "the far end's call.start: {}",
        far_events[0]
    );
    assert_eq!(
        far_events[1]["data"]["text"],
        json!("far end here"),
        "{}",
        far_events[1]
    );
    assert_ended(&log, &child, "completed");

    let end = log.until_event("dial.end", Some(&call)).await;
    assert_eq!(
        end["data"]["dial_call_status"],
        json!("completed"),
        "dial.end: {end}"
    );
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "dial.start", "dial.end", "call.end"],
        "{}",
        log.dump()
    );
    let start = &log.of_call(&call)[1];
    assert_eq!(start["data"]["to"], json!(far), "dial.start: {start}");
    assert_ended(&log, &call, "completed");

    // The far end's app was asked as for an inbound call to its number.
    let req = app.first_request("/far").await;
    req.assert_signed();
    req.assert_param("CallSid", &child);
    req.assert_param("To", &far);
    req.assert_param("Direction", "inbound");
    let leg = api.final_call(&child).await;
    assert_eq!(leg["parent_call_sid"], json!(call), "{leg}");
    assert_eq!(leg["direction"], json!("inbound"), "{leg}");
    assert_eq!(leg["status"], json!("completed"), "{leg}");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test]
async fn a_dial_that_rings_past_its_timeout_ends_no_answer() {
    // Five simulated seconds of ring against a two-second Dial timeout.
    let server = TestServer::start(|config| {
        config.sim.time_scale = 0.01;
        config.sim.ring_secs = 5.0;
    });
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/dial",
        &format!(
            r#"<Response><Dial timeout="2" action="/na"><Number>{UNANSWERED}</Number></Dial></Response>"#
        ),
    );
    app.twiml("/na", "<Response><Hangup/></Response>");
    let number = voice_number_other_than(&api, &app.url("/dial"), &[UNANSWERED]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,dial.*").await;
    let call = api.sim_call(CALLER, &number).await;

    let end = log.until_event("dial.end", Some(&call)).await;
    assert_eq!(
        end["data"]["dial_call_status"],
        json!("no-answer"),
        "dial.end: {end}"
    );
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "dial.start", "dial.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_ended(&log, &call, "completed");

    let na = app.first_request("/na").await;
    assert_eq!(na.method, "POST", "{}", na.summary());
    na.assert_signed();
    na.assert_param("CallSid", &call);
    na.assert_param("DialCallStatus", "no-answer");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test]
async fn a_parent_hangup_during_a_bridged_dial_ends_the_far_end_call_too() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    // 3000 simulated seconds: 30 s real, beyond every wait below.
    app.twiml("/hold", r#"<Response><Pause length="3000"/></Response>"#);
    let far = voice_number_other_than(&api, &app.url("/hold"), &[]).await;
    app.twiml(
        "/near",
        &format!("<Response><Dial><Number>{far}</Number></Dial></Response>"),
    );
    let near = voice_number_other_than(&api, &app.url("/near"), &[&far]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,dial.*").await;
    let call = api.sim_call(CALLER, &near).await;

    // Bridged: the far end has answered and sits in its Pause.
    let child = far_end_call(&mut log, &call, &far).await;
    api.sim_hangup(&call).await;
    log.until_event("call.end", Some(&call)).await;
    log.until_event("call.end", Some(&child)).await;
    assert_ended(&log, &call, "completed");
    assert_ended(&log, &child, "completed");

    let leg = api.final_call(&child).await;
    assert_eq!(leg["status"], json!("completed"), "{leg}");
    assert_eq!(leg["parent_call_sid"], json!(call), "{leg}");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test]
async fn a_parent_hangup_during_a_bridged_dial_ends_an_external_leg_too() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/dial",
        &format!("<Response><Dial><Number>{DIALLED}</Number></Dial></Response>"),
    );
    let number = voice_number_other_than(&api, &app.url("/dial"), &[DIALLED]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,dial.*").await;
    let call = api.sim_call(CALLER, &number).await;

    let leg = wait_child_leg(&api, &call, "in-progress").await;
    let child = leg["sid"].as_str().unwrap_or("").to_string();
    api.sim_hangup(&call).await;
    log.until_event("call.end", Some(&call)).await;
    log.until_event("call.end", Some(&child)).await;
    assert_ended(&log, &call, "completed");
    assert_ended(&log, &child, "completed");

    let leg = api.final_call(&child).await;
    assert_eq!(leg["status"], json!("completed"), "{leg}");
    assert_eq!(leg["direction"], json!("outbound-dial"), "{leg}");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

// ---------------------------------------------------------------------------
// 8. The allow-list keeps the router off hosts the operator did not list

#[tokio::test]
async fn the_allow_list_keeps_the_call_router_off_unlisted_hosts() {
    let server = TestServer::start(|config| {
        config.sim.time_scale = 0.01;
        config.webhook.allowed_hosts = vec!["localhost".into()];
    });
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);

    // Refused when given: the app's host as 127.0.0.1 is not listed.
    let number = fresh_number();
    let reply = api
        .post(
            "IncomingPhoneNumbers.json",
            &[("PhoneNumber", &number), ("VoiceUrl", &app.url("/voice"))],
        )
        .await;
    let message = assert_twilio_error(&reply, 400, 21205);
    assert!(message.contains("VoiceUrl"), "{message}");

    // Refused when a listed host's document points elsewhere.
    app.twiml(
        "/voice",
        &format!(
            "<Response><Redirect>{}</Redirect></Response>",
            app.url("/elsewhere")
        ),
    );
    let listed = app.url("/voice").replace("127.0.0.1", "localhost");
    let (log, call) = inbound_call_to_end(&server, &listed, "types=call.*").await;
    assert_failed_cleanly(&server, &log, &call, 11200).await;
    app.first_request("/voice").await.assert_signed();
    assert!(
        app.requests_to("/elsewhere").is_empty(),
        "the unlisted host was never requested"
    );
}
