//! Reads the length of each incoming WebSocket frame from its header, before actix's
//! codec sees the frame. The codec refuses a frame over its size limit only once the
//! whole frame has arrived, buffering it all first; a client declaring a gigabyte
//! frame would cost a gigabyte. The guard stops the input as soon as such a header
//! arrives, so what a connection buffers stays within one message (64 KiB).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where the guard is in the frame sequence.
#[derive(Debug)]
enum State {
    /// Collecting a header (at most 14 bytes: 2, 8 of length, 4 of mask).
    Header(Vec<u8>),
    /// Skipping this many payload bytes.
    Payload(u64),
}

/// Watches a client's byte stream frame by frame (see the module docs).
#[derive(Debug)]
pub struct FrameGuard {
    state: State,
    max: u64,
    /// Set once a frame over `max` was announced, so the connection can tell that
    /// failure (close 1009) from a broken socket.
    oversized: Arc<AtomicBool>,
}

impl FrameGuard {
    /// A guard refusing frames over `max` payload bytes; the flag it sets is returned.
    pub fn new(max: usize) -> (FrameGuard, Arc<AtomicBool>) {
        let oversized = Arc::new(AtomicBool::new(false));
        let guard = FrameGuard {
            state: State::Header(Vec::with_capacity(14)),
            max: u64::try_from(max).unwrap_or(u64::MAX),
            oversized: oversized.clone(),
        };
        (guard, oversized)
    }

    /// Follows the frames in `chunk`; false once a frame over the limit was announced.
    pub fn inspect(&mut self, chunk: &[u8]) -> bool {
        let mut rest = chunk;
        while !rest.is_empty() {
            match &mut self.state {
                State::Payload(left) => {
                    let skip = usize::try_from(*left).map_or(rest.len(), |l| l.min(rest.len()));
                    rest = &rest[skip..];
                    *left -= skip as u64;
                    if *left == 0 {
                        self.state = State::Header(Vec::with_capacity(14));
                    }
                }
                State::Header(header) => {
                    header.push(rest[0]);
                    rest = &rest[1..];
                    let Some(len) = payload_len(header) else {
                        continue;
                    };
                    if len > self.max {
                        self.oversized.store(true, Ordering::Relaxed);
                        return false;
                    }
                    self.state = if len == 0 {
                        State::Header(Vec::with_capacity(14))
                    } else {
                        State::Payload(len)
                    };
                }
            }
        }
        true
    }
}

/// The payload length once `header` holds the whole header, `None` before.
fn payload_len(header: &[u8]) -> Option<u64> {
    let second = *header.get(1)?;
    let masked = second & 0x80 != 0;
    let (extended, short) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let total = 2 + extended + if masked { 4 } else { 0 };
    if header.len() < total {
        return None;
    }
    Some(short.unwrap_or_else(|| {
        header[2..2 + extended]
            .iter()
            .fold(0u64, |len, b| (len << 8) | u64::from(*b))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for a payload of `len` bytes.
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x81];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn follows_frames_of_every_length_form_across_chunks() {
        let (mut guard, oversized) = FrameGuard::new(64 * 1024);
        let mut bytes = Vec::new();
        for len in [0u64, 5, 125, 126, 300, 65_536] {
            bytes.extend(header(len));
            bytes.extend(std::iter::repeat_n(b'a', len as usize));
        }
        // Fed in awkward pieces, headers split included.
        for piece in bytes.chunks(7) {
            assert!(guard.inspect(piece));
        }
        assert!(matches!(guard.state, State::Header(ref h) if h.is_empty()));
        assert!(!oversized.load(Ordering::Relaxed));
    }

    #[test]
    fn stops_at_the_header_of_an_oversized_frame() {
        let (mut guard, oversized) = FrameGuard::new(64 * 1024);
        assert!(guard.inspect(&header(3)));
        assert!(guard.inspect(b"abc"));
        let big = header(1 << 30);
        assert!(guard.inspect(&big[..4]), "not known yet");
        assert!(!guard.inspect(&big[4..]));
        assert!(oversized.load(Ordering::Relaxed));
        let (mut guard, _) = FrameGuard::new(64 * 1024);
        assert!(!guard.inspect(&header(65_537)));
        let (mut guard, _) = FrameGuard::new(64 * 1024);
        assert!(!guard.inspect(&header(u64::MAX)));
    }
}
