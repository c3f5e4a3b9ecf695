//! Stream cursors: the opaque text in SSE `id:` lines, `cursor=` and `Last-Event-ID`.
//!
//! A cursor names a position in one client session's outbox: the outbox's random
//! `epoch` (a new session, e.g. after a restart, has another) and the sequence number
//! of the last event delivered. It also carries a tag of the account, so a cursor
//! presented on another account's stream is refused with 400 instead of silently
//! meaning something else. Encoded with the internal codec, then base64url.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::codec::{self, Decode, Encode};

/// A position in a client's event sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Cursor {
    /// Tag of the account's sid ([`account_tag`]).
    pub account_tag: u32,
    /// The outbox generation this sequence belongs to.
    pub epoch: u64,
    /// Sequence number of the last event delivered (0 = none yet).
    pub seq: u64,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not something this server produced.
    #[error("cursor: malformed")]
    Malformed,
    /// Produced for another account.
    #[error("cursor: belongs to another account")]
    WrongAccount,
}

/// Longest encoding of a [`Cursor`]: three varints of at most 5, 9 and 9 bytes.
const MAX_ENCODED: usize = 23;

/// A cursor's text, held on the stack: every delivered event carries one, and two
/// heap allocations per delivery (the encoding, then its base64) showed in a
/// fan-out's profile.
#[derive(Clone, Copy)]
pub struct CursorText {
    text: [u8; MAX_ENCODED.div_ceil(3) * 4],
    len: u8,
}

impl std::ops::Deref for CursorText {
    type Target = str;

    fn deref(&self) -> &str {
        // base64url wrote only ASCII.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).expect("base64url is ASCII")
    }
}

impl std::fmt::Debug for CursorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Cursor {
    /// The opaque text form.
    pub fn encode(&self) -> CursorText {
        let mut binary = [0u8; MAX_ENCODED];
        // Three integers always fit the longest encoding of three integers.
        let used = codec::encode_into(self, &mut binary).expect("a cursor fits its bound");
        let mut out = CursorText {
            text: [0; MAX_ENCODED.div_ceil(3) * 4],
            len: 0,
        };
        let len = URL_SAFE_NO_PAD
            .encode_slice(&binary[..used], &mut out.text)
            .expect("the text buffer holds any cursor's base64");
        out.len = len as u8;
        out
    }

    /// Parses the text form and checks it belongs to the account with this tag.
    pub fn decode(text: &str, account_tag: u32) -> Result<Cursor, CursorError> {
        if text.len() > 64 {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Malformed)?;
        let cursor: Cursor = codec::decode(&bytes).map_err(|_| CursorError::Malformed)?;
        if cursor.account_tag != account_tag {
            return Err(CursorError::WrongAccount);
        }
        Ok(cursor)
    }
}

/// A stable 32-bit tag of an account sid (FNV-1a), the same on every node and restart.
pub fn account_tag(sid: &str) -> u32 {
    crate::hash::fnv1a_32(sid.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_cursor_fits_and_reads_back() {
        let cursor = Cursor {
            account_tag: u32::MAX,
            epoch: u64::MAX,
            seq: u64::MAX,
        };
        let text = cursor.encode();
        assert_eq!(text.len(), 31);
        assert_eq!(Cursor::decode(&text, u32::MAX), Ok(cursor));
        // The same text as encoding to a Vec, then to a String, gave before.
        assert_eq!(&*text, URL_SAFE_NO_PAD.encode(codec::encode(&cursor)));
    }

    #[test]
    fn roundtrip() {
        let tag = account_tag("AC0123");
        let cursor = Cursor {
            account_tag: tag,
            epoch: u64::MAX,
            seq: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode(), tag), Ok(cursor));
    }

    #[test]
    fn refuses_other_accounts_and_garbage() {
        let cursor = Cursor {
            account_tag: account_tag("ACa"),
            epoch: 1,
            seq: 2,
        };
        assert_eq!(
            Cursor::decode(&cursor.encode(), account_tag("ACb")),
            Err(CursorError::WrongAccount)
        );
        for bad in ["", "!!", "A", "x".repeat(100).as_str()] {
            assert_eq!(Cursor::decode(bad, 0), Err(CursorError::Malformed), "{bad}");
        }
        let mut long = codec::encode(&cursor);
        long.push(0);
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode(long), cursor.account_tag),
            Err(CursorError::Malformed)
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(s in "\\PC{0,80}") {
            let _ = Cursor::decode(&s, 7);
        }
    }
}
