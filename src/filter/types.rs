//! Type patterns: one item of the `types=` comma list (docs/api.md §4).
//!
//! A pattern is dot-separated segments, each a literal `[a-z0-9_]+` or `*`:
//!
//! - a `*` segment matches exactly one segment of the event type;
//! - a *trailing* `*` in a pattern of two or more segments (`call.*`, `*.*`) matches
//!   one **or more** further segments, so `call.*` matches `call.start` and
//!   `call.a.b` but not `call`;
//! - a lone `*` matches exactly one segment (single-segment types such as `redirect`).
//!
//! Patterns are parsed once at the edge into [`TypePattern`] so that matching never
//! re-validates text, and so that the canonical text (its `Display`) can be hashed
//! into aggregation keys. A pattern matches a type segment by segment in place; the
//! trie splits a type into [`Tokens`] on the stack once per walk: types are at most
//! 64 bytes, so matching never touches the heap.

use std::fmt;
use std::str::FromStr;

use super::{snippet, ParseErrorKind};

/// Longest event type and longest type pattern, in bytes (docs/api.md §2). Bounding the
/// length is what lets the matcher tokenise into a fixed stack buffer.
pub const MAX_TYPE_LEN: usize = 64;

/// Most segments a well-formed type can have: 64 bytes of one-byte segments and dots.
pub(crate) const MAX_SEGMENTS: usize = MAX_TYPE_LEN / 2 + 1;

/// How a pattern's last segment behaves; derived from the text at parse time so the
/// matcher and the trie do not have to re-inspect it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PatternKind {
    /// Every segment matches exactly one type segment (`call.end`, `*.end`, `*`).
    Exact,
    /// The last segment is a trailing `*` matching one or more further segments.
    Tail,
    /// Matches every well-formed type; only made by [`TypePattern::any`].
    Any,
}

/// One parsed, validated type pattern.
///
/// Ordering, equality and hashing follow the canonical text, which is what filters
/// sort and deduplicate by so that equal subscriptions produce equal keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypePattern {
    /// Canonical text, exactly as accepted (patterns have no alternative spellings).
    text: Box<str>,
    /// Behaviour of the final segment, cached from `text`.
    kind: PatternKind,
    /// Number of dot-separated segments in `text` (0 for [`TypePattern::any`]).
    segments: u8,
}

/// Text used for [`TypePattern::any`]; `>` can never appear in a parsed pattern, so
/// it cannot collide with one (it is NATS' name for the full wildcard).
const ANY_TEXT: &str = ">";

impl TypePattern {
    /// Parses one pattern (no commas). Errors carry a truncated copy of the input so
    /// that the HTTP layer can name what was wrong without echoing a huge parameter.
    pub fn parse(s: &str) -> Result<TypePattern, ParseErrorKind> {
        if s.is_empty() {
            return Err(ParseErrorKind::Empty {
                what: "type pattern",
            });
        }
        if s.len() > MAX_TYPE_LEN {
            return Err(ParseErrorKind::TooLong {
                input: snippet(s),
                max: MAX_TYPE_LEN,
            });
        }
        let mut segments: usize = 0;
        let mut last_is_star = false;
        for (i, seg) in s.split('.').enumerate() {
            segments += 1;
            if seg == "*" {
                last_is_star = true;
                continue;
            }
            last_is_star = false;
            let chars_ok = !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            let start_ok = i > 0 || seg.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
            if !(chars_ok && start_ok) {
                return Err(ParseErrorKind::BadTypePattern(snippet(s)));
            }
        }
        let kind = if segments >= 2 && last_is_star {
            PatternKind::Tail
        } else {
            PatternKind::Exact
        };
        Ok(TypePattern {
            text: s.into(),
            kind,
            // At most 33 segments fit in 64 bytes, so this never saturates.
            segments: u8::try_from(segments).unwrap_or(u8::MAX),
        })
    }

    /// The pattern that matches every event type. A filter with no `types` is
    /// indexed under it, so "all types" needs no special case in the trie: it is a
    /// tail at the root. It is not parseable from text, and displays as `>`.
    pub fn any() -> TypePattern {
        TypePattern {
            text: ANY_TEXT.into(),
            kind: PatternKind::Any,
            segments: 0,
        }
    }

    /// Whether this is [`TypePattern::any`].
    pub fn is_any(&self) -> bool {
        self.kind == PatternKind::Any
    }

    /// The canonical text (same as `Display`), borrowed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `type_name` matches. A malformed type (empty, longer than 64 bytes, or
    /// with an empty segment) matches nothing, not even [`TypePattern::any`]: the
    /// publisher validates types, and the index must agree with this on every input.
    pub fn matches(&self, type_name: &str) -> bool {
        well_formed(type_name) && self.matches_well_formed(type_name)
    }

    /// Matches a type already known to be [`well_formed`], segment by segment in
    /// place: a replay matches every retained event, and splitting each type into a
    /// [`Tokens`] buffer first (a 33-slot array zeroed per event) was most of a
    /// replay's matching time.
    pub(crate) fn matches_well_formed(&self, type_name: &str) -> bool {
        let mut pattern = self.text.split('.');
        let mut segments = type_name.split('.');
        match self.kind {
            PatternKind::Any => true,
            PatternKind::Exact => loop {
                match (pattern.next(), segments.next()) {
                    (Some(p), Some(t)) if p == "*" || p == t => {}
                    // Both ran out together: every segment matched.
                    (None, None) => break true,
                    _ => break false,
                }
            },
            PatternKind::Tail => {
                // The prefix is every segment but the trailing `*`; at least one
                // further type segment must follow it.
                let prefix = usize::from(self.segments).saturating_sub(1);
                pattern
                    .take(prefix)
                    .all(|p| segments.next().is_some_and(|t| p == "*" || p == t))
                    && segments.next().is_some()
            }
        }
    }

    /// The behaviour of the final segment, for the trie.
    pub(crate) fn kind(&self) -> PatternKind {
        self.kind
    }

    /// The segments the trie walks before storing a value: every segment of an exact
    /// pattern, every segment but the trailing `*` of a tail pattern, none for `any`.
    pub(crate) fn prefix_segments(&self) -> impl Iterator<Item = &str> + '_ {
        let take = match self.kind {
            PatternKind::Exact => usize::from(self.segments),
            PatternKind::Tail => usize::from(self.segments).saturating_sub(1),
            PatternKind::Any => 0,
        };
        self.text.split('.').take(take)
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for TypePattern {
    type Err = ParseErrorKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TypePattern::parse(s)
    }
}

/// Whether `type_name` is a type patterns may match: 1 to [`MAX_TYPE_LEN`] bytes with
/// no empty segment. Anything else matches nothing, not even [`TypePattern::any`]
/// (the publisher validates types, and the index must agree with every matcher).
pub(crate) fn well_formed(type_name: &str) -> bool {
    let bytes = type_name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= MAX_TYPE_LEN
                && first != b'.'
                && last != b'.'
                && !bytes.windows(2).any(|pair| pair == b"..")
        }
        _ => false,
    }
}

/// An event type split into its segments in a stack buffer, so the hot path never
/// allocates. Built only from structurally valid types (see [`Tokens::new`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tokens<'a> {
    /// Segment slots; only the first `len` are meaningful.
    buf: [&'a str; MAX_SEGMENTS],
    /// Number of segments.
    len: usize,
}

impl<'a> Tokens<'a> {
    /// Splits `type_name`, or returns `None` for a type that no pattern may match:
    /// empty, longer than [`MAX_TYPE_LEN`], or with an empty segment.
    pub(crate) fn new(type_name: &'a str) -> Option<Tokens<'a>> {
        if type_name.is_empty() || type_name.len() > MAX_TYPE_LEN {
            return None;
        }
        let mut buf = [""; MAX_SEGMENTS];
        let mut len = 0;
        for seg in type_name.split('.') {
            if seg.is_empty() {
                return None;
            }
            *buf.get_mut(len)? = seg;
            len += 1;
        }
        Some(Tokens { buf, len })
    }

    /// The segments, in order.
    pub(crate) fn as_slice(&self) -> &[&'a str] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> TypePattern {
        TypePattern::parse(s).expect("valid pattern in test")
    }

    #[test]
    fn match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("call.start", "call.start", true),
            ("call.start", "call.end", false),
            ("call.start", "call.start.x", false),
            ("call.start", "call", false),
            // trailing wildcard: one or more further segments
            ("call.*", "call.start", true),
            ("call.*", "call.a.b", true),
            ("call.*", "call", false),
            ("call.*", "say.start", false),
            ("call.*.*", "call.a", false),
            ("call.*.*", "call.a.b", true),
            ("call.*.*", "call.a.b.c", true),
            // inner wildcard: exactly one segment
            ("*.end", "call.end", true),
            ("*.end", "a.b.end", false),
            ("*.end", "end", false),
            ("call.*.end", "call.x.end", true),
            ("call.*.end", "call.x.y.end", false),
            // lone star: exactly one segment
            ("*", "redirect", true),
            ("*", "call.end", false),
            // star-star: two or more segments
            ("*.*", "call.end", true),
            ("*.*", "a.b.c", true),
            ("*.*", "redirect", false),
            ("redirect", "redirect", true),
            ("redirect", "redirect.x", false),
            ("a1.b_2", "a1.b_2", true),
            ("*.1x", "a.1x", true),
            // malformed types match nothing
            ("*", "", false),
            ("*.*", "a..b", false),
            ("call.*", "call.", false),
        ];
        for (pat, ty, want) in cases {
            assert_eq!(p(pat).matches(ty), *want, "{pat} vs {ty}");
        }
    }

    #[test]
    fn any_matches_every_wellformed_type() {
        let any = TypePattern::any();
        assert!(any.is_any());
        assert!(any.matches("redirect"));
        assert!(any.matches("call.end"));
        assert!(any.matches("a.b.c.d"));
        assert!(!any.matches(""));
        assert!(!any.matches(".x"));
        assert!(!any.matches(&"a".repeat(65)));
        assert_eq!(any.to_string(), ">");
        assert!(TypePattern::parse(">").is_err());
    }

    #[test]
    fn parse_errors() {
        let bad = [
            "",
            "Call.Start",
            "call..end",
            ".call",
            "call.",
            "1call",
            "_call",
            "call.St",
            "call.**",
            "call.*x",
            "call end",
            "call,end",
            ">",
        ];
        for s in bad {
            assert!(TypePattern::parse(s).is_err(), "{s:?} should be rejected");
        }
        let long = format!("a.{}", "b".repeat(63));
        match TypePattern::parse(&long) {
            Err(ParseErrorKind::TooLong { max, .. }) => assert_eq!(max, 64),
            other => panic!("expected TooLong, got {other:?}"),
        }
        // 64 bytes exactly is fine
        assert!(TypePattern::parse(&"a".repeat(64)).is_ok());
        assert!(TypePattern::parse("*").is_ok());
        assert!(TypePattern::parse("*.*").is_ok());
        assert!(TypePattern::parse("*.end").is_ok());
        assert!(TypePattern::parse("call.*.x").is_ok());
    }

    #[test]
    fn kinds_and_display() {
        assert_eq!(p("call.*").kind(), PatternKind::Tail);
        assert_eq!(p("*.*").kind(), PatternKind::Tail);
        assert_eq!(p("*").kind(), PatternKind::Exact);
        assert_eq!(p("*.end").kind(), PatternKind::Exact);
        assert_eq!(p("call.*.end").to_string(), "call.*.end");
        assert_eq!(p("call.*").prefix_segments().collect::<Vec<_>>(), ["call"]);
        assert_eq!(
            p("*.end").prefix_segments().collect::<Vec<_>>(),
            ["*", "end"]
        );
        let parsed: TypePattern = "say.end".parse().expect("valid");
        assert_eq!(parsed, p("say.end"));
    }

    #[test]
    fn tokens_bounds() {
        let max = ["a"; 32].join(".");
        assert_eq!(max.len(), 63);
        assert_eq!(Tokens::new(&max).map(|t| t.as_slice().len()), Some(32));
        assert!(Tokens::new("").is_none());
        assert!(Tokens::new("a..b").is_none());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = TypePattern::parse(&s);
            let _ = TypePattern::any().matches(&s);
        }

        #[test]
        fn parse_and_match_never_panic_on_likely_text(
            s in "[a-z0-9_.*A-Z,>]{0,70}",
            t in "[a-z0-9_.]{0,70}",
        ) {
            if let Ok(pat) = TypePattern::parse(&s) {
                prop_assert_eq!(pat.to_string(), s);
                let _ = pat.matches(&t);
            }
        }

        /// The in-place matcher agrees with matching the split segments, and
        /// `well_formed` with what `Tokens` accepts (what the trie walks).
        #[test]
        fn in_place_matching_agrees_with_split_segments(
            s in "[a-c*]{1,2}(\\.[a-c*]{1,2}){0,3}",
            t in "[a-c.]{0,9}",
        ) {
            prop_assert_eq!(well_formed(&t), Tokens::new(&t).is_some());
            if let (Ok(pat), Some(tokens)) = (TypePattern::parse(&s), Tokens::new(&t)) {
                let tokens = tokens.as_slice();
                let pattern: Vec<&str> = s.split('.').collect();
                let same = |(p, t): (&&str, &&str)| *p == "*" || p == t;
                let want = match pat.kind() {
                    PatternKind::Tail => tokens.len() >= pattern.len()
                        && pattern[..pattern.len() - 1].iter().zip(tokens).all(same),
                    _ => tokens.len() == pattern.len()
                        && pattern.iter().zip(tokens).all(same),
                };
                prop_assert_eq!(pat.matches(&t), want, "{} vs {}", s, t);
            }
        }
    }
}
