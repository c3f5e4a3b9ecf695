//! Webhook subscriptions (docs/api.md §5, docs/design.md "Webhooks"): a callback
//! on the control channel gets signed JSON arrays of events in order,
//! retried with backoff until a 2xx; `webhook.allowed_hosts` limits callbacks.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::{
    create_sub, eventually_metrics, marked, post_form, send_json, sid_of, subs_path,
    webhook_signature, HookReceiver, HookRequest,
};
use crate::common::{new_call_sid, TestServer, WAIT};

fn batch_ids(req: &HookRequest) -> Vec<String> {
    req.events()
        .iter()
        .map(|ev| ev["id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Ids acknowledged (in a request answered 200), in order of first sight.
fn acked_ids(reqs: &[HookRequest]) -> Vec<String> {
    let mut seen = HashSet::new();
    reqs.iter()
        .filter(|r| r.answered == 200)
        .flat_map(batch_ids)
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[tokio::test]
async fn a_webhook_gets_every_event_in_order_signed_and_retried() {
    let server = TestServer::start(|c| {
        c.webhook.initial_backoff_ms = 20;
        c.webhook.max_backoff_secs = 1;
        c.webhook.max_batch = 4;
    });
    let receiver = HookReceiver::start(2).await;
    let callback = receiver.url("/hook");
    let before = crate::common::channels::scrape(&server)
        .await
        .value("switchboard_webhook_retries_total", &[]);

    let sub = create_sub(
        &server,
        0,
        "api1",
        &[("types", "call.*"), ("callback", &callback)],
    )
    .await;
    assert_eq!(sub["callback"], json!(callback), "callback in {sub}");
    let sid = sid_of(&sub);

    let call = new_call_sid();
    let mut published = Vec::new();
    for n in 0..10 {
        published.extend(
            server
                .publish(0, &marked("call.progress", &call, &n.to_string()))
                .await,
        );
        if n == 4 {
            // Not a call.* type: never sent to this webhook.
            server.publish(0, &marked("say.start", &call, "say")).await;
        }
    }

    let want = published.clone();
    let reqs = receiver
        .wait_for(WAIT, "acknowledged all 10 events", |reqs| {
            let acked: HashSet<String> = acked_ids(reqs).into_iter().collect();
            want.iter().all(|id| acked.contains(id))
        })
        .await;

    assert!(
        reqs.len() >= 3,
        "two 500s then at least one 200: {} requests",
        reqs.len()
    );
    assert_eq!(
        acked_ids(&reqs),
        published,
        "acknowledged order = published order"
    );

    let mut first_sight = Vec::new();
    let mut seen_in_failed: HashSet<String> = HashSet::new();
    let mut acked_once: HashSet<String> = HashSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    for req in &reqs {
        assert_eq!(req.method, "POST", "webhook method");
        assert_eq!(req.target, "/hook", "webhook path");
        assert!(
            req.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "Content-Type {:?}",
            req.header("content-type")
        );
        let expected = webhook_signature(server.token(0), &callback, &req.body);
        assert_eq!(
            req.header("x-switchboard-signature"),
            Some(expected.as_str()),
            "X-Switchboard-Signature of a {}-byte body",
            req.body.len()
        );
        let events = req.events();
        assert!(!events.is_empty(), "empty webhook batch");
        assert!(
            events.len() <= 4,
            "batch of {} > webhook.max_batch",
            events.len()
        );
        for ev in &events {
            let id = ev["id"].as_str().unwrap_or("").to_string();
            assert!(published.contains(&id), "unexpected event {ev}");
            assert_eq!(ev["account_sid"], json!(server.sid(0)));
            assert_eq!(ev["type"], json!("call.progress"));
            assert_eq!(ev["call_sid"], json!(call));
            let subs = ev["subscriptions"].as_array().cloned().unwrap_or_default();
            assert_eq!(subs, vec![json!(sid)], "subscriptions of {ev}");
            if seen.insert(id.clone()) {
                first_sight.push(id.clone());
            } else {
                assert!(
                    seen_in_failed.contains(&id),
                    "{id} sent again although every earlier send was acknowledged"
                );
            }
            if req.answered == 200 {
                assert!(acked_once.insert(id.clone()), "{id} acknowledged twice");
            } else {
                seen_in_failed.insert(id);
            }
        }
    }
    assert_eq!(first_sight, published, "first sends in publication order");

    eventually_metrics(&server, "webhook_retries_total moved by at least 2", |s| {
        s.value("switchboard_webhook_retries_total", &[]) >= before + 2.0
    })
    .await;
}

#[tokio::test]
async fn a_json_webhook_subscription_gets_a_batch_published_at_once() {
    let server = TestServer::start(|c| c.webhook.initial_backoff_ms = 20);
    let receiver = HookReceiver::start(0).await;
    let callback = receiver.url("/events?tenant=7");
    let reply = send_json(
        &server,
        Method::POST,
        &subs_path(&server, 0, "api2"),
        server.creds(0),
        &json!({"types": "call.end", "callback": callback}),
    )
    .await;
    assert_eq!(reply.status, 201, "JSON webhook POST: {}", reply.text());
    assert_eq!(reply.json()["callback"], json!(callback));
    eventually_metrics(&server, "one webhook subscription", |s| {
        s.value("switchboard_subscriptions", &[("transport", "webhook")]) == 1.0
    })
    .await;

    let call = new_call_sid();
    let events: Vec<Value> = (0..6)
        .map(|n| {
            marked(
                if n % 2 == 0 { "call.end" } else { "call.start" },
                &call,
                &n.to_string(),
            )
        })
        .collect();
    let ids = server.publish(0, &Value::Array(events)).await;
    let want: Vec<String> = ids.iter().step_by(2).cloned().collect();
    let want2 = want.clone();
    let reqs = receiver
        .wait_for(WAIT, "acknowledged the three call.end", |reqs| {
            acked_ids(reqs).len() >= want2.len()
        })
        .await;
    assert_eq!(acked_ids(&reqs), want);
    for req in &reqs {
        assert_eq!(req.target, "/events?tenant=7");
        let expected = webhook_signature(server.token(0), &callback, &req.body);
        assert_eq!(
            req.header("x-switchboard-signature"),
            Some(expected.as_str())
        );
    }
}

#[tokio::test]
async fn the_allow_list_refuses_other_callback_hosts() {
    let server = TestServer::start(|c| c.webhook.allowed_hosts = vec!["example.com".to_string()]);
    let path = subs_path(&server, 0, "api3");
    for callback in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "https://example.org/hook",
        "ftp://example.com/hook",
    ] {
        let message = post_form(
            &server,
            &path,
            server.creds(0),
            &[("types", "call.*"), ("callback", callback)],
        )
        .await
        .assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("callback"),
            "message {message:?} for {callback}"
        );
        let message = send_json(
            &server,
            Method::POST,
            &path,
            server.creds(0),
            &json!({"callback": callback}),
        )
        .await
        .assert_error(400, "invalid_parameter");
        assert!(message.starts_with("callback"), "message {message:?}");
    }
    // A listed host is accepted; changing it to an unlisted one is refused.
    let sub = create_sub(
        &server,
        0,
        "api3",
        &[
            ("types", "call.*"),
            ("callback", "https://example.com/hook"),
        ],
    )
    .await;
    assert_eq!(sub["callback"], json!("https://example.com/hook"));
    let one = format!("{path}/{}", sid_of(&sub));
    let message = send_json(
        &server,
        Method::PATCH,
        &one,
        server.creds(0),
        &json!({"callback": "http://127.0.0.1:9/hook"}),
    )
    .await
    .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("callback"), "message {message:?}");
}
