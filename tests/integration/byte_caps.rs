//! Issue #8 point 9, replayed over HTTP: a slow reader was bounded by event
//! count only, so one long-poll answer or SSE chunk could carry megabytes. Now
//! a long-poll response (and an SSE chunk) carries at most 256 KiB of events,
//! at least one event even when that one is larger, and the rest follows from
//! the cursor with no gap and no duplicate.

use serde_json::{json, Value};

use crate::common::channels::{marked, markers, poll_body, poll_within, value_markers};
use crate::common::{new_call_sid, TestServer, WAIT};

/// The cap the contract leaves to us: 256 KiB per long-poll response or SSE chunk.
const CAP: usize = 256 * 1024;

fn padded(call: &str, n: usize, pad: usize) -> Value {
    let mut event = marked("call.progress", call, &n.to_string());
    event["data"]["pad"] = json!("x".repeat(pad));
    event
}

/// Polls `client` from `cursor` until `want` events came (bounded), returning
/// each response's events and body size.
async fn poll_all(
    server: &TestServer,
    client: &str,
    mut cursor: String,
    want: usize,
) -> Vec<(Vec<Value>, usize)> {
    let mut answers = Vec::new();
    let mut got = 0;
    for _ in 0..(want + 5) {
        let pq = format!(
            "{}?client={client}&transport=poll&timeout=2&cursor={cursor}",
            server.stream_path(0)
        );
        let (reply, _) = poll_within(server, &pq, server.creds(0), WAIT).await;
        let (events, next) = poll_body(&reply);
        cursor = next.expect("a poll answer carries a cursor");
        got += events.len();
        answers.push((events, reply.body.len()));
        if got >= want {
            return answers;
        }
    }
    panic!(
        "{want} events never arrived by poll; answers: {:?}",
        answers.len()
    );
}

async fn start_client(server: &TestServer, client: &str) -> String {
    let pq = format!(
        "{}?client={client}&transport=poll&timeout=0",
        server.stream_path(0)
    );
    let (reply, _) = poll_within(server, &pq, server.creds(0), WAIT).await;
    poll_body(&reply).1.expect("cursor")
}

#[tokio::test]
async fn a_long_poll_answer_is_capped_in_bytes_and_the_rest_follows_by_cursor() {
    let server = TestServer::start(|_| {});
    let cursor = start_client(&server, "bytes1").await;
    let call = new_call_sid();
    // Ten events of ~60 KB: about 600 KB pending, well over the cap.
    for n in 0..10 {
        server.publish(0, &padded(&call, n, 60_000)).await;
    }
    let answers = poll_all(&server, "bytes1", cursor, 10).await;
    for (events, size) in &answers {
        assert!(*size <= CAP, "a poll answer of {size} bytes");
        assert!(
            !events.is_empty(),
            "no empty answer while events are pending"
        );
    }
    assert!(answers.len() >= 3, "600 KB needs at least three answers");
    let all: Vec<Value> = answers.into_iter().flat_map(|(events, _)| events).collect();
    let want: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(value_markers(&all), want, "in order, no gap, no duplicate");
}

#[tokio::test]
async fn one_event_larger_than_the_cap_still_goes_alone() {
    let server = TestServer::start(|c| c.publish.max_event_bytes = 400_000);
    let cursor = start_client(&server, "bytes2").await;
    let call = new_call_sid();
    server.publish(0, &padded(&call, 0, 300_000)).await;
    server.publish(0, &padded(&call, 1, 10)).await;
    let answers = poll_all(&server, "bytes2", cursor, 2).await;
    assert_eq!(answers.len(), 2, "the big event alone, then the small one");
    assert_eq!(value_markers(&answers[0].0), vec!["0".to_string()]);
    assert!(answers[0].1 > CAP);
    assert_eq!(value_markers(&answers[1].0), vec!["1".to_string()]);
}

#[tokio::test]
async fn an_sse_reader_gets_every_event_across_capped_chunks() {
    let server = TestServer::start(|_| {});
    let (mut stream, _) = server.stream_basic(0, "client=bytes3&types=call.*").await;
    let call = new_call_sid();
    for n in 0..10 {
        server.publish(0, &padded(&call, n, 60_000)).await;
    }
    let got = stream.until_marker("9", WAIT).await;
    let want: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(markers(&got), want);
}
