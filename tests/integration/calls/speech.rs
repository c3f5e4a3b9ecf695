//! `<Gather input="speech">`: the simulated caller speaks through
//! `POST /v1/Sim/Calls/{CallSid}/Speech` and the application routes on its
//! `SpeechResult` (docs/api.md §7). One call is placed with Twilio's own Python
//! helper library; keys still answer a `dtmf speech` Gather, a DTMF-only Gather
//! does not hear speech, and bad Speech bodies are refused without effect.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::request;
use crate::common::twilio::{sim_server, Api, AppRequest, AppServer, EventLog, CALL_WAIT};
use crate::common::{Reply, TestServer};

use super::{CALLER, EXTERNAL};

/// The IVR's menu. `timeout` (simulated seconds, 10 s real here) leaves the test
/// time to speak; nothing waits it out.
const MENU: &str = r#"<Response><Gather input="speech dtmf" action="/route" timeout="1000" hints="billing, support" speechTimeout="auto"><Say>How can we help?</Say></Gather></Response>"#;

/// A call the menu routed: the Gather (its prompt inside), then the chosen
/// department's `Say` and `Hangup`.
const ROUTED: [&str; 8] = [
    "call.start",
    "gather.start",
    "say.start",
    "say.end",
    "gather.end",
    "say.start",
    "say.end",
    "call.end",
];

/// The stream every test reads.
const TYPES: &str = "types=call.*,gather.*,say.*";

/// An IVR app: `/voice` asks, `/route` answers "Billing" for speech about
/// billing or the key 1, "Support" otherwise.
fn contact_center(server: &TestServer) -> AppServer {
    let app = AppServer::start(server.token(0));
    app.twiml("/voice", MENU);
    app.route("/route", |req| {
        let billing = req
            .param("SpeechResult")
            .is_some_and(|said| said.to_lowercase().contains("billing"))
            || req.param("Digits") == Some("1");
        let department = if billing { "Billing" } else { "Support" };
        let twiml = format!("<Response><Say>{department}</Say><Hangup/></Response>");
        (200, "text/xml".to_owned(), twiml)
    });
    app
}

/// `POST /v1/Sim/Calls/{call}/Speech` with `body`.
async fn speak(api: &Api<'_>, call: &str, body: Value) -> Reply {
    api.sim(&format!("Calls/{call}/Speech"), &body).await
}

/// Reads until `call`'s Gather has played its prompt and listens.
async fn until_listening(log: &mut EventLog, call: &str) {
    log.until("the Gather's prompt", CALL_WAIT, |events| {
        let types: Vec<&Value> = events
            .iter()
            .filter(|ev| ev["call_sid"] == json!(call))
            .map(|ev| &ev["type"])
            .collect();
        types
            .iter()
            .position(|ty| *ty == "gather.start")
            .is_some_and(|i| types[i..].iter().any(|ty| *ty == "say.end"))
    })
    .await;
}

/// Asserts `call` ran [`ROUTED`] to `department`, its `gather.end` data being
/// `gather_end` beside `verb`; returns the app's `/route` request.
fn assert_routed(
    app: &AppServer,
    log: &EventLog,
    call: &str,
    gather_end: Value,
    department: &str,
) -> AppRequest {
    assert_eq!(log.types_of(call), ROUTED, "events:\n{}", log.dump());
    let events = log.of_call(call);
    let mut expected = gather_end;
    expected["verb"] = json!("Gather");
    assert_eq!(events[4]["data"], expected, "gather.end: {}", events[4]);
    assert_eq!(
        events[5]["data"]["text"],
        json!(department),
        "{}",
        events[5]
    );
    assert_eq!(
        events[7]["data"]["status"],
        json!("completed"),
        "{}",
        events[7]
    );
    let routes: Vec<AppRequest> = app
        .requests_to("/route")
        .into_iter()
        .filter(|req| req.param("CallSid") == Some(call))
        .collect();
    assert_eq!(routes.len(), 1, "one /route request for {call}");
    let route = routes[0].clone();
    route.assert_signed();
    assert_eq!(route.method, "POST", "{}", route.summary());
    route
}

#[tokio::test]
async fn a_call_placed_with_twilio_python_is_routed_on_what_the_caller_said() {
    let server = sim_server();
    let app = contact_center(&server);
    let api = Api::new(&server, 0);
    let mut log = EventLog::open(&server, 0, TYPES).await;

    let placed = api
        .twilio_python(
            "call = client.calls.create(to=os.environ['TO'], from_=os.environ['FROM'], url=os.environ['URL'])\nprint(json.dumps(call.sid))",
            &[("TO", EXTERNAL), ("FROM", CALLER), ("URL", &app.url("/voice"))],
        )
        .await;
    let Some(placed) = placed else { return };
    let call = placed.as_str().unwrap_or_default().to_owned();

    until_listening(&mut log, &call).await;
    let reply = speak(
        &api,
        &call,
        json!({"text": "Billing, please", "confidence": 0.92}),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "call_sid": call }));
    log.until_event("call.end", Some(&call)).await;

    let route = assert_routed(
        &app,
        &log,
        &call,
        json!({"speech_result": "Billing, please", "confidence": 0.92}),
        "Billing",
    );
    route.assert_param("SpeechResult", "Billing, please");
    route.assert_param("Confidence", "0.92");
    route.assert_param("Direction", "outbound-api");
    assert_eq!(route.param("Digits"), None, "{}", route.summary());
    let resource = api.final_call(&call).await;
    assert_eq!(resource["status"], json!("completed"), "{resource}");
}

#[tokio::test]
async fn bad_speech_is_refused_naming_the_field_and_changes_nothing() {
    let server = sim_server();
    let app = contact_center(&server);
    let api = Api::new(&server, 0);
    let number = api.voice_number(&app.url("/voice")).await;
    let mut log = EventLog::open(&server, 0, TYPES).await;
    let call = api.sim_call(CALLER, &number).await;
    until_listening(&mut log, &call).await;

    let long = "a".repeat(1025);
    let refused: [(Value, &str, &str); 9] = [
        (json!({"text": ""}), "invalid_parameter", "text: "),
        (json!({"text": "  "}), "invalid_parameter", "text: "),
        (json!({ "text": long }), "invalid_parameter", "text: "),
        (
            json!({"text": "bill\u{7}ing"}),
            "invalid_parameter",
            "text: ",
        ),
        (
            json!({"text": "billing", "confidence": 1.5}),
            "invalid_parameter",
            "confidence: ",
        ),
        (
            json!({"text": "billing", "confidence": -0.1}),
            "invalid_parameter",
            "confidence: ",
        ),
        (json!({"confidence": 0.5}), "invalid_json", "body: "),
        (
            json!({"text": "billing", "confidence": "high"}),
            "invalid_json",
            "body: ",
        ),
        (
            json!({"text": "billing", "language": "en-US"}),
            "invalid_json",
            "body: ",
        ),
    ];
    for (body, code, field) in refused {
        let reply = speak(&api, &call, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let error = reply.json();
        assert_eq!(error["code"], json!(code), "{body}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{body}: {error}");
    }
    let not_json = request(
        &server,
        Method::POST,
        &format!("/v1/Sim/Calls/{call}/Speech"),
        server.creds(0),
        Some(("application/json", "billing".to_owned())),
    )
    .await;
    assert_eq!(not_json.status, 400, "{}", not_json.text());
    assert_eq!(not_json.json()["code"], json!("invalid_json"));
    // Another account's call, or none, is not found.
    let said = json!({"text": "billing"});
    let unknown = speak(&api, &format!("CA{}", "0".repeat(32)), said.clone()).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let other = speak(&Api::new(&server, 1), &call, said).await;
    assert_eq!(other.status, 404, "{}", other.text());
    assert_eq!(other.json()["code"], json!("not_found"));

    // The Gather still listens; speech without a confidence gets 0.9.
    let reply = speak(&api, &call, json!({"text": "I need support"})).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    log.until_event("call.end", Some(&call)).await;
    let route = assert_routed(
        &app,
        &log,
        &call,
        json!({"speech_result": "I need support", "confidence": 0.9}),
        "Support",
    );
    route.assert_param("SpeechResult", "I need support");
    route.assert_param("Confidence", "0.9");

    // An ended call hears nothing: 400 as for keys.
    let late = speak(&api, &call, json!({"text": "hello?"})).await;
    assert_eq!(late.status, 400, "{}", late.text());
    assert_eq!(late.json()["code"], json!("invalid_parameter"));
}

#[tokio::test]
async fn keys_still_answer_a_dtmf_speech_gather() {
    let server = sim_server();
    let app = contact_center(&server);
    let api = Api::new(&server, 0);
    let number = api.voice_number(&app.url("/voice")).await;
    let mut log = EventLog::open(&server, 0, TYPES).await;
    let call = api.sim_call(CALLER, &number).await;
    until_listening(&mut log, &call).await;

    api.sim_digits(&call, "1#").await;
    // Keys came first: the caller's speech after them is not heard.
    let reply = speak(&api, &call, json!({"text": "support"})).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    log.until_event("call.end", Some(&call)).await;

    let route = assert_routed(&app, &log, &call, json!({"digits": "1"}), "Billing");
    route.assert_param("Digits", "1");
    for absent in ["SpeechResult", "Confidence"] {
        assert_eq!(route.param(absent), None, "{}", route.summary());
    }
}

#[tokio::test]
async fn a_dtmf_only_gather_does_not_hear_speech() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.twiml(
        "/voice",
        r#"<Response><Gather action="/pressed" timeout="1000"><Say>Press one</Say></Gather><Say>Goodbye</Say></Response>"#,
    );
    app.twiml("/pressed", "<Response><Hangup/></Response>");
    let api = Api::new(&server, 0);
    let number = api.voice_number(&app.url("/voice")).await;
    let mut log = EventLog::open(&server, 0, TYPES).await;
    let call = api.sim_call(CALLER, &number).await;
    until_listening(&mut log, &call).await;

    // Accepted, as keys are, but nobody listens for it: the Gather goes on
    // waiting until the key.
    let reply = speak(&api, &call, json!({"text": "one", "confidence": 1.0})).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    api.sim_digits(&call, "1#").await;
    log.until_event("call.end", Some(&call)).await;

    assert_eq!(
        log.types_of(&call),
        [
            "call.start",
            "gather.start",
            "say.start",
            "say.end",
            "gather.end",
            "call.end"
        ],
        "events:\n{}",
        log.dump()
    );
    let gather_end = &log.of_call(&call)[4];
    assert_eq!(
        gather_end["data"],
        json!({"verb": "Gather", "digits": "1"}),
        "{gather_end}"
    );
    let pressed = app.first_request("/pressed").await;
    pressed.assert_signed();
    pressed.assert_param("Digits", "1");
    assert_eq!(pressed.param("SpeechResult"), None, "{}", pressed.summary());
}
