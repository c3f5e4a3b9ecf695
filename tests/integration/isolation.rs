//! Account isolation (docs/api.md §1): two accounts publishing at the same time,
//! on the same call sid, never see each other's events, on Basic-auth and on
//! signed streams alike, and each sees all of its own.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::common::{new_call_sid, sign, SseEvent, TestServer, WAIT};

const PER_ACCOUNT: usize = 200;
const BATCH: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_accounts_publishing_at_once_never_see_each_others_events() {
    let server = TestServer::start(|_| {});
    // The same call sid on both accounts: it must not join them.
    let call = new_call_sid();

    let mut readers = Vec::new();
    for account in 0..2 {
        let (basic, _) = server.stream_basic(account, "").await;
        let signed_url = sign(server.token(account), &server.stream_path(account));
        let (signed, _) = server.stream_signed(&signed_url).await;
        for (kind, mut stream) in [("basic", basic), ("signed", signed)] {
            readers.push(tokio::spawn(async move {
                let events = stream
                    .collect_until(|ev| ev.marker().as_deref() == Some("end"), WAIT * 3)
                    .await
                    .unwrap_or_else(|inc| panic!("account {account} {kind} stream: {inc:?}"));
                (account, kind, events)
            }));
        }
    }

    let mut publishers = Vec::new();
    for account in 0..2 {
        let publisher = server.publisher(account);
        let call = call.clone();
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for start in (0..PER_ACCOUNT).step_by(BATCH) {
                let batch: Vec<Value> = (start..start + BATCH)
                    .map(|k| {
                        json!({"type": "call.progress", "call_sid": call,
                               "data": {"acct": account, "n": k}})
                    })
                    .collect();
                if start % (2 * BATCH) == 0 {
                    ids.extend(publisher.publish(&Value::Array(batch)).await);
                } else {
                    for ev in &batch {
                        ids.extend(publisher.publish(ev).await);
                    }
                }
            }
            ids.extend(
                publisher
                    .publish(&json!({"type": "call.progress", "call_sid": call,
                                     "data": {"acct": account, "n": "end"}}))
                    .await,
            );
            ids
        }));
    }
    let mut published: Vec<HashSet<String>> = Vec::new();
    for publisher in publishers {
        published.push(
            publisher
                .await
                .expect("publisher task")
                .into_iter()
                .collect(),
        );
    }

    for reader in readers {
        let (account, kind, events) = reader.await.expect("reader task");
        let own_sid = server.sid(account);
        check_stream(account, kind, own_sid, &events, &published[account]);
    }
}

fn check_stream(
    account: usize,
    kind: &str,
    own_sid: &str,
    events: &[SseEvent],
    ids: &HashSet<String>,
) {
    let what = format!("account {account} {kind} stream");
    for ev in events {
        assert_eq!(
            ev.data["account_sid"].as_str(),
            Some(own_sid),
            "{what} got another account's event: {}",
            ev.data
        );
        assert_eq!(
            ev.data["data"]["acct"],
            json!(account),
            "{what}: {}",
            ev.data
        );
    }
    let got: Vec<String> = events
        .iter()
        .map(|ev| ev.data["id"].as_str().unwrap_or("").to_string())
        .collect();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "{what}: duplicate ids");
    let got_set: HashSet<String> = got.into_iter().collect();
    assert_eq!(
        &got_set, ids,
        "{what}: not exactly the account's own events"
    );
    // One call, one publisher task: publication order.
    let markers: Vec<String> = events.iter().filter_map(|ev| ev.marker()).collect();
    let want: Vec<String> = (0..PER_ACCOUNT)
        .map(|k| k.to_string())
        .chain(["end".to_string()])
        .collect();
    assert_eq!(markers, want, "{what}: order of one call");
}
