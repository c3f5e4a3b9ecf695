//! The control channel's subscription bodies (docs/api.md §5): a form body, a signed
//! query, or a JSON body, then the filter a create builds from them. Each is either
//! a subscription whose filter survives listing and updating, or a 400 naming the
//! field, never an echo of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::filter::{Filter, ScopeGrant};
use switchboard::http::control::{spec_from_json, spec_from_pairs, Spec};
use switchboard::http::ApiError;
use switchboard_fuzz::{assert_bounded_refusal, assert_filter_round_trips, assert_refusal};

const FIELDS: &[&str] = &["types", "where", "scopes", "expires", "callback", "body"];

fuzz_target!(|body: &[u8]| {
    for parsed in [
        spec_from_pairs(body, false),
        spec_from_pairs(body, true),
        spec_from_json(body),
    ] {
        match parsed {
            Ok(spec) => check_filter(spec),
            Err(error) if error.message.contains(": unknown field (") => {
                assert_bounded_refusal(&error)
            }
            Err(error) => assert_refusal(&error, FIELDS),
        }
    }
});

/// Builds the filter as `create` does, for Basic auth and for a signed URL.
fn check_filter(spec: Spec) {
    for absent in [ScopeGrant::All, ScopeGrant::Only(Vec::new())] {
        match Filter::from_parts(
            spec.types.clone().unwrap_or_default(),
            spec.wheres.clone().unwrap_or_default(),
            spec.scopes.clone(),
            absent,
        ) {
            Ok(filter) => assert_filter_round_trips(&filter),
            Err(error) => assert_refusal(&ApiError::from(error), &["types", "where", "scopes"]),
        }
    }
}
