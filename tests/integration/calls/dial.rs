//! `Record` and `Dial`: recordings posted to their action, child legs to
//! external numbers and to the same account's numbers, no-answer, and hang-ups
//! that end both legs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::twilio::{
    assert_sid, fresh_number, sim_server, Api, AppServer, EventLog, CALL_WAIT,
};
use crate::common::{TestServer, WAIT};

use super::{child_legs, sim_seconds, CALLER};

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
    // The leg rang itself and gave up at the timeout, never answered.
    let leg = wait_child_leg(&api, &call, "no-answer").await;
    assert_eq!(leg["to"], json!(UNANSWERED), "{leg}");
    let leg_sid = leg["sid"].as_str().unwrap_or_default();
    log.until_event("call.end", Some(leg_sid)).await;
    assert_eq!(log.types_of(leg_sid), ["call.end"], "{}", log.dump());
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
