//! The proxy's client index (GUIDE point 5): which subscriptions does an event match?
//!
//! Shape: `account (u32) → TypeTrie → posting { by_call_sid, residual }`.
//!
//! - The account is looked up first, so no event ever reaches another account's
//!   subscriptions, whatever their filters say.
//! - The [trie](super::TypeTrie) narrows by type in time proportional to the type's
//!   segments. A filter without `types` sits under [`TypePattern::any`].
//! - At each pattern end, a subscription with a `call_sid=X` clause is posted under
//!   `by_call_sid[X]`: an event of another call never looks at it, which matters
//!   because per-call subscriptions (a browser watching one call) are the common
//!   case. The rest go to `residual`, whose `where` clauses are checked after the hit.
//!
//! In front sits a small cache, as NATS' sublist has (`genid`, `slCacheMax`):
//! `(account, type) → Arc<[K]>`, the sorted, deduplicated residual candidates for
//! that type (call-pinned candidates are always read from the trie, since they
//! depend on the call as well). Every insert and remove bumps a generation
//! counter, and the cache empties itself when it sees a newer generation, so it can
//! never serve a stale candidate list. It is capped and cleared wholesale when full,
//! which is cheap and keeps memory bounded against a flood of distinct types.
//!
//! `matches` takes `&self` so readers need no exclusive access to the index; the
//! cache is therefore behind a `parking_lot::Mutex`, held only for the lookup and
//! the insertion, never while walking the trie.

use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use smallvec::SmallVec;

use super::trie::{Slot, Trie, ValueSet};
use super::{EventFields, Filter, TypePattern};

/// Default cap on cached `(account, type)` candidate lists: NATS' `slCacheMax`.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// What the index stores at a pattern end for one subscription.
#[derive(Debug)]
struct PostingItem<K> {
    /// The subscription.
    key: K,
    /// Its `call_sid=` value, if it has one.
    call_sid: Option<Box<str>>,
}

/// Subscriptions whose pattern ends at one trie slot, split by call.
#[derive(Debug)]
struct Posting<K> {
    /// Subscriptions pinned to one call by `call_sid=`; consulted only for events of
    /// that call.
    by_call_sid: HashMap<Box<str>, SmallVec<[K; 4]>>,
    /// Subscriptions with no `call_sid=` clause; each is checked against every event
    /// of a matching type.
    residual: ValueSet<K>,
}

impl<K> Default for Posting<K> {
    fn default() -> Self {
        Posting {
            by_call_sid: HashMap::new(),
            residual: ValueSet::default(),
        }
    }
}

impl<K: Copy + Eq + Hash> Slot for Posting<K> {
    type Item = PostingItem<K>;

    fn insert(&mut self, item: PostingItem<K>) -> bool {
        match item.call_sid {
            Some(sid) => {
                let keys = self.by_call_sid.entry(sid).or_default();
                if keys.contains(&item.key) {
                    false
                } else {
                    keys.push(item.key);
                    true
                }
            }
            None => self.residual.insert(item.key),
        }
    }

    fn remove(&mut self, item: &PostingItem<K>) -> bool {
        match &item.call_sid {
            Some(sid) => {
                let Some(keys) = self.by_call_sid.get_mut(&**sid) else {
                    return false;
                };
                let Some(at) = keys.iter().position(|k| *k == item.key) else {
                    return false;
                };
                keys.swap_remove(at);
                if keys.is_empty() {
                    self.by_call_sid.remove(&**sid);
                }
                true
            }
            None => self.residual.remove(&item.key),
        }
    }

    fn is_empty(&self) -> bool {
        self.by_call_sid.is_empty() && self.residual.is_empty()
    }
}

/// One account's subscriptions.
#[derive(Debug)]
struct AccountIndex<K> {
    /// Type trie with per-slot postings.
    trie: Trie<Posting<K>>,
    /// How many subscriptions are pinned to a call; when none, matching skips the
    /// second trie walk for call-pinned postings.
    call_sid_posted: usize,
}

impl<K> Default for AccountIndex<K> {
    fn default() -> Self {
        AccountIndex {
            trie: Trie::default(),
            call_sid_posted: 0,
        }
    }
}

/// What the index remembers per subscription, to remove it and to check `where`s.
#[derive(Debug)]
struct Entry {
    /// The account it was inserted under.
    account: u32,
    /// Its filter.
    filter: Arc<Filter>,
}

/// Cached residual candidates, valid for one generation of the index.
#[derive(Debug)]
struct MatchCache<K> {
    /// Generation the cached lists were computed at.
    generation: u64,
    /// Number of cached lists, compared with the cap.
    entries: usize,
    /// Lookups answered from the cache.
    hits: u64,
    /// Lookups that walked the trie.
    misses: u64,
    /// `account → type → candidates` (nested so lookups borrow `&str`).
    lists: FxHashMap<u32, HashMap<Box<str>, Arc<[K]>>>,
}

impl<K> MatchCache<K> {
    /// Drops every cached list if the index has changed since they were computed.
    fn sync(&mut self, generation: u64) {
        if self.generation != generation {
            self.clear();
            self.generation = generation;
        }
    }

    /// Drops every cached list.
    fn clear(&mut self) {
        self.lists.clear();
        self.entries = 0;
    }
}

/// Counters of the candidate cache, for the proxy's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Candidate lists currently cached.
    pub entries: usize,
    /// Lookups answered from the cache since the index was created.
    pub hits: u64,
    /// Lookups that had to walk the trie.
    pub misses: u64,
}

/// The client index of one proxy: every local subscription, keyed by `K` (a
/// subscription id), findable from an event in time that follows the event's type
/// and call, not the number of subscriptions.
#[derive(Debug)]
pub struct SubscriptionIndex<K> {
    /// Per-account tries; an account is dropped when its last subscription goes.
    accounts: FxHashMap<u32, AccountIndex<K>>,
    /// Every subscription's account and filter.
    entries: FxHashMap<K, Entry>,
    /// Bumped on every insert and remove; the cache compares it.
    generation: u64,
    /// `(account, type) → residual candidates`.
    cache: Mutex<MatchCache<K>>,
    /// Most cached lists before the cache is cleared; 0 disables it.
    cache_capacity: usize,
}

impl<K: Copy + Eq + Hash + Ord> Default for SubscriptionIndex<K> {
    fn default() -> Self {
        SubscriptionIndex::new()
    }
}

impl<K: Copy + Eq + Hash + Ord> SubscriptionIndex<K> {
    /// An empty index with a cache of [`DEFAULT_CACHE_CAPACITY`] lists.
    pub fn new() -> SubscriptionIndex<K> {
        SubscriptionIndex::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// An empty index caching at most `capacity` candidate lists (0: no cache, which
    /// benchmarks use to measure the trie alone).
    pub fn with_cache_capacity(capacity: usize) -> SubscriptionIndex<K> {
        SubscriptionIndex {
            accounts: FxHashMap::default(),
            entries: FxHashMap::default(),
            generation: 0,
            cache: Mutex::new(MatchCache {
                generation: 0,
                entries: 0,
                hits: 0,
                misses: 0,
                lists: FxHashMap::default(),
            }),
            cache_capacity: capacity,
        }
    }

    /// Adds subscription `key` of `account` with `filter`, replacing (and returning)
    /// any filter `key` had before, even under another account.
    pub fn insert(&mut self, account: u32, key: K, filter: Arc<Filter>) -> Option<Arc<Filter>> {
        let previous = self.remove(key);
        let call_sid: Option<Box<str>> = filter.call_sid_eq().map(Box::from);
        let acct = self.accounts.entry(account).or_default();
        for_each_pattern(&filter, |pattern| {
            acct.trie.insert(
                pattern,
                PostingItem {
                    key,
                    call_sid: call_sid.clone(),
                },
            );
        });
        if call_sid.is_some() {
            acct.call_sid_posted += 1;
        }
        self.entries.insert(key, Entry { account, filter });
        self.generation = self.generation.wrapping_add(1);
        previous
    }

    /// Removes subscription `key`, returning its filter, or `None` if it was not
    /// indexed. Emptied trie nodes and accounts are pruned.
    pub fn remove(&mut self, key: K) -> Option<Arc<Filter>> {
        let entry = self.entries.remove(&key)?;
        if let Some(acct) = self.accounts.get_mut(&entry.account) {
            let call_sid: Option<Box<str>> = entry.filter.call_sid_eq().map(Box::from);
            if call_sid.is_some() {
                acct.call_sid_posted = acct.call_sid_posted.saturating_sub(1);
            }
            let item = PostingItem { key, call_sid };
            for_each_pattern(&entry.filter, |pattern| {
                acct.trie.remove(pattern, &item);
            });
            if acct.trie.is_empty() {
                self.accounts.remove(&entry.account);
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Some(entry.filter)
    }

    /// Removes every subscription that `pick` chooses by its key and filter, returning
    /// each with its key and account (in key order), for a shard handing them to
    /// another or dropping a retired proxy's.
    pub fn take_where(&mut self, pick: impl Fn(K, &Filter) -> bool) -> Vec<(K, u32, Arc<Filter>)> {
        let mut keys: Vec<K> = self
            .entries
            .iter()
            .filter(|(key, entry)| pick(**key, &entry.filter))
            .map(|(key, _)| *key)
            .collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|key| {
                let account = self.entries.get(&key)?.account;
                self.remove(key).map(|filter| (key, account, filter))
            })
            .collect()
    }

    /// Appends to `out` every subscription of `account` whose filter matches `ev`,
    /// each once (however many of its type patterns match), in ascending `K` order.
    /// What was already in `out` is left alone. Returns how many filters it checked
    /// (the candidates its type and call left): what matching this event cost.
    pub fn matches(&self, account: u32, ev: &EventFields<'_>, out: &mut Vec<K>) -> usize {
        let Some(acct) = self.accounts.get(&account) else {
            return 0;
        };
        let residual = self.residual_candidates(account, acct, ev.type_name);

        let mut pinned: SmallVec<[K; 16]> = SmallVec::new();
        if acct.call_sid_posted > 0 {
            if let Some(sid) = ev.call_sid {
                acct.trie.for_each_slot(ev.type_name, |posting| {
                    if let Some(keys) = posting.by_call_sid.get(sid) {
                        pinned.extend_from_slice(keys);
                    }
                });
                pinned.sort_unstable();
                pinned.dedup();
            }
        }

        // Both lists are sorted and (by construction) disjoint: merge them so the
        // output is ascending without sorting it.
        let mut evaluated = 0;
        let mut passes = |k: &K| {
            evaluated += 1;
            self.entries
                .get(k)
                .is_some_and(|e| e.filter.matches_after_type(ev))
        };
        let mut a = residual.iter().peekable();
        let mut b = pinned.iter().peekable();
        let mut last: Option<K> = None;
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x <= y {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some(&k) = next {
                if last != Some(k) && passes(&k) {
                    out.push(k);
                    last = Some(k);
                }
            }
        }
        evaluated
    }

    /// Sorted, deduplicated residual candidates of `(account, type_name)`, from the
    /// cache or the trie.
    fn residual_candidates(
        &self,
        account: u32,
        acct: &AccountIndex<K>,
        type_name: &str,
    ) -> Arc<[K]> {
        if self.cache_capacity > 0 {
            let mut cache = self.cache.lock();
            cache.sync(self.generation);
            let hit = cache
                .lists
                .get(&account)
                .and_then(|types| types.get(type_name))
                .map(Arc::clone);
            if let Some(hit) = hit {
                cache.hits += 1;
                return hit;
            }
            cache.misses += 1;
        }
        let mut keys: Vec<K> = Vec::new();
        acct.trie.for_each_slot(type_name, |posting| {
            keys.extend(posting.residual.iter().copied());
        });
        keys.sort_unstable();
        keys.dedup();
        let keys: Arc<[K]> = keys.into();
        if self.cache_capacity > 0 {
            let mut cache = self.cache.lock();
            cache.sync(self.generation);
            if cache.entries >= self.cache_capacity {
                cache.clear();
            }
            let replaced = cache
                .lists
                .entry(account)
                .or_default()
                .insert(Box::from(type_name), Arc::clone(&keys));
            if replaced.is_none() {
                cache.entries += 1;
            }
        }
        keys
    }

    /// The filter of subscription `key`, if indexed.
    pub fn get(&self, key: K) -> Option<&Arc<Filter>> {
        self.entries.get(&key).map(|e| &e.filter)
    }

    /// Number of subscriptions indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no subscription is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Changes so far (inserts and removes); cached lists from an older generation
    /// are never used.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Cache counters, for metrics. Entries from an older generation count as
    /// zero, since the next lookup discards them.
    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.cache.lock();
        CacheStats {
            entries: if cache.generation == self.generation {
                cache.entries
            } else {
                0
            },
            hits: cache.hits,
            misses: cache.misses,
        }
    }
}

/// Calls `f` with each type pattern a filter is indexed under: its own, or
/// [`TypePattern::any`] for a filter of all types.
fn for_each_pattern(filter: &Filter, mut f: impl FnMut(&TypePattern)) {
    let patterns = filter.type_patterns();
    if patterns.is_empty() {
        f(&TypePattern::any());
    } else {
        patterns.iter().for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::super::ScopeGrant;
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    fn filter(types: Option<&str>, wheres: &[&str], scopes: Option<&str>) -> Arc<Filter> {
        Arc::new(Filter::parse(types, wheres, scopes, ScopeGrant::All).expect("valid filter"))
    }

    fn ev<'a>(
        type_name: &'a str,
        call_sid: Option<&'a str>,
        data: &'a Map<String, Value>,
    ) -> EventFields<'a> {
        EventFields {
            type_name,
            call_sid,
            scope: None,
            data: data.into(),
        }
    }

    fn run(idx: &SubscriptionIndex<u32>, account: u32, e: &EventFields<'_>) -> Vec<u32> {
        let mut out = Vec::new();
        idx.matches(account, e, &mut out);
        out
    }

    #[test]
    fn accounts_are_isolated() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1, 10u32, filter(None, &[], None));
        idx.insert(2, 20, filter(None, &[], None));
        let d = Map::new();
        assert_eq!(run(&idx, 1, &ev("call.end", None, &d)), [10]);
        assert_eq!(run(&idx, 2, &ev("call.end", None, &d)), [20]);
        assert!(run(&idx, 3, &ev("call.end", None, &d)).is_empty());
    }

    #[test]
    fn call_sid_postings() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1, 1u32, filter(Some("call.*"), &["call_sid=CA1"], None));
        idx.insert(1, 2, filter(Some("call.*"), &["call_sid=CA2"], None));
        idx.insert(1, 3, filter(Some("call.*"), &[], None));
        idx.insert(
            1,
            4,
            filter(Some("call.*"), &["call_sid=CA1", "data.n>5"], None),
        );
        let d = Map::new();
        let big = match json!({"n": 9}) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        assert_eq!(run(&idx, 1, &ev("call.end", Some("CA1"), &d)), [1, 3]);
        assert_eq!(run(&idx, 1, &ev("call.end", Some("CA1"), &big)), [1, 3, 4]);
        assert_eq!(run(&idx, 1, &ev("call.end", Some("CA2"), &d)), [2, 3]);
        assert_eq!(run(&idx, 1, &ev("call.end", None, &d)), [3]);
        // Pinned subscriptions sit under by_call_sid, not residual.
        let acct = idx.accounts.get(&1).expect("account");
        assert_eq!(acct.call_sid_posted, 3);
        let mut seen = 0;
        acct.trie.for_each_slot("call.end", |p| {
            seen += 1;
            assert_eq!(p.residual.iter().copied().collect::<Vec<_>>(), [3]);
            assert_eq!(p.by_call_sid.len(), 2);
            assert_eq!(p.by_call_sid.get("CA1").map(|v| v.len()), Some(2));
        });
        assert_eq!(seen, 1);
        // Removing them empties the postings.
        for k in [1, 2, 4] {
            assert!(idx.remove(k).is_some());
        }
        let acct = idx.accounts.get(&1).expect("account");
        assert_eq!(acct.call_sid_posted, 0);
        acct.trie
            .for_each_slot("call.end", |p| assert!(p.by_call_sid.is_empty()));
    }

    #[test]
    fn matching_counts_only_the_filters_it_checks() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1, 1u32, filter(Some("call.*"), &["call_sid=CA1"], None));
        idx.insert(1, 2, filter(Some("call.*"), &["call_sid=CA2"], None));
        idx.insert(1, 3, filter(Some("call.*"), &["data.n>5"], None));
        idx.insert(1, 4, filter(Some("dial.*"), &[], None));
        let d = Map::new();
        let mut out = Vec::new();
        // The residual `call.*` filter and CA1's pinned one; a rejection counts too.
        assert_eq!(
            idx.matches(1, &ev("call.end", Some("CA1"), &d), &mut out),
            2
        );
        assert_eq!(out, [1]);
        assert_eq!(idx.matches(1, &ev("call.end", None, &d), &mut out), 1);
        assert_eq!(idx.matches(1, &ev("say.end", Some("CA1"), &d), &mut out), 0);
        assert_eq!(
            idx.matches(2, &ev("call.end", Some("CA1"), &d), &mut out),
            0
        );
    }

    #[test]
    fn take_where_removes_only_what_it_picks() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1, 1u32, filter(Some("call.*"), &["call_sid=CA1"], None));
        idx.insert(2, 2, filter(Some("call.*"), &["call_sid=CA2"], None));
        idx.insert(1, 3, filter(Some("call.*"), &[], None));
        let taken = idx.take_where(|_, f| f.call_sid_eq().is_some());
        let keys: Vec<(u32, u32)> = taken.iter().map(|(k, a, _)| (*k, *a)).collect();
        assert_eq!(keys, [(1, 1), (2, 2)]);
        assert_eq!(idx.len(), 1);
        let d = Map::new();
        assert_eq!(run(&idx, 1, &ev("call.end", Some("CA1"), &d)), [3]);
        assert!(run(&idx, 2, &ev("call.end", Some("CA2"), &d)).is_empty());
    }

    #[test]
    fn multi_pattern_subscription_yields_once() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(
            1,
            7u32,
            filter(Some("call.*,*.end,call.end,*.*"), &[], None),
        );
        idx.insert(
            1,
            8,
            filter(Some("call.*,call.end"), &["call_sid=CA1"], None),
        );
        idx.insert(1, 5, filter(None, &[], None));
        let d = Map::new();
        assert_eq!(run(&idx, 1, &ev("call.end", Some("CA1"), &d)), [5, 7, 8]);
        assert_eq!(run(&idx, 1, &ev("call.start", Some("CA1"), &d)), [5, 7, 8]);
        assert_eq!(run(&idx, 1, &ev("say.end", Some("CA1"), &d)), [5, 7]);
        assert_eq!(run(&idx, 1, &ev("redirect", Some("CA1"), &d)), [5]);
        // Existing output is kept; new matches are appended.
        let mut out = vec![100];
        idx.matches(1, &ev("redirect", None, &d), &mut out);
        assert_eq!(out, [100, 5]);
    }

    #[test]
    fn scopes_are_enforced() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1, 1u32, filter(None, &[], None));
        idx.insert(1, 2, filter(None, &[], Some("supervisor")));
        idx.insert(1, 3, filter(None, &[], Some("")));
        let d = Map::new();
        let scoped = EventFields {
            scope: Some("supervisor"),
            ..ev("call.end", None, &d)
        };
        let other = EventFields {
            scope: Some("agent"),
            ..scoped
        };
        assert_eq!(run(&idx, 1, &scoped), [1, 2]);
        assert_eq!(run(&idx, 1, &other), [1]);
        assert_eq!(run(&idx, 1, &ev("call.end", None, &d)), [1, 2, 3]);
    }

    #[test]
    fn replace_and_remove() {
        let mut idx = SubscriptionIndex::new();
        let d = Map::new();
        assert!(idx
            .insert(1, 1u32, filter(Some("call.end"), &[], None))
            .is_none());
        assert_eq!(idx.len(), 1);
        let old = idx.insert(2, 1, filter(Some("say.end"), &["call_sid=CA1"], None));
        assert_eq!(
            old.map(|f| f.types_text()),
            Some(vec!["call.end".to_owned()])
        );
        assert_eq!(idx.len(), 1);
        assert!(run(&idx, 1, &ev("call.end", None, &d)).is_empty());
        assert!(!idx.accounts.contains_key(&1), "emptied account pruned");
        assert_eq!(run(&idx, 2, &ev("say.end", Some("CA1"), &d)), [1]);
        assert!(idx.get(1).is_some());
        assert!(idx.remove(1).is_some());
        assert!(idx.remove(1).is_none());
        assert!(idx.is_empty());
        assert!(idx.accounts.is_empty());
        assert!(run(&idx, 2, &ev("say.end", Some("CA1"), &d)).is_empty());
    }

    #[test]
    fn cache_is_invalidated_by_insert_and_remove() {
        let mut idx = SubscriptionIndex::new();
        let d = Map::new();
        idx.insert(1, 1u32, filter(Some("call.*"), &[], None));
        let e = ev("call.end", None, &d);
        assert_eq!(run(&idx, 1, &e), [1]);
        assert_eq!(run(&idx, 1, &e), [1]);
        let stats = idx.cache_stats();
        assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 1));

        let g = idx.generation();
        idx.insert(1, 2, filter(Some("*.end"), &[], None));
        assert!(idx.generation() > g);
        assert_eq!(idx.cache_stats().entries, 0);
        assert_eq!(run(&idx, 1, &e), [1, 2], "insert must be visible at once");

        idx.remove(1);
        assert_eq!(run(&idx, 1, &e), [2], "remove must be visible at once");
        idx.insert(1, 2, filter(Some("say.*"), &[], None));
        assert!(
            run(&idx, 1, &e).is_empty(),
            "replace must be visible at once"
        );
        assert_eq!(idx.cache_stats().entries, 1);
    }

    #[test]
    fn cache_is_capped() {
        let mut idx = SubscriptionIndex::with_cache_capacity(2);
        idx.insert(1, 1u32, filter(None, &[], None));
        let d = Map::new();
        for (i, t) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            assert_eq!(run(&idx, 1, &ev(t, None, &d)), [1]);
            assert!(idx.cache_stats().entries <= 2, "after {i}");
        }
        let mut off = SubscriptionIndex::with_cache_capacity(0);
        off.insert(1, 1u32, filter(None, &[], None));
        assert_eq!(run(&off, 1, &ev("a", None, &d)), [1]);
        assert_eq!(off.cache_stats(), CacheStats::default());
    }

    #[test]
    fn unmatched_and_malformed_types() {
        let mut idx = SubscriptionIndex::new();
        idx.insert(1, 1u32, filter(None, &[], None));
        let d = Map::new();
        assert!(run(&idx, 1, &ev("", None, &d)).is_empty());
        assert!(run(&idx, 1, &ev("a..b", None, &d)).is_empty());
        assert!(run(&idx, 1, &ev(&"a".repeat(100), None, &d)).is_empty());
    }

    const TYPES: &[&str] = &[
        "call.start",
        "call.end",
        "call.a.b",
        "say.end",
        "redirect",
        "gather.end",
        "client.hangup",
        "a.b.c.d",
    ];
    const PATTERNS: &[&str] = &[
        "call.*",
        "*.end",
        "*",
        "*.*",
        "call.start",
        "redirect",
        "call.*.*",
        "*.a.*",
        "client.*",
        "a.b.c.d",
        "say.end",
        "a.*.c.*",
    ];
    const WHERES: &[&str] = &[
        "call_sid=CA1",
        "call_sid=CA2",
        "call_sid!=CA1",
        "call_sid^=CA",
        "data.n>5",
        "data.n<=5",
        "data.s=x",
        "data.s^=x",
        "type=call.end",
        "data.a.b=1",
        "data.n=7",
    ];
    const SCOPES: &[&str] = &["sup", "agent"];

    #[derive(Debug, Clone)]
    enum Step {
        Insert {
            account: u32,
            key: u32,
            types: Vec<usize>,
            wheres: Vec<usize>,
            scopes: Option<Vec<usize>>,
        },
        Remove(u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (
                0u32..3,
                0u32..24,
                proptest::collection::vec(0..PATTERNS.len(), 0..4),
                proptest::collection::vec(0..WHERES.len(), 0..3),
                proptest::option::of(proptest::collection::vec(0..SCOPES.len(), 0..3)),
            )
                .prop_map(|(account, key, types, wheres, scopes)| Step::Insert {
                    account, key, types, wheres, scopes,
                }),
            1 => (0u32..24).prop_map(Step::Remove),
        ]
    }

    #[derive(Debug, Clone)]
    struct Ev {
        account: u32,
        type_name: &'static str,
        call_sid: Option<&'static str>,
        scope: Option<&'static str>,
        data: Value,
    }

    fn event() -> impl Strategy<Value = Ev> {
        (
            0u32..3,
            prop::sample::select(TYPES),
            prop::sample::select(vec![None, Some("CA1"), Some("CA2"), Some("CA3")]),
            prop::sample::select(vec![None, Some("sup"), Some("agent"), Some("other")]),
            prop::sample::select(vec![
                json!({}),
                json!({"n": 7}),
                json!({"n": "3"}),
                json!({"n": 9, "s": "xy"}),
                json!({"s": "x", "a": {"b": 1}}),
                json!({"a": {"b": "1"}, "n": null}),
            ]),
        )
            .prop_map(|(account, type_name, call_sid, scope, data)| Ev {
                account,
                type_name,
                call_sid,
                scope,
                data,
            })
    }

    proptest! {
        #[test]
        fn index_agrees_with_brute_force(
            steps in proptest::collection::vec(step(), 0..40),
            events in proptest::collection::vec(event(), 1..20),
            cache_capacity in prop::sample::select(vec![0usize, 2, 1024]),
        ) {
            let mut idx = SubscriptionIndex::with_cache_capacity(cache_capacity);
            let mut model: HashMap<u32, (u32, Arc<Filter>)> = HashMap::new();
            let check = |idx: &SubscriptionIndex<u32>,
                         model: &HashMap<u32, (u32, Arc<Filter>)>|
             -> Result<(), TestCaseError> {
                for e in &events {
                    let data = match &e.data { Value::Object(m) => m.clone(), _ => Map::new() };
                    let fields = EventFields {
                        type_name: e.type_name, call_sid: e.call_sid, scope: e.scope, data: (&data).into(),
                    };
                    let mut want: Vec<u32> = model
                        .iter()
                        .filter(|(_, (acct, f))| *acct == e.account && f.matches(&fields))
                        .map(|(k, _)| *k)
                        .collect();
                    want.sort_unstable();
                    // Twice: once filling the cache, once reading it.
                    for _ in 0..2 {
                        let mut got = Vec::new();
                        idx.matches(e.account, &fields, &mut got);
                        prop_assert_eq!(&got, &want, "event {:?}", e);
                    }
                }
                Ok(())
            };
            for (i, s) in steps.into_iter().enumerate() {
                match s {
                    Step::Insert { account, key, types, wheres, scopes } => {
                        let f = Filter::from_parts(
                            types.iter().map(|&i| PATTERNS[i].to_owned()).collect(),
                            wheres.iter().map(|&i| WHERES[i].to_owned()).collect(),
                            scopes.map(|v| v.iter().map(|&i| SCOPES[i].to_owned()).collect()),
                            ScopeGrant::All,
                        ).expect("vocabulary is valid");
                        let f = Arc::new(f);
                        let old = idx.insert(account, key, Arc::clone(&f));
                        let model_old = model.insert(key, (account, f));
                        prop_assert_eq!(old.is_some(), model_old.is_some());
                    }
                    Step::Remove(key) => {
                        prop_assert_eq!(idx.remove(key).is_some(), model.remove(&key).is_some());
                    }
                }
                prop_assert_eq!(idx.len(), model.len());
                if i % 5 == 0 {
                    check(&idx, &model)?;
                }
            }
            check(&idx, &model)?;
            let keys: Vec<u32> = model.keys().copied().collect();
            for k in keys {
                prop_assert!(idx.remove(k).is_some());
            }
            prop_assert!(idx.is_empty());
            prop_assert!(idx.accounts.is_empty(), "every account pruned");
        }
    }
}
