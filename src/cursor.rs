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

impl Cursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(codec::encode(self))
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
