//! The WebSocket transport (`Upgrade: websocket` on the stream URL), an actor of
//! `actix-web-actors` as the architecture asks; its use is confined to this file.
//! (`actix-web-actors` is deprecated upstream in favour of `actix-ws`, whose session
//! is a plain async handle; moving there means replacing this one file.)
//!
//! The actor drains the client's outbox into one text frame per event (the delivered
//! event plus its `"cursor"`), and turns the client's text frames into client events.
//! As on SSE, events pushed within `stream.write_interval_ms` of the last write wait
//! for its end: their frames are taken by the HTTP layer together, one write.
//! `WebsocketContext` buffers without bound, so the actor counts the bytes it wrote
//! (events, notices, pings and pongs alike) against the bytes the HTTP layer has
//! taken from it, and drains the outbox only up to [`MAX_UNFLUSHED`] of them: a slow
//! reader then costs its own outbox (and a `stream.gap` if it overflows), never
//! memory without bound. Past that backlog a pong is skipped (RFC 6455 lets an
//! endpoint answer only the latest ping) and a client that keeps sending frames
//! whose error notices it does not read is closed with 1008.
//!
//! Fragmented client messages are reassembled ([`super::reassembly`]); a message
//! over 64 KiB, fragmented or not, closes the socket with 1009.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::error::PayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::StreamExt;

use super::frame_guard::FrameGuard;
use super::reassembly::{Assembled, FrameError, Reassembler, MAX_MESSAGE_BYTES};
use super::Connection;
use crate::clock;
use crate::http::client_events;
use crate::http::ApiError;
use crate::outbox::Drain;

const TRANSPORT: &str = "ws";

/// Bytes written to the context but not yet taken by the HTTP layer, above which the
/// actor stops draining the outbox until they go.
pub const MAX_UNFLUSHED: usize = 1 << 20;

/// Bytes counted for a frame's header: at most 10 for the frames the server sends.
const FRAME_HEADER: usize = 10;

/// How often a throttled connection re-checks its backlog.
const RECHECK: Duration = Duration::from_millis(20);

/// Completes the WebSocket handshake and starts the connection's actor.
pub fn respond(
    req: &HttpRequest,
    payload: web::Payload,
    conn: Connection,
) -> Result<HttpResponse, ApiError> {
    let mut response =
        ws::handshake(req).map_err(|e| ApiError::parameter(format!("upgrade: {e}")))?;
    let flushed = Arc::new(AtomicUsize::new(0));
    let (mut guard, oversized) = FrameGuard::new(MAX_MESSAGE_BYTES);
    let actor = WsConnection {
        last_write: Instant::now(),
        held: false,
        conn,
        flushed: flushed.clone(),
        written: 0,
        last_seen: Instant::now(),
        fragments: Reassembler::default(),
        oversized,
    };
    // A frame over the message bound ends the input at its header (the guard), and
    // the codec would refuse it too; either way the connection closes with 1009.
    let payload = payload.map(move |chunk| match chunk {
        Ok(bytes) if !guard.inspect(&bytes) => Err(PayloadError::Overflow),
        other => other,
    });
    let codec = actix_http::ws::Codec::new().max_size(MAX_MESSAGE_BYTES);
    let frames = ws::WebsocketContext::with_codec(actor, payload, codec).map(move |item| {
        if let Ok(bytes) = &item {
            flushed.fetch_add(bytes.len(), Ordering::Relaxed);
        }
        item
    });
    Ok(response.streaming(frames))
}

/// The outbox has something new.
struct Wake;

/// The server is draining.
struct Drained;

struct WsConnection {
    conn: Connection,
    /// Bytes the HTTP layer has taken from the context.
    flushed: Arc<AtomicUsize>,
    /// Bytes of frames written into the context.
    written: usize,
    /// When events (or the opening notice) were last written.
    last_write: Instant,
    /// A flush is scheduled for the end of the write interval.
    held: bool,
    /// Last time the client showed life (any frame, pong included).
    last_seen: Instant,
    /// The fragmented client message being put back together.
    fragments: Reassembler,
    /// Set by the input's [`FrameGuard`] when a frame over the bound was announced.
    oversized: Arc<AtomicBool>,
}

impl WsConnection {
    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, json: Bytes) {
        self.written += json.len() + FRAME_HEADER;
        match ByteString::try_from(json) {
            Ok(text) => ctx.text(text),
            Err(_) => tracing::error!("a rendered event was not UTF-8"),
        }
    }

    /// Bytes written to the context that the HTTP layer has not taken yet.
    fn unflushed(&self) -> usize {
        self.written
            .saturating_sub(self.flushed.load(Ordering::Relaxed))
    }

    /// Sends a `stream.error` notice, unless the client is not reading what it is
    /// sent: then it is closed (1008) rather than buffered for without bound.
    fn error_notice(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: &ApiError) {
        if self.unflushed() > MAX_UNFLUSHED {
            self.close_with(ctx, ws::CloseCode::Policy, "slow_reader", "slow reader");
            return;
        }
        let notice = self.conn.error_notice(error);
        self.send(ctx, notice);
    }

    /// Closes the socket for what the client sent, counted by `reason`.
    fn close_with(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        code: ws::CloseCode,
        reason: &'static str,
        why: &str,
    ) {
        self.conn
            .state()
            .metrics
            .ws_closed
            .with_label_values(&[reason])
            .inc();
        tracing::debug!(code = u16::from(code), reason, "closing websocket");
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(why.to_owned()),
        }));
        ctx.stop();
    }

    fn flush(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let unflushed = self.unflushed();
        if unflushed > MAX_UNFLUSHED {
            ctx.run_later(RECHECK, |conn, ctx| conn.flush(ctx));
            return;
        }
        match self.conn.drain_within(MAX_UNFLUSHED - unflushed) {
            Drain::Superseded => {
                self.conn.pass_wake();
                ctx.close(None);
                ctx.stop();
            }
            Drain::Events { gap, entries } => {
                if gap == 0 && entries.is_empty() {
                    return;
                }
                self.last_write = Instant::now();
                if gap > 0 {
                    let notice = self.conn.gap_notice(gap);
                    self.send(ctx, notice);
                }
                let cursors = self.conn.cursors();
                for entry in &entries {
                    let frame = Connection::event_with_cursor(entry, &cursors);
                    self.send(ctx, frame);
                }
                self.conn.delivered(TRANSPORT, &entries);
            }
        }
    }

    fn end_with(&mut self, ctx: &mut ws::WebsocketContext<Self>, notice: &str) {
        let notice = self.conn.bare_notice(notice);
        self.send(ctx, notice);
        ctx.close(None);
        ctx.stop();
    }

    /// Publishes a client's text frame as a client event; errors come back as a
    /// `stream.error` notice and the connection stays open.
    fn client_event(&mut self, text: ByteString, ctx: &mut ws::WebsocketContext<Self>) {
        let state = self.conn.state().clone();
        let (account, client, grant) = self.conn.sender();
        let publish = async move {
            client_events::send(&state, account, &client, &grant, text.as_bytes(), "ws").await
        };
        ctx.spawn(publish.into_actor(self).map(|result, conn, ctx| {
            if let Err(error) = result {
                conn.error_notice(ctx, &error);
            }
        }));
    }
}

impl Actor for WsConnection {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.conn.gauge(TRANSPORT).inc();
        let open = self.conn.open_notice();
        self.send(ctx, open);
        let outbox = self.conn.outbox();
        ctx.add_stream(futures_util::stream::unfold(outbox, |outbox| async move {
            outbox.woken().await;
            Some((Wake, outbox))
        }));
        let shutdown = self.conn.shutdown();
        ctx.add_stream(futures_util::stream::once(async move {
            let mut shutdown = shutdown;
            let _ = shutdown.wait_for(|draining| *draining).await;
            Drained
        }));
        let heartbeat = self.conn.state().config.heartbeat();
        ctx.run_interval(heartbeat, move |conn, ctx| {
            // A client silent for three heartbeats (no pong) is gone.
            if conn.last_seen.elapsed() > heartbeat.saturating_mul(3) {
                ctx.stop();
            } else {
                conn.written += FRAME_HEADER;
                ctx.ping(b"");
            }
        });
        if let Some((at, expires)) = self.conn.deadline() {
            let wait = at.saturating_duration_since(tokio::time::Instant::now());
            ctx.run_later(wait, move |conn, ctx| {
                if expires {
                    conn.end_with(ctx, "stream.expired");
                } else {
                    ctx.close(None);
                    ctx.stop();
                }
            });
        }
        self.flush(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.conn.gauge(TRANSPORT).dec();
    }
}

impl StreamHandler<Wake> for WsConnection {
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        if self.held {
            return;
        }
        // Within the write interval after a write, what is pushed waits for its end
        // and goes out with whatever else came; after a quiet spell, at once.
        let now = Instant::now();
        let interval = self.conn.state().config.write_interval();
        let hold_until = clock::after(self.last_write, interval);
        if now >= hold_until {
            self.flush(ctx);
            return;
        }
        self.held = true;
        ctx.run_later(hold_until.saturating_duration_since(now), |conn, ctx| {
            conn.held = false;
            conn.flush(ctx);
        });
    }
}

impl StreamHandler<Drained> for WsConnection {
    fn handle(&mut self, _: Drained, ctx: &mut Self::Context) {
        // Flush what was accepted before saying goodbye.
        self.flush(ctx);
        self.end_with(ctx, "stream.shutdown");
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // The drain stream ends after its one item; that must not stop the actor.
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsConnection {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        let message = match msg {
            Ok(ws::Message::Text(text)) => self
                .fragments
                .whole(text.len())
                .map(|()| Some(Assembled::Text(text.into_bytes()))),
            Ok(ws::Message::Binary(bytes)) => self
                .fragments
                .whole(bytes.len())
                .map(|()| Some(Assembled::Binary)),
            Ok(ws::Message::Continuation(item)) => self.fragments.push(item),
            Ok(ws::Message::Ping(payload)) => {
                // Past the backlog bound the pong is skipped: the client's next
                // ping gets one (RFC 6455 §5.5.3 allows answering the latest only).
                if self.unflushed() <= MAX_UNFLUSHED {
                    self.written += payload.len() + FRAME_HEADER;
                    ctx.pong(&payload);
                }
                Ok(None)
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
                Ok(None)
            }
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => Ok(None),
            Err(ws::ProtocolError::Overflow) => Err(FrameError::TooLarge),
            Err(_) if self.oversized.load(Ordering::Relaxed) => Err(FrameError::TooLarge),
            Err(error) => {
                tracing::debug!(cause = %error, "websocket protocol error");
                self.close_with(
                    ctx,
                    ws::CloseCode::Protocol,
                    "protocol_error",
                    "protocol error",
                );
                Ok(None)
            }
        };
        match message {
            Ok(Some(Assembled::Text(bytes))) => match ByteString::try_from(bytes) {
                Ok(text) => self.client_event(text, ctx),
                Err(_) => self.close_with(
                    ctx,
                    ws::CloseCode::Invalid,
                    "invalid_text",
                    "text is not UTF-8",
                ),
            },
            Ok(Some(Assembled::Binary)) => {
                let error = ApiError::parameter("frame: client events are JSON text frames");
                self.error_notice(ctx, &error);
            }
            Ok(None) => {}
            Err(error) => {
                let code = error.close_code();
                self.close_with(ctx, code, error.reason(), &error.to_string());
            }
        }
    }
}
