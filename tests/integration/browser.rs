//! A real browser against the stream endpoint (docs/api.md §4, design.md "Streams"
//! and "Replay and caching"): headless Chromium opens an `EventSource` on a
//! signed URL from a page of another origin (so CORS is exercised) and
//! receives events. When the server ends the connection
//! (`stream.max_connection_secs`), the browser reconnects by itself after the
//! announced `retry:` with `Last-Event-ID` and receives what was published
//! while it was away; when events are lost in flight (a proxy swallows what the
//! server wrote, then cuts the connection), the reconnect brings them back too.
//! Every event exactly once, in order: no gap, no duplicate.
//!
//! The page reports everything its `EventSource` sees (opens, messages,
//! errors) by `POST /report` to the small HTTP server that served it; the test
//! polls those reports with a deadline and drives publishing from them. The
//! stream goes through a TCP proxy of the test that records the browser's
//! requests (to see its `Last-Event-ID`) and can swallow and cut a connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::common::require_tool;
use crate::common::{event, new_call_sid, random_hex, sign, TestServer, WAIT};

/// `stream.retry_ms` of the test server: the browser's reconnect delay. Well
/// under Chromium's own default (3 s), so the test can tell it was honoured,
/// and long enough to publish while the browser is disconnected.
const RETRY_MS: i64 = 1000;
/// `stream.max_connection_secs` of the test server.
const MAX_CONNECTION_SECS: u64 = 2;
/// Upper bound for any single wait on the browser (it starts, then reconnects
/// every `MAX_CONNECTION_SECS` + `RETRY_MS`). Generous: on a 2-core machine
/// running the suite, Chromium's first start beside the process-killing tests
/// once took over 20 s.
const BROWSER_WAIT: Duration = Duration::from_secs(60);
/// Rounds of "wait for the disconnect, publish at once" until one publish is
/// known to have finished before the browser could reconnect.
const MAX_ROUNDS: usize = 3;
/// Chromium's reconnect delay when a stream announces no `retry:`.
const CHROMIUM_DEFAULT_RETRY_MS: i64 = 3000;

#[tokio::test]
async fn chromium_eventsource_reconnects_with_last_event_id_and_misses_nothing() {
    let Some(chromium) = require_tool("chromium") else {
        return;
    };
    let server = TestServer::start(|config| {
        config.stream.max_connection_secs = MAX_CONNECTION_SECS;
        config.stream.retry_ms = RETRY_MS as u64;
    });
    let client = format!("browser-{}", random_hex(6));
    let signed = sign(
        server.token(0),
        &format!("{}?client={client}&types=call.*", server.stream_path(0)),
    );
    // The page's EventSource goes through a transparent proxy that records
    // the browser's requests, to see the `Last-Event-ID` it sends.
    let proxy = RecordingProxy::start(server.addr.port());
    let stream_url = format!("http://127.0.0.1:{}{signed}", proxy.port);

    let page = PageServer::start(page_html(&stream_url));
    assert_ne!(
        page.port, proxy.port,
        "the page must come from another origin than the stream"
    );
    let mut browser = Browser::launch(&chromium, &page.url());
    let started = Instant::now();

    wait_for(&page, &mut browser, "the page's EventSource to open", |r| {
        r.iter().find(|x| x["kind"] == "open").cloned()
    })
    .await;

    // Live: three events on one call while the first connection is open.
    let call = new_call_sid();
    let mut published: Vec<String> = publish_progress(&server, &call, 1..=3).await;
    let mut last_n = 3;
    wait_for_events(&page, &mut browser, 1..=last_n).await;

    // Resume: wait for the browser to lose the connection (the server ends it
    // after MAX_CONNECTION_SECS), publish at once, while it waits RETRY_MS to
    // reconnect, and see those events arrive over the next connection.
    let mut proof = None;
    let mut rounds = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let last_seq = seq_of_event(&page.reports(), last_n);
        let error = wait_for(
            &page,
            &mut browser,
            "the server to end the stream (stream.max_connection_secs = 2) and the page to see an error",
            |r| {
                r.iter()
                    .find(|x| x["kind"] == "error" && seq(x) > last_seq)
                    .cloned()
            },
        )
        .await;
        let first = last_n + 1;
        last_n += 3;
        published.extend(publish_progress(&server, &call, first..=last_n).await);
        let published_at = now_ms();
        wait_for_events(&page, &mut browser, first..=last_n).await;

        let error_seq = seq(&error);
        let error_at = error["t"].as_i64().expect("t of the error report");
        let reopen = wait_for(
            &page,
            &mut browser,
            "the reconnected EventSource's open report",
            |r| {
                r.iter()
                    .find(|x| x["kind"] == "open" && seq(x) > error_seq)
                    .cloned()
            },
        )
        .await;
        let reopen_at = reopen["t"].as_i64().expect("t of the open report");
        let delay = reopen_at - error_at;
        assert!(
            (RETRY_MS - 50..CHROMIUM_DEFAULT_RETRY_MS).contains(&delay),
            "the browser reconnected {delay} ms after the disconnect: the stream did not announce \
             `retry: {RETRY_MS}` (without one Chromium waits {CHROMIUM_DEFAULT_RETRY_MS} ms)"
        );
        rounds.push(format!(
            "events {first}..={last_n}: disconnect at {error_at}, published (202) at {published_at}, \
             reopened at {reopen_at} (reconnect delay {delay} ms)"
        ));
        // The browser cannot reconnect before RETRY_MS after its error event
        // (and did not: it reopened only later), so events published before
        // then reached it only because the server resumed after its cursor.
        if published_at + 50 < error_at + RETRY_MS && published_at < reopen_at {
            proof = Some((first..=last_n, error_seq));
            break;
        }
    }
    let (proof, proof_error_seq) = proof.unwrap_or_else(|| {
        panic!(
            "in {MAX_ROUNDS} rounds the test never finished publishing before the browser could \
             reconnect, so resumption by Last-Event-ID was not exercised (machine too slow?): {rounds:#?}"
        )
    });

    // Lost in flight: the proxy swallows what the server writes into the open
    // connection, then cuts it. The server has written these events, so its
    // own idea of the client's position is past them; only the cursor the
    // browser sends back (`Last-Event-ID`) can bring them back.
    let in_flight_ids = proxy.swallow_open_connections();
    let first = last_n + 1;
    last_n += 3;
    let lost = publish_progress(&server, &call, first..=last_n).await;
    published.extend(lost.iter().cloned());
    let swallow_deadline = Instant::now() + WAIT;
    while !lost
        .iter()
        .all(|id| proxy.swallowed().contains(id.as_str()))
    {
        assert!(
            Instant::now() < swallow_deadline,
            "events {first}..={last_n} were not written into the open connection(s) {in_flight_ids:?} \
             within {WAIT:?} (or the server ended it first); swallowed: {:?}",
            proxy.swallowed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.cut_swallowing();
    let lost_range = first..=last_n;
    wait_for_events(&page, &mut browser, lost_range.clone()).await;

    // Every report has arrived (their fetches may land out of order).
    let reports = wait_for(&page, &mut browser, "all of the page's reports", |r| {
        let contiguous = r.iter().enumerate().all(|(i, x)| seq(x) == i as i64 + 1);
        contiguous.then(|| r.to_vec())
    })
    .await;
    let summary = summarize(&reports);

    let messages: Vec<&Value> = reports.iter().filter(|x| x["kind"] == "event").collect();
    let events: Vec<&Value> = messages
        .iter()
        .copied()
        .filter(|x| x["type"] != "stream.open")
        .collect();
    let ns: Vec<i64> = events
        .iter()
        .map(|x| x["n"].as_i64().unwrap_or(-1))
        .collect();
    let expected: Vec<i64> = (1..=last_n).collect();
    assert_eq!(
        ns, expected,
        "the page must see every event exactly once, in order; reports:\n{summary}"
    );
    let ids: Vec<&str> = events
        .iter()
        .map(|x| x["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ids, published,
        "delivered event ids vs the 202s' ids; reports:\n{summary}"
    );
    for ev in &events {
        assert_eq!(ev["type"], "call.progress", "reports:\n{summary}");
    }
    let cursors: Vec<&str> = events
        .iter()
        .map(|x| x["lastEventId"].as_str().unwrap_or(""))
        .collect();
    assert!(
        cursors.iter().all(|c| !c.is_empty()),
        "every event must carry an SSE id (the browser's lastEventId); reports:\n{summary}"
    );
    let mut distinct = cursors.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        cursors.len(),
        "each event has its own cursor; reports:\n{summary}"
    );

    // Each connection starts with `stream.open`, and nothing else was seen
    // (no `stream.gap`: nothing was dropped).
    let opens = reports.iter().filter(|x| x["kind"] == "open").count();
    assert!(
        opens >= 2,
        "the browser must have reconnected; reports:\n{summary}"
    );
    let mut after_open = false;
    for report in &reports {
        match report["kind"].as_str() {
            Some("open") => after_open = true,
            Some("event") => {
                if after_open {
                    assert_eq!(
                        report["type"], "stream.open",
                        "the first event of each connection; reports:\n{summary}"
                    );
                } else {
                    assert_ne!(
                        report["type"], "stream.open",
                        "stream.open only at a connection's start; reports:\n{summary}"
                    );
                }
                after_open = false;
            }
            Some("error") => {}
            _ => panic!("unexpected report {report}; reports:\n{summary}"),
        }
    }
    for report in &reports {
        if report["kind"] == "error" {
            assert_eq!(
                report["readyState"], 0,
                "after an error the EventSource must be reconnecting, not closed; reports:\n{summary}"
            );
        }
    }

    // The browser did resume with `Last-Event-ID`: the cursor of the last
    // event it had seen when the server ended the connection, and when the
    // proxy cut it.
    let cursor_before = |error_seq: i64| {
        reports
            .iter()
            .rev()
            .find(|x| x["kind"] == "event" && seq(x) < error_seq)
            .and_then(|x| x["lastEventId"].as_str())
            .unwrap_or_else(|| panic!("no event before the disconnect; reports:\n{summary}"))
            .to_string()
    };
    let cut_error_seq = reports
        .iter()
        .find(|x| x["kind"] == "error" && seq(x) > seq_of_event(&reports, first - 1))
        .map(seq)
        .unwrap_or_else(|| panic!("no error report after the cut; reports:\n{summary}"));
    let heads = proxy.request_heads();
    let stream_gets: Vec<&String> = heads
        .iter()
        .filter(|h| h.starts_with("GET ") && h.contains("/Stream?"))
        .collect();
    assert!(
        stream_gets.len() >= 2,
        "the browser's stream requests: {heads:#?}"
    );
    assert_eq!(
        header(stream_gets[0], "last-event-id"),
        None,
        "the first stream request has no Last-Event-ID: {heads:#?}"
    );
    for cursor in [cursor_before(proof_error_seq), cursor_before(cut_error_seq)] {
        assert!(
            stream_gets
                .iter()
                .any(|h| header(h, "last-event-id") == Some(cursor.as_str())),
            "a reconnect must carry Last-Event-ID: {cursor}; the browser's requests: {heads:#?}"
        );
    }
    let preflights = heads.iter().filter(|h| h.starts_with("OPTIONS ")).count();
    eprintln!(
        "browser test: events {proof:?} were published while Chromium was disconnected, \
         events {lost_range:?} were lost in flight, and all arrived after it resumed with \
         Last-Event-ID; {opens} connections, {} stream requests, \
         {preflights} preflights; {:?} in all; {rounds:#?}",
        stream_gets.len(),
        started.elapsed()
    );
}

/// Publishes `call.progress` events with `data.n` over `ns`, in one batch on
/// one call (so in order); returns their ids.
async fn publish_progress(
    server: &TestServer,
    call: &str,
    ns: std::ops::RangeInclusive<i64>,
) -> Vec<String> {
    let batch: Vec<Value> = ns
        .map(|n| event("call.progress", Some(call), json!({ "n": n })))
        .collect();
    server.publish(0, &Value::Array(batch)).await
}

/// Milliseconds since the epoch, on the same clock as the page's `Date.now()`.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn seq(report: &Value) -> i64 {
    report["seq"].as_i64().unwrap_or(0)
}

/// The `seq` of the page's report of the event with `data.n == n`.
fn seq_of_event(reports: &[Value], n: i64) -> i64 {
    reports
        .iter()
        .find(|x| x["kind"] == "event" && x["n"] == n)
        .map(seq)
        .unwrap_or_else(|| panic!("no report of event n={n}"))
}

/// Waits until the page has reported every event of `ns`.
async fn wait_for_events(
    page: &PageServer,
    browser: &mut Browser,
    ns: std::ops::RangeInclusive<i64>,
) {
    let what = format!("the page to receive events n={ns:?}");
    wait_for(page, browser, &what, |r| {
        ns.clone()
            .all(|n| r.iter().any(|x| x["kind"] == "event" && x["n"] == n))
            .then_some(())
    })
    .await;
}

/// Polls the page's reports (sorted by `seq`) until `found` returns something,
/// for at most `BROWSER_WAIT`; fails early when Chromium exits or the page's
/// `EventSource` gives up (`readyState` CLOSED).
async fn wait_for<T>(
    page: &PageServer,
    browser: &mut Browser,
    what: &str,
    mut found: impl FnMut(&[Value]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        let reports = page.reports();
        if let Some(value) = found(&reports) {
            return value;
        }
        if let Some(closed) = reports
            .iter()
            .find(|x| x["kind"] == "error" && x["readyState"] == 2)
        {
            panic!(
                "waiting for {what}: the EventSource gave up ({closed}): the server refused it \
                 (not 200 text/event-stream, or CORS); reports:\n{}",
                summarize(&reports)
            );
        }
        if let Some(status) = browser.exited() {
            panic!(
                "waiting for {what}: chromium exited ({status}); reports:\n{}",
                summarize(&reports)
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: not within {BROWSER_WAIT:?}; reports:\n{}",
                summarize(&reports)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn summarize(reports: &[Value]) -> String {
    if reports.is_empty() {
        return "  (none: the page never reported; did it load?)".to_string();
    }
    reports
        .iter()
        .map(|x| format!("  {x}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The test page: an `EventSource` on `stream_url` whose every `open`,
/// `message` and `error` is reported to this page's own origin (`/report`),
/// numbered in the order the page saw them and timed with `Date.now()`.
fn page_html(stream_url: &str) -> String {
    let url = serde_json::to_string(stream_url).expect("URL as a JS string");
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>switchboard EventSource</title></head>
<body><script>
"use strict";
let seq = 0;
function report(r) {{
  r.seq = ++seq;
  r.t = Date.now();
  fetch("/report", {{ method: "POST", body: JSON.stringify(r) }}).catch(() => {{}});
}}
window.addEventListener("error", (e) => report({{ kind: "js-error", message: String(e.message) }}));
const es = new EventSource({url});
es.onopen = () => report({{ kind: "open" }});
es.onmessage = (e) => {{
  let ev;
  try {{ ev = JSON.parse(e.data); }} catch (err) {{ report({{ kind: "bad-data", data: e.data }}); return; }}
  const n = ev && ev.data && ev.data.n !== undefined ? ev.data.n : null;
  report({{ kind: "event", type: ev.type, id: ev.id, n: n, lastEventId: e.lastEventId }});
}};
es.onerror = () => report({{ kind: "error", readyState: es.readyState }});
</script></body></html>
"#
    )
}

/// A tiny HTTP/1.1 server on a loopback port (its own origin): `GET /` serves
/// the page, `POST /report` collects one JSON report, anything else is 404.
/// One thread per connection, each bounded by socket timeouts, every reply
/// `Connection: close`.
struct PageServer {
    port: u16,
    reports: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start(html: String) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let port = listener.local_addr().expect("page server address").port();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let collected = reports.clone();
        spawn_acceptor(listener, stop.clone(), move |conn| {
            let _ = serve_one(conn, &html, &collected);
        });
        PageServer {
            port,
            reports,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The reports so far, in the order the page made them.
    fn reports(&self) -> Vec<Value> {
        let mut reports = self.reports.lock().clone();
        reports.sort_by_key(seq);
        reports
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_one(mut conn: TcpStream, html: &str, reports: &Mutex<Vec<Value>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let request_line = head.lines().next().unwrap_or("");
    let content_length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + content_length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..buf.len().min(head_end + content_length)];

    let (status, content_type, reply): (&str, &str, &[u8]) = if request_line.starts_with("GET / ") {
        ("200 OK", "text/html; charset=utf-8", html.as_bytes())
    } else if request_line.starts_with("POST /report ") {
        let report = serde_json::from_slice(body).unwrap_or_else(
            |_| json!({ "kind": "unparsable", "body": String::from_utf8_lossy(body) }),
        );
        reports.lock().push(report);
        ("204 No Content", "text/plain", b"")
    } else {
        ("404 Not Found", "text/plain", b"not found")
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        reply.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(reply)?;
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}

/// The value of header `name` (case-insensitive) in one request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// Accepts connections on `listener` in a thread, handing each to `handle` in
/// a thread of its own, until `stop` is set (and a connection wakes it).
fn spawn_acceptor(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let handle = Arc::new(handle);
    std::thread::Builder::new()
        .name(format!("browser-test-{port}"))
        .spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let handle = handle.clone();
                std::thread::spawn(move || handle(conn));
            }
        })
        .expect("spawn an accept loop");
}

/// One connection through the proxy.
struct ProxyConn {
    /// Everything the browser sent.
    sent: Vec<u8>,
    /// What the server sent while `swallow` was set (not forwarded).
    swallowed: Vec<u8>,
    swallow: bool,
    browser: TcpStream,
    server: TcpStream,
}

/// A TCP proxy on a loopback port to the test server. It keeps everything the
/// browser sent (to read its request heads), and on request swallows what the
/// server writes into the connections open at that moment, then cuts them: a
/// connection whose last events were lost in flight. Either side closing
/// closes the other.
struct RecordingProxy {
    port: u16,
    conns: Arc<Mutex<Vec<ProxyConn>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingProxy {
    fn start(upstream_port: u16) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let conns: Arc<Mutex<Vec<ProxyConn>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let log = conns.clone();
        spawn_acceptor(listener, stop.clone(), move |browser| {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                return;
            };
            let (Ok(browser_clone), Ok(server_clone)) = (browser.try_clone(), server.try_clone())
            else {
                return;
            };
            let index = {
                let mut conns = log.lock();
                conns.push(ProxyConn {
                    sent: Vec::new(),
                    swallowed: Vec::new(),
                    swallow: false,
                    browser: browser_clone,
                    server: server_clone,
                });
                conns.len() - 1
            };
            let (Ok(from_server), Ok(to_browser)) = (server.try_clone(), browser.try_clone())
            else {
                return;
            };
            let down = log.clone();
            std::thread::spawn(move || relay(from_server, to_browser, &down, index, false));
            relay(browser, server, &log, index, true);
        });
        RecordingProxy { port, conns, stop }
    }

    /// From now on, what the server writes into the connections open now is
    /// swallowed; returns their indices.
    fn swallow_open_connections(&self) -> Vec<usize> {
        let mut conns = self.conns.lock();
        let mut open = Vec::new();
        for (index, conn) in conns.iter_mut().enumerate() {
            // A closed connection has no peer any more.
            if conn.browser.peer_addr().is_ok() {
                conn.swallow = true;
                open.push(index);
            }
        }
        open
    }

    /// What the swallowing connections did not forward, as text.
    fn swallowed(&self) -> String {
        let conns = self.conns.lock();
        conns
            .iter()
            .map(|c| String::from_utf8_lossy(&c.swallowed).into_owned())
            .collect()
    }

    /// Closes the swallowing connections on both sides.
    fn cut_swallowing(&self) {
        for conn in self.conns.lock().iter().filter(|c| c.swallow) {
            let _ = conn.browser.shutdown(Shutdown::Both);
            let _ = conn.server.shutdown(Shutdown::Both);
        }
    }

    /// Every request head the browser sent through the proxy, in connection
    /// order (the browser sends no request bodies here).
    fn request_heads(&self) -> Vec<String> {
        self.conns
            .lock()
            .iter()
            .flat_map(|conn| {
                String::from_utf8_lossy(&conn.sent)
                    .split("\r\n\r\n")
                    .filter(|head| !head.trim().is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Copies `from` to `to` until either fails or ends, then closes both:
/// recording when `upstream` (browser to server), swallowing when the
/// connection says so (server to browser).
fn relay(
    mut from: TcpStream,
    mut to: TcpStream,
    conns: &Mutex<Vec<ProxyConn>>,
    index: usize,
    upstream: bool,
) {
    let mut chunk = [0u8; 8192];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let forward = {
            let mut conns = conns.lock();
            let conn = &mut conns[index];
            if upstream {
                conn.sent.extend_from_slice(&chunk[..n]);
                true
            } else if conn.swallow {
                conn.swallowed.extend_from_slice(&chunk[..n]);
                false
            } else {
                true
            }
        };
        if forward && to.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Headless Chromium on one URL, with a fresh profile; killed (and its profile
/// removed) on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn launch(chromium: &Path, url: &str) -> Browser {
        let profile = std::env::temp_dir().join(format!("sb-chromium-{}", random_hex(8)));
        std::fs::create_dir_all(&profile).expect("chromium profile dir");
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", chromium.display()));
        Browser { child, profile }
    }

    /// The exit status, if Chromium has already exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM first: Chromium then ends its helper processes itself
        // (after a SIGKILL they linger a moment, writing to the profile).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::fs::remove_dir_all(&self.profile).is_err()
            && self.profile.exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
