//! Sequences of call events for tests that check nothing is lost, repeated or
//! reordered across a node's death: `CALLS` calls of `PER_CALL` events each,
//! marked `c-seq`, published interleaved and checked per call.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::Value;

use super::channels::{marked, markers};
use super::{SseEvent, SseStream, TestServer, WAIT};

pub const CALLS: usize = 5;
pub const PER_CALL: usize = 20;

/// Event `seq` of call `c`: `call.start`, `call.progress`…, `call.end`, marked
/// `c-seq`.
pub fn call_event(calls: &[String], c: usize, seq: usize) -> Value {
    let ty = match seq {
        0 => "call.start",
        s if s == PER_CALL - 1 => "call.end",
        _ => "call.progress",
    };
    marked(ty, &calls[c], &format!("{c}-{seq}"))
}

/// Publishes calls' events `from..to` on `node` as account 0, one event a request,
/// the calls interleaved; returns the ids of the 202s.
pub async fn publish_calls(
    node: &TestServer,
    calls: &[String],
    from: usize,
    to: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for seq in from..to {
        for c in 0..calls.len() {
            ids.extend(node.publish(0, &call_event(calls, c, seq)).await);
        }
    }
    ids
}

/// Reads `n` events of `calls` (warm-ups dropped) within `WAIT`.
pub async fn read_calls(
    who: &str,
    stream: &mut SseStream,
    calls: &[String],
    n: usize,
) -> Vec<SseEvent> {
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = stream
            .next_event(left)
            .await
            .unwrap_or_else(|err| panic!("{who}: {} of {n} events, then {err}", got.len()));
        if ev.data["call_sid"]
            .as_str()
            .is_some_and(|call| calls.iter().any(|c| c == call))
        {
            got.push(ev);
        }
    }
    got
}

/// The cursor of the last event read.
pub fn last_cursor(events: &[SseEvent]) -> String {
    events
        .last()
        .and_then(|e| e.id.clone())
        .expect("every event carries its cursor in `id:`")
}

/// Reads until every call of `calls` has delivered its `call.end` (bounded by
/// `WAIT`); returns the events of those calls (warm-ups and notices dropped).
pub async fn until_calls_end(who: &str, stream: &mut SseStream, calls: &[String]) -> Vec<SseEvent> {
    let events = stream
        .until_calls_end(calls, WAIT)
        .await
        .unwrap_or_else(|inc| panic!("{who}: not every call ended: {inc:?}"));
    events
        .into_iter()
        .filter(|e| {
            e.data["call_sid"]
                .as_str()
                .is_some_and(|call| calls.iter().any(|c| c == call))
        })
        .collect()
}

/// Every published id delivered exactly once, nothing else, and each call's
/// markers `c-0 … c-(PER_CALL-1)` in order.
#[track_caller]
pub fn assert_each_once_in_call_order(
    who: &str,
    events: &[SseEvent],
    calls: &[String],
    published: &[String],
) {
    let mut seen = HashSet::new();
    for e in events {
        let id = e.data["id"].as_str().unwrap_or("").to_string();
        assert!(seen.insert(id.clone()), "{who}: event {id} delivered twice");
    }
    let published: HashSet<String> = published.iter().cloned().collect();
    assert_eq!(
        published.len(),
        calls.len() * PER_CALL,
        "the 202s' ids repeat"
    );
    let lost: Vec<&String> = published.difference(&seen).collect();
    let foreign: Vec<&String> = seen.difference(&published).collect();
    assert!(
        lost.is_empty() && foreign.is_empty(),
        "{who}: {} lost, {} not published: lost {lost:?}, foreign {foreign:?}",
        lost.len(),
        foreign.len()
    );
    for (c, call) in calls.iter().enumerate() {
        let got: Vec<SseEvent> = events
            .iter()
            .filter(|e| e.data["call_sid"].as_str() == Some(call.as_str()))
            .cloned()
            .collect();
        let want: Vec<String> = (0..PER_CALL).map(|s| format!("{c}-{s}")).collect();
        assert_eq!(markers(&got), want, "{who}: call {c} ({call}) out of order");
    }
}
