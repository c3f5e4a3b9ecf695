//! A message on the cluster's NATS stream (docs/cluster.md): bytes anyone with NATS
//! credentials could publish. Decoding is bounded and never panics; an event is
//! rebuilt only when its envelope names this account and its own id, and what is
//! rebuilt is an event whose `data` is where its offset says.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use switchboard::account::AccountIdx;
use switchboard::cluster::wire;
use switchboard::event::Event;

const SID: &str = "AC00000000000000000000000000000001";

fuzz_target!(|bytes: &[u8]| {
    let Ok(batch) = wire::decode(bytes) else {
        return;
    };
    for event in &batch.events {
        let Ok(rebuilt) = Event::from_parts(AccountIdx(0), SID, event.parts(), 65536, Instant::now(), 0)
        else {
            continue;
        };
        let json = rebuilt.json();
        let prefix = format!("{{\"id\":\"{}\",\"account_sid\":\"{SID}\"", rebuilt.id);
        assert!(json.starts_with(prefix.as_bytes()), "the envelope names the account");
        assert_eq!(rebuilt.data_json().first(), Some(&b'{'), "data is an object");
        assert!(json.len() <= 65536 + 1024 + 1, "bounded");
        // Filters may look inside: that must not panic either.
        let _ = rebuilt.fields();
    }
});
