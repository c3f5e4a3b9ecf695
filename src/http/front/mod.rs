//! The front door: every accepted connection comes here first, and its first
//! request decides who drives it.
//!
//! A plain `GET` of the stream route (see [`head::classify`]) is served on the stream
//! lane ([`lane`]): the same actix-web application answers it, but the response is
//! written here, so an open stream does not keep actix-http's dispatcher with its
//! two 8 KB buffers for as long as it is open: that was over half of an idle
//! stream's memory. When the response ends, a kept-alive connection is handed to
//! actix-http for the rest of its life. Every other connection goes to actix-http at
//! once. The first request is only peeked, as actix-http itself peeks for HTTP/2's
//! preface, so a connection handed over has lost nothing.

pub mod head;
pub mod lane;
pub mod response;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Request};
use actix_server::GracefulShutdownSignal;
use actix_service::{fn_factory, Service, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, ServiceResponse};
use futures_util::future::LocalBoxFuture;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use prometheus::IntCounter;

use crate::metrics::Metrics;
use head::{classify, MAX_HEAD_BYTES};
use lane::After;

/// How long a new connection gets to send its first request head, as actix-http's
/// `client_request_timeout` (actix-web's default); a connection that sends nothing
/// by then is handed to actix-http, which applies its own.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection settings actix-web's `HttpServer` would give actix-http.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The service factory for one worker's connections. `make_app` builds the worker's
/// actix-web application, which both the lane and actix-http then share.
pub fn factory<M, A, B>(
    make_app: M,
    lane: bool,
    metrics: Metrics,
    shutdown: GracefulShutdownSignal,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
where
    M: Fn() -> A + 'static,
    A: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    A::Service: 'static,
    B: MessageBody + 'static,
{
    let make_app = Rc::new(make_app);
    fn_factory(move || {
        let make_app = make_app.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        async move {
            // `AppConfig` carries the host and address for URL generation and
            // `ConnectionInfo`'s fallbacks, neither of which the application uses.
            let app = Rc::new(make_app().new_service(AppConfig::default()).await?);
            let shared = app.clone();
            let http = HttpService::build()
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(FIRST_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .finish(fn_factory(move || {
                    let app = shared.clone();
                    async move { Ok::<_, ()>(app) }
                }))
                .tcp()
                .new_service(())
                .await?;
            let counter = |path: &str| metrics.http_connections.with_label_values(&[path]);
            Ok(FrontDoor {
                http: Rc::new(http),
                app,
                lane,
                via_lane: counter("lane"),
                via_dispatcher: counter("dispatcher"),
            })
        }
    })
}

/// One worker's connection service.
pub struct FrontDoor<H, S> {
    http: Rc<H>,
    app: Rc<S>,
    lane: bool,
    /// `switchboard_http_connections_total` by path, looked up once per worker.
    via_lane: IntCounter,
    via_dispatcher: IntCounter,
}

impl<H, S, B> Service<TcpStream> for FrontDoor<H, S>
where
    H: Service<TcpStream, Response = ()> + 'static,
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = ();
    type Future = LocalBoxFuture<'static, Result<(), ()>>;

    actix_service::always_ready!();

    fn call(&self, mut io: TcpStream) -> Self::Future {
        let http = self.http.clone();
        let app = self.app.clone();
        let lane = self.lane;
        let via_lane = self.via_lane.clone();
        let via_dispatcher = self.via_dispatcher.clone();
        Box::pin(async move {
            // Events are written as they come: no Nagle delay behind an unacknowledged
            // segment (nginx's `tcp_nodelay on`).
            let _ = io.set_nodelay(true);
            let served = if lane {
                on_lane(&mut io, app.as_ref()).await
            } else {
                None
            };
            if served.is_some() {
                via_lane.inc();
            } else {
                via_dispatcher.inc();
            }
            if served == Some(After::Close) {
                return Ok(());
            }
            // actix-http logs its own connection errors. Its future is boxed so that a
            // stream on the lane, which never gets here, does not carry its size.
            Box::pin(http.call(io)).await.map_err(|_| ())
        })
    }
}

/// Serves the connection's first request on the lane if it qualifies; `None` when it
/// goes to actix-http, with nothing consumed.
async fn on_lane<S, B>(io: &mut TcpStream, app: &S) -> Option<After>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    // Wait for the first bytes before allocating: a connection that sends nothing yet
    // holds no buffer.
    tokio::time::timeout(FIRST_REQUEST_TIMEOUT, io.readable())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let peeked = io.peek(&mut buf).await.ok()?;
    let head = classify(&buf[..peeked])?;
    // The bytes read are the ones just peeked: the head, and nothing after it.
    if io.read_exact(&mut buf[..head.len]).await.is_err() {
        return Some(After::Close);
    }
    drop(buf);
    let peer: Option<SocketAddr> = io.peer_addr().ok();
    Some(
        lane::serve(io, head, peer, app)
            .await
            .unwrap_or(After::Close),
    )
}
