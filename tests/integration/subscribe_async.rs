//! Subscription work never holds up delivery (issue 10, docs/api.md §8): a proxy answers
//! a connect, a subscribe or a `cursor=earliest` replay without pausing the events
//! it delivers to its other clients meanwhile.

use std::sync::Arc;
use std::time::Duration;

use crate::common::channels::{eventually_metrics, marked, markers, strings};
use crate::common::{new_call_sid, TestServer, WAIT};

/// A replay that takes its time (held back at the shard by the test hook) leaves
/// the proxy delivering to everyone else; once it comes, the replaying client gets
/// what was retained and what arrived meanwhile, each once and in order.
#[tokio::test]
async fn a_slow_replay_holds_up_no_other_client_and_loses_nothing() {
    let hold = switchboard::actors::shard::ShardHold::new();
    let server = Arc::new(TestServer::start(|c| {
        // One proxy: the replaying client and the live one share it.
        c.proxies = 1;
        c.shards = 2;
        c.shard_hold = Some(hold.clone());
    }));
    let call = new_call_sid();
    for n in 1..=3 {
        server
            .publish(0, &marked("call.progress", &call, &n.to_string()))
            .await;
    }
    let (mut live, _) = server.stream_basic(0, "client=live&types=call.*").await;

    hold.hold_replays();
    let replaying = {
        let server = server.clone();
        let pq = format!(
            "{}?client=late&types=call.*&cursor=earliest",
            server.stream_path(0)
        );
        tokio::spawn(async move { server.stream(&pq, server.creds(0)).await })
    };
    eventually_metrics(&server, "the replay was asked for", |s| {
        s.value("switchboard_replays_total", &[("kind", "earliest")]) == 1.0
    })
    .await;

    // While the replay is held, the live client gets every new event.
    for n in 4..=10 {
        server
            .publish(0, &marked("call.progress", &call, &n.to_string()))
            .await;
    }
    let got = live.until_marker("10", WAIT).await;
    assert_eq!(
        markers(&got),
        strings(&["4", "5", "6", "7", "8", "9", "10"])
    );
    assert!(!replaying.is_finished(), "the replay is still held");

    hold.release_replays();
    let (mut late, open) = tokio::time::timeout(WAIT, replaying)
        .await
        .expect("the replaying stream opened")
        .expect("the replaying task");
    assert_eq!(open.data["data"]["client"], "late");
    server.publish(0, &marked("call.end", &call, "11")).await;
    let got = late.until_marker("11", WAIT).await;
    let want: Vec<String> = (1..=11).map(|n| n.to_string()).collect();
    assert_eq!(markers(&got), want, "retained, then live, each once");
    // Nothing more: an event both replayed and delivered live came once.
    assert!(late.next_event(Duration::from_millis(300)).await.is_err());
}

const STORM_CLIENTS: usize = 200;
const STORM_EVENTS: usize = 60;

/// Publishes events marked `from..=to` on `call`, one request each, a few
/// milliseconds apart (each must be accepted: `publish` asserts 202).
async fn steady(server: Arc<TestServer>, call: String, from: usize, to: usize) {
    for n in from..=to {
        server
            .publish(0, &marked("call.progress", &call, &n.to_string()))
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Client `i` opens its stream with `cursor=earliest` and reads until marker
/// `last`: it must have every event from 1 once, in order.
async fn replays_everything(server: Arc<TestServer>, i: usize, last: usize) {
    let pq = format!(
        "{}?client=storm{i}&types=call.*&cursor=earliest",
        server.stream_path(0)
    );
    let (mut stream, _) = server.stream(&pq, server.creds(0)).await;
    let got = stream.until_marker(&last.to_string(), 3 * WAIT).await;
    let want: Vec<String> = (1..=last).map(|n| n.to_string()).collect();
    assert_eq!(markers(&got), want, "client {i}");
}

/// Two hundred clients connect, then all reconnect at once, each asking for
/// everything retained (`cursor=earliest`) while a publisher runs: no publish is
/// refused and every client gets every event once, in order, both times. (How
/// little the storm costs publishers in latency is measured by `switchboard
/// loadtest storm`, docs/loadtest.md: tests assert no timings.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_storm_with_earliest_refuses_nothing_and_everyone_gets_everything_once() {
    let server = Arc::new(TestServer::start(|c| {
        c.proxies = 2;
        c.shards = 2;
    }));
    let call = new_call_sid();
    for (from, last) in [(1, STORM_EVENTS), (STORM_EVENTS + 1, 2 * STORM_EVENTS)] {
        let publisher = tokio::spawn(steady(server.clone(), call.clone(), from, last));
        let clients: Vec<_> = (0..STORM_CLIENTS)
            .map(|i| tokio::spawn(replays_everything(server.clone(), i, last)))
            .collect();
        publisher.await.expect("every publish accepted");
        for client in clients {
            client.await.expect("a client got everything");
        }
    }
    let s = crate::common::channels::scrape(&server).await;
    assert_eq!(
        s.value("switchboard_replays_total", &[("kind", "earliest")]),
        (2 * STORM_CLIENTS) as f64
    );
}

/// A replay goes out with the `stream.open` notice, not a write interval later: the
/// interval paces writes of live events, and a replay keeps its turn until its first
/// chunk is taken, so holding it made every storm replay take 10 ms of idle time.
/// With an interval longer than the test waits, the replayed events still arrive.
#[tokio::test]
async fn a_replay_is_written_with_the_open_notice_not_an_interval_later() {
    let server = TestServer::start(|c| c.stream.write_interval_ms = 600_000);
    let call = new_call_sid();
    for n in 1..=3 {
        server
            .publish(0, &marked("call.progress", &call, &n.to_string()))
            .await;
    }
    let pq = format!(
        "{}?client=reload&types=call.*&cursor=earliest",
        server.stream_path(0)
    );
    let (mut stream, _) = server.stream(&pq, server.creds(0)).await;
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["1", "2", "3"]));
}

/// `stream.replays_at_once` bounds the replays in progress: with one allowed and
/// one held at its shard, a second `cursor=earliest` waits its turn before it asks
/// anything of the proxy, then gets its replay.
#[tokio::test]
async fn replays_beyond_the_bound_wait_their_turn() {
    let hold = switchboard::actors::shard::ShardHold::new();
    let server = Arc::new(TestServer::start(|c| {
        c.stream.replays_at_once = 1;
        c.shard_hold = Some(hold.clone());
    }));
    let call = new_call_sid();
    server.publish(0, &marked("call.start", &call, "1")).await;
    hold.hold_replays();
    let replaying = |client: &str| {
        let server = server.clone();
        let pq = format!(
            "{}?client={client}&types=call.*&cursor=earliest",
            server.stream_path(0)
        );
        tokio::spawn(async move { server.stream(&pq, server.creds(0)).await })
    };
    let first = replaying("first");
    eventually_metrics(&server, "the first replay was asked for", |s| {
        s.value("switchboard_replays_total", &[("kind", "earliest")]) == 1.0
    })
    .await;
    let second = replaying("second");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = crate::common::channels::scrape(&server).await;
    assert_eq!(
        s.value("switchboard_replays_total", &[("kind", "earliest")]),
        1.0,
        "the second waits for the first's turn"
    );
    hold.release_replays();
    for (name, task) in [("first", first), ("second", second)] {
        let (mut stream, _) = tokio::time::timeout(WAIT, task)
            .await
            .unwrap_or_else(|_| panic!("{name}: never opened"))
            .expect("the task");
        let got = stream.until_marker("1", WAIT).await;
        assert_eq!(markers(&got), ["1"], "{name}");
    }
}
