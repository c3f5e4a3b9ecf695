//! An incremental SSE frame reader over a byte buffer, and the cheap field scan the
//! subscribers use instead of parsing each event's JSON: at full fan-out speed the
//! client sees about a million deliveries a second, so a frame costs a line scan and
//! two substring searches, and nothing is allocated per event.

use memchr::memmem;

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One frame grew past the reader's bound without ending.
    #[error("an SSE frame exceeded {0} bytes")]
    FrameTooLarge(usize),
}

/// One dispatched frame: its `data` (lines joined by `\n`) and its `id`, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The data; `None` for a frame of comments, `retry:` or `id:` only.
    pub data: Option<&'a [u8]>,
    /// The `id:` field.
    pub id: Option<&'a [u8]>,
}

/// Accumulates stream bytes and hands out complete frames (a frame ends at a blank
/// line; lines end in `\n`, `\r\n` or `\r\n`'s `\n`).
#[derive(Debug)]
pub struct SseReader {
    buf: Vec<u8>,
    /// Where the next line starts.
    pos: usize,
    /// Where the current frame's data starts in `buf` (single data line), or in
    /// `joined` (several).
    data: Option<(usize, usize)>,
    id: Option<(usize, usize)>,
    joined: Vec<u8>,
    multi: bool,
    max_frame: usize,
    frame_start: usize,
}

impl SseReader {
    /// A reader refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> SseReader {
        SseReader {
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            data: None,
            id: None,
            joined: Vec::new(),
            multi: false,
            max_frame,
            frame_start: 0,
        }
    }

    /// The buffer to append newly received bytes to (drops what was consumed first).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        if self.frame_start > 0 {
            self.buf.drain(..self.frame_start);
            self.pos -= self.frame_start;
            let shift = self.frame_start;
            if let Some((s, e)) = self.data.as_mut().filter(|_| !self.multi) {
                *s -= shift;
                *e -= shift;
            }
            if let Some((s, e)) = self.id.as_mut() {
                *s -= shift;
                *e -= shift;
            }
            self.frame_start = 0;
        }
        &mut self.buf
    }

    /// Appends bytes (convenience over [`SseReader::buffer`]).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer().extend_from_slice(bytes);
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SseError> {
        loop {
            let Some(nl) = memchr::memchr(b'\n', &self.buf[self.pos..]) else {
                if self.buf.len() - self.frame_start > self.max_frame {
                    return Err(SseError::FrameTooLarge(self.max_frame));
                }
                return Ok(None);
            };
            let line_start = self.pos;
            let mut line_end = self.pos + nl;
            self.pos = line_end + 1;
            if line_end > line_start && self.buf[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            if line_end == line_start {
                let had = self.data.is_some() || self.id.is_some();
                let data = self.data.take();
                let id = self.id.take();
                let multi = std::mem::take(&mut self.multi);
                self.frame_start = self.pos;
                if !had {
                    continue;
                }
                let data = data.map(|(s, e)| {
                    if multi {
                        &self.joined[..]
                    } else {
                        &self.buf[s..e]
                    }
                });
                let id = id.map(|(s, e)| &self.buf[s..e]);
                return Ok(Some(Frame { data, id }));
            }
            self.field(line_start, line_end);
        }
    }

    fn field(&mut self, start: usize, end: usize) {
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return; // a comment (heartbeat)
        }
        let (name_end, mut value_start) = match memchr::memchr(b':', line) {
            Some(colon) => (start + colon, start + colon + 1),
            None => (end, end),
        };
        if value_start < end && self.buf[value_start] == b' ' {
            value_start += 1;
        }
        match &self.buf[start..name_end] {
            b"data" => match self.data {
                None => self.data = Some((value_start, end)),
                Some((s, e)) => {
                    if !self.multi {
                        self.joined.clear();
                        self.joined.extend_from_slice(&self.buf[s..e]);
                        self.multi = true;
                    }
                    self.joined.push(b'\n');
                    self.joined.extend_from_slice(&self.buf[value_start..end]);
                }
            },
            b"id" => self.id = Some((value_start, end)),
            _ => {} // event:, retry:, unknown fields
        }
    }
}

/// Finds the numbers and markers a load-test event carries, without parsing JSON.
#[derive(Debug)]
pub struct Fields {
    seq: memmem::Finder<'static>,
    sent: memmem::Finder<'static>,
    run: memmem::Finder<'static>,
    notice: memmem::Finder<'static>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            seq: memmem::Finder::new(b"\"seq\":"),
            sent: memmem::Finder::new(b"\"sent_ns\":"),
            run: memmem::Finder::new(b"\"run\":"),
            notice: memmem::Finder::new(b"\"type\":\"stream."),
        }
    }
}

/// What a load-test event said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Its sequence number.
    pub seq: u64,
    /// When it was sent, in nanoseconds since the tool's epoch.
    pub sent_ns: u64,
    /// Its run tag.
    pub run: u64,
}

impl Fields {
    /// A stream notice (`"type":"stream.…"`), which subscribers skip.
    pub fn is_notice(&self, data: &[u8]) -> bool {
        self.notice.find(data).is_some()
    }

    /// The tick in `data`, if it carries all three numbers.
    pub fn tick(&self, data: &[u8]) -> Option<Tick> {
        Some(Tick {
            seq: number_after(data, &self.seq)?,
            sent_ns: number_after(data, &self.sent)?,
            run: number_after(data, &self.run)?,
        })
    }
}

/// The unsigned integer right after `key` (spaces allowed before it).
fn number_after(data: &[u8], key: &memmem::Finder<'_>) -> Option<u64> {
    let at = key.find(data)? + key.needle().len();
    let digits = data[at..].iter().skip_while(|b| **b == b' ');
    let mut value: u64 = 0;
    let mut any = false;
    for &b in digits {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// The JSON string value right after `"key":"` (no escapes: sids and type names).
pub fn string_after<'a>(data: &'a [u8], key: &memmem::Finder<'_>) -> Option<&'a [u8]> {
    let at = key.find(data)? + key.needle().len();
    let len = memchr::memchr(b'"', &data[at..])?;
    Some(&data[at..at + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(reader: &mut SseReader) -> Vec<(Option<String>, Option<String>)> {
        let mut out = Vec::new();
        while let Some(f) = reader.next_frame().unwrap() {
            out.push((
                f.data.map(|d| String::from_utf8_lossy(d).into_owned()),
                f.id.map(|d| String::from_utf8_lossy(d).into_owned()),
            ));
        }
        out
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let raw = b": hi\n\nretry: 2000\n\nid: 7\ndata: {\"a\":1}\n\ndata:x\r\ndata: y\r\n\r\n";
        for split in 0..raw.len() {
            let mut r = SseReader::new(1024);
            r.push(&raw[..split]);
            let mut got = frames(&mut r);
            r.push(&raw[split..]);
            got.extend(frames(&mut r));
            assert_eq!(
                got,
                vec![
                    (Some("{\"a\":1}".into()), Some("7".into())),
                    (Some("x\ny".into()), None),
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn comments_and_unknown_fields_dispatch_nothing() {
        let mut r = SseReader::new(1024);
        r.push(b":heartbeat\n\nevent: x\n: c\n\nfoo\n\n");
        assert!(frames(&mut r).is_empty());
        r.push(b"data\n\n");
        assert_eq!(frames(&mut r), vec![(Some(String::new()), None)]);
    }

    #[test]
    fn an_endless_frame_is_refused() {
        let mut r = SseReader::new(16);
        r.push(b"data: 0123456789abcdefghij");
        assert_eq!(r.next_frame(), Err(SseError::FrameTooLarge(16)));
    }

    #[test]
    fn ticks_and_notices_are_found_without_json_parsing() {
        let fields = Fields::default();
        let ev = br#"{"id":"EV1","type":"load.tick","data":{"seq":42,"sent_ns": 123456,"run":9}}"#;
        assert_eq!(
            fields.tick(ev),
            Some(Tick {
                seq: 42,
                sent_ns: 123_456,
                run: 9
            })
        );
        assert!(!fields.is_notice(ev));
        let open = br#"{"type":"stream.open","data":{"client":"x"}}"#;
        assert!(fields.is_notice(open));
        assert_eq!(fields.tick(open), None);
        assert_eq!(
            fields.tick(br#"{"seq":99999999999999999999999,"sent_ns":1,"run":1}"#),
            None
        );
        let sid = memmem::Finder::new(b"\"call_sid\":\"");
        assert_eq!(
            string_after(br#"{"call_sid":"CA12","x":1}"#, &sid),
            Some(&b"CA12"[..])
        );
    }
}
