//! `ClientSession`: the lifecycle of one client (account + client id).
//!
//! Owns: the client's timers — when its subscriptions expire and when an idle session
//! (no open connection) ends. The data plane does not pass through this actor: the
//! proxy pushes into the client's `Outbox` and the connection's writer drains it.
//! Receives: `TrackExpiry` from its proxy, `Detached` from the writer when a
//! connection ends, `EndSession` from its proxy. Sends: `ExpireSubscription` and
//! `SessionClosed` to its proxy.
//! Bounds: a handful of timers; the outbox bounds itself.
//! On stop: nothing is left to clean up; the proxy has already dropped the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::proxy::{EventProxy, ExpireSubscription, SessionClosed};
use crate::clock::unix_now;
use crate::outbox::Outbox;

/// Expire a subscription at `expires` (unix seconds); replaces an earlier timer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TrackExpiry {
    /// The subscription.
    pub sid: Arc<str>,
    /// Unix seconds.
    pub expires: u64,
}

/// A connection of this client ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detached {
    /// The connection id from `Outbox::attach`.
    pub conn: u64,
}

/// The proxy dropped this session: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndSession;

/// One client's session actor (see the module docs).
pub struct ClientSession {
    proxy: Addr<EventProxy>,
    slot: u32,
    outbox: Arc<Outbox>,
    idle_ttl: Duration,
    idle: Option<SpawnHandle>,
    expiries: HashMap<Arc<str>, (u64, SpawnHandle)>,
}

impl ClientSession {
    /// A session for the proxy's slot, sharing the proxy's outbox for it.
    pub fn new(
        proxy: Addr<EventProxy>,
        slot: u32,
        outbox: Arc<Outbox>,
        idle_ttl: Duration,
    ) -> Self {
        ClientSession {
            proxy,
            slot,
            outbox,
            idle_ttl,
            idle: None,
            expiries: HashMap::new(),
        }
    }

    /// (Re)arms the idle timer: a session with no connection lives for `idle_ttl`, or
    /// until its last subscription expires if that is later; with an `idle_ttl` of
    /// zero it ends as soon as its connection does.
    fn arm_idle(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.idle.take() {
            ctx.cancel_future(handle);
        }
        let latest = self.expiries.values().map(|(at, _)| *at).max().unwrap_or(0);
        let wait = if self.idle_ttl.is_zero() {
            // An ephemeral session (server-assigned client id) ends with its connection.
            Duration::ZERO
        } else {
            self.idle_ttl
                .max(Duration::from_secs(latest.saturating_sub(unix_now())))
        };
        self.idle = Some(ctx.run_later(wait, |session, ctx| {
            if session.outbox.is_attached() {
                return;
            }
            // do_send: the proxy must hear of every closed session, or it leaks it.
            session.proxy.do_send(SessionClosed { slot: session.slot });
            ctx.stop();
        }));
    }
}

impl Actor for ClientSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A session that is never attached still ends.
        self.arm_idle(ctx);
    }
}

impl Handler<TrackExpiry> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: TrackExpiry, ctx: &mut Self::Context) {
        if let Some((_, handle)) = self.expiries.remove(&msg.sid) {
            ctx.cancel_future(handle);
        }
        let wait = Duration::from_secs(msg.expires.saturating_sub(unix_now()));
        let sid = msg.sid.clone();
        let handle = ctx.run_later(wait, move |session, _ctx| {
            session.expiries.remove(&sid);
            // do_send: an expiry must not be lost, and the proxy is the only one to tell.
            session.proxy.do_send(ExpireSubscription {
                slot: session.slot,
                sid,
            });
        });
        self.expiries.insert(msg.sid, (msg.expires, handle));
    }
}

impl Handler<Detached> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: Detached, ctx: &mut Self::Context) {
        if self.outbox.detach(msg.conn) {
            self.arm_idle(ctx);
        }
    }
}

impl Handler<EndSession> for ClientSession {
    type Result = ();

    fn handle(&mut self, _msg: EndSession, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
