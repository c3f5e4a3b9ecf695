//! A durable single node (docs/api.md §8 "Durability", issue 12, docs/durability.md):
//! with `data_dir`, what a node keeps survives `kill -9`. Each test runs the real
//! binary, kills it outright (SIGKILL) and starts it again on the same directory:
//!
//! - accepted events: a client away during the kill resumes with its old
//!   `Last-Event-ID` and gets exactly what it missed, in order, and
//!   `cursor=earliest` replays what was kept;
//! - twenty kills at random points of a steady publish lose no acknowledged
//!   event;
//! - a webhook subscription's queued events are delivered after the restart,
//!   and those its callback had acknowledged are not sent again; a client's
//!   control-channel subscription is found by a stream URL without filters;
//! - a provisioned number keeps routing calls to its application, with its sid;
//! - ended calls and messages are listed as before; a call the kill interrupted
//!   is `failed`, with a `call.end` saying so.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use crate::common::call_sequences::{
    assert_each_once_in_call_order, last_cursor, publish_calls, read_calls, until_calls_end, CALLS,
    PER_CALL,
};
use crate::common::channels::{
    create_sub, eventually_metrics, marked, markers, open_sse_with, request, scrape, sid_of,
    subs_path, HookReceiver, HookRequest,
};
use crate::common::twilio::{fresh_number, Api, AppServer};
use crate::common::{http_client, new_call_sid, random_hex, SseEvent, SseStream, TestServer, WAIT};
use crate::process::{self, Options};

/// A fresh account and data directory for one test; the directory is removed
/// when this is dropped.
struct Durable {
    sid: String,
    token: String,
    dir: std::path::PathBuf,
    dir_text: String,
}

impl Durable {
    fn new() -> Durable {
        let dir = std::env::temp_dir().join(format!("sb-data-{}", random_hex(8)));
        Durable {
            sid: format!("AC{}", random_hex(16)),
            token: random_hex(16),
            dir_text: dir.to_string_lossy().into_owned(),
            dir,
        }
    }

    /// The real binary on this directory, once ready, with `config` appended.
    async fn start(&self, config: &str) -> process::Server {
        self.start_with("", config).await
    }

    /// [`Durable::start`] with top-level keys `root` too.
    async fn start_with(&self, root: &str, config: &str) -> process::Server {
        let env = [("SWITCHBOARD_DATA_DIR", self.dir_text.as_str())];
        let server = process::spawn_with(
            &self.sid,
            &self.token,
            &Options {
                config,
                root,
                env: &env,
                ..Default::default()
            },
        );
        process::wait_ready(&http_client(), &server.base).await;
        server
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client reads part of five calls, goes away; the rest is published and the
/// node killed outright. On the restarted node the client's `Last-Event-ID` from
/// before the kill gets exactly what it missed, each event once and every call in
/// order; `cursor=earliest` replays all of it; a resume from the newest cursor
/// repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_survive_kill_9_and_a_client_resumes_with_its_last_event_id() {
    let node = Durable::new();
    let mut first = node.start("").await;
    let h1 = first.handle();
    let query = "client=away&types=call.*";
    let (mut away, _) = h1.stream_basic(0, query).await;
    let calls: Vec<String> = (0..CALLS).map(|_| new_call_sid()).collect();
    let half = PER_CALL / 2;
    let mut published = publish_calls(&h1, &calls, 0, half).await;
    let before = read_calls(
        "client before the kill",
        &mut away,
        &calls,
        CALLS * half / 2,
    )
    .await;
    let cursor = last_cursor(&before);
    drop(away);
    published.extend(publish_calls(&h1, &calls, half, PER_CALL).await);
    first.kill();

    let second = node.start("").await;
    let h2 = second.handle();
    let path = format!("{}?{query}", h2.stream_path(0));
    let (mut back, _) = stream(&h2, &path, Some(&cursor)).await;
    let after = until_calls_end("client after the restart", &mut back, &calls).await;
    let mut all = before.clone();
    all.extend(after.iter().cloned());
    assert_each_once_in_call_order("client across the kill", &all, &calls, &published);

    let earliest = format!(
        "{}?client=late&types=call.*&cursor=earliest",
        h2.stream_path(0)
    );
    let (mut late, _) = stream(&h2, &earliest, None).await;
    let replayed = until_calls_end("cursor=earliest", &mut late, &calls).await;
    assert_each_once_in_call_order("cursor=earliest", &replayed, &calls, &published);

    drop(back);
    let (mut again, _) = stream(&h2, &path, Some(&last_cursor(&after))).await;
    h2.publish(0, &marked("call.end", &new_call_sid(), "tail"))
        .await;
    let got = again.until_marker("tail", WAIT).await;
    assert_eq!(
        markers(&got),
        ["tail"],
        "a resume from the newest cursor repeats nothing"
    );
    let metrics = scrape(&h2).await;
    let kept = metrics.series.get("switchboard_store_events").copied();
    assert_eq!(
        kept,
        Some((CALLS * PER_CALL + 1) as f64),
        "the log's size is exported"
    );
}

/// The events' markers of the requests a webhook receiver answered 200, in order.
fn acked_markers(requests: &[HookRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.answered == 200)
        .flat_map(|r| r.events())
        .map(|e| e["data"]["n"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A webhook's callback acknowledges three events, then fails; four more
/// are queued, retried, when the node is killed outright. The node and the
/// callback come back: the four are delivered in order, then what is published
/// next, and none of the three acknowledged ones again. A client's stream
/// subscription made on the control channel is kept too: after the restart the
/// control channel lists it, with its sid, and a stream URL naming only the
/// client gets its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_queued_events_and_a_control_channel_subscription_survive_kill_9() {
    let node = Durable::new();
    let config = "[egress]\nallow_private_networks = true\n[webhook]\ninitial_backoff_ms = 20\nmax_backoff_secs = 1\n";
    let mut first = node.start(config).await;
    let h1 = first.handle();
    let receiver = HookReceiver::start(0).await;
    let port = receiver.port;
    let hook = create_sub(
        &h1,
        0,
        "api",
        &[("types", "call.*"), ("callback", &receiver.url("/hook"))],
    )
    .await;
    let desk = create_sub(&h1, 0, "desk", &[("types", "call.*")]).await;
    let call = new_call_sid();
    for n in 0..3 {
        h1.publish(0, &marked("call.progress", &call, &format!("a{n}")))
            .await;
    }
    receiver
        .wait_for(WAIT, "acknowledged a0..a2", |r| acked_markers(r).len() == 3)
        .await;
    // The acknowledgement is taken (and its cursor queued for the store) before
    // the pending gauge drops.
    eventually_metrics(&h1, "no webhook event pending", |m| {
        m.value("switchboard_webhook_pending_events", &[]) == 0.0
    })
    .await;
    receiver.fail_from_now();
    for n in 0..4 {
        h1.publish(0, &marked("call.progress", &call, &format!("b{n}")))
            .await;
    }
    receiver
        .wait_for(WAIT, "refused b0 at least once", |r| {
            r.iter().any(|r| r.answered == 500)
        })
        .await;
    first.kill();
    drop(receiver);

    let receiver = HookReceiver::start_on(port, 0).await;
    let second = node.start(config).await;
    let h2 = second.handle();
    h2.publish(0, &marked("call.end", &call, "c0")).await;
    let got = receiver
        .wait_for(WAIT, "delivered b0..b3 and c0", |r| {
            acked_markers(r).last().map(String::as_str) == Some("c0")
        })
        .await;
    assert_eq!(
        acked_markers(&got),
        ["b0", "b1", "b2", "b3", "c0"],
        "what was queued, in order, then the new event; nothing acknowledged before"
    );

    let listed = request(
        &h2,
        reqwest::Method::GET,
        &subs_path(&h2, 0, "api"),
        h2.creds(0),
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["subscriptions"][0]["sid"], hook["sid"]);
    let path = format!("{}?client=desk", h2.stream_path(0));
    let (mut stream, open) = stream(&h2, &path, None).await;
    let subscriptions = open.data["data"]["subscriptions"].to_string();
    assert!(
        subscriptions.contains(&sid_of(&desk)),
        "the kept subscription, with its sid: {subscriptions}"
    );
    h2.publish(0, &marked("call.start", &new_call_sid(), "d0"))
        .await;
    let events = stream.until_marker("d0", WAIT).await;
    assert_eq!(markers(&events), ["d0"]);
}

/// An open stream of account 0 at `path` (with `Last-Event-ID` when given),
/// and its `stream.open`.
async fn stream(
    server: &TestServer,
    path: &str,
    last_event_id: Option<&str>,
) -> (SseStream, SseEvent) {
    let headers: Vec<(&str, &str)> = last_event_id
        .map(|id| ("Last-Event-ID", id))
        .into_iter()
        .collect();
    let mut stream = open_sse_with(server, path, server.creds(0), &headers)
        .await
        .unwrap_or_else(|reply| panic!("{path}: {} {}", reply.status, reply.text()));
    let open = stream.expect_open().await;
    (stream, open)
}

/// Rounds of the kill test.
const KILLS: usize = 20;

/// Publishers during each round, each on its own call.
const PUBLISHERS: usize = 2;

/// Most requests one publisher sends in a round (bounds the loop).
const MAX_PER_ROUND: usize = 3000;

/// What one publisher got acknowledged: `(id, marker)` in the order of the 202s.
type Acked = Vec<(String, String)>;

/// Publishes one event a request on `call` until a request fails (the node was
/// killed) or `MAX_PER_ROUND` were sent; returns what was acknowledged.
async fn publish_until_killed(
    base: String,
    sid: String,
    token: String,
    call: String,
    round: usize,
) -> Acked {
    let client = http_client();
    let url = format!("{base}/v1/Accounts/{sid}/Events");
    let mut acked = Vec::new();
    for k in 0..MAX_PER_ROUND {
        let marker = format!("{round}-{k}");
        let body = json!({"type": "call.progress", "call_sid": call, "data": {"marker": marker}});
        let sent = client
            .post(&url)
            .basic_auth(&sid, Some(&token))
            .json(&body)
            .timeout(WAIT)
            .send()
            .await;
        let Ok(response) = sent else { break };
        if response.status() != 202 {
            break;
        }
        let Ok(reply) = response.json::<Value>().await else {
            break;
        };
        let id = reply["ids"][0].as_str().expect("a 202 names its id");
        acked.push((id.to_string(), marker));
    }
    acked
}

/// A steady publish (two publishers, one event a request) is interrupted twenty
/// times by `kill -9` at a random moment, and the node started again on the same
/// directory each time. Afterwards `cursor=earliest` holds every event that was
/// ever acknowledged, once, and each publisher's events in the order of their
/// 202s. (An event kept but killed before its 202 may show too: it was never
/// acknowledged, so the publisher would send it again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_missing_after_twenty_kills_at_random_points() {
    let node = Durable::new();
    let config = "[retention]\nmax_events = 200000\n";
    let calls: Vec<String> = (0..PUBLISHERS).map(|_| new_call_sid()).collect();
    let mut acked: Vec<Acked> = vec![Vec::new(); PUBLISHERS];
    for round in 0..KILLS {
        let mut server = node.start(config).await;
        let publishers: Vec<_> = calls
            .iter()
            .map(|call| {
                tokio::spawn(publish_until_killed(
                    server.base.clone(),
                    node.sid.clone(),
                    node.token.clone(),
                    call.clone(),
                    round,
                ))
            })
            .collect();
        let pause = rand::thread_rng().gen_range(20..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.kill();
        for (publisher, acked) in publishers.into_iter().zip(&mut acked) {
            acked.extend(publisher.await.expect("publisher task"));
        }
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(
        total > KILLS,
        "the publish was steady: {total} acknowledged"
    );

    let server = node.start(config).await;
    let handle = server.handle();
    let path = format!(
        "{}?client=audit&types=call.*&cursor=earliest",
        handle.stream_path(0)
    );
    let (mut audit, _) = stream(&handle, &path, None).await;
    let mut missing: HashSet<&str> = acked.iter().flatten().map(|(id, _)| id.as_str()).collect();
    let mut seen: Vec<SseEvent> = Vec::new();
    let deadline = Instant::now() + WAIT * 3;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = audit.next_event(left).await.unwrap_or_else(|error| {
            panic!(
                "{} of {total} acknowledged events never came back ({error}); e.g. {:?}",
                missing.len(),
                missing.iter().take(3).collect::<Vec<_>>()
            )
        });
        if let Some(id) = event.data["id"].as_str() {
            missing.remove(id);
        }
        seen.push(event);
    }
    let mut ids = HashSet::new();
    for event in &seen {
        let id = event.data["id"].as_str().unwrap_or_default();
        assert!(ids.insert(id.to_string()), "event {id} replayed twice");
    }
    for (call, acked) in calls.iter().zip(&acked) {
        let order: HashMap<&str, usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, e)| e.data["call_sid"].as_str() == Some(call.as_str()))
            .filter_map(|(n, e)| Some((e.data["id"].as_str()?, n)))
            .collect();
        let places: Vec<usize> = acked.iter().map(|(id, _)| order[id.as_str()]).collect();
        assert!(
            places.windows(2).all(|pair| pair[0] < pair[1]),
            "call {call}: acknowledged events out of their publish order"
        );
    }
}

#[tokio::test]
async fn a_provisioned_number_survives_kill_9_and_still_routes_calls() {
    let node = Durable::new();
    // The app runs on 127.0.0.1, which a configured account may not reach unless
    // private networks are allowed.
    let config = "[egress]\nallow_private_networks = true\n";
    let app = AppServer::start(&node.token);
    app.twiml("/voice", "<Response><Hangup/></Response>");

    let mut first = node.start(config).await;
    let handle = first.handle();
    let provisioned = Api::new(&handle, 0)
        .provision(&fresh_number(), &[("VoiceUrl", &app.url("/voice"))])
        .await;
    let number = provisioned["phone_number"]
        .as_str()
        .expect("a number")
        .to_string();
    first.kill();

    let second = node.start(config).await;
    let handle = second.handle();
    let api = Api::new(&handle, 0);
    let listed = api.get("IncomingPhoneNumbers.json").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let numbers: Vec<Value> = listed.json()["incoming_phone_numbers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(numbers.len(), 1, "the number, once: {numbers:?}");
    assert_eq!(numbers[0]["sid"], provisioned["sid"], "the same sid");
    assert_eq!(numbers[0]["voice_url"], provisioned["voice_url"]);

    let call = api.sim_call("+14155550199", &number).await;
    let request = app.first_request("/voice").await;
    request.assert_param("CallSid", &call);
    request.assert_param("To", &number);
    let metrics = scrape(&handle).await;
    let bytes = metrics
        .series
        .get("switchboard_store_bytes")
        .copied()
        .unwrap_or(0.0);
    assert!(bytes > 0.0, "the store's size is exported: {bytes}");
}

/// A completed call, a call still live and an SMS, then `kill -9`. After the
/// restart the completed call and the message read back as they were, and the
/// live call is `failed`, its `call.end` (published at the restart, marked
/// `interrupted`) on the event stream after the first call's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_and_interrupted_calls_and_messages_survive_kill_9() {
    let node = Durable::new();
    let config = "[egress]\nallow_private_networks = true\n";
    let app = AppServer::start(&node.token);
    app.twiml("/short", "<Response><Hangup/></Response>");
    app.twiml("/hold", r#"<Response><Pause length="3600"/></Response>"#);
    let mut first = node.start(config).await;
    let h1 = first.handle();
    let api = Api::new(&h1, 0);
    let short = api.voice_number(&app.url("/short")).await;
    let hold = api.voice_number(&app.url("/hold")).await;
    let ended = api.sim_call("+14155550100", &short).await;
    let ended_before = api.final_call(&ended).await;
    let live = api.sim_call("+14155550101", &hold).await;
    app.first_request("/hold").await;
    let sms = api.sim_message("+14155550102", &short, "hello").await;
    first.kill();

    let second = node.start(config).await;
    let h2 = second.handle();
    let api = Api::new(&h2, 0);
    let ended_after = api.call(&ended).await;
    for field in ["status", "start_time", "end_time", "duration", "from", "to"] {
        assert_eq!(ended_after[field], ended_before[field], "{field}");
    }
    assert_eq!(ended_after["status"], "completed");
    let live_after = api.call(&live).await;
    assert_eq!(live_after["status"], "failed", "{live_after}");
    assert!(live_after["end_time"].is_string(), "{live_after}");
    let message = api.get(&format!("Messages/{sms}.json")).await;
    assert_eq!(message.status, 200, "{}", message.text());
    assert_eq!(message.json()["body"], "hello");

    let path = format!(
        "{}?client=audit&types=call.end&cursor=earliest",
        h2.stream_path(0)
    );
    let (mut audit, _) = stream(&h2, &path, None).await;
    let mut ends = Vec::new();
    while ends.len() < 2 {
        let event = audit.next_event(WAIT).await.expect("two call.end events");
        if event.data["type"] == "call.end" {
            ends.push(event.data);
        }
    }
    assert_eq!(ends[0]["call_sid"], json!(ended));
    assert_eq!(ends[1]["call_sid"], json!(live));
    assert_eq!(ends[1]["data"]["status"], "failed");
    assert_eq!(ends[1]["data"]["interrupted"], true);
}

/// A webhook whose callback is down during a drain (SIGTERM): `webhook.drain_secs`
/// would wait a minute for it, but `drain_timeout_secs` ends the drain after one
/// second and the process exits 0; the restarted node delivers the queue, in
/// order: what a drain cannot deliver is kept, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_keeps_what_a_webhook_could_not_deliver() {
    let node = Durable::new();
    let config = "[egress]\nallow_private_networks = true\n[webhook]\ninitial_backoff_ms = 20\nmax_backoff_secs = 1\ndrain_secs = 60\n";
    let mut first = node.start_with("drain_timeout_secs = 1", config).await;
    let h1 = first.handle();
    let port = crate::common::free_port();
    let callback = format!("http://127.0.0.1:{port}/hook");
    create_sub(
        &h1,
        0,
        "api",
        &[("types", "call.*"), ("callback", &callback)],
    )
    .await;
    let call = new_call_sid();
    for n in 0..3 {
        h1.publish(0, &marked("call.progress", &call, &format!("q{n}")))
            .await;
    }
    first.sigterm();
    let status = first.wait_exit(WAIT).await;
    assert!(status.success(), "a drain exits 0: {status:?}");

    let receiver = HookReceiver::start_on(port, 0).await;
    let _second = node.start(config).await;
    let got = receiver
        .wait_for(WAIT, "delivered q0..q2", |r| acked_markers(r).len() >= 3)
        .await;
    assert_eq!(acked_markers(&got), ["q0", "q1", "q2"]);
}

/// Retention holds on disk: with `retention.store_max_events = 10`, fifty
/// events published leave at most ten kept once the writer has pruned (within
/// a second or so), the pruned ones counted; `cursor=earliest` replays only the
/// newest ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_prunes_to_its_retention_on_disk() {
    let node = Durable::new();
    let server = node.start("[retention]\nstore_max_events = 10\n").await;
    let handle = server.handle();
    let call = new_call_sid();
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.extend(
            handle
                .publish(0, &marked("call.progress", &call, &n.to_string()))
                .await,
        );
    }
    eventually_metrics(&handle, "the log pruned to ten events", |m| {
        m.value("switchboard_store_events", &[]) <= 10.0
            && m.value("switchboard_store_pruned_total", &[]) >= 40.0
    })
    .await;
    let path = format!(
        "{}?client=late&types=call.*&cursor=earliest",
        handle.stream_path(0)
    );
    let (mut late, _) = stream(&handle, &path, None).await;
    let got = late.until_marker("49", WAIT).await;
    let replayed: Vec<String> = got
        .iter()
        .filter(|e| e.data["type"] == "call.progress")
        .filter_map(|e| e.data["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(replayed, ids[40..], "the newest ten, in order");
}

/// Queues persist as Twilio's do: one made through the REST API and one an
/// `<Enqueue>` made are there after `kill -9`, with their sids, names and sizes
/// (empty: their callers' calls ended with the node), and a caller enqueued by
/// name joins the kept queue; a deleted queue stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_survive_kill_9_and_callers_join_them_again() {
    let node = Durable::new();
    let config = "[egress]\nallow_private_networks = true\n";
    let app = AppServer::start(&node.token);
    app.twiml(
        "/voice",
        r#"<Response><Enqueue>made-by-enqueue</Enqueue></Response>"#,
    );

    let mut first = node.start(config).await;
    let handle = first.handle();
    let api = Api::new(&handle, 0);
    let made = api
        .post(
            "Queues.json",
            &[("FriendlyName", "support"), ("MaxSize", "7")],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let doomed = api.post("Queues.json", &[("FriendlyName", "doomed")]).await;
    assert_eq!(doomed.status, 201, "{}", doomed.text());
    let number = fresh_number();
    api.provision(&number, &[("VoiceUrl", &app.url("/voice"))])
        .await;
    let caller = api.sim_call("+14155550199", &number).await;
    app.first_request("/voice").await;
    let deadline = Instant::now() + WAIT;
    let by_enqueue = loop {
        let listed = api.get("Queues.json").await.json();
        let found = listed["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| q["friendly_name"] == json!("made-by-enqueue"))
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no queue made by Enqueue: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(by_enqueue["current_size"], json!(1), "{by_enqueue}");
    let doomed_sid = doomed.json()["sid"].as_str().unwrap_or_default().to_owned();
    let deleted = request(
        &handle,
        reqwest::Method::DELETE,
        &api.path(&format!("Queues/{doomed_sid}.json")),
        handle.creds(0),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    first.kill();

    let second = node.start(config).await;
    let handle = second.handle();
    let api = Api::new(&handle, 0);
    let listed = api.get("Queues.json").await.json();
    let kept: Vec<Value> = listed["queues"].as_array().cloned().unwrap_or_default();
    let summary: Vec<Value> = kept
        .iter()
        .map(|q| {
            json!([
                q["sid"],
                q["friendly_name"],
                q["max_size"],
                q["current_size"]
            ])
        })
        .collect();
    assert_eq!(
        summary,
        [
            json!([made.json()["sid"], "support", 7, 0]),
            json!([by_enqueue["sid"], "made-by-enqueue", 1000, 0]),
        ],
        "both kept, empty, the deleted one gone; the caller {caller} ended with the node"
    );
    let call = api.sim_call("+14155550199", &number).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let queue = api
            .get(&format!(
                "Queues/{}.json",
                by_enqueue["sid"].as_str().unwrap_or_default()
            ))
            .await
            .json();
        if queue["current_size"] == json!(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{call} never joined the kept queue: {queue}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        api.get("Queues.json").await.json()["queues"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "joined the kept queue rather than making another"
    );
}
