//! An entry of the cluster's bucket of shared client sessions (docs/cluster.md,
//! "Client sessions"): bytes anyone with NATS credentials could write. Decoding is
//! bounded and never panics, and a subscription is rebuilt only with a well-formed
//! sid and a filter that parses, which lists back as it was written.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::cluster::clients::{decode_entry, SharedSub, MAX_ENTRY_BYTES};

fuzz_target!(|bytes: &[u8]| {
    let Ok(subs) = decode_entry(bytes) else {
        return;
    };
    assert!(bytes.len() <= MAX_ENTRY_BYTES, "bounded");
    for sub in &subs {
        let Ok(subscription) = sub.subscription() else {
            continue;
        };
        assert!(sub.sid.starts_with("SU") && sub.sid.len() == 34, "sid checked");
        assert!(subscription.callback.is_none(), "never a webhook");
        // Rebuilt filters read back in canonical form: rebuilding again is stable.
        let again = SharedSub {
            sid: sub.sid.clone(),
            types: subscription.filter.types_text(),
            wheres: subscription.filter.wheres_text(),
            scopes: subscription.filter.scopes_text(),
            expires: sub.expires,
        };
        let twice = again.subscription().expect("a canonical filter parses");
        assert_eq!(twice.filter, subscription.filter, "stable");
    }
});
