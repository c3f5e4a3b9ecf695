//! Token buckets by key (an account, a client), with the table bounded: buckets that
//! have refilled are indistinguishable from new ones and are dropped when the table
//! is full, so idle tenants and clients cost nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::bucket::TokenBucket;

/// Most keys tracked at once. Only keys that are actively sending keep a bucket, so
/// this is reached only under abuse; past it, a sweep drops refilled buckets and, if
/// every bucket is busy, starts over (a few extra bursts rather than unbounded memory).
pub const MAX_KEYS: usize = 100_000;

/// A rate limit applied per key.
#[derive(Debug)]
pub struct KeyedRate<K> {
    rate: u32,
    burst: u32,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq> KeyedRate<K> {
    /// `rate` units per second per key, `burst` at once; at most `max_keys` buckets.
    pub fn new(rate: u32, burst: u32, max_keys: usize) -> KeyedRate<K> {
        KeyedRate {
            rate,
            burst,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` units from `key`'s bucket, or refuses with the time to wait.
    pub fn take(&self, key: K, n: u32, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.max_keys {
            buckets.retain(|_, bucket| !bucket.is_full(now));
            if buckets.len() >= self.max_keys {
                tracing::warn!(
                    keys = buckets.len(),
                    "rate limiter table full of busy keys; starting over"
                );
                buckets.clear();
            }
        }
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(self.rate, self.burst, now))
            .take(n, now)
    }

    /// Buckets held now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_own_buckets() {
        let t0 = Instant::now();
        let rate = KeyedRate::new(1, 2, 10);
        rate.take("a", 2, t0).unwrap();
        assert!(rate.take("a", 1, t0).is_err());
        rate.take("b", 2, t0).unwrap();
    }

    #[test]
    fn the_table_is_bounded_and_idle_buckets_go_first() {
        let t0 = Instant::now();
        let rate = KeyedRate::new(1, 1, 3);
        rate.take(1, 1, t0).unwrap(); // busy until t0 + 1 s
        rate.take(2, 1, t0).unwrap();
        rate.take(3, 1, t0).unwrap();
        // Half a second on nobody has refilled: a fourth key starts the table over.
        let t1 = t0 + Duration::from_millis(500);
        rate.take(4, 1, t1).unwrap();
        assert_eq!(rate.tracked(), 1);
        // Later, key 4 is busy, 5 and 6 come; 7 sweeps out only refilled buckets.
        let t2 = t1 + Duration::from_millis(800);
        rate.take(5, 1, t2).unwrap();
        rate.take(6, 1, t2).unwrap();
        let t3 = t1 + Duration::from_millis(1000);
        rate.take(7, 1, t3).unwrap();
        assert_eq!(rate.tracked(), 3, "key 4 had refilled and was dropped");
        assert!(rate.take(5, 1, t3).is_err(), "key 5 kept its state");
    }
}
