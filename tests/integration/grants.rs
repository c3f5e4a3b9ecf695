//! Grants (docs/api.md §4 `scopes`/`act` and "The grant belongs to the connection", §6
//! acting on calls), each attack of issue #8 replayed over real HTTP and WebSocket:
//!
//! - a signed URL without `act=`, or whose `where` does not match the call's
//!   `call.start`, or of another account, cannot hang up a live call (HTTP and
//!   WebSocket), and the refused event is not published;
//! - a `client.redirect`'s `data.url` is checked before the answer;
//! - a client event's `scope` must be within the sender's `scopes=`;
//! - two URLs of one client id do not lend each other scopes.
//!
//! Absence is proven with a terminator published after the refused attempt.

use serde_json::{json, Value};

use crate::common::channels::{
    poll_body, poll_within, post_client_event, scrape, sse_with, ws_connect,
};
use crate::common::twilio::{sim_server, Api, AppServer, EventLog};
use crate::common::{pct, sign, TestServer, WAIT};

const CALLER: &str = "+14155550100";
const OTHER_CALLER: &str = "+14155550177";
/// Thirty real seconds at the test's time scale: the call stays up unless acted on.
const HOLD: &str = r#"<Response><Pause length="3000"/></Response>"#;

fn client_events_path(server: &TestServer, account: usize, query: &str) -> String {
    format!("/v1/Accounts/{}/ClientEvents?{query}", server.sid(account))
}

/// A live inbound call from `CALLER` to a number of account 0 whose app holds the
/// line, and a Basic-auth log of its `call.*` and every `client.*` event.
async fn live_call(server: &TestServer, app: &AppServer) -> (EventLog, String) {
    app.twiml("/hold", HOLD);
    let api = Api::new(server, 0);
    let number = api.voice_number(&app.url("/hold")).await;
    let mut log = EventLog::open(server, 0, "types=call.*,client.*").await;
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.start", Some(&call)).await;
    (log, call)
}

/// Publishes a `client.done` terminator and reads the log up to it: everything
/// refused before it must be absent from the log by then.
async fn until_terminator(server: &TestServer, log: &mut EventLog) {
    server
        .publish(0, &json!({"type": "client.done", "data": {"n": "done"}}))
        .await;
    log.until_event("client.done", None).await;
}

/// The call is still up: no `call.end` logged, and the REST resource says so.
async fn assert_still_up(server: &TestServer, log: &EventLog, call: &str) {
    assert!(
        !log.types_of(call).iter().any(|t| t == "call.end"),
        "the call ended: {}",
        log.dump()
    );
    let resource = Api::new(server, 0).call(call).await;
    assert_eq!(resource["status"], json!("in-progress"), "{resource}");
}

/// No `client.hangup` (or other `client.*` action) was published.
#[track_caller]
fn assert_no_client_action(log: &EventLog) {
    let actions: Vec<&Value> = log
        .events
        .iter()
        .filter(|ev| {
            [
                "client.hangup",
                "client.mute",
                "client.unmute",
                "client.redirect",
            ]
            .iter()
            .any(|t| ev["type"] == json!(t))
        })
        .collect();
    assert!(
        actions.is_empty(),
        "refused events were published: {actions:?}"
    );
}

#[tokio::test]
async fn a_signed_url_without_act_cannot_hang_up_a_call() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let (mut log, call) = live_call(&server, &app).await;

    let signed = sign(
        server.token(0),
        &client_events_path(&server, 0, "client=page"),
    );
    let message = post_client_event(
        &server,
        &signed,
        None,
        &json!({"type": "client.hangup", "call_sid": call}),
    )
    .await
    .assert_error(403, "forbidden");
    assert!(message.starts_with("act"), "message {message:?}");
    let refused = scrape(&server).await.value(
        "switchboard_client_events_refused_total",
        &[("via", "http"), ("reason", "act")],
    );
    assert_eq!(refused, 1.0, "the refusal is counted");

    until_terminator(&server, &mut log).await;
    assert_no_client_action(&log);
    assert_still_up(&server, &log, &call).await;
}

#[tokio::test]
async fn act_hangup_needs_a_where_that_matches_the_calls_start() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let (mut log, call) = live_call(&server, &app).await;
    let hangup = json!({"type": "client.hangup", "call_sid": call});

    // A page allowed to watch another caller's calls.
    let other = format!(
        "client=page&act=hangup&where=data.from={}",
        pct(OTHER_CALLER)
    );
    let signed = sign(server.token(0), &client_events_path(&server, 0, &other));
    let message = post_client_event(&server, &signed, None, &hangup)
        .await
        .assert_error(403, "forbidden");
    assert!(message.starts_with("call_sid"), "message {message:?}");

    // The other account's URL, however wide, on its own path.
    let foreign = sign(
        server.token(1),
        &client_events_path(&server, 1, "client=page&act=hangup"),
    );
    post_client_event(&server, &foreign, None, &hangup)
        .await
        .assert_error(403, "forbidden");

    // A call sid that is not live is not authorized either (nothing to match).
    let mine = format!("client=page&act=hangup&where=data.from={}", pct(CALLER));
    let signed = sign(server.token(0), &client_events_path(&server, 0, &mine));
    post_client_event(
        &server,
        &signed,
        None,
        &json!({"type": "client.hangup", "call_sid": crate::common::new_call_sid()}),
    )
    .await
    .assert_error(403, "forbidden");

    until_terminator(&server, &mut log).await;
    assert_no_client_action(&log);
    assert_still_up(&server, &log, &call).await;

    // The caller's own page may.
    let ids = post_client_event(&server, &signed, None, &hangup)
        .await
        .accepted(1);
    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
    let published = log
        .of_type("client.hangup")
        .into_iter()
        .map(|ev| ev["id"].clone())
        .collect::<Vec<_>>();
    assert_eq!(published, [json!(ids[0])], "{}", log.dump());
}

#[tokio::test]
async fn a_websocket_frame_needs_the_urls_grant_to_act() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let (mut log, call) = live_call(&server, &app).await;
    let hangup = json!({"type": "client.hangup", "call_sid": call}).to_string();
    let stream = server.stream_path(0);

    let watcher = sign(
        server.token(0),
        &format!(
            "{stream}?client=watcher&types=call.*&where=data.from={}",
            pct(CALLER)
        ),
    );
    let mut ws = ws_connect(&server, &watcher, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("ws refused {status} {body}"));
    assert_eq!(ws.expect_json().await["type"], json!("stream.open"));
    ws.send_text(&hangup).await;
    let frames = ws.until(|f| f["type"] == json!("stream.error")).await;
    let error = frames.last().cloned().unwrap_or(Value::Null);
    assert_eq!(error["data"]["status"], json!(403), "{error}");
    assert_eq!(error["data"]["code"], json!("forbidden"), "{error}");
    until_terminator(&server, &mut log).await;
    assert_no_client_action(&log);
    assert_still_up(&server, &log, &call).await;
    ws.close().await;

    let steerer = sign(
        server.token(0),
        &format!(
            "{stream}?client=steerer&types=call.*&act=hangup&where=data.from={}",
            pct(CALLER)
        ),
    );
    let mut ws = ws_connect(&server, &steerer, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("ws refused {status} {body}"));
    assert_eq!(ws.expect_json().await["type"], json!("stream.open"));
    ws.send_text(&hangup).await;
    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
    ws.close().await;
}

#[tokio::test]
async fn redirect_urls_are_checked_before_answering() {
    // Applications on 127.0.0.1 (any port) only: `localhost` is another host.
    let server = TestServer::start(|config| {
        config.sim.time_scale = 0.01;
        config.sim.ring_secs = 1.0;
        config.webhook.allowed_hosts = vec!["127.0.0.1".to_owned()];
    });
    let app = AppServer::start(server.token(0));
    let outsider = AppServer::start(server.token(0));
    let outside_url = outsider.url("/steal").replace("127.0.0.1", "localhost");
    let (mut log, call) = live_call(&server, &app).await;
    let basic = client_events_path(&server, 0, "client=ops");
    let redirect =
        |url: Value| json!({"type": "client.redirect", "call_sid": call, "data": {"url": url}});

    for bad in [
        json!("ftp://example.com/next"),
        json!("/relative"),
        json!(7),
    ] {
        let message = post_client_event(&server, &basic, server.creds(0), &redirect(bad.clone()))
            .await
            .assert_error(400, "invalid_event");
        assert!(message.starts_with("data.url"), "{bad}: {message:?}");
    }
    let message = post_client_event(
        &server,
        &basic,
        server.creds(0),
        &redirect(json!(outside_url)),
    )
    .await
    .assert_error(403, "forbidden");
    assert!(message.starts_with("data.url"), "message {message:?}");

    // A signed page with act=redirect on its caller's call is held to the same rules.
    let page = format!("client=page&act=redirect&where=data.from={}", pct(CALLER));
    let signed = sign(server.token(0), &client_events_path(&server, 0, &page));
    post_client_event(&server, &signed, None, &redirect(json!(outside_url)))
        .await
        .assert_error(403, "forbidden");

    until_terminator(&server, &mut log).await;
    assert_no_client_action(&log);
    assert_still_up(&server, &log, &call).await;

    // Allowed: the page moves its caller's call to the app's next document.
    app.twiml("/next", "<Response><Say>moved</Say></Response>");
    post_client_event(&server, &signed, None, &redirect(json!(app.url("/next"))))
        .await
        .accepted(1);
    log.until_event("call.end", Some(&call)).await;
    app.first_request("/next")
        .await
        .assert_param("CallSid", &call);
    assert!(
        outsider.requests().is_empty(),
        "a refused URL was requested: {:?}",
        outsider
            .requests()
            .iter()
            .map(|r| r.summary())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_unknown_act_is_a_400_naming_act_on_both_urls() {
    let server = TestServer::start(|_| {});
    let note = json!({"type": "client.note"});
    for act in ["kill", "hangup,", "hangup,Mute"] {
        let query = format!("client=page&act={act}");
        let signed = sign(server.token(0), &client_events_path(&server, 0, &query));
        let message = post_client_event(&server, &signed, None, &note)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(message.starts_with("act"), "{act}: {message:?}");
        let stream = sign(
            server.token(0),
            &format!("{}?{query}", server.stream_path(0)),
        );
        let message = server
            .rejected(&stream, None)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(message.starts_with("act"), "{act}: {message:?}");
    }
}

#[tokio::test]
async fn basic_auth_still_hangs_up_any_call_of_the_account() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let (mut log, call) = live_call(&server, &app).await;
    post_client_event(
        &server,
        &client_events_path(&server, 0, "client=ops"),
        server.creds(0),
        &json!({"type": "client.hangup", "call_sid": call}),
    )
    .await
    .accepted(1);
    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
}

#[tokio::test]
async fn a_client_event_scope_must_be_within_the_senders_scopes() {
    let server = TestServer::start(|_| {});
    let (mut sse, _) = server.stream_basic(0, "types=client.*").await;
    let note = json!({"type": "client.note", "scope": "supervisor", "data": {"n": "note"}});

    let plain = sign(
        server.token(0),
        &client_events_path(&server, 0, "client=page"),
    );
    let message = post_client_event(&server, &plain, None, &note)
        .await
        .assert_error(403, "forbidden");
    assert!(message.starts_with("scope"), "message {message:?}");
    let agent = sign(
        server.token(0),
        &client_events_path(&server, 0, "client=page&scopes=agent"),
    );
    post_client_event(&server, &agent, None, &note)
        .await
        .assert_error(403, "forbidden");

    // Within the grant: accepted, and the first thing the subscriber sees.
    let granted = sign(
        server.token(0),
        &client_events_path(&server, 0, "client=page&scopes=supervisor"),
    );
    let ids = post_client_event(&server, &granted, None, &note)
        .await
        .accepted(1);
    let got = sse.until_marker("note", WAIT).await;
    assert_eq!(got.len(), 1, "only the granted note: {got:?}");
    assert_eq!(got[0].data["id"], json!(ids[0]));
}

/// Two signed URLs of one client: `wide` grants `supervisor`, `narrow` does not.
/// `wide_extra` and `narrow_extra` are appended to each URL's query before signing.
fn scoped_urls(
    server: &TestServer,
    client: &str,
    wide_extra: &str,
    narrow_extra: &str,
) -> (String, String) {
    let stream = server.stream_path(0);
    let wide = sign(
        server.token(0),
        &format!("{stream}?client={client}&types=note.*&scopes=supervisor{wide_extra}"),
    );
    let narrow = sign(
        server.token(0),
        &format!("{stream}?client={client}&types=note.*{narrow_extra}"),
    );
    (wide, narrow)
}

async fn publish_secret_then_end(server: &TestServer) -> Vec<String> {
    server
        .publish(
            0,
            &json!([
                {"type": "note.secret", "scope": "supervisor", "data": {"n": "secret"}},
                {"type": "note.end", "data": {"n": "end"}},
            ]),
        )
        .await
}

#[tokio::test]
async fn a_narrow_url_is_not_written_a_scope_another_url_of_its_client_grants() {
    let server = TestServer::start(|_| {});
    let (wide, narrow) = scoped_urls(&server, "c1", "", "");
    // The wide URL subscribes the client to supervisor notes, then goes away.
    let (wide_stream, _) = server.stream_signed(&wide).await;
    drop(wide_stream);
    let (mut sse, _) = server.stream_signed(&narrow).await;

    let ids = publish_secret_then_end(&server).await;
    let got = sse.until_marker("end", WAIT).await;
    let seen: Vec<&Value> = got.iter().map(|ev| &ev.data["id"]).collect();
    assert_eq!(seen, [&json!(ids[1])], "the narrow URL saw: {got:?}");
    let withheld = scrape(&server)
        .await
        .value("switchboard_events_withheld_total", &[]);
    assert_eq!(withheld, 1.0, "the withheld event is counted");

    // The wide URL, back from the narrow one's cursor, is not offered what the
    // narrow one already passed (no duplicate, no stall): next is what comes next.
    let after = got.last().and_then(|ev| ev.id.clone()).unwrap_or_default();
    drop(sse);
    let (mut sse, _) = sse_with(&server, &wide, None, &[("Last-Event-ID", after.as_str())]).await;
    let more = server
        .publish(
            0,
            &json!({"type": "note.more", "scope": "supervisor", "data": {"n": "more"}}),
        )
        .await;
    let got = sse.until_marker("more", WAIT).await;
    let seen: Vec<&Value> = got.iter().map(|ev| &ev.data["id"]).collect();
    assert_eq!(seen, [&json!(more[0])], "the wide URL saw: {got:?}");
}

#[tokio::test]
async fn a_narrow_long_poll_skips_the_scope_and_its_cursor_moves_past_it() {
    let server = TestServer::start(|_| {});
    let (wide, narrow) = scoped_urls(
        &server,
        "c2",
        "&transport=poll&timeout=0",
        "&transport=poll&timeout=5",
    );
    // Each poll is the client's channel while it waits; the wide one subscribes.
    let (reply, _) = poll_within(&server, &wide, None, WAIT).await;
    poll_body(&reply);

    let ids = publish_secret_then_end(&server).await;
    let (reply, _) = poll_within(&server, &narrow, None, WAIT).await;
    let (events, cursor) = poll_body(&reply);
    let seen: Vec<&Value> = events.iter().map(|ev| &ev["id"]).collect();
    assert_eq!(seen, [&json!(ids[1])], "the narrow poll saw: {events:?}");
    assert_eq!(
        events.last().map(|ev| ev["cursor"].clone()),
        cursor.clone().map(Value::from),
        "the answer's cursor is its last event's"
    );
}
