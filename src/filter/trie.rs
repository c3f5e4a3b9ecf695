//! A token trie over type patterns, after nats-server's sublist (`server/sublist.go`).
//!
//! Each level holds literal children in a `HashMap<Box<str>, Node>`, one `star`
//! child (a `*` segment: exactly one type segment), a `tail` slot (a trailing `.*`:
//! one or more further segments, NATS' `>`), and a `terminal` slot for patterns that
//! end exactly at that node. Matching a type walks its segments, following the
//! literal child and the star child at each level and collecting the tails it
//! passes, so its cost follows the number of segments in the type (and of wildcard
//! branches actually stored), never the number of stored patterns.
//!
//! One implementation serves both levels of GUIDE point 5: [`TypeTrie`] stores plain
//! values (the broker's aggregated index), and the client index stores its
//! `by_call_sid`/`residual` postings through the crate-private [`Slot`] trait.
//!
//! Empty nodes are pruned on removal, so subscription churn does not leak memory.

use std::collections::HashMap;
use std::hash::Hash;

use super::types::{PatternKind, Tokens, TypePattern};

/// What a trie node stores per pattern end: a set of values, or a richer posting.
pub(crate) trait Slot: Default {
    /// What is inserted and removed.
    type Item;
    /// Adds `item`; false if it was already there (so `len` counts pairs once).
    fn insert(&mut self, item: Self::Item) -> bool;
    /// Removes `item`; false if it was not there.
    fn remove(&mut self, item: &Self::Item) -> bool;
    /// Whether the slot holds nothing (then its node may be pruned).
    fn is_empty(&self) -> bool;
}

/// Above this many values a [`ValueSet`] keeps a position map, so removal stays O(1)
/// for hot types with many subscribers while small sets stay a bare `Vec`.
const INDEXED_ABOVE: usize = 64;

/// A set kept as a `Vec` (iteration is the hot path: every matching event walks it),
/// with a value→position map added once it grows large enough for linear removal to
/// hurt. Order is not preserved.
#[derive(Debug, Clone)]
pub(crate) struct ValueSet<V> {
    /// The values, in no particular order.
    items: Vec<V>,
    /// Position of each value in `items`, kept only above [`INDEXED_ABOVE`].
    positions: Option<HashMap<V, usize>>,
}

impl<V> Default for ValueSet<V> {
    fn default() -> Self {
        ValueSet {
            items: Vec::new(),
            positions: None,
        }
    }
}

impl<V: Eq + Hash + Clone> ValueSet<V> {
    /// Where `item` is in `items`, if present.
    fn position(&self, item: &V) -> Option<usize> {
        match &self.positions {
            Some(map) => map.get(item).copied(),
            None => self.items.iter().position(|v| v == item),
        }
    }

    /// The values, in no particular order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, V> {
        self.items.iter()
    }
}

impl<V: Eq + Hash + Clone> Slot for ValueSet<V> {
    type Item = V;

    fn insert(&mut self, item: V) -> bool {
        if self.position(&item).is_some() {
            return false;
        }
        if let Some(map) = &mut self.positions {
            map.insert(item.clone(), self.items.len());
        }
        self.items.push(item);
        if self.positions.is_none() && self.items.len() > INDEXED_ABOVE {
            let map = self
                .items
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), i))
                .collect();
            self.positions = Some(map);
        }
        true
    }

    fn remove(&mut self, item: &V) -> bool {
        let Some(at) = self.position(item) else {
            return false;
        };
        if at >= self.items.len() {
            return false;
        }
        self.items.swap_remove(at);
        if let Some(map) = &mut self.positions {
            map.remove(item);
            if let Some(moved) = self.items.get(at) {
                map.insert(moved.clone(), at);
            }
            // Hysteresis: drop the map well below the threshold so a set that
            // hovers around it does not rebuild the map on every change.
            if self.items.len() < INDEXED_ABOVE / 2 {
                self.positions = None;
            }
        }
        true
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// One level of the trie.
#[derive(Debug)]
struct Node<S> {
    /// Children for literal segments.
    literal: HashMap<Box<str>, Node<S>>,
    /// Child for a `*` segment (boxed: most nodes have none).
    star: Option<Box<Node<S>>>,
    /// Patterns ending exactly here.
    terminal: S,
    /// Patterns whose trailing `.*` starts here: one or more further segments.
    tail: S,
}

impl<S: Default> Default for Node<S> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            star: None,
            terminal: S::default(),
            tail: S::default(),
        }
    }
}

impl<S: Slot> Node<S> {
    /// Whether the node holds nothing and can be pruned by its parent.
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.terminal.is_empty()
            && self.tail.is_empty()
    }

    /// Calls `f` on every non-empty slot whose pattern matches `tokens` from this
    /// level on. Each node is reached at most once per walk (a pattern's node is
    /// fixed by its segments), so each matching slot is reported once.
    fn visit<'n, F: FnMut(&'n S)>(&'n self, tokens: &[&str], f: &mut F) {
        match tokens.split_first() {
            None => {
                if !self.terminal.is_empty() {
                    f(&self.terminal);
                }
            }
            Some((token, rest)) => {
                if !self.tail.is_empty() {
                    f(&self.tail);
                }
                if let Some(child) = self.literal.get(*token) {
                    child.visit(rest, f);
                }
                if let Some(child) = self.star.as_deref() {
                    child.visit(rest, f);
                }
            }
        }
    }

    /// Removes `item` from the slot at the end of `segs`, pruning children that
    /// become empty on the way back up.
    fn remove<'p>(
        &mut self,
        segs: &mut impl Iterator<Item = &'p str>,
        kind: PatternKind,
        item: &S::Item,
    ) -> bool {
        match segs.next() {
            None => match kind {
                PatternKind::Exact => self.terminal.remove(item),
                PatternKind::Tail | PatternKind::Any => self.tail.remove(item),
            },
            Some("*") => {
                let Some(child) = self.star.as_deref_mut() else {
                    return false;
                };
                let removed = child.remove(segs, kind, item);
                if removed && child.is_empty() {
                    self.star = None;
                }
                removed
            }
            Some(seg) => {
                let Some(child) = self.literal.get_mut(seg) else {
                    return false;
                };
                let removed = child.remove(segs, kind, item);
                if removed && child.is_empty() {
                    self.literal.remove(seg);
                }
                removed
            }
        }
    }

    /// Number of nodes in this subtree, this one included.
    fn count(&self) -> usize {
        1 + self.literal.values().map(Node::count).sum::<usize>()
            + self.star.as_deref().map_or(0, Node::count)
    }
}

/// The trie, generic over what a pattern end stores.
#[derive(Debug)]
pub(crate) struct Trie<S> {
    /// Level of the first segment; its `tail` holds [`TypePattern::any`].
    root: Node<S>,
    /// Stored (pattern, item) pairs.
    len: usize,
}

impl<S: Default> Default for Trie<S> {
    fn default() -> Self {
        Trie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<S: Slot> Trie<S> {
    /// Stores `item` under `pattern`; false if that pair was already stored.
    pub(crate) fn insert(&mut self, pattern: &TypePattern, item: S::Item) -> bool {
        let mut node = &mut self.root;
        for seg in pattern.prefix_segments() {
            node = if seg == "*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.literal.entry(Box::from(seg)).or_default()
            };
        }
        let slot = match pattern.kind() {
            PatternKind::Exact => &mut node.terminal,
            PatternKind::Tail | PatternKind::Any => &mut node.tail,
        };
        let added = slot.insert(item);
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes `item` from under `pattern`, pruning emptied nodes; false if absent.
    pub(crate) fn remove(&mut self, pattern: &TypePattern, item: &S::Item) -> bool {
        let removed = self
            .root
            .remove(&mut pattern.prefix_segments(), pattern.kind(), item);
        if removed {
            self.len = self.len.saturating_sub(1);
        }
        removed
    }

    /// Calls `f` once for every non-empty slot whose pattern matches `type_name`.
    /// Malformed types (see [`Tokens::new`]) match nothing.
    pub(crate) fn for_each_slot<'t>(&'t self, type_name: &str, mut f: impl FnMut(&'t S)) {
        if let Some(tokens) = Tokens::new(type_name) {
            self.root.visit(tokens.as_slice(), &mut f);
        }
    }

    /// Stored (pattern, item) pairs.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes in the trie, root included (1 when empty): shows that removal prunes.
    pub(crate) fn node_count(&self) -> usize {
        self.root.count()
    }
}

/// A trie from type patterns to values: ask it which values' patterns match an
/// event type without testing every pattern.
///
/// Each (pattern, value) pair is stored once; inserting it again is a no-op. The
/// broker's aggregated index keys it by canonical filter key or proxy id; the
/// client index uses the same trie with richer postings.
#[derive(Debug)]
pub struct TypeTrie<V> {
    /// The shared trie implementation with set-valued slots.
    inner: Trie<ValueSet<V>>,
}

impl<V> Default for TypeTrie<V> {
    fn default() -> Self {
        TypeTrie {
            inner: Trie::default(),
        }
    }
}

impl<V: Eq + Hash + Clone> TypeTrie<V> {
    /// An empty trie.
    pub fn new() -> TypeTrie<V> {
        TypeTrie::default()
    }

    /// Stores `value` under `pattern`. Returns false (and changes nothing) if that
    /// exact pair was already stored, so callers can keep their own counts honest.
    pub fn insert(&mut self, pattern: &TypePattern, value: V) -> bool {
        self.inner.insert(pattern, value)
    }

    /// Removes `value` from under `pattern`, pruning nodes left empty so churn does
    /// not grow the trie. Returns whether the pair was present.
    pub fn remove(&mut self, pattern: &TypePattern, value: &V) -> bool {
        self.inner.remove(pattern, value)
    }

    /// Calls `f` with every stored value whose pattern matches `type_name`, once per
    /// matching (pattern, value) pair: a value stored under two matching patterns is
    /// reported twice, and deduplicating is the caller's choice. Does not allocate.
    pub fn for_each_match(&self, type_name: &str, mut f: impl FnMut(&V)) {
        self.inner
            .for_each_slot(type_name, |slot| slot.iter().for_each(&mut f));
    }

    /// Number of stored (pattern, value) pairs.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Number of trie nodes, root included (1 when empty); exported for metrics and
    /// for tests that check pruning.
    pub fn node_count(&self) -> usize {
        self.inner.node_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> TypePattern {
        TypePattern::parse(s).expect("valid pattern in test")
    }

    fn matches(trie: &TypeTrie<u32>, ty: &str) -> Vec<u32> {
        let mut out = Vec::new();
        trie.for_each_match(ty, |v| out.push(*v));
        out.sort_unstable();
        out
    }

    #[test]
    fn wildcards() {
        let mut t = TypeTrie::new();
        let pats = [
            "call.start", // 0
            "call.*",     // 1
            "*.end",      // 2
            "*",          // 3
            "*.*",        // 4
            "call.*.x",   // 5
            "redirect",   // 6
        ];
        for (i, s) in pats.iter().enumerate() {
            assert!(t.insert(&p(s), i as u32));
        }
        assert!(t.insert(&TypePattern::any(), 99));
        assert_eq!(t.len(), 8);
        assert_eq!(matches(&t, "call.start"), [0, 1, 4, 99]);
        assert_eq!(matches(&t, "call.end"), [1, 2, 4, 99]);
        assert_eq!(matches(&t, "call.a.x"), [1, 4, 5, 99]);
        assert_eq!(matches(&t, "call.a.b"), [1, 4, 99]);
        assert_eq!(matches(&t, "a.b.end"), [4, 99]);
        assert_eq!(matches(&t, "call"), [3, 99]);
        assert_eq!(matches(&t, "redirect"), [3, 6, 99]);
        assert_eq!(matches(&t, ""), Vec::<u32>::new());
        assert_eq!(matches(&t, "call..x"), Vec::<u32>::new());
        assert_eq!(matches(&t, &"a".repeat(65)), Vec::<u32>::new());
    }

    #[test]
    fn duplicate_pairs_stored_once_and_reported_per_pattern() {
        let mut t = TypeTrie::new();
        assert!(t.insert(&p("call.*"), 1));
        assert!(!t.insert(&p("call.*"), 1));
        assert!(t.insert(&p("call.end"), 1));
        assert_eq!(t.len(), 2);
        // Two matching patterns report the value twice, once per pattern.
        assert_eq!(matches(&t, "call.end"), [1, 1]);
        assert_eq!(matches(&t, "call.start"), [1]);
    }

    #[test]
    fn remove_prunes() {
        let mut t = TypeTrie::new();
        assert_eq!(t.node_count(), 1);
        t.insert(&p("a.b.c.d"), 1u32);
        t.insert(&p("a.*.c"), 2);
        t.insert(&p("a.b.*"), 3);
        t.insert(&TypePattern::any(), 4);
        assert!(t.node_count() > 1);
        assert!(!t.remove(&p("a.b.c.d"), &9), "absent value");
        assert!(!t.remove(&p("a.b.c"), &1), "absent pattern");
        assert!(!t.remove(&p("x.y"), &1), "absent path");
        assert!(t.remove(&p("a.b.c.d"), &1));
        assert!(!t.remove(&p("a.b.c.d"), &1), "already removed");
        assert!(t.remove(&p("a.*.c"), &2));
        assert_eq!(matches(&t, "a.b.c"), [3, 4]);
        assert!(t.remove(&p("a.b.*"), &3));
        assert_eq!(t.node_count(), 1, "only the root should remain");
        assert!(!t.is_empty());
        assert!(t.remove(&TypePattern::any(), &4));
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert_eq!(t.node_count(), 1);
    }

    #[test]
    fn value_set_switches_to_indexed_and_back() {
        let mut s: ValueSet<u32> = ValueSet::default();
        for i in 0..200 {
            assert!(s.insert(i));
        }
        assert!(s.positions.is_some());
        assert!(!s.insert(5));
        for i in (0..200).step_by(2) {
            assert!(s.remove(&i));
        }
        assert!(!s.remove(&0));
        assert_eq!(s.iter().len(), 100);
        let mut left: Vec<u32> = s.iter().copied().collect();
        left.sort_unstable();
        assert_eq!(left, (1..200).step_by(2).collect::<Vec<_>>());
        for i in (1..200).step_by(2) {
            assert!(s.remove(&i), "{i}");
        }
        assert!(s.is_empty());
        assert!(s.positions.is_none());
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("*")], 1..5)
            .prop_map(|segs| segs.join("."))
    }

    fn type_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..6)
            .prop_map(|segs| segs.join("."))
    }

    proptest! {
        #[test]
        fn trie_agrees_with_pattern_matches(
            pats in proptest::collection::vec(pattern_strategy(), 0..12),
            any_too in any::<bool>(),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            types in proptest::collection::vec(type_strategy(), 1..12),
        ) {
            let mut stored: Vec<(TypePattern, usize)> = Vec::new();
            let mut t = TypeTrie::new();
            for (i, s) in pats.iter().enumerate() {
                let Ok(pat) = TypePattern::parse(s) else { continue };
                prop_assert!(t.insert(&pat, i));
                stored.push((pat, i));
            }
            if any_too {
                prop_assert!(t.insert(&TypePattern::any(), 1000));
                stored.push((TypePattern::any(), 1000));
            }
            for r in removals {
                if stored.is_empty() { break; }
                let (pat, v) = stored.swap_remove(r.index(stored.len()));
                prop_assert!(t.remove(&pat, &v));
            }
            prop_assert_eq!(t.len(), stored.len());
            for ty in &types {
                let mut got = Vec::new();
                t.for_each_match(ty, |v| got.push(*v));
                got.sort_unstable();
                let mut want: Vec<usize> =
                    stored.iter().filter(|(p, _)| p.matches(ty)).map(|(_, v)| *v).collect();
                want.sort_unstable();
                prop_assert_eq!(got, want, "type {}", ty);
            }
            for (pat, v) in &stored {
                prop_assert!(t.remove(pat, v));
            }
            prop_assert!(t.is_empty());
            prop_assert_eq!(t.node_count(), 1);
        }
    }
}
