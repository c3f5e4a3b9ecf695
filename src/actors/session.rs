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

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::proxy::{EventProxy, ExpireSubscription, Rehomed, SessionClosed};
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

/// The session moved to another proxy: write to it from now on, and tell the old
/// one so (it passes on what this actor sent it before).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Rehome {
    /// The new proxy.
    pub proxy: Addr<EventProxy>,
    /// The session's slot there.
    pub slot: u32,
    /// The old proxy.
    pub from: Addr<EventProxy>,
    /// The session's slot there.
    pub from_slot: u32,
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
    expiries: Expiries<SpawnHandle>,
}

/// The expiry timers of a client's subscriptions, by subscription sid.
///
/// A list, not a map: a client has a few subscriptions (at most
/// `limits.subscriptions_per_client`), and every idle session holds this, where a
/// hash map's first allocation was several times the size of one entry.
#[derive(Debug)]
struct Expiries<H> {
    entries: Vec<(Arc<str>, u64, H)>,
}

impl<H> Default for Expiries<H> {
    fn default() -> Self {
        Expiries {
            entries: Vec::new(),
        }
    }
}

impl<H> Expiries<H> {
    /// Tracks `sid` until `at` with timer `handle`; returns the timer it replaces.
    fn track(&mut self, sid: Arc<str>, at: u64, handle: H) -> Option<H> {
        let earlier = self.remove(&sid);
        self.entries.push((sid, at, handle));
        earlier
    }

    /// Stops tracking `sid`; returns its timer.
    fn remove(&mut self, sid: &str) -> Option<H> {
        let i = self.entries.iter().position(|(s, ..)| &**s == sid)?;
        Some(self.entries.swap_remove(i).2)
    }

    /// The latest expiry tracked, 0 when none.
    fn latest(&self) -> u64 {
        self.entries.iter().map(|(_, at, _)| *at).max().unwrap_or(0)
    }
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
            expiries: Expiries::default(),
        }
    }

    /// (Re)arms the idle timer: a session with no connection lives for `idle_ttl`, or
    /// until its last subscription expires if that is later; with an `idle_ttl` of
    /// zero it ends as soon as its connection does.
    fn arm_idle(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.idle.take() {
            ctx.cancel_future(handle);
        }
        let latest = self.expiries.latest();
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
        if let Some(earlier) = self.expiries.track(msg.sid, msg.expires, handle) {
            ctx.cancel_future(earlier);
        }
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

impl Handler<Rehome> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: Rehome, _ctx: &mut Self::Context) {
        // Timers read these when they fire, so they reach the new proxy too.
        self.proxy = msg.proxy;
        self.slot = msg.slot;
        // After anything this actor sent the old proxy: it may stop passing on.
        msg.from.do_send(Rehomed {
            slot: msg.from_slot,
        });
    }
}

impl Handler<EndSession> for ClientSession {
    type Result = ();

    fn handle(&mut self, _msg: EndSession, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::Expiries;

    #[test]
    fn expiries_replace_remove_and_report_the_latest() {
        let mut expiries = Expiries::default();
        assert_eq!(expiries.latest(), 0);
        assert_eq!(expiries.track("SUa".into(), 100, 1), None);
        assert_eq!(expiries.track("SUb".into(), 300, 2), None);
        // Tracking a sid again hands back the timer it replaces.
        assert_eq!(expiries.track("SUa".into(), 200, 3), Some(1));
        assert_eq!(expiries.latest(), 300);
        assert_eq!(expiries.remove("SUb"), Some(2));
        assert_eq!(expiries.remove("SUb"), None);
        assert_eq!(expiries.latest(), 200);
        assert_eq!(expiries.remove("SUa"), Some(3));
        assert_eq!(expiries.latest(), 0);
    }
}
