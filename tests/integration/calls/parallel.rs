//! `<Dial>` with several nouns rung at once (docs/api.md §7): the first leg to
//! answer wins and the others are cancelled, each leg with its own CallSid and
//! events; `callerId`, `timeLimit` and `record` on the bridged leg. A leg to a
//! number of the same account answers when its application answers, so a slow
//! application loses to a quick one.

use std::time::Duration;

use serde_json::json;

use crate::common::twilio::{fresh_number, sim_server, Api, AppServer, EventLog};

use super::{child_legs, sim_seconds, CALLER};

/// The caller ID the Dials present.
const PRESENTED: &str = "+15005550006";

/// The sid of the first event of type `ty` whose data has `key` = `value`.
fn sid_of(log: &EventLog, ty: &str, key: &str, value: &str) -> String {
    log.of_type(ty)
        .into_iter()
        .find(|ev| ev["data"][key] == json!(value))
        .and_then(|ev| ev["call_sid"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no {ty} with {key}={value}:\n{}", log.dump()))
}

#[tokio::test]
async fn the_second_number_answering_first_wins_and_the_first_is_cancelled() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    // The first number's application takes two real seconds to answer (its own
    // server, so the other's requests are not held up behind it).
    let slow = AppServer::start(server.token(0));
    slow.route("/slow", |_| {
        std::thread::sleep(Duration::from_secs(2));
        (
            200,
            "text/xml".to_owned(),
            "<Response><Say>too late</Say></Response>".to_owned(),
        )
    });
    app.twiml(
        "/quick",
        r#"<Response><Say>Agent here</Say><Pause length="1000"/></Response>"#,
    );
    let api = Api::new(&server, 0);
    let first = fresh_number();
    api.provision(&first, &[("VoiceUrl", &slow.url("/slow"))])
        .await;
    let second = api.voice_number(&app.url("/quick")).await;
    app.twiml(
        "/dial",
        &format!(
            r#"<Response><Dial action="/dialed" callerId="{PRESENTED}" record="record-from-answer"><Number>{first}</Number><Number>{second}</Number></Dial></Response>"#
        ),
    );
    app.twiml("/dialed", "<Response><Hangup/></Response>");
    let mut log = EventLog::open(&server, 0, "types=call.*,dial.*").await;

    // The parent call is placed through Twilio's helper library.
    let Some(placed) = api
        .twilio_python(
            "call = client.calls.create(to=os.environ['TO'], from_=os.environ['FROM'], url=os.environ['URL'])\n\
             print(json.dumps(call.sid))",
            &[("TO", "+16505550199"), ("FROM", CALLER), ("URL", &app.url("/dial"))],
        )
        .await
    else {
        return;
    };
    let parent = placed.as_str().unwrap_or_default().to_owned();
    let start = log.until_event("dial.start", Some(&parent)).await;
    assert_eq!(start["data"]["to"], json!(first), "{start}");
    assert_eq!(start["data"]["numbers"], json!([first, second]), "{start}");

    // The second answers; the first, still waiting for its application, is
    // cancelled and never answers.
    log.until("both legs", Duration::from_secs(10), |events| {
        events
            .iter()
            .filter(|ev| {
                ev["type"] == json!("call.end") && ev["data"]["status"] == json!("canceled")
            })
            .count()
            == 1
            && events
                .iter()
                .any(|ev| ev["type"] == json!("call.start") && ev["data"]["to"] == json!(second))
    })
    .await;
    let winner = sid_of(&log, "call.start", "to", &second);
    let loser = sid_of(&log, "call.end", "status", "canceled");
    assert_ne!(winner, loser);
    assert_eq!(log.types_of(&loser), ["call.end"], "{}", log.dump());
    let quick = app.first_request("/quick").await;
    quick.assert_param("CallSid", &winner);
    quick.assert_param("From", PRESENTED);
    quick.assert_param("ParentCallSid", &parent);

    // The winner hangs up: the Dial ends and its action says who answered.
    api.sim_hangup(&winner).await;
    let end = log.until_event("dial.end", Some(&parent)).await;
    assert_eq!(end["data"]["dial_call_status"], json!("completed"), "{end}");
    assert_eq!(end["data"]["dial_call_sid"], json!(winner), "{end}");
    let dialed = app.first_request("/dialed").await;
    dialed.assert_signed();
    dialed.assert_param("DialCallStatus", "completed");
    dialed.assert_param("DialCallSid", &winner);
    let recording = dialed.param("RecordingUrl").unwrap_or_default();
    assert!(recording.contains("/Recordings/RE"), "{}", dialed.summary());
    assert_eq!(end["data"]["recording_url"], json!(recording), "{end}");
    log.until_event("call.end", Some(&parent)).await;
    assert_eq!(
        log.types_of(&parent),
        ["call.start", "dial.start", "dial.end", "call.end"],
        "{}",
        log.dump()
    );

    // Each leg is its own call in the REST API, read back with the helper library.
    let Some(statuses) = api
        .twilio_python(
            "print(json.dumps([[c.status, c.parent_call_sid, c._from, c.to] for c in \
             (client.calls(os.environ['WINNER']).fetch(), client.calls(os.environ['LOSER']).fetch())]))",
            &[("WINNER", &winner), ("LOSER", &loser)],
        )
        .await
    else {
        return;
    };
    assert_eq!(
        statuses,
        json!([
            ["completed", parent, PRESENTED, second],
            ["canceled", parent, PRESENTED, first]
        ])
    );
    assert_eq!(child_legs(&api, &parent).await.len(), 2);
}

#[tokio::test]
async fn a_dial_whose_numbers_are_all_busy_is_busy_and_a_time_limit_ends_the_bridge() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/busy", r#"<Response><Reject reason="busy"/></Response>"#);
    let busy = [
        api.voice_number(&app.url("/busy")).await,
        api.voice_number(&app.url("/busy")).await,
    ];
    app.twiml(
        "/dial-busy",
        &format!(
            r#"<Response><Dial action="/after"><Number>{}</Number><Client>{}</Client></Dial></Response>"#,
            busy[0], busy[1]
        ),
    );
    // 30 simulated seconds on the line, then the limit hangs the leg up.
    app.twiml(
        "/dial-limited",
        r#"<Response><Dial action="/after" timeLimit="30"><Number>+16505550142</Number></Dial></Response>"#,
    );
    app.twiml("/after", "<Response><Hangup/></Response>");
    let busy_caller = api.voice_number(&app.url("/dial-busy")).await;
    let limited_caller = api.voice_number(&app.url("/dial-limited")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,dial.*").await;

    let call = api.sim_call(CALLER, &busy_caller).await;
    let end = log.until_event("dial.end", Some(&call)).await;
    assert_eq!(end["data"]["dial_call_status"], json!("busy"), "{end}");
    log.until_event("call.end", Some(&call)).await;
    let legs = child_legs(&api, &call).await;
    assert_eq!(legs.len(), 2, "{legs:?}");
    for leg in &legs {
        assert_eq!(leg["status"], json!("busy"), "{leg}");
        let sid = leg["sid"].as_str().unwrap_or_default();
        log.until_event("call.end", Some(sid)).await;
        assert_eq!(
            log.types_of(sid),
            ["call.end"],
            "never answered: {}",
            log.dump()
        );
    }
    let after = app.first_request("/after").await;
    after.assert_param("DialCallStatus", "busy");
    assert_eq!(after.param("DialCallSid"), None, "{}", after.summary());

    let call = api.sim_call(CALLER, &limited_caller).await;
    let end = log.until_event("dial.end", Some(&call)).await;
    assert_eq!(end["data"]["dial_call_status"], json!("completed"), "{end}");
    let duration = sim_seconds(&end["data"]["duration"]);
    assert!(duration >= 30.0, "the limit cut the bridge at 30 s: {end}");
    let legs = child_legs(&api, &call).await;
    assert_eq!(legs.len(), 1, "{legs:?}");
    assert_eq!(legs[0]["status"], json!("completed"), "{}", legs[0]);
    log.until_event("call.end", Some(&call)).await;
}
