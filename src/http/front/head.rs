//! Which requests the lane takes: a request head read from the socket is parsed
//! here, and only a plain `GET` of the stream route or a `POST` of events with a
//! small `Content-Length` body qualifies.
//!
//! Anything else, or anything in doubt, goes to actix-http with every byte read so
//! far, so the lane never has to reproduce actix-http's handling of chunked bodies,
//! upgrades, `Expect`, HTTP/1.0 or malformed heads: it serves a strict subset, and
//! for that subset it agrees with actix-http on where the request ends because both
//! read it with `httparse` and a body is only ever `Content-Length` bytes.

use std::ops::Range;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Uri;

use crate::http::account_path_sid;

/// Most headers a lane request may carry; a request with more goes to actix-http,
/// which has its own, larger limit and error.
pub const MAX_HEADERS: usize = 32;

/// Most bytes of a lane request head; a longer head goes to actix-http.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Largest body the lane reads. The lane reads a body whole before the application
/// sees the request (so before authentication), where actix-http would stop reading
/// at about 32 KB until the handler asks for more: a larger body goes to actix-http,
/// which streams it into the handler's own limit.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request head the lane serves.
#[derive(Debug, Clone)]
pub struct LaneHead {
    /// Bytes of the head, up to and including the blank line.
    pub len: usize,
    /// Bytes of body after the head (`Content-Length`; 0 for a stream).
    pub body_len: usize,
    /// The client asked for `Connection: close`.
    pub close: bool,
    /// What is asked for.
    pub kind: Kind,
}

/// What a lane request asks for.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `GET` of the stream route: served by the actix-web application, which gets
    /// the request target and every header.
    Stream {
        /// The request target, path and query as sent.
        uri: Uri,
        /// The headers as sent (duplicates kept).
        headers: HeaderMap,
    },
    /// `POST` of events: served by [`crate::http::publish::publish`], which reads
    /// the account and two headers, found here as byte ranges of the request.
    Publish(PublishParts),
}

/// Where a publish's parts are in its request's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishParts {
    /// The account sid in the path.
    pub sid: Range<usize>,
    /// The first `Authorization` value.
    pub authorization: Option<Range<usize>>,
    /// The first `Content-Type` value.
    pub content_type: Option<Range<usize>>,
}

impl LaneHead {
    /// Bytes of the whole request, head and body.
    pub fn request_len(&self) -> usize {
        self.len + self.body_len
    }
}

/// What a request head read so far is, for the lane.
#[derive(Debug)]
pub enum Parsed {
    /// Not complete yet, and still short enough to be one the lane takes.
    Partial,
    /// A request the lane serves.
    Lane(LaneHead),
    /// Anything else: actix-http's.
    Other,
}

/// Reads a request head from the bytes read so far.
pub fn classify(read: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(read) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Partial) if read.len() < MAX_HEAD_BYTES => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    match lane_head(read, &req, len) {
        Some(head) => Parsed::Lane(head),
        None => Parsed::Other,
    }
}

fn lane_head(read: &[u8], req: &httparse::Request<'_, '_>, len: usize) -> Option<LaneHead> {
    if req.version != Some(1) {
        return None;
    }
    let target = req.path?;
    // A fragment has no place in a request target; `Uri` would drop it, where the
    // lane would read it as part of the path.
    if target.contains('#') {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let publish = match req.method? {
        "GET" if account_path_sid(path, "Stream").is_some() => None,
        "POST" => Some(account_path_sid(path, "Events")?),
        _ => return None,
    };
    let mut close = false;
    let mut body_len = None;
    let mut authorization = None;
    let mut content_type = None;
    for header in req.headers.iter() {
        let name = header.name;
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
        if is("transfer-encoding") || is("upgrade") || is("expect") {
            return None;
        }
        if is("content-length") {
            // One, in plain digits, and small; a repeated length is actix-http's to
            // refuse.
            if body_len.is_some() || publish.is_none() {
                return None;
            }
            body_len = Some(content_length(header.value)?);
        } else if is("connection") {
            for option in header.value.split(|b| *b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !option.eq_ignore_ascii_case(b"keep-alive") {
                    // `upgrade`, or a hop-by-hop header list: actix-http's business.
                    return None;
                }
            }
        } else if is("authorization") && authorization.is_none() {
            authorization = Some(within(read, header.value));
        } else if is("content-type") && content_type.is_none() {
            content_type = Some(within(read, header.value));
        }
    }
    let kind = match publish {
        // A POST without a length has no body to actix-http either, but it is no
        // publish.
        Some(sid) => {
            body_len?;
            Kind::Publish(PublishParts {
                sid: within(read, sid.as_bytes()),
                authorization,
                content_type,
            })
        }
        None => Kind::Stream {
            uri: target.parse().ok()?,
            headers: header_map(req.headers)?,
        },
    };
    Some(LaneHead {
        len,
        body_len: body_len.unwrap_or(0),
        close,
        kind,
    })
}

/// The headers as actix-web's `HeaderMap`, duplicates kept.
fn header_map(headers: &[httparse::Header<'_>]) -> Option<HeaderMap> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        map.append(
            HeaderName::from_bytes(header.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(header.value).ok()?,
        );
    }
    Some(map)
}

/// Where `part`, a slice of `whole`, lies in it.
fn within(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    debug_assert!(start + part.len() <= whole.len());
    start..start + part.len()
}

/// A `Content-Length` value of at most [`MAX_BODY_BYTES`]: ASCII digits only, as
/// RFC 9110 §8.6 has it (no sign, no spaces, no list).
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 6 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: usize = std::str::from_utf8(value).ok()?.parse().ok()?;
    (n <= MAX_BODY_BYTES).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC00000000000000000000000000000b0b";

    fn get(target: &str, headers: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    }

    fn post(headers: &str) -> Vec<u8> {
        format!("POST /v1/Accounts/{SID}/Events HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    }

    fn lane(read: &[u8]) -> LaneHead {
        match classify(read) {
            Parsed::Lane(head) => head,
            other => panic!("not taken: {other:?}"),
        }
    }

    fn is_other(read: &[u8]) -> bool {
        matches!(classify(read), Parsed::Other)
    }

    #[test]
    fn a_plain_stream_request_is_taken_whole() {
        let target = format!("/v1/Accounts/{SID}/Stream?types=call.*&sig=abc");
        let mut bytes = get(&target, "Accept: text/event-stream\r\nLast-Event-ID: 7\r\n");
        let head_len = bytes.len();
        bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
        let head = lane(&bytes);
        assert_eq!(
            head.len, head_len,
            "the pipelined request is not part of it"
        );
        assert_eq!(head.request_len(), head_len);
        assert!(!head.close);
        let Kind::Stream { uri, headers } = head.kind else {
            panic!("not a stream: {head:?}");
        };
        assert_eq!(uri.to_string(), target);
        let mut headers: Vec<(&str, &[u8])> = headers
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
    fn a_publish_with_a_small_length_is_taken_with_its_body_length() {
        let mut bytes = post(
            "Content-Length: 12\r\nauthorization: Basic eA==\r\nAuthorization: no\r\n\
             Content-Type: application/json\r\n",
        );
        let head_len = bytes.len();
        bytes.extend_from_slice(b"{\"type\":\"x\"}");
        let head = lane(&bytes);
        assert_eq!((head.len, head.body_len), (head_len, 12));
        assert_eq!(head.request_len(), head_len + 12);
        let Kind::Publish(parts) = head.kind else {
            panic!("not a publish: {head:?}");
        };
        assert_eq!(&bytes[parts.sid], SID.as_bytes());
        assert_eq!(
            &bytes[parts.authorization.expect("authorization")],
            b"Basic eA==",
            "the first one"
        );
        assert_eq!(
            &bytes[parts.content_type.expect("content type")],
            b"application/json"
        );
        let Kind::Publish(parts) = lane(&post("Content-Length: 0\r\n")).kind else {
            panic!("not a publish");
        };
        assert_eq!((parts.authorization, parts.content_type), (None, None));
        let head = lane(&post(&format!("Content-Length: {MAX_BODY_BYTES}\r\n")));
        assert_eq!(head.body_len, MAX_BODY_BYTES);
    }

    #[test]
    fn publishes_without_one_plain_small_length_go_to_actix() {
        for headers in [
            "".to_owned(),
            format!("Content-Length: {}\r\n", MAX_BODY_BYTES + 1),
            "Content-Length: 5\r\nContent-Length: 5\r\n".to_owned(),
            "Content-Length: +5\r\n".to_owned(),
            "Content-Length: 5, 5\r\n".to_owned(),
            "Content-Length: 99999999999999999999\r\n".to_owned(),
            "Transfer-Encoding: chunked\r\n".to_owned(),
            "Content-Length: 5\r\nExpect: 100-continue\r\n".to_owned(),
        ] {
            assert!(is_other(&post(&headers)), "{headers}");
        }
        let sid = SID;
        let stream_post =
            format!("POST /v1/Accounts/{sid}/Stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(is_other(stream_post.as_bytes()));
        let events_get = get(&format!("/v1/Accounts/{sid}/Events"), "");
        assert!(is_other(&events_get));
    }

    #[test]
    fn connection_close_is_noted_and_keep_alive_accepted() {
        let target = format!("/v1/Accounts/{SID}/Stream");
        let head = lane(&get(&target, "Connection: keep-alive, Close\r\n"));
        assert!(head.close);
        let head = lane(&get(&target, "Connection: keep-alive\r\n"));
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
            format!("/v1/Accounts/{SID}#/Stream"),
            format!("/v1/Accounts/{SID}/Stream?x=1#y"),
        ] {
            assert!(is_other(&get(&target, "")), "{target}");
        }
        let target = format!("/v1/Accounts/{SID}/Stream");
        let put = format!("PUT {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(is_other(put.as_bytes()));
        let old = format!("GET {target} HTTP/1.0\r\nHost: x\r\n\r\n");
        assert!(is_other(old.as_bytes()));
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
            assert!(is_other(&get(&target, header)), "{header}");
        }
    }

    #[test]
    fn incomplete_heads_wait_and_malformed_or_oversized_ones_go_to_actix() {
        let target = format!("/v1/Accounts/{SID}/Stream");
        let whole = get(&target, "");
        assert!(matches!(
            classify(&whole[..whole.len() - 1]),
            Parsed::Partial
        ));
        assert!(matches!(classify(b""), Parsed::Partial));
        assert!(is_other(b"GET  HTTP/1.1\r\n\r\n"));
        assert!(is_other(b"\x00\x01\x02\r\n\r\n"));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(is_other(&get(&target, &many)), "too many headers");
        let long = format!("X-Long: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(is_other(&get(&target, &long)), "too long");
        assert!(
            is_other(&get(&target, &long)[..MAX_HEAD_BYTES]),
            "too long to be complete"
        );
    }
}
