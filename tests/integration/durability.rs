//! A durable single node (API.md §8 "Durability", issue 12, docs/durability.md):
//! with `data_dir`, what a node keeps survives `kill -9`. Each test runs the real
//! binary, kills it outright (SIGKILL) and starts it again on the same directory:
//!
//! - accepted events: a client away during the kill resumes with its old
//!   `Last-Event-ID` and gets exactly what it missed, in order, and
//!   `cursor=earliest` replays what was kept;
//! - twenty kills at random points of a steady publish lose no acknowledged
//!   event;
//! - a provisioned number keeps routing calls to its application, with its sid.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use crate::common::call_sequences::{
    assert_each_once_in_call_order, last_cursor, publish_calls, read_calls, until_calls_end, CALLS,
    PER_CALL,
};
use crate::common::channels::{marked, markers, open_sse_with, scrape};
use crate::common::twilio::{fresh_number, Api, AppServer};
use crate::common::{http_client, new_call_sid, random_hex, SseEvent, WAIT};
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
        let env = [("SWITCHBOARD_DATA_DIR", self.dir_text.as_str())];
        let server = process::spawn_with(
            &self.sid,
            &self.token,
            &Options {
                config,
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
    let mut back = open_sse_with(&h2, &path, h2.creds(0), &[("Last-Event-ID", &cursor)])
        .await
        .unwrap_or_else(|reply| panic!("resume: {} {}", reply.status, reply.text()));
    back.expect_open().await;
    let after = until_calls_end("client after the restart", &mut back, &calls).await;
    let mut all = before.clone();
    all.extend(after.iter().cloned());
    assert_each_once_in_call_order("client across the kill", &all, &calls, &published);

    let earliest = format!(
        "{}?client=late&types=call.*&cursor=earliest",
        h2.stream_path(0)
    );
    let mut late = open_sse_with(&h2, &earliest, h2.creds(0), &[])
        .await
        .unwrap_or_else(|reply| panic!("earliest: {} {}", reply.status, reply.text()));
    late.expect_open().await;
    let replayed = until_calls_end("cursor=earliest", &mut late, &calls).await;
    assert_each_once_in_call_order("cursor=earliest", &replayed, &calls, &published);

    drop(back);
    let mut again = open_sse_with(
        &h2,
        &path,
        h2.creds(0),
        &[("Last-Event-ID", &last_cursor(&after))],
    )
    .await
    .unwrap_or_else(|reply| panic!("second resume: {} {}", reply.status, reply.text()));
    again.expect_open().await;
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
    let mut audit = open_sse_with(&handle, &path, handle.creds(0), &[])
        .await
        .unwrap_or_else(|reply| panic!("earliest: {} {}", reply.status, reply.text()));
    audit.expect_open().await;
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
