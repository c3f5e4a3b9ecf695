//! The call router publishing to a remote event router (docs/api.md §7, last paragraph):
//! one server runs the calls, another routes their events, over the §3 endpoint.

use serde_json::Value;

use crate::common::{http_client, TestServer, WAIT};

#[tokio::test]
async fn call_events_reach_a_remote_event_router_in_order() {
    let events = TestServer::start(|_| {});
    let accounts = events.accounts.clone();
    let base = events.base_url();
    let calls = TestServer::start(move |c| {
        c.accounts = accounts
            .iter()
            .map(|(sid, token)| switchboard::config::AccountConfig {
                sid: sid.clone(),
                auth_token: token.clone(),
            })
            .collect();
        c.call_router.publish_url = base;
        c.sim.time_scale = 0.01;
    });
    let (sid, token) = (events.sid(0).to_owned(), events.token(0).to_owned());
    let (mut stream, _) = events.stream_basic(0, "types=call.*,say.*").await;
    // The calling server knows the accounts by the same credentials (its own
    // generated ones were replaced).
    let (mut local, _) = calls
        .stream(
            &format!("/v1/Accounts/{sid}/Stream?types=call.*,say.*"),
            Some((&sid, &token)),
        )
        .await;

    let reply = http_client()
        .post(format!(
            "{}/2010-04-01/Accounts/{sid}/Calls.json",
            calls.base_url()
        ))
        .basic_auth(&sid, Some(&token))
        .form(&[
            ("To", "+14155550199"),
            ("From", "+14155550100"),
            ("Twiml", "<Response><Say>remote hello</Say></Response>"),
        ])
        .send()
        .await
        .expect("place call");
    assert_eq!(reply.status(), 201);
    let call: Value = reply.json().await.expect("call JSON");
    let call_sid = call["sid"].as_str().expect("sid").to_owned();

    let got = stream
        .collect_until(|ev| ev.ty() == "call.end", WAIT)
        .await
        .expect("the remote router receives the call's events");
    let types: Vec<&str> = got
        .iter()
        .filter(|ev| ev.data["call_sid"] == call_sid.as_str())
        .map(|ev| ev.ty())
        .collect();
    assert_eq!(types, ["call.start", "say.start", "say.end", "call.end"]);
    assert!(got.iter().all(|ev| ev.data["account_sid"] == sid.as_str()));

    // Nothing was published into the calling server's own router: a publish there
    // is the first thing its stream sees.
    let marker = calls
        .post_events(
            &sid,
            Some((&sid, &token)),
            Some("application/json"),
            r#"{"type": "call.marker"}"#.to_string(),
        )
        .await;
    assert_eq!(marker.status, 202);
    let first = local.next_event(WAIT).await.expect("the marker");
    assert_eq!(first.ty(), "call.marker");
}
