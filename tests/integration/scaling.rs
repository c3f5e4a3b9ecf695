//! The shard and proxy supervisors (issue 10, docs/api.md §8 "Scaling inside a node"):
//! with low marks in the config, bursts of publishing add shards and lulls retire
//! them, sessions filling a proxy add one and thinning out retire one (its sessions
//! moving), several times over, with a shard stopped and restarted, while a steady
//! stream of sequenced per-call events flows; every subscriber (SSE, long-poll,
//! WebSocket, webhook) gets every event once, in each call's order, and the changes
//! show in the metrics and the topology.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::channels::{
    create_sub, eventually_metrics, poll_body, poll_within, request, scrape, sid_of, subs_path,
    ws_connect, HookReceiver,
};
use crate::common::scrape::Scrape;
use crate::common::{new_call_sid, pct, Publisher, TestServer, WAIT};
use switchboard::actors::shard::ShardHold;

const FEEDS: usize = 8;
const CALLS_PER_FEED: usize = 4;
const CALLS: usize = FEEDS * CALLS_PER_FEED;
const SHARDS_MAX: usize = 4;
const TOKEN: &str = "scaling-admin-token";
/// Bound on each phase and on each reader.
const PHASE: Duration = Duration::from_secs(20);

/// Each call's events as a subscriber got them: the `data.seq`s in arrival order.
type PerCall = HashMap<String, Vec<u64>>;

/// `GET /v1/Admin/Topology` with the tests' admin token.
async fn topology(server: &TestServer) -> Value {
    request(
        server,
        reqwest::Method::GET,
        "/v1/Admin/Topology",
        Some(("admin", TOKEN)),
        None,
    )
    .await
    .json()
}

fn changes(s: &Scrape, change: &str) -> f64 {
    s.value("switchboard_shard_changes_total", &[("change", change)])
}

/// Publishes `call.progress` events with a per-call sequence for its calls, and one
/// `call.completed` per call at the end. Several run at once in a burst, so a
/// shard's queue is deep when its slots move.
struct Feed {
    publisher: Publisher,
    calls: Vec<String>,
    next: Vec<u64>,
}

impl Feed {
    fn new(server: &TestServer) -> Feed {
        Feed {
            publisher: server.publisher(0),
            calls: (0..CALLS_PER_FEED).map(|_| new_call_sid()).collect(),
            next: vec![0; CALLS_PER_FEED],
        }
    }

    fn event(&mut self, call: usize, ty: &str) -> Value {
        let seq = self.next[call];
        self.next[call] += 1;
        json!({"type": ty, "call_sid": self.calls[call], "data": {"seq": seq}})
    }

    /// One event for each of its calls, in one request.
    async fn round(&mut self, ty: &str) {
        let batch: Vec<Value> = (0..self.calls.len()).map(|c| self.event(c, ty)).collect();
        self.publisher.publish(&Value::Array(batch)).await;
    }

    /// What every subscriber must have got of its calls.
    fn expected(&self, into: &mut PerCall) {
        for (call, &n) in self.calls.iter().zip(&self.next) {
            into.insert(call.clone(), (0..n).collect());
        }
    }
}

/// Runs every feed at once, as fast as each is answered, until `done` holds for a
/// scrape (within `PHASE`).
async fn burst(
    server: &TestServer,
    feeds: Vec<Feed>,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Vec<Feed> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = feeds
        .into_iter()
        .map(|mut feed| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    feed.round("call.progress").await;
                }
                feed
            })
        })
        .collect();
    let deadline = Instant::now() + PHASE;
    while !done(&scrape(server).await) {
        assert!(
            Instant::now() < deadline,
            "never happened within {PHASE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut feeds = Vec::new();
    for task in tasks {
        feeds.push(task.await.expect("a feed"));
    }
    feeds
}

/// One event every `pause`, taking the feeds' calls in turn, until `done` holds
/// for a scrape (within `PHASE`).
async fn lull(server: &TestServer, feeds: &mut [Feed], what: &str, done: impl Fn(&Scrape) -> bool) {
    let deadline = Instant::now() + PHASE;
    for n in 0.. {
        let feed = &mut feeds[n % FEEDS];
        let event = feed.event((n / FEEDS) % CALLS_PER_FEED, "call.progress");
        feed.publisher.publish(&event).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        if n % 5 == 4 && done(&scrape(server).await) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never happened within {PHASE:?}: {what}"
        );
    }
}

/// Adds an event (a JSON object as delivered) to `got`; true once it was the
/// `call.completed` of the last of `calls` calls still open.
fn take(got: &mut PerCall, completed: &mut usize, event: &Value, calls: usize) -> bool {
    let (Some(call), Some(seq)) = (event["call_sid"].as_str(), event["data"]["seq"].as_u64())
    else {
        return false;
    };
    got.entry(call.to_string()).or_default().push(seq);
    if event["type"] == "call.completed" {
        *completed += 1;
    }
    *completed == calls
}

/// Three subscribers, one per transport (named clients `sse`, `ws`, `lp`), each
/// reading in its own task until every call completed.
struct Readers {
    tasks: Vec<(&'static str, tokio::task::JoinHandle<PerCall>)>,
}

impl Readers {
    /// Opens the three with `query` and starts reading until `calls` calls completed.
    async fn open(server: &Arc<TestServer>, query: &str, calls: usize) -> Readers {
        let (mut sse, _) = server.stream_basic(0, &format!("client=sse&{query}")).await;
        let sse_reader = tokio::spawn(async move {
            let (mut got, mut completed) = (PerCall::new(), 0);
            let deadline = tokio::time::Instant::now() + 4 * PHASE;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let event = sse.next_event(left).await.expect("an SSE event");
                if take(&mut got, &mut completed, &event.data, calls) {
                    return got;
                }
            }
        });
        let mut ws = ws_connect(
            server,
            &format!("{}?client=ws&{query}", server.stream_path(0)),
            server.creds(0),
        )
        .await
        .expect("a WebSocket");
        let open = ws.expect_json().await;
        assert_eq!(open["type"], "stream.open", "{open}");
        let ws_reader = tokio::spawn(async move {
            let (mut got, mut completed) = (PerCall::new(), 0);
            loop {
                let frame = ws.next_json(4 * PHASE).await.expect("a WebSocket frame");
                if take(&mut got, &mut completed, &frame, calls) {
                    return got;
                }
            }
        });
        let poll_base = format!(
            "{}?transport=poll&client=lp&{query}&timeout=1",
            server.stream_path(0)
        );
        let poll_path = move |cursor: &Option<String>| {
            let base = poll_base.clone();
            match cursor {
                Some(cursor) => format!("{base}&cursor={}", pct(cursor)),
                None => base,
            }
        };
        let (first, _) = poll_within(server, &poll_path(&None), server.creds(0), PHASE).await;
        let (events, mut cursor) = poll_body(&first);
        assert!(events.is_empty(), "nothing published yet");
        let poller = server.clone();
        let poll_reader = tokio::spawn(async move {
            let (mut got, mut completed) = (PerCall::new(), 0);
            let deadline = Instant::now() + 4 * PHASE;
            loop {
                assert!(
                    Instant::now() < deadline,
                    "long-poll never saw every call complete"
                );
                let (reply, _) =
                    poll_within(&poller, &poll_path(&cursor), poller.creds(0), PHASE).await;
                let (events, next) = poll_body(&reply);
                cursor = next.or(cursor);
                for event in &events {
                    if take(&mut got, &mut completed, event, calls) {
                        return got;
                    }
                }
            }
        });
        Readers {
            tasks: vec![
                ("sse", sse_reader),
                ("ws", ws_reader),
                ("poll", poll_reader),
            ],
        }
    }

    /// Waits for each reader: every call's events, once each and in order.
    async fn check(self, expected: &PerCall) {
        for (transport, reader) in self.tasks {
            let got = tokio::time::timeout(4 * PHASE, reader)
                .await
                .unwrap_or_else(|_| panic!("{transport}: never got every call's last event"))
                .expect("the reader");
            for (call, want) in expected {
                assert_eq!(
                    got.get(call),
                    Some(want),
                    "{transport}: call {call}, in order and once"
                );
            }
        }
    }
}

/// The three readers' sessions.
const READERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_and_proxies_scale_up_and_down_under_load_and_every_subscriber_gets_every_event_once_in_order(
) {
    let hold = ShardHold::new();
    let server = Arc::new(TestServer::start(|c| {
        c.shard_hold = Some(hold.clone());
        c.shards = 1;
        c.proxies = 1;
        c.workers = 2;
        c.admin_token = TOKEN.into();
        c.retention.max_events = 200_000;
        c.stream.heartbeat_secs = 1;
        c.scaling.shards_min = 1;
        c.scaling.shards_max = SHARDS_MAX;
        c.scaling.shard_high_events_per_sec = 300;
        c.scaling.shard_low_events_per_sec = 100;
        c.scaling.proxies_min = 1;
        c.scaling.proxies_max = 2;
        c.scaling.sessions_per_proxy = sessions_per_proxy(READERS);
        c.scaling.retire_after_secs = 0;
        c.scaling.interval_ms = 100;
        c.limits.publish_per_sec = 1_000_000;
        c.limits.publish_burst = 1_000_000;
    }));
    let readers = Readers::open(&server, "types=call.*", CALLS).await;
    let mut feeds: Vec<Feed> = (0..FEEDS).map(|_| Feed::new(&server)).collect();
    let most = (SHARDS_MAX - 1) as f64;
    for cycle in 1..=2 {
        if cycle == 2 {
            // The one shard left stops after its next batch, at the start of the
            // burst, and is restarted in place.
            let only = topology(&server).await["shards"][0]["index"].clone();
            let id = only.as_u64().expect("a shard id");
            hold.stop_shard(u16::try_from(id).expect("a shard id"));
        }
        let cycle = f64::from(cycle);
        feeds = burst(&server, feeds, "shards added for a burst", |s| {
            changes(s, "added") >= cycle * most
        })
        .await;
        let topology = topology(&server).await;
        let shards = topology["shards"].as_array().expect("shards");
        assert_eq!(shards.len(), SHARDS_MAX, "{topology}");
        let slots: u64 = shards
            .iter()
            .map(|s| s["slots"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(slots, 1024, "every slot has one owner: {topology}");
        // While the lull retires shards, a proxy is added and one retired, the
        // readers' sessions moving with it.
        let cycled = AtomicBool::new(false);
        let lulled = lull(&server, &mut feeds, "shards retired in a lull", |s| {
            cycled.load(Ordering::Relaxed)
                && changes(s, "retired") >= cycle * most
                && s.value("switchboard_shards", &[]) == 1.0
        });
        let proxies = async {
            proxy_cycle(&server, &hold, cycle, READERS).await;
            cycled.store(true, Ordering::Relaxed);
        };
        tokio::join!(lulled, proxies);
    }
    // Every call ends with one last event, then the subscribers must hold it all.
    let mut expected = PerCall::new();
    for feed in &mut feeds {
        feed.round("call.completed").await;
        feed.expected(&mut expected);
    }
    readers.check(&expected).await;
    // The lulls' retirements stopped every shard they took out of the map (the
    // gauge counts running shard actors), and the last burst may add again.
    let s = scrape(&server).await;
    assert!(changes(&s, "added") >= 2.0 * most);
    assert_eq!(changes(&s, "retired"), 2.0 * most);
    assert_eq!(proxy_changes(&s, "added"), 2.0);
    assert_eq!(proxy_changes(&s, "retired"), 2.0);
    assert!(s.value("switchboard_sessions_moved_total", &[]) >= 2.0 * READERS as f64);
    let restarts = [("actor", "shard"), ("cause", "stop")];
    assert_eq!(s.value("switchboard_actor_restarts_total", &restarts), 1.0);
    let topology = topology(&server).await;
    assert_eq!(topology["proxies"].as_array().map(Vec::len), Some(1));
    assert_eq!(topology["totals"]["sessions"], READERS, "{topology}");
}

/// A bug that panics while a shard routes a batch (replayed with the test hook
/// that poisons an event type) costs that batch only: the shard keeps its calls,
/// its registrations and its queue, and the next publishes are routed as ever.
#[tokio::test]
async fn a_batch_that_panics_is_dropped_and_its_shard_goes_on() {
    let hold = ShardHold::new();
    hold.poison("test.poison");
    let server = TestServer::start(|c| {
        c.shards = 1;
        c.shard_hold = Some(hold.clone());
    });
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();
    let marked = |n: u32| json!({"type": "call.progress", "call_sid": call, "data": {"n": n}});
    server.publish(0, &marked(1)).await;
    // Accepted (the shard had its queue slot), then lost to the panic as a whole.
    server
        .publish(
            0,
            &json!([marked(2), {"type": "test.poison", "call_sid": call}, marked(3)]),
        )
        .await;
    for n in 4..=20 {
        server.publish(0, &marked(n)).await;
    }
    let got = stream.until_marker("20", WAIT).await;
    let markers: Vec<String> = got.iter().filter_map(|e| e.marker()).collect();
    let want: Vec<String> = std::iter::once(1)
        .chain(4..=20)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(markers, want);
    let s = scrape(&server).await;
    assert_eq!(s.value("switchboard_shard_panics_total", &[]), 1.0);
    assert_eq!(
        s.value("switchboard_shards", &[]),
        1.0,
        "the shard is still there"
    );
    crate::common::channels::eventually_metrics(&server, "the dropped batch's slot is back", |s| {
        s.value(
            "switchboard_mailbox_depth",
            &[("actor", "shard"), ("index", "0")],
        ) == 0.0
    })
    .await;
}

/// A shard whose actor stops (as one killed by a bug would) is restarted in place
/// by its supervisor: the same slots, the same retention, the publishes queued for
/// it meanwhile; subscribers see nothing but their events, once and in order, and
/// a replay afterwards still finds what the shard retained before.
#[tokio::test]
async fn a_shard_that_stops_is_restarted_with_its_slots_and_retention() {
    let hold = ShardHold::new();
    let server = TestServer::start(|c| {
        c.shards = 2;
        c.shard_hold = Some(hold.clone());
    });
    let (mut stream, _) = server.stream_basic(0, "types=call.*").await;
    let calls: Vec<String> = (0..8).map(|_| new_call_sid()).collect();
    let round = |n: u32| {
        let batch: Vec<Value> = calls
            .iter()
            .map(|call| json!({"type": "call.progress", "call_sid": call, "data": {"n": n.to_string()}}))
            .collect();
        Value::Array(batch)
    };
    for n in 1..=10 {
        server.publish(0, &round(n)).await;
    }
    hold.stop_shard(0);
    for n in 11..=30 {
        server.publish(0, &round(n)).await;
    }
    // Read until every call's last event came.
    let mut finished = 0;
    let got = stream
        .collect_until(
            |event| {
                finished += usize::from(event.marker().as_deref() == Some("30"));
                finished == calls.len()
            },
            WAIT,
        )
        .await
        .expect("every call's last event");
    let per_call = by_call(&got);
    for call in &calls {
        assert_eq!(
            per_call.get(call),
            Some(&(1..=30).collect::<Vec<u64>>()),
            "call {call}: every event once, in order"
        );
    }
    let s = scrape(&server).await;
    assert_eq!(
        s.value(
            "switchboard_actor_restarts_total",
            &[("actor", "shard"), ("cause", "stop")]
        ),
        1.0
    );
    assert_eq!(s.value("switchboard_shards", &[]), 2.0);
    // Its retention came through the restart: a replay has every call from 1.
    let (mut replay, _) = server
        .stream_basic(0, "client=late&types=call.*&cursor=earliest")
        .await;
    let mut replayed = 0;
    let got = replay
        .collect_until(
            |_| {
                replayed += 1;
                replayed == 30 * calls.len()
            },
            WAIT,
        )
        .await
        .expect("everything retained, replayed");
    assert_eq!(by_call(&got), per_call);
}

/// The markers of each call's events, in arrival order.
fn by_call(events: &[crate::common::sse::SseEvent]) -> PerCall {
    let mut per_call = PerCall::new();
    for event in events {
        let call = event.data["call_sid"].as_str().expect("a call").to_string();
        let n: u64 = event.marker().expect("a marker").parse().expect("a number");
        per_call.entry(call).or_default().push(n);
    }
    per_call
}

/// Sessions put on a newly added proxy in a proxy cycle over `readers` sessions:
/// one more than the readers, so the readers' proxy is the least loaded when the
/// sessions thin out.
fn newcomers(readers: usize) -> usize {
    readers + 1
}

/// `scaling.sessions_per_proxy` for a proxy cycle over `readers` sessions: the
/// readers alone on one proxy and the newcomers on the other then fit in one proxy
/// at half, so the readers' proxy retires and their sessions move.
fn sessions_per_proxy(readers: usize) -> usize {
    2 * (readers + newcomers(readers))
}

fn proxy_changes(s: &Scrape, change: &str) -> f64 {
    s.value("switchboard_proxy_changes_total", &[("change", change)])
}

/// `n` streams of server-made clients (each a session that ends with its
/// connection), opened one after another so each lands where the directory says
/// at that moment.
async fn fillers(server: &TestServer, n: usize) -> Vec<crate::common::sse::SseStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(server.stream_basic(0, "types=filler.none").await.0);
    }
    streams
}

/// One proxy cycle, with the `readers` sessions alone on the only proxy: fillers
/// fill it so a proxy is added, newcomers go to that one, the fillers leave so the
/// readers' proxy (now the least loaded, and the sessions fit one proxy) is retired
/// and the readers' sessions move; then the newcomers leave. The move itself is
/// held at its cut (`hold`) for a while with events flowing, so both proxies hold
/// events for the moving sessions when it is cut.
async fn proxy_cycle(server: &TestServer, hold: &ShardHold, cycle: f64, readers: usize) {
    let full = fillers(server, sessions_per_proxy(readers) - readers).await;
    eventually_metrics(server, "a proxy added for the full one", |s| {
        proxy_changes(s, "added") >= cycle
    })
    .await;
    let newcomers = fillers(server, newcomers(readers)).await;
    hold.hold_watermarks();
    drop(full);
    let deadline = Instant::now() + WAIT;
    while hold.watermarks_waiting() == 0 {
        assert!(Instant::now() < deadline, "no session move began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.release_watermarks();
    eventually_metrics(server, "the readers' proxy retired, sessions moved", |s| {
        proxy_changes(s, "retired") >= cycle
            && s.value("switchboard_sessions_moved_total", &[]) >= cycle * readers as f64
    })
    .await;
    drop(newcomers);
    eventually_metrics(server, "the readers alone on one proxy", |s| {
        s.value("switchboard_sessions", &[]) == readers as f64
            && s.value("switchboard_proxies", &[]) == 1.0
    })
    .await;
}

/// Publishes a round of every feed every few milliseconds until stopped.
fn steady(feeds: Vec<Feed>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Feed>> {
    tokio::spawn(async move {
        let mut feeds = feeds;
        while !stop.load(Ordering::Relaxed) {
            for feed in &mut feeds {
                feed.round("call.progress").await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        feeds
    })
}

/// Sessions of the readers and the webhook client `hook`.
const HOOKED: usize = 4;

/// The proxy supervisor (issue 10): proxies are added as sessions fill them, and an
/// underused one is retired with its sessions moved to another, twice over, while
/// events flow: every subscriber (SSE, long-poll, WebSocket, webhook) gets every
/// event once in each call's order, and the moved clients' control channel works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retired_proxy_moves_its_sessions_streams_and_all() {
    let hold = ShardHold::new();
    let server = Arc::new(TestServer::start(|c| {
        c.shard_hold = Some(hold.clone());
        c.shards = 2;
        c.proxies = 1;
        c.admin_token = TOKEN.into();
        c.stream.heartbeat_secs = 1;
        c.scaling.proxies_min = 1;
        c.scaling.proxies_max = 2;
        c.scaling.sessions_per_proxy = sessions_per_proxy(HOOKED);
        c.scaling.retire_after_secs = 0;
        c.scaling.interval_ms = 50;
    }));
    let readers = Readers::open(&server, "types=call.*", 2 * CALLS_PER_FEED).await;
    let receiver = HookReceiver::start(0).await;
    let hook = create_sub(
        &server,
        0,
        "hook",
        &[("types", "call.*"), ("callback", &receiver.url("/hook"))],
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let feeds = (0..2).map(|_| Feed::new(&server)).collect();
    let publishing = steady(feeds, stop.clone());
    for cycle in 1..=2 {
        proxy_cycle(&server, &hold, f64::from(cycle), HOOKED).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut feeds = publishing.await.expect("the publisher");
    let mut expected = PerCall::new();
    for feed in &mut feeds {
        feed.round("call.completed").await;
        feed.expected(&mut expected);
    }
    readers.check(&expected).await;
    let last = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["type"] == "call.completed")
            .count()
    };
    let requests = receiver
        .wait_for(WAIT, "every call's last event", |reqs| {
            last(&hooked(reqs)) == expected.len()
        })
        .await;
    let (mut got, mut completed) = (PerCall::new(), 0);
    for event in hooked(&requests) {
        take(&mut got, &mut completed, &event, expected.len());
    }
    assert_eq!(
        got, expected,
        "webhook: every event once, in each call's order"
    );

    // The moved webhook client's control channel answers from its new proxy.
    let path = format!("{}/{}", subs_path(&server, 0, "hook"), sid_of(&hook));
    let listed = request(&server, reqwest::Method::GET, &path, server.creds(0), None).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["sid"], hook["sid"]);
    let topology = topology(&server).await;
    let proxies = topology["proxies"].as_array().expect("proxies");
    assert_eq!(proxies.len(), 1, "{topology}");
    assert_eq!(proxies[0]["index"], 2, "the third proxy made: {topology}");
    assert_eq!(proxies[0]["sessions"], HOOKED, "{topology}");
}

/// The events of every webhook request, in the order they were received.
fn hooked(requests: &[crate::common::channels::HookRequest]) -> Vec<Value> {
    requests.iter().flat_map(|r| r.events()).collect()
}
