//! The requests a client's stream and control channel make of its proxy: connect
//! (with a `cursor=earliest` replay), subscribe, list, update, unsubscribe. Each is
//! answered [`Routed::Elsewhere`] when the client is another proxy's or its session
//! is moving (see [`super::super::directory`]).
//!
//! The changes answer once every shard concerned has the new filter, so a change is
//! only reported once events for it can arrive. That wait is not atomic
//! (`ResponseActFuture`, not `AtomicResponse`): deliveries go on meanwhile, so a
//! burst of connects or a slow replay never holds up other clients' events (nor,
//! through the shards' queues, publishers). Everything a request changes is changed
//! in its handler, and its answer is made there too, so nothing that runs in between
//! can leave it half-done.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::future::join_all;

use super::super::replay::{self, ShardReplay};
use super::super::shard::{Replay, Replayed};
use super::sessions::Sub;
use super::{
    Connect, Connected, ControlError, EventProxy, ListSubscriptions, Local, ResumeFrom, Routed,
    SlotError, Subscribe, Subscribed, SubscriptionView, Unsubscribe, UpdateSubscription,
};
use crate::cluster::history::{History, Query};
use crate::event::SharedEvent;
use crate::limits::QuotaError;
use crate::outbox::{MatchedSubs, Outbox, Resume, GAP_UNKNOWN};

impl EventProxy {
    /// Merges a `cursor=earliest` replay with the client's cache into its outbox,
    /// unless connection `conn`, which asked for it, has been superseded meanwhile.
    fn apply_replay(&mut self, slot: u32, conn: u64, replies: Vec<Result<Replayed, MailboxError>>) {
        let Some(session) = self.sessions.get(slot) else {
            return;
        };
        // Only this client's stream subscriptions, checked directly: a few filters,
        // against events the shards already matched to them.
        let subs: Vec<&Sub> = self.sessions.stream_subs(slot).collect();
        let mut matched = Vec::with_capacity(replies.len());
        for reply in replies {
            let Ok(reply) = reply else { continue };
            let mut events = Vec::with_capacity(reply.events.len());
            for stamped in reply.events {
                let sids = matched_sids(&subs, &stamped.event);
                if !sids.is_empty() {
                    events.push((stamped.event, sids));
                }
            }
            matched.push(ShardReplay {
                shard: reply.shard,
                watermark: reply.watermark,
                events,
            });
        }
        let rebuilt = session.outbox.rebuild_with(conn, Instant::now(), |cached| {
            let merged = replay::merge(matched, cached);
            (merged.events, (merged.coverage, merged.replayed))
        });
        let Some((grew, (coverage, replayed))) = rebuilt else {
            return;
        };
        self.metrics.cached_events.add(grew);
        self.metrics.replayed_events.inc_by(replayed);
        if let Some(session) = self.sessions.get_mut(slot) {
            session.replayed = coverage;
        }
    }

    /// Cluster mode: merges what the stream held for the client after `after` into
    /// its outbox, unless connection `conn` has been superseded meanwhile. A read
    /// that failed (NATS unreachable) leaves the connection at `after` with a gap
    /// of unknown size: the client is told, never left to believe it has it all.
    fn apply_history(&mut self, slot: u32, conn: u64, after: u64, read: Option<History>) {
        let Some(session) = self.sessions.get(slot) else {
            return;
        };
        let subs: Vec<&Sub> = self.sessions.stream_subs(slot).collect();
        let history = read.unwrap_or(History {
            events: Vec::new(),
            end: after,
            gap: GAP_UNKNOWN,
        });
        let read = history.events.len() as u64;
        let events = history
            .events
            .into_iter()
            .filter_map(|event| {
                let sids = matched_sids(&subs, &event);
                (!sids.is_empty()).then_some((event, sids))
            })
            .collect();
        let merged = session.outbox.merge_history(
            conn,
            after,
            events,
            history.end,
            history.gap,
            Instant::now(),
        );
        if let Some(grew) = merged {
            self.metrics.cached_events.add(grew);
            self.metrics.replayed_events.inc_by(read);
        }
    }

    /// What a new connection of session `slot` needs, as things are now.
    fn connected(&self, slot: u32, conn: u64) -> Connected {
        let session = self.sessions.get(slot).expect("a connected session");
        Connected {
            outbox: session.outbox.clone(),
            session: session.addr.clone(),
            conn,
            position: session.outbox.position(),
            subscriptions: self.sessions.views(slot),
            subscribed: false,
        }
    }
}

/// Which of a client's stream subscriptions `event` matched. The events come
/// matched against the same filters (by a shard, or a read of the stream): with one
/// subscription there is nothing left to tell apart.
fn matched_sids(subs: &[&Sub], event: &SharedEvent) -> MatchedSubs {
    match subs {
        [only] => MatchedSubs::from_iter([only.sid.clone()]),
        _ => {
            let fields = event.fields();
            subs.iter()
                .filter(|sub| sub.filter.matches(&fields))
                .map(|sub| sub.sid.clone())
                .collect()
        }
    }
}

/// With positions (cluster mode, or `data_dir`): after which position a
/// connection must read its history, if at all: from the start of retention for
/// `cursor=earliest`, and after a cursor of this cluster (or store) that the
/// client's outbox here does not cover (it was handed out by another node, or
/// before this outbox existed: before a restart, say). A cursor at 0 was handed
/// out before its node knew where the log stood: there is nothing before it to
/// resume.
fn from_the_log(outbox: &Outbox, resume: ResumeFrom) -> Option<u64> {
    if !outbox.in_positions() {
        return None;
    }
    match resume {
        ResumeFrom::Earliest => Some(0),
        ResumeFrom::Cursor(epoch, position) => {
            (epoch == outbox.epoch() && position != 0 && !outbox.covers(position))
                .then_some(position)
        }
        ResumeFrom::Pending => None,
    }
}

/// A request's answer that comes at once, as an actor future.
fn ready<T: 'static>(value: T) -> ResponseActFuture<EventProxy, T> {
    Box::pin(fut::ready(value))
}

impl Handler<Connect> for EventProxy {
    type Result = ResponseActFuture<Self, Routed<Result<Connected, QuotaError>>>;

    fn handle(&mut self, msg: Connect, ctx: &mut Self::Context) -> Self::Result {
        let slot = match self.session_slot(msg.account, &msg.client, msg.ephemeral, ctx) {
            Ok(slot) => slot,
            Err(SlotError::Quota(error)) => return ready(Routed::Here(Err(error))),
            Err(SlotError::Elsewhere) => return ready(Routed::Elsewhere),
        };
        let has_stream_subs = self
            .sessions
            .subs_of(slot)
            .any(|(_, sub)| sub.webhook.is_none());
        // A URL without filters attaches to the client's subscriptions. When one of
        // them is the default subscription an earlier filterless URL made, this URL
        // renews it, as a URL with filters renews its own below: otherwise it would
        // end at the first URL's expiry while the client is connected on a valid one.
        let wanted = msg.subscription.or_else(|| {
            let renews_default = self
                .sessions
                .find_stream_sub(slot, &msg.default.filter)
                .is_some();
            (!has_stream_subs || renews_default).then_some(msg.default)
        });
        let mut registrations = Vec::new();
        let mut subscribed = false;
        if let Some(new) = wanted {
            match self.sessions.find_stream_sub(slot, &new.filter) {
                // The same URL again (a reconnect): keep the subscription, take the
                // newer expiry.
                Some(key) => {
                    let sub = self.sessions.sub_mut(key).expect("found above");
                    sub.expires = new.expires;
                    let sid = sub.sid.clone();
                    if let Some(expires) = new.expires {
                        self.track_expiry(slot, &sid, expires);
                    }
                }
                None => {
                    // A new session has no subscriptions, so only an existing one can
                    // be refused here: nothing is left half-made.
                    let held = self.sessions.get(slot).map_or(0, |s| s.sub_count());
                    if let Err(error) = self.settings.quotas.check_subscriptions(msg.account, held)
                    {
                        return ready(Routed::Here(Err(error)));
                    }
                    subscribed = true;
                    registrations.extend(self.add_sub(msg.account, slot, new, None, None).1)
                }
            }
        }
        let outbox = self.sessions.get(slot).expect("made above").outbox.clone();
        let history = self
            .settings
            .order
            .clone()
            .and_then(|link| from_the_log(&outbox, msg.resume).map(|after| (link, after)));
        // Attach before anything waits, so the session never looks idle meanwhile.
        let resume = match msg.resume {
            _ if history.is_some() => Resume::Pending, // positioned by the read
            ResumeFrom::Pending | ResumeFrom::Earliest => Resume::Pending,
            ResumeFrom::Cursor(epoch, seq) if epoch == outbox.epoch() => Resume::After(seq),
            ResumeFrom::Cursor(..) => Resume::Unknown,
        };
        let (conn, _) = outbox.attach(resume);
        if matches!(msg.resume, ResumeFrom::Cursor(..)) {
            self.metrics.replays.with_label_values(&["cursor"]).inc();
        }
        let connected = Connected {
            subscribed,
            ..self.connected(slot, conn)
        };
        let registered = self.register(registrations, ctx);
        self.pending(slot, 1);
        if let Some((link, after)) = history {
            // With positions: once the filters are registered everywhere, what the
            // outbox lacks is read back from the stream or the store, up to a
            // position the live deliveries meanwhile reach; the merge keeps each
            // position once.
            self.metrics
                .replays
                .with_label_values(&[link.history_label()])
                .inc();
            let query = Query {
                account: msg.account,
                after,
                filters: self.sessions.stream_filters(slot),
                limit: self.settings.limits.max_events,
            };
            return Box::pin(
                async move {
                    registered.await;
                    link.history(query).await
                }
                .into_actor(self)
                .map(move |read, proxy, _| {
                    proxy.apply_history(slot, conn, after, read);
                    proxy.pending(slot, -1);
                    let position = connected.outbox.position();
                    Routed::Here(Ok(Connected {
                        position,
                        ..connected
                    }))
                }),
            );
        }
        if msg.resume != ResumeFrom::Earliest {
            return Box::pin(registered.into_actor(self).map(move |(), proxy, _| {
                proxy.pending(slot, -1);
                Routed::Here(Ok(connected))
            }));
        }
        // `cursor=earliest`: once the filters are registered everywhere, ask every
        // shard for what it retains. Deliveries meanwhile are pushed into the
        // client's outbox, which nobody drains until this answers (the connection
        // starts writing then); the merge keeps each event once, and later
        // deliveries the replay already covered are skipped by the shards'
        // watermarks.
        self.metrics.replays.with_label_values(&["earliest"]).inc();
        let filters = self.sessions.stream_filters(slot);
        let shards = self.distributor.current();
        let replays: Vec<_> = shards
            .shards
            .iter()
            .map(|shard| {
                shard.addr.send(Replay {
                    account: msg.account,
                    filters: filters.clone(),
                })
            })
            .collect();
        Box::pin(
            async move {
                registered.await;
                join_all(replays).await
            }
            .into_actor(self)
            .map(move |replies, proxy, _| {
                proxy.apply_replay(slot, conn, replies);
                proxy.pending(slot, -1);
                // The replay renumbered the outbox: the connection starts at its
                // beginning.
                let position = connected.outbox.position();
                Routed::Here(Ok(Connected {
                    position,
                    ..connected
                }))
            }),
        )
    }
}

impl Handler<Subscribe> for EventProxy {
    type Result = ResponseActFuture<Self, Routed<Result<Subscribed, QuotaError>>>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) -> Self::Result {
        // Looked up and added in one handler, so concurrent replays of one create
        // cannot both miss the other and add twins; and looked up before any quota,
        // so a replay at the quota answers the existing subscription, not 429.
        let twin = match self.local(msg.account, &msg.client) {
            Local::Live(slot) => self.sessions.find_twin(slot, &msg.subscription),
            Local::Absent => None,
            Local::Elsewhere => return ready(Routed::Elsewhere),
        };
        if let Some(key) = twin {
            let view = self.sessions.view(key).expect("found above");
            return ready(Routed::Here(Ok(Subscribed {
                view,
                created: false,
            })));
        }
        let webhook = msg.subscription.callback.is_some();
        let slot = match self.admit_subscription(msg.account, &msg.client, webhook, ctx) {
            Ok(slot) => slot,
            Err(SlotError::Quota(error)) => return ready(Routed::Here(Err(error))),
            Err(SlotError::Elsewhere) => return ready(Routed::Elsewhere),
        };
        let filter = msg.subscription.filter.clone();
        let (key, registration) =
            self.add_sub(msg.account, slot, msg.subscription, msg.sid, msg.delivered);
        let subscribed = Subscribed {
            view: self.sessions.view(key).expect("just added"),
            created: true,
        };
        let registered = self.register(registration.into_iter().collect(), ctx);
        self.pending(slot, 1);
        // A webhook restored after a restart: once its filter is registered, what
        // the event log holds after its cursor is read back and queued first.
        let owed = msg
            .delivered
            .filter(|_| webhook)
            .zip(self.settings.order.clone())
            .map(|(after, link)| {
                let query = Query {
                    account: msg.account,
                    after,
                    filters: vec![filter],
                    limit: self.settings.limits.max_events,
                };
                (link, query)
            });
        Box::pin(
            async move {
                registered.await;
                match owed {
                    Some((link, query)) => Some(link.history(query).await),
                    None => None,
                }
            }
            .into_actor(self)
            .map(move |owed, proxy, _| {
                if let Some(owed) = owed {
                    proxy.prefill_webhook(key, owed);
                }
                proxy.pending(slot, -1);
                Routed::Here(Ok(subscribed))
            }),
        )
    }
}

impl EventProxy {
    /// Queues what a restored webhook is owed (`None`: the log could not be read,
    /// logged), then lets it deliver.
    fn prefill_webhook(&self, key: u64, owed: Option<History>) {
        let Some(sub) = self.sessions.sub(key) else {
            return;
        };
        let Some(webhook) = &sub.webhook else {
            return;
        };
        let events = match owed {
            Some(history) => history.events,
            None => {
                tracing::warn!(sid = %sub.sid, "what a webhook was owed could not be read back; it delivers from now on");
                Vec::new()
            }
        };
        webhook.prefill(events, sub.sid.clone());
    }
}

impl Handler<ListSubscriptions> for EventProxy {
    type Result = MessageResult<ListSubscriptions>;

    fn handle(&mut self, msg: ListSubscriptions, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(match self.local(msg.account, &msg.client) {
            Local::Live(slot) => Routed::Here(Ok(self.sessions.views(slot))),
            Local::Absent => Routed::Here(Err(ControlError::UnknownClient)),
            Local::Elsewhere => Routed::Elsewhere,
        })
    }
}

impl Handler<UpdateSubscription> for EventProxy {
    type Result = ResponseActFuture<Self, Routed<Result<SubscriptionView, ControlError>>>;

    fn handle(&mut self, msg: UpdateSubscription, ctx: &mut Self::Context) -> Self::Result {
        let slot = match self.local(msg.account, &msg.client) {
            Local::Live(slot) => slot,
            Local::Absent => return ready(Routed::Here(Err(ControlError::UnknownClient))),
            Local::Elsewhere => return ready(Routed::Elsewhere),
        };
        match self.update(slot, msg, ctx) {
            Ok((view, registered)) => {
                self.pending(slot, 1);
                Box::pin(registered.into_actor(self).map(move |(), proxy, _| {
                    proxy.pending(slot, -1);
                    Routed::Here(Ok(view))
                }))
            }
            Err(error) => ready(Routed::Here(Err(error))),
        }
    }
}

impl EventProxy {
    /// Changes one subscription of session `slot` as `msg` asks, checked before
    /// anything changes; returns its new view and the wait for its registrations.
    fn update(
        &mut self,
        slot: u32,
        msg: UpdateSubscription,
        ctx: &mut Context<Self>,
    ) -> Result<(SubscriptionView, impl Future<Output = ()>), ControlError> {
        let key = self
            .sessions
            .find_sid(slot, &msg.sid)
            .ok_or(ControlError::UnknownSubscription)?;
        // The new filter is made from the current one here, in the message that
        // changes it, and checked before anything changes.
        let filter = msg.change.filter.as_ref().map(|edit| {
            let current = &self.sessions.sub(key).expect("found above").filter;
            let filter = edit.apply(current)?;
            self.settings.quotas.check_filter(msg.account, &filter)?;
            Ok::<_, ControlError>(Arc::new(filter))
        });
        let filter = filter.transpose()?;
        // A stream subscription becoming a webhook takes a webhook slot, before
        // anything changes.
        let becomes_webhook = matches!(msg.change.callback, Some(Some(_)))
            && self
                .sessions
                .sub(key)
                .is_some_and(|sub| sub.webhook.is_none());
        if becomes_webhook {
            self.settings.quotas.acquire_webhook(msg.account)?;
        }
        let mut registrations = Vec::new();
        let change = msg.change;
        if let Some(filter) = filter {
            let (upstream, registration) = self.hold_filter(msg.account, &filter, key);
            registrations.extend(registration);
            let sub = self.sessions.sub_mut(key).expect("found above");
            sub.filter = filter;
            let old = std::mem::replace(&mut sub.upstream, upstream);
            // The same filter in another spelling: still a member, nothing to drop.
            if old != upstream {
                self.release_upstream(old, key, ctx);
            }
        }
        let sub = self.sessions.sub_mut(key).expect("found above");
        if let Some(expires) = change.expires {
            sub.expires = expires;
            if let Some(webhook) = &sub.webhook {
                webhook.set_expires(expires);
            }
            if let Some(expires) = expires {
                let sid = sub.sid.clone();
                self.track_expiry(slot, &sid, expires);
            }
        }
        let sub = self.sessions.sub_mut(key).expect("found above");
        if let Some(callback) = change.callback {
            let (expires, was_webhook) = (sub.expires, sub.webhook.is_some());
            if let Some(old) = sub.webhook.take() {
                old.close();
            }
            sub.callback = callback.clone();
            let sid = sub.sid.clone();
            let webhook =
                callback.map(|url| self.start_webhook(msg.account, &sid, &url, expires, None));
            if was_webhook && webhook.is_none() {
                self.settings.quotas.release_webhook(msg.account);
            }
            self.transport_gauge(was_webhook).dec();
            self.transport_gauge(webhook.is_some()).inc();
            self.sessions.sub_mut(key).expect("found above").webhook = webhook;
        }
        let view = self.sessions.view(key).expect("found above");
        Ok((view, self.register(registrations, ctx)))
    }
}

impl Handler<Unsubscribe> for EventProxy {
    type Result = MessageResult<Unsubscribe>;

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(match self.local(msg.account, &msg.client) {
            Local::Live(slot) => Routed::Here(match self.sessions.find_sid(slot, &msg.sid) {
                Some(key) => {
                    self.remove_sub(key, ctx);
                    Ok(())
                }
                None => Err(ControlError::UnknownSubscription),
            }),
            Local::Absent => Routed::Here(Err(ControlError::UnknownClient)),
            Local::Elsewhere => Routed::Elsewhere,
        })
    }
}
