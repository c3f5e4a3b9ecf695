//! Which connections the stream lane takes: the first request head, peeked from the
//! socket, is read here, and only a plain `GET` of the stream route qualifies.
//!
//! Anything else, or anything in doubt, goes to actix-http untouched (nothing was
//! consumed), so the lane never has to reproduce actix-http's handling of bodies,
//! upgrades, `Expect`, HTTP/1.0 or malformed heads: it serves a strict subset, and
//! for that subset it agrees with actix-http on where the request ends because both
//! read it with `httparse`.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Uri;

/// Most headers a lane request may carry; a request with more goes to actix-http,
/// which has its own, larger limit and error.
pub const MAX_HEADERS: usize = 32;

/// Most bytes of a lane request head; a longer head goes to actix-http.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The route prefix and suffix of `GET /v1/Accounts/{AccountSid}/Stream`.
const PREFIX: &str = "/v1/Accounts/";
const SUFFIX: &str = "/Stream";

/// A request head the lane serves.
#[derive(Debug, Clone)]
pub struct LaneHead {
    /// Bytes of the head, up to and including the blank line: what the lane consumes
    /// from the socket, leaving anything pipelined after it in place.
    pub len: usize,
    /// The request target, path and query as sent.
    pub uri: Uri,
    /// The headers as sent (duplicates kept).
    pub headers: HeaderMap,
    /// The client asked for `Connection: close`.
    pub close: bool,
}

/// Reads a peeked request head. `None` when it is not (or not yet) one the lane
/// serves: incomplete, malformed, not `GET` of the stream route over HTTP/1.1, or
/// carrying a body, an upgrade, an `Expect`, or more than [`MAX_HEADERS`] headers.
pub fn classify(peeked: &[u8]) -> Option<LaneHead> {
    let peeked = &peeked[..peeked.len().min(MAX_HEAD_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(peeked) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let target = req.path?;
    if !is_stream_route(target) {
        return None;
    }
    let uri: Uri = target.parse().ok()?;
    let mut close = false;
    let mut kept = HeaderMap::with_capacity(req.headers.len());
    for header in req.headers.iter() {
        let name = header.name;
        if ["content-length", "transfer-encoding", "upgrade", "expect"]
            .iter()
            .any(|refused| name.eq_ignore_ascii_case(refused))
        {
            return None;
        }
        if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|b| *b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !option.eq_ignore_ascii_case(b"keep-alive") {
                    // `upgrade`, or a hop-by-hop header list: actix-http's business.
                    return None;
                }
            }
        }
        kept.append(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_bytes(header.value).ok()?,
        );
    }
    Some(LaneHead {
        len,
        uri,
        headers: kept,
        close,
    })
}

/// `/v1/Accounts/{sid}/Stream`, optionally with a query: one non-empty segment
/// between prefix and suffix, as actix-web's router would match it.
fn is_stream_route(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|sid| !sid.is_empty() && !sid.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC00000000000000000000000000000b0b";

    fn get(target: &str, headers: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn a_plain_stream_request_is_taken_whole() {
        let target = format!("/v1/Accounts/{SID}/Stream?types=call.*&sig=abc");
        let mut bytes = get(&target, "Accept: text/event-stream\r\nLast-Event-ID: 7\r\n");
        let head_len = bytes.len();
        bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
        let head = classify(&bytes).expect("taken");
        assert_eq!(head.len, head_len, "the pipelined request is left in place");
        assert_eq!(head.uri.to_string(), target);
        assert!(!head.close);
        let mut headers: Vec<(&str, &[u8])> = head
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        headers.sort();
        assert_eq!(
            headers,
            vec![
                ("accept", &b"text/event-stream"[..]),
                ("host", b"x"),
                ("last-event-id", b"7"),
            ]
        );
    }

    #[test]
    fn connection_close_is_noted_and_keep_alive_accepted() {
        let target = format!("/v1/Accounts/{SID}/Stream");
        let head = classify(&get(&target, "Connection: keep-alive, Close\r\n")).unwrap();
        assert!(head.close);
        let head = classify(&get(&target, "Connection: keep-alive\r\n")).unwrap();
        assert!(!head.close);
    }

    #[test]
    fn other_routes_methods_and_versions_go_to_actix() {
        for target in [
            "/v1/Accounts//Stream".to_owned(),
            format!("/v1/Accounts/{SID}/Streams"),
            format!("/v1/Accounts/{SID}/x/Stream"),
            format!("/v1/Accounts/{SID}/Subscriptions"),
            format!("/v1/Accounts/{SID}/Stream/"),
            "/healthz".to_owned(),
            "*".to_owned(),
        ] {
            assert!(classify(&get(&target, "")).is_none(), "{target}");
        }
        let target = format!("/v1/Accounts/{SID}/Stream");
        let post = format!("POST {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(classify(post.as_bytes()).is_none());
        let old = format!("GET {target} HTTP/1.0\r\nHost: x\r\n\r\n");
        assert!(classify(old.as_bytes()).is_none());
    }

    #[test]
    fn bodies_upgrades_and_expectations_go_to_actix() {
        let target = format!("/v1/Accounts/{SID}/Stream");
        for header in [
            "Content-Length: 0\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Upgrade: websocket\r\nConnection: Upgrade\r\n",
            "Connection: upgrade\r\n",
            "Connection: keep-alive, X-Hop\r\n",
            "Expect: 100-continue\r\n",
        ] {
            assert!(classify(&get(&target, header)).is_none(), "{header}");
        }
    }

    #[test]
    fn incomplete_malformed_and_oversized_heads_go_to_actix() {
        let target = format!("/v1/Accounts/{SID}/Stream");
        let whole = get(&target, "");
        assert!(classify(&whole[..whole.len() - 1]).is_none(), "incomplete");
        assert!(classify(b"GET  HTTP/1.1\r\n\r\n").is_none());
        assert!(classify(b"\x00\x01\x02\r\n\r\n").is_none());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(classify(&get(&target, &many)).is_none(), "too many headers");
        let long = format!("X-Long: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(classify(&get(&target, &long)).is_none(), "too long");
    }
}
