//! The front door's reading of request heads (src/http/front/head.rs): whatever
//! bytes a client sends, the lane either waits for more (only while the head is
//! short), hands them to actix-http, or takes a request whose parts lie inside the
//! bytes read and whose end is where httparse, actix-http's own parser, puts it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::http::front::head::{
    classify, Kind, Parsed, MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES,
};

fuzz_target!(|read: &[u8]| {
    match classify(read) {
        Parsed::Partial => assert!(read.len() < MAX_HEAD_BYTES, "waits only while short"),
        Parsed::Other => {}
        Parsed::Lane(head) => {
            assert!(head.len <= read.len() && head.len <= MAX_HEAD_BYTES);
            assert!(head.body_len <= MAX_BODY_BYTES);
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            assert_eq!(
                req.parse(read).ok(),
                Some(httparse::Status::Complete(head.len)),
                "the head ends where httparse says"
            );
            match head.kind {
                Kind::Stream { uri, .. } => {
                    assert_eq!(head.body_len, 0);
                    assert_eq!(req.method, Some("GET"));
                    let target = req.path.expect("a target");
                    assert!(target.starts_with(uri.path()), "{uri} from {target}");
                    assert_eq!(uri.query(), target.split_once('?').map(|(_, q)| q));
                }
                Kind::Publish(parts) => {
                    assert_eq!(req.method, Some("POST"));
                    for range in [Some(parts.sid.clone()), parts.authorization, parts.content_type]
                        .into_iter()
                        .flatten()
                    {
                        assert!(range.start <= range.end && range.end <= head.len);
                    }
                    let sid = std::str::from_utf8(&read[parts.sid]).expect("the sid is text");
                    assert!(!sid.is_empty() && !sid.contains('/'));
                    let path = req.path.expect("a path");
                    assert!(!path.contains('#'));
                    assert!(path.starts_with(&format!("/v1/Accounts/{sid}/Events")));
                }
            }
        }
    }
});
