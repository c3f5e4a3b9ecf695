//! The WebSocket transport of the stream URL (docs/api.md §4 and §6,
//! docs/design.md "WebSocket"): `stream.open` first, one event per text
//! frame with `cursor` and `subscriptions`, client events sent as text
//! frames, `stream.error` for invalid frames, resuming by cursor.

use serde_json::{json, Value};

use crate::common::channels::{
    eventually_metrics, marked, matched_subs, scrape, strings, value_markers, ws_connect, Ws,
};
use crate::common::{assert_event_id, event, new_call_sid, pct, sign, TestServer, WAIT};

/// A Basic-auth WebSocket of account 0 with `query`; returns it and its
/// `stream.open` frame.
async fn ws_basic(server: &TestServer, query: &str) -> (Ws, Value) {
    let pq = format!("{}?{query}", server.stream_path(0));
    let mut ws = ws_connect(server, &pq, server.creds(0))
        .await
        .unwrap_or_else(|(status, body)| panic!("ws {pq}: refused {status} {body}"));
    let open = ws.expect_json().await;
    assert_eq!(open["type"], json!("stream.open"), "first frame: {open}");
    (ws, open)
}

/// The subscription sids of a `stream.open` frame.
fn open_sids(open: &Value) -> Vec<String> {
    let mut sids: Vec<String> = open["data"]["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("stream.open without data.subscriptions: {open}"))
        .iter()
        .map(|s| s["sid"].as_str().unwrap_or("").to_string())
        .collect();
    sids.sort();
    sids
}

#[tokio::test]
async fn a_basic_auth_websocket_opens_then_delivers_one_event_per_frame() {
    let server = TestServer::start(|_| {});
    let (mut ws, open) = ws_basic(&server, "client=w1").await;
    assert_eq!(open["account_sid"], json!(server.sid(0)));
    assert_eq!(open["data"]["client"], json!("w1"));
    let sids = open_sids(&open);
    assert_eq!(sids.len(), 1, "one all-events subscription: {open}");

    let call = new_call_sid();
    let batch = json!([
        marked("call.start", &call, "1"),
        marked("call.ringing", &call, "2"),
        marked("call.answered", &call, "3"),
    ]);
    let ids = server.publish(0, &batch).await;
    let mut cursors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let frame = ws.expect_json().await;
        assert!(frame.is_object(), "one event per frame: {frame}");
        assert_eq!(frame["id"], json!(id), "frame {i}: {frame}");
        assert_event_id(frame["id"].as_str().unwrap_or(""));
        assert_eq!(frame["account_sid"], json!(server.sid(0)));
        assert_eq!(frame["call_sid"], json!(call));
        assert_eq!(frame["data"]["n"], json!((i + 1).to_string()));
        assert_eq!(matched_subs(&frame), sids, "subscriptions of {frame}");
        let cursor = frame["cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("no cursor in {frame}"))
            .to_string();
        assert!(!cursor.is_empty());
        cursors.push(cursor);
    }
    cursors.dedup();
    assert_eq!(cursors.len(), 3, "distinct cursors");
    ws.close().await;
}

#[tokio::test]
async fn a_signed_url_websocket_gets_its_filter_and_bad_credentials_are_refused() {
    let server = TestServer::start(|_| {});
    let signed = sign(
        server.token(0),
        &format!("{}?client=w2&types=call.*", server.stream_path(0)),
    );
    let mut ws = ws_connect(&server, &signed, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("signed ws refused {status} {body}"));
    let open = ws.expect_json().await;
    assert_eq!(open["type"], json!("stream.open"), "first frame: {open}");
    assert_eq!(open["data"]["client"], json!("w2"));

    let call = new_call_sid();
    server.publish(0, &marked("say.start", &call, "no")).await;
    let ids = server.publish(0, &marked("call.start", &call, "yes")).await;
    let frame = ws.expect_json().await;
    assert_eq!(frame["id"], json!(ids[0]), "only call.* arrives: {frame}");
    assert!(frame["cursor"].as_str().is_some_and(|c| !c.is_empty()));
    ws.close().await;

    let path = server.stream_path(0);
    let tampered = signed.replace("types=call.*", "types=*");
    for (what, pq, creds, status) in [
        ("no credentials", path.clone(), None, 401),
        (
            "bad token",
            path.clone(),
            Some((server.sid(0), "wrong")),
            401,
        ),
        ("tampered signature", tampered, None, 401),
        ("other account", path.clone(), server.creds(1), 403),
    ] {
        match ws_connect(&server, &pq, creds).await {
            Ok(_) => panic!("{what}: the WebSocket handshake was accepted"),
            Err((got, body)) => assert_eq!(got, status, "{what}: {body}"),
        }
    }
}

#[tokio::test]
async fn client_frames_reach_client_subscribers_with_the_sender_stamped() {
    let server = TestServer::start(|_| {});
    let (mut sse, _) = server.stream_basic(0, "types=client.*").await;
    let (mut ws, _) = ws_basic(&server, "client=w1").await;
    let before = scrape(&server)
        .await
        .value("switchboard_client_events_total", &[("via", "ws")]);

    // Both frames name one call: only a call's events are ordered (docs/api.md §2).
    let call = new_call_sid();
    ws.send_text(&json!({"type": "client.hello", "call_sid": call, "data": {"x": 1}}).to_string())
        .await;
    ws.send_text(
        &json!({"type": "client.mute", "call_sid": call, "data": {"client": "spoofed", "n": "2"}})
            .to_string(),
    )
    .await;

    let hello = sse
        .next_event(WAIT)
        .await
        .unwrap_or_else(|err| panic!("client.hello on the client.* stream: {err}"));
    assert_eq!(hello.ty(), "client.hello", "{}", hello.data);
    assert_eq!(hello.data["account_sid"], json!(server.sid(0)));
    assert_eq!(hello.data["data"]["client"], json!("w1"));
    assert_eq!(hello.data["data"]["x"], json!(1));
    assert_event_id(hello.data["id"].as_str().unwrap_or(""));

    let mute = sse.until_marker("2", WAIT).await;
    assert_eq!(mute.len(), 1, "nothing between: {mute:?}");
    assert_eq!(mute[0].ty(), "client.mute");
    assert_eq!(mute[0].data["call_sid"], json!(call));
    assert_eq!(
        mute[0].data["data"]["client"],
        json!("w1"),
        "the sender's id overwrites a given data.client"
    );

    eventually_metrics(&server, "client_events_total{via=ws} moved by 2", |s| {
        s.value("switchboard_client_events_total", &[("via", "ws")]) == before + 2.0
    })
    .await;
    ws.close().await;
}

#[tokio::test]
async fn invalid_frames_get_a_stream_error_and_the_connection_stays_usable() {
    let server = TestServer::start(|_| {});
    let (mut sse, _) = server.stream_basic(0, "types=client.*").await;
    let (mut ws, _) = ws_basic(&server, "client=w3&types=call.*").await;

    for (frame, code) in [
        (r#"{"type":"nope"}"#, "invalid_event"),
        ("this is not json", "invalid_json"),
        (r#"{"type":"call.start"}"#, "invalid_event"),
    ] {
        ws.send_text(frame).await;
        let got = ws.expect_json().await;
        assert_eq!(
            got["type"],
            json!("stream.error"),
            "answer to {frame:?}: {got}"
        );
        assert_eq!(
            got["data"]["status"],
            json!(400),
            "answer to {frame:?}: {got}"
        );
        assert_eq!(
            got["data"]["code"],
            json!(code),
            "answer to {frame:?}: {got}"
        );
        assert!(
            got["data"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "message in {got}"
        );
    }

    // Still delivering...
    let call = new_call_sid();
    let ids = server
        .publish(0, &marked("call.start", &call, "after"))
        .await;
    let frames = ws.until_marker("after").await;
    assert_eq!(frames.len(), 1, "only the event: {frames:?}");
    assert_eq!(frames[0]["id"], json!(ids[0]));

    // ...and still accepting client events.
    ws.send_text(r#"{"type":"client.ping","data":{"n":"ok"}}"#)
        .await;
    let got = sse.until_marker("ok", WAIT).await;
    assert_eq!(
        got.len(),
        1,
        "the invalid frames published nothing: {got:?}"
    );
    assert_eq!(got[0].data["data"]["client"], json!("w3"));
    ws.close().await;
}

#[tokio::test]
async fn a_websocket_resumes_by_cursor() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let (mut ws, _) = ws_basic(&server, "client=w4").await;
    server.publish(0, &marked("call.start", &call, "1")).await;
    server
        .publish(0, &marked("call.progress", &call, "2"))
        .await;
    let got = ws.until_marker("2").await;
    assert_eq!(value_markers(&got), strings(&["1", "2"]));
    let cursor = got[1]["cursor"].as_str().expect("cursor").to_string();
    ws.close().await;

    server
        .publish(0, &marked("call.progress", &call, "3"))
        .await;
    let (mut ws, _) = ws_basic(&server, &format!("client=w4&cursor={}", pct(&cursor))).await;
    server
        .publish(0, &event("call.end", Some(&call), json!({"n": "4"})))
        .await;
    let got = ws.until_marker("4").await;
    assert_eq!(value_markers(&got), strings(&["3", "4"]));
    ws.close().await;
}

#[tokio::test]
async fn a_signed_websocket_gets_stream_expired_then_closes() {
    let server = TestServer::start(|_| {});
    let signed = crate::common::sign_with_expires(
        server.token(0),
        &format!("{}?client=w5", server.stream_path(0)),
        crate::common::now_secs() + 2,
    );
    let mut ws = ws_connect(&server, &signed, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("signed ws refused {status} {body}"));
    let open = ws.expect_json().await;
    assert_eq!(open["type"], json!("stream.open"));
    let notice = ws.expect_json().await;
    assert_eq!(notice["type"], json!("stream.expired"), "notice: {notice}");
    assert_eq!(notice["account_sid"], json!(server.sid(0)));
    match ws.next_json(WAIT).await {
        Err(err) if err.contains("close") => {}
        other => panic!("after stream.expired expected the connection to close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_signed_websocket_sends_client_events_as_its_client() {
    let server = TestServer::start(|_| {});
    let (mut sse, _) = server.stream_basic(0, "types=client.*").await;
    let signed = sign(
        server.token(0),
        &format!("{}?client=browser-7&types=call.*", server.stream_path(0)),
    );
    let mut ws = ws_connect(&server, &signed, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("signed ws refused {status} {body}"));
    assert_eq!(ws.expect_json().await["type"], json!("stream.open"));
    // Not an action on a call (those need act=, see grants.rs).
    ws.send_text(r#"{"type":"client.note","data":{"n":"u"}}"#)
        .await;
    let got = sse.until_marker("u", WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ty(), "client.note");
    assert_eq!(got[0].data["data"]["client"], json!("browser-7"));
    ws.close().await;
}

#[tokio::test]
async fn a_websocket_with_a_bad_parameter_is_refused_with_400() {
    let server = TestServer::start(|_| {});
    for query in ["client=w6&cursor=garbage!!", "client=a.b", "types=Bad"] {
        let pq = format!("{}?{query}", server.stream_path(0));
        match ws_connect(&server, &pq, server.creds(0)).await {
            Ok(_) => panic!("{query}: the WebSocket handshake was accepted"),
            Err((status, body)) => assert_eq!(status, 400, "{query}: {body}"),
        }
    }
}

/// As on SSE (lane.rs), events within `stream.write_interval_ms` of the last write
/// wait for its end and are written together; one after a quiet spell goes at once.
#[tokio::test]
async fn events_within_the_write_interval_share_one_write() {
    let server = TestServer::start(|c| c.stream.write_interval_ms = 1000);
    let (mut ws, _) = ws_basic(&server, "client=paced-ws").await;
    // A quiet spell longer than the interval since `stream.open` was written.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let call = new_call_sid();
    let mut ids = server.publish(0, &marked("call.start", &call, "1")).await;
    assert_eq!(ws.expect_json().await["id"], json!(ids[0]));
    // Within the interval after that write: held, then written together.
    ids.extend(server.publish(0, &marked("call.ringing", &call, "2")).await);
    ids.extend(
        server
            .publish(0, &marked("call.answered", &call, "3"))
            .await,
    );
    for id in &ids[1..] {
        assert_eq!(ws.expect_json().await["id"], json!(id));
    }
    let metrics = scrape(&server).await;
    let ws_series = [("transport", "ws")];
    assert_eq!(
        metrics.value("switchboard_delivery_writes_total", &ws_series),
        2.0,
        "the first event alone, then the two held ones in one write"
    );
    assert_eq!(
        metrics.value("switchboard_events_delivered_total", &ws_series),
        3.0
    );
    ws.close().await;
}
