//! Reassembly of fragmented WebSocket messages (docs/api.md §6). A client may split a
//! text message into a first frame and continuation frames; they are joined here
//! into one message, bounded by [`MAX_MESSAGE_BYTES`] however it is split, so a
//! client cannot grow the buffer without limit by never sending the last fragment.

use actix_http::ws::{CloseCode, Item};
use bytes::{Bytes, BytesMut};

/// Largest client message, fragmented or not: above it the socket closes with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Every reason a WebSocket is closed for what its client sent, for pre-creating
/// `switchboard_ws_closed_total{reason}`: [`FrameError::reason`]'s values, plus
/// `slow_reader` and `protocol_error` from the transport itself.
pub const CLOSE_REASONS: &[&str] = &[
    "message_too_large",
    "fragments_out_of_order",
    "invalid_text",
    "slow_reader",
    "protocol_error",
];

/// Why a sequence of frames cannot make a message; each closes the socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message grew beyond [`MAX_MESSAGE_BYTES`].
    #[error("message: larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    /// A continuation frame with no message started, or a new message started
    /// before the fragmented one ended.
    #[error("frame: fragments out of order")]
    OutOfOrder,
    /// A text message that is not UTF-8.
    #[error("frame: text message is not UTF-8")]
    NotUtf8,
}

impl FrameError {
    /// The close code RFC 6455 §7.4.1 gives this failure.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooLarge => CloseCode::Size,
            FrameError::OutOfOrder => CloseCode::Protocol,
            FrameError::NotUtf8 => CloseCode::Invalid,
        }
    }

    /// The metric label of this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::TooLarge => "message_too_large",
            FrameError::OutOfOrder => "fragments_out_of_order",
            FrameError::NotUtf8 => "invalid_text",
        }
    }
}

/// A complete message put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message; only its existence matters (client events are text).
    Binary,
}

/// The message being reassembled, if any.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// `Some(is_text)` while a fragmented message is open.
    open: Option<bool>,
    /// Bytes received for the open message (binary ones are counted, not kept).
    len: usize,
    buf: BytesMut,
}

impl Reassembler {
    /// Whether a fragmented message is open (a new unfragmented message is then out
    /// of order).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Checks an unfragmented message's size.
    pub fn whole(&self, len: usize) -> Result<(), FrameError> {
        if self.is_open() {
            Err(FrameError::OutOfOrder)
        } else if len > MAX_MESSAGE_BYTES {
            Err(FrameError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Adds one fragment; `Some` when it completed a message. After an error the
    /// caller closes the socket, so the state is simply dropped.
    pub fn push(&mut self, item: Item) -> Result<Option<Assembled>, FrameError> {
        let (first, text, bytes, last) = match item {
            Item::FirstText(bytes) => (true, true, bytes, false),
            Item::FirstBinary(bytes) => (true, false, bytes, false),
            Item::Continue(bytes) => (false, false, bytes, false),
            Item::Last(bytes) => (false, false, bytes, true),
        };
        let is_text = match (first, self.open) {
            (true, None) => text,
            (false, Some(is_text)) => is_text,
            _ => return Err(FrameError::OutOfOrder),
        };
        self.len = self.len.saturating_add(bytes.len());
        if self.len > MAX_MESSAGE_BYTES {
            return Err(FrameError::TooLarge);
        }
        self.open = Some(is_text);
        if is_text {
            self.buf.extend_from_slice(&bytes);
        }
        if !last {
            return Ok(None);
        }
        self.open = None;
        self.len = 0;
        let whole = std::mem::take(&mut self.buf).freeze();
        if !is_text {
            return Ok(Some(Assembled::Binary));
        }
        if std::str::from_utf8(&whole).is_err() {
            return Err(FrameError::NotUtf8);
        }
        Ok(Some(Assembled::Text(whole)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn joins_fragments_into_one_text_message() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(Item::FirstText(b("{\"type\":"))), Ok(None));
        assert!(r.is_open());
        assert_eq!(r.push(Item::Continue(b("\"client.x\""))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b("}"))),
            Ok(Some(Assembled::Text(b("{\"type\":\"client.x\"}"))))
        );
        assert!(!r.is_open());
        // And the next message starts afresh.
        assert_eq!(r.push(Item::FirstBinary(b("x"))), Ok(None));
        assert_eq!(r.push(Item::Last(b("y"))), Ok(Some(Assembled::Binary)));
        // Binary fragments are counted against the bound too.
        let big = Bytes::from(vec![0u8; MAX_MESSAGE_BYTES]);
        assert_eq!(r.push(Item::FirstBinary(big)), Ok(None));
        assert_eq!(r.push(Item::Last(b("z"))), Err(FrameError::TooLarge));
    }

    #[test]
    fn bounds_the_whole_message_however_it_is_split() {
        let mut r = Reassembler::default();
        let chunk = Bytes::from(vec![b'a'; 16 * 1024]);
        assert_eq!(r.push(Item::FirstText(chunk.clone())), Ok(None));
        for _ in 0..3 {
            assert_eq!(r.push(Item::Continue(chunk.clone())), Ok(None));
        }
        // Exactly 64 KiB is allowed; one byte more is not.
        assert_eq!(r.push(Item::Last(b("b"))), Err(FrameError::TooLarge));
        assert_eq!(FrameError::TooLarge.close_code(), CloseCode::Size);
        assert_eq!(Reassembler::default().whole(MAX_MESSAGE_BYTES), Ok(()));
        assert_eq!(
            Reassembler::default().whole(MAX_MESSAGE_BYTES + 1),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn fragments_out_of_order_or_bad_text_are_refused() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(Item::Continue(b("x"))), Err(FrameError::OutOfOrder));
        let mut r = Reassembler::default();
        assert_eq!(r.push(Item::Last(b("x"))), Err(FrameError::OutOfOrder));
        let mut r = Reassembler::default();
        r.push(Item::FirstText(b("x"))).unwrap();
        assert_eq!(r.push(Item::FirstText(b("y"))), Err(FrameError::OutOfOrder));
        assert_eq!(r.whole(1), Err(FrameError::OutOfOrder));
        let mut r = Reassembler::default();
        r.push(Item::FirstText(Bytes::from_static(&[0xe2, 0x82])))
            .unwrap();
        assert_eq!(
            r.push(Item::Last(Bytes::from_static(&[0x28]))),
            Err(FrameError::NotUtf8)
        );
        assert_eq!(FrameError::NotUtf8.close_code(), CloseCode::Invalid);
    }

    #[test]
    fn every_reason_is_listed_for_metrics() {
        for error in [
            FrameError::TooLarge,
            FrameError::OutOfOrder,
            FrameError::NotUtf8,
        ] {
            assert!(CLOSE_REASONS.contains(&error.reason()), "{error:?}");
        }
    }
}
