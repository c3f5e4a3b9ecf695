//! A proxy's distinct filters, without the actor: one entry per (account, canonical
//! filter) its clients hold, with the subscriptions that share it.
//!
//! Two savings rest on this table. Upstream, the shards know each distinct filter
//! once, however many of the proxy's clients hold it (centrifuge's
//! `addSubscription`). Downstream, the proxy indexes these filters, not its
//! subscriptions: an event is checked against a filter once, and a match fans out to
//! the filter's members, so a thousand clients with the same filter cost one
//! evaluation per event rather than a thousand.
//!
//! The last member going does not unregister the filter at once but after
//! [`UPSTREAM_GRACE`], so a client that reconnects at once costs the shards no
//! removal and re-registration. The proxy runs the timer; this keeps the members and
//! decides, so the rule is tested without one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::account::AccountIdx;
use crate::clock;
use crate::filter::Filter;

/// How long an upstream filter stays registered after its last local subscription
/// goes, so a client that reconnects at once does not cost two round trips.
pub const UPSTREAM_GRACE: Duration = Duration::from_secs(1);

/// A filter's key: the proxy's own index and the shards' upstream index know the
/// filter by it.
pub type FilterKey = u32;

/// An upstream filter that must reach its shards before a change is complete: the
/// filter's key, its account and the filter.
pub type Registration = (FilterKey, AccountIdx, Arc<Filter>);

struct Upstream {
    /// Its identity, to forget it when it retires.
    canonical: (AccountIdx, String),
    account: AccountIdx,
    filter: Arc<Filter>,
    /// The subscriptions holding it (`slot << 32 | n`), ascending: a session's
    /// subscriptions are adjacent, so a match fans out one session at a time.
    members: Vec<u64>,
    /// Set while no member holds the filter: the end of its grace.
    retiring: Option<Instant>,
}

/// The distinct filters of one proxy (see the module docs).
#[derive(Default)]
pub struct Upstreams {
    by_canonical: HashMap<(AccountIdx, String), FilterKey>,
    held: FxHashMap<FilterKey, Upstream>,
    next_key: FilterKey,
}

impl Upstreams {
    /// Makes subscription `member` a member of `filter` (ending a grace period the
    /// filter was in); returns the filter's key and, when the filter is new to the
    /// proxy, the registration to make. Holding a filter a subscription already
    /// holds changes nothing.
    pub fn hold(
        &mut self,
        account: AccountIdx,
        filter: &Arc<Filter>,
        member: u64,
    ) -> (FilterKey, Option<Registration>) {
        let canonical = (account, filter.canonical_key());
        let mut registration = None;
        let key = match self.by_canonical.get(&canonical) {
            Some(&key) => key,
            None => {
                let key = self.next_key;
                self.next_key = self.next_key.wrapping_add(1);
                registration = Some((key, account, filter.clone()));
                self.by_canonical.insert(canonical.clone(), key);
                self.held.insert(
                    key,
                    Upstream {
                        canonical,
                        account,
                        filter: filter.clone(),
                        members: Vec::new(),
                        retiring: None,
                    },
                );
                key
            }
        };
        let upstream = self.held.get_mut(&key).expect("inserted above");
        upstream.retiring = None;
        if let Err(at) = upstream.members.binary_search(&member) {
            upstream.members.insert(at, member);
        }
        (key, registration)
    }

    /// Removes `member` from filter `key` at `now`. When it was the last, the filter
    /// starts its grace and the end of it is returned: the caller calls
    /// [`Upstreams::retire`] with it then.
    pub fn release(&mut self, key: FilterKey, member: u64, now: Instant) -> Option<Instant> {
        let upstream = self.held.get_mut(&key)?;
        let at = upstream.members.binary_search(&member).ok()?;
        upstream.members.remove(at);
        if !upstream.members.is_empty() {
            return None;
        }
        let end = clock::after(now, UPSTREAM_GRACE);
        upstream.retiring = Some(end);
        Some(end)
    }

    /// The grace that ended at `end` is over: forgets the filter and returns what to
    /// unregister (its account and filter), unless it was held again meanwhile (a
    /// later grace, if it was released again, ends later and retires it then).
    pub fn retire(&mut self, key: FilterKey, end: Instant) -> Option<(AccountIdx, Arc<Filter>)> {
        if self.held.get(&key)?.retiring != Some(end) {
            return None;
        }
        let upstream = self.held.remove(&key)?;
        self.by_canonical.remove(&upstream.canonical);
        Some((upstream.account, upstream.filter))
    }

    /// How many distinct filters the proxy holds (with members or in their grace).
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Every filter held (with members or in its grace), as registrations, for a
    /// shard that joins.
    pub fn registrations(&self) -> impl Iterator<Item = Registration> + '_ {
        self.held
            .iter()
            .map(|(&key, u)| (key, u.account, u.filter.clone()))
    }

    /// The subscriptions holding filter `key`, ascending.
    pub fn members(&self, key: FilterKey) -> &[u64] {
        self.held.get(&key).map_or(&[], |u| &u.members)
    }

    /// The subscriptions holding any of the filters `keys` (an event's matches),
    /// ascending and each once. One filter's list is returned as it is; several are
    /// gathered into `scratch`. A subscription holds one filter, so lists never
    /// overlap.
    pub fn members_of<'a>(&'a self, keys: &[FilterKey], scratch: &'a mut Vec<u64>) -> &'a [u64] {
        if let [key] = keys {
            return self.members(*key);
        }
        scratch.clear();
        for &key in keys {
            scratch.extend_from_slice(self.members(key));
        }
        scratch.sort_unstable();
        scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::ScopeGrant;

    fn filter(types: &str) -> Arc<Filter> {
        Arc::new(Filter::parse(Some(types), &[], None, ScopeGrant::All).unwrap())
    }

    const A: AccountIdx = AccountIdx(0);

    #[test]
    fn clients_with_the_same_filter_share_one_registration() {
        let mut upstreams = Upstreams::default();
        let (key, first) = upstreams.hold(A, &filter("call.*,dial.*"), 1);
        let (same, second) = upstreams.hold(A, &filter("dial.*,call.*"), 2);
        assert_eq!(key, same, "canonical form");
        assert!(first.is_some() && second.is_none());
        let (_, other_account) = upstreams.hold(AccountIdx(1), &filter("call.*,dial.*"), 3);
        let (_, other_filter) = upstreams.hold(A, &filter("call.*"), 4);
        let keys = [first, other_account, other_filter].map(|r| r.unwrap().0);
        assert_eq!(keys, [0, 1, 2], "a new key each");
        assert_eq!(upstreams.members(key), [1, 2]);
        assert_eq!(upstreams.len(), 3);
        let mut all: Vec<FilterKey> = upstreams.registrations().map(|r| r.0).collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2]);
    }

    #[test]
    fn members_stay_ascending_and_a_second_hold_adds_nothing() {
        let mut upstreams = Upstreams::default();
        let f = filter("call.*");
        for member in [5u64 << 32, 1, 3 << 32 | 7, 1, 3 << 32] {
            upstreams.hold(A, &f, member);
        }
        let (key, _) = upstreams.hold(A, &f, 1);
        assert_eq!(upstreams.members(key), [1, 3 << 32, 3 << 32 | 7, 5 << 32]);
    }

    #[test]
    fn the_members_of_several_filters_come_ascending_and_once() {
        let mut upstreams = Upstreams::default();
        let (a, _) = upstreams.hold(A, &filter("call.*"), 2 << 32);
        upstreams.hold(A, &filter("call.*"), 4 << 32);
        let (b, _) = upstreams.hold(A, &filter("dial.*"), 3 << 32);
        upstreams.hold(A, &filter("dial.*"), 2 << 32 | 1);
        let mut scratch = Vec::new();
        assert_eq!(upstreams.members_of(&[a], &mut scratch), [2 << 32, 4 << 32]);
        assert!(scratch.is_empty(), "one filter's list is not copied");
        assert_eq!(
            upstreams.members_of(&[b, a], &mut scratch),
            [2 << 32, 2 << 32 | 1, 3 << 32, 4 << 32]
        );
        assert!(upstreams.members_of(&[], &mut scratch).is_empty());
        assert!(upstreams.members_of(&[99], &mut scratch).is_empty());
    }

    #[test]
    fn the_last_release_retires_only_once_its_grace_ends_unheld() {
        let mut upstreams = Upstreams::default();
        let t0 = Instant::now();
        let (key, registration) = upstreams.hold(A, &filter("call.*"), 1);
        assert_eq!(registration.unwrap().0, key);
        upstreams.hold(A, &filter("call.*"), 2);
        assert_eq!(upstreams.release(key, 1, t0), None, "one holder is left");
        assert_eq!(upstreams.release(key, 1, t0), None, "not a member any more");
        let end = upstreams.release(key, 2, t0).expect("the last release");
        assert_eq!(end, t0 + UPSTREAM_GRACE);
        let (account, retired) = upstreams.retire(key, end).expect("retired");
        assert_eq!(account, A);
        assert_eq!(retired.canonical_key(), filter("call.*").canonical_key());
        assert!(upstreams.retire(key, end).is_none(), "retired once");
        assert!(upstreams.is_empty());
        let (_, again) = upstreams.hold(A, &filter("call.*"), 1);
        assert!(again.is_some(), "a retired filter is registered anew");
    }

    #[test]
    fn a_hold_within_the_grace_keeps_the_registration() {
        let mut upstreams = Upstreams::default();
        let t0 = Instant::now();
        let (key, _) = upstreams.hold(A, &filter("call.*"), 1);
        let first_end = upstreams.release(key, 1, t0).unwrap();
        // A client comes back within the grace: no new registration, and the
        // first grace's timer finds nothing to retire.
        let (same, registration) = upstreams.hold(A, &filter("call.*"), 2);
        assert_eq!(same, key);
        assert!(registration.is_none());
        assert!(upstreams.retire(key, first_end).is_none());
        // It leaves again later: only the second grace retires the filter.
        let t1 = t0 + UPSTREAM_GRACE / 2;
        let second_end = upstreams.release(key, 2, t1).unwrap();
        assert_eq!(second_end, t1 + UPSTREAM_GRACE);
        assert!(upstreams.retire(key, first_end).is_none());
        assert!(upstreams.retire(key, second_end).is_some());
    }
}
