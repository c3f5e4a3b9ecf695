//! Replay and caching (docs/api.md §4, docs/design.md "Replay and caching"):
//! resuming by `Last-Event-ID` or `cursor=`, the cache of a named client while
//! it is away, `stream.gap` on retention overflow, `cursor=earliest`, and
//! refusals of malformed or foreign cursors.

use serde_json::json;

use crate::common::channels::{
    marked, markers, open_sse_with, sse_with, strings, wait_sse_connections,
};
use crate::common::{
    new_call_sid, open_subscription_sids, pct, sign, SseError, SseEvent, SseFrame, SseStream,
    TestServer, WAIT,
};

/// Publishes one marked event on `call` as account 0; returns its id.
async fn publish_marked(server: &TestServer, ty: &str, call: &str, n: &str) -> String {
    server.publish(0, &marked(ty, call, n)).await.remove(0)
}

/// The SSE `id:` (cursor) of a delivered event, which must be present.
#[track_caller]
fn cursor_of(ev: &SseEvent) -> String {
    let cursor = ev
        .id
        .clone()
        .unwrap_or_else(|| panic!("delivered event without an SSE id: {}", ev.data));
    assert!(!cursor.is_empty(), "empty SSE id on {}", ev.data);
    cursor
}

/// The event ids (`data.id`) of delivered events.
fn ids(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|ev| ev.data["id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Opens `client`'s stream (no filters), receives markers `1..=3` on `call`,
/// and returns the open stream, the three ids and the three cursors.
async fn receive_three(
    server: &TestServer,
    client: &str,
    call: &str,
) -> (SseStream, Vec<String>, Vec<String>) {
    let (mut stream, _open) = server.stream_basic(0, &format!("client={client}")).await;
    let mut published = Vec::new();
    for n in ["1", "2", "3"] {
        published.push(publish_marked(server, "call.progress", call, n).await);
    }
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["1", "2", "3"]));
    assert_eq!(ids(&got), published);
    let cursors: Vec<String> = got.iter().map(cursor_of).collect();
    let mut distinct = cursors.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "cursors are distinct: {cursors:?}");
    (stream, published, cursors)
}

#[tokio::test]
async fn last_event_id_resumes_with_exactly_the_missed_events_then_live() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let (stream, mut published, cursors) = receive_three(&server, "c1", &call).await;
    drop(stream);

    // Published while the client is away (whether or not the server has
    // noticed yet: what it wrote to the dead socket is not lost either).
    for n in ["4", "5", "6"] {
        published.push(publish_marked(&server, "call.progress", &call, n).await);
    }

    let path = format!("{}?client=c1", server.stream_path(0));
    let (mut stream, _open) = sse_with(
        &server,
        &path,
        server.creds(0),
        &[("Last-Event-ID", &cursors[2])],
    )
    .await;
    published.push(publish_marked(&server, "call.progress", &call, "7").await);
    let got = stream.until_marker("7", WAIT).await;
    assert_eq!(
        markers(&got),
        strings(&["4", "5", "6", "7"]),
        "after the cursor of 3: exactly the missed events, then live, nothing twice"
    );
    assert_eq!(ids(&got), published[3..].to_vec(), "same ids as published");
    for ev in &got {
        cursor_of(ev);
    }
}

#[tokio::test]
async fn cursor_query_resumes_after_the_server_saw_the_disconnect() {
    let server = TestServer::start(|c| c.stream.heartbeat_secs = 1);
    let call = new_call_sid();
    let (stream, mut published, cursors) = receive_three(&server, "c1", &call).await;
    drop(stream);
    wait_sse_connections(&server, 0).await;

    for n in ["4", "5"] {
        published.push(publish_marked(&server, "call.progress", &call, n).await);
    }
    let (mut stream, _open) = server
        .stream_basic(0, &format!("client=c1&cursor={}", pct(&cursors[2])))
        .await;
    published.push(publish_marked(&server, "call.progress", &call, "6").await);
    let got = stream.until_marker("6", WAIT).await;
    assert_eq!(markers(&got), strings(&["4", "5", "6"]));
    assert_eq!(ids(&got), published[3..].to_vec());
}

#[tokio::test]
async fn an_older_cursor_replays_everything_after_it() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let (stream, mut published, cursors) = receive_three(&server, "c1", &call).await;
    drop(stream);
    published.push(publish_marked(&server, "call.progress", &call, "4").await);

    // Resume from the cursor of event 1: 2 and 3 again (asked for), then 4.
    let (mut stream, _open) = server
        .stream_basic(0, &format!("client=c1&cursor={}", pct(&cursors[0])))
        .await;
    published.push(publish_marked(&server, "call.progress", &call, "5").await);
    let got = stream.until_marker("5", WAIT).await;
    assert_eq!(markers(&got), strings(&["2", "3", "4", "5"]));
    assert_eq!(
        ids(&got),
        published[1..].to_vec(),
        "ids are stable on replay"
    );
    // The replayed events carry the same cursors as the first time.
    assert_eq!(cursor_of(&got[0]), cursors[1]);
    assert_eq!(cursor_of(&got[1]), cursors[2]);
}

#[tokio::test]
async fn reconnecting_without_a_cursor_gets_the_cached_events() {
    let server = TestServer::start(|c| c.stream.heartbeat_secs = 1);
    let call = new_call_sid();
    let (mut stream, _open) = server.stream_basic(0, "client=c2").await;
    publish_marked(&server, "call.start", &call, "1").await;
    stream.until_marker("1", WAIT).await;
    drop(stream);
    wait_sse_connections(&server, 0).await;

    let mut away = Vec::new();
    for n in ["2", "3"] {
        away.push(publish_marked(&server, "call.progress", &call, n).await);
    }
    let (mut stream, _open) = server.stream_basic(0, "client=c2").await;
    away.push(publish_marked(&server, "call.end", &call, "4").await);
    let got = stream.until_marker("4", WAIT).await;
    assert_eq!(
        markers(&got),
        strings(&["2", "3", "4"]),
        "the cached (undelivered) events, then live; 1 was delivered already"
    );
    assert_eq!(ids(&got), away);
}

#[tokio::test]
async fn retention_overflow_while_away_starts_with_a_gap_notice() {
    let server = TestServer::start(|c| {
        c.retention.max_events = 5;
        c.stream.heartbeat_secs = 1;
    });
    let call = new_call_sid();
    let (stream, _open) = server.stream_basic(0, "client=g1").await;
    drop(stream);
    wait_sse_connections(&server, 0).await;

    let mut published = Vec::new();
    for n in 1..=8 {
        published.push(publish_marked(&server, "call.progress", &call, &n.to_string()).await);
    }
    let (mut stream, _open) = server.stream_basic(0, "client=g1").await;
    let first = stream
        .next_event(WAIT)
        .await
        .unwrap_or_else(|err| panic!("waiting for stream.gap: {err}"));
    assert_eq!(
        first.ty(),
        "stream.gap",
        "first after stream.open: {}",
        first.data
    );
    assert_eq!(first.data["account_sid"], json!(server.sid(0)));
    assert_eq!(
        first.data["data"]["dropped"],
        json!(3),
        "gap: {}",
        first.data
    );

    publish_marked(&server, "call.end", &call, "end").await;
    let got = stream.until_marker("end", WAIT).await;
    assert_eq!(
        markers(&got),
        strings(&["4", "5", "6", "7", "8", "end"]),
        "the last five, then live"
    );
    assert_eq!(ids(&got)[..5], published[3..]);
    assert!(
        got.iter().all(|ev| ev.ty() != "stream.gap"),
        "one gap notice only"
    );
}

#[tokio::test]
async fn cursor_earliest_replays_matching_events_from_before_the_first_connection() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let mut wanted = Vec::new();
    wanted.push(publish_marked(&server, "call.start", &call, "1").await);
    publish_marked(&server, "say.start", &call, "not-a-call-type").await;
    wanted.push(publish_marked(&server, "call.ringing", &call, "2").await);
    // Another account's event of a matching type on the same call sid.
    server
        .publish(1, &marked("call.start", &call, "other-account"))
        .await;

    let (mut stream, open) = server
        .stream_basic(0, "client=e1&types=call.*&cursor=earliest")
        .await;
    assert_eq!(open.data["data"]["client"], json!("e1"));
    // Live while the replay may still be in progress: no gap, no duplicate.
    wanted.push(publish_marked(&server, "call.end", &call, "live").await);
    let got = stream.until_marker("live", WAIT).await;
    assert_eq!(markers(&got), strings(&["1", "2", "live"]));
    assert_eq!(ids(&got), wanted);

    // And nothing more of the past afterwards.
    publish_marked(&server, "call.end", &call, "end").await;
    let rest = stream.until_marker("end", WAIT).await;
    assert_eq!(markers(&rest), strings(&["end"]));
}

#[tokio::test]
async fn cursor_earliest_sends_cached_events_once() {
    let server = TestServer::start(|c| c.stream.heartbeat_secs = 1);
    let call = new_call_sid();
    let (mut stream, _open) = server.stream_basic(0, "client=e2").await;
    let first = publish_marked(&server, "call.start", &call, "1").await;
    stream.until_marker("1", WAIT).await;
    drop(stream);
    wait_sse_connections(&server, 0).await;
    // Cached for the client and retained by the shard.
    let second = publish_marked(&server, "call.progress", &call, "2").await;

    let (mut stream, _open) = server.stream_basic(0, "client=e2&cursor=earliest").await;
    let third = publish_marked(&server, "call.end", &call, "3").await;
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["1", "2", "3"]));
    assert_eq!(ids(&got), vec![first, second, third]);
}

#[tokio::test]
async fn a_malformed_cursor_is_400_naming_cursor() {
    let server = TestServer::start(|_| {});
    for bad in [
        "garbage!!".to_string(),
        "AAAA".to_string(),
        "x".to_string(),
        pct("not a cursor"),
        "earliest2".to_string(),
        "A".repeat(300),
    ] {
        let pq = format!("{}?client=m1&cursor={bad}", server.stream_path(0));
        let message = server
            .rejected(&pq, server.creds(0))
            .await
            .assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("cursor"),
            "message {message:?} for {bad}"
        );

        // Correctly signed, still a 400 naming the parameter.
        let message = server
            .rejected(&sign(server.token(0), &pq), None)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("cursor"),
            "message {message:?} for signed {bad}"
        );
    }
    // The same through the header EventSource sends.
    let path = format!("{}?client=m1", server.stream_path(0));
    let reply = open_sse_with(
        &server,
        &path,
        server.creds(0),
        &[("Last-Event-ID", "garbage!!")],
    )
    .await
    .err()
    .expect("a malformed Last-Event-ID must be refused");
    reply.assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn a_cursor_of_another_account_is_400() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let (mut other, other_open) = server.stream_basic(1, "client=b1").await;
    server.publish(1, &marked("call.start", &call, "b")).await;
    let ev = other.until_marker("b", WAIT).await.remove(0);
    let mut foreign = vec![cursor_of(&ev)];
    foreign.extend(other_open.id.clone().filter(|id| !id.is_empty()));

    for cursor in &foreign {
        let pq = format!("{}?client=a1&cursor={}", server.stream_path(0), pct(cursor));
        let message = server
            .rejected(&pq, server.creds(0))
            .await
            .assert_error(400, "invalid_parameter");
        assert!(message.starts_with("cursor"), "message {message:?}");

        let path = format!("{}?client=a1", server.stream_path(0));
        let reply = open_sse_with(
            &server,
            &path,
            server.creds(0),
            &[("Last-Event-ID", cursor)],
        )
        .await
        .err()
        .expect("another account's Last-Event-ID must be refused");
        reply.assert_error(400, "invalid_parameter");
    }
}

#[tokio::test]
async fn an_empty_cursor_is_ignored() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let (mut stream, open) = server.stream_basic(0, "client=z1&cursor=").await;
    assert_eq!(open.data["data"]["client"], json!("z1"));
    let id = publish_marked(&server, "call.start", &call, "1").await;
    let got = stream.until_marker("1", WAIT).await;
    assert_eq!(ids(&got), vec![id]);
    let cursor = cursor_of(&got[0]);
    drop(stream);

    // An empty `cursor=` does not hide the Last-Event-ID header either.
    let missed = publish_marked(&server, "call.progress", &call, "2").await;
    let path = format!("{}?client=z1&cursor=", server.stream_path(0));
    let (mut stream, _open) = sse_with(
        &server,
        &path,
        server.creds(0),
        &[("Last-Event-ID", &cursor)],
    )
    .await;
    let live = publish_marked(&server, "call.end", &call, "3").await;
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["2", "3"]));
    assert_eq!(ids(&got), vec![missed, live]);
}

#[tokio::test]
async fn reconnecting_with_the_same_filter_reuses_the_subscription_and_resumes() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let (mut stream, open) = server.stream_basic(0, "client=f1&types=call.*").await;
    let subs = open_subscription_sids(&open);
    assert_eq!(subs.len(), 1, "{}", open.data);
    publish_marked(&server, "call.start", &call, "1").await;
    let got = stream.until_marker("1", WAIT).await;
    let cursor = cursor_of(&got[0]);
    drop(stream);

    publish_marked(&server, "say.start", &call, "not-call").await;
    let missed = publish_marked(&server, "call.progress", &call, "2").await;
    let path = format!("{}?client=f1&types=call.*", server.stream_path(0));
    let (mut stream, open) = sse_with(
        &server,
        &path,
        server.creds(0),
        &[("Last-Event-ID", &cursor)],
    )
    .await;
    assert_eq!(
        open_subscription_sids(&open),
        subs,
        "an EventSource retry reuses its subscription: {}",
        open.data
    );
    let live = publish_marked(&server, "call.end", &call, "3").await;
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["2", "3"]));
    assert_eq!(ids(&got), vec![missed, live]);
    for ev in &got {
        assert_eq!(ev.data["subscriptions"], json!(subs));
    }
}

#[tokio::test]
async fn a_connection_ended_by_max_connection_secs_resumes_by_cursor() {
    let server = TestServer::start(|c| c.stream.max_connection_secs = 1);
    let call = new_call_sid();
    let (mut stream, _open) = server.stream_basic(0, "client=mc").await;
    let first = publish_marked(&server, "call.start", &call, "1").await;
    // Read to the end the server imposes: the event, no notice, then EOF.
    let mut before_end = Vec::new();
    loop {
        match stream.next_frame(WAIT).await {
            Ok(SseFrame::Event(ev)) => before_end.push(ev),
            Ok(SseFrame::Comment(_)) => {}
            Err(SseError::Eof) | Err(SseError::Transport(_)) => break,
            Err(err) => panic!("max_connection_secs = 1: the stream did not end: {err}"),
        }
    }
    assert_eq!(ids(&before_end), vec![first], "no notice before the end");
    let cursor = cursor_of(&before_end[0]);

    let missed = publish_marked(&server, "call.progress", &call, "2").await;
    let (mut stream, _open) = server
        .stream_basic(0, &format!("client=mc&cursor={}", pct(&cursor)))
        .await;
    let live = publish_marked(&server, "call.end", &call, "3").await;
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["2", "3"]));
    assert_eq!(ids(&got), vec![missed, live]);
}

#[tokio::test]
async fn events_older_than_max_age_are_reported_as_a_gap() {
    // Age is the subject, so this waits for it, but only as long as proves it:
    // the outbox ages an event from when the proxy pushed it, and with one
    // proxy the watching stream is fed by that same push, so once the watcher
    // has event 2, more than `max_age` later the cached two are older than it.
    // (The outbox's age rule itself is unit-tested with a chosen `now`.)
    let server = TestServer::start(|c| {
        c.retention.max_age_secs = 1;
        c.proxies = 1;
    });
    let max_age = std::time::Duration::from_secs(1);
    let call = new_call_sid();
    // The control channel creates the client's session (all types), which
    // caches from then on.
    let reply = crate::common::channels::post_form(
        &server,
        &crate::common::channels::subs_path(&server, 0, "ma"),
        server.creds(0),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "creating the session: {}", reply.text());
    let (mut watcher, _) = server.stream_basic(0, "client=watcher").await;

    publish_marked(&server, "call.start", &call, "1").await;
    publish_marked(&server, "call.progress", &call, "2").await;
    watcher.until_marker("2", WAIT).await;
    let pushed_by = tokio::time::Instant::now();
    tokio::time::sleep_until(pushed_by + max_age + std::time::Duration::from_millis(50)).await;

    let (mut stream, _open) = server.stream_basic(0, "client=ma").await;
    let first = stream
        .next_event(WAIT)
        .await
        .unwrap_or_else(|err| panic!("waiting for stream.gap: {err}"));
    assert_eq!(
        first.ty(),
        "stream.gap",
        "first after stream.open: {}",
        first.data
    );
    assert_eq!(
        first.data["data"]["dropped"],
        json!(2),
        "gap: {}",
        first.data
    );
    let live = publish_marked(&server, "call.end", &call, "3").await;
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["3"]));
    assert_eq!(ids(&got), vec![live]);
}
