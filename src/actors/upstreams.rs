//! A proxy's upstream registrations, without the actor: one per distinct (account,
//! canonical filter) its clients hold, with a local reference count, so many clients
//! with the same filter cost the shards one entry. The last reference going does not
//! unregister at once but after [`UPSTREAM_GRACE`], so a client that reconnects at
//! once costs the shards no removal and re-registration. The proxy runs the timer;
//! this keeps the counts and decides, so the rule is tested without one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::account::AccountIdx;
use crate::clock;
use crate::filter::Filter;

/// How long an upstream filter stays registered after its last local subscription
/// goes, so a client that reconnects at once does not cost two round trips.
pub const UPSTREAM_GRACE: Duration = Duration::from_secs(1);

/// A filter's identity within a proxy: the account and its canonical form.
pub type UpstreamKey = (AccountIdx, String);

/// An upstream filter that must reach every shard before a change is complete: the
/// shards' key for it, its account and the filter.
pub type Registration = (u32, AccountIdx, Arc<Filter>);

struct Upstream {
    /// The key the shards know this filter by.
    key: u32,
    local: usize,
    /// Set while no local subscription holds the filter: the end of its grace.
    retiring: Option<Instant>,
}

/// The upstream filters of one proxy (see the module docs).
#[derive(Default)]
pub struct Upstreams {
    held: HashMap<UpstreamKey, Upstream>,
    next_key: u32,
}

impl Upstreams {
    /// Takes a local reference on `filter`, ending a grace period it was in; returns
    /// its key and, when the filter is new to the proxy, the registration to send.
    pub fn hold(
        &mut self,
        account: AccountIdx,
        filter: &Arc<Filter>,
    ) -> (UpstreamKey, Option<Registration>) {
        let upstream_key = (account, filter.canonical_key());
        let mut registration = None;
        let upstream = self.held.entry(upstream_key.clone()).or_insert_with(|| {
            let key = self.next_key;
            self.next_key = self.next_key.wrapping_add(1);
            registration = Some((key, account, filter.clone()));
            Upstream {
                key,
                local: 0,
                retiring: None,
            }
        });
        upstream.retiring = None;
        upstream.local += 1;
        (upstream_key, registration)
    }

    /// Drops a local reference at `now`. When it was the last, the filter starts its
    /// grace and the end of it is returned: the caller calls [`Upstreams::retire`]
    /// with it then.
    pub fn release(&mut self, key: &UpstreamKey, now: Instant) -> Option<Instant> {
        let upstream = self.held.get_mut(key)?;
        upstream.local -= 1;
        if upstream.local > 0 {
            return None;
        }
        let end = clock::after(now, UPSTREAM_GRACE);
        upstream.retiring = Some(end);
        Some(end)
    }

    /// The grace that ended at `end` is over: forgets the filter and returns the
    /// shards' key to unregister, unless it was held again meanwhile (a later grace,
    /// if it was released again, ends later and retires it then).
    pub fn retire(&mut self, key: &UpstreamKey, end: Instant) -> Option<u32> {
        let upstream = self.held.get(key)?;
        if upstream.retiring != Some(end) {
            return None;
        }
        self.held.remove(key).map(|upstream| upstream.key)
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
        let (key, first) = upstreams.hold(A, &filter("call.*,dial.*"));
        let (same, second) = upstreams.hold(A, &filter("dial.*,call.*"));
        assert_eq!(key, same, "canonical form");
        assert!(first.is_some() && second.is_none());
        let (_, other_account) = upstreams.hold(AccountIdx(1), &filter("call.*,dial.*"));
        let (_, other_filter) = upstreams.hold(A, &filter("call.*"));
        let keys = [first, other_account, other_filter].map(|r| r.unwrap().0);
        assert_eq!(keys, [0, 1, 2], "a new shard key each");
    }

    #[test]
    fn the_last_release_retires_only_once_its_grace_ends_unheld() {
        let mut upstreams = Upstreams::default();
        let t0 = Instant::now();
        let (key, registration) = upstreams.hold(A, &filter("call.*"));
        let shard_key = registration.unwrap().0;
        upstreams.hold(A, &filter("call.*"));
        assert_eq!(upstreams.release(&key, t0), None, "one holder is left");
        let end = upstreams.release(&key, t0).expect("the last release");
        assert_eq!(end, t0 + UPSTREAM_GRACE);
        assert_eq!(upstreams.retire(&key, end), Some(shard_key));
        assert_eq!(upstreams.retire(&key, end), None, "retired once");
        let (_, again) = upstreams.hold(A, &filter("call.*"));
        assert!(again.is_some(), "a retired filter is registered anew");
    }

    #[test]
    fn a_hold_within_the_grace_keeps_the_registration() {
        let mut upstreams = Upstreams::default();
        let t0 = Instant::now();
        let (key, _) = upstreams.hold(A, &filter("call.*"));
        let first_end = upstreams.release(&key, t0).unwrap();
        // A client comes back within the grace: no new registration, and the
        // first grace's timer finds nothing to retire.
        let (_, registration) = upstreams.hold(A, &filter("call.*"));
        assert!(registration.is_none());
        assert_eq!(upstreams.retire(&key, first_end), None);
        // It leaves again later: only the second grace retires the filter.
        let t1 = t0 + UPSTREAM_GRACE / 2;
        let second_end = upstreams.release(&key, t1).unwrap();
        assert_eq!(second_end, t1 + UPSTREAM_GRACE);
        assert_eq!(upstreams.retire(&key, first_end), None);
        assert!(upstreams.retire(&key, second_end).is_some());
    }
}
