//! FNV-1a, the one non-cryptographic hash of the router: stable across processes,
//! nodes and releases, unlike `std`'s randomly keyed hasher, so what it places (an
//! event's shard, a client's proxy) and what it tags (a cursor's account) means the
//! same everywhere. Not for anything an attacker must not steer or forge.

/// The 64-bit FNV offset basis: the start of an unseeded hash.
pub const FNV64_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV32_BASIS: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// FNV-1a 64 of `bytes`. A `const fn`, so it also hashes what is compiled in (the
/// console's `ETag`s).
pub const fn fnv1a_64(bytes: &[u8]) -> u64 {
    fnv1a_64_from(FNV64_BASIS, bytes)
}

/// FNV-1a 64 of `bytes` continued from `state` (a basis or an earlier hash), so a key
/// made of parts hashes without being copied into one buffer first.
pub const fn fnv1a_64_from(state: u64, bytes: &[u8]) -> u64 {
    // A `while` loop, as iterators are not available in a `const fn`.
    let mut hash = state;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(FNV64_PRIME);
        i += 1;
    }
    hash
}

/// FNV-1a 32 of `bytes`, for tags that travel in small encodings (cursors).
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV32_BASIS, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(FNV32_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_values() {
        // From the FNV reference test vectors: a change here moves every shard
        // assignment and invalidates every cursor handed out.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn continuing_equals_hashing_the_concatenation() {
        let parts = fnv1a_64_from(fnv1a_64(b"foo"), b"bar");
        assert_eq!(parts, fnv1a_64(b"foobar"));
    }
}
