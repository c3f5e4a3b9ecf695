//! `POST /v1/Accounts/{sid}/Events` (docs/api.md §2–§3): the three body forms,
//! the delivered shape on a stream, all-or-nothing batches, and every error
//! status with its JSON body.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{
    assert_timestamp, event, new_call_sid, open_subscription_sids, unknown_account_sid, SseEvent,
    SseStream, TestServer, WAIT,
};

/// Asserts that `ev` is exactly the delivered form of `published`: the
/// documented key set and nothing else, each field's value, and the SSE id.
#[track_caller]
fn assert_delivered(
    ev: &SseEvent,
    published: &Value,
    id: &str,
    account_sid: &str,
    open_subs: &[String],
) {
    let sse_id = ev.id.as_deref().unwrap_or("");
    assert!(
        !sse_id.is_empty(),
        "delivered event without an `id:` line: {}",
        ev.data
    );

    let obj = ev
        .data
        .as_object()
        .unwrap_or_else(|| panic!("delivered data is not an object: {}", ev.data));
    let mut expected_keys: HashSet<&str> = [
        "id",
        "account_sid",
        "type",
        "timestamp",
        "data",
        "subscriptions",
    ]
    .into();
    if published.get("call_sid").is_some() {
        expected_keys.insert("call_sid");
    }
    if published.get("scope").is_some() {
        expected_keys.insert("scope");
    }
    let keys: HashSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys, expected_keys,
        "keys of the delivered event {}",
        ev.data
    );

    assert_eq!(
        obj["id"],
        json!(id),
        "delivered id = the id returned by the 202"
    );
    assert_eq!(obj["account_sid"], json!(account_sid));
    assert_eq!(obj["type"], published["type"]);
    if let Some(call) = published.get("call_sid") {
        assert_eq!(&obj["call_sid"], call);
    }
    if let Some(scope) = published.get("scope") {
        assert_eq!(&obj["scope"], scope);
    }
    let want_data = published.get("data").cloned().unwrap_or_else(|| json!({}));
    assert_eq!(obj["data"], want_data, "data echoed ({{}} when absent)");
    assert_timestamp(
        obj["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("timestamp in {}", ev.data)),
    );

    let subs = obj["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("subscriptions is not an array: {}", ev.data));
    assert!(!subs.is_empty(), "empty subscriptions in {}", ev.data);
    for sub in subs {
        let sub = sub
            .as_str()
            .unwrap_or_else(|| panic!("subscription not a string: {sub}"));
        assert!(
            sub.starts_with("SU"),
            "subscription {sub:?} does not start with SU"
        );
        assert!(
            open_subs.iter().any(|s| s == sub),
            "subscription {sub:?} is not one of stream.open's {open_subs:?}"
        );
    }
}

/// Reads until every id in `ids` has arrived; fails on anything else.
async fn collect_ids(stream: &mut SseStream, ids: &[String]) -> HashMap<String, SseEvent> {
    let mut want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut got = HashMap::new();
    while !want.is_empty() {
        let ev = stream
            .next_event(WAIT)
            .await
            .unwrap_or_else(|err| panic!("waiting for {want:?}: {err}"));
        let id = ev.data["id"].as_str().unwrap_or("").to_string();
        assert!(
            want.remove(id.as_str()),
            "unexpected event on the stream: {}",
            ev.data
        );
        got.insert(id, ev);
    }
    got
}

#[tokio::test]
async fn single_object_is_accepted_and_delivered_in_the_documented_shape() {
    let server = TestServer::start(|_| {});
    let (mut stream, open) = server.stream_basic(0, "").await;
    let subs = open_subscription_sids(&open);

    let call = new_call_sid();
    let full = json!({
        "type": "gather.end",
        "call_sid": call,
        "scope": "supervisor",
        "data": {"digits": "1234", "from": "+14155550100", "nested": {"a": [1, 2, {"b": null}]}}
    });
    let ids = server.publish(0, &full).await;
    let got = collect_ids(&mut stream, &ids).await;
    assert_delivered(&got[&ids[0]], &full, &ids[0], server.sid(0), &subs);

    // Minimal event: no call_sid, no scope, no data.
    let minimal = json!({"type": "call.start"});
    let ids = server.publish(0, &minimal).await;
    let got = collect_ids(&mut stream, &ids).await;
    assert_delivered(&got[&ids[0]], &minimal, &ids[0], server.sid(0), &subs);
}

#[tokio::test]
async fn json_array_is_accepted_and_every_event_delivered() {
    let server = TestServer::start(|_| {});
    let (mut stream, open) = server.stream_basic(0, "").await;
    let subs = open_subscription_sids(&open);

    let call = new_call_sid();
    let batch = vec![
        json!({"type": "call.start", "call_sid": call, "data": {"from": "+14155550100", "to": "+14155550199"}}),
        json!({"type": "say.start", "data": {"text": "hello"}}),
        json!({"type": "say.end", "call_sid": call}),
        json!({"type": "custom.thing_1.x", "call_sid": call, "scope": "agent-7", "data": {"k": 1.5}}),
    ];
    let ids = server.publish(0, &Value::Array(batch.clone())).await;
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        4,
        "ids are distinct: {ids:?}"
    );
    let got = collect_ids(&mut stream, &ids).await;
    for (published, id) in batch.iter().zip(&ids) {
        assert_delivered(&got[id], published, id, server.sid(0), &subs);
    }
}

#[tokio::test]
async fn ndjson_is_accepted_and_every_event_delivered() {
    let server = TestServer::start(|_| {});
    let (mut stream, open) = server.stream_basic(0, "").await;
    let subs = open_subscription_sids(&open);

    let call = new_call_sid();
    let lines = vec![
        json!({"type": "message.received", "call_sid": call, "data": {"body": "hi\nthere"}}),
        json!({"type": "message.sent"}),
        json!({"type": "message.error", "call_sid": call, "scope": "ops", "data": {"code": 30003}}),
    ];
    let ids = server.publish_ndjson(0, &lines).await;
    let got = collect_ids(&mut stream, &ids).await;
    for (published, id) in lines.iter().zip(&ids) {
        assert_delivered(&got[id], published, id, server.sid(0), &subs);
    }

    // The last line needs no trailing newline.
    let body = format!("{}\n{}", lines[0], lines[1]);
    let reply = server
        .post_events(
            server.sid(0),
            server.creds(0),
            Some("application/x-ndjson"),
            body,
        )
        .await;
    let ids = reply.accepted(2);
    let got = collect_ids(&mut stream, &ids).await;
    for (published, id) in lines.iter().zip(&ids) {
        assert_delivered(&got[id], published, id, server.sid(0), &subs);
    }
}

#[tokio::test]
async fn a_batch_with_one_bad_event_publishes_nothing() {
    let server = TestServer::start(|_| {});
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();
    let good = |n: &str| event("call.progress", Some(&call), json!({"n": n}));

    // JSON array, bad type at index 2.
    let mut batch: Vec<Value> = (0..5).map(|i| good(&format!("a{i}"))).collect();
    batch[2]["type"] = json!("Call.Progress");
    let reply = server.try_publish(0, &Value::Array(batch.clone())).await;
    let message = reply.assert_error(400, "invalid_event");
    assert!(
        message.contains("events[2].type"),
        "message {message:?} names events[2].type"
    );

    // The same batch as NDJSON: the index is the event line.
    let body: String = batch.iter().map(|ev| format!("{ev}\n")).collect();
    let reply = server
        .post_events(
            server.sid(0),
            server.creds(0),
            Some("application/x-ndjson"),
            body,
        )
        .await;
    let message = reply.assert_error(400, "invalid_event");
    assert!(
        message.contains("events[2].type"),
        "message {message:?} names events[2].type"
    );

    // NDJSON whose line 3 is not JSON at all.
    let body = format!(
        "{}\n{}\n{{\"type\": \"call.progress\", \n{}\n",
        good("c0"),
        good("c1"),
        good("c3")
    );
    let reply = server
        .post_events(
            server.sid(0),
            server.creds(0),
            Some("application/x-ndjson"),
            body,
        )
        .await;
    let message = reply.assert_error(400, "invalid_json");
    assert!(
        message.contains("events[2]"),
        "message {message:?} names events[2]"
    );

    // A bad last event (unknown field) also rejects the good ones before it.
    let mut batch: Vec<Value> = (0..4).map(|i| good(&format!("d{i}"))).collect();
    batch[3]["colour"] = json!("red");
    let reply = server.try_publish(0, &Value::Array(batch)).await;
    let message = reply.assert_error(400, "invalid_event");
    assert!(
        message.contains("events[3]") && message.contains("colour"),
        "message {message:?} names events[3] and the field"
    );

    // Terminator on the same call: nothing of the rejected batches came first.
    server.publish(0, &good("end")).await;
    let seen = stream.until_marker("end", WAIT).await;
    let markers: Vec<_> = seen.iter().map(|ev| ev.marker()).collect();
    assert_eq!(
        markers,
        vec![Some("end".to_string())],
        "only the terminator arrives"
    );
}

/// One body-validation case: (what, content type, body, status, code (or
/// `a|b` for either), texts the message must contain).
type BodyCase = (
    String,
    Option<&'static str>,
    String,
    u16,
    &'static str,
    Vec<String>,
);

/// Body validation cases. All use the right credentials.
fn body_error_cases(call: &str) -> Vec<BodyCase> {
    let ok = |ty: &str| json!({"type": ty, "call_sid": call, "data": {"n": "x"}});
    let with = |key: &str, value: Value| {
        let mut ev = ok("call.progress");
        ev[key] = value;
        ev
    };
    let json_ct = Some("application/json");
    let mut cases = vec![
        (
            "malformed JSON".to_string(),
            json_ct,
            r#"{"type": "call.start", "#.to_string(),
            400,
            "invalid_json",
            vec![],
        ),
        (
            "empty body".to_string(),
            json_ct,
            String::new(),
            400,
            "invalid_json",
            vec![],
        ),
        (
            "whitespace body".to_string(),
            json_ct,
            "  \n ".to_string(),
            400,
            "invalid_json",
            vec![],
        ),
        (
            "trailing garbage".to_string(),
            json_ct,
            format!("{} x", ok("call.start")),
            400,
            "invalid_json",
            vec![],
        ),
        (
            "non-object element".to_string(),
            json_ct,
            json!([ok("call.start"), 5]).to_string(),
            400,
            // The contract leaves open whether a non-object element is
            // unparseable JSON or an invalid event; either, naming events[1].
            "invalid_json|invalid_event",
            vec!["events[1]".to_string()],
        ),
        (
            "missing type".to_string(),
            json_ct,
            json!({"call_sid": call, "data": {}}).to_string(),
            400,
            "invalid_event",
            vec!["events[0].type".to_string()],
        ),
        (
            "type over 64 bytes".to_string(),
            json_ct,
            ok(&"a".repeat(65)).to_string(),
            400,
            "invalid_event",
            vec!["events[0].type".to_string()],
        ),
        (
            "unknown field".to_string(),
            json_ct,
            with("priority", json!(1)).to_string(),
            400,
            "invalid_event",
            vec!["events[0]".to_string(), "priority".to_string()],
        ),
        (
            "bad data in the second event of an array".to_string(),
            json_ct,
            json!([ok("call.start"), with("data", json!([1]))]).to_string(),
            400,
            "invalid_event",
            vec!["events[1].data".to_string()],
        ),
        (
            "NDJSON line not JSON".to_string(),
            Some("application/x-ndjson"),
            format!("{}\n{{nope\n", ok("call.start")),
            400,
            "invalid_json",
            vec!["events[1]".to_string()],
        ),
        (
            "NDJSON line with a bad type".to_string(),
            Some("application/x-ndjson"),
            format!("{}\n{}\n{}\n", ok("call.start"), ok("call.end"), ok("Bad")),
            400,
            "invalid_event",
            vec!["events[2].type".to_string()],
        ),
        (
            "event over 64 KiB".to_string(),
            json_ct,
            with("data", json!({"pad": "x".repeat(70_000)})).to_string(),
            413,
            "payload_too_large",
            vec![],
        ),
        (
            "second event over 64 KiB".to_string(),
            json_ct,
            json!([
                ok("call.start"),
                with("data", json!({"pad": "x".repeat(70_000)}))
            ])
            .to_string(),
            413,
            "payload_too_large",
            vec![],
        ),
        (
            "text/plain".to_string(),
            Some("text/plain"),
            ok("call.start").to_string(),
            415,
            "unsupported_media_type",
            vec![],
        ),
        (
            "application/xml".to_string(),
            Some("application/xml"),
            ok("call.start").to_string(),
            415,
            "unsupported_media_type",
            vec![],
        ),
        (
            "form".to_string(),
            Some("application/x-www-form-urlencoded"),
            "type=call.start".to_string(),
            415,
            "unsupported_media_type",
            vec![],
        ),
    ];
    for bad_type in [
        json!("Call.start"),
        json!("call..start"),
        json!("call."),
        json!(".call"),
        json!("1call"),
        json!("call start"),
        json!("call.Start"),
        json!("call-start"),
        json!(""),
        json!(5),
        json!(null),
    ] {
        cases.push((
            format!("bad type {bad_type}"),
            json_ct,
            with("type", bad_type).to_string(),
            400,
            "invalid_event",
            vec!["events[0].type".to_string()],
        ));
    }
    for bad_data in [json!([1]), json!("x"), json!(5), json!(true)] {
        cases.push((
            format!("data {bad_data}"),
            json_ct,
            with("data", bad_data).to_string(),
            400,
            "invalid_event",
            vec!["events[0].data".to_string()],
        ));
    }
    for bad_sid in [
        json!(""),
        json!("a b"),
        json!("x".repeat(65)),
        json!("CA/1"),
        json!(5),
    ] {
        cases.push((
            format!("call_sid {bad_sid}"),
            json_ct,
            with("call_sid", bad_sid).to_string(),
            400,
            "invalid_event",
            vec!["events[0].call_sid".to_string()],
        ));
    }
    for bad_scope in [
        json!(""),
        json!("a b"),
        json!("s".repeat(65)),
        json!("a,b"),
        json!(["a"]),
    ] {
        cases.push((
            format!("scope {bad_scope}"),
            json_ct,
            with("scope", bad_scope).to_string(),
            400,
            "invalid_event",
            vec!["events[0].scope".to_string()],
        ));
    }
    cases
}

#[tokio::test]
async fn every_body_error_is_json_with_its_status_and_publishes_nothing() {
    let server = TestServer::start(|_| {});
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();

    let mut failures = Vec::new();
    for (what, content_type, body, status, code, must_contain) in body_error_cases(&call) {
        let reply = server
            .post_events(server.sid(0), server.creds(0), content_type, body)
            .await;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let message = if code.contains('|') {
                assert_eq!(reply.status, status, "status; body {}", reply.text());
                reply.assert_error_shape(&code.split('|').collect::<Vec<_>>())
            } else {
                reply.assert_error(status, code)
            };
            for needle in &must_contain {
                assert!(
                    message.contains(needle.as_str()),
                    "message {message:?} lacks {needle:?}"
                );
            }
            if code == "invalid_json" && must_contain.is_empty() {
                assert!(
                    message.contains("body") || message.contains("events["),
                    "invalid_json message {message:?} names neither body nor events[i]"
                );
            }
        }));
        if let Err(panic) = outcome {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{what}: {text}"));
        }
    }

    server
        .publish(0, &event("call.progress", Some(&call), json!({"n": "end"})))
        .await;
    let seen = stream.until_marker("end", WAIT).await;
    assert_eq!(
        seen.len(),
        1,
        "rejected requests published something: {:?}",
        seen
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn inputs_at_the_edge_of_the_rules_are_accepted() {
    let server = TestServer::start(|_| {});
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();
    let ev = |ty: &str, n: &str| event(ty, Some(&call), json!({"n": n}));

    // No Content-Type is JSON.
    let reply = server
        .post_events(
            server.sid(0),
            server.creds(0),
            None,
            ev("call.start", "no-ct").to_string(),
        )
        .await;
    reply.accepted(1);
    // A charset parameter does not make JSON something else.
    let reply = server
        .post_events(
            server.sid(0),
            server.creds(0),
            Some("application/json; charset=utf-8"),
            ev("call.start", "charset").to_string(),
        )
        .await;
    reply.accepted(1);
    // A type of exactly 64 bytes, many segments, digits and underscores.
    let long_type = format!("a{}", ".b".repeat(31) + "c");
    assert_eq!(long_type.len(), 64);
    server.publish(0, &ev(&long_type, "64")).await;
    server.publish(0, &ev("x9_.0.__", "digits")).await;
    // call_sid and scope of 64 characters from the whole allowed alphabet.
    let sid64 = format!("Az09_.-{}", "q".repeat(57));
    let mut e = ev("call.progress", "sid64");
    e["call_sid"] = json!(sid64);
    e["scope"] = json!(sid64);
    server.publish(0, &e).await;
    // An event just under 64 KiB.
    server
        .publish(
            0,
            &event(
                "call.progress",
                Some(&call),
                json!({"n": "big", "pad": "y".repeat(60_000)}),
            ),
        )
        .await;

    let seen = stream.until_marker("big", WAIT).await;
    let markers: Vec<String> = seen
        .iter()
        .filter_map(|ev| ev.marker())
        .filter(|m| m != "sid64")
        .collect();
    assert_eq!(
        markers,
        ["no-ct", "charset", "64", "digits", "big"],
        "order on one call"
    );
    // sid64 is on another call_sid, so its place in the order is not fixed.
    if !seen
        .iter()
        .any(|ev| ev.marker().as_deref() == Some("sid64"))
    {
        let rest = stream.until_marker("sid64", WAIT).await;
        assert_eq!(rest.len(), 1, "only sid64 left: {rest:?}");
    }
}

#[tokio::test]
async fn auth_errors_are_401_and_403_with_json_bodies() {
    let server = TestServer::start(|_| {});
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();
    let body = event("call.progress", Some(&call), json!({"n": "x"})).to_string();
    let (sid, token) = (server.sid(0).to_string(), server.token(0).to_string());
    let (other_sid, other_token) = (server.sid(1).to_string(), server.token(1).to_string());
    let stranger = unknown_account_sid();
    let json_ct = Some("application/json");

    let reply = server.post_events(&sid, None, json_ct, body.clone()).await;
    reply.assert_error(401, "unauthorized");
    let reply = server
        .post_events(&sid, Some((&sid, "not-the-token")), json_ct, body.clone())
        .await;
    reply.assert_error(401, "unauthorized");
    let reply = server
        .post_events(&sid, Some((&sid, "")), json_ct, body.clone())
        .await;
    reply.assert_error(401, "unauthorized");
    let reply = server
        .post_events(&stranger, Some((&stranger, &token)), json_ct, body.clone())
        .await;
    reply.assert_error(401, "unauthorized");
    // Another account's valid credentials on this account's path.
    let reply = server
        .post_events(
            &sid,
            Some((&other_sid, &other_token)),
            json_ct,
            body.clone(),
        )
        .await;
    reply.assert_error(403, "forbidden");
    // Authentication comes before validation.
    let reply = server.post_events(&sid, None, json_ct, "{not json").await;
    reply.assert_error(401, "unauthorized");
    let reply = server
        .post_events(
            &sid,
            Some((&other_sid, &other_token)),
            Some("text/plain"),
            "{not json",
        )
        .await;
    reply.assert_error(403, "forbidden");

    server
        .publish(0, &event("call.progress", Some(&call), json!({"n": "end"})))
        .await;
    let seen = stream.until_marker("end", WAIT).await;
    assert_eq!(
        seen.len(),
        1,
        "refused requests published something: {:?}",
        seen
    );
}

#[tokio::test]
async fn batch_over_max_batch_is_413() {
    let server = TestServer::start(|config| config.publish.max_batch = 5);
    let call = new_call_sid();
    let batch = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| event("call.progress", Some(&call), json!({"n": i})))
            .collect()
    };
    server
        .try_publish(0, &Value::Array(batch(6)))
        .await
        .assert_error(413, "payload_too_large");
    let ndjson: String = batch(6).iter().map(|ev| format!("{ev}\n")).collect();
    server
        .post_events(
            server.sid(0),
            server.creds(0),
            Some("application/x-ndjson"),
            ndjson,
        )
        .await
        .assert_error(413, "payload_too_large");
    server.publish(0, &Value::Array(batch(5))).await;
    server.publish_ndjson(0, &batch(5)).await;
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413() {
    let server = TestServer::start(|config| config.publish.max_body_bytes = 2048);
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();
    let padded = |i: usize| {
        event(
            "call.progress",
            Some(&call),
            json!({"n": i, "pad": "z".repeat(300)}),
        )
    };
    let big: Vec<Value> = (0..10).map(padded).collect();
    assert!(Value::Array(big.clone()).to_string().len() > 2048);
    server
        .try_publish(0, &Value::Array(big.clone()))
        .await
        .assert_error(413, "payload_too_large");
    let ndjson: String = big.iter().map(|ev| format!("{ev}\n")).collect();
    server
        .post_events(
            server.sid(0),
            server.creds(0),
            Some("application/x-ndjson"),
            ndjson,
        )
        .await
        .assert_error(413, "payload_too_large");
    let small: Vec<Value> = (0..3).map(padded).collect();
    assert!(Value::Array(small.clone()).to_string().len() < 2048);
    let ids = server.publish(0, &Value::Array(small)).await;

    // Only the small batch arrives.
    let seen = stream.until_marker("2", WAIT).await;
    let got: Vec<&str> = seen
        .iter()
        .map(|ev| ev.data["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn large_bodies_within_the_default_limits_are_accepted() {
    // 1000 events of about 1 KiB: far over actix's 256 KiB default payload
    // limit, well under the 8 MiB `publish.max_body_bytes` default.
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let batch: Vec<Value> = (0..1000)
        .map(|i| {
            event(
                "call.progress",
                Some(&call),
                json!({"n": i, "pad": "p".repeat(1000)}),
            )
        })
        .collect();
    let ids = server.publish(0, &Value::Array(batch.clone())).await;
    assert_eq!(ids.len(), 1000);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        1000,
        "ids are unique"
    );
    server.publish_ndjson(0, &batch).await;
    // One more than the default max_batch (1000).
    let mut over = batch;
    over.push(event("call.progress", Some(&call), json!({"n": 1000})));
    server
        .try_publish(0, &Value::Array(over))
        .await
        .assert_error(413, "payload_too_large");
}

/// Mutates `body` at random: truncation, byte flips, structural characters,
/// invalid UTF-8.
fn mutate(rng: &mut StdRng, body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let noise: &[u8] = b"{}[]\",:\\ 0-9e.\x00\xff\xfeatrunlx\n";
    match rng.gen_range(0..5) {
        0 => out.truncate(rng.gen_range(0..out.len().max(1))),
        1 => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..out.len().max(1));
                if at < out.len() {
                    out[at] = noise[rng.gen_range(0..noise.len())];
                }
            }
        }
        2 => {
            let at = rng.gen_range(0..=out.len());
            let insert: Vec<u8> = (0..rng.gen_range(1..6))
                .map(|_| noise[rng.gen_range(0..noise.len())])
                .collect();
            out.splice(at..at, insert);
        }
        3 => {
            let at = rng.gen_range(0..out.len().max(1));
            let len = rng.gen_range(0..8).min(out.len() - at.min(out.len()));
            out.drain(at..at + len);
        }
        _ => out.extend_from_slice(&body[..rng.gen_range(0..body.len().max(1))]),
    }
    out
}

#[tokio::test]
async fn garbage_bodies_never_get_a_5xx_nor_publish_part_of_a_batch() {
    let server = TestServer::start(|_| {});
    let (mut stream, _) = server.stream_basic(0, "").await;
    let call = new_call_sid();
    let mut rng = StdRng::seed_from_u64(0x005b_0a2d);
    let mut accepted: HashSet<String> = HashSet::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();

    for round in 0..300 {
        let events: Vec<Value> = (0..rng.gen_range(1..5))
            .map(|i| {
                json!({"type": "call.progress", "call_sid": call, "scope": "s1",
                       "data": {"n": format!("r{round}.{i}"), "v": [1, "two", {"three": 3.0}]}})
            })
            .collect();
        let ndjson = rng.gen_bool(0.3);
        let template = if ndjson {
            events
                .iter()
                .map(|ev| format!("{ev}\n"))
                .collect::<String>()
        } else if events.len() == 1 && rng.gen_bool(0.5) {
            events[0].to_string()
        } else {
            Value::Array(events.clone()).to_string()
        };
        let body = mutate(&mut rng, template.as_bytes());
        let content_type = if ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let reply = server
            .post_events(
                server.sid(0),
                server.creds(0),
                Some(content_type),
                body.clone(),
            )
            .await;
        *statuses.entry(reply.status).or_default() += 1;
        assert!(
            matches!(reply.status, 202 | 400 | 413),
            "round {round}: status {} for body {:?}: {}",
            reply.status,
            String::from_utf8_lossy(&body),
            reply.text()
        );
        if reply.status == 202 {
            let n = reply.json()["accepted"].as_u64().unwrap_or(0) as usize;
            accepted.extend(reply.accepted(n));
        } else {
            let codes: &[&str] = if reply.status == 413 {
                &["payload_too_large"]
            } else {
                &["invalid_json", "invalid_event"]
            };
            reply.assert_error_shape(codes);
        }
    }
    // The server is still alive and well.
    let health = server.get("/healthz").await;
    assert_eq!(health.status, 200, "after the garbage: {}", health.text());

    server
        .publish(0, &event("call.progress", Some(&call), json!({"n": "end"})))
        .await;
    let mut want = accepted.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut saw_end = false;
    while !(saw_end && want.is_empty()) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = stream
            .next_event(left)
            .await
            .unwrap_or_else(|err| panic!("{err}; {} accepted events still missing", want.len()));
        if ev.marker().as_deref() == Some("end") {
            saw_end = true;
            continue;
        }
        let id = ev.data["id"].as_str().unwrap_or("").to_string();
        assert!(
            accepted.contains(&id),
            "an event of a rejected request was published: {}",
            ev.data
        );
        assert!(want.remove(&id), "event delivered twice: {}", ev.data);
    }
    eprintln!("garbage statuses: {statuses:?}");
}

/// Asserts a refusal with a numeric `Retry-After` of at least a second and the
/// documented JSON error body.
#[track_caller]
fn assert_retry_later(reply: &crate::common::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let retry = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(
        retry.is_some_and(|s| s >= 1),
        "{status} without a Retry-After of whole seconds: {:?}",
        reply.headers.get("retry-after")
    );
    reply.assert_error_body(code);
}

#[tokio::test]
async fn a_full_shard_queue_refuses_with_503_retry_after_and_publishes_nothing() {
    // One shard with a queue of one batch, held full by the test's hold (the
    // shard forwards a held batch but keeps its queue slot), so the refusal
    // does not depend on timing.
    let hold = switchboard::actors::shard::ShardHold::new();
    let server = TestServer::start(|config| {
        config.shards = 1;
        config.publish.shard_queue = 1;
        config.shard_hold = Some(hold.clone());
    });
    let (mut holder_stream, _) = server.stream_basic(0, "").await;
    let (mut refused_stream, _) = server.stream_basic(1, "").await;
    let call = new_call_sid();
    hold.hold();
    let held = server
        .publish(0, &event("call.start", Some(&call), json!({"n": "held"})))
        .await;
    let got = holder_stream.until_marker("held", WAIT).await;
    assert_eq!(got.len(), 1, "a held batch is still delivered");
    assert_eq!(got[0].data["id"], json!(held[0]));

    // Account 0 holds its whole share (a queue of one cannot be shared), so it
    // is told 429; account 1 has its share but the shard has no room: 503.
    let again = server
        .try_publish(0, &event("call.progress", Some(&call), json!({"n": "x"})))
        .await;
    assert_retry_later(&again, 429, "rate_limited");
    let refused_call = new_call_sid();
    let refused: Vec<Value> = (0..3)
        .map(|i| {
            event(
                "call.progress",
                Some(&refused_call),
                json!({"n": format!("refused{i}")}),
            )
        })
        .collect();
    let reply = server.try_publish(1, &Value::Array(refused)).await;
    assert_retry_later(&reply, 503, "overloaded");

    // Released, the shard gives the slot back; retry as `Retry-After` says
    // until the terminator, on the refused events' call, is accepted.
    hold.release();
    let deadline = tokio::time::Instant::now() + WAIT;
    let terminator = event("call.end", Some(&refused_call), json!({"n": "end"}));
    loop {
        let reply = server.try_publish(1, &terminator).await;
        if reply.status == 202 {
            break;
        }
        assert_retry_later(&reply, 503, "overloaded");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shard's slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // One call's events arrive in publication order, so the terminator
    // coming first proves none of the refused ones ever will.
    let got = refused_stream.until_marker("end", WAIT).await;
    let markers: Vec<_> = got.iter().map(|e| e.marker()).collect();
    assert_eq!(markers, [Some("end".to_string())], "nothing of the 503");
}

/// Concurrent publishers against a tiny shard queue: whatever each request is
/// answered, it is answered whole. Whether any is refused depends on timing,
/// so this does not prove a refusal happens (the test above does); it proves
/// that every 202's events arrive exactly once and no refused request's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_are_accepted_or_refused_whole() {
    let server = TestServer::start(|config| {
        config.shards = 1;
        config.publish.shard_queue = 1;
    });
    let (mut stream, _) = server.stream_basic(0, "").await;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let publisher = server.publisher(0);
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0;
            for round in 0..10 {
                let call = new_call_sid();
                let batch: Vec<Value> = (0..200)
                    .map(|i| {
                        event(
                            "call.progress",
                            Some(&call),
                            json!({"n": format!("{task}.{round}.{i}")}),
                        )
                    })
                    .collect();
                let reply = publisher
                    .post("application/json", Value::Array(batch).to_string())
                    .await;
                match reply.status {
                    202 => accepted.extend(reply.accepted(200)),
                    429 => {
                        assert_retry_later(&reply, 429, "rate_limited");
                        refused += 1;
                    }
                    503 => {
                        assert_retry_later(&reply, 503, "overloaded");
                        refused += 1;
                    }
                    other => panic!("publish under load: {other} {}", reply.text()),
                }
            }
            (accepted, refused)
        }));
    }
    let mut accepted: HashSet<String> = HashSet::new();
    let mut refused = 0;
    for task in tasks {
        let (ids, r) = task.await.expect("publisher task");
        accepted.extend(ids);
        refused += r;
    }
    eprintln!(
        "overload: {} events accepted, {refused} requests refused",
        accepted.len()
    );
    let mut want = accepted.clone();
    while !want.is_empty() {
        let ev = stream
            .next_event(WAIT)
            .await
            .unwrap_or_else(|err| panic!("{err}; {} accepted events missing", want.len()));
        let id = ev.data["id"].as_str().unwrap_or("").to_string();
        assert!(
            accepted.contains(&id),
            "event of a refused request delivered: {}",
            ev.data
        );
        assert!(want.remove(&id), "event delivered twice: {}", ev.data);
    }
}
