//! Issue #8 point 8, replayed over HTTP: `Last-Event-ID: earliest` forced a
//! full retention replay on any signed URL. docs/api.md §4: `earliest` counts only
//! in the signed query (or with Basic auth); the header carries real cursors.

use serde_json::json;

use crate::common::channels::{marked, markers, open_sse_with, sse_with, strings};
use crate::common::{new_call_sid, sign, TestServer, WAIT};

#[tokio::test]
async fn earliest_in_the_last_event_id_header_is_refused() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    server
        .publish(0, &marked("call.start", &call, "past"))
        .await;
    let signed = sign(
        server.token(0),
        &format!("{}?client=h1&types=call.*", server.stream_path(0)),
    );
    let basic = format!("{}?client=h2&types=call.*", server.stream_path(0));
    for (what, pq, creds) in [
        ("signed URL", signed.as_str(), None),
        ("Basic auth", basic.as_str(), server.creds(0)),
    ] {
        match open_sse_with(&server, pq, creds, &[("Last-Event-ID", "earliest")]).await {
            Ok(mut stream) => {
                let first = stream.next_event(WAIT).await;
                panic!("{what}: header earliest was accepted; first event {first:?}")
            }
            Err(reply) => {
                let message = reply.assert_error(400, "invalid_parameter");
                assert!(message.starts_with("Last-Event-ID"), "{what}: {message}");
            }
        }
    }
}

#[tokio::test]
async fn signed_earliest_replays_once_and_an_eventsource_reconnect_resumes_by_its_header() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    server.publish(0, &marked("call.start", &call, "1")).await;
    server
        .publish(1, &marked("call.start", &call, "other"))
        .await;
    server.publish(0, &marked("call.ringing", &call, "2")).await;
    // What a page opened mid-call gets: the call so far, from the signed query.
    let signed = sign(
        server.token(0),
        &format!(
            "{}?client=page1&types=call.*&cursor=earliest",
            server.stream_path(0)
        ),
    );
    let (mut stream, open) = server.stream_signed(&signed).await;
    assert_eq!(open.data["data"]["client"], json!("page1"));
    let got = stream.until_marker("2", WAIT).await;
    assert_eq!(markers(&got), strings(&["1", "2"]));
    let last_id = got[1].id.clone().expect("events carry an id");
    drop(stream);

    // The EventSource reconnects to the same URL with the last id it saw: it
    // resumes after it, no replay from the start again (no duplicate).
    server
        .publish(0, &marked("call.answered", &call, "3"))
        .await;
    let (mut stream, _) = sse_with(&server, &signed, None, &[("Last-Event-ID", &last_id)]).await;
    server.publish(0, &marked("call.end", &call, "4")).await;
    let got = stream.until_marker("4", WAIT).await;
    assert_eq!(markers(&got), strings(&["3", "4"]));
}
