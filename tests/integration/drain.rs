//! SIGTERM drains (docs/api.md §8) that lose nothing: live calls end with `call.end`
//! and their status callbacks before streams get `stream.shutdown`, and webhook
//! events queued at the drain are still delivered when the receiver is up.

use serde_json::json;

use crate::common::channels::{create_sub, marked, HookReceiver};
use crate::common::twilio::{fresh_number, sim_server, Api, AppServer, CALL_WAIT};
use crate::common::{free_port, new_call_sid, TestServer, WAIT};

const CALLER: &str = "+14155550100";

#[tokio::test]
async fn a_drain_ends_live_calls_with_call_end_and_status_callbacks_before_stream_shutdown() {
    let mut server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/hold", r#"<Response><Pause length="3600"/></Response>"#);
    app.respond("/status", 200, "text/plain", "");
    let number = fresh_number();
    api.provision(
        &number,
        &[
            ("VoiceUrl", &app.url("/hold")),
            ("StatusCallback", &app.url("/status")),
        ],
    )
    .await;
    let (mut stream, _open) = server.stream_basic(0, "types=call.*").await;
    let call = api.sim_call(CALLER, &number).await;
    let started = stream
        .collect_until(|ev| ev.ty() == "call.start", CALL_WAIT)
        .await
        .expect("call.start");
    assert_eq!(
        started.last().map(|ev| ev.data["call_sid"].clone()),
        Some(json!(call))
    );

    server.begin_shutdown();
    let rest = stream
        .collect_until(|ev| ev.ty() == "stream.shutdown", CALL_WAIT)
        .await
        .expect("the stream closes with stream.shutdown");
    let types: Vec<&str> = rest.iter().map(|ev| ev.ty()).collect();
    assert_eq!(
        types,
        ["call.end", "stream.shutdown"],
        "call.end arrives before stream.shutdown"
    );
    assert_eq!(rest[0].data["call_sid"], json!(call), "{:?}", rest[0].data);
    assert_eq!(rest[0].data["data"]["status"], json!("completed"));

    let status = app.first_request("/status").await;
    status.assert_signed();
    status.assert_param("CallSid", &call);
    status.assert_param("CallStatus", "completed");
}

#[tokio::test]
async fn a_drain_delivers_queued_webhook_events_once_the_receiver_is_up() {
    let mut server = TestServer::start(|config| {
        config.webhook.initial_backoff_ms = 20;
        config.webhook.max_backoff_secs = 1;
    });
    // The receiver is down: the events stay queued, retried with backoff.
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/hook");
    create_sub(
        &server,
        0,
        "api1",
        &[("types", "call.*"), ("callback", &callback)],
    )
    .await;
    let call = new_call_sid();
    let mut published = Vec::new();
    for n in 0..5 {
        published.extend(
            server
                .publish(0, &marked("call.progress", &call, &n.to_string()))
                .await,
        );
    }

    server.begin_shutdown();
    let receiver = HookReceiver::start_on(port, 0).await;
    let requests = receiver
        .wait_for(
            WAIT,
            "every queued event delivered during the drain",
            |reqs| {
                let bodies: Vec<String> = reqs
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect();
                published
                    .iter()
                    .all(|id| bodies.iter().any(|body| body.contains(id.as_str())))
            },
        )
        .await;
    assert!(requests.iter().all(|r| r.answered == 200));
}
