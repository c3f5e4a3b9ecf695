//! Client events over HTTP (docs/api.md §6, docs/design.md "Client events"):
//! `POST /v1/Accounts/{sid}/ClientEvents` with a signed URL or Basic auth,
//! the sender stamped in `data.client`, refusals, and the
//! `switchboard_client_events_total{via="http"}` counter.

use reqwest::Method;
use serde_json::json;

use crate::common::channels::{
    allow_origin, eventually_metrics, post_client_event, preflight, request, scrape,
};
use crate::common::{new_call_sid, sign, TestServer, WAIT};

fn client_events_path(server: &TestServer, account: usize, query: &str) -> String {
    let path = format!("/v1/Accounts/{}/ClientEvents", server.sid(account));
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

fn http_counter(scrape: &crate::common::scrape::Scrape) -> f64 {
    scrape.value("switchboard_client_events_total", &[("via", "http")])
}

#[tokio::test]
async fn a_signed_client_event_reaches_client_subscribers_with_the_sender_stamped() {
    let server = TestServer::start(|_| {});
    let (mut sse, _) = server.stream_basic(0, "types=client.*").await;
    let (mut calls_only, _) = server.stream_basic(0, "types=call.*").await;
    let call = new_call_sid();
    let signed = sign(
        server.token(0),
        &client_events_path(&server, 0, "client=browser1"),
    );
    let reply = post_client_event(
        &server,
        &signed,
        None,
        &json!({"type": "client.note", "call_sid": call, "data": {"x": 1, "client": "someone-else"}}),
    )
    .await;
    let ids = reply.accepted(1);

    let ev = sse
        .next_event(WAIT)
        .await
        .unwrap_or_else(|err| panic!("client.note on the client.* stream: {err}"));
    assert_eq!(ev.data["id"], json!(ids[0]));
    assert_eq!(ev.ty(), "client.note");
    assert_eq!(ev.data["account_sid"], json!(server.sid(0)));
    assert_eq!(ev.data["call_sid"], json!(call));
    assert_eq!(ev.data["data"]["x"], json!(1));
    assert_eq!(
        ev.data["data"]["client"],
        json!("browser1"),
        "the sender overwrites a given data.client"
    );

    // A call.* subscriber does not get it (the next thing it sees is a call event).
    let marker = server
        .publish(
            0,
            &crate::common::event("call.end", Some(&call), json!({"n": "end"})),
        )
        .await;
    let got = calls_only.until_marker("end", WAIT).await;
    assert_eq!(got.len(), 1, "only the call event: {got:?}");
    assert_eq!(got[0].data["id"], json!(marker[0]));
}

#[tokio::test]
async fn basic_auth_needs_a_client_parameter() {
    let server = TestServer::start(|_| {});
    let (mut sse, _) = server.stream_basic(0, "types=client.*").await;

    let reply = post_client_event(
        &server,
        &client_events_path(&server, 0, "client=srv-1"),
        server.creds(0),
        &json!({"type": "client.hangup"}),
    )
    .await;
    let ids = reply.accepted(1);
    let ev = sse.next_event(WAIT).await.expect("client.hangup delivered");
    assert_eq!(ev.data["id"], json!(ids[0]));
    assert_eq!(ev.data["data"]["client"], json!("srv-1"));

    let message = post_client_event(
        &server,
        &client_events_path(&server, 0, ""),
        server.creds(0),
        &json!({"type": "client.hangup"}),
    )
    .await
    .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("client"), "message {message:?}");

    let message = post_client_event(
        &server,
        &client_events_path(&server, 0, "client=a.b"),
        server.creds(0),
        &json!({"type": "client.hangup"}),
    )
    .await
    .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("client"), "message {message:?}");
}

#[tokio::test]
async fn refusals_and_the_counter() {
    let server = TestServer::start(|_| {});
    let before = http_counter(&scrape(&server).await);
    let basic = client_events_path(&server, 0, "client=c1");

    // Accepted: 2.
    post_client_event(
        &server,
        &basic,
        server.creds(0),
        &json!({"type": "client.unmute"}),
    )
    .await
    .accepted(1);
    let signed = sign(
        server.token(0),
        &client_events_path(&server, 0, "client=c2"),
    );
    post_client_event(
        &server,
        &signed,
        None,
        &json!({"type": "client.note", "data": {"url": "http://app.example/x"}}),
    )
    .await
    .accepted(1);

    // Refused: a type outside client.*.
    let message = post_client_event(
        &server,
        &basic,
        server.creds(0),
        &json!({"type": "call.start"}),
    )
    .await
    .assert_error(400, "invalid_event");
    assert!(message.starts_with("events[0].type"), "message {message:?}");
    let message = post_client_event(&server, &signed, None, &json!({"type": "stream.open"}))
        .await
        .assert_error(400, "invalid_event");
    assert!(message.starts_with("events[0].type"), "message {message:?}");
    // Not JSON; an invalid type name.
    let reply = request(
        &server,
        Method::POST,
        &basic,
        server.creds(0),
        Some(("application/json", "{not json".to_string())),
    )
    .await;
    reply.assert_error(400, "invalid_json");
    post_client_event(
        &server,
        &basic,
        server.creds(0),
        &json!({"type": "client.Bad"}),
    )
    .await
    .assert_error(400, "invalid_event");

    // Authentication: none, wrong token, tampered signature, other account.
    let reply = post_client_event(&server, &basic, None, &json!({"type": "client.x"})).await;
    assert_eq!(reply.status, 401, "no credentials: {}", reply.text());
    post_client_event(
        &server,
        &basic,
        Some((server.sid(0), "wrong")),
        &json!({"type": "client.x"}),
    )
    .await
    .assert_error(401, "unauthorized");
    let tampered = signed.replace("client=c2", "client=c3");
    let reply = post_client_event(&server, &tampered, None, &json!({"type": "client.x"})).await;
    assert_eq!(reply.status, 401, "tampered signature: {}", reply.text());
    post_client_event(
        &server,
        &basic,
        server.creds(1),
        &json!({"type": "client.x"}),
    )
    .await
    .assert_error(403, "forbidden");

    eventually_metrics(&server, "client_events_total{via=http} moved by 2", |s| {
        http_counter(s) == before + 2.0
    })
    .await;
    // And stays there: no refused request is counted late.
    let after = http_counter(&scrape(&server).await);
    assert_eq!(after, before + 2.0);
}

#[tokio::test]
async fn a_signed_url_without_client_is_400_naming_client() {
    let server = TestServer::start(|_| {});
    let signed = sign(server.token(0), &client_events_path(&server, 0, ""));
    let message = post_client_event(&server, &signed, None, &json!({"type": "client.x"}))
        .await
        .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("client"), "message {message:?}");
}

#[tokio::test]
async fn cors_follows_the_configured_origins() {
    let server = TestServer::start(|c| {
        c.cors.allowed_origins = vec!["https://good.example".to_string()];
    });
    let path = client_events_path(&server, 0, "client=b1");
    let reply = preflight(&server, &path, "https://good.example", "POST").await;
    assert!(
        (200..300).contains(&reply.status),
        "preflight from an allowed origin answered {}: {}",
        reply.status,
        reply.text()
    );
    assert_eq!(
        allow_origin(&reply).as_deref(),
        Some("https://good.example")
    );
    let reply = preflight(&server, &path, "https://evil.example", "POST").await;
    let allowed = allow_origin(&reply);
    assert!(
        !matches!(allowed.as_deref(), Some("*") | Some("https://evil.example")),
        "an unlisted origin was allowed: {allowed:?} ({} {})",
        reply.status,
        reply.text()
    );
    assert!(reply.status < 500, "preflight answered {}", reply.status);
}

#[tokio::test]
async fn only_one_event_object_is_accepted() {
    let server = TestServer::start(|_| {});
    let basic = client_events_path(&server, 0, "client=c1");
    // Two events: refused, as a malformed body or as a batch over the limit
    // of one (the publish endpoint's `payload_too_large`).
    let reply = post_client_event(
        &server,
        &basic,
        server.creds(0),
        &json!([{"type": "client.a"}, {"type": "client.b"}]),
    )
    .await;
    assert!(
        reply.status == 400 || reply.status == 413,
        "two events: {} {}",
        reply.status,
        reply.text()
    );
    reply.assert_error_shape(&["invalid_json", "invalid_event", "payload_too_large"]);
    for body in [
        json!("client.a"),
        json!({"type": "client.a", "data": "not an object"}),
        json!({"type": "client.a", "bogus": 1}),
    ] {
        let reply = post_client_event(&server, &basic, server.creds(0), &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        reply.assert_error_shape(&["invalid_json", "invalid_event"]);
    }
}
