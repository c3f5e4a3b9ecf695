//! The publish body (docs/api.md §3): one object, a JSON array, or NDJSON. A body is
//! either at most `max_batch` valid events, each within `max_event_bytes` as sent,
//! or a 4xx naming `body` or `events[i]`; never part of a batch.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use switchboard::event::{is_valid_name, is_valid_type, parse_body, Draft, Limits};
use switchboard::http::ApiError;
use switchboard_fuzz::assert_refusal;

/// Small limits, so the fuzzer reaches them within its default input size.
const LIMITS: Limits = Limits {
    max_batch: 8,
    max_event_bytes: 512,
};

fuzz_target!(|body: &[u8]| {
    // One event alone is read in one pass; in a batch of one, by the batch's passes:
    // both accept it or neither, as the same event. (`{…},{…}` is no body alone but
    // two events in brackets.)
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        let batch = [&b"["[..], body, b"]"].concat();
        let alone = parse_body(body, false, LIMITS).ok();
        match parse_body(&batch, false, LIMITS).ok() {
            Some(drafts) if drafts.len() > 1 => assert!(alone.is_none(), "one body, two events"),
            batch => assert_eq!(alone, batch, "alone and as a batch of one"),
        }
    }
    for ndjson in [false, true] {
        match parse_body(body, ndjson, LIMITS) {
            Ok(drafts) => {
                assert!(!drafts.is_empty() && drafts.len() <= LIMITS.max_batch);
                for size in sent_sizes(body, ndjson) {
                    assert!(
                        size <= LIMITS.max_event_bytes,
                        "accepted a {size}-byte event"
                    );
                }
                drafts.iter().for_each(assert_valid_and_round_trips);
            }
            Err(error) => assert_refusal(&ApiError::from(error), &["body", "events"]),
        }
    }
});

/// The size of each event as the publisher sent it, read independently of
/// `parse_body` (only called on bodies it accepted).
fn sent_sizes(body: &[u8], ndjson: bool) -> Vec<usize> {
    let raws: Vec<&RawValue> = if ndjson {
        body.split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| serde_json::from_slice(line).expect("accepted line is JSON"))
            .collect()
    } else if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        serde_json::from_slice(body).expect("accepted array is JSON")
    } else {
        vec![serde_json::from_slice(body).expect("accepted body is JSON")]
    };
    raws.iter().map(|raw| raw.get().len()).collect()
}

/// Each accepted event is valid, and publishing it again as JSON gives it back.
fn assert_valid_and_round_trips(draft: &Draft) {
    assert!(is_valid_type(&draft.type_name));
    assert!(draft.call_sid.as_deref().is_none_or(is_valid_name));
    assert!(draft.scope.as_deref().is_none_or(is_valid_name));
    let json = serde_json::json!({
        "type": draft.type_name,
        "call_sid": draft.call_sid,
        "scope": draft.scope,
        "data": draft.data.map(),
    });
    let unlimited = Limits {
        max_batch: 1,
        max_event_bytes: usize::MAX,
    };
    let again = parse_body(json.to_string().as_bytes(), false, unlimited)
        .unwrap_or_else(|e| panic!("an accepted event is refused when sent again: {e}"));
    assert_eq!(again.as_slice(), std::slice::from_ref(draft));
}
