//! The SSE transport: a bounded channel of chunks streamed as the response body.
//!
//! A writer task per connection drains the client's outbox into one chunk per wake-up
//! (`id: <cursor>` + `data: <json>` per event, no `event:` line so
//! `EventSource.onmessage` sees everything), writes a comment heartbeat after
//! `stream.heartbeat_secs` of silence, closes a signed URL's stream with
//! `stream.expired` when it expires, ends connections older than
//! `stream.max_connection_secs`, and closes every stream with `stream.shutdown` when
//! the server drains. `HttpContext` is not used: it buffers without bound.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpResponse;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::{AppState, Connection};
use crate::clock;
use crate::outbox::{Drain, Entry};
use crate::wire::{sse_frame as frame, write_event};

const TRANSPORT: &str = "sse";

/// Starts the writer and returns the streaming response.
pub fn respond(state: &AppState, conn: Connection) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<Bytes>(state.config.stream.chunk_buffer);
    let heartbeat = state.config.heartbeat();
    let retry_ms = state.config.stream.retry_ms;
    actix_web::rt::spawn(write(conn, tx, heartbeat, retry_ms));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// Why the writer stopped writing events.
enum End {
    Gone,
    Superseded,
    Closed,
    Notice(&'static str),
}

async fn write(conn: Connection, tx: mpsc::Sender<Bytes>, heartbeat: Duration, retry_ms: u64) {
    let gauge = conn.gauge(TRANSPORT);
    gauge.inc();
    let mut shutdown = conn.shutdown();
    let mut first = BytesMut::new();
    first.put_slice(format!("retry: {retry_ms}\n").as_bytes());
    frame(&mut first, Some(&conn.start_cursor()), &conn.open_notice());
    let mut last_write = Instant::now();
    let deadline = conn.deadline();
    let end = if tx.send(first.freeze()).await.is_err() {
        End::Gone
    } else {
        loop {
            if let Some(end) = flush(&conn, &tx).await {
                break end;
            }
            let heartbeat_at = tokio::time::Instant::from_std(clock::after(last_write, heartbeat));
            let (deadline_at, expires) = deadline.unwrap_or((heartbeat_at, false));
            tokio::select! {
                _ = conn.woken() => continue,
                _ = tx.closed() => break End::Gone,
                _ = sleep_until(heartbeat_at) => {
                    if tx.send(Bytes::from_static(b":\n\n")).await.is_err() {
                        break End::Gone;
                    }
                }
                _ = sleep_until(deadline_at), if deadline.is_some() => {
                    break if expires { End::Notice("stream.expired") } else { End::Closed };
                }
                _ = shutdown.wait_for(|draining| *draining) => {
                    // Flush what was accepted before saying goodbye.
                    break flush(&conn, &tx).await.unwrap_or(End::Notice("stream.shutdown"));
                }
            }
            last_write = Instant::now();
        }
    };
    match end {
        End::Notice(type_name) => {
            let mut chunk = BytesMut::new();
            frame(&mut chunk, None, &conn.bare_notice(type_name));
            let _ = tx.send(chunk.freeze()).await;
        }
        End::Superseded => conn.pass_wake(),
        End::Gone | End::Closed => {}
    }
    gauge.dec();
}

/// Writes everything new in the outbox as one chunk. `Some` when the writer must stop.
async fn flush(conn: &Connection, tx: &mpsc::Sender<Bytes>) -> Option<End> {
    let (gap, entries) = match conn.drain() {
        Drain::Superseded => return Some(End::Superseded),
        Drain::Events { gap, entries } => (gap, entries),
    };
    if gap == 0 && entries.is_empty() {
        return None;
    }
    let chunk = render(conn, gap, &entries);
    if tx.send(chunk).await.is_err() {
        return Some(End::Gone);
    }
    conn.delivered(TRANSPORT, &entries);
    None
}

/// Renders a gap notice (if any) and the events into one chunk.
fn render(conn: &Connection, gap: u64, entries: &[Entry]) -> Bytes {
    let mut chunk = BytesMut::with_capacity(
        entries
            .iter()
            .map(|e| e.event.json_open.len() + 128)
            .sum::<usize>(),
    );
    if gap > 0 {
        frame(&mut chunk, None, &conn.gap_notice(gap));
    }
    let mut json = BytesMut::new();
    for entry in entries {
        json.clear();
        write_event(&mut json, entry);
        frame(&mut chunk, Some(&conn.cursor(entry.seq)), &json);
    }
    chunk.freeze()
}
