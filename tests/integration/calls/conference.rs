//! A conference of three, muted and unmuted by client events.

use std::collections::BTreeSet;

use serde_json::json;

use crate::common::twilio::{sim_server, Api, AppServer, EventLog};

use super::pos;

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
