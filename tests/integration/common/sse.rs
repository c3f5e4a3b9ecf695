//! A small Server-Sent Events reader over reqwest's `bytes_stream()`.
//!
//! It parses what the HTML spec's EventSource parses (lines ending in `\n`
//! or `\r\n`; `id:`, `data:` (joined by `\n` when repeated), comment lines
//! starting with `:`; a blank line ends a frame) and hands back frames one
//! at a time. Every read takes a timeout: a server that stays silent fails
//! the test with `SseError::Timeout` instead of hanging it.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// One dispatched SSE event: its `id:` line and its `data:` parsed as JSON.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: Value,
}

impl SseEvent {
    /// The event's `type` field.
    pub fn ty(&self) -> &str {
        self.data["type"].as_str().unwrap_or("")
    }

    /// The test marker `data.n` of a delivered event, as text.
    pub fn marker(&self) -> Option<String> {
        match &self.data["data"]["n"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// What the reader yields: an event, or a comment line (heartbeat).
#[derive(Debug, Clone)]
pub enum SseFrame {
    Event(SseEvent),
    Comment(String),
}

#[derive(Debug)]
pub enum SseError {
    /// Nothing (or not the awaited thing) arrived in time.
    Timeout(Duration),
    /// The server closed the stream.
    Eof,
    /// The connection failed.
    Transport(String),
    /// A `data:` payload was not JSON.
    BadData(String),
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::Timeout(after) => write!(f, "timed out after {after:?}"),
            SseError::Eof => write!(f, "stream closed by the server"),
            SseError::Transport(err) => write!(f, "transport error: {err}"),
            SseError::BadData(data) => write!(f, "data is not JSON: {data:?}"),
        }
    }
}

/// `collect_until` failed: why, and what had arrived until then.
pub struct Incomplete {
    pub error: SseError,
    pub collected: Vec<SseEvent>,
}

impl fmt::Debug for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {} events", self.error, self.collected.len())?;
        let skip = self.collected.len().saturating_sub(5);
        for ev in &self.collected[skip..] {
            write!(f, "\n  … {}", ev.data)?;
        }
        Ok(())
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open SSE response being read frame by frame.
pub struct SseStream {
    pub headers: HeaderMap,
    body: ByteStream,
    buf: Vec<u8>,
    pending: VecDeque<SseFrame>,
    id: Option<String>,
    data: Option<String>,
    eof: bool,
    /// Comment lines seen so far (heartbeats).
    pub comments: usize,
}

impl SseStream {
    pub fn new(resp: reqwest::Response) -> SseStream {
        SseStream {
            headers: resp.headers().clone(),
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
            pending: VecDeque::new(),
            id: None,
            data: None,
            eof: false,
            comments: 0,
        }
    }

    /// Parses every complete line in the buffer into `pending`.
    fn parse_lines(&mut self) -> Result<(), SseError> {
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                let id = self.id.take();
                if let Some(data) = self.data.take() {
                    let data = serde_json::from_str(&data).map_err(|_| SseError::BadData(data))?;
                    self.pending
                        .push_back(SseFrame::Event(SseEvent { id, data }));
                }
            } else if let Some(comment) = line.strip_prefix(':') {
                self.comments += 1;
                self.pending
                    .push_back(SseFrame::Comment(comment.to_string()));
            } else {
                let (field, value) = match line.split_once(':') {
                    Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                    None => (line.as_str(), ""),
                };
                match field {
                    "id" => self.id = Some(value.to_string()),
                    "data" => match &mut self.data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => self.data = Some(value.to_string()),
                    },
                    // `event:` and `retry:` are legal SSE but unused here.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The next frame (event or comment), waiting at most `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> Result<SseFrame, SseError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(frame);
            }
            if self.eof {
                return Err(SseError::Eof);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Err(SseError::Timeout(timeout)),
                Ok(None) => self.eof = true,
                Ok(Some(Err(err))) => return Err(SseError::Transport(err.to_string())),
                Ok(Some(Ok(chunk))) => {
                    self.buf.extend_from_slice(&chunk);
                    self.parse_lines()?;
                }
            }
        }
    }

    /// The next event, skipping comments, waiting at most `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<SseEvent, SseError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Ok(SseFrame::Event(ev)) => return Ok(ev),
                Ok(SseFrame::Comment(_)) => {}
                Err(SseError::Timeout(_)) => return Err(SseError::Timeout(timeout)),
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads events until every call of `calls` has delivered its `call.end`,
    /// within `timeout` overall; returns everything read.
    pub async fn until_calls_end(
        &mut self,
        calls: &[String],
        timeout: Duration,
    ) -> Result<Vec<SseEvent>, Incomplete> {
        let mut pending: std::collections::HashSet<&str> =
            calls.iter().map(String::as_str).collect();
        self.collect_until(
            |e| {
                if e.ty() == "call.end" {
                    if let Some(call) = e.data["call_sid"].as_str() {
                        pending.remove(call);
                    }
                }
                pending.is_empty()
            },
            timeout,
        )
        .await
    }

    /// Reads events until one satisfies `pred` (included in the result),
    /// within `timeout` overall.
    pub async fn collect_until(
        &mut self,
        mut pred: impl FnMut(&SseEvent) -> bool,
        timeout: Duration,
    ) -> Result<Vec<SseEvent>, Incomplete> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut collected = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Ok(ev) => {
                    let done = pred(&ev);
                    collected.push(ev);
                    if done {
                        return Ok(collected);
                    }
                }
                Err(SseError::Timeout(_)) => {
                    return Err(Incomplete {
                        error: SseError::Timeout(timeout),
                        collected,
                    })
                }
                Err(error) => return Err(Incomplete { error, collected }),
            }
        }
    }

    /// Reads until the event whose `data.n` marker is `marker` (included).
    pub async fn until_marker(&mut self, marker: &str, timeout: Duration) -> Vec<SseEvent> {
        self.collect_until(|ev| ev.marker().as_deref() == Some(marker), timeout)
            .await
            .unwrap_or_else(|inc| panic!("waiting for marker {marker:?}: {inc:?}"))
    }

    /// Reads the first event and checks it is the `stream.open` notice.
    pub async fn expect_open(&mut self) -> SseEvent {
        let open = self
            .next_event(super::WAIT)
            .await
            .unwrap_or_else(|err| panic!("waiting for stream.open: {err}"));
        assert_eq!(
            open.ty(),
            "stream.open",
            "first event of a stream: {}",
            open.data
        );
        open
    }
}
