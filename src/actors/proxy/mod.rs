//! `EventProxy`: holds client subscriptions, filters events for them and fans out.
//!
//! The actor is a shell over plain structures, each with its own tests:
//! [`sessions::SessionTable`] (who is here and what each client holds),
//! [`upstreams::Upstreams`] (the distinct filters, their members and their grace),
//! the filter index (account → type trie → call-sid postings → distinct filters),
//! and [`super::replay`] (merging a `cursor=earliest` replay with a client's cache).
//! Many clients with the same filter cost the shards one registration and the proxy
//! one check per event (centrifuge's `addSubscription`).
//! Receives: `Connect` from stream handlers; `Subscribe`, `ListSubscriptions`,
//! `UpdateSubscription`, `Unsubscribe` from the control channel (each answered
//! [`Routed::Elsewhere`] when the client is another proxy's or moving, see
//! [`super::directory`]); `Deliver` from shards; `SessionClosed`, `ExpireSubscription`
//! and `Rehomed` from sessions; `MoveOut`, `MoveIn`, `Cut`, `Arrived` while sessions
//! move between proxies ([`moving`], handled in `migrate.rs`); `DescribeProxy` for
//! the topology ([`messages`]). Sends: `AddUpstream` / `RemoveUpstream` / `Replay`
//! / `Watermark` to the shards a filter concerns, and nothing per event: matched
//! events are pushed into each session's outbox (or webhook queue) and its writer is
//! woken once per batch (NATS `flushClients`).
//! Bounds: outboxes and webhook queues are bounded by retention (count and age);
//! shards bound what they forward here by their own depth (see `shard.rs`).
//! On stop: sessions lose their proxy and their streams end at the next heartbeat.

pub mod messages;
mod migrate;
pub mod moving;
mod requests;
pub mod sessions;
pub mod upstreams;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use prometheus::{IntCounter, IntGauge};
use rustc_hash::FxHashMap;

pub use messages::*;

use super::directory::{ClaimError, Directory};
use super::distributor::Distributor;
use super::placement::Placeable;
use super::restart::Running;
use super::session::{ClientSession, EndSession, TrackExpiry};
use super::shard::{AddUpstream, BrokerShard, RemoveUpstream};
use crate::account::{AccountIdx, Accounts};
use crate::cluster::order::OrderLink;
use crate::config::WebhookConfig;
use crate::filter::{Filter, SubscriptionIndex};
use crate::limits::{QuotaError, Quotas};
use crate::metrics::Metrics;
use crate::outbox::{self, MatchedSubs, Outbox};
use crate::webhook::Webhook;
use moving::{Held, Moving, Taken};
use sessions::{SessionTable, Sub};
use upstreams::{FilterKey, Registration, Upstreams, UPSTREAM_GRACE};

/// What a proxy needs to start webhook deliverers.
#[derive(Clone)]
pub struct WebhookSettings {
    /// Shared HTTP client (connection pools are per client).
    pub client: reqwest::Client,
    /// `[webhook]` settings.
    pub config: WebhookConfig,
    /// Tokens that sign callback bodies.
    pub accounts: Arc<Accounts>,
}

/// Static settings of a proxy.
#[derive(Clone)]
pub struct ProxySettings {
    /// Outbox retention.
    pub limits: outbox::Limits,
    /// How long a named client's session outlives its last connection.
    pub idle_ttl: Duration,
    /// Webhook delivery.
    pub webhooks: WebhookSettings,
    /// `[limits]`: sessions and webhooks are counted per account across proxies,
    /// subscriptions per client here, where the client's subscriptions live.
    pub quotas: Arc<Quotas>,
    /// Which proxy holds which client.
    pub directory: Arc<Directory>,
    /// Cluster mode, or a single node with `data_dir`: outboxes release events in
    /// position order, and a client resuming from a position its outbox here
    /// lacks has its history read back (from the stream, or from the store).
    pub order: Option<OrderLink>,
}

/// Where a moved session's actor's messages go until it writes to its new proxy.
struct Forward {
    to: Addr<EventProxy>,
    slot: u32,
    session: Addr<ClientSession>,
}

/// Why a proxy makes no session for a client.
enum SlotError {
    /// Over a `[limits]` quota.
    Quota(QuotaError),
    /// Another proxy holds the client, or this one is retiring.
    Elsewhere,
}

/// A client as this proxy sees it.
enum Local {
    /// Its live session here.
    Live(u32),
    /// No session here and none elsewhere: this proxy may make one.
    Absent,
    /// Held by another proxy, or moving: ask again.
    Elsewhere,
}

/// What every proxy is made with, so the ones made at start and the ones the proxy
/// supervisor adds later are alike.
#[derive(Clone)]
pub struct ProxyFactory {
    /// The shard map, for registrations.
    pub distributor: Arc<Distributor>,
    /// The server's metrics.
    pub metrics: Metrics,
    /// The proxies' settings.
    pub settings: ProxySettings,
}

impl ProxyFactory {
    /// Proxy `id`, with its sessions gauge (`switchboard_proxy_sessions{index}`)
    /// and depth gauge (`switchboard_mailbox_depth{actor="proxy"}`), which the
    /// directory reads.
    pub fn make(&self, id: ProxyId) -> (EventProxy, IntGauge, IntGauge) {
        let label = id.0.to_string();
        let depth = self
            .metrics
            .mailbox_depth
            .with_label_values(&["proxy", &label]);
        let proxy = EventProxy::new(
            id,
            depth.clone(),
            self.distributor.clone(),
            self.metrics.clone(),
            self.settings.clone(),
        );
        let sessions = proxy.session_count.clone();
        (proxy, sessions, depth)
    }
}

/// One event proxy (see the module docs).
pub struct EventProxy {
    id: ProxyId,
    depth: IntGauge,
    distributor: Arc<Distributor>,
    metrics: Metrics,
    settings: ProxySettings,
    /// The proxy's distinct filters (not its subscriptions): an event is checked
    /// against each candidate filter once, and matches fan out to its members.
    index: SubscriptionIndex<FilterKey>,
    sessions: SessionTable,
    upstreams: Upstreams,
    /// `switchboard_filter_evaluations_total{actor="proxy"}`.
    evaluations: IntCounter,
    /// `switchboard_proxy_sessions{index}` of this proxy.
    session_count: IntGauge,
    matched_filters: Vec<FilterKey>,
    gathered: Vec<u64>,
    touched: Vec<u32>,
    /// Sessions moved away, by their slot here, until their actors write to the
    /// new proxy.
    forwards: FxHashMap<u32, Forward>,
    /// This proxy in `switchboard_proxies`.
    _running: Running,
}

impl EventProxy {
    /// An empty proxy.
    pub fn new(
        id: ProxyId,
        depth: IntGauge,
        distributor: Arc<Distributor>,
        metrics: Metrics,
        settings: ProxySettings,
    ) -> EventProxy {
        EventProxy {
            id,
            depth,
            distributor,
            evaluations: metrics.filter_evaluations.with_label_values(&["proxy"]),
            session_count: metrics
                .proxy_sessions
                .with_label_values(&[&id.0.to_string()]),
            _running: Running::new(metrics.proxies.clone()),
            metrics,
            settings,
            index: SubscriptionIndex::new(),
            sessions: SessionTable::default(),
            upstreams: Upstreams::default(),
            matched_filters: Vec::new(),
            gathered: Vec::new(),
            touched: Vec::new(),
            forwards: FxHashMap::default(),
        }
    }

    /// Where this client stands here (see [`Local`]).
    fn local(&self, account: AccountIdx, client: &Arc<str>) -> Local {
        match self.sessions.find(account, client) {
            Some(slot) if self.sessions.get(slot).is_some_and(|s| s.moving.is_none()) => {
                Local::Live(slot)
            }
            Some(_) => Local::Elsewhere,
            None => match self.settings.directory.owner(account, client) {
                Some(owner) if owner != self.id => Local::Elsewhere,
                _ => Local::Absent,
            },
        }
    }

    fn session_slot(
        &mut self,
        account: AccountIdx,
        client: &Arc<str>,
        ephemeral: bool,
        ctx: &mut Context<Self>,
    ) -> Result<u32, SlotError> {
        match self.local(account, client) {
            Local::Live(slot) => return Ok(slot),
            Local::Elsewhere => return Err(SlotError::Elsewhere),
            Local::Absent => {}
        }
        // Claimed in the handler that makes the session: a second proxy asked
        // about the client at the same time finds the claim and answers Elsewhere.
        match self.settings.directory.claim(account, client, self.id) {
            Ok(()) => {}
            Err(ClaimError::Elsewhere(_) | ClaimError::Retiring) => {
                return Err(SlotError::Elsewhere)
            }
        }
        if let Err(error) = self.settings.quotas.acquire_session(account) {
            self.settings.directory.release(account, client, self.id);
            return Err(SlotError::Quota(error));
        }
        let outbox = match &self.settings.order {
            Some(cluster) => {
                Outbox::in_cluster_order(self.settings.limits, cluster.landed.of(account))
            }
            None => Outbox::new(self.settings.limits),
        };
        let idle_ttl = if ephemeral {
            Duration::ZERO
        } else {
            self.settings.idle_ttl
        };
        let me = ctx.address();
        let slot = self.sessions.insert(account, client, |slot| {
            let addr = ClientSession::new(me, slot, outbox.clone(), idle_ttl).start();
            (addr, outbox)
        });
        self.metrics.sessions.inc();
        self.session_count.inc();
        Ok(slot)
    }

    /// Checks the quotas a new subscription of a client needs and takes a webhook
    /// slot for a callback one; returns the client's session slot (created if new).
    /// Refused, it leaves nothing behind.
    fn admit_subscription(
        &mut self,
        account: AccountIdx,
        client: &Arc<str>,
        webhook: bool,
        ctx: &mut Context<Self>,
    ) -> Result<u32, SlotError> {
        let quotas = self.settings.quotas.clone();
        if let Local::Live(slot) = self.local(account, client) {
            let held = self.sessions.get(slot).map_or(0, |s| s.sub_count());
            quotas
                .check_subscriptions(account, held)
                .map_err(SlotError::Quota)?;
        }
        if webhook {
            quotas.acquire_webhook(account).map_err(SlotError::Quota)?;
        }
        self.session_slot(account, client, false, ctx)
            .inspect_err(|_| {
                if webhook {
                    quotas.release_webhook(account);
                }
            })
    }

    /// Starts subscription `sid`'s webhook. With `data_dir` its deliveries are
    /// kept; `delivered` is set for a webhook restored after a restart, which
    /// waits for what it is owed after that position (see
    /// [`EventProxy::prefill_webhook`]).
    fn start_webhook(
        &self,
        account: AccountIdx,
        sid: &Arc<str>,
        url: &Arc<str>,
        expires: Option<u64>,
        delivered: Option<u64>,
    ) -> Arc<Webhook> {
        let webhooks = &self.settings.webhooks;
        let webhook = Webhook::start(
            webhooks.client.clone(),
            url.clone(),
            webhooks.accounts.get(account).auth_token.clone().into(),
            expires,
            &webhooks.config,
            self.settings.limits.max_events,
            self.metrics.clone(),
        );
        if let Some(link) = &self.settings.order {
            if let Some(log) = link.log() {
                let cursor =
                    log.delivered_cursor(sid, link.landed.of(account), delivered.unwrap_or(0));
                webhook.keep(cursor, delivered.is_some());
            }
        }
        webhook
    }

    /// Adds a subscription under a new key; returns its key and the upstream
    /// registration to make, if this filter is new to the proxy.
    fn add_sub(
        &mut self,
        account: AccountIdx,
        slot: u32,
        new: NewSubscription,
        sid: Option<Arc<str>>,
        delivered: Option<u64>,
    ) -> (u64, Option<Registration>) {
        let key = self
            .sessions
            .next_sub_key(slot)
            .expect("add_sub is called with a live slot");
        let sid = sid.unwrap_or_else(|| format!("SU{}", crate::account::random_hex()).into());
        if let Some(expires) = new.expires {
            self.track_expiry(slot, &sid, expires);
        }
        let webhook = new
            .callback
            .as_ref()
            .map(|url| self.start_webhook(account, &sid, url, new.expires, delivered));
        self.transport_gauge(webhook.is_some()).inc();
        let (upstream, registration) = self.hold_filter(account, &new.filter, key);
        self.sessions.insert_sub(
            key,
            Sub {
                account,
                sid,
                filter: new.filter,
                expires: new.expires,
                callback: new.callback,
                webhook,
                upstream,
            },
        );
        (key, registration)
    }

    /// Tells the session to remove subscription `sid` at `expires`.
    fn track_expiry(&self, slot: u32, sid: &Arc<str>, expires: u64) {
        if let Some(session) = self.sessions.get(slot) {
            session.addr.do_send(TrackExpiry {
                sid: sid.clone(),
                expires,
            });
        }
    }

    fn transport_gauge(&self, webhook: bool) -> IntGauge {
        self.metrics
            .subscriptions
            .with_label_values(&[if webhook { "webhook" } else { "stream" }])
    }

    /// Makes subscription `member` a member of `filter`; a filter new to the proxy
    /// joins its index and is returned as the registration its shards need.
    fn hold_filter(
        &mut self,
        account: AccountIdx,
        filter: &Arc<Filter>,
        member: u64,
    ) -> (FilterKey, Option<Registration>) {
        let (key, registration) = self.upstreams.hold(account, filter, member);
        if registration.is_some() {
            self.index.insert(account.0, key, filter.clone());
            self.metrics.proxy_filters.inc();
        }
        (key, registration)
    }

    /// Takes `member` out of filter `key`; the last one retires the filter after a
    /// grace period.
    fn release_upstream(&mut self, key: FilterKey, member: u64, ctx: &mut Context<Self>) {
        if let Some(end) = self.upstreams.release(key, member, Instant::now()) {
            ctx.run_later(UPSTREAM_GRACE, move |proxy, _ctx| {
                proxy.retire_upstream(key, end);
            });
        }
    }

    fn remove_sub(&mut self, key: u64, ctx: &mut Context<Self>) {
        let Some(sub) = self.sessions.remove_sub(key) else {
            return;
        };
        self.transport_gauge(sub.webhook.is_some()).dec();
        if let Some(webhook) = &sub.webhook {
            webhook.close();
            self.settings.quotas.release_webhook(sub.account);
        }
        self.release_upstream(sub.upstream, key, ctx);
    }

    fn retire_upstream(&mut self, key: FilterKey, end: Instant) {
        let Some((account, filter)) = self.upstreams.retire(key, end) else {
            return;
        };
        self.index.remove(key);
        self.metrics.proxy_filters.dec();
        // Enqueued with the map held, as the registration was: a call-pinned filter
        // is removed where it is, before or after its slot's hand-off.
        self.distributor.with_map(|map| {
            for shard in map.shards_for_filter(account, &filter) {
                // do_send: a removal must not be dropped for a full mailbox, and there
                // is no caller to report a failure to.
                shard.addr.do_send(RemoveUpstream {
                    proxy: self.id,
                    key,
                });
            }
        });
    }

    fn close_session(&mut self, slot: u32, ctx: &mut Context<Self>) {
        let keys: Vec<u64> = self.sessions.subs_of(slot).map(|(key, _)| key).collect();
        for key in keys {
            self.remove_sub(key, ctx);
        }
        if let Some(session) = self.sessions.remove(slot) {
            self.metrics.sessions.dec();
            self.session_count.dec();
            self.settings.quotas.release_session(session.account);
            self.settings
                .directory
                .release(session.account, &session.client, self.id);
            self.metrics.cached_events.sub(session.outbox.len() as i64);
            session.addr.do_send(EndSession);
        }
    }

    /// What session `slot` holds while it moves, if it is moving.
    fn moving(&mut self, slot: u32) -> Option<&mut Moving> {
        self.sessions.get_mut(slot)?.moving.as_deref_mut()
    }

    /// Subscription `sid` of session `slot` reached its expiry: removed if it is
    /// still due (a reconnect or an update may have moved it since the timer was
    /// set), and the session with it once it holds nothing and has no connection.
    fn expire(&mut self, slot: u32, sid: &str, ctx: &mut Context<Self>) {
        if let Some(key) = self.sessions.find_sid(slot, sid) {
            let still_due = self
                .sessions
                .sub(key)
                .and_then(|sub| sub.expires)
                .is_some_and(|expires| expires <= crate::clock::unix_now());
            if still_due {
                self.remove_sub(key, ctx);
            }
        }
        let idle = self
            .sessions
            .get(slot)
            .is_some_and(|s| s.sub_count() == 0 && !s.outbox.is_attached());
        if idle {
            self.close_session(slot, ctx);
        }
    }

    /// A request about session `slot` now waits on the shards (`+1`) or is done
    /// (`-1`): a session with any waiting is not moved.
    fn pending(&mut self, slot: u32, delta: i32) {
        if let Some(session) = self.sessions.get_mut(slot) {
            session.pending = session.pending.saturating_add_signed(delta);
        }
    }

    /// Sends each registration to its shards (see
    /// [`ShardMap::shards_for_filter`](super::distributor::ShardMap::shards_for_filter));
    /// the future resolves when all have them, so a change is only reported once
    /// events for it can arrive.
    fn register(
        &self,
        registrations: Vec<Registration>,
        ctx: &Context<Self>,
    ) -> impl Future<Output = ()> {
        let me = ctx.address();
        // Enqueued with the map held (`do_send` queues at once, whatever the
        // mailbox holds): a filter pinned to a call reaches its slot's owner before
        // that slot's next hand-off, which carries it on.
        let acks: Vec<_> = self.distributor.with_map(|shards| {
            let mut acks = Vec::new();
            for registration in registrations {
                for shard in shards.shards_for_filter(registration.1, &registration.2) {
                    acks.push(self.register_with(&shard.addr, &me, registration.clone()));
                }
            }
            acks
        });
        async move {
            if join_all(acks).await.iter().any(Result::is_err) {
                tracing::warn!("a shard went away during subscribe");
            }
        }
    }

    /// Registers one filter with one shard (queued at once: `do_send`); the
    /// receiver resolves when the shard has it.
    fn register_with(
        &self,
        shard: &Addr<BrokerShard>,
        me: &Addr<Self>,
        (key, account, filter): Registration,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (ack, acked) = tokio::sync::oneshot::channel();
        shard.do_send(AddUpstream {
            ack,
            proxy: self.id,
            addr: me.clone(),
            depth: self.depth.clone(),
            key,
            account: account.0,
            filter,
        });
        acked
    }
}

impl Actor for EventProxy {
    type Context = Context<Self>;
}

/// Restarted in place (see [`super::restart`]): its sessions, filters and queued
/// deliveries are all still here. Timers and waits of its context are not: a
/// filter's grace ends with the restart (it stays registered until its proxy
/// retires), a pending answer is dropped (its caller gets a 503 and retries), so
/// no request is waiting any more. A move under way goes on: its steps are
/// messages, not waits of the context.
impl Supervised for EventProxy {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.sessions.clear_pending();
    }
}

impl Placeable for EventProxy {
    const NAME: &'static str = "proxy";
}

impl Handler<Deliver> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _ctx: &mut Self::Context) {
        self.depth.dec();
        let now = Instant::now();
        let mut pushed = 0i64;
        let mut evaluated = 0;
        let mut filters = std::mem::take(&mut self.matched_filters);
        let mut gathered = std::mem::take(&mut self.gathered);
        let mut taken = Some((msg.taken, msg.ticket));
        let mut shared_taken: Option<Arc<Taken>> = None;
        for stamped in &msg.events {
            let event = &stamped.event;
            filters.clear();
            evaluated += self
                .index
                .matches(event.account.0, &event.fields(), &mut filters);
            // Members are sorted and carry the session slot in their high bits, so
            // each session's matches are adjacent: one push per session, however many
            // of its subscriptions matched.
            let members = self.upstreams.members_of(&filters, &mut gathered);
            for group in members.chunk_by(|a, b| a >> 32 == b >> 32) {
                let slot = (group[0] >> 32) as u32;
                let Some(session) = self.sessions.get(slot) else {
                    continue;
                };
                if session.replayed.covers(msg.shard, stamped.seq) {
                    continue;
                }
                if session.moving.is_some() {
                    let (subs, webhooks) = self.sessions.matched(group);
                    let taken = shared_taken.get_or_insert_with(|| {
                        let (ack, ticket) = taken.take().expect("taken once");
                        Taken::new(ack, ticket)
                    });
                    let held = Held {
                        shard: msg.shard,
                        seq: stamped.seq,
                        event: event.clone(),
                        subs,
                        webhooks,
                        taken: taken.clone(),
                    };
                    // Fields apart: the members borrow the upstreams.
                    let moving = self.sessions.get_mut(slot).and_then(|s| s.moving.as_mut());
                    if let Some(moving) = moving {
                        moving.hold(held);
                    }
                    continue;
                }
                let (subs, webhooks) = self.sessions.matched(group);
                for (sid, webhook) in webhooks {
                    webhook.push(event.clone(), MatchedSubs::from_iter([sid]));
                }
                if !subs.is_empty() {
                    let evicted = session.outbox.push(event.clone(), subs, now);
                    pushed += 1 - evicted.total as i64;
                    self.metrics.events_dropped.inc_by(evicted.unsent);
                    self.touched.push(slot);
                }
            }
        }
        self.matched_filters = filters;
        self.gathered = gathered;
        self.evaluations.inc_by(evaluated as u64);
        self.metrics.cached_events.add(pushed);
        self.touched.sort_unstable();
        self.touched.dedup();
        for slot in self.touched.drain(..) {
            if let Some(session) = self.sessions.get(slot) {
                session.outbox.wake();
            }
        }
        // Told (and the ticket dropped) now, or once the last held event is pushed.
        if let Some((ack, ticket)) = taken {
            let _ = ack.send(());
            drop(ticket);
        }
        drop(shared_taken);
    }
}

impl Handler<AttachShard> for EventProxy {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: AttachShard, ctx: &mut Self::Context) -> Self::Result {
        let me = ctx.address();
        let acks: Vec<_> = self
            .upstreams
            .registrations()
            .filter(|(_, _, filter)| filter.call_sid_eq().is_none())
            .map(|registration| self.register_with(&msg.shard, &me, registration))
            .collect();
        Box::pin(async move {
            if join_all(acks).await.iter().any(Result::is_err) {
                tracing::warn!("a new shard went away while taking registrations");
            }
        })
    }
}

impl Handler<DescribeProxy> for EventProxy {
    type Result = ProxyLoad;

    fn handle(&mut self, _: DescribeProxy, _ctx: &mut Self::Context) -> ProxyLoad {
        // A session actor that ended before it heard of its move writes nothing more.
        self.forwards
            .retain(|_, forward| forward.session.connected());
        ProxyLoad {
            sessions: self.sessions.len(),
            client_subscriptions: self.sessions.sub_count(),
            filters: self.upstreams.len(),
            queue_depth: self.depth.get(),
            forwarding: self.forwards.len(),
        }
    }
}

impl Handler<SessionClosed> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, ctx: &mut Self::Context) {
        if let Some(forward) = self.forwards.get(&msg.slot) {
            forward.to.do_send(SessionClosed { slot: forward.slot });
        } else if let Some(moving) = self.moving(msg.slot) {
            moving.closed = true;
        } else {
            self.close_session(msg.slot, ctx);
        }
    }
}

impl Handler<ExpireSubscription> for EventProxy {
    type Result = ();

    fn handle(&mut self, msg: ExpireSubscription, ctx: &mut Self::Context) {
        if let Some(forward) = self.forwards.get(&msg.slot) {
            forward.to.do_send(ExpireSubscription {
                slot: forward.slot,
                sid: msg.sid,
            });
            return;
        }
        if let Some(moving) = self.moving(msg.slot) {
            moving.expired.push(msg.sid);
            return;
        }
        self.expire(msg.slot, &msg.sid, ctx);
    }
}
