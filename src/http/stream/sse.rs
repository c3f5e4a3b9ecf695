//! The SSE transport: a bounded channel of chunks streamed as the response body.
//!
//! A writer task per connection drains the client's outbox into one chunk per wake-up
//! (`id: <cursor>` + `data: <json>` per event, no `event:` line so
//! `EventSource.onmessage` sees everything), writes a comment heartbeat after
//! `stream.heartbeat_secs` of silence, closes a signed URL's stream with
//! `stream.expired` when it expires and every stream with `stream.shutdown` when the
//! server drains. `HttpContext` is not used: it buffers without bound.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::{AppState, Connection};
use crate::auth::unix_now;
use crate::outbox::{Drain, Entry};
use crate::wire::{sse_frame as frame, write_event};

const TRANSPORT: &str = "sse";

/// Starts the writer and returns the streaming response.
pub fn respond(state: &AppState, conn: Connection) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<Bytes>(state.config.stream.chunk_buffer);
    let heartbeat = state.config.heartbeat();
    let shutdown = state.shutdown.clone();
    actix_web::rt::spawn(write(conn, tx, heartbeat, shutdown));
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
    Notice(&'static str),
}

async fn write(
    conn: Connection,
    tx: mpsc::Sender<Bytes>,
    heartbeat: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let gauge = conn
        .state
        .metrics
        .connections
        .with_label_values(&[TRANSPORT]);
    gauge.inc();
    let outbox = conn.connected.outbox.clone();
    let mut first = BytesMut::new();
    frame(
        &mut first,
        Some(&conn.cursor(conn.connected.position)),
        &conn.open_notice(),
    );
    let mut last_write = Instant::now();
    let expires_at = conn
        .closes_at
        .map(|at| tokio::time::Instant::now() + Duration::from_secs(at.saturating_sub(unix_now())));
    let end = if tx.send(first.freeze()).await.is_err() {
        End::Gone
    } else {
        loop {
            if let Some(end) = flush(&conn, &tx).await {
                break end;
            }
            let heartbeat_at = tokio::time::Instant::from_std(last_write + heartbeat);
            tokio::select! {
                _ = outbox.woken() => continue,
                _ = tx.closed() => break End::Gone,
                _ = sleep_until(heartbeat_at) => {
                    if tx.send(Bytes::from_static(b":\n\n")).await.is_err() {
                        break End::Gone;
                    }
                }
                _ = sleep_until(expires_at.unwrap_or(heartbeat_at)), if expires_at.is_some() => {
                    break End::Notice("stream.expired");
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
        // Pass the wake-up on: it may have been meant for the connection that
        // replaced this one.
        End::Superseded => outbox.wake(),
        End::Gone => {}
    }
    gauge.dec();
}

/// Writes everything new in the outbox as one chunk. `Some` when the writer must stop.
async fn flush(conn: &Connection, tx: &mpsc::Sender<Bytes>) -> Option<End> {
    let (gap, entries) = match conn
        .connected
        .outbox
        .drain(conn.connected.conn, Instant::now())
    {
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
