//! A held conference (`startConferenceOnEnter="false"` with a `waitUrl`) that
//! starts when the moderator joins and ends when the moderator leaves.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::twilio::{sim_server, Api, AppServer, EventLog};

const ROOM: &str = "held-room";
/// Bounds every wait for the application's requests.
const WITHIN: Duration = Duration::from_secs(10);

/// The `conference.*` and `call.*` types of one call, in order: what a held
/// participant's wait document says (`say.*`) left out.
fn room_types(log: &EventLog, call: &str) -> Vec<String> {
    log.types_of(call)
        .into_iter()
        .filter(|t| t.starts_with("conference.") || t.starts_with("call."))
        .collect()
}

#[tokio::test]
async fn a_held_conference_starts_when_the_moderator_joins() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/held",
        &format!(
            r#"<Response><Dial><Conference startConferenceOnEnter="false" waitUrl="/wait">{ROOM}</Conference></Dial></Response>"#
        ),
    );
    app.twiml(
        "/wait",
        r#"<Response><Say>Please hold</Say><Pause length="5"/></Response>"#,
    );
    app.twiml(
        "/moderator",
        &format!(
            r#"<Response><Dial><Conference endConferenceOnExit="true" beep="false">{ROOM}</Conference></Dial></Response>"#
        ),
    );
    let held_number = api.voice_number(&app.url("/held")).await;
    let moderator_number = api.voice_number(&app.url("/moderator")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,conference.*,say.*").await;

    let held = [
        api.sim_call("+14155550111", &held_number).await,
        api.sim_call("+14155550112", &held_number).await,
    ];
    log.until_count("conference.join", None, 2).await;
    for call in &held {
        let join = log.one_of("conference.join", call);
        assert_eq!(join["data"]["conference"], json!(ROOM), "{join}");
        assert_eq!(join["data"]["status"], json!("held"), "{join}");
        assert_eq!(join["data"]["beep"], json!(true), "default beep: {join}");
        assert_eq!(join["data"]["muted"], json!(false), "{join}");
    }

    // Each held call requests its wait document, signed, again each time it ends.
    let mut waits = app.wait_requests("/wait", 6, WITHIN).await;
    while held.iter().any(|call| {
        waits
            .iter()
            .filter(|r| r.param("CallSid") == Some(call))
            .count()
            < 2
    }) {
        waits = app.wait_requests("/wait", waits.len() + 1, WITHIN).await;
    }
    for request in &waits {
        request.assert_signed();
        assert_eq!(request.method, "POST", "{}", request.summary());
        request.assert_param("AccountSid", api.sid());
        request.assert_param("CallStatus", "in-progress");
    }
    for call in &held {
        log.until_event("say.start", Some(call)).await;
    }

    // A held participant can be muted.
    api.client_event("ops", &json!({"type": "client.mute", "call_sid": held[0]}))
        .await;
    let mute = log.until_event("conference.mute", Some(&held[0])).await;
    assert_eq!(mute["data"]["muted"], json!(true), "{mute}");

    let moderator = api.sim_call("+14155550119", &moderator_number).await;
    let start = log.until_event("conference.join", Some(&moderator)).await;
    assert_eq!(start["data"]["status"], json!("started"), "{start}");
    assert_eq!(start["data"]["beep"], json!(false), "beep=false: {start}");

    // The wait documents stop: at most the request already under way when the
    // room started arrives after it, then none.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_start = app.requests_to("/wait").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.requests_to("/wait").len(),
        after_start,
        "/wait requested after the room started"
    );
    assert!(
        app.requests_to("/wait")
            .iter()
            .all(|r| r.param("CallSid") != Some(&moderator)),
        "the moderator is never held"
    );

    api.sim_hangup(&moderator).await;
    log.until_count("call.end", None, 3).await;
    for call in &held {
        let leave = log.one_of("conference.leave", call);
        assert_eq!(leave["data"]["beep"], json!(true), "{leave}");
        let done = api.final_call(call).await;
        assert_eq!(done["status"], json!("completed"), "{done}");
    }
    let leave = log.one_of("conference.leave", &moderator);
    assert_eq!(leave["data"]["beep"], json!(false), "{leave}");

    assert_eq!(
        room_types(&log, &held[0]),
        [
            "call.start",
            "conference.join",
            "conference.mute",
            "conference.leave",
            "call.end"
        ],
        "{}",
        log.dump()
    );
    for call in [&held[1], &moderator] {
        assert_eq!(
            room_types(&log, call),
            [
                "call.start",
                "conference.join",
                "conference.leave",
                "call.end"
            ],
            "{}",
            log.dump()
        );
    }
    // Both held joins come before the join that starts the room.
    let joins: Vec<Value> = log.of_type("conference.join");
    let statuses: Vec<&Value> = joins.iter().map(|j| &j["data"]["status"]).collect();
    assert_eq!(
        statuses,
        [&json!("held"), &json!("held"), &json!("started")]
    );
    assert!(log
        .of_call(&moderator)
        .iter()
        .all(|ev| ev["type"] != json!("say.start")));
}

#[tokio::test]
async fn a_held_participant_skips_other_verbs_of_its_wait_document_and_can_hang_up() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/held",
        r#"<Response><Dial><Conference startConferenceOnEnter="false" waitUrl="/wait" waitMethod="GET">alone</Conference></Dial></Response>"#,
    );
    // `Hangup` may not be in a wait document: skipped, the call stays held.
    app.twiml(
        "/wait",
        r#"<Response><Hangup/><Pause length="5"/></Response>"#,
    );
    let number = api.voice_number(&app.url("/held")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,conference.*").await;

    let call = api.sim_call("+14155550121", &number).await;
    let waits = app.wait_requests("/wait", 2, WITHIN).await;
    for request in &waits {
        request.assert_signed();
        assert_eq!(request.method, "GET", "{}", request.summary());
        request.assert_param("CallSid", &call);
    }
    let warning = log.until_event("call.warning", Some(&call)).await;
    assert_eq!(warning["data"]["error_code"], json!(12200), "{warning}");

    api.sim_hangup(&call).await;
    log.until_event("call.end", Some(&call)).await;
    let types: Vec<String> = room_types(&log, &call)
        .into_iter()
        .filter(|t| t != "call.warning")
        .collect();
    assert_eq!(
        types,
        [
            "call.start",
            "conference.join",
            "conference.leave",
            "call.end"
        ],
        "{}",
        log.dump()
    );
    assert_eq!(
        log.one_of("conference.join", &call)["data"]["status"],
        json!("held")
    );
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}
