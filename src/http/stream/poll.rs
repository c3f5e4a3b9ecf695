//! The long-poll transport (`transport=poll`): answer at once when the client has
//! events pending, otherwise hold the request until something arrives or the timeout
//! passes. The request is the client's publication channel while it waits, drawing
//! from the same outbox as SSE and WebSocket, so cursors work across transports.

use std::time::Duration;

use actix_web::HttpResponse;
use bytes::{BufMut, BytesMut};
use tokio::time::sleep;

use super::Connection;
use crate::outbox::Drain;

const TRANSPORT: &str = "poll";

/// `timeout=` when the request gives none, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 25;

/// Waits (at most `timeout`) for events, then answers
/// `{"events": [...], "cursor": "…"}`.
pub async fn respond(conn: Connection, timeout: Duration) -> HttpResponse {
    let gauge = conn.gauge(TRANSPORT);
    gauge.inc();
    let mut shutdown = conn.shutdown();
    let deadline = sleep(timeout);
    tokio::pin!(deadline);
    let mut body = BytesMut::from(&b"{\"events\":["[..]);
    loop {
        match conn.drain() {
            // Another connection of this client took over: answer with nothing new.
            Drain::Superseded => {
                conn.pass_wake();
                break;
            }
            Drain::Events { gap, entries } if gap > 0 || !entries.is_empty() => {
                let mut first = true;
                let mut item = |bytes: &[u8], body: &mut BytesMut| {
                    if !std::mem::take(&mut first) {
                        body.put_u8(b',');
                    }
                    body.put_slice(bytes);
                };
                if gap > 0 {
                    item(&conn.gap_notice(gap), &mut body);
                }
                let cursors = conn.cursors();
                for entry in &entries {
                    item(&Connection::event_with_cursor(entry, &cursors), &mut body);
                }
                conn.delivered(TRANSPORT, &entries);
                break;
            }
            Drain::Events { .. } => {}
        }
        tokio::select! {
            _ = conn.woken() => {}
            _ = &mut deadline => break,
            _ = shutdown.wait_for(|draining| *draining) => break,
        }
    }
    // After withheld events too: resuming from it does not offer them again.
    let cursor = conn.read_cursor();
    body.put_slice(b"],\"cursor\":\"");
    body.put_slice(cursor.as_bytes()); // base64url: nothing to escape
    body.put_slice(b"\"}");
    gauge.dec();
    drop(conn);
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .body(body.freeze())
}
