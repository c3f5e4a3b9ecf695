//! The built-in call router (docs/api.md §7, docs/call-router.md), held from the
//! outside: Twilio-style REST, the simulated network, TwiML executed against
//! an application server the test scripts (`common::twilio::AppServer`, which
//! checks every `X-Twilio-Signature` with its own implementation of Twilio's
//! algorithm), and the call events that come out on a stream.
//!
//! Every server runs with `sim.time_scale = 0.01` (simulated media a hundred
//! times faster) and `sim.ring_secs = 1.0` (the no-answer `Dial` test rings for
//! 5.0 against a shorter timeout); every wait is bounded.

mod conference;
mod dial;
mod failures;
mod held;
mod ivr;
mod parallel;
mod queue;
mod rest;
mod sms;
mod speech;

use serde_json::{json, Value};

use crate::common::twilio::{Api, EventLog};
use crate::common::TestServer;

const CALLER: &str = "+14155550100";
/// A number no account owns: the simulated far end answers it.
const EXTERNAL: &str = "+16505550199";

/// `duration` of a call resource or event: simulated seconds, written as a
/// string like Twilio's (an event may carry a number).
#[track_caller]
fn sim_seconds(value: &Value) -> f64 {
    let parsed = match value {
        Value::String(s) => s.parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    parsed.unwrap_or_else(|| panic!("duration {value} is not a number of seconds"))
}

/// A date as Twilio writes it: RFC 2822 in UTC, `Thu, 26 Nov 2026 07:20:50 +0000`.
#[track_caller]
fn assert_rfc2822(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    assert!(
        text.ends_with(" +0000") && chrono::DateTime::parse_from_rfc2822(text).is_ok(),
        "{what} {text:?} is not an RFC 2822 UTC date"
    );
}

/// Position of the first event of type `ty` in `types` at or after `from`.
#[track_caller]
fn pos(types: &[String], ty: &str, from: usize) -> usize {
    types
        .iter()
        .skip(from)
        .position(|t| t == ty)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no {ty} at or after #{from} in {types:?}"))
}

/// Provisions a number whose voice app is `voice_url`, opens a stream of
/// `types`, places a simulated inbound call and reads until its `call.end`.
async fn inbound_call_to_end(
    server: &TestServer,
    voice_url: &str,
    types: &str,
) -> (EventLog, String) {
    let api = Api::new(server, 0);
    let number = api.voice_number(voice_url).await;
    let mut log = EventLog::open(server, 0, types).await;
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.end", Some(&call)).await;
    (log, call)
}

/// The call ended with `call.error` (`error_code`) right before `call.end`,
/// and its resource reached a final status.
async fn assert_failed_cleanly(server: &TestServer, log: &EventLog, call: &str, code: u64) {
    let types = log.types_of(call);
    let n = types.len();
    assert!(
        n >= 2 && types[n - 2] == "call.error" && types[n - 1] == "call.end",
        "call.error then call.end last: {types:?}\n{}",
        log.dump()
    );
    assert_eq!(
        types.iter().filter(|t| *t == "call.error").count(),
        1,
        "one call.error: {types:?}"
    );
    let events = log.of_call(call);
    let error = &events[n - 2];
    assert_eq!(
        error["data"]["error_code"],
        json!(code),
        "call.error data.error_code (a number): {error}"
    );
    assert!(
        error["data"]["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "call.error data.error_message: {error}"
    );
    Api::new(server, 0).final_call(call).await;
}

/// The calls `GET Calls.json` lists whose `parent_call_sid` is `parent`.
async fn child_legs(api: &Api<'_>, parent: &str) -> Vec<Value> {
    let reply = api.get("Calls.json?PageSize=1000").await;
    assert_eq!(reply.status, 200, "GET Calls.json: {}", reply.text());
    let page = reply.json();
    page["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls array: {page}"))
        .iter()
        .filter(|call| call["parent_call_sid"] == json!(parent))
        .cloned()
        .collect()
}
