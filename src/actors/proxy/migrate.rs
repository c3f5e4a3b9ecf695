//! The proxy's side of moving sessions between proxies: the four steps of
//! [`super::moving`], each a message, so a move needs no wait in a proxy's context
//! (a proxy restarted in place mid-move carries on with the next message).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::sync::oneshot;

use super::moving::{Held, Watermarks};
use super::{Arrival, Arrived, Cut, Emigrant, EventProxy, Forward, MoveIn, MoveOut, Rehomed};
use crate::actors::session::Rehome;
use crate::actors::shard::Watermark;
use crate::outbox::{MatchedSubs, Outbox};

impl EventProxy {
    /// Pushes events held for a moving session into its outbox and webhooks, in
    /// the order they came, and wakes its writer.
    fn deliver_held(&self, outbox: &Arc<Outbox>, held: Vec<Held>, now: Instant) {
        let mut pushed = 0i64;
        for held in held {
            for (sid, webhook) in held.webhooks {
                webhook.push(held.event.clone(), MatchedSubs::from_iter([sid]));
            }
            if !held.subs.is_empty() {
                let evicted = outbox.push(held.event, held.subs, now);
                pushed += 1 - evicted.total as i64;
                self.metrics.events_dropped.inc_by(evicted.unsent);
            }
        }
        self.metrics.cached_events.add(pushed);
        outbox.wake();
    }
}

/// Step 1, on the old proxy: mark the sessions leaving and send them over.
impl Handler<MoveOut> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: MoveOut, ctx: &mut Self::Context) {
        if msg.to.id == self.id {
            let _ = msg.done.send(0);
            return;
        }
        let mut sessions = Vec::new();
        for slot in self.sessions.movable(msg.max) {
            let subs = self
                .sessions
                .subs_of(slot)
                .map(|(_, sub)| sub.clone())
                .collect();
            let Some(session) = self.sessions.get_mut(slot) else {
                continue;
            };
            session.moving = Some(Box::default());
            sessions.push(Emigrant {
                slot,
                account: session.account,
                client: session.client.clone(),
                addr: session.addr.clone(),
                outbox: session.outbox.clone(),
                replayed: session.replayed.clone(),
                subs,
            });
        }
        if sessions.is_empty() {
            let _ = msg.done.send(0);
            return;
        }
        msg.to.addr.do_send(MoveIn {
            from: ctx.address(),
            from_id: self.id,
            sessions,
            done: msg.done,
        });
    }
}

/// Step 2, on the new proxy: take the sessions in arriving, register their filters,
/// then have every shard say where the cut is.
impl Handler<MoveIn> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: MoveIn, ctx: &mut Self::Context) {
        let mut registrations = Vec::new();
        let mut slots = Vec::with_capacity(msg.sessions.len());
        for emigrant in msg.sessions {
            let Emigrant {
                slot: there,
                account,
                client,
                addr,
                outbox,
                replayed,
                subs,
            } = emigrant;
            let here = self
                .sessions
                .adopt(account, &client, addr, outbox, replayed);
            self.session_count.inc();
            for mut sub in subs {
                let key = self.sessions.next_sub_key(here).expect("adopted just now");
                let (upstream, registration) = self.hold_filter(account, &sub.filter, key);
                registrations.extend(registration);
                sub.upstream = upstream;
                self.sessions.insert_sub(key, sub);
            }
            slots.push((there, here));
        }
        let registered = self.register(registrations, ctx);
        // Queued after the registrations, so each shard answers once it has them:
        // from each shard, the events after its answer reach this proxy.
        let marks: Vec<oneshot::Receiver<(u16, u64)>> = self.distributor.with_map(|map| {
            map.shards
                .iter()
                .map(|shard| {
                    let (ack, acked) = oneshot::channel();
                    shard.addr.do_send(Watermark { ack });
                    acked
                })
                .collect()
        });
        let (me, to_id, from, done) = (ctx.address(), self.id, msg.from, msg.done);
        actix::spawn(async move {
            registered.await;
            let answers = join_all(marks).await.into_iter().filter_map(Result::ok);
            from.do_send(Cut {
                to: me,
                to_id,
                slots,
                watermarks: Watermarks::new(answers),
                done,
            });
        });
    }
}

/// Step 3, on the old proxy: deliver what was held up to the cut, hand the clients
/// to the new proxy and forget them.
impl Handler<Cut> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: Cut, ctx: &mut Self::Context) {
        let now = Instant::now();
        let mut arrivals = Vec::with_capacity(msg.slots.len());
        for (here, there) in msg.slots {
            let Some((session, subs)) = self.sessions.take(here) else {
                continue;
            };
            let mut moving = session.moving.unwrap_or_default();
            self.deliver_held(&session.outbox, moving.take(&msg.watermarks, true), now);
            for (key, sub) in subs {
                self.release_upstream(sub.upstream, key, ctx);
            }
            self.session_count.dec();
            self.settings
                .directory
                .moved(session.account, &session.client, self.id, msg.to_id);
            session.addr.do_send(Rehome {
                proxy: msg.to.clone(),
                slot: there,
                from: ctx.address(),
                from_slot: here,
            });
            self.forwards.insert(
                here,
                Forward {
                    to: msg.to.clone(),
                    slot: there,
                    session: session.addr,
                },
            );
            arrivals.push(Arrival {
                slot: there,
                expired: std::mem::take(&mut moving.expired),
                closed: moving.closed,
            });
        }
        self.metrics.sessions_moved.inc_by(arrivals.len() as u64);
        msg.to.do_send(Arrived {
            sessions: arrivals,
            watermarks: msg.watermarks,
            done: msg.done,
        });
    }
}

/// Step 4, on the new proxy: deliver what was held after the cut; the sessions are
/// live, and what happened to them meanwhile (expiries, an idle end) is applied.
impl Handler<Arrived> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: Arrived, ctx: &mut Self::Context) {
        let now = Instant::now();
        let count = msg.sessions.len();
        for arrival in msg.sessions {
            let Some(session) = self.sessions.get_mut(arrival.slot) else {
                continue;
            };
            let Some(mut moving) = session.moving.take() else {
                continue;
            };
            let outbox = session.outbox.clone();
            moving.merge(arrival.expired, arrival.closed);
            self.deliver_held(&outbox, moving.take(&msg.watermarks, false), now);
            for sid in std::mem::take(&mut moving.expired) {
                self.expire(arrival.slot, &sid, ctx);
            }
            if moving.closed {
                self.close_session(arrival.slot, ctx);
            }
        }
        let _ = msg.done.send(count);
    }
}

/// A moved session's actor writes to its new proxy from now on.
impl Handler<Rehomed> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: Rehomed, _ctx: &mut Self::Context) {
        self.forwards.remove(&msg.slot);
    }
}
