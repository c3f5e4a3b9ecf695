//! A minimal keep-alive HTTP/1.1 client on a tokio `TcpStream`: write a prepared
//! request, read a status line, headers and a `Content-Length` or chunked body. A
//! general client (reqwest) costs several times more CPU per request than the server
//! spends answering it; this one reuses one buffer per connection and allocates
//! nothing per request, so one core can drive the server at full speed.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Most headers in one response head.
const MAX_HEADERS: usize = 48;
/// Largest response head.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body read into memory (streams are read incrementally instead).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket failed or the peer closed it.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection before a whole response.
    #[error("connection closed before a complete response")]
    Closed,
    /// The response head is not HTTP/1.1 as this client reads it.
    #[error("malformed response head: {0}")]
    Head(String),
    /// The head or the body is larger than this client accepts.
    #[error("response too large")]
    TooLarge,
    /// A chunked body is malformed.
    #[error("malformed chunked body")]
    Chunked,
}

/// A server address and the `Host` header to send it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port` as given in the URL).
    pub host: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/]` and resolves the host once.
    pub async fn resolve(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("{url}: give the server's base URL without a path"));
        }
        let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: the host resolves to no address"))?;
        Ok(Endpoint {
            addr,
            host: authority.to_owned(),
        })
    }
}

/// The parsed head of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How the body is framed.
    pub body: Framing,
    /// Whether the server will close the connection after this response.
    pub close: bool,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the connection closes.
    UntilClose,
}

/// Parses a response head at the start of `buf`: `Ok(Some((head, len)))` when it is
/// complete (`len` bytes long), `Ok(None)` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HttpError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::Head(e.to_string())),
    };
    let status = response
        .code
        .ok_or_else(|| HttpError::Head("no status".into()))?;
    let mut close = response.version == Some(0);
    let mut body = Framing::UntilClose;
    for header in response.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(value).map_err(|_| HttpError::Head("length".into()))?;
            let n = text
                .trim()
                .parse::<u64>()
                .map_err(|_| HttpError::Head(format!("Content-Length {text:?}")))?;
            if body != Framing::Chunked {
                body = Framing::Length(n);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if contains_token(value, b"chunked") {
                body = Framing::Chunked;
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = contains_token(value, b"close");
        }
    }
    // 1xx, 204 and 304 have no body whatever the headers say.
    if status < 200 || status == 204 || status == 304 {
        body = Framing::Length(0);
    }
    Ok(Some((
        Head {
            status,
            body,
            close,
        },
        len,
    )))
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// An incremental decoder of a chunked body: feed it bytes as they arrive, it appends
/// the payload to `out` and says when the final chunk (and trailers) ended.
#[derive(Debug, Clone, Default)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hexadecimal size.
    #[default]
    Size,
    /// Skipping a chunk extension up to the line feed.
    Extension,
    /// Copying `size` bytes of data.
    Data,
    /// Expecting the CR after data.
    DataCr,
    /// Expecting the LF after data.
    DataLf,
    /// At the start of a trailer line (an empty one ends the body).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// The body is complete.
    Done,
}

/// Largest chunk this client accepts (bounds the size arithmetic).
const MAX_CHUNK: u64 = 1 << 40;

impl Chunked {
    /// A decoder at the start of a body.
    pub fn new() -> Chunked {
        Chunked::default()
    }

    /// Whether the final chunk and the trailers have been read.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes as much of `input` as it can, appending payload to `out`; returns how
    /// many bytes of `input` it used (all of them, unless the body ended first).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self.size * 16 + digit;
                        if self.size > MAX_CHUNK {
                            return Err(HttpError::Chunked);
                        }
                        i += 1;
                    }
                    b';' | b' ' | b'\t' | b'\r' => {
                        self.state = ChunkState::Extension;
                        i += 1;
                    }
                    b'\n' => {
                        self.end_size_line();
                        i += 1;
                    }
                    _ => return Err(HttpError::Chunked),
                },
                ChunkState::Extension => {
                    if b == b'\n' {
                        self.end_size_line();
                    }
                    i += 1;
                }
                ChunkState::Data => {
                    let take = (input.len() - i).min(self.size as usize);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                }
                ChunkState::DataCr => {
                    self.state = match b {
                        b'\r' => ChunkState::DataLf,
                        b'\n' => ChunkState::Size,
                        _ => return Err(HttpError::Chunked),
                    };
                    i += 1;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(HttpError::Chunked);
                    }
                    self.state = ChunkState::Size;
                    i += 1;
                }
                ChunkState::TrailerStart => {
                    self.state = match b {
                        b'\r' => ChunkState::TrailerStart,
                        b'\n' => ChunkState::Done,
                        _ => ChunkState::Trailer,
                    };
                    i += 1;
                }
                ChunkState::Trailer => {
                    if b == b'\n' {
                        self.state = ChunkState::TrailerStart;
                    }
                    i += 1;
                }
                ChunkState::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn end_size_line(&mut self) {
        self.state = if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        };
    }
}

/// One keep-alive connection with its read buffer (`buf[start..end]` is unread).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last response's body (reused).
    body: Vec<u8>,
}

impl Conn {
    /// Connects to `addr`, from `source` when given (to spread many connections over
    /// several loopback addresses), with a read buffer of `buffer` bytes.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        buffer: usize,
    ) -> io::Result<Conn> {
        let stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; buffer.max(512)],
            start: 0,
            end: 0,
            body: Vec::new(),
        })
    }

    /// Writes a whole request.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request).await
    }

    /// Reads more bytes into the buffer; 0 means the peer closed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD * 2 {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(io::Error::other("response head too large"));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads a response head, leaving what follows it unread.
    pub async fn read_head(&mut self) -> Result<Head, HttpError> {
        loop {
            if let Some((head, len)) = parse_head(&self.buf[self.start..self.end])? {
                self.start += len;
                return Ok(head);
            }
            if self.fill().await? == 0 {
                return Err(HttpError::Closed);
            }
        }
    }

    /// Reads a whole response (head and body, at most [`MAX_BODY`]); the body is then
    /// in [`Conn::body`].
    pub async fn read_response(&mut self) -> Result<Head, HttpError> {
        let head = self.read_head().await?;
        self.body.clear();
        match head.body {
            Framing::Length(n) => {
                if n > MAX_BODY as u64 {
                    return Err(HttpError::TooLarge);
                }
                let mut left = n as usize;
                loop {
                    let take = left.min(self.end - self.start);
                    self.body
                        .extend_from_slice(&self.buf[self.start..self.start + take]);
                    self.start += take;
                    left -= take;
                    if left == 0 {
                        break;
                    }
                    if self.fill().await? == 0 {
                        return Err(HttpError::Closed);
                    }
                }
            }
            Framing::Chunked => {
                let mut decoder = Chunked::new();
                loop {
                    let used = decoder.feed(&self.buf[self.start..self.end], &mut self.body)?;
                    self.start += used;
                    if decoder.done() {
                        break;
                    }
                    if self.body.len() > MAX_BODY {
                        return Err(HttpError::TooLarge);
                    }
                    if self.fill().await? == 0 {
                        return Err(HttpError::Closed);
                    }
                }
            }
            Framing::UntilClose => loop {
                self.body.extend_from_slice(&self.buf[self.start..self.end]);
                self.start = self.end;
                if self.body.len() > MAX_BODY {
                    return Err(HttpError::TooLarge);
                }
                if self.fill().await? == 0 {
                    break;
                }
            },
        }
        Ok(head)
    }

    /// The body of the last [`Conn::read_response`].
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the bytes already read past the head (the start of a streamed body).
    pub fn take_buffered(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[self.start..self.end]);
        self.start = self.end;
    }

    /// Reads whatever arrives next straight into `out` (for a streamed body), at most
    /// `out.len()` bytes; 0 means the peer closed.
    pub async fn read_raw(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.stream.read(out).await
    }
}

/// A request head: method, path and the fixed headers, without the final blank line.
pub fn request_head(method: &str, path: &str, host: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.into_bytes()
}

/// Appends `head`, a `Content-Length` for `body`, the blank line and `body` to `out`.
pub fn finish_request(out: &mut Vec<u8>, head: &[u8], body: &[u8]) {
    use std::io::Write;
    out.extend_from_slice(head);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// The `Authorization` value for Basic credentials.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_with_length() {
        let raw = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\ncontent-length: 5\r\n\r\nhello";
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.status, 202);
        assert_eq!(head.body, Framing::Length(5));
        assert!(!head.close);
        assert_eq!(&raw[len..], b"hello");
    }

    #[test]
    fn partial_heads_ask_for_more() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Len";
        assert!(parse_head(raw).unwrap().is_none());
        assert!(parse_head(b"").unwrap().is_none());
    }

    #[test]
    fn chunked_and_close_are_recognised() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\nConnection: keep-alive, close\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.body, Framing::Chunked);
        assert!(head.close);
        let raw = b"HTTP/1.0 200 OK\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.body, Framing::UntilClose);
        assert!(head.close);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_head(b"SMTP ready\r\n\r\n"),
            Err(HttpError::Head(_))
        ));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        let long = vec![b'a'; MAX_HEAD + 10];
        let mut raw = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        raw.extend_from_slice(&long);
        assert!(matches!(parse_head(&raw), Err(HttpError::TooLarge)));
    }

    #[test]
    fn no_body_statuses() {
        let raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.body, Framing::Length(0));
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let raw = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..raw.len() {
            let mut d = Chunked::new();
            let mut out = Vec::new();
            let used1 = d.feed(&raw[..split], &mut out).unwrap();
            if !d.done() {
                assert_eq!(used1, split, "a body not yet ended takes every byte");
            }
            let used2 = d.feed(&raw[used1..], &mut out).unwrap();
            assert!(d.done(), "split {split}");
            assert_eq!(out, b"hello, world");
            assert_eq!(&raw[used1 + used2..], b"NEXT", "split {split}");
        }
    }

    #[test]
    fn bad_chunks_are_errors() {
        let mut d = Chunked::new();
        assert!(d.feed(b"zz\r\n", &mut Vec::new()).is_err());
        let mut d = Chunked::new();
        assert!(d.feed(b"2\r\nabX", &mut Vec::new()).is_err());
        let mut d = Chunked::new();
        assert!(d.feed(b"fffffffffffffffffff\r\n", &mut Vec::new()).is_err());
    }
}
