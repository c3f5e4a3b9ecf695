//! Per-call ordering under concurrent publishing (docs/api.md §2): 20 calls × 100
//! events published from 4 tasks at once, through single objects, JSON
//! arrays and NDJSON batches that interleave calls, reach one subscriber in
//! per-call order, none lost and none duplicated.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::common::{new_call_sid, Publisher, TestServer, WAIT};

const CALLS: usize = 20;
const PER_CALL: usize = 100;
const TASKS: usize = 4;

fn ev(call: &str, seq: usize) -> Value {
    json!({"type": "call.progress", "call_sid": call, "data": {"seq": seq}})
}

/// Publishes `seq` 0..PER_CALL for each of `calls`, in order per call,
/// cycling through chunk sizes and body forms.
async fn publish_calls(publisher: Publisher, calls: Vec<String>, task: usize) -> Vec<String> {
    let chunks = [1, 7, 3, 13, 1, 25, 2, 11];
    let mut ids = Vec::new();
    let mut seq = 0;
    let mut round = task;
    while seq < PER_CALL {
        let chunk = chunks[round % chunks.len()].min(PER_CALL - seq);
        if chunk == 1 {
            // One single-object request per call.
            for call in &calls {
                ids.extend(publisher.publish(&ev(call, seq)).await);
            }
        } else {
            // One request interleaving every call of this task.
            let batch: Vec<Value> = (seq..seq + chunk)
                .flat_map(|s| calls.iter().map(move |call| ev(call, s)))
                .collect();
            if round.is_multiple_of(2) {
                ids.extend(publisher.publish_ndjson(&batch).await);
            } else {
                ids.extend(publisher.publish(&Value::Array(batch)).await);
            }
        }
        seq += chunk;
        round += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_keep_per_call_order_with_no_loss_or_duplicate() {
    let server = TestServer::start(|_| {});
    let calls: Vec<String> = (0..CALLS).map(|_| new_call_sid()).collect();
    let (mut stream, _) = server.stream_basic(0, "types=call.*").await;

    let reader = {
        let calls = calls.clone();
        tokio::spawn(async move { stream.until_calls_end(&calls, WAIT * 6).await })
    };

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let mine: Vec<String> = calls.iter().skip(task).step_by(TASKS).cloned().collect();
        tasks.push(tokio::spawn(publish_calls(server.publisher(0), mine, task)));
    }
    let mut published: Vec<String> = Vec::new();
    for task in tasks {
        published.extend(task.await.expect("publisher task"));
    }
    assert_eq!(published.len(), CALLS * PER_CALL);
    // After everything: one terminator per call, in one batch.
    let ends: Vec<Value> = calls
        .iter()
        .map(|call| json!({"type": "call.end", "call_sid": call}))
        .collect();
    server.publish(0, &Value::Array(ends)).await;

    let events = reader
        .await
        .expect("reader task")
        .unwrap_or_else(|inc| panic!("not every call ended: {inc:?}"));

    let mut ids = HashSet::new();
    let mut per_call: HashMap<String, Vec<i64>> = HashMap::new();
    let mut ended: HashSet<String> = HashSet::new();
    for e in &events {
        let id = e.data["id"].as_str().unwrap_or("").to_string();
        assert!(ids.insert(id.clone()), "event {id} delivered twice");
        let call = e.data["call_sid"].as_str().unwrap_or("").to_string();
        if e.ty() == "call.end" {
            ended.insert(call);
            continue;
        }
        assert!(
            !ended.contains(&call),
            "event after its call's end: {}",
            e.data
        );
        let seq = e.data["data"]["seq"].as_i64().expect("data.seq");
        per_call.entry(call).or_default().push(seq);
    }
    let progress_ids: HashSet<String> = events
        .iter()
        .filter(|e| e.ty() == "call.progress")
        .map(|e| e.data["id"].as_str().unwrap_or("").to_string())
        .collect();
    let published_set: HashSet<String> = published.into_iter().collect();
    assert_eq!(
        published_set.len(),
        CALLS * PER_CALL,
        "the 202s returned duplicate ids"
    );
    let lost = published_set.difference(&progress_ids).count();
    let foreign = progress_ids.difference(&published_set).count();
    assert_eq!((lost, foreign), (0, 0), "lost / unknown events");

    let want: Vec<i64> = (0..PER_CALL as i64).collect();
    for call in &calls {
        let got = per_call.get(call).cloned().unwrap_or_default();
        if got != want {
            let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
            panic!(
                "call {call}: {} events, first out of order at {first_bad:?}: {:?}",
                got.len(),
                &got[..got.len().min(30)]
            );
        }
    }
}
