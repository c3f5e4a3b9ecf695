//! Aggregation inside a proxy (issue 10): a proxy indexes its distinct filters, not
//! its subscriptions, so clients sharing a filter cost one check per event and one
//! upstream registration per shard; a filter pinned to a call is registered only on
//! the shard that owns the call.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::common::channels::{
    create_sub, eventually_metrics, markers, matched_subs, scrape, sid_of,
};
use crate::common::scrape::Scrape;
use crate::common::{new_call_sid, open_subscription_sids, TestServer, WAIT};

const CLIENTS: usize = 1000;
/// Of the clients, how many hold a live SSE stream (the rest are sessions made
/// through the control channel, caching what they match).
const STREAMS: usize = 10;

fn evaluations(s: &Scrape, actor: &str) -> f64 {
    s.value("switchboard_filter_evaluations_total", &[("actor", actor)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_clients_with_one_filter_cost_one_check_per_event_and_one_upstream_per_shard() {
    let server = Arc::new(TestServer::start(|c| {
        c.shards = 2;
        c.proxies = 1;
    }));
    // The control channel's clients, 50 requests at a time.
    let mut made = 0;
    while made < CLIENTS - STREAMS {
        let mut batch = JoinSet::new();
        for n in made..(made + 50).min(CLIENTS - STREAMS) {
            let server = server.clone();
            batch.spawn(async move {
                sid_of(&create_sub(&server, 0, &format!("api-{n}"), &[("types", "call.*")]).await)
            });
        }
        made += batch.join_all().await.len();
    }
    // The same filter spelled in a URL.
    let mut streams = Vec::new();
    for n in 0..STREAMS {
        let (stream, open) = server
            .stream_basic(0, &format!("client=browser-{n}&types=call.*"))
            .await;
        let sids = open_subscription_sids(&open);
        assert_eq!(sids.len(), 1, "{open:?}");
        streams.push((stream, sids[0].clone()));
    }

    let before = scrape(&server).await;
    assert_eq!(
        before.value("switchboard_subscriptions", &[("transport", "stream")]),
        CLIENTS as f64
    );
    assert_eq!(before.value("switchboard_sessions", &[]), CLIENTS as f64);
    assert_eq!(before.value("switchboard_proxy_filters", &[]), 1.0);
    // One filter, once on each of the two shards.
    assert_eq!(
        before.value("switchboard_aggregated_subscriptions", &[]),
        2.0
    );

    // Twenty matching events over several calls, and one no filter wants.
    let calls: Vec<String> = (0..4).map(|_| new_call_sid()).collect();
    let mut batch: Vec<Value> = (0..20)
        .map(|n| json!({"type": "call.progress", "call_sid": calls[n % 4], "data": {"n": n}}))
        .collect();
    batch.insert(7, json!({"type": "dial.start", "call_sid": calls[0]}));
    server.publish(0, &Value::Array(batch)).await;

    for (stream, sid) in &mut streams {
        let mut seen = 0;
        let got = stream
            .collect_until(
                |_| {
                    seen += 1;
                    seen == 20
                },
                WAIT,
            )
            .await
            .unwrap_or_else(|inc| panic!("twenty events: {inc:?}"));
        // Calls are ordered within themselves, not against each other (they
        // may be on different shards): call k has events k, k + 4, k + 8, …
        let got_markers: Vec<usize> = markers(&got)
            .iter()
            .map(|m| m.parse().expect("a numeric marker"))
            .collect();
        for k in 0..4 {
            let of_call: Vec<usize> = got_markers.iter().copied().filter(|m| m % 4 == k).collect();
            assert_eq!(of_call, (k..20).step_by(4).collect::<Vec<_>>(), "call {k}");
        }
        for event in &got {
            // Fanned out from one match, each still names its own client's
            // subscription and no other.
            assert_eq!(matched_subs(&event.data), std::slice::from_ref(sid));
        }
    }
    let after = eventually_metrics(&server, "every session has its events", |s| {
        s.value("switchboard_cached_events", &[]) == (CLIENTS * 20) as f64
    })
    .await;
    // Each matching event was checked once by its shard and once by the proxy, for
    // all thousand clients; the `dial.start`, whose type no filter names, by
    // neither.
    assert_eq!(
        evaluations(&after, "shard") - evaluations(&before, "shard"),
        20.0
    );
    assert_eq!(
        evaluations(&after, "proxy") - evaluations(&before, "proxy"),
        20.0
    );
}

#[tokio::test]
async fn a_call_pinned_filter_is_registered_only_on_the_shard_that_owns_the_call() {
    let server = TestServer::start(|c| {
        c.shards = 4;
        c.proxies = 1;
        // Unnamed clients' sessions end with their connection, which the server
        // notices at its next write.
        c.stream.heartbeat_secs = 1;
    });
    let calls: Vec<String> = (0..8).map(|_| new_call_sid()).collect();
    let mut streams = Vec::new();
    for call in &calls {
        let (stream, _) = server
            .stream_basic(0, &format!("types=call.*&where=call_sid={call}"))
            .await;
        streams.push(stream);
    }
    let s = scrape(&server).await;
    // Eight filters, each on one shard: 8, where every shard would hold 32.
    assert_eq!(s.value("switchboard_aggregated_subscriptions", &[]), 8.0);

    // Each subscriber still gets its own call's events, and only those.
    let batch: Vec<Value> = calls
        .iter()
        .enumerate()
        .flat_map(|(n, call)| {
            (0..3).map(move |k| {
                json!({"type": "call.progress", "call_sid": call, "data": {"n": format!("{n}-{k}")}})
            })
        })
        .collect();
    server.publish(0, &Value::Array(batch)).await;
    for (n, stream) in streams.iter_mut().enumerate() {
        let got = stream.until_marker(&format!("{n}-2"), WAIT).await;
        assert_eq!(
            markers(&got),
            [format!("{n}-0"), format!("{n}-1"), format!("{n}-2")]
        );
    }

    // Gone, each is unregistered from the shard it was registered with.
    drop(streams);
    eventually_metrics(&server, "every pinned filter unregistered", |s| {
        s.value("switchboard_aggregated_subscriptions", &[]) == 0.0
            && s.value("switchboard_proxy_filters", &[]) == 0.0
    })
    .await;
}
