//! The lane's writer: one request, already read, served by the same actix-web
//! application as every other request, with the response written to the socket here
//! instead of through actix-http's dispatcher.
//!
//! An open stream then holds its socket, its response body and nothing else: no 8 KB
//! read buffer, no 8 KB write buffer, no dispatcher state. A publish's answer is
//! written with its head in one write. Each chunk a streamed body yields is written
//! at once with its chunk framing in one vectored write, and the next is asked for
//! only when the socket took it, so a slow reader leaves events in its outbox, as
//! with actix-http.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::task::Poll;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Response, Service};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode, Uri, Version};
use actix_web::ResponseError;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::head::PublishParts;
use super::response::{chunk_start, head, head_of, with_date, Framing, CHUNK_END};
use crate::event::EventId;
use crate::http::publish::{self, PublishHead};
use crate::http::AppState;

/// What to do with the connection once the response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Hand it to actix-http for whatever the client sends next.
    KeepAlive,
    /// Close it: the client asked to, went away, or the body failed.
    Close,
}

/// What ended a wait for the body's next chunk.
enum Next {
    Chunk(Bytes),
    End,
    /// The body failed: the response cannot be finished.
    Failed,
    /// The client closed its side of the connection.
    ClientGone,
}

/// Serves a stream request through `app` and writes its response. `watch` says
/// whether the socket may be watched for the client going away, which it may not
/// when the next request is already read.
///
/// Not an `async fn`: that would keep its arguments, the request head among them, for
/// as long as the stream is open, and an idle stream's memory is mostly what its
/// connection holds between events. The request goes to the application here; the
/// future keeps the application's future, boxed because it is large and done once
/// the response head is ready.
pub fn serve<'a, S, B>(
    io: &'a mut TcpStream,
    target: (Uri, HeaderMap),
    peer: Option<std::net::SocketAddr>,
    app: &'a S,
    close: bool,
    watch: bool,
) -> impl Future<Output = io::Result<After>> + 'a
where
    S: Service<actix_http::Request>,
    S::Future: 'a,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    let mut req = actix_http::Request::new();
    let req_head = req.head_mut();
    req_head.method = Method::GET;
    req_head.version = Version::HTTP_11;
    (req_head.uri, req_head.headers) = target;
    req_head.peer_addr = peer;
    let call = Box::pin(app.call(req));
    respond(io, call, close, watch)
}

/// Publishes the events of `request` (its bytes: a head of `head_len`, then the
/// body) and writes the answer: the events endpoint's own code
/// ([`publish::publish`]) without actix-web's routing, request and payload, which
/// were a third of a one-event publish.
///
/// Not an `async fn`: the publish is done before the future starts, so the future
/// is only the write, no larger than a stream's, and the connection's future (which
/// every open stream pays for) does not grow for it.
pub fn publish<'a>(
    io: &'a mut TcpStream,
    state: &AppState,
    request: &[u8],
    head_len: usize,
    parts: &PublishParts,
    close: bool,
) -> impl Future<Output = io::Result<After>> + 'a {
    let part = |range: &Option<Range<usize>>| range.clone().map(|range| &request[range]);
    let headers = PublishHead {
        authorization: part(&parts.authorization),
        content_type: part(&parts.content_type),
    };
    // The sid was read as text from this very path.
    let sid = std::str::from_utf8(&request[parts.sid.clone()]).unwrap_or_default();
    let body = &request[head_len..];
    let (out, ready, body, framing) = match publish::publish(state, sid, &headers, body) {
        Ok(ids) => accepted(&ids, close),
        Err(error) => prepare(error.error_response().into(), close),
    };
    write_body(io, out, ready, body, framing, close, false)
}

/// The whole 202 of a publish, written as [`head`] writes `publish::accepted`'s
/// response (a unit test holds the two together) without building that response
/// and its header map: they were a tenth of a one-event publish.
fn accepted(ids: &[EventId], close: bool) -> (Vec<u8>, Ready, BoxBody, Framing) {
    let (out, framing) = with_date(|date| accepted_bytes(ids, close, date));
    (out, Ready::Whole, BoxBody::new(()), framing)
}

fn accepted_bytes(ids: &[EventId], close: bool, date: &str) -> (Vec<u8>, Framing) {
    let json = publish::accepted_json(ids);
    let framing = Framing::Length(json.len() as u64);
    let lines = [(&b"content-type"[..], &b"application/json"[..])];
    let mut out = head_of(
        StatusCode::ACCEPTED,
        lines.into_iter(),
        framing,
        close,
        Some(date),
    );
    out.extend_from_slice(&json);
    (out, framing)
}

/// Writes the response of `call` to `io`.
async fn respond<F, R, E, B>(
    io: &mut TcpStream,
    call: Pin<Box<F>>,
    close: bool,
    watch: bool,
) -> io::Result<After>
where
    F: Future<Output = Result<R, E>>,
    R: Into<Response<B>>,
    E: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    // No named local for the response: it would be kept across the write.
    let writing = match call.await {
        Ok(response) => write_response(io, response.into().map_into_boxed_body(), close, watch),
        Err(error) => write_response(io, error.into(), close, watch),
    };
    writing.await
}

/// Writes `response` to `io`, its body as it comes.
///
/// Not an `async fn`: the response would stay in its future, and so in every open
/// stream's, after it was taken apart. The head is built here, with what the body
/// has ready: all of a sized body (a publish's answer), or an SSE stream's `retry:`
/// and `stream.open`, so that it goes out in one write.
fn write_response<'a>(
    io: &'a mut TcpStream,
    response: Response<BoxBody>,
    close: bool,
    watch: bool,
) -> impl Future<Output = io::Result<After>> + 'a {
    let (out, ready, body, framing) = prepare(response, close);
    write_body(io, out, ready, body, framing, close, watch)
}

/// The head of `response` and what of its body is ready, to be written by
/// [`write_body`] with the rest of its body and framing.
fn prepare(response: Response<BoxBody>, close: bool) -> (Vec<u8>, Ready, BoxBody, Framing) {
    let (response, mut body) = response.into_parts();
    let framing = match body.size() {
        BodySize::Stream => Framing::Chunked,
        BodySize::Sized(n) => Framing::Length(n),
        BodySize::None => Framing::Length(0),
    };
    let mut out =
        with_date(|date| head(response.status(), response.headers(), framing, close, date));
    drop(response);
    let ready = loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).now_or_never() {
            Some(Some(Ok(chunk))) => frame_into(&mut out, framing, &chunk),
            Some(Some(Err(_))) => break Ready::Failed,
            Some(None) => {
                out.extend_from_slice(framing.end());
                break Ready::Whole;
            }
            None => break Ready::Started,
        }
    };
    (out, ready, body, framing)
}

/// How much of a body was ready with its head.
enum Ready {
    /// All of it: the head and body are the whole response.
    Whole,
    /// Its start: the rest follows as it comes.
    Started,
    /// It failed before the head went out.
    Failed,
}

/// Writes `out` (the head and what was `ready` of the body), then the rest of `body`.
async fn write_body(
    io: &mut TcpStream,
    out: Vec<u8>,
    ready: Ready,
    mut body: BoxBody,
    framing: Framing,
    close: bool,
    mut watch: bool,
) -> io::Result<After> {
    match ready {
        Ready::Failed => return Ok(After::Close),
        Ready::Whole => {
            io.write_all(&out).await?;
            return Ok(keep_alive(close));
        }
        Ready::Started => io.write_all(&out).await?,
    }
    drop(out);
    loop {
        match next(io, Pin::new(&mut body), &mut watch).await {
            Next::Chunk(chunk) if chunk.is_empty() => {}
            Next::Chunk(chunk) => write_chunk(io, framing, &chunk).await?,
            Next::End => {
                io.write_all(framing.end()).await?;
                return Ok(keep_alive(close));
            }
            Next::Failed | Next::ClientGone => return Ok(After::Close),
        }
    }
}

fn keep_alive(close: bool) -> After {
    if close {
        After::Close
    } else {
        After::KeepAlive
    }
}

/// Waits for the body's next chunk while watching the socket (while `watch` holds):
/// a client that closes its side is gone, and its stream ends at once rather than at
/// the next write that fails, which for an idle stream is the next heartbeat. Bytes
/// the client sends meanwhile (a pipelined request) are left unread for whoever
/// serves the next request, and the watch stops, since readiness would stay set.
async fn next(io: &TcpStream, mut body: Pin<&mut BoxBody>, watch: &mut bool) -> Next {
    poll_fn(|cx| {
        if *watch {
            let mut byte = [0u8; 1];
            let mut probe = ReadBuf::new(&mut byte);
            match io.poll_peek(cx, &mut probe) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Next::ClientGone),
                Poll::Ready(Ok(_)) => *watch = false,
                Poll::Pending => {}
            }
        }
        body.as_mut().poll_next(cx).map(|chunk| match chunk {
            Some(Ok(chunk)) => Next::Chunk(chunk),
            Some(Err(_)) => Next::Failed,
            None => Next::End,
        })
    })
    .await
}

/// Appends a chunk, framed, to a buffer about to be written.
fn frame_into(out: &mut Vec<u8>, framing: Framing, chunk: &[u8]) {
    match framing {
        Framing::Length(_) => out.extend_from_slice(chunk),
        Framing::Chunked if chunk.is_empty() => {}
        Framing::Chunked => {
            let (start, n) = chunk_start(chunk.len());
            out.extend_from_slice(&start[..n]);
            out.extend_from_slice(chunk);
            out.extend_from_slice(CHUNK_END);
        }
    }
}

/// Writes one chunk, framed, without copying it: vectored writes of what is left
/// until the socket took it all (one, unless the socket is full).
///
/// Polled by hand rather than through `write_vectored` and `write_all`: their
/// futures made this one, and with it every open stream, 280 bytes.
fn write_chunk<'a>(
    io: &'a mut TcpStream,
    framing: Framing,
    chunk: &'a [u8],
) -> impl Future<Output = io::Result<()>> + 'a {
    let (start, n) = match framing {
        Framing::Chunked => chunk_start(chunk.len()),
        Framing::Length(_) => ([0; 18], 0),
    };
    let end = if framing == Framing::Chunked {
        CHUNK_END
    } else {
        &[]
    };
    let mut written = 0;
    poll_fn(move |cx| {
        let parts: [&[u8]; 3] = [&start[..n], chunk, end];
        let total: usize = parts.iter().map(|part| part.len()).sum();
        while written < total {
            let mut skip = written;
            let slices = parts.map(|part| {
                let from = skip.min(part.len());
                skip -= from;
                IoSlice::new(&part[from..])
            });
            match std::task::ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(wrote) => written += wrote,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane's own 202 is, byte for byte, what it writes for the events
    /// endpoint's response.
    #[test]
    fn the_accepted_head_is_the_responses() {
        let date = "Thu, 03 Dec 2026 16:00:00 GMT";
        for (ids, close) in [
            (vec![EventId(1)], false),
            (vec![EventId(1), EventId(u128::MAX), EventId(3)], true),
        ] {
            let (ours, framing) = accepted_bytes(&ids, close, date);
            let response = publish::accepted(&ids);
            let json = publish::accepted_json(&ids);
            let mut theirs = head(response.status(), response.headers(), framing, close, date);
            theirs.extend_from_slice(&json);
            assert_eq!(framing, Framing::Length(json.len() as u64));
            assert_eq!(String::from_utf8(ours), String::from_utf8(theirs));
        }
    }
}
