//! The internal binary wire format: cursors, and events between cluster nodes.
//!
//! bincode is pinned to `=2.0.1` (3.x is a deliberate compile error upstream) and is
//! used nowhere else, so swapping the format means changing this one file.

use bincode::config::{self, Configuration};
pub use bincode::{Decode, Encode};

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode: {0}")]
pub struct DecodeError(String);

fn config() -> Configuration {
    config::standard()
}

/// Encodes a value in the internal format.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec only fails for types whose Encode impl fails; ours do not.
    bincode::encode_to_vec(value, config()).expect("encoding into a Vec cannot fail")
}

/// Encodes a value into `out`, returning how many bytes it took, or `None` when
/// `out` is too small. For small values on hot paths, with no allocation.
pub fn encode_into<T: Encode>(value: &T, out: &mut [u8]) -> Option<usize> {
    bincode::encode_into_slice(value, out, config()).ok()
}

/// Most bytes a decoded value may claim: a length prefix is checked against it
/// before anything is allocated, so bytes from the network cannot ask for more
/// memory than they could carry (a NATS message is at most a few MiB).
pub const DECODE_LIMIT: usize = 16 * 1024 * 1024;

/// Decodes a value, refusing trailing bytes so that two encodings never decode alike,
/// and claims beyond [`DECODE_LIMIT`].
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, used) = bincode::decode_from_slice(bytes, config().with_limit::<DECODE_LIMIT>())
        .map_err(|e| DecodeError(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}
