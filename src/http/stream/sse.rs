//! The SSE transport: the response body is a stream that drains the client's outbox
//! each time actix-http asks for more.
//!
//! Each chunk carries everything new in the outbox (`id: <cursor>` + `data: <json>`
//! per event, no `event:` line so `EventSource.onmessage` sees everything). The body
//! writes a comment heartbeat after `stream.heartbeat_secs` of silence, closes a
//! signed URL's stream with `stream.expired` when it expires, ends connections older
//! than `stream.max_connection_secs`, and closes every stream with `stream.shutdown`
//! when the server drains.
//!
//! There is no writer task and no channel between it and the socket: actix-http
//! polls the body only when the socket has taken what it was given, so a slow reader
//! leaves events in its outbox (bounded by retention, gaps reported), a delivery
//! costs one task wake-up instead of two, and an idle stream holds no task of its
//! own. `HttpContext` is not used: it buffers without bound.

use std::convert::Infallible;
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpResponse;
use bytes::{BufMut, Bytes, BytesMut};
use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::time::{sleep_until, Sleep};

use super::{AppState, Connection};
use crate::clock;
use crate::outbox::{Drain, Entry};
use crate::wire::{sse_event, sse_frame as frame};

const TRANSPORT: &str = "sse";

/// Returns the streaming response.
pub fn respond(state: &AppState, conn: Connection) -> HttpResponse {
    let body = Body::new(
        conn,
        Pacing {
            heartbeat: state.config.heartbeat(),
            write_interval: state.config.write_interval(),
        },
        state.config.stream.retry_ms,
    );
    let body = futures_util::stream::unfold(body, |mut body| async move {
        let chunk = body.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), body))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// How a stream ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Another connection took over this client's channel.
    Superseded,
    /// Closed without a notice (`stream.max_connection_secs`).
    Closed,
    /// Closed with this notice.
    Notice(&'static str),
}

/// Where the body is in its life.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The `retry:` line and `stream.open` are next.
    Opening,
    Streaming,
    /// What was pending went out; the end comes next.
    Closing(End),
    Done,
}

/// What ended a wait for the next chunk.
enum Wake {
    Pushed,
    Heartbeat,
    /// The connection's deadline.
    Deadline,
    Shutdown,
}

/// When a stream writes on its own account.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    /// Silence after which a heartbeat comment is written.
    heartbeat: Duration,
    /// Shortest time between two writes of events (`stream.write_interval_ms`).
    write_interval: Duration,
}

/// The body's state between chunks. Dropped by actix-http when the client goes.
struct Body {
    conn: Connection,
    gauge: IntGauge,
    shutdown: watch::Receiver<bool>,
    pacing: Pacing,
    retry_ms: u64,
    /// Fires no earlier than the next heartbeat is due, or than the end of the
    /// write interval while a write is held back. Armed once and moved only when it
    /// fires early (something was written since) or to hold a write, so a delivery
    /// at a light rate, which wakes the body, never touches the timer wheel:
    /// registering and clearing two timers per wake-up was a few percent of a
    /// fan-out's CPU.
    heartbeat_timer: Pin<Box<Sleep>>,
    /// The connection's deadline, armed once; `true` when it is the signed URL's
    /// expiry.
    deadline: Option<(Pin<Box<Sleep>>, bool)>,
    last_write: Instant,
    phase: Phase,
}

impl Body {
    fn new(conn: Connection, pacing: Pacing, retry_ms: u64) -> Body {
        let gauge = conn.gauge(TRANSPORT);
        gauge.inc();
        let now = Instant::now();
        Body {
            shutdown: conn.shutdown(),
            deadline: conn
                .deadline()
                .map(|(at, expires)| (Box::pin(sleep_until(at)), expires)),
            heartbeat_timer: Box::pin(sleep_until(tokio::time::Instant::from_std(clock::after(
                now,
                pacing.heartbeat,
            )))),
            conn,
            gauge,
            pacing,
            retry_ms,
            last_write: now,
            phase: Phase::Opening,
        }
    }

    /// The next chunk to write, waiting for one if nothing is due; `None` ends the
    /// response.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let chunk = match self.phase {
            Phase::Opening => {
                self.phase = Phase::Streaming;
                let mut first = BytesMut::new();
                first.put_slice(format!("retry: {}\n", self.retry_ms).as_bytes());
                frame(
                    &mut first,
                    Some(&self.conn.start_cursor()),
                    &self.conn.open_notice(),
                );
                // What is already in the outbox (a replay, above all) goes out with
                // the notice, not a write interval later: a replay keeps its turn
                // until its first chunk is taken, and holding it 10 ms for nothing
                // made the turns, not the CPU, what bounded a reconnect storm.
                match self.flush() {
                    Ok(Some(events)) => first.put_slice(&events),
                    Ok(None) => {}
                    Err(end) => self.phase = Phase::Closing(end),
                }
                Some(first.freeze())
            }
            Phase::Streaming => self.stream().await,
            Phase::Closing(end) => self.finish(end),
            Phase::Done => None,
        };
        self.last_write = Instant::now();
        chunk
    }

    async fn stream(&mut self) -> Option<Bytes> {
        // Within the write interval after a write, what is pushed waits for its end
        // and goes out in one write with whatever else came (at a saturating rate,
        // several events per write instead of one each); after a quiet spell an
        // event is written at once. The timer is touched only to hold a write.
        let hold_until = clock::after(self.last_write, self.pacing.write_interval);
        let mut flush_now = Instant::now() >= hold_until;
        let mut held = false;
        loop {
            if flush_now {
                match self.flush() {
                    Ok(Some(chunk)) => return Some(chunk),
                    Ok(None) => {}
                    Err(end) => return self.finish(end),
                }
            }
            let woke = {
                let deadline_timer = &mut self.deadline;
                let deadline = async {
                    match deadline_timer {
                        Some((timer, _)) => timer.as_mut().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = self.conn.woken(), if !held => Wake::Pushed,
                    _ = self.heartbeat_timer.as_mut() => Wake::Heartbeat,
                    _ = deadline => Wake::Deadline,
                    _ = self.shutdown.wait_for(|draining| *draining) => Wake::Shutdown,
                }
            };
            match woke {
                Wake::Pushed => {
                    flush_now = Instant::now() >= hold_until;
                    if !flush_now {
                        held = true;
                        self.rearm_heartbeat(hold_until);
                    }
                }
                Wake::Heartbeat if held => {
                    // The interval is over: write what came, and the timer goes back
                    // to watching for silence.
                    held = false;
                    flush_now = true;
                    self.rearm_heartbeat(clock::after(self.last_write, self.pacing.heartbeat));
                }
                Wake::Heartbeat => {
                    let now = Instant::now();
                    let due = clock::after(self.last_write, self.pacing.heartbeat);
                    if now >= due {
                        // The heartbeat is written now, so the next one is due from now.
                        self.rearm_heartbeat(clock::after(now, self.pacing.heartbeat));
                        return Some(Bytes::from_static(b":\n\n"));
                    }
                    self.rearm_heartbeat(due);
                }
                Wake::Deadline => {
                    let expires = self.deadline.as_ref().is_some_and(|(_, expires)| *expires);
                    return self.finish(if expires {
                        End::Notice("stream.expired")
                    } else {
                        End::Closed
                    });
                }
                Wake::Shutdown => {
                    // Flush what was accepted before saying goodbye.
                    let end = End::Notice("stream.shutdown");
                    return match self.flush() {
                        Ok(Some(chunk)) => {
                            self.phase = Phase::Closing(end);
                            Some(chunk)
                        }
                        Ok(None) => self.finish(end),
                        Err(end) => self.finish(end),
                    };
                }
            }
        }
    }

    fn rearm_heartbeat(&mut self, at: Instant) {
        self.heartbeat_timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(at));
    }

    /// Everything new in the outbox as one chunk, `None` when there is nothing, or
    /// how the stream ends.
    fn flush(&mut self) -> Result<Option<Bytes>, End> {
        let (gap, entries) = match self.conn.drain() {
            Drain::Superseded => return Err(End::Superseded),
            Drain::Events { gap, entries } => (gap, entries),
        };
        if gap == 0 && entries.is_empty() {
            return Ok(None);
        }
        let chunk = render(&self.conn, gap, &entries);
        self.conn.delivered(TRANSPORT, &entries);
        Ok(Some(chunk))
    }

    /// The last chunk, if the end has one.
    fn finish(&mut self, end: End) -> Option<Bytes> {
        self.phase = Phase::Done;
        match end {
            End::Notice(type_name) => {
                let mut chunk = BytesMut::new();
                frame(&mut chunk, None, &self.conn.bare_notice(type_name));
                Some(chunk.freeze())
            }
            End::Superseded => {
                self.conn.pass_wake();
                None
            }
            End::Closed => None,
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.gauge.dec();
    }
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
    let cursors = conn.cursors();
    for entry in entries {
        sse_event(&mut chunk, &cursors.at(entry.seq), entry);
    }
    chunk.freeze()
}
