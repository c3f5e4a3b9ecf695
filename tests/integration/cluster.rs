//! Cluster mode over NATS JetStream: several nodes on one `nats-server -js` share
//! one event space. A publish on any node is acknowledged by JetStream before its
//! 202, every node delivers the stream to its own clients in stream order (so
//! per-call order holds across nodes), accounts stay apart, and while NATS is away
//! publishes are refused with 503 `backbone_unavailable` (and `/readyz` says so)
//! until the node has reconnected by itself, with nothing accepted lost.
//!
//! Cursors are cluster-wide: a client of a node killed outright resumes on another
//! with its `Last-Event-ID`, and `cursor=earliest` replays the stream on a node
//! that started after the events.
//!
//! Each test starts its own NATS server and its own nodes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

use crate::common::call_sequences::{
    assert_each_once_in_call_order, call_event, last_cursor, publish_calls, read_calls,
    until_calls_end, CALLS, PER_CALL,
};
use crate::common::channels::{
    create_sub, eventually_metrics, marked, markers, open_sse_with, post_form, scrape, send_json,
    sid_of, subs_path,
};
use crate::common::nats::NatsServer;
use crate::common::scrape::Scrape;
use crate::common::{
    http_client, new_call_sid, open_subscription_sids, random_hex, string_list, Reply, SseError,
    SseEvent, SseStream, TestServer, WAIT,
};
use crate::process;

/// Marker prefix of the warm-up events (`warm_up`), which the checks drop.
const WARM: &str = "warm-";

/// Two fresh accounts `(sid, token)` for the nodes of one cluster to share.
fn shared_accounts() -> Vec<(String, String)> {
    (0..2)
        .map(|_| (format!("AC{}", random_hex(16)), random_hex(16)))
        .collect()
}

/// A node of the cluster on `nats`, with the shared `accounts`.
fn node(nats: &NatsServer, accounts: &[(String, String)], id: &str) -> TestServer {
    node_with(nats, accounts, id, |_| {})
}

/// A node of the cluster on `nats`, with the shared `accounts` and whatever
/// `tweak` changes.
fn node_with(
    nats: &NatsServer,
    accounts: &[(String, String)],
    id: &str,
    tweak: impl FnOnce(&mut switchboard::Config),
) -> TestServer {
    let url = nats.url();
    let id = id.to_string();
    TestServer::start_with_accounts(accounts.to_vec(), move |c| {
        c.cluster.nats_url = url;
        c.cluster.node_id = id;
        tweak(c);
    })
}

/// Three nodes of the cluster on `nats`, each ready (its consumer reads the stream).
async fn three_nodes(nats: &NatsServer, accounts: &[(String, String)]) -> [TestServer; 3] {
    let nodes = [
        node(nats, accounts, "n1"),
        node(nats, accounts, "n2"),
        node(nats, accounts, "n3"),
    ];
    for n in &nodes {
        readyz_becomes(n, 200, WAIT).await;
    }
    nodes
}

/// Polls `GET /readyz` until it answers `status` (bounded by `within`).
async fn readyz_becomes(server: &TestServer, status: u16, within: Duration) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        let reply = server.get("/readyz").await;
        if reply.status == status {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "GET /readyz on {} still answers {} {} after {within:?}, expected {status}",
            server.addr,
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The sum of every series named `name` (whatever its labels) in a scrape.
fn total(scrape: &Scrape, name: &str) -> f64 {
    let labelled = format!("{name}{{");
    scrape
        .series
        .iter()
        .filter(|(key, _)| *key == name || key.starts_with(&labelled))
        .map(|(_, value)| value)
        .sum()
}

fn is_warm(ev: &SseEvent) -> bool {
    ev.marker().is_some_and(|m| m.starts_with(WARM))
}

/// A barrier before a test's own events: publishes warm-up events on `via` (one
/// per round, for each account a subscriber uses) until every subscriber has
/// received one, bounded by `WAIT`. It proves each subscriber's node consumes the
/// stream, whatever the moment its consumer started. Warm-up events that come
/// later are dropped by the checks (`is_warm`); anything else arriving here
/// fails the test, and so does an event of another account.
async fn warm_up(via: &TestServer, subs: &mut [(usize, &mut SseStream)]) {
    let mut accounts: Vec<usize> = subs.iter().map(|(account, _)| *account).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let warm_calls: HashMap<usize, String> =
        accounts.iter().map(|&a| (a, new_call_sid())).collect();
    let mut warm = vec![false; subs.len()];
    let deadline = Instant::now() + WAIT;
    let mut round = 0;
    while !warm.iter().all(|w| *w) {
        assert!(
            Instant::now() < deadline,
            "warm-up: subscribers {:?} got none of {round} warm-up rounds within {WAIT:?}",
            warm.iter()
                .enumerate()
                .filter(|(_, w)| !**w)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        );
        round += 1;
        for &account in &accounts {
            via.publish(
                account,
                &marked(
                    "call.warmup",
                    &warm_calls[&account],
                    &format!("{WARM}{round}"),
                ),
            )
            .await;
        }
        for (i, (account, stream)) in subs.iter_mut().enumerate() {
            let sid = via.sid(*account);
            while !warm[i] {
                match stream.next_event(Duration::from_millis(250)).await {
                    Ok(ev) => {
                        assert_eq!(
                            ev.data["account_sid"].as_str(),
                            Some(sid),
                            "warm-up: subscriber {i} got another account's event: {}",
                            ev.data
                        );
                        assert!(
                            is_warm(&ev),
                            "warm-up: subscriber {i} got an unexpected event: {}",
                            ev.data
                        );
                        warm[i] = true;
                    }
                    Err(SseError::Timeout(_)) => break,
                    Err(err) => panic!("warm-up: subscriber {i}: {err}"),
                }
            }
        }
    }
}

/// Asserts a 503 `backbone_unavailable` error with a whole-seconds `Retry-After`.
#[track_caller]
fn assert_backbone_unavailable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.text());
    reply.assert_error_body("backbone_unavailable");
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{what}: no whole-seconds Retry-After in {:?}",
                reply.headers
            )
        });
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
}

// ---------------------------------------------------------------------------
// One event space, per-call order

/// Publishes every call's events on `node` as `account`, in order per call, the
/// calls interleaved (their order rotating per round), as single objects or JSON
/// arrays; returns the ids of the 202s.
async fn publish_interleaved(node: &TestServer, account: usize, calls: &[String]) -> Vec<String> {
    let chunks = [1, 3, 2, 5, 1, 4];
    let mut ids = Vec::new();
    let (mut seq, mut round) = (0, 0);
    while seq < PER_CALL {
        let chunk = chunks[round % chunks.len()].min(PER_CALL - seq);
        let order: Vec<usize> = (0..calls.len())
            .map(|i| (i + round) % calls.len())
            .collect();
        if chunk == 1 {
            for &c in &order {
                ids.extend(node.publish(account, &call_event(calls, c, seq)).await);
            }
        } else {
            let batch: Vec<Value> = (seq..seq + chunk)
                .flat_map(|s| order.iter().map(move |&c| call_event(calls, c, s)))
                .collect();
            ids.extend(node.publish(account, &Value::Array(batch)).await);
        }
        seq += chunk;
        round += 1;
    }
    ids
}

/// Three nodes on one NATS: a sequence published on node 1 (five calls
/// interleaved, single objects and arrays) reaches subscribers on node 2, node 3
/// and node 1 itself (its own events come back through the stream), each event
/// once and every call in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_event_space_in_per_call_order() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let nodes = three_nodes(&nats, &accounts).await;
    let (mut on1, _) = nodes[0].stream_basic(0, "types=call.*").await;
    let (mut on2, _) = nodes[1].stream_basic(0, "types=call.*").await;
    let (mut on3, _) = nodes[2].stream_basic(0, "types=call.*").await;
    warm_up(
        &nodes[0],
        &mut [(0, &mut on1), (0, &mut on2), (0, &mut on3)],
    )
    .await;

    let calls: Vec<String> = (0..CALLS).map(|_| new_call_sid()).collect();
    let published = publish_interleaved(&nodes[0], 0, &calls).await;
    assert_eq!(published.len(), CALLS * PER_CALL);

    for (who, stream) in [
        ("subscriber on node 2", &mut on2),
        ("subscriber on node 3", &mut on3),
        ("subscriber on node 1 (the publishing node)", &mut on1),
    ] {
        let events = until_calls_end(who, stream, &calls).await;
        assert_each_once_in_call_order(who, &events, &calls, &published);
    }
}

/// Both accounts publish on node 1, interleaved: account 0's subscriber on node 2
/// gets account 0's events only, account 1's on node 3 account 1's only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_stay_isolated_across_nodes() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let nodes = three_nodes(&nats, &accounts).await;
    let (mut sub0, _) = nodes[1].stream_basic(0, "types=call.*").await;
    let (mut sub1, _) = nodes[2].stream_basic(1, "types=call.*").await;
    warm_up(&nodes[0], &mut [(0, &mut sub0), (1, &mut sub1)]).await;

    let calls = [new_call_sid(), new_call_sid()];
    let mut want: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for k in 1..=10 {
        for account in 0..2 {
            let n = format!("a{account}-{k}");
            if k % 3 == 0 {
                // Now and then a JSON array of one.
                let body = Value::Array(vec![marked("call.progress", &calls[account], &n)]);
                nodes[0].publish(account, &body).await;
            } else {
                nodes[0]
                    .publish(account, &marked("call.progress", &calls[account], &n))
                    .await;
            }
            want[account].push(n);
        }
    }
    // Every event of the other account is in the stream before either end marker.
    for account in 0..2 {
        let n = format!("a{account}-end");
        nodes[0]
            .publish(account, &marked("call.end", &calls[account], &n))
            .await;
        want[account].push(n);
    }

    for (account, who, stream) in [
        (0, "account 0's subscriber on node 2", &mut sub0),
        (1, "account 1's subscriber on node 3", &mut sub1),
    ] {
        let got: Vec<SseEvent> = stream
            .until_marker(&format!("a{account}-end"), WAIT)
            .await
            .into_iter()
            .filter(|e| !is_warm(e) && e.marker().is_some())
            .collect();
        assert_eq!(markers(&got), want[account], "{who}");
        let sid = nodes[0].sid(account);
        for e in &got {
            assert_eq!(
                e.data["account_sid"].as_str(),
                Some(sid),
                "{who}: {}",
                e.data
            );
        }
    }
}

/// What an outage test has published so far: the markers answered 202 and 503,
/// and the last marker used.
struct Outcomes {
    accepted: Vec<String>,
    refused: Vec<String>,
    n: usize,
}

/// Publishes one event after another on `node` until one is answered `until`
/// (202 or 503), recording each answer, within `within`; any other status fails.
async fn publish_until(
    node: &TestServer,
    ev: &impl Fn(usize) -> Value,
    until: u16,
    within: Duration,
    outcomes: &mut Outcomes,
    what: &str,
) {
    let deadline = Instant::now() + within;
    loop {
        outcomes.n += 1;
        let marker = outcomes.n.to_string();
        let reply = node.try_publish(0, &ev(outcomes.n)).await;
        match reply.status {
            202 => {
                reply.accepted(1);
                outcomes.accepted.push(marker);
            }
            503 => {
                assert_backbone_unavailable(&reply, &format!("publish {what}"));
                outcomes.refused.push(marker);
            }
            other => panic!("publish {what}: {other} {}", reply.text()),
        }
        if reply.status == until {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "publishes {what} not yet answered {until} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// NATS goes away under two nodes: publishes on node 1 turn into 503
/// `backbone_unavailable` with `Retry-After`, `/readyz` into 503, the connection
/// gauge into 0; NATS comes back on the same port and store, the node reconnects
/// by itself, and node 2's subscriber (connected all along) gets every event that
/// was answered 202, once and in order, and none that was answered 503. A
/// control-channel change is refused with the same 503 meanwhile, and one made
/// afterwards reaches a named client that stayed on node 2 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_refuses_publishes_and_nothing_accepted_is_lost() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let node1 = node(&nats, &accounts, "n1");
    let node2 = node(&nats, &accounts, "n2");
    readyz_becomes(&node1, 200, WAIT).await;
    readyz_becomes(&node2, 200, WAIT).await;
    let (mut sub, _) = node2.stream_basic(0, "types=call.*").await;
    warm_up(&node1, &mut [(0, &mut sub)]).await;
    // A named client on node 2 through the outage, for the shared sessions' watch.
    let (mut named, _) = node2
        .stream_basic(0, "client=through&types=call.start")
        .await;

    let call = new_call_sid();
    let ev = |n: usize| marked("call.progress", &call, &n.to_string());
    let mut out = Outcomes {
        accepted: Vec::new(),
        refused: Vec::new(),
        n: 0,
    };

    // Before: accepted.
    for _ in 0..5 {
        out.n += 1;
        node1.publish(0, &ev(out.n)).await;
        out.accepted.push(out.n.to_string());
    }

    nats.stop();
    // The node notices the loss asynchronously: whatever it still answers 202
    // meanwhile must be delivered later.
    publish_until(&node1, &ev, 503, 2 * WAIT, &mut out, "while NATS is down").await;
    // While it is down, every publish is refused, a batch as a whole.
    out.n += 1;
    let reply = node1.try_publish(0, &ev(out.n)).await;
    assert_backbone_unavailable(&reply, "a second publish while NATS is down");
    out.refused.push(out.n.to_string());
    let batch = Value::Array(vec![ev(out.n + 1), ev(out.n + 2)]);
    out.n += 2;
    let reply = node1.try_publish(0, &batch).await;
    assert_backbone_unavailable(&reply, "a batch while NATS is down");
    out.refused
        .extend([(out.n - 1).to_string(), out.n.to_string()]);

    let ready = readyz_becomes(&node1, 503, WAIT).await;
    assert_eq!(
        ready.json()["code"],
        "backbone_unavailable",
        "GET /readyz while NATS is down: {}",
        ready.text()
    );
    eventually_metrics(
        &node1,
        "switchboard_backbone_connected 0 while NATS is down",
        |s| {
            s.has("switchboard_backbone_connected")
                && total(s, "switchboard_backbone_connected") == 0.0
        },
    )
    .await;
    // A control-channel change could not reach the other nodes: refused too.
    let refused = post_form(
        &node1,
        &subs_path(&node1, 0, "offline"),
        node1.creds(0),
        &[("types", "call.*")],
    )
    .await;
    assert_backbone_unavailable(&refused, "a control-channel create while NATS is down");

    nats.restart();
    // The client reconnects with its own backoff: bounded, but longer than one WAIT.
    publish_until(&node1, &ev, 202, 3 * WAIT, &mut out, "after NATS restarted").await;
    // Both nodes are back: node 1 publishes, node 2 consumes again (`/readyz` is 200
    // only once the node's consumer reads the stream).
    for server in [&node1, &node2] {
        readyz_becomes(server, 200, WAIT).await;
        eventually_metrics(
            server,
            "switchboard_backbone_connected 1 after the restart",
            |s| total(s, "switchboard_backbone_connected") == 1.0,
        )
        .await;
    }

    // After: accepted again.
    for _ in 0..5 {
        out.n += 1;
        node1.publish(0, &ev(out.n)).await;
        out.accepted.push(out.n.to_string());
    }

    // `/readyz` said node 2's consumer reads the stream again (made anew from
    // where it stopped as soon as NATS was back).
    let Outcomes {
        accepted, refused, ..
    } = out;
    let last = accepted.last().expect("accepted events").clone();
    let got: Vec<SseEvent> = sub
        .collect_until(|e| e.marker().as_deref() == Some(last.as_str()), WAIT)
        .await
        .unwrap_or_else(|inc| {
            panic!(
                "node 2's subscriber never got marker {last}: accepted {accepted:?}, \
                 refused {refused:?}; {inc:?}"
            )
        })
        .into_iter()
        .filter(|e| e.data["call_sid"].as_str() == Some(call.as_str()))
        .collect();
    assert_eq!(
        markers(&got),
        accepted,
        "node 2's subscriber: every 202 once and in order, none of the 503s {refused:?}"
    );

    // Node 2 watches the shared client sessions again: a subscription made on
    // node 1 after the outage reaches the named client's open stream there.
    let added = create_sub(&node1, 0, "through", &[("types", "call.end")]).await;
    let ended = new_call_sid();
    let seen = publish_until_seen(
        &node1,
        &mut named,
        |k| vec![marked("call.end", &ended, &format!("after-{k}"))],
        |ev| ev.ty() == "call.end",
        "a subscription made after the outage reaching node 2",
    )
    .await;
    let end = seen.last().expect("seen");
    assert_eq!(
        string_list(&end.data["subscriptions"]),
        std::slice::from_ref(&sid_of(&added))
    );
}

/// `/metrics` of a cluster node: the connection gauge is 1, and after publishes
/// the ack histogram has observations on the publishing node, and node 2 (where
/// the client is) counts consumed events it never published, while node 1 (no
/// client) reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backbone_metrics_show_the_connection_and_the_acks() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let node1 = node(&nats, &accounts, "n1");
    let node2 = node(&nats, &accounts, "n2");
    for n in [&node1, &node2] {
        eventually_metrics(n, "switchboard_backbone_connected 1", |s| {
            s.has("switchboard_backbone_connected")
                && total(s, "switchboard_backbone_connected") == 1.0
        })
        .await;
    }
    let (mut sub, _) = node2.stream_basic(0, "types=call.*").await;
    warm_up(&node1, &mut [(0, &mut sub)]).await;

    let call = new_call_sid();
    let batch = Value::Array(vec![
        marked("call.start", &call, "1"),
        marked("call.progress", &call, "2"),
        marked("call.end", &call, "3"),
    ]);
    node1.publish(0, &batch).await;
    let got: Vec<SseEvent> = sub
        .until_marker("3", WAIT)
        .await
        .into_iter()
        .filter(|e| e.data["call_sid"].as_str() == Some(call.as_str()))
        .collect();
    assert_eq!(markers(&got), ["1", "2", "3"]);

    // Node 1 has no client: it stores publishes and reads nothing.
    let s = eventually_metrics(&node1, "an observed publish ack on node 1", |s| {
        total(s, "switchboard_backbone_publish_ack_seconds_count") >= 1.0
    })
    .await;
    assert_eq!(
        total(&s, "switchboard_backbone_consumed_total"),
        0.0,
        "node 1 reads nothing"
    );
    assert_eq!(
        total(&s, "switchboard_backbone_consumers"),
        0.0,
        "node 1 runs no consumer"
    );
    assert!(
        s.has("switchboard_backbone_publish_ack_seconds_bucket"),
        "the ack histogram has buckets: {:?}",
        s.series
            .keys()
            .filter(|k| k.contains("backbone"))
            .collect::<Vec<_>>()
    );
    assert!(
        s.has("switchboard_backbone_publish_ack_seconds_sum"),
        "the ack histogram has a sum"
    );
    eventually_metrics(&node2, "consumed events counted on node 2", |s| {
        total(s, "switchboard_backbone_consumed_total") >= 1.0
    })
    .await;
    // Still connected after the traffic.
    let s = scrape(&node1).await;
    assert_eq!(total(&s, "switchboard_backbone_connected"), 1.0);
}

/// Consumers on the cluster's stream as NATS itself counts them (its monitoring
/// endpoint `/jsz`), within `WAIT` of being `want`.
async fn nats_consumers_become(nats: &NatsServer, want: u64, what: &str) {
    let url = format!(
        "http://127.0.0.1:{}/jsz?streams=true&consumers=true",
        nats.monitor_port
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let jsz: Value = http_client()
            .get(&url)
            .send()
            .await
            .expect("GET /jsz")
            .json()
            .await
            .expect("/jsz is JSON");
        let count = jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
            .filter(|stream| stream["name"] == "SWITCHBOARD")
            .map(|stream| stream["state"]["consumer_count"].as_u64().unwrap_or(0))
            .sum::<u64>();
        if count == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: NATS counts {count} consumers on the stream, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each node reads only the accounts its clients need, one consumer per account
/// however many clients: node 1 has none, node 2 five clients of account 0, node
/// 3 two of account 0 and one of account 1: three consumers on the stream as NATS
/// counts them, and the nodes' `switchboard_backbone_consumers` say 0, 1 and 2.
/// Every client still gets what was published on node 1. Once account 1's only
/// client leaves, its consumer stops after `cluster.consumer_grace_secs` (1 here);
/// once every client has left, none is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_reads_only_the_accounts_its_clients_need() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let nodes = ["n1", "n2", "n3"]
        .map(|id| node_with(&nats, &accounts, id, |c| c.cluster.consumer_grace_secs = 1));
    for n in &nodes {
        readyz_becomes(n, 200, WAIT).await;
    }
    nats_consumers_become(&nats, 0, "no client anywhere").await;
    let mut clients = Vec::new();
    for (node, account) in [
        (1, 0),
        (1, 0),
        (1, 0),
        (1, 0),
        (1, 0),
        (2, 0),
        (2, 0),
        (2, 1),
    ] {
        let (stream, _) = nodes[node].stream_basic(account, "types=call.*").await;
        clients.push((account, stream));
    }
    nats_consumers_become(&nats, 3, "eight clients of two accounts on two nodes").await;
    for (n, want) in [(0, 0.0), (1, 1.0), (2, 2.0)] {
        let s = scrape(&nodes[n]).await;
        assert_eq!(
            total(&s, "switchboard_backbone_consumers"),
            want,
            "consumers of node {}",
            n + 1
        );
    }
    let mut subs: Vec<(usize, &mut SseStream)> = clients.iter_mut().map(|(a, s)| (*a, s)).collect();
    warm_up(&nodes[0], &mut subs).await;
    let call = new_call_sid();
    for account in 0..2 {
        nodes[0]
            .publish(
                account,
                &marked("call.end", &call, &format!("end-{account}")),
            )
            .await;
    }
    for (i, (account, stream)) in clients.iter_mut().enumerate() {
        let got: Vec<String> = markers(&stream.until_marker(&format!("end-{account}"), WAIT).await)
            .into_iter()
            .filter(|m| !m.starts_with(WARM))
            .collect();
        assert_eq!(got, [format!("end-{account}")], "client {i}");
    }
    drop(clients.pop());
    nats_consumers_become(&nats, 2, "account 1's only client gone").await;
    drop(clients);
    nats_consumers_become(&nats, 0, "every client gone").await;
}

/// The load tool's fan-out across a cluster (docs/cluster.md, "Measured"): ticks
/// published on node 1 reach subscribers opened on nodes 2 and 3 in turn, every
/// one once and in order per publisher, and the tool counts them as such.
#[tokio::test]
async fn the_load_tool_counts_a_fanout_published_on_one_node_and_read_on_two_others() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let nodes = three_nodes(&nats, &accounts).await;
    let (node1, node2, node3) = (
        nodes[0].base_url(),
        nodes[1].base_url(),
        nodes[2].base_url(),
    );
    let argv = [
        "loadtest",
        "fanout",
        "--subscribers",
        "20",
        "--messages",
        "60",
        "--publishers",
        "3",
        "--url",
        &node1,
        "--subscribe-url",
        &node2,
        "--subscribe-url",
        &node3,
        "--account",
        &accounts[0].0,
        "--token",
        &accounts[0].1,
        "--duration",
        "20",
    ];
    let args = switchboard::loadtest::LoadtestArgs::try_parse_from(argv).expect("arguments parse");
    let report = switchboard::loadtest::run(&args)
        .await
        .expect("the load test runs");
    let r = &report.results;
    let count = |key: &str| r[key].as_u64().unwrap_or_else(|| panic!("{key} in {r}"));
    assert_eq!(count("published"), 60, "{r}");
    assert_eq!(count("subscribers_connected"), 20, "{r}");
    assert_eq!(count("deliveries"), 1200, "{r}");
    assert_eq!(count("lost"), 0, "{r}");
    assert_eq!(count("duplicated"), 0, "{r}");
    assert_eq!(count("out_of_order"), 0, "{r}");
    // Only nodes 2 and 3 had subscribers; node 1 held none of them.
    for (server, holds) in [(&nodes[0], false), (&nodes[1], true), (&nodes[2], true)] {
        let s = scrape(server).await;
        let delivered = total(&s, "switchboard_events_delivered_total");
        assert_eq!(
            delivered > 0.0,
            holds,
            "{}: {delivered} delivered",
            server.addr
        );
    }
}

// ---------------------------------------------------------------------------
// Cluster-wide cursors

/// Node 2 is a real `switchboard serve` process. Its client has read part of what
/// was published when node 2 is killed (SIGKILL, with events still on their way
/// to the client); publishing goes on through node 1. The client reconnects to
/// node 3, which never had a session for it, with `Last-Event-ID` set to the last
/// cursor it read: it gets exactly what it missed, read back from the stream, then
/// the live rest, each event once and every call in order. Reconnecting to node 3
/// again with its newest cursor repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_killed_node_resumes_on_another_with_its_last_event_id() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let n1 = node(&nats, &accounts, "n1");
    let n3 = node(&nats, &accounts, "n3");
    let (sid, token) = &accounts[0];
    let cluster = format!(
        "[cluster]\nnats_url = \"{}\"\nnode_id = \"n2\"\n",
        nats.url()
    );
    let mut n2 = process::spawn_with(
        sid,
        token,
        &process::Options {
            config: &cluster,
            ..Default::default()
        },
    );
    let h2 = n2.handle();
    process::wait_ready(&http_client(), &n2.base).await;
    for n in [&n1, &h2, &n3] {
        readyz_becomes(n, 200, WAIT).await;
    }
    let query = "client=survivor&types=call.*";
    let (mut on2, _) = h2.stream_basic(0, query).await;
    warm_up(&n1, &mut [(0, &mut on2)]).await;

    let calls: Vec<String> = (0..CALLS).map(|_| new_call_sid()).collect();
    let half = PER_CALL / 2;
    let mut published = publish_calls(&n1, &calls, 0, half).await;
    // Part of the first half, not all of it: the rest is in flight when node 2 dies.
    let before = read_calls("client on node 2", &mut on2, &calls, CALLS * half / 2 + 1).await;
    let cursor = last_cursor(&before);
    n2.kill();
    drop(on2);
    published.extend(publish_calls(&n1, &calls, half, PER_CALL).await);

    let path = format!("{}?{query}", n3.stream_path(0));
    let mut on3 = open_sse_with(&n3, &path, n3.creds(0), &[("Last-Event-ID", &cursor)])
        .await
        .unwrap_or_else(|reply| panic!("resume on node 3: {} {}", reply.status, reply.text()));
    on3.expect_open().await;
    let after = until_calls_end("client resumed on node 3", &mut on3, &calls).await;
    let mut all = before.clone();
    all.extend(after.iter().cloned());
    assert_each_once_in_call_order("client across nodes 2 and 3", &all, &calls, &published);

    // Once more on node 3, from its own newest cursor: nothing again, then what
    // is new.
    drop(on3);
    let cursor = last_cursor(&after);
    let mut again = open_sse_with(&n3, &path, n3.creds(0), &[("Last-Event-ID", &cursor)])
        .await
        .unwrap_or_else(|reply| panic!("second resume: {} {}", reply.status, reply.text()));
    again.expect_open().await;
    let tail = new_call_sid();
    n1.publish(0, &marked("call.end", &tail, "tail")).await;
    let got: Vec<SseEvent> = again
        .until_marker("tail", WAIT)
        .await
        .into_iter()
        .filter(|e| !is_warm(e))
        .collect();
    assert_eq!(
        markers(&got),
        ["tail"],
        "a resume from the newest cursor repeats nothing"
    );
}

/// `cursor=earliest` on a node started after the events were published (so its
/// own shards never saw them) replays them from the stream, each once and every
/// call in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_earliest_replays_the_stream_on_a_node_started_after_the_events() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let n1 = node(&nats, &accounts, "n1");
    readyz_becomes(&n1, 200, WAIT).await;
    let calls: Vec<String> = (0..CALLS).map(|_| new_call_sid()).collect();
    let published = publish_interleaved(&n1, 0, &calls).await;
    // Another account's events are in the stream too, and must not show.
    n1.publish(1, &marked("call.start", &new_call_sid(), "other"))
        .await;

    let late = node(&nats, &accounts, "late");
    readyz_becomes(&late, 200, WAIT).await;
    let (mut stream, _) = late.stream_basic(0, "types=call.*&cursor=earliest").await;
    let everything = stream
        .until_calls_end(&calls, WAIT)
        .await
        .unwrap_or_else(|inc| panic!("earliest on the late node: not every call ended: {inc:?}"));
    let sid = late.sid(0);
    for e in &everything {
        assert_eq!(
            e.data["account_sid"].as_str(),
            Some(sid),
            "another account's event: {}",
            e.data
        );
    }
    let events: Vec<SseEvent> = everything
        .into_iter()
        .filter(|e| {
            e.data["call_sid"]
                .as_str()
                .is_some_and(|c| calls.contains(&c.to_string()))
        })
        .collect();
    assert_each_once_in_call_order("earliest on the late node", &events, &calls, &published);
}

/// A client hops between two nodes (each with several shards on two workers)
/// while two publishers send batches that mix calls: it reads a stretch on one
/// node, then resumes on the other with the last cursor it read, four times.
/// Shards route in parallel, so a node may route a later position before an
/// earlier one; cursors still resume exactly after what was read: every event
/// once, every call in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hopping_between_nodes_mid_stream_misses_and_repeats_nothing() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let nodes = ["a", "b"].map(|id| node_with(&nats, &accounts, id, |c| c.shards = 4));
    for n in &nodes {
        readyz_becomes(n, 200, WAIT).await;
    }
    let query = "client=hopper&types=call.*";
    let (mut stream, _) = nodes[0].stream_basic(0, query).await;
    warm_up(&nodes[0], &mut [(0, &mut stream)]).await;

    let calls: Vec<String> = (0..20).map(|_| new_call_sid()).collect();
    let publishers: Vec<_> = [0..10, 10..20]
        .into_iter()
        .map(|range| {
            let node = TestServer::attach(nodes[1].addr, accounts.clone());
            let calls = calls.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for seq in (0..PER_CALL).step_by(2) {
                    // Two events of every call a request: ten calls mixed.
                    let batch: Vec<Value> = (seq..seq + 2)
                        .flat_map(|s| range.clone().map(move |c| (c, s)))
                        .map(|(c, s)| call_event(&calls, c, s))
                        .collect();
                    ids.extend(node.publish(0, &Value::Array(batch)).await);
                }
                ids
            })
        })
        .collect();

    let path = format!("{}?{query}", nodes[0].stream_path(0));
    let mut read = Vec::new();
    for (hop, stretch) in [37, 53, 41].into_iter().enumerate() {
        read.extend(read_calls(&format!("hop {hop}"), &mut stream, &calls, stretch).await);
        let cursor = last_cursor(&read);
        drop(stream);
        let to = &nodes[(hop + 1) % 2];
        stream = open_sse_with(to, &path, to.creds(0), &[("Last-Event-ID", &cursor)])
            .await
            .unwrap_or_else(|reply| panic!("hop {hop}: {} {}", reply.status, reply.text()));
        stream.expect_open().await;
    }
    let mut published = Vec::new();
    for publisher in publishers {
        published.extend(publisher.await.expect("publisher"));
    }
    read.extend(until_calls_end("after the last hop", &mut stream, &calls).await);
    assert_each_once_in_call_order("the hopping client", &read, &calls, &published);
}

// ---------------------------------------------------------------------------
// Client sessions shared by the nodes

/// Publishes `probe(k)` on `via` round after round until `stream` receives an
/// event that `done` accepts (bounded by `WAIT`); returns every event read.
async fn publish_until_seen(
    via: &TestServer,
    stream: &mut SseStream,
    probe: impl Fn(usize) -> Vec<Value>,
    done: impl Fn(&SseEvent) -> bool,
    what: &str,
) -> Vec<SseEvent> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    for k in 0.. {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; read {:?}",
            markers(&seen)
        );
        for event in probe(k) {
            via.publish(0, &event).await;
        }
        while let Ok(ev) = stream.next_event(Duration::from_millis(100)).await {
            let finished = done(&ev);
            seen.push(ev);
            if finished {
                return seen;
            }
        }
    }
    unreachable!()
}

/// The control channel of one node reaches a client's stream on another: a
/// subscription added on node 1 delivers to the client's open stream on node 3
/// (no reconnect), node 2 lists it, and once deleted on node 2 node 3 stops
/// delivering it. A subscription made on node 1 for a client with no session
/// anywhere is found by its stream opened on node 3 without filters, sid and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_channel_subscription_made_on_node_1_delivers_on_node_3() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let nodes = three_nodes(&nats, &accounts).await;
    let (mut watcher, open) = nodes[2]
        .stream_basic(0, "client=watcher&types=call.start,call.warmup")
        .await;
    let url_sub = open_subscription_sids(&open);
    warm_up(&nodes[0], &mut [(0, &mut watcher)]).await;

    let added = create_sub(&nodes[0], 0, "watcher", &[("types", "call.end")]).await;
    let end_sid = sid_of(&added);
    let listed = send_json(
        &nodes[1],
        reqwest::Method::GET,
        &subs_path(&nodes[1], 0, "watcher"),
        nodes[1].creds(0),
        &Value::Null,
    )
    .await;
    assert_eq!(listed.status, 200, "list on node 2: {}", listed.text());
    let mut sids: Vec<String> = listed.json()["subscriptions"]
        .as_array()
        .expect("a list")
        .iter()
        .map(sid_of)
        .collect();
    sids.sort();
    let mut want = vec![end_sid.clone(), url_sub[0].clone()];
    want.sort();
    assert_eq!(
        sids, want,
        "node 2 lists the URL's subscription and node 1's"
    );

    let call = new_call_sid();
    let seen = publish_until_seen(
        &nodes[1],
        &mut watcher,
        |k| vec![marked("call.end", &call, &format!("end-{k}"))],
        |ev| ev.ty() == "call.end",
        "node 1's subscription delivering on node 3",
    )
    .await;
    let end = seen.last().expect("seen");
    assert_eq!(
        string_list(&end.data["subscriptions"]),
        std::slice::from_ref(&end_sid),
        "delivered for node 1's subscription"
    );

    let deleted = send_json(
        &nodes[1],
        reqwest::Method::DELETE,
        &format!("{}/{end_sid}", subs_path(&nodes[1], 0, "watcher")),
        nodes[1].creds(0),
        &Value::Null,
    )
    .await;
    assert_eq!(deleted.status, 204, "delete on node 2: {}", deleted.text());
    // Round k: an end, then a start. Once node 3 has the delete, a round's start
    // comes without its end.
    let seen = publish_until_seen(
        &nodes[0],
        &mut watcher,
        |k| {
            vec![
                marked("call.end", &call, &format!("gone-{k}")),
                marked("call.start", &call, &format!("probe-{k}")),
            ]
        },
        |ev| ev.ty() == "call.start",
        "the delete reaching node 3",
    )
    .await;
    assert!(seen
        .iter()
        .all(|ev| ev.ty() != "call.end" || ev.marker().is_some_and(|m| m.starts_with("gone-"))));
    let probe = new_call_sid();
    nodes[0]
        .publish(0, &marked("call.end", &probe, "late-end"))
        .await;
    nodes[0]
        .publish(0, &marked("call.start", &probe, "last"))
        .await;
    let tail: Vec<String> = markers(&watcher.until_marker("last", WAIT).await)
        .into_iter()
        .filter(|m| !m.starts_with(WARM) && !m.starts_with("gone-") && !m.starts_with("probe-"))
        .collect();
    assert_eq!(tail, ["last"], "no call.end once the delete reached node 3");

    let later = create_sub(&nodes[0], 0, "later", &[("types", "call.progress")]).await;
    let (mut stream, open) = nodes[2].stream_basic(0, "client=later").await;
    assert_eq!(
        open_subscription_sids(&open),
        [sid_of(&later)],
        "the stream attaches to node 1's subscription"
    );
    let call = new_call_sid();
    nodes[0]
        .publish(0, &marked("call.start", &call, "not-this"))
        .await;
    nodes[0]
        .publish(0, &marked("call.progress", &call, "this"))
        .await;
    let got = stream.until_marker("this", WAIT).await;
    assert_eq!(
        markers(&got),
        ["this"],
        "only what node 1's subscription asks for"
    );
}

/// The first client of a fresh cluster (its stream still empty) leaves before any
/// event, with only its `stream.open` cursor; what is published meanwhile comes
/// to it on another node, all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_handed_out_on_an_empty_stream_resumes_on_another_node() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let accounts = shared_accounts();
    let n1 = node(&nats, &accounts, "n1");
    let n2 = node(&nats, &accounts, "n2");
    for n in [&n1, &n2] {
        readyz_becomes(n, 200, WAIT).await;
    }
    let query = "client=early&types=call.*";
    let (stream, open) = n1.stream_basic(0, query).await;
    let cursor = open.id.clone().expect("stream.open carries a cursor");
    drop(stream);
    let call = new_call_sid();
    for n in ["1", "2", "3"] {
        n1.publish(0, &marked("call.progress", &call, n)).await;
    }
    let path = format!("{}?{query}", n2.stream_path(0));
    let mut resumed = open_sse_with(&n2, &path, n2.creds(0), &[("Last-Event-ID", &cursor)])
        .await
        .unwrap_or_else(|reply| panic!("resume on node 2: {} {}", reply.status, reply.text()));
    resumed.expect_open().await;
    assert_eq!(
        markers(&resumed.until_marker("3", WAIT).await),
        ["1", "2", "3"]
    );
}
