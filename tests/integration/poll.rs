//! Long-poll (`transport=poll`, docs/api.md §4, docs/design.md "Long-poll"):
//! immediate answers when events are pending, waiting answers woken by a
//! publish, empty answers at the timeout, cursors fed back, bad `timeout`,
//! signed URLs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::channels::{
    eventually_metrics, marked, poll_body, poll_within, strings, value_markers,
};
use crate::common::{assert_event_id, new_call_sid, pct, sign, Reply, TestServer, WAIT};

/// `…/Stream?transport=poll&{query}` of account 0.
fn poll_path(server: &TestServer, query: &str) -> String {
    format!("{}?transport=poll&{query}", server.stream_path(0))
}

/// A Basic-auth long-poll of account 0 that must answer within `WAIT`.
async fn poll(server: &TestServer, query: &str) -> (Reply, Duration) {
    poll_within(server, &poll_path(server, query), server.creds(0), WAIT).await
}

/// Creates `client`'s session (all events) with an immediate empty poll.
async fn establish(server: &TestServer, client: &str) -> Option<String> {
    let (reply, _) = poll(server, &format!("client={client}&timeout=0")).await;
    let (events, cursor) = poll_body(&reply);
    assert_eq!(events, Vec::<Value>::new(), "nothing is pending yet");
    cursor
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|ev| ev["id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits (bounded) until the sessions hold `n` events in all.
async fn cached(server: &TestServer, n: usize) {
    eventually_metrics(server, &format!("{n} events cached"), |s| {
        s.value("switchboard_cached_events", &[]) == n as f64
    })
    .await;
}

/// Waits (bounded) until the server counts `n` waiting long-polls.
async fn wait_poll_connections(server: &TestServer, n: usize) {
    eventually_metrics(server, &format!("{n} waiting polls"), |s| {
        s.value("switchboard_connections", &[("transport", "poll")]) == n as f64
    })
    .await;
}

/// Starts a Basic-auth long-poll of account 0 in its own task; it yields the
/// reply and how long it took (the caller bounds the wait).
fn spawn_poll(server: &TestServer, query: &str) -> tokio::task::JoinHandle<(Reply, Duration)> {
    let path = poll_path(server, query);
    let (sid, token) = (server.sid(0).to_string(), server.token(0).to_string());
    let base = server.base_url();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("{base}{path}"))
            .basic_auth(sid, Some(token))
            .send()
            .await
            .expect("long-poll request");
        (Reply::read(resp).await, started.elapsed())
    })
}

/// Every polled event carries a non-empty `cursor` and a `subscriptions`
/// list of `SU…` sids.
#[track_caller]
fn assert_poll_event_shape(ev: &Value, account_sid: &str) {
    assert_event_id(ev["id"].as_str().unwrap_or(""));
    assert_eq!(ev["account_sid"], json!(account_sid), "account_sid in {ev}");
    assert!(
        ev["cursor"].as_str().is_some_and(|c| !c.is_empty()),
        "cursor in {ev}"
    );
    let subs = ev["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("subscriptions in {ev}"));
    assert!(!subs.is_empty(), "subscriptions in {ev}");
    assert!(
        subs.iter()
            .all(|s| s.as_str().is_some_and(|s| s.starts_with("SU"))),
        "subscriptions in {ev}"
    );
}

#[tokio::test]
async fn pending_events_are_answered_at_once() {
    let server = TestServer::start(|_| {});
    establish(&server, "p1").await;
    let call = new_call_sid();
    let mut published = Vec::new();
    for n in ["1", "2", "3"] {
        published.extend(server.publish(0, &marked("call.progress", &call, n)).await);
    }
    cached(&server, 3).await;
    // Default timeout (25 s): the answer must not wait for it.
    let (reply, took) = poll(&server, "client=p1").await;
    let (events, cursor) = poll_body(&reply);
    assert_eq!(value_markers(&events), strings(&["1", "2", "3"]));
    assert_eq!(event_ids(&events), published);
    for ev in &events {
        assert_poll_event_shape(ev, server.sid(0));
        assert_eq!(ev["call_sid"], json!(call));
    }
    assert_eq!(
        cursor.as_deref(),
        events[2]["cursor"].as_str(),
        "the answer's cursor is the last event's"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[tokio::test]
async fn a_waiting_poll_wakes_when_an_event_is_published() {
    let server = TestServer::start(|_| {});
    establish(&server, "p2").await;
    let in_flight = spawn_poll(&server, "client=p2&timeout=20");
    // Publish once the request is waiting at the server.
    wait_poll_connections(&server, 1).await;
    let call = new_call_sid();
    let ids = server
        .publish(0, &marked("call.start", &call, "woke"))
        .await;
    let (reply, took) = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("the waiting poll did not answer after a publish")
        .expect("poll task");
    let (events, cursor) = poll_body(&reply);
    assert_eq!(event_ids(&events), ids, "events: {events:?}");
    assert_poll_event_shape(&events[0], server.sid(0));
    assert_eq!(cursor.as_deref(), events[0]["cursor"].as_str());
    assert!(took < Duration::from_secs(15), "woke only after {took:?}");
}

#[tokio::test]
async fn a_poll_with_nothing_pending_answers_empty_at_its_timeout() {
    let server = TestServer::start(|_| {});
    let cursor = establish(&server, "p3").await;
    let (reply, took) = poll(&server, "client=p3&timeout=1").await;
    let (events, _) = poll_body(&reply);
    assert_eq!(events, Vec::<Value>::new());
    assert!(
        took >= Duration::from_millis(500),
        "timeout=1 answered after only {took:?}"
    );
    assert!(took < Duration::from_secs(8), "timeout=1 took {took:?}");

    // With a cursor and nothing new, the answer hands the same cursor back.
    if let Some(cursor) = cursor {
        let (reply, _) = poll(
            &server,
            &format!("client=p3&timeout=0&cursor={}", pct(&cursor)),
        )
        .await;
        let (events, again) = poll_body(&reply);
        assert_eq!(events, Vec::<Value>::new());
        assert_eq!(again.as_deref(), Some(cursor.as_str()));
    }

    // A fresh client too (its first poll creates the session and waits).
    let (reply, took) = poll(&server, "client=p3b&timeout=1").await;
    let (events, _) = poll_body(&reply);
    assert_eq!(events, Vec::<Value>::new());
    assert!(
        took >= Duration::from_millis(500),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn the_returned_cursor_gets_only_newer_events() {
    let server = TestServer::start(|_| {});
    establish(&server, "p4").await;
    let call = new_call_sid();
    let mut published = Vec::new();
    for n in ["1", "2", "3"] {
        published.extend(server.publish(0, &marked("call.progress", &call, n)).await);
    }
    // 202 does not wait for delivery: let all three reach the session first, or
    // the poll may answer with the first alone.
    cached(&server, 3).await;
    let (reply, _) = poll(&server, "client=p4").await;
    let (first, cursor) = poll_body(&reply);
    assert_eq!(value_markers(&first), strings(&["1", "2", "3"]));
    let cursor = cursor.expect("a cursor with the events");

    for n in ["4", "5"] {
        published.extend(server.publish(0, &marked("call.progress", &call, n)).await);
    }
    cached(&server, 5).await;
    let (reply, _) = poll(&server, &format!("client=p4&cursor={}", pct(&cursor))).await;
    let (events, next) = poll_body(&reply);
    assert_eq!(value_markers(&events), strings(&["4", "5"]));
    assert_eq!(event_ids(&events), published[3..].to_vec());
    assert_eq!(next.as_deref(), events[1]["cursor"].as_str());

    // Without a cursor: after what the previous request received.
    server.publish(0, &marked("call.end", &call, "6")).await;
    let (reply, _) = poll(&server, "client=p4").await;
    let (events, _) = poll_body(&reply);
    assert_eq!(value_markers(&events), strings(&["6"]));

    // An older cursor (event 1's) replays what came after it.
    let older = first[0]["cursor"].as_str().expect("cursor").to_string();
    let (reply, _) = poll(&server, &format!("client=p4&cursor={}", pct(&older))).await;
    let (events, _) = poll_body(&reply);
    assert_eq!(value_markers(&events), strings(&["2", "3", "4", "5", "6"]));
}

#[tokio::test]
async fn a_poll_only_gets_its_filter_and_account() {
    let server = TestServer::start(|_| {});
    let (reply, _) = poll(&server, "client=p5&types=call.end&timeout=0").await;
    assert_eq!(poll_body(&reply).0, Vec::<Value>::new());
    let call = new_call_sid();
    server.publish(0, &marked("call.start", &call, "no")).await;
    server
        .publish(1, &marked("call.end", &call, "other-account"))
        .await;
    let ids = server.publish(0, &marked("call.end", &call, "yes")).await;
    let (reply, _) = poll(&server, "client=p5&types=call.end").await;
    let (events, _) = poll_body(&reply);
    assert_eq!(event_ids(&events), ids);
}

#[tokio::test]
async fn a_bad_timeout_is_400_naming_timeout() {
    let server = TestServer::start(|_| {});
    for bad in ["abc", "-1", "1.5", "5s"] {
        let pq = poll_path(&server, &format!("client=p6&timeout={bad}"));
        let (reply, _) = poll_within(&server, &pq, server.creds(0), WAIT).await;
        let message = reply.assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("timeout"),
            "message {message:?} for timeout={bad}"
        );
    }
}

#[tokio::test]
async fn signed_url_long_poll_works() {
    let server = TestServer::start(|_| {});
    let first = sign(
        server.token(0),
        &poll_path(&server, "client=sp1&types=call.*&timeout=0"),
    );
    let (reply, _) = poll_within(&server, &first, None, WAIT).await;
    assert_eq!(poll_body(&reply).0, Vec::<Value>::new());

    let call = new_call_sid();
    let ids = server.publish(0, &marked("call.start", &call, "1")).await;
    let second = sign(
        server.token(0),
        &poll_path(&server, "client=sp1&types=call.*&timeout=5"),
    );
    let (reply, took) = poll_within(&server, &second, None, WAIT).await;
    let (events, _) = poll_body(&reply);
    assert_eq!(event_ids(&events), ids);
    assert_poll_event_shape(&events[0], server.sid(0));
    assert!(
        took < Duration::from_secs(4),
        "pending event waited {took:?}"
    );

    // A tampered signature is refused before anything is read.
    let tampered = second.replace("timeout=5", "timeout=6");
    let (reply, _) = poll_within(&server, &tampered, None, WAIT).await;
    assert_eq!(reply.status, 401, "tampered signed poll: {}", reply.text());
}

#[tokio::test]
async fn a_gap_is_the_first_item_of_the_list() {
    let server = TestServer::start(|c| c.retention.max_events = 3);
    establish(&server, "pg").await;
    let call = new_call_sid();
    let mut published = Vec::new();
    for n in 1..=5 {
        published.extend(
            server
                .publish(0, &marked("call.progress", &call, &n.to_string()))
                .await,
        );
    }
    // All five in the outbox, which kept the last three.
    eventually_metrics(&server, "two events dropped unsent", |s| {
        s.value("switchboard_events_dropped_total", &[]) == 2.0
    })
    .await;
    let (reply, _) = poll(&server, "client=pg").await;
    let (events, _) = poll_body(&reply);
    assert!(!events.is_empty(), "nothing polled");
    assert_eq!(
        events[0]["type"],
        json!("stream.gap"),
        "first item: {}",
        events[0]
    );
    assert_eq!(events[0]["data"]["dropped"], json!(2), "gap: {}", events[0]);
    assert_eq!(value_markers(&events[1..]), strings(&["3", "4", "5"]));
    assert_eq!(event_ids(&events[1..]), published[2..].to_vec());
}

#[tokio::test]
async fn a_poll_takes_over_from_an_open_sse_stream_and_back() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let (mut sse, _) = server.stream_basic(0, "client=t1").await;
    server.publish(0, &marked("call.start", &call, "1")).await;
    sse.until_marker("1", WAIT).await;

    // The poll becomes the client's channel while it waits.
    let waiting = spawn_poll(&server, "client=t1&timeout=20");
    wait_poll_connections(&server, 1).await;
    let ids = server
        .publish(0, &marked("call.progress", &call, "2"))
        .await;
    let (reply, _) = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the poll that took over did not answer")
        .expect("poll task");
    let (events, _) = poll_body(&reply);
    assert_eq!(event_ids(&events), ids, "the event went to the poll");

    // And an SSE stream takes over from a waiting poll.
    let waiting = spawn_poll(&server, "client=t1&timeout=20");
    wait_poll_connections(&server, 1).await;
    let (mut sse, _) = server.stream_basic(0, "client=t1").await;
    let ids = server.publish(0, &marked("call.end", &call, "3")).await;
    let got = sse.until_marker("3", WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data["id"], json!(ids[0]));
    let (reply, took) = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("a poll taken over by an SSE stream was left hanging")
        .expect("poll task");
    let (events, _) = poll_body(&reply);
    assert!(
        event_ids(&events).iter().all(|id| id != &ids[0]),
        "the event went to both channels: {events:?}"
    );
    assert!(took < Duration::from_secs(15), "answered after {took:?}");
}

#[tokio::test]
async fn a_timeout_above_max_poll_secs_is_capped() {
    let server = TestServer::start(|c| c.stream.max_poll_secs = 1);
    establish(&server, "pm").await;
    let (reply, took) = poll(&server, "client=pm&timeout=30").await;
    let (events, _) = poll_body(&reply);
    assert_eq!(events, Vec::<Value>::new());
    assert!(
        took < Duration::from_secs(8),
        "capped at 1 s, took {took:?}"
    );
}

#[tokio::test]
async fn a_bad_or_foreign_cursor_is_400_naming_cursor() {
    let server = TestServer::start(|_| {});
    // A real cursor of account 1.
    let (reply, _) = poll_within(
        &server,
        &format!(
            "{}?transport=poll&client=q1&timeout=0",
            server.stream_path(1)
        ),
        server.creds(1),
        WAIT,
    )
    .await;
    let foreign = poll_body(&reply).1.expect("a cursor in the answer");
    for cursor in [pct(&foreign), "garbage!!".to_string(), "AAAA".to_string()] {
        let (reply, _) = poll(&server, &format!("client=q2&timeout=0&cursor={cursor}")).await;
        let message = reply.assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("cursor"),
            "message {message:?} for {cursor}"
        );
    }
}
