//! `switchboard tail` (docs/api.md §9, docs/api.md §9): the real binary, subscribed to
//! a real server, prints a scripted call (a simulated caller enters a code at a
//! `Gather`) one line per event, readably and as JSON; it reconnects when the
//! server ends its stream and resumes by cursor, losing and repeating nothing; it
//! exits 0 on Ctrl-C and 1 when the server refuses it.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::captured::Captured;
use crate::common::twilio::{sim_server, Api, AppServer};
use crate::common::{event, new_call_sid, TestServer};

const CALLER: &str = "+14155550100";

/// `switchboard tail` against account 0 of `server`, the token in the environment
/// (as the docs advise), plus `flags`; its output collected line by line.
fn tail(server: &TestServer, token: &str, flags: &[&str]) -> Captured {
    Captured::spawn(
        "switchboard tail",
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("tail")
            .args(["--url", &server.base_url(), "--account", server.sid(0)])
            .args(flags)
            .env("SWITCHBOARD_TOKEN", token),
    )
}

/// Waits until the stream is open (its notice on stderr).
async fn until_open(tail: &mut Captured) {
    tail.until("stream.open on stderr", |_, err| {
        err.iter().any(|l| l.contains("stream.open")).then_some(())
    })
    .await;
}

/// Waits until stdout has a line containing `text`.
async fn until_printed(tail: &mut Captured, text: &str) {
    tail.until(text, |out, _| {
        out.iter().any(|l| l.contains(text)).then_some(())
    })
    .await;
}

/// The second column of a human line: the event type.
fn human_type(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or("")
}

#[track_caller]
fn assert_human_shape(line: &str, call: &str) {
    let b = line.as_bytes();
    let clock = b.len() > 14
        && [0, 1, 3, 4, 6, 7, 9, 10, 11]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && (b[2], b[5], b[8]) == (b':', b':', b'.')
        && &line[12..14] == "  ";
    assert!(clock, "no HH:MM:SS.mmm time first: {line:?}");
    assert_eq!(
        line.split_whitespace().nth(2),
        Some(call),
        "the call sid is the third column: {line:?}"
    );
}

#[tokio::test]
async fn tail_prints_a_scripted_call_readably_and_as_json() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    app.twiml(
        "/voice",
        r#"<Response><Gather numDigits="4" timeout="30" action="/done"><Say>Enter your code</Say></Gather></Response>"#,
    );
    app.twiml(
        "/done",
        "<Response><Say>Thank you</Say><Hangup/></Response>",
    );
    let api = Api::new(&server, 0);
    let number = api.voice_number(&app.url("/voice")).await;

    let types = ["--types", "call.*,gather.*"];
    let mut human = tail(&server, server.token(0), &types);
    let mut json = tail(&server, server.token(0), &[types[0], types[1], "--json"]);
    until_open(&mut human).await;
    until_open(&mut json).await;

    let call = api.sim_call(CALLER, &number).await;
    until_printed(&mut human, "gather.start").await;
    api.sim_digits(&call, "1234").await;
    for tail in [&mut human, &mut json] {
        until_printed(tail, "call.end").await;
    }

    // Human: one line per event of the call, in order, time then type then call
    // then the data that matters.
    let lines = human.stdout();
    for line in &lines {
        assert_human_shape(line, &call);
    }
    let human_types: Vec<&str> = lines.iter().map(|l| human_type(l)).collect();
    assert_eq!(
        human_types,
        ["call.start", "gather.start", "gather.end", "call.end"],
        "{lines:#?}"
    );
    assert!(lines[0].contains(&format!("from={CALLER}")), "{}", lines[0]);
    assert!(lines[0].contains(&format!("to={number}")), "{}", lines[0]);
    assert!(lines[2].contains("digits=1234"), "{}", lines[2]);
    assert!(lines[3].contains("status=completed"), "{}", lines[3]);

    // JSON: the delivered events, one object per line, the same ones.
    let events: Vec<Value> = json
        .stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let json_types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(json_types, human_types);
    assert!(events.iter().all(|e| e["call_sid"] == json!(call)));
    assert_eq!(events[2]["data"]["digits"], json!("1234"));
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "each event once: {ids:?}");

    // Ctrl-C: a clean exit, status 0.
    for tail in [&mut human, &mut json] {
        tail.signal("INT");
        let status = tail.wait_exit().await;
        assert_eq!(status.code(), Some(0), "exit status after Ctrl-C: {status}");
    }
}

#[tokio::test]
async fn tail_reconnects_when_the_stream_ends_and_resumes_without_loss_or_repeat() {
    // The server ends every stream after a second; tail must come back each time
    // with the last id it printed.
    let server = TestServer::start(|config| {
        config.stream.max_connection_secs = 1;
        config.stream.retry_ms = 200;
    });
    let mut tail = tail(
        &server,
        server.token(0),
        &["--types", "call.progress", "--json"],
    );
    until_open(&mut tail).await;
    let call = new_call_sid();
    let mut published = Vec::new();
    for batch in 0..4 {
        for i in 0..3 {
            let n = (batch * 3 + i).to_string();
            server
                .publish(0, &event("call.progress", Some(&call), json!({ "n": n })))
                .await;
            published.push(n);
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let wanted = published.len();
    tail.until("every published event", |out, _| {
        (out.len() >= wanted).then_some(())
    })
    .await;
    // Let a repeat, if any, arrive before judging.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen: Vec<String> = tail
        .stdout()
        .iter()
        .map(|l| {
            let event: Value = serde_json::from_str(l).expect("a JSON line");
            event["data"]["n"].as_str().unwrap_or("?").to_owned()
        })
        .collect();
    assert_eq!(seen, published, "each event once, in order");
    let reconnects = tail
        .stderr()
        .iter()
        .filter(|l| l.contains("stream ended"))
        .count();
    assert!(
        reconnects >= 2,
        "the 4 s of publishing spanned several 1 s connections: {:#?}",
        tail.stderr()
    );
}

#[tokio::test]
async fn tail_exits_1_when_the_server_refuses_it() {
    let server = TestServer::start(|_| {});
    let mut wrong_token = tail(&server, "not-the-token", &[]);
    let status = wrong_token.wait_exit().await;
    assert_eq!(status.code(), Some(1), "{:#?}", wrong_token.stderr());
    let said = wrong_token.stderr().join("\n");
    assert!(
        said.contains("401") && said.contains("unauthorized"),
        "{said}"
    );
    assert!(
        !said.contains("not-the-token"),
        "the token was echoed: {said}"
    );

    let mut bad_filter = tail(&server, server.token(0), &["--where", "nonsense"]);
    let status = bad_filter.wait_exit().await;
    assert_eq!(status.code(), Some(1), "{:#?}", bad_filter.stderr());
    let said = bad_filter.stderr().join("\n");
    assert!(said.contains("400") && said.contains("where"), "{said}");
}
