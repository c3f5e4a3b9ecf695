//! A proxy's sessions and their subscriptions, without the actor: who is here, what
//! each holds, and the lookups the control channel and delivery need. The proxy
//! decides quotas, upstream registration and timers; this keeps the table
//! consistent (a subscription is listed by its session exactly while it exists, a
//! client id finds exactly its live session).
//!
//! Keys: a session has a slot (`u32`, never reused while the proxy lives, so a late
//! message for a closed session finds nothing), a subscription the key
//! `slot << 32 | n`, so sorting keys groups them by session.

use std::collections::HashMap;
use std::sync::Arc;

use actix::Addr;
use rustc_hash::FxHashMap;

use super::super::replay::ReplayCoverage;
use super::super::session::ClientSession;
use super::messages::{NewSubscription, SubscriptionView};
use super::moving::Moving;
use super::upstreams::FilterKey;
use crate::account::AccountIdx;
use crate::filter::Filter;
use crate::outbox::{MatchedSubs, Outbox};
use crate::webhook::Webhook;

/// One subscription of a client.
#[derive(Clone)]
pub struct Sub {
    /// The client's account.
    pub account: AccountIdx,
    /// `SU` + 32 hex.
    pub sid: Arc<str>,
    /// What it matches.
    pub filter: Arc<Filter>,
    /// Unix seconds after which it is removed.
    pub expires: Option<u64>,
    /// The webhook URL of a callback subscription.
    pub callback: Option<Arc<str>>,
    /// Its deliverer, for a callback subscription.
    pub webhook: Option<Arc<Webhook>>,
    /// The proxy's distinct filter this subscription is a member of.
    pub upstream: FilterKey,
}

impl Sub {
    /// Whether it is this `new` subscription asked for again (docs/api.md §5: a replayed
    /// create adds nothing).
    fn is(&self, new: &NewSubscription) -> bool {
        *new.filter == *self.filter && new.expires == self.expires && new.callback == self.callback
    }

    fn view(&self) -> SubscriptionView {
        SubscriptionView {
            sid: self.sid.clone(),
            types: (!self.filter.type_patterns().is_empty()).then(|| self.filter.types_text()),
            wheres: self.filter.wheres_text(),
            scopes: self.filter.scopes_text(),
            expires: self.expires,
            callback: self.callback.clone(),
        }
    }
}

/// One client's session.
pub struct SessionEntry {
    /// The client's account.
    pub account: AccountIdx,
    /// The client id.
    pub client: Arc<str>,
    /// Its lifecycle actor.
    pub addr: Addr<ClientSession>,
    /// What its connections drain.
    pub outbox: Arc<Outbox>,
    /// What a `cursor=earliest` replay already gave this client.
    pub replayed: ReplayCoverage,
    /// Set while the session moves to or from another proxy: what it holds
    /// meanwhile (see [`super::moving`]).
    pub moving: Option<Box<Moving>>,
    /// Requests about it waiting on the shards: a session with any is not moved
    /// (their answers are made here).
    pub pending: u32,
    /// Subscription keys, in creation order.
    subs: Vec<u64>,
    next_sub: u32,
}

impl SessionEntry {
    /// How many subscriptions it holds.
    pub fn sub_count(&self) -> usize {
        self.subs.len()
    }
}

/// Webhook subscriptions an event matched, with their sids.
pub type WebhookTargets = Vec<(Arc<str>, Arc<Webhook>)>;

/// The sessions of one proxy (see the module docs).
#[derive(Default)]
pub struct SessionTable {
    sessions: FxHashMap<u32, SessionEntry>,
    by_client: HashMap<(AccountIdx, Arc<str>), u32>,
    subs: FxHashMap<u64, Sub>,
    next_slot: u32,
}

impl SessionTable {
    /// The slot of this client's session, if it has one here.
    pub fn find(&self, account: AccountIdx, client: &Arc<str>) -> Option<u32> {
        self.by_client.get(&(account, client.clone())).copied()
    }

    /// Adds a session for a client that has none; `start` gets the new slot and
    /// returns the session's actor and outbox.
    pub fn insert(
        &mut self,
        account: AccountIdx,
        client: &Arc<str>,
        start: impl FnOnce(u32) -> (Addr<ClientSession>, Arc<Outbox>),
    ) -> u32 {
        self.insert_with(account, client, |slot| {
            let (addr, outbox) = start(slot);
            (addr, outbox, ReplayCoverage::default())
        })
    }

    /// Adds a session that moved here from another proxy, with its actor, outbox
    /// and replay coverage, arriving (see [`super::moving`]); returns its slot here.
    pub fn adopt(
        &mut self,
        account: AccountIdx,
        client: &Arc<str>,
        addr: Addr<ClientSession>,
        outbox: Arc<Outbox>,
        replayed: ReplayCoverage,
    ) -> u32 {
        let slot = self.insert_with(account, client, |_| (addr, outbox, replayed));
        if let Some(session) = self.sessions.get_mut(&slot) {
            session.moving = Some(Box::default());
        }
        slot
    }

    fn insert_with(
        &mut self,
        account: AccountIdx,
        client: &Arc<str>,
        make: impl FnOnce(u32) -> (Addr<ClientSession>, Arc<Outbox>, ReplayCoverage),
    ) -> u32 {
        debug_assert!(self.find(account, client).is_none(), "one session a client");
        let slot = self.next_slot;
        self.next_slot = self.next_slot.wrapping_add(1);
        let (addr, outbox, replayed) = make(slot);
        self.sessions.insert(
            slot,
            SessionEntry {
                account,
                client: client.clone(),
                addr,
                outbox,
                replayed,
                moving: None,
                pending: 0,
                subs: Vec::new(),
                next_sub: 0,
            },
        );
        self.by_client.insert((account, client.clone()), slot);
        slot
    }

    /// Removes a session with its subscriptions (keys and all), as they are: for a
    /// session that moved away, whose subscriptions live on elsewhere.
    pub fn take(&mut self, slot: u32) -> Option<(SessionEntry, Vec<(u64, Sub)>)> {
        let keys = self.sessions.get(&slot)?.subs.clone();
        let subs = keys
            .into_iter()
            .filter_map(|key| self.remove_sub(key).map(|sub| (key, sub)))
            .collect();
        self.remove(slot).map(|session| (session, subs))
    }

    /// Forgets every request waiting (their waits were dropped by a restart).
    pub fn clear_pending(&mut self) {
        for session in self.sessions.values_mut() {
            session.pending = 0;
        }
    }

    /// The slots of live sessions (not moving) with no request waiting, at most
    /// `max`: the ones that can move now.
    pub fn movable(&self, max: usize) -> Vec<u32> {
        let mut slots: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.moving.is_none() && s.pending == 0)
            .map(|(&slot, _)| slot)
            .collect();
        // Oldest first, so a retiring proxy's moves are the same run after run.
        slots.sort_unstable();
        slots.truncate(max);
        slots
    }

    /// Removes a session whose subscriptions are gone (see
    /// [`SessionTable::remove_sub`]); its client id finds nothing any more.
    pub fn remove(&mut self, slot: u32) -> Option<SessionEntry> {
        let session = self.sessions.remove(&slot)?;
        debug_assert!(session.subs.is_empty(), "subscriptions removed first");
        self.by_client
            .remove(&(session.account, session.client.clone()));
        Some(session)
    }

    /// A live session.
    pub fn get(&self, slot: u32) -> Option<&SessionEntry> {
        self.sessions.get(&slot)
    }

    /// A live session, to change.
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut SessionEntry> {
        self.sessions.get_mut(&slot)
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// How many subscriptions all sessions hold.
    pub fn sub_count(&self) -> usize {
        self.subs.len()
    }

    /// The key the next subscription of session `slot` will have (taken by
    /// [`SessionTable::insert_sub`]).
    pub fn next_sub_key(&mut self, slot: u32) -> Option<u64> {
        let session = self.sessions.get_mut(&slot)?;
        let key = (u64::from(slot) << 32) | u64::from(session.next_sub);
        session.next_sub = session.next_sub.wrapping_add(1);
        Some(key)
    }

    /// Adds a subscription under a key from [`SessionTable::next_sub_key`], last in
    /// its session's order.
    pub fn insert_sub(&mut self, key: u64, sub: Sub) {
        let Some(session) = self.sessions.get_mut(&slot_of(key)) else {
            return;
        };
        session.subs.push(key);
        self.subs.insert(key, sub);
    }

    /// Removes a subscription from the table and its session's list.
    pub fn remove_sub(&mut self, key: u64) -> Option<Sub> {
        let sub = self.subs.remove(&key)?;
        if let Some(session) = self.sessions.get_mut(&slot_of(key)) {
            session.subs.retain(|k| *k != key);
        }
        Some(sub)
    }

    /// A subscription.
    pub fn sub(&self, key: u64) -> Option<&Sub> {
        self.subs.get(&key)
    }

    /// A subscription, to change.
    pub fn sub_mut(&mut self, key: u64) -> Option<&mut Sub> {
        self.subs.get_mut(&key)
    }

    /// Session `slot`'s subscriptions with their keys, in creation order.
    pub fn subs_of(&self, slot: u32) -> impl Iterator<Item = (u64, &Sub)> + '_ {
        self.sessions
            .get(&slot)
            .into_iter()
            .flat_map(|session| session.subs.iter())
            .filter_map(|&key| self.subs.get(&key).map(|sub| (key, sub)))
    }

    /// The client's subscription equal to `new`, if there is one.
    pub fn find_twin(&self, slot: u32, new: &NewSubscription) -> Option<u64> {
        self.subs_of(slot)
            .find(|(_, sub)| sub.is(new))
            .map(|(key, _)| key)
    }

    /// The client's subscription with this sid.
    pub fn find_sid(&self, slot: u32, sid: &str) -> Option<u64> {
        self.subs_of(slot)
            .find(|(_, sub)| &*sub.sid == sid)
            .map(|(key, _)| key)
    }

    /// The client's stream (not webhook) subscription with this filter, in
    /// canonical form: the one a stream URL opened again takes over.
    pub fn find_stream_sub(&self, slot: u32, filter: &Filter) -> Option<u64> {
        self.subs_of(slot)
            .find(|(_, sub)| sub.webhook.is_none() && *sub.filter == *filter)
            .map(|(key, _)| key)
    }

    /// The filters of the client's stream subscriptions.
    pub fn stream_filters(&self, slot: u32) -> Vec<Arc<Filter>> {
        self.stream_subs(slot)
            .map(|sub| sub.filter.clone())
            .collect()
    }

    /// The client's stream subscriptions (its webhooks apart).
    pub fn stream_subs(&self, slot: u32) -> impl Iterator<Item = &Sub> {
        self.subs_of(slot)
            .map(|(_, sub)| sub)
            .filter(|sub| sub.webhook.is_none())
    }

    /// A subscription as the client sees it.
    pub fn view(&self, key: u64) -> Option<SubscriptionView> {
        self.subs.get(&key).map(Sub::view)
    }

    /// The client's subscriptions as it sees them, in creation order.
    pub fn views(&self, slot: u32) -> Vec<SubscriptionView> {
        self.subs_of(slot).map(|(_, sub)| sub.view()).collect()
    }

    /// Of the subscriptions `keys` (one session's matches), the stream's sids and
    /// the webhooks to push to.
    pub fn matched(&self, keys: &[u64]) -> (MatchedSubs, WebhookTargets) {
        let mut stream = MatchedSubs::new();
        let mut webhooks = Vec::new();
        for sub in keys.iter().filter_map(|key| self.subs.get(key)) {
            match &sub.webhook {
                Some(webhook) => webhooks.push((sub.sid.clone(), webhook.clone())),
                None => stream.push(sub.sid.clone()),
            }
        }
        (stream, webhooks)
    }
}

/// The session slot a subscription key belongs to.
pub fn slot_of(key: u64) -> u32 {
    (key >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::ScopeGrant;
    use crate::outbox::Limits;
    use std::time::Duration;

    const A: AccountIdx = AccountIdx(0);

    fn filter(types: &str) -> Arc<Filter> {
        Arc::new(Filter::parse(Some(types), &[], None, ScopeGrant::All).unwrap())
    }

    /// A session whose actor never runs: the table only keeps its address.
    fn start(_slot: u32) -> (Addr<ClientSession>, Arc<Outbox>) {
        let (tx, _) = actix::dev::channel::channel::<ClientSession>(1);
        let outbox = Outbox::new(Limits {
            max_events: 10,
            max_age: Duration::from_secs(60),
        });
        (Addr::new(tx), outbox)
    }

    fn sub(sid: &str, types: &str, expires: Option<u64>) -> Sub {
        Sub {
            account: A,
            sid: sid.into(),
            filter: filter(types),
            expires,
            callback: None,
            webhook: None,
            upstream: 0,
        }
    }

    fn add(table: &mut SessionTable, slot: u32, sub: Sub) -> u64 {
        let key = table.next_sub_key(slot).expect("live slot");
        table.insert_sub(key, sub);
        key
    }

    #[test]
    fn a_client_finds_its_own_session_and_slots_are_not_reused() {
        let mut table = SessionTable::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let first = table.insert(A, &a, start);
        let second = table.insert(A, &b, start);
        let other_account = table.insert(AccountIdx(1), &a, start);
        assert_eq!(table.find(A, &a), Some(first));
        assert_eq!(table.find(A, &b), Some(second));
        assert_eq!(table.find(AccountIdx(1), &a), Some(other_account));
        assert_eq!(table.len(), 3);
        assert!(table.remove(first).is_some());
        assert_eq!(table.find(A, &a), None);
        assert!(table.remove(first).is_none());
        let again = table.insert(A, &a, start);
        assert!(
            ![first, second, other_account].contains(&again),
            "a new slot"
        );
    }

    #[test]
    fn subscriptions_are_keyed_by_session_and_listed_in_creation_order() {
        let mut table = SessionTable::default();
        let slot = table.insert(A, &"a".into(), start);
        let other = table.insert(A, &"b".into(), start);
        let k1 = add(&mut table, slot, sub("SU1", "call.*", None));
        let k2 = add(&mut table, slot, sub("SU2", "dial.*", Some(9)));
        let k3 = add(&mut table, other, sub("SU3", "call.*", None));
        assert_eq!([slot_of(k1), slot_of(k2), slot_of(k3)], [slot, slot, other]);
        let sids: Vec<_> = table.views(slot).into_iter().map(|v| v.sid).collect();
        assert_eq!(sids, [Arc::from("SU1"), Arc::from("SU2")]);
        assert_eq!(table.find_sid(slot, "SU2"), Some(k2));
        assert_eq!(table.find_sid(slot, "SU3"), None, "another client's sid");
        assert_eq!(table.get(slot).map(SessionEntry::sub_count), Some(2));
        assert_eq!(table.sub_count(), 3);

        assert!(table.remove_sub(k1).is_some());
        assert!(table.remove_sub(k1).is_none());
        assert_eq!(table.find_sid(slot, "SU1"), None);
        assert_eq!(table.stream_filters(slot).len(), 1);
        assert_eq!(table.next_sub_key(12345), None, "no such session");
    }

    #[test]
    fn a_twin_is_the_same_filter_expiry_and_callback() {
        let mut table = SessionTable::default();
        let slot = table.insert(A, &"a".into(), start);
        let key = add(&mut table, slot, sub("SU1", "call.*,dial.*", Some(9)));
        let asked = |types: &str, expires| NewSubscription {
            filter: filter(types),
            expires,
            callback: None,
        };
        assert_eq!(
            table.find_twin(slot, &asked("dial.*,call.*", Some(9))),
            Some(key)
        );
        assert_eq!(
            table.find_twin(slot, &asked("call.*,dial.*", Some(10))),
            None
        );
        assert_eq!(table.find_twin(slot, &asked("call.*", Some(9))), None);
        assert_eq!(
            table.find_stream_sub(slot, &filter("dial.*,call.*")),
            Some(key),
            "a stream URL takes over the same filter whatever its expiry"
        );
    }

    #[test]
    fn matched_names_the_stream_subscriptions_of_the_keys() {
        let mut table = SessionTable::default();
        let slot = table.insert(A, &"a".into(), start);
        let k1 = add(&mut table, slot, sub("SU1", "call.*", None));
        let k2 = add(&mut table, slot, sub("SU2", "*.end", None));
        let (stream, webhooks) = table.matched(&[k1, k2, k2 + 7]);
        assert_eq!(stream.len(), 2);
        assert!(webhooks.is_empty());
    }

    #[test]
    fn a_session_taken_away_leaves_nothing_and_only_idle_live_ones_move() {
        let mut table = SessionTable::default();
        let a = table.insert(A, &"a".into(), start);
        let b = table.insert(A, &"b".into(), start);
        let k1 = add(&mut table, a, sub("SU1", "call.*", None));
        add(&mut table, a, sub("SU2", "dial.*", None));
        add(&mut table, b, sub("SU3", "call.*", None));
        table.get_mut(b).unwrap().pending = 1;
        assert_eq!(table.movable(10), [a], "b waits on a request");
        let (session, subs) = table.take(a).expect("a session");
        assert_eq!(&*session.client, "a");
        assert_eq!(subs.iter().map(|(k, _)| *k).collect::<Vec<_>>()[0], k1);
        assert_eq!(subs.len(), 2);
        assert_eq!(table.sub_count(), 1);
        assert_eq!(table.find(A, &"a".into()), None);

        let (addr, outbox) = start(0);
        let moved = table.adopt(A, &"a".into(), addr, outbox, ReplayCoverage::default());
        assert!(table.get(moved).unwrap().moving.is_some(), "arriving");
        assert_eq!(table.find(A, &"a".into()), Some(moved));
        assert!(table.movable(10).is_empty(), "one moving, one waiting");
    }
}
