//! docs/api.md §8 limits, replayed over HTTP as a tenant would abuse them: each quota
//! with a small configured value, the refusal (429 naming the key, `Retry-After` for
//! rates), and proof that nothing of a refused request was created or delivered.
//! Then the fair shard queue: one account's burst aimed at one shard is refused
//! while another account keeps publishing to that very shard.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::{
    create_sub, marked, markers, post_form, request, scrape, send_json, subs_path, value_markers,
    ws_connect, HookReceiver,
};
use crate::common::twilio::{assert_twilio_error, created, fresh_number, Api};
use crate::common::{event, sign, Reply, TestServer, WAIT};

/// Asserts a 429 `quota_exceeded` whose message names `key`.
#[track_caller]
fn assert_quota(reply: &Reply, key: &str) {
    let message = reply.assert_error(429, "quota_exceeded");
    assert!(
        message.starts_with(&format!("{key}:")),
        "message names {key}: {message}"
    );
}

/// Asserts a 429 `rate_limited` naming `key`, with a whole-seconds `Retry-After`.
#[track_caller]
fn assert_rate_limited(reply: &Reply, key: &str) {
    let message = reply.assert_error(429, "rate_limited");
    assert!(
        message.starts_with(&format!("{key}:")),
        "message names {key}: {message}"
    );
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in {:?}", reply.headers));
    assert!(retry_after >= 1, "Retry-After {retry_after}");
}

/// Publishes one event, retrying (a bounded number of times) only while the account's
/// own earlier batches still fill its share of the shard queue; any other answer than
/// 202 — a queue filled by another account above all — fails the test.
async fn publish_within_own_share(server: &TestServer, account: usize, body: &Value) {
    for _ in 0..200 {
        let reply = server.try_publish(account, body).await;
        if reply.status == 202 {
            reply.accepted(1);
            return;
        }
        let message = reply.assert_error(429, "rate_limited");
        assert!(
            message.contains("this account already holds its share"),
            "refused for another reason than its own share: {message}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("account {account} never got its share back");
}

/// `GET` a client's subscriptions with `account`'s Basic credentials.
async fn list_subs(server: &TestServer, account: usize, client: &str) -> Reply {
    request(
        server,
        Method::GET,
        &subs_path(server, account, client),
        server.creds(account),
        None,
    )
    .await
}

#[tokio::test]
async fn sessions_per_account_are_bounded_and_freed() {
    let server = TestServer::start(|c| {
        c.limits.sessions_per_account = 2;
        // The server notices a closed stream at its next write.
        c.stream.heartbeat_secs = 1;
    });
    let before = scrape(&server).await;
    for key in [
        "limits.sessions_per_account",
        "limits.filter_terms",
        "publish.shard_queue",
    ] {
        assert_eq!(
            before.value("switchboard_quota_refusals_total", &[("key", key)]),
            0.0,
            "{key} pre-created at zero"
        );
    }
    // No client id: a session that ends with its connection.
    let (ephemeral, _) = server.stream_basic(0, "").await;
    create_sub(&server, 0, "b", &[("types", "x.y")]).await;

    // A third client, by stream and by control channel: refused, nothing created.
    let path = format!("{}?client=c", server.stream_path(0));
    assert_quota(
        &server.rejected(&path, server.creds(0)).await,
        "limits.sessions_per_account",
    );
    let reply = post_form(&server, &subs_path(&server, 0, "c"), server.creds(0), &[]).await;
    assert_quota(&reply, "limits.sessions_per_account");
    assert_eq!(list_subs(&server, 0, "c").await.status, 404, "no session c");
    // The quota is per account.
    let (_other, _) = server.stream_basic(1, "client=c").await;

    // Closing the ephemeral stream ends its session and frees the slot.
    drop(ephemeral);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = post_form(&server, &subs_path(&server, 0, "c"), server.creds(0), &[]).await;
        if reply.status == 201 {
            break;
        }
        assert_quota(&reply, "limits.sessions_per_account");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's session slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = scrape(&server).await;
    assert!(
        after.value(
            "switchboard_quota_refusals_total",
            &[("key", "limits.sessions_per_account")]
        ) >= 2.0,
        "refusals counted"
    );
}

#[tokio::test]
async fn subscriptions_per_client_by_control_channel_and_by_stream_url() {
    let server = TestServer::start(|c| {
        c.limits.subscriptions_per_client = 2;
        c.stream.idle_ttl_secs = 60;
    });
    create_sub(&server, 0, "x", &[("types", "a.one")]).await;
    create_sub(&server, 0, "x", &[("types", "a.two")]).await;
    let reply = post_form(
        &server,
        &subs_path(&server, 0, "x"),
        server.creds(0),
        &[("types", "a.three")],
    )
    .await;
    assert_quota(&reply, "limits.subscriptions_per_client");
    let json_reply = send_json(
        &server,
        Method::POST,
        &subs_path(&server, 0, "x"),
        server.creds(0),
        &json!({"types": ["a.four"]}),
    )
    .await;
    assert_quota(&json_reply, "limits.subscriptions_per_client");

    // A stream URL defining a third subscription: Basic and signed alike.
    let basic = format!("{}?client=x&types=a.three", server.stream_path(0));
    assert_quota(
        &server.rejected(&basic, server.creds(0)).await,
        "limits.subscriptions_per_client",
    );
    let signed = sign(
        server.token(0),
        &format!("{}?client=x&types=a.five", server.stream_path(0)),
    );
    assert_quota(
        &server.rejected(&signed, None).await,
        "limits.subscriptions_per_client",
    );

    // Nothing was added, and a URL for an existing subscription still connects.
    let subs = list_subs(&server, 0, "x").await.json();
    let types: BTreeSet<String> = subs["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["types"].to_string())
        .collect();
    assert_eq!(types.len(), 2, "still two subscriptions: {subs}");
    let (_stream, open) = server.stream_basic(0, "client=x&types=a.one").await;
    assert_eq!(
        open.data["data"]["subscriptions"].as_array().unwrap().len(),
        2
    );
    // Another client of the account is not affected.
    create_sub(&server, 0, "y", &[("types", "a.three")]).await;
}

#[tokio::test]
async fn webhooks_per_account_are_bounded_and_freed() {
    let hooks = HookReceiver::start(0).await;
    let server = TestServer::start(|c| c.limits.webhooks_per_account = 1);
    let url = hooks.url("/hook");
    let first = create_sub(&server, 0, "w1", &[("types", "h.*"), ("callback", &url)]).await;
    let reply = post_form(
        &server,
        &subs_path(&server, 0, "w2"),
        server.creds(0),
        &[("types", "h.*"), ("callback", &url)],
    )
    .await;
    assert_quota(&reply, "limits.webhooks_per_account");
    assert_eq!(
        list_subs(&server, 0, "w2").await.status,
        404,
        "no session w2"
    );

    // Turning a stream subscription into a webhook is counted too, and refused
    // it keeps the subscription as it was.
    let stream_sub = create_sub(&server, 0, "w3", &[("types", "h.*")]).await;
    let sub_path = format!(
        "{}/{}",
        subs_path(&server, 0, "w3"),
        stream_sub["sid"].as_str().unwrap()
    );
    let reply = post_form(&server, &sub_path, server.creds(0), &[("callback", &url)]).await;
    assert_quota(&reply, "limits.webhooks_per_account");
    let kept = request(&server, Method::GET, &sub_path, server.creds(0), None).await;
    assert_eq!(kept.json()["callback"], Value::Null, "{}", kept.text());

    // Another account has its own quota.
    create_sub(&server, 1, "w1", &[("types", "h.*"), ("callback", &url)]).await;

    // Removing the webhook frees its slot.
    let reply = request(
        &server,
        Method::DELETE,
        &format!(
            "{}/{}",
            subs_path(&server, 0, "w1"),
            first["sid"].as_str().unwrap()
        ),
        server.creds(0),
        None,
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let reply = post_form(&server, &sub_path, server.creds(0), &[("callback", &url)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn filter_terms_are_bounded_on_every_surface() {
    let server = TestServer::start(|c| c.limits.filter_terms = 3);
    // Three terms pass.
    create_sub(
        &server,
        0,
        "f",
        &[("types", "a.b,c.d"), ("where", "data.x=1")],
    )
    .await;
    let reply = post_form(
        &server,
        &subs_path(&server, 0, "f"),
        server.creds(0),
        &[
            ("types", "a.b,c.d"),
            ("where", "data.x=1"),
            ("where", "data.y=2"),
        ],
    )
    .await;
    assert_quota(&reply, "limits.filter_terms");
    let path = format!("{}?client=g&types=a,b,c,d", server.stream_path(0));
    assert_quota(
        &server.rejected(&path, server.creds(0)).await,
        "limits.filter_terms",
    );
    let signed = sign(
        server.token(0),
        &format!(
            "{}?client=g&where=data.a%3D1&where=data.b%3D1&where=data.c%3D1&where=data.d%3D1",
            server.stream_path(0)
        ),
    );
    assert_quota(&server.rejected(&signed, None).await, "limits.filter_terms");
    assert_eq!(list_subs(&server, 0, "g").await.status, 404, "no session g");

    // An update that would widen the filter past the quota changes nothing.
    let sub = &list_subs(&server, 0, "f").await.json()["subscriptions"][0];
    let sub_path = format!(
        "{}/{}",
        subs_path(&server, 0, "f"),
        sub["sid"].as_str().unwrap()
    );
    let reply = post_form(
        &server,
        &sub_path,
        server.creds(0),
        &[("types", "a.b,c.d,e.f,g.h")],
    )
    .await;
    assert_quota(&reply, "limits.filter_terms");
    let kept = request(&server, Method::GET, &sub_path, server.creds(0), None).await;
    assert_eq!(
        kept.json()["types"],
        json!(["a.b", "c.d"]),
        "{}",
        kept.text()
    );
}

#[tokio::test]
async fn concurrent_calls_per_account_refuse_rest_and_sim_calls() {
    let server = TestServer::start(|c| {
        c.sim.time_scale = 0.01;
        c.limits.calls_per_account = 1;
    });
    let api = Api::new(&server, 0);
    let from = fresh_number();
    let inbound = fresh_number();
    api.provision(&from, &[]).await;
    api.provision(&inbound, &[]).await;
    let hold = r#"<Response><Pause length="3000"/></Response>"#;
    let place_params = [
        ("To", "+16505550199"),
        ("From", from.as_str()),
        ("Twiml", hold),
    ];
    let place = || api.post("Calls.json", &place_params);
    let first = created(&place().await, "POST Calls.json")["sid"]
        .as_str()
        .unwrap_or("")
        .to_string();

    // REST: Twilio's error shape with status 429, naming the key.
    let refused = place().await;
    let message = assert_twilio_error(&refused, 429, 20429);
    assert!(
        message.starts_with("limits.calls_per_account:"),
        "{message}"
    );
    // Sim: 429 quota_exceeded.
    let reply = api
        .sim("Calls", &json!({"from": "+16505550100", "to": inbound}))
        .await;
    assert_quota(&reply, "limits.calls_per_account");
    // Neither started a call.
    let calls = api.get("Calls.json").await.json();
    assert_eq!(calls["calls"].as_array().unwrap().len(), 1, "{calls}");

    // Another account is not affected.
    let other = Api::new(&server, 1);
    let other_from = fresh_number();
    other.provision(&other_from, &[]).await;
    let reply = other
        .post(
            "Calls.json",
            &[
                ("To", "+16505550199"),
                ("From", &other_from),
                ("Twiml", hold),
            ],
        )
        .await;
    created(&reply, "POST Calls.json as account 1");

    // Hanging up frees the slot.
    let reply = api
        .post(&format!("Calls/{first}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    api.final_call(&first).await;
    created(&place().await, "POST Calls.json after the first ended");
}

#[tokio::test]
async fn publish_rate_refuses_the_whole_batch_with_retry_after() {
    let server = TestServer::start(|c| {
        c.publish.max_batch = 5;
        c.limits.publish_per_sec = 1;
        c.limits.publish_burst = 5;
    });
    let (mut stream, _) = server.stream_basic(0, "client=r&types=r.*").await;
    let call = "CA00000000000000000000000000000001";
    let burst: Vec<Value> = (0..5)
        .map(|i| marked("r.ok", call, &format!("ok{i}")))
        .collect();
    server.try_publish(0, &json!(burst)).await.accepted(5);
    let refused = json!([marked("r.no", call, "no0"), marked("r.no", call, "no1")]);
    let reply = server.try_publish(0, &refused).await;
    assert_rate_limited(&reply, "limits.publish_per_sec");
    // Per account: the other account publishes at once.
    server
        .try_publish(1, &json!(marked("r.ok", call, "other")))
        .await
        .accepted(1);

    // The terminator: retried (bounded) until the rate lets it through.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = server
            .try_publish(0, &json!(marked("r.end", call, "end")))
            .await;
        if reply.status == 202 {
            break;
        }
        assert_rate_limited(&reply, "limits.publish_per_sec");
        assert!(
            tokio::time::Instant::now() < deadline,
            "rate never refilled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = markers(&stream.until_marker("end", WAIT).await);
    assert_eq!(seen, ["ok0", "ok1", "ok2", "ok3", "ok4", "end"]);
}

#[tokio::test]
async fn client_event_rate_is_per_client() {
    let server = TestServer::start(|c| {
        c.limits.client_events_per_sec = 1;
        c.limits.client_events_burst = 2;
    });
    let (mut stream, _) = server.stream_basic(0, "client=watch&types=client.*").await;
    let send = |client: &'static str, n: &'static str| {
        let server = &server;
        async move {
            send_json(
                server,
                Method::POST,
                &format!(
                    "/v1/Accounts/{}/ClientEvents?client={client}",
                    server.sid(0)
                ),
                server.creds(0),
                &event("client.note", None, json!({ "n": n })),
            )
            .await
        }
    };
    send("a", "a1").await.accepted(1);
    send("a", "a2").await.accepted(1);
    assert_rate_limited(&send("a", "a3").await, "limits.client_events_per_sec");
    // Over a signed URL too: the limit is the client's, whatever the credentials.
    let signed = sign(
        server.token(0),
        &format!("/v1/Accounts/{}/ClientEvents?client=a", server.sid(0)),
    );
    let reply = send_json(
        &server,
        Method::POST,
        &signed,
        None,
        &event("client.note", None, json!({"n": "a4"})),
    )
    .await;
    assert_rate_limited(&reply, "limits.client_events_per_sec");
    // Another client of the account is not slowed down; it is the terminator.
    send("b", "b1").await.accepted(1);
    let seen = markers(&stream.until_marker("b1", WAIT).await);
    assert_eq!(
        seen,
        ["a1", "a2", "b1"],
        "refused events were not delivered"
    );
}

#[tokio::test]
async fn client_event_rate_applies_to_websocket_frames() {
    let server = TestServer::start(|c| {
        c.limits.client_events_per_sec = 1;
        c.limits.client_events_burst = 2;
    });
    let path = format!("{}?client=wsa&types=client.*", server.stream_path(0));
    let mut ws = ws_connect(&server, &path, server.creds(0))
        .await
        .unwrap_or_else(|(status, body)| panic!("ws connect: {status} {body}"));
    let open = ws.expect_json().await;
    assert_eq!(open["type"], json!("stream.open"), "{open}");
    for n in ["a1", "a2", "a3"] {
        ws.send_text(&event("client.note", None, json!({ "n": n })).to_string())
            .await;
    }
    let frames = ws.until(|f| f["type"] == json!("stream.error")).await;
    let error = frames.last().unwrap();
    assert_eq!(error["data"]["code"], json!("rate_limited"), "{error}");
    assert!(
        error["data"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("limits.client_events_per_sec:")),
        "{error}"
    );
    // The terminator, from another client: a3 never arrives before it.
    send_json(
        &server,
        Method::POST,
        &format!("/v1/Accounts/{}/ClientEvents?client=other", server.sid(0)),
        server.creds(0),
        &event("client.note", None, json!({"n": "end"})),
    )
    .await
    .accepted(1);
    let mut seen: Vec<Value> = frames;
    seen.extend(ws.until_marker("end").await);
    let mut got = value_markers(&seen);
    got.retain(|m| m != "-");
    got.sort();
    assert_eq!(got, ["a1", "a2", "end"], "frames: {seen:?}");
    ws.close().await;
}

/// Publishes one batch of `size` events on `call`, all marked `marker`.
async fn burst_batch(
    publisher: crate::common::Publisher,
    call: &str,
    marker: String,
    size: usize,
) -> (String, Reply) {
    let batch: Vec<Value> = (0..size).map(|_| marked("q.a", call, &marker)).collect();
    let reply = publisher
        .post("application/json", json!(batch).to_string())
        .await;
    (marker, reply)
}

#[tokio::test]
async fn one_account_cannot_fill_a_shard_queue_for_the_others() {
    // One shard, a queue of 4 batches: an account may hold 2 of them.
    let server = TestServer::start(|c| {
        c.shards = 1;
        c.publish.shard_queue = 4;
    });
    let call = "CA000000000000000000000000000000aa";
    let (mut a_stream, _) = server.stream_basic(0, "client=qa&types=q.*").await;
    let (mut b_stream, _) = server.stream_basic(1, "client=qb&types=q.*").await;

    let mut accepted_a = BTreeSet::new();
    let mut refused_a = BTreeSet::new();
    let mut b_sent = 0usize;
    // Bounded rounds: A bursts concurrently (many batches on one call, so one
    // shard) while B publishes one batch at a time to the same shard. However the
    // requests interleave, A never holds more than its half, so B always finds a
    // slot: B is only ever refused for its own share (its earlier batches may still
    // be queued, since 202 does not wait for the shard), never for a queue A filled.
    for round in 0..20 {
        let bursts: Vec<_> = (0..24)
            .map(|i| {
                tokio::spawn(burst_batch(
                    server.publisher(0),
                    call,
                    format!("a{round}-{i}"),
                    20,
                ))
            })
            .collect();
        for _ in 0..6 {
            b_sent += 1;
            let body = json!(marked("q.b", call, &format!("b{b_sent}")));
            publish_within_own_share(&server, 1, &body).await;
        }
        for burst in bursts {
            let (marker, reply) = burst.await.expect("burst task");
            if reply.status == 202 {
                reply.accepted(20);
                accepted_a.insert(marker);
            } else {
                assert_rate_limited(&reply, "publish.shard_queue");
                refused_a.insert(marker);
            }
        }
        if !refused_a.is_empty() {
            break;
        }
    }
    assert!(
        !refused_a.is_empty(),
        "A's concurrent bursts never held the shard past its share"
    );

    // Terminators, then what each subscriber saw.
    publish_within_own_share(&server, 0, &json!(marked("q.end", call, "a-end"))).await;
    publish_within_own_share(&server, 1, &json!(marked("q.end", call, "b-end"))).await;
    let seen_a: BTreeSet<String> = markers(&a_stream.until_marker("a-end", WAIT).await)
        .into_iter()
        .filter(|m| m != "a-end")
        .collect();
    assert_eq!(seen_a, accepted_a, "A's refused batches published nothing");
    let seen_b = markers(&b_stream.until_marker("b-end", WAIT).await);
    assert_eq!(
        seen_b.len(),
        b_sent + 1,
        "every B event delivered: {seen_b:?}"
    );
}
