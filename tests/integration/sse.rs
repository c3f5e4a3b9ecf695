//! The SSE transport of `GET /v1/Accounts/{sid}/Stream` (docs/api.md §4): the
//! `stream.open` notice, unbuffered delivery, heartbeats, expiry of signed
//! streams, Basic-auth streams and the `client` / `transport` parameters.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    assert_timestamp, event, new_call_sid, now_secs, open_subscription_sids, pct, sign,
    sign_with_expires, string_list, unknown_account_sid, SseError, SseFrame, TestServer, WAIT,
};

/// The `where` clauses of a listed subscription as `field op value` text
/// without blanks, whether listed as strings or as `{field, op, value}`.
fn where_list(value: &serde_json::Value) -> Vec<String> {
    let items = match value {
        serde_json::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    items
        .iter()
        .map(|item| match item {
            serde_json::Value::String(s) => s.replace(' ', ""),
            serde_json::Value::Object(o) => {
                let part = |k: &str| match &o.get(k) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                format!("{}{}{}", part("field"), part("op"), part("value"))
            }
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn stream_open_comes_first_and_lists_the_urls_subscription() {
    let server = TestServer::start(|_| {});
    let expires = now_secs() + 600;
    let pq = sign_with_expires(
        server.token(0),
        &format!(
            "{}?client=panel-1&types=call.*,gather.end&where=data.duration%3E60&where=call_sid=CA1&scopes=sup,ops",
            server.stream_path(0)
        ),
        expires,
    );
    let (_stream, open) = server.stream_signed(&pq).await;

    let envelope = open.data.as_object().expect("stream.open is an object");
    assert_eq!(open.data["type"], json!("stream.open"));
    assert_eq!(open.data["account_sid"], json!(server.sid(0)));
    assert!(
        envelope
            .get("id")
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty()),
        "id in {}",
        open.data
    );
    assert_timestamp(open.data["timestamp"].as_str().unwrap_or(""));
    assert_eq!(open.data["data"]["client"], json!("panel-1"));

    let subs = open.data["data"]["subscriptions"]
        .as_array()
        .expect("data.subscriptions array");
    assert_eq!(
        subs.len(),
        1,
        "exactly the URL's subscription: {}",
        open.data
    );
    let sub = &subs[0];
    assert!(
        sub["sid"].as_str().is_some_and(|s| s.starts_with("SU")),
        "sid in {sub}"
    );
    let mut types = string_list(&sub["types"]);
    types.sort();
    assert_eq!(types, ["call.*", "gather.end"], "types in {sub}");
    let mut wheres = where_list(&sub["where"]);
    wheres.sort();
    assert_eq!(
        wheres,
        ["call_sid=CA1", "data.duration>60"],
        "where in {sub}"
    );
    let mut scopes = string_list(&sub["scopes"]);
    scopes.sort();
    assert_eq!(scopes, ["ops", "sup"], "scopes in {sub}");
    let sub_expires = match &sub["expires"] {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    assert_eq!(sub_expires, Some(expires), "expires in {sub}");
}

#[tokio::test]
async fn each_event_arrives_before_the_next_is_published() {
    // No buffering between the broker and the socket (no compression
    // middleware, no chunk held back): read each event before publishing the
    // next one.
    let server = TestServer::start(|_| {});
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();
    for i in 0..5 {
        let ids = server
            .publish(0, &event("call.progress", Some(&call), json!({"n": i})))
            .await;
        let ev = stream
            .next_event(WAIT)
            .await
            .unwrap_or_else(|err| panic!("event {i} was not delivered on its own: {err}"));
        assert_eq!(ev.data["id"], json!(ids[0]));
    }
    // The Content-Encoding, if any, is identity.
    if let Some(enc) = stream.headers.get("content-encoding") {
        assert_eq!(enc.to_str().unwrap_or(""), "identity");
    }
}

#[tokio::test]
async fn a_heartbeat_comment_arrives_when_nothing_else_does() {
    let server = TestServer::start(|config| config.stream.heartbeat_secs = 1);
    let (mut stream, _) = server.stream_basic(0, "").await;
    match stream.next_frame(Duration::from_secs(5)).await {
        Ok(SseFrame::Comment(text)) => assert!(!text.contains('\n')),
        other => panic!("expected a heartbeat comment within 5 s, got {other:?}"),
    }
    // And the stream is still alive for events afterwards.
    let ids = server
        .publish(0, &event("call.start", None, json!({})))
        .await;
    let ev = stream
        .next_event(WAIT)
        .await
        .expect("event after a heartbeat");
    assert_eq!(ev.data["id"], json!(ids[0]));
}

#[tokio::test]
async fn a_signed_stream_gets_stream_expired_then_closes() {
    let server = TestServer::start(|_| {});
    let pq = sign_with_expires(server.token(0), &server.stream_path(0), now_secs() + 2);
    let (mut stream, _) = server.stream_signed(&pq).await;
    let notice = stream
        .next_event(WAIT)
        .await
        .unwrap_or_else(|err| panic!("waiting for stream.expired: {err}"));
    assert_eq!(notice.ty(), "stream.expired", "notice: {}", notice.data);
    assert_eq!(notice.data["account_sid"], json!(server.sid(0)));
    loop {
        match stream.next_frame(Duration::from_secs(5)).await {
            Err(SseError::Eof) => break,
            Ok(SseFrame::Comment(_)) => continue,
            other => panic!("after stream.expired expected the end of the stream, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn basic_auth_streams_deliver_and_refuse_bad_credentials() {
    let server = TestServer::start(|_| {});
    let (mut stream, open) = server.stream_basic(0, "").await;
    assert_eq!(open.data["account_sid"], json!(server.sid(0)));
    assert_eq!(
        open_subscription_sids(&open).len(),
        1,
        "one all-events subscription"
    );
    let ids = server
        .publish(0, &event("call.start", None, json!({"a": 1})))
        .await;
    let ev = stream
        .next_event(WAIT)
        .await
        .expect("event on a Basic stream");
    assert_eq!(ev.data["id"], json!(ids[0]));

    let path = server.stream_path(0);
    let reply = server.rejected(&path, None).await;
    reply.assert_error_shape(&["unauthorized", "invalid_signature"]);
    assert_eq!(reply.status, 401);
    server
        .rejected(&path, Some((server.sid(0), "wrong")))
        .await
        .assert_error(401, "unauthorized");
    let stranger = unknown_account_sid();
    server
        .rejected(
            &format!("/v1/Accounts/{stranger}/Stream"),
            Some((&stranger, server.token(0))),
        )
        .await
        .assert_error(401, "unauthorized");
    server
        .rejected(&path, server.creds(1))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn the_client_parameter_is_echoed_and_validated() {
    let server = TestServer::start(|_| {});
    let id64 = format!("Ab9_-{}", "z".repeat(59));
    for client in ["my-client_1", id64.as_str()] {
        let (_s, open) = server.stream_basic(0, &format!("client={client}")).await;
        assert_eq!(open.data["data"]["client"], json!(client));
        let signed = sign(
            server.token(0),
            &format!("{}?client={client}", server.stream_path(0)),
        );
        let (_s, open) = server.stream_signed(&signed).await;
        assert_eq!(open.data["data"]["client"], json!(client));
    }
    // Without `client` the server assigns one.
    let (_s, open) = server.stream_basic(0, "").await;
    assert!(
        open.data["data"]["client"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "assigned client in {}",
        open.data
    );

    for bad in [
        format!("{id64}z"),
        pct("a b"),
        "a.b".to_string(),
        pct("café"),
        pct("a/b"),
        pct("a+b"),
    ] {
        let query = format!("client={bad}");
        let reply = server
            .rejected(
                &format!("{}?{query}", server.stream_path(0)),
                server.creds(0),
            )
            .await;
        let message = reply.assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("client"),
            "message {message:?} for {query}"
        );
        // Signed correctly, still a 400 naming the parameter.
        let signed = sign(
            server.token(0),
            &format!("{}?{query}", server.stream_path(0)),
        );
        let message = server
            .rejected(&signed, None)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("client"),
            "message {message:?} for signed {query}"
        );
    }
}

#[tokio::test]
async fn an_unknown_transport_is_400() {
    let server = TestServer::start(|_| {});
    let pq = format!("{}?transport=foo", server.stream_path(0));
    let message = server
        .rejected(&pq, server.creds(0))
        .await
        .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("transport"), "message {message:?}");
    let signed = sign(server.token(0), &pq);
    let message = server
        .rejected(&signed, None)
        .await
        .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("transport"), "message {message:?}");
}
