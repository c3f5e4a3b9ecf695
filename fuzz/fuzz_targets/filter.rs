//! The subscription filter parser (docs/api.md §4 `types`, `where`, `scopes`), driven
//! with already-decoded values as the stream and control parsers pass them.
//!
//! Input: line 1 is `types`, line 2 is `scopes` (a missing line means "not
//! given"), every further line is one `where` clause.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::filter::{Filter, ScopeGrant};
use switchboard::http::ApiError;
use switchboard_fuzz::{assert_filter_round_trips, assert_refusal};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let types = lines.next();
    let scopes = lines.next();
    let wheres: Vec<&str> = lines.collect();
    for absent in [ScopeGrant::All, ScopeGrant::Only(Vec::new())] {
        match Filter::parse(types, &wheres, scopes, absent) {
            Ok(filter) => assert_filter_round_trips(&filter),
            Err(error) => {
                assert!(["types", "where", "scopes"].contains(&error.param()));
                assert_refusal(&ApiError::from(error), &["types", "where", "scopes"]);
            }
        }
    }
});
