//! Invariants the fuzz targets share, so each target states what must hold of its
//! parser's output instead of only "it did not panic".
//!
//! Refusals of untrusted input are answered to the sender and often logged, so
//! they must be client errors, name the field at fault first, and stay small
//! whatever the input (parsers quote at most 64 characters of it).

use switchboard::filter::{EventFields, Filter};
use switchboard::http::ApiError;

/// Longest refusal message any parser may produce: a few quoted snippets of at most
/// 64 characters (up to 4 bytes each) and the explanation around them.
pub const MAX_MESSAGE_BYTES: usize = 512;

/// Asserts that `error` is a 4xx whose message starts with one of `names` followed
/// by `:` or `[` (the field, or the field's item), and is bounded in size.
pub fn assert_refusal(error: &ApiError, names: &[&str]) {
    assert_bounded_refusal(error);
    let named = names.iter().any(|name| {
        error
            .message
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('['))
    });
    assert!(
        named,
        "refusal does not start with {names:?}: {}",
        error.message
    );
}

/// Asserts that `error` is a 4xx with a message of at most [`MAX_MESSAGE_BYTES`].
pub fn assert_bounded_refusal(error: &ApiError) {
    assert!(
        error.status.is_client_error(),
        "refusal is not a 4xx: {error}"
    );
    assert_bounded_message(&error.message);
}

/// Asserts that a refusal message is at most [`MAX_MESSAGE_BYTES`].
pub fn assert_bounded_message(message: &str) {
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "refusal message of {} bytes echoes the input: {}…",
        message.len(),
        message.chars().take(200).collect::<String>()
    );
}

/// Asserts that a parsed filter survives what the control channel does with it:
/// listing renders it as text, and an update rebuilds it from that text. The
/// rebuilt filter must be the same filter (same canonical key), or a client's
/// subscription would change meaning when it changes only its `expires`.
pub fn assert_filter_round_trips(filter: &Filter) {
    let rebuilt = Filter::from_parts(
        filter.types_text(),
        filter.wheres_text(),
        filter.scopes_text(),
        filter.scopes().clone(),
    )
    .unwrap_or_else(|e| panic!("the filter's own text is refused: {e}; {filter:?}"));
    assert_eq!(
        rebuilt.canonical_key(),
        filter.canonical_key(),
        "the filter changed when rebuilt from its text"
    );
    for event in sample_events() {
        let fields = EventFields {
            type_name: event.0,
            call_sid: event.1,
            scope: event.2,
            data: (&event.3).into(),
        };
        assert_eq!(filter.matches(&fields), rebuilt.matches(&fields));
    }
}

/// A few events of different shapes to run matching on (it must not panic on any
/// filter, and equal filters must agree).
fn sample_events() -> Vec<(
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    serde_json::Map<String, serde_json::Value>,
)> {
    let data = |json: serde_json::Value| match json {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("sample data are objects"),
    };
    vec![
        (
            "call.start",
            Some("CA0123456789abcdef0123456789abcdef"),
            None,
            data(serde_json::json!({"from": "+14155550100", "to": "+14155550199"})),
        ),
        (
            "gather.end",
            Some("CA1"),
            Some("supervisor"),
            data(serde_json::json!({"digits": "1234", "n": 3, "x": 1.5e300, "b": true})),
        ),
        (
            "sms.received",
            None,
            Some("a"),
            data(serde_json::json!({"body": null, "n": -9_223_372_036_854_775_808i64})),
        ),
    ]
}
