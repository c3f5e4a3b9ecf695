//! A connection on the lane: requests are read here, one `recv` each when they come
//! whole, and served by [`lane::serve`] for as long as they are ones the lane takes
//! ([`classify`]); the first that is not, with every byte read so far, goes to
//! actix-http for the rest of the connection's life.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};

use bytes::BytesMut;
use futures_util::future::Either;
use prometheus::IntCounter;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::head::{classify, Kind, LaneHead, Parsed};
use super::lane::{self, After};
use super::{FIRST_REQUEST_TIMEOUT, KEEP_ALIVE};
use crate::http::AppState;

/// How much is asked of the socket per read while a head is incomplete: most heads,
/// and a one-event publish with its body, come in one read.
const READ_SIZE: usize = 4096;

/// How a connection left the lane.
#[derive(Debug)]
pub enum Left {
    /// It is closed: the client asked, went away, or stayed idle past keep-alive.
    Closed,
    /// It goes to actix-http, with the bytes read from it and not served.
    Handover(BytesMut),
}

/// Serves requests from `io` until one is not the lane's or the connection ends.
/// Also says whether the lane served any; `served_first` counts the connection as the
/// lane's when its first request is served.
///
/// A request gets [`FIRST_REQUEST_TIMEOUT`] in all, from the connection's start for
/// the first and, for the next, from the first wait for more of it after its first
/// bytes came; a request this slow goes to
/// actix-http with what was read of it, and actix-http applies its own limits. A
/// kept-alive connection gets [`KEEP_ALIVE`] for the next request's first byte,
/// then it is closed.
pub async fn drive<S, B>(
    io: &mut TcpStream,
    app: &S,
    state: &AppState,
    served_first: &IntCounter,
) -> (Left, bool)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let mut read = BytesMut::new();
    let mut served = false;
    loop {
        // Boxed: reading a request (its head, deadlines and timer) takes more room than
        // writing a stream, and an open stream would carry that room for its life.
        let head = match Box::pin(next_request(io, &mut read, served)).await {
            Ok(head) => head,
            Err(left) => return (left, served),
        };
        if state.publish_waits() && matches!(head.kind, Kind::Publish(_)) {
            // In cluster mode a publish's answer waits for JetStream, which the
            // lane's synchronous publish cannot: actix-web's route serves it.
            return (Left::Handover(std::mem::take(&mut read)), served);
        }
        if !served {
            served_first.inc();
            served = true;
        }
        let after = start(io, head, &mut read, app, state).await;
        if after.unwrap_or(After::Close) == After::Close {
            return (Left::Closed, served);
        }
    }
}

/// Reads until `read` starts with a whole request the lane takes, and returns its
/// head; `Err` says how the connection leaves the lane instead. `kept_alive`: a
/// request was served before on this connection.
async fn next_request(
    io: &mut TcpStream,
    read: &mut BytesMut,
    kept_alive: bool,
) -> Result<LaneHead, Left> {
    let start = Instant::now();
    let mut idle = kept_alive && read.is_empty();
    // The head's deadline runs from the connection's start, or for a kept-alive one
    // from the first wait after its next request began, so that a request that
    // arrives whole (nearly every one) costs one clock read.
    let mut deadline = (!idle).then_some(start + FIRST_REQUEST_TIMEOUT);
    let mut deadline = || *deadline.get_or_insert_with(|| Instant::now() + FIRST_REQUEST_TIMEOUT);
    let head = loop {
        match classify(read) {
            Parsed::Lane(head) => break head,
            Parsed::Other => return Err(Left::Handover(std::mem::take(read))),
            Parsed::Partial => {}
        }
        let until = if idle { start + KEEP_ALIVE } else { deadline() };
        match read_some(io, read, READ_SIZE, until).await {
            Ok(Some(0)) | Err(_) => return Err(Left::Closed),
            Ok(Some(_)) if idle => idle = false,
            Ok(Some(_)) => {}
            Ok(None) if idle => return Err(Left::Closed),
            Ok(None) => return Err(Left::Handover(std::mem::take(read))),
        }
    };
    while read.len() < head.request_len() {
        let missing = head.request_len() - read.len();
        match read_some(io, read, missing, deadline()).await {
            Ok(Some(0)) | Err(_) => return Err(Left::Closed),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Left::Handover(std::mem::take(read))),
        }
    }
    Ok(head)
}

/// Takes the request `head` heads from `read` and starts serving it. A plain
/// function, so that the connection's future keeps only the writing of the answer:
/// a request head held across that wait (its target and header map among them) was
/// ~200 bytes more for every open stream.
fn start<'a, S, B>(
    io: &'a mut TcpStream,
    head: LaneHead,
    read: &mut BytesMut,
    app: &'a S,
    state: &AppState,
) -> Either<
    impl Future<Output = io::Result<After>> + 'a,
    impl Future<Output = io::Result<After>> + 'a,
>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let request = read.split_to(head.request_len());
    match head.kind {
        Kind::Publish(parts) => Either::Left(lane::publish(
            io, state, &request, head.len, &parts, head.close,
        )),
        Kind::Stream { uri, headers } => {
            drop(request);
            if read.is_empty() {
                // An open stream keeps no buffer.
                *read = BytesMut::new();
            }
            let watch = read.is_empty();
            let peer: Option<SocketAddr> = io.peer_addr().ok();
            Either::Right(lane::serve(
                io,
                (uri, headers),
                peer,
                app,
                head.close,
                watch,
            ))
        }
    }
}

/// Reads what the socket has, up to `want` more bytes: `Ok(Some(0))` when the client
/// closed, `Ok(None)` when nothing came by `until`. The buffer is allocated only
/// once bytes are there to read, so a connection waiting for its first request, or
/// for the next after a stream, holds none.
async fn read_some(
    io: &mut TcpStream,
    read: &mut BytesMut,
    want: usize,
    until: Instant,
) -> io::Result<Option<usize>> {
    let reading = async {
        if read.capacity() == 0 {
            io.readable().await?;
        }
        read.reserve(want);
        io.read_buf(read).await
    };
    match tokio::time::timeout_at(until, reading).await {
        Ok(result) => result.map(Some),
        Err(_) => Ok(None),
    }
}
