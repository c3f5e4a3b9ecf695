//! The front door: every accepted connection comes here first, and its requests
//! decide who drives it.
//!
//! Requests the lane takes ([`head::classify`]: a plain `GET` of the stream route, a
//! `POST` of events with a small `Content-Length` body) are served on the lane
//! ([`connection`]): the same actix-web application answers them, but they are read
//! and their responses written here. An open stream then does not keep actix-http's
//! dispatcher with its two 8 KB buffers for as long as it is open (that was over half
//! of an idle stream's memory), and a publish costs one read and one write with
//! little in between (actix-http's dispatcher, decoder and encoder were over half of
//! a one-event publish's instructions). The first request that is not the lane's
//! hands the connection to actix-http for the rest of its life, with the bytes read
//! of it ([`handover`]), so nothing is lost.

pub mod connection;
pub mod handover;
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
use actix_web::web;
use bytes::BytesMut;
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;

use prometheus::IntCounter;

use crate::http::AppState;
use connection::Left;
use handover::Handover;

/// How long a new connection gets to send its first request head, as actix-http's
/// `client_request_timeout` (actix-web's default); a connection that sends nothing
/// by then is handed to actix-http, which applies its own. The lane gives each
/// request, head and body, as long.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection settings actix-web's `HttpServer` would give actix-http.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The service factory for one worker's connections. `make_app` builds the worker's
/// actix-web application, which both the lane and actix-http then share; the lane
/// publishes with `state` directly.
pub fn factory<M, A, B>(
    make_app: M,
    state: web::Data<AppState>,
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
        let state = state.clone();
        let shutdown = shutdown.clone();
        async move {
            // `AppConfig` carries the host and address for URL generation and
            // `ConnectionInfo`'s fallbacks, neither of which the application uses.
            let app = Rc::new(make_app().new_service(AppConfig::default()).await?);
            let shared = app.clone();
            let http = HttpService::<Handover, _, _>::build()
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(FIRST_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .h1(fn_factory(move || {
                    let app = shared.clone();
                    async move { Ok::<_, ()>(app) }
                }))
                .new_service(())
                .await
                .map_err(|_| ())?;
            let counter = |path: &str| state.metrics.http_connections.with_label_values(&[path]);
            Ok(FrontDoor(Rc::new(Door {
                http,
                app,
                lane: state.config.stream.lane,
                via_lane: counter("lane"),
                via_dispatcher: counter("dispatcher"),
                state,
            })))
        }
    })
}

/// One worker's connection service. Each connection's future holds one reference
/// to what the worker's connections share, not one per part: that future is what
/// every open stream pays for.
pub struct FrontDoor<H, S>(Rc<Door<H, S>>);

/// What one worker's connections share.
struct Door<H, S> {
    http: H,
    app: Rc<S>,
    state: web::Data<AppState>,
    lane: bool,
    /// `switchboard_http_connections_total` by path, looked up once per worker.
    via_lane: IntCounter,
    via_dispatcher: IntCounter,
}

impl<H, S, B> Service<TcpStream> for FrontDoor<H, S>
where
    H: Service<(Handover, Option<SocketAddr>), Response = ()> + 'static,
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = ();
    type Future = LocalBoxFuture<'static, Result<(), ()>>;

    actix_service::always_ready!();

    fn call(&self, mut io: TcpStream) -> Self::Future {
        let door = self.0.clone();
        Box::pin(async move {
            // Responses are written as they come: no Nagle delay behind an
            // unacknowledged segment (nginx's `tcp_nodelay on`).
            let _ = io.set_nodelay(true);
            let (left, served) = if door.lane {
                connection::drive(&mut io, door.app.as_ref(), &door.state, &door.via_lane).await
            } else {
                (Left::Handover(BytesMut::new()), false)
            };
            if !served {
                door.via_dispatcher.inc();
            }
            let Left::Handover(read) = left else {
                return Ok(());
            };
            let peer = io.peer_addr().ok();
            // actix-http logs its own connection errors. Its future is boxed so that a
            // stream on the lane, which never gets here, does not carry its size.
            Box::pin(door.http.call((Handover::new(read, io), peer)))
                .await
                .map_err(|_| ())
        })
    }
}
