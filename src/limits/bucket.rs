//! A token bucket: the plain arithmetic behind every rate limit. The clock is passed
//! in (`now`), so the bucket is deterministic and its tests need no sleeping.

use std::time::{Duration, Instant};

/// Allows `rate` units per second on average and up to `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket; `rate` and `burst` are at least 1 (the config guarantees it).
    pub fn full(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            tokens: burst,
            last: now,
            rate: f64::from(rate.max(1)),
            burst,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock read on another thread may be a little behind ours: never go back.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if now > self.last {
            self.last = now;
        }
    }

    /// Takes `n` units, or none and says how long until they would be there. A
    /// request larger than the burst needs a full bucket (it can never fit otherwise).
    pub fn take(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let wanted = f64::from(n).min(self.burst);
        if self.tokens >= wanted {
            self.tokens -= wanted;
            return Ok(());
        }
        let missing = wanted - self.tokens;
        Err(Duration::try_from_secs_f64(missing / self.rate).unwrap_or(Duration::MAX))
    }

    /// Whether the bucket has refilled completely: it then behaves exactly like a
    /// new one, so it can be forgotten.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(10, 20, t0);
        for _ in 0..20 {
            bucket.take(1, t0).unwrap();
        }
        let wait = bucket.take(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100), "one token at 10/s");
        // 100 ms later exactly one token is back.
        let t1 = t0 + Duration::from_millis(100);
        bucket.take(1, t1).unwrap();
        assert!(bucket.take(1, t1).is_err());
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(10, 5, t0);
        bucket.take(5, t0).unwrap();
        let later = t0 + Duration::from_secs(3600);
        assert!(bucket.is_full(later));
        bucket.take(5, later).unwrap();
        assert!(bucket.take(1, later).is_err(), "no more than the burst");
    }

    #[test]
    fn a_refused_take_takes_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(1, 10, t0);
        bucket.take(7, t0).unwrap();
        assert_eq!(bucket.take(5, t0).unwrap_err(), Duration::from_secs(2));
        bucket.take(3, t0).unwrap();
    }

    #[test]
    fn oversized_requests_need_a_full_bucket() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(100, 10, t0);
        bucket.take(50, t0).unwrap();
        assert!(bucket.take(1, t0).is_err());
        bucket.take(50, t0 + Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn a_clock_going_back_neither_panics_nor_refills() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::full(1, 1, t0);
        bucket.take(1, t0).unwrap();
        assert!(bucket.take(1, t0 - Duration::from_secs(5)).is_err());
        assert!(!bucket.is_full(t0 - Duration::from_secs(5)));
    }
}
