//! The TwiML parser (docs/api.md §7): an application's document is either verbs or
//! Twilio's 12100 with a message small enough to put in `call.error` and the logs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::twiml::{parse, DOCUMENT_PARSE_FAILURE};
use switchboard_fuzz::assert_bounded_message;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = parse(xml) {
        assert_eq!(error.code(), DOCUMENT_PARSE_FAILURE);
        assert_bounded_message(&error.to_string());
    }
});
