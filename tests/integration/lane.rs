//! The lane: plain stream `GET`s and small event `POST`s are read and answered
//! without actix-http's dispatcher. Held against the same server with the lane off
//! (`stream.lane = false`): same status, same headers, same bytes; a kept-alive
//! connection carries on with the next request, on the lane or handed to actix-http
//! with nothing lost; a client that hangs up is let go at once. Raw sockets
//! throughout, so the bytes on the wire are what is checked.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::channels::{scrape, wait_sse_connections};
use crate::common::{now_secs, sign_with_expires, TestServer, WAIT};

/// A response head as read off the socket: the status line and the header lines
/// (lower-cased names), sorted, without `date`. actix-cors lists exposed headers in
/// the response map's hash order, so that list is compared as a set.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: String,
    headers: Vec<String>,
}

/// Sends `request` on a fresh connection and reads until the end of the response
/// head; returns the head and whatever body bytes came with it.
async fn raw_head(server: &TestServer, request: &str) -> (TcpStream, Head, Vec<u8>) {
    let mut socket = TcpStream::connect(server.addr).await.expect("connect");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let end = read_until(&mut socket, &mut got, b"\r\n\r\n").await;
    let head = std::str::from_utf8(&got[..end]).expect("head is text");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let mut headers: Vec<String> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            let name = name.to_ascii_lowercase();
            if name == "access-control-expose-headers" {
                let mut items: Vec<&str> = value.split(',').map(str::trim).collect();
                items.sort_unstable();
                return format!("{name}: {}", items.join(", "));
            }
            format!("{name}:{value}")
        })
        .filter(|line| !line.starts_with("date:"))
        .collect();
    headers.sort();
    let rest = got[end + 4..].to_vec();
    (socket, Head { status, headers }, rest)
}

/// Reads into `got` until `needle` appears after `from`; returns where it starts.
async fn read_until_from(
    socket: &mut TcpStream,
    got: &mut Vec<u8>,
    from: usize,
    needle: &[u8],
) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(at) = got[from.min(got.len())..]
            .windows(needle.len())
            .position(|w| w == needle)
        {
            return from + at;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, socket.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {:?} within {WAIT:?} in {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(got)
                )
            })
            .expect("read");
        assert!(
            n > 0,
            "closed before {:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

async fn read_until(socket: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) -> usize {
    read_until_from(socket, got, 0, needle).await
}

fn get(path_and_query: &str, extra: &str) -> String {
    format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n")
}

fn signed_stream(server: &TestServer, query: &str) -> String {
    sign_with_expires(
        server.token(0),
        &format!("{}?{query}", server.stream_path(0)),
        now_secs() + 600,
    )
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A one-event body for call `CA1`.
fn tick(n: u32) -> String {
    serde_json::json!({"type": "call.start", "call_sid": "CA1", "data": {"n": n}}).to_string()
}

/// `POST /v1/Accounts/{sid}/Events` of `body` as account 0, with `extra` headers.
fn post_events(server: &TestServer, body: &str, extra: &str) -> String {
    post_events_as(server, &basic(server.sid(0), server.token(0)), body, extra)
}

fn post_events_as(server: &TestServer, authorization: &str, body: &str, extra: &str) -> String {
    format!(
        "POST /v1/Accounts/{}/Events HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: {authorization}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        server.sid(0),
        body.len()
    )
}

/// Reads `n` responses with `content-length` bodies from `socket` (after `got`);
/// returns each status line and body.
async fn read_sized_responses(
    socket: &mut TcpStream,
    got: &mut Vec<u8>,
    n: usize,
) -> Vec<(String, String)> {
    let mut responses = Vec::new();
    let mut from = 0;
    while responses.len() < n {
        let end = read_until_from(socket, got, from, b"\r\n\r\n").await;
        let head = String::from_utf8(got[from..end].to_vec()).expect("head is text");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length in {head}"))
            .parse()
            .expect("a length");
        let body_start = end + 4;
        while got.len() < body_start + length {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, socket.read(&mut buf))
                .await
                .expect("the body in time")
                .expect("read");
            assert!(n > 0, "closed inside a body");
            got.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8(got[body_start..body_start + length].to_vec()).unwrap();
        let status = head.lines().next().unwrap_or_default().to_owned();
        responses.push((status, body));
        from = body_start + length;
    }
    responses
}

fn connections_via(scrape: &crate::common::scrape::Scrape, path: &str) -> f64 {
    scrape.value("switchboard_http_connections_total", &[("path", path)])
}

#[tokio::test]
async fn the_lane_answers_as_actix_http_would() {
    let lane = TestServer::start(|_| {});
    let dispatcher = TestServer::start(|c| c.stream.lane = false);
    type Request = fn(&TestServer) -> String;
    // The last bool: the answer comes before the handler reads the body. actix-http
    // then closes the connection, since the unread body is still in the way; the lane
    // has read the body whole already and keeps the connection for the next request.
    let cases: [(&str, Request, bool); 9] = [
        (
            "an SSE stream",
            |s| {
                get(
                    &signed_stream(s, "client=panel-1"),
                    "Accept: text/event-stream\r\n",
                )
            },
            false,
        ),
        (
            "a cross-origin SSE stream",
            |s| {
                get(
                    &signed_stream(s, "client=panel-2"),
                    "Origin: https://app.example\r\n",
                )
            },
            false,
        ),
        (
            "a bad signature",
            |s| {
                let signed = signed_stream(s, "client=panel-3");
                get(&format!("{signed}x"), "Origin: https://app.example\r\n")
            },
            false,
        ),
        (
            "a long-poll answered at once",
            |s| get(&signed_stream(s, "transport=poll&timeout=0"), ""),
            false,
        ),
        ("a publish", |s| post_events(s, &tick(1), ""), false),
        (
            "a publish asking to close",
            |s| post_events(s, &tick(1), "Connection: close\r\n"),
            false,
        ),
        (
            "a publish with a wrong token",
            |s| {
                let auth = basic(s.sid(0), "not-the-token");
                post_events_as(s, &auth, &tick(1), "")
            },
            true,
        ),
        (
            "a publish that is not JSON",
            |s| post_events(s, "{\"type\":", ""),
            false,
        ),
        (
            "a publish of another type of body",
            |s| post_events(s, &tick(1), "").replace("application/json", "text/plain"),
            true,
        ),
    ];
    let close = "connection: close".to_owned();
    for (what, request, before_body) in cases {
        let (_a, on_lane, _) = raw_head(&lane, &request(&lane)).await;
        let (_b, mut through_actix, _) = raw_head(&dispatcher, &request(&dispatcher)).await;
        if before_body {
            assert!(!on_lane.headers.contains(&close), "{what}: {on_lane:?}");
            assert!(
                through_actix.headers.contains(&close),
                "{what}: {through_actix:?}"
            );
            through_actix.headers.retain(|line| *line != close);
        }
        assert_eq!(on_lane, through_actix, "{what}");
    }
    let lane_metrics = scrape(&lane).await;
    assert_eq!(connections_via(&lane_metrics, "lane"), 9.0);
    let dispatcher_metrics = scrape(&dispatcher).await;
    assert_eq!(connections_via(&dispatcher_metrics, "lane"), 0.0);
    assert!(connections_via(&dispatcher_metrics, "dispatcher") >= 9.0);
}

#[tokio::test]
async fn a_lane_stream_carries_the_same_bytes_and_events() {
    let server = TestServer::start(|_| {});
    let request = get(&signed_stream(&server, "client=raw-1"), "");
    let (mut socket, head, mut got) = raw_head(&server, &request).await;
    assert_eq!(head.status, "HTTP/1.1 200 OK");
    assert!(
        head.headers
            .contains(&"transfer-encoding: chunked".to_owned()),
        "{head:?}"
    );
    let ids = server
        .publish(
            0,
            &serde_json::json!({"type": "call.start", "call_sid": "CA1", "data": {"n": 1}}),
        )
        .await;
    let at = read_until(&mut socket, &mut got, ids[0].as_bytes()).await;
    read_until_from(&mut socket, &mut got, at, b"\n\n\r\n").await;
    let text = String::from_utf8(got).expect("utf-8");
    // Chunked framing around SSE frames: a size line, then `retry:` and
    // `stream.open`, then the event in a chunk of its own.
    let (size, first) = text.split_once("\r\n").expect("a chunk size line");
    let size = usize::from_str_radix(size, 16).expect("hex chunk size");
    assert!(first[..size].starts_with("retry: "), "{text}");
    assert!(first[..size].contains("\"type\":\"stream.open\""), "{text}");
    let after = &first[size..];
    assert!(after.starts_with("\r\n"), "chunk end in {text}");
    let (size, second) = after[2..].split_once("\r\n").expect("second chunk");
    let size = usize::from_str_radix(size, 16).expect("hex chunk size");
    assert!(second.len() >= size, "{text}");
    assert!(second[..size].starts_with("id: "), "{text}");
    assert!(second[..size].contains(&ids[0]), "{text}");
}

#[tokio::test]
async fn a_kept_alive_connection_goes_on_after_a_lane_response() {
    let server = TestServer::start(|c| c.stream.max_connection_secs = 1);
    // A long-poll answered at once, then a stream that the server ends after a
    // second, each with the next request pipelined behind it.
    for query in ["transport=poll&timeout=0", "client=kept-1"] {
        let request = format!(
            "{}{}",
            get(&signed_stream(&server, query), ""),
            get("/healthz", "")
        );
        let (mut socket, head, mut got) = raw_head(&server, &request).await;
        assert_eq!(head.status, "HTTP/1.1 200 OK", "{query}");
        let at = read_until(&mut socket, &mut got, b"HTTP/1.1 200 OK\r\n").await;
        read_until_from(&mut socket, &mut got, at, b"\r\n\r\n").await;
        if head
            .headers
            .contains(&"transfer-encoding: chunked".to_owned())
        {
            assert_eq!(
                &got[at - 5..at],
                b"0\r\n\r\n",
                "the stream ended with the last chunk before the next response: {}",
                String::from_utf8_lossy(&got)
            );
        }
        // And the connection still takes requests, now through actix-http.
        socket
            .write_all(get("/healthz", "").as_bytes())
            .await
            .expect("write");
        let from = got.len();
        read_until_from(&mut socket, &mut got, from, b"HTTP/1.1 200 OK\r\n").await;
    }
    let metrics = scrape(&server).await;
    assert_eq!(connections_via(&metrics, "lane"), 2.0);
}

#[tokio::test]
async fn connection_close_is_honoured_on_the_lane() {
    let server = TestServer::start(|_| {});
    let request = get(
        &signed_stream(&server, "transport=poll&timeout=0"),
        "Connection: close\r\n",
    );
    let (mut socket, head, _) = raw_head(&server, &request).await;
    assert!(
        head.headers.contains(&"connection: close".to_owned()),
        "{head:?}"
    );
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .expect("read");
}

#[tokio::test]
async fn a_client_that_hangs_up_is_let_go_before_any_heartbeat() {
    // The heartbeat (15 s) is the first write that could fail; the lane sees the
    // close itself, well within `WAIT` (10 s).
    let server = TestServer::start(|c| c.stream.heartbeat_secs = 15);
    let request = get(&signed_stream(&server, "client=gone-1"), "");
    let (socket, head, _) = raw_head(&server, &request).await;
    assert_eq!(head.status, "HTTP/1.1 200 OK");
    wait_sse_connections(&server, 1).await;
    drop(socket);
    wait_sse_connections(&server, 0).await;
}

#[tokio::test]
async fn a_head_in_pieces_is_read_whole_on_the_lane() {
    let server = TestServer::start(|_| {});
    let request = get(&signed_stream(&server, "client=slow-1"), "");
    let (first, second) = request.split_at(request.len() / 2);
    let mut socket = TcpStream::connect(server.addr).await.expect("connect");
    socket.write_all(first.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket.write_all(second.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    read_until(&mut socket, &mut got, b"\"type\":\"stream.open\"").await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let metrics = scrape(&server).await;
    assert_eq!(connections_via(&metrics, "lane"), 1.0);
}

#[tokio::test]
async fn pipelined_publishes_are_answered_in_order_and_the_rest_goes_to_actix_http() {
    let server = TestServer::start(|_| {});
    let mut socket = TcpStream::connect(server.addr).await.expect("connect");
    // Three publishes and a request the lane does not take, in one write.
    let mut requests: String = (1..=3)
        .map(|n| post_events(&server, &tick(n), ""))
        .collect();
    requests.push_str(&get("/healthz", ""));
    socket.write_all(requests.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let responses = read_sized_responses(&mut socket, &mut got, 4).await;
    let mut ids = Vec::new();
    for (status, body) in &responses[..3] {
        assert_eq!(status, "HTTP/1.1 202 Accepted", "{body}");
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["accepted"], 1);
        ids.push(body["ids"][0].as_str().expect("an id").to_owned());
    }
    assert_eq!(responses[3].0, "HTTP/1.1 200 OK", "healthz answered");
    let metrics = scrape(&server).await;
    assert_eq!(connections_via(&metrics, "lane"), 1.0);
    // The events were published, in order.
    let (mut stream, _) = server
        .stream(
            &format!("{}?cursor=earliest&client=check-1", server.stream_path(0)),
            server.creds(0),
        )
        .await;
    for id in &ids {
        let event = stream.next_event(WAIT).await.expect("an event");
        assert_eq!(event.data["id"].as_str(), Some(id.as_str()), "{event:?}");
    }
    // Then a publish on the same connection, now served by actix-http.
    socket
        .write_all(post_events(&server, &tick(4), "").as_bytes())
        .await
        .expect("write");
    let from = got.len();
    read_until_from(&mut socket, &mut got, from, b"HTTP/1.1 202 Accepted").await;
}

#[tokio::test]
async fn a_publish_body_in_pieces_is_read_whole() {
    let server = TestServer::start(|_| {});
    let request = post_events(&server, &tick(1), "");
    let split = request.len() - 10;
    let mut socket = TcpStream::connect(server.addr).await.expect("connect");
    socket
        .write_all(&request.as_bytes()[..split])
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket
        .write_all(&request.as_bytes()[split..])
        .await
        .expect("write");
    let mut got = Vec::new();
    let responses = read_sized_responses(&mut socket, &mut got, 1).await;
    assert_eq!(responses[0].0, "HTTP/1.1 202 Accepted", "{responses:?}");
    let metrics = scrape(&server).await;
    assert_eq!(connections_via(&metrics, "lane"), 1.0);
}

#[tokio::test]
async fn large_and_chunked_publishes_go_to_actix_http() {
    let server = TestServer::start(|_| {});
    // More than the lane's 64 KiB, within the handler's limit.
    let events: Vec<serde_json::Value> = (0..700)
        .map(|n| {
            serde_json::json!({"type": "call.start", "call_sid": "CA1",
                               "data": {"n": n, "pad": "x".repeat(100)}})
        })
        .collect();
    let big = serde_json::Value::Array(events).to_string();
    assert!(big.len() > 64 * 1024);
    let (_a, head, _) = raw_head(&server, &post_events(&server, &big, "")).await;
    assert_eq!(head.status, "HTTP/1.1 202 Accepted");
    let body = tick(1);
    let chunked = format!(
        "POST /v1/Accounts/{}/Events HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        server.sid(0),
        basic(server.sid(0), server.token(0)),
        body.len()
    );
    let (_b, head, _) = raw_head(&server, &chunked).await;
    assert_eq!(head.status, "HTTP/1.1 202 Accepted");
    let metrics = scrape(&server).await;
    assert_eq!(connections_via(&metrics, "lane"), 0.0);
    assert!(connections_via(&metrics, "dispatcher") >= 2.0);
}

#[tokio::test]
async fn a_connection_can_publish_after_a_long_poll() {
    let server = TestServer::start(|_| {});
    let mut requests = get(&signed_stream(&server, "transport=poll&timeout=0"), "");
    requests.push_str(&post_events(&server, &tick(1), ""));
    let mut socket = TcpStream::connect(server.addr).await.expect("connect");
    socket.write_all(requests.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let responses = read_sized_responses(&mut socket, &mut got, 2).await;
    assert_eq!(responses[0].0, "HTTP/1.1 200 OK", "{responses:?}");
    assert_eq!(responses[1].0, "HTTP/1.1 202 Accepted", "{responses:?}");
    let metrics = scrape(&server).await;
    assert_eq!(connections_via(&metrics, "lane"), 1.0);
}

/// The complete chunks at the start of a chunked body.
fn complete_chunks(mut body: &[u8]) -> Vec<String> {
    let mut chunks = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end]).expect("size line");
        let size = usize::from_str_radix(size, 16).expect("hex chunk size");
        let data = line_end + 2;
        if body.len() < data + size + 2 {
            break;
        }
        chunks.push(String::from_utf8(body[data..data + size].to_vec()).expect("utf-8"));
        body = &body[data + size + 2..];
    }
    chunks
}

#[tokio::test]
async fn events_within_the_write_interval_share_one_write() {
    let server = TestServer::start(|c| c.stream.write_interval_ms = 1000);
    let request = get(&signed_stream(&server, "client=paced-1"), "");
    let (mut socket, _, mut got) = raw_head(&server, &request).await;
    // A quiet spell longer than the interval since `stream.open` was written.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tick =
        |n: u32| serde_json::json!({"type": "call.start", "call_sid": "CA1", "data": {"n": n}});
    let a = server.publish(0, &tick(1)).await;
    let at = read_until(&mut socket, &mut got, a[0].as_bytes()).await;
    read_until_from(&mut socket, &mut got, at, b"\n\n\r\n").await;
    // Within the interval after that write: held, then written together.
    let b = server.publish(0, &tick(2)).await;
    let c = server.publish(0, &tick(3)).await;
    let at = read_until(&mut socket, &mut got, c[0].as_bytes()).await;
    read_until_from(&mut socket, &mut got, at, b"\n\n\r\n").await;
    let chunks = complete_chunks(&got);
    assert_eq!(chunks.len(), 3, "open, a, then b and c: {chunks:?}");
    assert!(chunks[0].contains("stream.open"), "{chunks:?}");
    assert!(
        chunks[1].contains(&a[0]) && !chunks[1].contains(&b[0]),
        "{chunks:?}"
    );
    assert!(
        chunks[2].contains(&b[0]) && chunks[2].contains(&c[0]),
        "{chunks:?}"
    );
    let metrics = scrape(&server).await;
    assert_eq!(
        metrics.value("switchboard_delivery_writes_total", &[("transport", "sse")]),
        2.0
    );
    assert_eq!(
        metrics.value(
            "switchboard_events_delivered_total",
            &[("transport", "sse")]
        ),
        3.0
    );
}
