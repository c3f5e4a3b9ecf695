//! Failure modes: each ends the call cleanly or, for a warning, lets it go on;
//! and the allow-list keeps the call router off hosts the operator did not list.

use serde_json::{json, Value};

use crate::common::twilio::{
    assert_twilio_error, fresh_number, sim_server, Api, AppServer, EventLog,
};
use crate::common::{free_port, TestServer};

use super::{assert_failed_cleanly, inbound_call_to_end, pos, sim_seconds, CALLER};

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
