//! The bytes of an HTTP/1.1 response on the lane: the head as actix-http's
//! encoder writes it (status line, framing header, the response's headers in lower
//! case, `date`), and chunked framing for streamed bodies.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `content-length: N`.
    Length(u64),
    /// `transfer-encoding: chunked`: a stream of unknown length.
    Chunked,
}

/// The last chunk of a chunked body (no trailers).
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl Framing {
    /// What ends the body on the wire: the last chunk, or nothing for a sized body.
    pub fn end(self) -> &'static [u8] {
        match self {
            Framing::Chunked => LAST_CHUNK,
            Framing::Length(_) => &[],
        }
    }
}

/// What ends each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The response head. Headers that describe the connection or the framing
/// (`content-length`, `transfer-encoding`, `connection`) come from `framing` and
/// `close`, not from the map; `date` is added unless the response has one.
pub fn head(
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    close: bool,
    date: &str,
) -> Vec<u8> {
    let lines = headers
        .iter()
        .filter(|(name, _)| {
            ![
                header::CONTENT_LENGTH,
                header::TRANSFER_ENCODING,
                header::CONNECTION,
            ]
            .contains(name)
        })
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    let date = (!headers.contains_key(header::DATE)).then_some(date);
    head_of(status, lines, framing, close, date)
}

/// A head with these header lines (lower-case names, no framing or connection
/// header among them), written in the order of [`head`]; `date` if the lines have
/// none. For a response the lane makes itself, with no `HeaderMap` to build.
pub fn head_of<'h>(
    status: StatusCode,
    lines: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    framing: Framing,
    close: bool,
    date: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    for (name, value) in lines {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(date) = date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The size line that opens a chunk of `len` bytes (`{len:x}\r\n`), on the stack.
pub fn chunk_start(len: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let digits = if len == 0 {
        1
    } else {
        (usize::BITS - len.leading_zeros()).div_ceil(4) as usize
    };
    for (i, slot) in line[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = b"0123456789abcdef"[(len >> shift) & 0xf];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    (line, digits + 2)
}

/// Calls `f` with the current `date:` value, formatted at most once a second on each
/// thread (actix-http and nginx cache theirs the same way): formatting it took about
/// as long as the rest of a publish's response head.
pub fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static DATE: std::cell::RefCell<(i64, String)> = const {
            std::cell::RefCell::new((i64::MIN, String::new()))
        };
    }
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        let now = chrono::Utc::now();
        if cached.0 != now.timestamp() {
            *cached = (now.timestamp(), http_date(now));
        }
        f(&cached.1)
    })
}

/// An HTTP date (RFC 9110 §5.6.7) for `date:`.
pub fn http_date(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn a_streamed_head_carries_chunked_framing_the_headers_and_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        let text = head(
            StatusCode::OK,
            &headers,
            Framing::Chunked,
            false,
            "Wed, 02 Dec 2026 08:00:00 GMT",
        );
        let text = String::from_utf8(text).unwrap();
        let mut lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[..2],
            ["HTTP/1.1 200 OK", "transfer-encoding: chunked"]
        );
        assert_eq!(
            lines[lines.len() - 3..],
            ["date: Wed, 02 Dec 2026 08:00:00 GMT", "", ""]
        );
        let end = lines.len() - 3;
        let middle = &mut lines[2..end];
        middle.sort_unstable();
        assert_eq!(
            middle,
            ["content-type: text/event-stream", "x-accel-buffering: no"],
            "the map's own content-length is not copied"
        );
    }

    #[test]
    fn a_sized_head_has_its_length_and_close_and_keeps_its_own_date() {
        let mut headers = HeaderMap::new();
        headers.insert(header::DATE, HeaderValue::from_static("then"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let text = head(
            StatusCode::UNAUTHORIZED,
            &headers,
            Framing::Length(42),
            true,
            "now",
        );
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 42\r\nconnection: close\r\n\
             date: then\r\n\r\n"
        );
    }

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        for len in [0usize, 1, 9, 10, 15, 16, 255, 256, 0x3_ffff, usize::MAX] {
            let (line, n) = chunk_start(len);
            assert_eq!(
                std::str::from_utf8(&line[..n]).unwrap(),
                format!("{len:x}\r\n")
            );
        }
    }

    #[test]
    fn the_cached_date_is_the_current_second() {
        let before = http_date(chrono::Utc::now());
        let cached = with_date(str::to_owned);
        let after = http_date(chrono::Utc::now());
        assert!(cached == before || cached == after, "{cached}");
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let at = chrono::DateTime::from_timestamp(1_796_198_400, 0).unwrap();
        assert_eq!(http_date(at), "Wed, 02 Dec 2026 08:00:00 GMT");
    }
}
