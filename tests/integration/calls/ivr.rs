//! A full IVR: an inbound call runs the app's TwiML (Say, Gather, Play, Hangup)
//! with every webhook signed, for POST and GET voice URLs.

use serde_json::{json, Value};

use crate::common::twilio::{
    fresh_number, sim_server, Api, AppServer, EventLog, API_VERSION, CALL_WAIT,
};

use super::{assert_rfc2822, sim_seconds, CALLER};

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
