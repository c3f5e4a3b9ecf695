//! The stream URL's query (docs/api.md §4): any query string is either a valid request
//! or a 400 naming the parameter, under Basic auth and under a signed URL.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::account::AccountIdx;
use switchboard::auth::Principal;
use switchboard::filter::ScopeGrant;
use switchboard::http::stream::params::{StreamParams, SINGLE_PARAMS};
use switchboard_fuzz::{assert_filter_round_trips, assert_refusal};

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let signed = Principal::SignedUrl {
        account: AccountIdx(0),
        expires: NOW + 60,
    };
    for principal in [Principal::Account(AccountIdx(0)), signed] {
        match StreamParams::parse(query, principal, None, NOW) {
            Ok(params) => {
                if let Some(expires) = params.expires {
                    assert!(expires > NOW, "accepted an expiry in the past");
                }
                if principal == signed {
                    // A signed URL grants only the scopes it names, never all.
                    assert_ne!(params.default_filter.scopes(), &ScopeGrant::All);
                    if let Some(filter) = &params.filter {
                        assert_ne!(filter.scopes(), &ScopeGrant::All);
                    }
                }
                if let Some(filter) = &params.filter {
                    assert_filter_round_trips(filter);
                }
            }
            Err(error) => {
                let names: Vec<&str> = SINGLE_PARAMS.iter().copied().chain(["where"]).collect();
                assert_refusal(&error, &names)
            }
        }
    }
});
