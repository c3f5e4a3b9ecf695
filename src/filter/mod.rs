//! Subscription filters: the `types`, `where` and `scopes` parameters of a stream
//! URL or a control-channel request (docs/api.md §4, §5), parsed once at the HTTP edge
//! into a normalised [`Filter`], and indexed for fan-out.
//!
//! - [`TypePattern`] (`types.rs`): one `types` item, with `*` and trailing `.*`.
//! - [`Predicate`] (`predicate.rs`): one `where` clause, `field op value`.
//! - [`ScopeGrant`]: the publisher's security filter; a scoped event reaches only
//!   subscriptions granted its scope.
//! - [`TypeTrie`] (`trie.rs`): the NATS-sublist-style token trie, shared by the
//!   broker's aggregated index and the proxy's client index.
//! - [`SubscriptionIndex`] (`index.rs`): the proxy's client index (GUIDE point 5),
//!   `account → TypeTrie → { by_call_sid, residual }`, with a generation-checked cache.
//!
//! Filters are normalised (types and wheres sorted and deduplicated, scopes sorted)
//! so that equal subscriptions get equal [`Filter::canonical_key`]s: aggregation
//! merges upstream subscriptions by that key (GUIDE point 6) and silently fails to
//! merge if the key depends on how the client ordered its parameters.
//!
//! Everything here is plain data, unit-tested without an actix `System`; nothing
//! panics on any input, and errors never echo more than ~64 characters of it.

use std::fmt::Write as _;

use crate::event::DataView;

mod edit;
mod index;
mod predicate;
mod trie;
mod types;

pub use edit::FilterEdit;
pub use index::{CacheStats, SubscriptionIndex, DEFAULT_CACHE_CAPACITY};
pub use predicate::{Op, Predicate};
pub use trie::TypeTrie;
pub(crate) use types::well_formed as well_formed_type;
pub use types::{TypePattern, MAX_TYPE_LEN};

/// The parts of an event that filters look at, borrowed from wherever the event
/// lives (a parsed publish request, a replayed record) so matching never copies it.
#[derive(Clone, Copy, Debug)]
pub struct EventFields<'a> {
    /// The event type, e.g. `gather.end`.
    pub type_name: &'a str,
    /// The call the event belongs to, if any; `call_sid` predicates need it.
    pub call_sid: Option<&'a str>,
    /// The publisher's scope, if any; only subscriptions granted it may see the event.
    pub scope: Option<&'a str>,
    /// The event's `data` object (empty when the event had none), parsed only when a
    /// predicate looks inside.
    pub data: DataView<'a>,
}

/// Which scoped events a subscription may see (docs/api.md §2, §4 `scopes`).
///
/// This is the publisher's security filter, not a convenience: a signed URL's
/// `scopes` are signed, so a browser cannot widen them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeGrant {
    /// Every scope: a Basic-auth subscription without `scopes` is the account itself.
    All,
    /// Only these scopes (sorted, deduplicated; use [`ScopeGrant::only`] to build
    /// one). Unscoped events are still delivered.
    Only(Vec<String>),
}

impl ScopeGrant {
    /// Builds an `Only` grant, sorting and deduplicating so that grants compare and
    /// hash equal regardless of order.
    pub fn only<I, S>(names: I) -> ScopeGrant
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = names.into_iter().map(Into::into).collect();
        v.sort_unstable();
        v.dedup();
        ScopeGrant::Only(v)
    }

    /// Whether an event with this scope may be delivered under this grant: unscoped
    /// events always, scoped ones only if granted.
    pub fn allows(&self, scope: Option<&str>) -> bool {
        match (self, scope) {
            (_, None) | (ScopeGrant::All, Some(_)) => true,
            (ScopeGrant::Only(granted), Some(s)) => granted.iter().any(|g| g == s),
        }
    }

    /// Restores the sorted, deduplicated invariant on a grant built by hand.
    fn normalized(self) -> ScopeGrant {
        match self {
            ScopeGrant::All => ScopeGrant::All,
            ScopeGrant::Only(v) => ScopeGrant::only(v),
        }
    }
}

/// Longest scope name, in bytes.
const MAX_SCOPE_LEN: usize = 64;

/// Validates one scope name: `[A-Za-z0-9_.-]{1,64}`.
fn parse_scope(s: &str) -> Result<String, ParseErrorKind> {
    if s.is_empty() {
        return Err(ParseErrorKind::Empty { what: "scope name" });
    }
    let ok = s.len() <= MAX_SCOPE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ParseErrorKind::BadScope(snippet(s)))
    }
}

/// A parsed, normalised subscription filter: an event matches if its type matches
/// one of the type patterns (or there are none), its scope is granted, and every
/// `where` clause holds.
///
/// Immutable once built; the index shares it as `Arc<Filter>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Type patterns, sorted and deduplicated; empty means every type.
    types: Vec<TypePattern>,
    /// `where` clauses, sorted by canonical text and deduplicated (they are ANDed,
    /// so order and repetition never change the meaning).
    wheres: Vec<Predicate>,
    /// Scopes granted.
    scopes: ScopeGrant,
}

impl Filter {
    /// Parses the query-string form: `types` is the decoded comma list (`None` means
    /// every type; an empty string or an empty item is an error), `wheres` the decoded
    /// `where` values in order, `scopes` the decoded comma list (`None` means
    /// `absent_scopes`, which the caller picks by authentication: `All` for Basic
    /// auth; an empty string grants no scope).
    pub fn parse(
        types: Option<&str>,
        wheres: &[&str],
        scopes: Option<&str>,
        absent_scopes: ScopeGrant,
    ) -> Result<Filter, ParseError> {
        let types = match types {
            None => Vec::new(),
            Some(list) => parse_types(list.split(','))?,
        };
        let wheres = parse_wheres(wheres.iter().copied())?;
        let scopes = match scopes {
            None => absent_scopes.normalized(),
            Some("") => ScopeGrant::Only(Vec::new()),
            Some(list) => parse_scopes(list.split(','))?,
        };
        Ok(Filter::from_normalised(types, wheres, scopes))
    }

    /// Builds a filter from list form, as a JSON body gives it. An empty `types` list
    /// means every type; each item is one pattern (a comma inside an item is an
    /// error: split comma strings first). An empty or absent `scopes` list means
    /// `absent_scopes` (docs/api.md §5: "an empty `scopes` is the same as none").
    pub fn from_parts(
        types: Vec<String>,
        wheres: Vec<String>,
        scopes: Option<Vec<String>>,
        absent_scopes: ScopeGrant,
    ) -> Result<Filter, ParseError> {
        let types = parse_types(types.iter().map(String::as_str))?;
        let wheres = parse_wheres(wheres.iter().map(String::as_str))?;
        let scopes = match scopes {
            Some(list) if !list.is_empty() => parse_scopes(list.iter().map(String::as_str))?,
            _ => absent_scopes.normalized(),
        };
        Ok(Filter::from_normalised(types, wheres, scopes))
    }

    /// The filter that matches every event the grant allows: what a stream URL with
    /// no `types`, `where` or `scopes` subscribes to.
    pub fn all(scopes: ScopeGrant) -> Filter {
        Filter::from_normalised(Vec::new(), Vec::new(), scopes.normalized())
    }

    /// Sorts and deduplicates, the one place that establishes the invariants.
    fn from_normalised(
        mut types: Vec<TypePattern>,
        mut wheres: Vec<Predicate>,
        scopes: ScopeGrant,
    ) -> Filter {
        types.sort_unstable();
        types.dedup();
        wheres.sort_unstable();
        wheres.dedup();
        Filter {
            types,
            wheres,
            scopes,
        }
    }

    /// Whether the event passes: type, then scope, then every `where` (cheapest and
    /// most selective first). A malformed type name matches no filter.
    pub fn matches(&self, ev: &EventFields<'_>) -> bool {
        // A malformed type matches nothing, as in the index.
        if !types::well_formed(ev.type_name) {
            return false;
        }
        let type_ok = self.types.is_empty()
            || self
                .types
                .iter()
                .any(|t| t.matches_well_formed(ev.type_name));
        type_ok && self.matches_after_type(ev)
    }

    /// The scope and `where` part of [`Filter::matches`], for the index, whose trie
    /// has already matched the type.
    pub(crate) fn matches_after_type(&self, ev: &EventFields<'_>) -> bool {
        self.scopes.allows(ev.scope) && self.wheres.iter().all(|w| w.matches(ev))
    }

    /// The type patterns, sorted; empty means every type (index it under
    /// [`TypePattern::any`]).
    pub fn type_patterns(&self) -> &[TypePattern] {
        &self.types
    }

    /// The `where` clauses, sorted by canonical text.
    pub fn wheres(&self) -> &[Predicate] {
        &self.wheres
    }

    /// The scopes granted.
    pub fn scopes(&self) -> &ScopeGrant {
        &self.scopes
    }

    /// The call this filter is pinned to by a `call_sid=` clause, if any (the first
    /// in canonical order if several). The index posts the subscription under it.
    pub fn call_sid_eq(&self) -> Option<&str> {
        self.wheres.iter().find_map(Predicate::is_call_sid_eq)
    }

    /// A string identifying the filter after normalisation: equal filters give equal
    /// keys, different filters different keys. Every part is length-prefixed
    /// (`<bytes>:<text>`), so no input can forge a boundary. Shape:
    /// `T<n>;<len>:<type>…|W<n>;<len>:<where>…|S*` or `|S<n>;<len>:<scope>…`.
    pub fn canonical_key(&self) -> String {
        fn part(key: &mut String, text: &str) {
            // Writing to a String cannot fail.
            let _ = write!(key, "{}:{}", text.len(), text);
        }
        let mut key = String::new();
        let _ = write!(key, "T{};", self.types.len());
        for t in &self.types {
            part(&mut key, t.as_str());
        }
        let _ = write!(key, "|W{};", self.wheres.len());
        for w in &self.wheres {
            part(&mut key, w.as_str());
        }
        match &self.scopes {
            ScopeGrant::All => key.push_str("|S*"),
            ScopeGrant::Only(list) => {
                let _ = write!(key, "|S{};", list.len());
                for s in list {
                    part(&mut key, s);
                }
            }
        }
        key
    }

    /// The type patterns as text, for listing a subscription back to its client
    /// (empty means every type).
    pub fn types_text(&self) -> Vec<String> {
        self.types.iter().map(ToString::to_string).collect()
    }

    /// The `where` clauses as canonical `field op value` text.
    pub fn wheres_text(&self) -> Vec<String> {
        self.wheres.iter().map(ToString::to_string).collect()
    }

    /// The granted scopes as text; `None` for [`ScopeGrant::All`].
    pub fn scopes_text(&self) -> Option<Vec<String>> {
        match &self.scopes {
            ScopeGrant::All => None,
            ScopeGrant::Only(list) => Some(list.clone()),
        }
    }
}

/// Parses type items, numbering errors by position.
fn parse_types<'s>(items: impl Iterator<Item = &'s str>) -> Result<Vec<TypePattern>, ParseError> {
    items
        .enumerate()
        .map(|(i, s)| TypePattern::parse(s).map_err(|kind| ParseError::new("types", i, kind)))
        .collect()
}

/// Parses `where` values, numbering errors by position.
fn parse_wheres<'s>(items: impl Iterator<Item = &'s str>) -> Result<Vec<Predicate>, ParseError> {
    items
        .enumerate()
        .map(|(i, s)| Predicate::parse(s).map_err(|kind| ParseError::new("where", i, kind)))
        .collect()
}

/// Parses scope items into a normalised `Only` grant, numbering errors by position.
fn parse_scopes<'s>(items: impl Iterator<Item = &'s str>) -> Result<ScopeGrant, ParseError> {
    let names = items
        .enumerate()
        .map(|(i, s)| parse_scope(s).map_err(|kind| ParseError::new("scopes", i, kind)))
        .collect::<Result<Vec<String>, ParseError>>()?;
    Ok(ScopeGrant::only(names))
}

/// Why a `types`, `where` or `scopes` parameter was refused, naming the parameter
/// and the item's position so the HTTP layer can answer a 400 that says exactly
/// which part of the URL or body is wrong, e.g.
/// ``where[1]: `data.x~1` has no operator (expected one of = != ^= > >= < <=)``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}[{index}]: {kind}")]
pub struct ParseError {
    /// `"types"`, `"where"` or `"scopes"`.
    param: &'static str,
    /// Position of the item: in the comma list, or among the `where` values.
    index: usize,
    /// What was wrong with it.
    kind: ParseErrorKind,
}

impl ParseError {
    /// Attaches the parameter name and position to an item's error.
    fn new(param: &'static str, index: usize, kind: ParseErrorKind) -> ParseError {
        ParseError { param, index, kind }
    }

    /// The parameter at fault: `"types"`, `"where"` or `"scopes"`.
    pub fn param(&self) -> &'static str {
        self.param
    }

    /// Zero-based position of the faulty item within its parameter.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What was wrong with the item.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }
}

/// What was wrong with one item of a filter parameter. Input is echoed only through
/// truncated copies (at most 64 characters), so a hostile URL cannot bloat error bodies or logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// An empty item (`types=`, `types=a,,b`, an empty `where`).
    #[error("empty {what}")]
    Empty {
        /// What kind of item was empty.
        what: &'static str,
    },
    /// A type pattern longer than the longest possible event type.
    #[error("`{input}` is not a valid type pattern (longer than {max} bytes)")]
    TooLong {
        /// The pattern, truncated.
        input: String,
        /// The limit in bytes.
        max: usize,
    },
    /// A type pattern with a bad segment (uppercase, empty, `**`, …).
    #[error("`{0}` is not a valid type pattern")]
    BadTypePattern(String),
    /// A `where` clause without a recognised operator.
    #[error("`{0}` has no operator (expected one of = != ^= > >= < <=)")]
    NoOperator(String),
    /// A `where` clause whose field is not `call_sid`, `type` or `data.<key>`.
    #[error("`{0}` is not a valid field (expected call_sid, type or data.<key>, keys of A-Z a-z 0-9 _ -)")]
    BadField(String),
    /// A numeric operator whose value is not a JSON number.
    #[error("`{value}` is not a JSON number, which `{op}` needs")]
    NotANumber {
        /// The operator.
        op: &'static str,
        /// The value, truncated.
        value: String,
    },
    /// A scope name outside `[A-Za-z0-9_.-]{1,64}`.
    #[error("`{0}` is not a valid scope name (expected 1 to 64 of A-Z a-z 0-9 _ . -)")]
    BadScope(String),
}

/// Most characters of input an error message echoes.
const SNIPPET_CHARS: usize = 64;

/// A copy of `s` safe to put in an error message: at most [`SNIPPET_CHARS`]
/// characters (then `…`), with control characters escaped so they cannot forge log
/// lines.
pub(crate) fn snippet(s: &str) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let n = piece.chars().count();
        if used + n > SNIPPET_CHARS {
            out.push('…');
            break;
        }
        out.push_str(&piece);
        used += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn parse(types: Option<&str>, wheres: &[&str], scopes: Option<&str>) -> Filter {
        Filter::parse(types, wheres, scopes, ScopeGrant::All).expect("valid filter in test")
    }

    #[test]
    fn scope_grants() {
        let all = ScopeGrant::All;
        let only = ScopeGrant::only(["sup", "agent", "sup"]);
        assert_eq!(only, ScopeGrant::Only(vec!["agent".into(), "sup".into()]));
        let none = ScopeGrant::Only(vec![]);
        assert!(all.allows(None));
        assert!(all.allows(Some("anything")));
        assert!(only.allows(None));
        assert!(only.allows(Some("sup")));
        assert!(!only.allows(Some("other")));
        assert!(none.allows(None));
        assert!(!none.allows(Some("sup")));
    }

    #[test]
    fn filter_match_table() {
        let d = obj(json!({"duration": 90, "from": "+14155550100"}));
        let ev = |type_name, call_sid, scope| EventFields {
            type_name,
            call_sid,
            scope,
            data: (&d).into(),
        };
        let f_all = Filter::all(ScopeGrant::All);
        let f_types = parse(Some("call.*,*.end"), &[], None);
        let f_where = parse(
            Some("call.end"),
            &["data.duration>60", "call_sid=CA1"],
            None,
        );
        let f_sup = parse(None, &[], Some("supervisor"));
        let f_none = parse(None, &[], Some(""));
        let f_signed = Filter::parse(None, &[], None, ScopeGrant::only(["a"])).expect("valid");
        let cases: &[(&Filter, EventFields<'_>, bool)] = &[
            (&f_all, ev("call.end", None, None), true),
            (&f_all, ev("redirect", None, Some("x")), true),
            (&f_all, ev("", None, None), false),
            (&f_types, ev("call.start", None, None), true),
            (&f_types, ev("gather.end", None, None), true),
            (&f_types, ev("redirect", None, None), false),
            (&f_where, ev("call.end", Some("CA1"), None), true),
            (&f_where, ev("call.end", Some("CA2"), None), false),
            (&f_where, ev("call.end", None, None), false),
            (&f_where, ev("call.start", Some("CA1"), None), false),
            (&f_sup, ev("call.end", None, Some("supervisor")), true),
            (&f_sup, ev("call.end", None, Some("agent")), false),
            (&f_sup, ev("call.end", None, None), true),
            (&f_none, ev("call.end", None, Some("supervisor")), false),
            (&f_none, ev("call.end", None, None), true),
            (&f_signed, ev("x", None, Some("a")), true),
            (&f_signed, ev("x", None, Some("b")), false),
        ];
        for (i, (f, e, want)) in cases.iter().enumerate() {
            assert_eq!(f.matches(e), *want, "case {i}: {f:?} vs {e:?}");
        }
    }

    #[test]
    fn parse_error_names_param_and_position() {
        let long_scope = "s".repeat(65);
        /// `(types, wheres, scopes, expected param, expected index)`.
        type Case<'a> = (
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
            &'a str,
            usize,
        );
        let cases: &[Case<'_>] = &[
            (Some(""), &[], None, "types", 0),
            (Some("call.*,,say.*"), &[], None, "types", 1),
            (Some("call.*,"), &[], None, "types", 1),
            (Some("Call.Start"), &[], None, "types", 0),
            (Some("a,b,c.**"), &[], None, "types", 2),
            (None, &["data.a=1", "data.x~1"], None, "where", 1),
            (None, &[""], None, "where", 0),
            (None, &["nope=1"], None, "where", 0),
            (None, &["data.n>x"], None, "where", 0),
            (None, &[], Some("a,b c"), "scopes", 1),
            (None, &[], Some("a,"), "scopes", 1),
            (None, &[], Some(long_scope.as_str()), "scopes", 0),
            (None, &[], Some("ok,sc/pe"), "scopes", 1),
        ];
        for (types, wheres, scopes, param, index) in cases {
            let err = Filter::parse(*types, wheres, *scopes, ScopeGrant::All)
                .expect_err("should be rejected");
            assert_eq!(err.param(), *param, "{err}");
            assert_eq!(err.index(), *index, "{err}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("{param}[{index}]: ")),
                "message should name the parameter: {msg}"
            );
        }
        let err = Filter::parse(None, &["data.a=1", "data.x~1"], None, ScopeGrant::All)
            .expect_err("bad where");
        assert_eq!(
            err.to_string(),
            "where[1]: `data.x~1` has no operator (expected one of = != ^= > >= < <=)"
        );
        let err =
            Filter::parse(Some("Call.Start"), &[], None, ScopeGrant::All).expect_err("bad type");
        assert_eq!(
            err.to_string(),
            "types[0]: `Call.Start` is not a valid type pattern"
        );
    }

    #[test]
    fn messages_are_bounded() {
        let huge = "X".repeat(100_000);
        let with_ctl = format!("{}\n\u{1b}[31m", "Y".repeat(10));
        for (types, wheres, scopes) in [
            (Some(huge.as_str()), vec![], None),
            (None, vec![huge.as_str()], None),
            (None, vec![&*format!("data.x>{huge}")], None),
            (None, vec![&*format!("{huge}=1")], None),
            (None, vec![], Some(huge.as_str())),
            (None, vec![], Some(with_ctl.as_str())),
        ] {
            let err = Filter::parse(types, &wheres, scopes, ScopeGrant::All).expect_err("bad");
            let msg = err.to_string();
            assert!(msg.chars().count() < 200, "too long: {msg}");
            assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
        }
    }

    #[test]
    fn canonical_key_ignores_order_and_duplicates() {
        let a = parse(
            Some("call.*,say.end,call.*"),
            &["data.x=1", "call_sid=CA1", "data.x=1"],
            Some("b,a,b"),
        );
        let b = parse(
            Some("say.end,call.*"),
            &["call_sid=CA1", "data.x=1"],
            Some("a,b"),
        );
        assert_eq!(a, b);
        assert_eq!(a.canonical_key(), b.canonical_key());
        assert_eq!(a.types_text(), ["call.*", "say.end"]);
        assert_eq!(a.wheres_text(), ["call_sid=CA1", "data.x=1"]);
        assert_eq!(a.scopes_text(), Some(vec!["a".to_owned(), "b".to_owned()]));

        let c = Filter::from_parts(
            vec!["call.*".into(), "say.end".into()],
            vec!["data.x=1".into(), "call_sid=CA1".into()],
            Some(vec!["b".into(), "a".into()]),
            ScopeGrant::All,
        )
        .expect("valid");
        assert_eq!(a.canonical_key(), c.canonical_key());

        // Different filters, different keys, including ones a naive join would merge.
        let distinct = [
            parse(None, &[], None),
            parse(None, &[], Some("")),
            parse(Some("a"), &[], None),
            parse(Some("a,b"), &[], None),
            parse(Some("a.b"), &[], None),
            parse(None, &["data.x=a,b"], None),
            parse(None, &["data.x=a", "data.y=b"], None),
            parse(None, &["data.x=a|W1;8:data.y=b"], None),
            parse(None, &[], Some("a")),
            parse(None, &[], Some("a,b")),
            parse(None, &[], Some("a.b")),
        ];
        let mut keys: Vec<String> = distinct.iter().map(Filter::canonical_key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), distinct.len(), "{keys:?}");
    }

    #[test]
    fn absent_and_empty_scopes() {
        let basic = parse(None, &[], None);
        assert_eq!(basic.scopes(), &ScopeGrant::All);
        assert_eq!(basic.scopes_text(), None);
        let empty = parse(None, &[], Some(""));
        assert_eq!(empty.scopes(), &ScopeGrant::Only(vec![]));
        assert_eq!(empty.scopes_text(), Some(vec![]));
        // from_parts: an empty scopes list is the same as none.
        let fp = Filter::from_parts(vec![], vec![], Some(vec![]), ScopeGrant::All).expect("ok");
        assert_eq!(fp.scopes(), &ScopeGrant::All);
        let fp =
            Filter::from_parts(vec![], vec![], None, ScopeGrant::only(["z", "y"])).expect("ok");
        assert_eq!(fp.scopes_text(), Some(vec!["y".to_owned(), "z".to_owned()]));
        // A hand-built unsorted absent grant is normalised too.
        let f = Filter::parse(
            None,
            &[],
            None,
            ScopeGrant::Only(vec!["b".into(), "a".into()]),
        )
        .expect("ok");
        assert_eq!(f.scopes(), &ScopeGrant::only(["a", "b"]));
        assert!(Filter::all(ScopeGrant::All).type_patterns().is_empty());
        assert!(Filter::all(ScopeGrant::All).types_text().is_empty());
    }

    #[test]
    fn from_parts_validates_items() {
        let err = Filter::from_parts(vec!["call.*,say.*".into()], vec![], None, ScopeGrant::All)
            .expect_err("comma inside one item");
        assert_eq!((err.param(), err.index()), ("types", 0));
        let err = Filter::from_parts(
            vec![],
            vec!["data.a=1".into(), "data.b>x".into()],
            None,
            ScopeGrant::All,
        )
        .expect_err("bad where");
        assert_eq!((err.param(), err.index()), ("where", 1));
        let err = Filter::from_parts(
            vec![],
            vec![],
            Some(vec!["ok".into(), String::new()]),
            ScopeGrant::All,
        )
        .expect_err("empty scope");
        assert_eq!((err.param(), err.index()), ("scopes", 1));
        let err = Filter::from_parts(vec![String::new()], vec![], None, ScopeGrant::All)
            .expect_err("empty type");
        assert_eq!(err.param(), "types");
    }

    #[test]
    fn call_sid_eq() {
        assert_eq!(
            parse(None, &["data.a=1", "call_sid=CA9"], None).call_sid_eq(),
            Some("CA9")
        );
        assert_eq!(parse(None, &["call_sid!=CA9"], None).call_sid_eq(), None);
        assert_eq!(parse(None, &[], None).call_sid_eq(), None);
    }

    proptest! {
        #[test]
        fn filter_parse_never_panics(
            t in proptest::option::of(any::<String>()),
            w in proptest::collection::vec(any::<String>(), 0..4),
            s in proptest::option::of(any::<String>()),
        ) {
            let wheres: Vec<&str> = w.iter().map(String::as_str).collect();
            if let Err(e) = Filter::parse(t.as_deref(), &wheres, s.as_deref(), ScopeGrant::All) {
                let msg = e.to_string();
                prop_assert!(msg.starts_with(e.param()));
                prop_assert!(msg.chars().count() < 250);
            }
            let _ = Filter::from_parts(
                t.into_iter().collect(), w, s.map(|s| vec![s]), ScopeGrant::All);
        }

        #[test]
        fn filter_parse_likely_text_never_panics(
            t in proptest::option::of("[a-z*.,A]{0,20}"),
            w in proptest::collection::vec("(call_sid|type|data\\.[a-z.]{0,4})[=!^<>~]{0,2}[-0-9a-z.e]{0,5}", 0..4),
            s in proptest::option::of("[a-z,. /]{0,12}"),
        ) {
            let wheres: Vec<&str> = w.iter().map(String::as_str).collect();
            if let Ok(f) = Filter::parse(t.as_deref(), &wheres, s.as_deref(), ScopeGrant::All) {
                // Re-parsing the listed-back text gives the same filter.
                let types = f.types_text().join(",");
                let wt = f.wheres_text();
                let wr: Vec<&str> = wt.iter().map(String::as_str).collect();
                let st = f.scopes_text().map(|v| v.join(","));
                let again = Filter::parse(
                    (!f.types_text().is_empty()).then_some(types.as_str()),
                    &wr,
                    st.as_deref(),
                    ScopeGrant::All,
                );
                prop_assert_eq!(again.as_ref().map(Filter::canonical_key), Ok(f.canonical_key()));
                let d = Map::new();
                let _ = f.matches(&EventFields { type_name: "call.end", call_sid: None, scope: Some("a"), data: (&d).into() });
            }
        }
    }
}
