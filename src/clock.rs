//! Checked time arithmetic. Every deadline computed from a value that a client or the
//! config controls (a stream's `expires`, webhook backoffs, simulated call durations)
//! goes through here, so a huge value means "very late", never an `Instant` or
//! `Duration` overflow panic. Such a panic in a spawned writer would also skip the
//! writer's clean-up and leave the connection gauges counting a connection that is gone.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The furthest ahead a deadline is put: about 30 years, the cap tokio puts on its
/// own timers. Far enough to mean "never"; near enough that no platform's `Instant`
/// overflows.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + wait`, with `wait` capped at [`FAR_FUTURE`].
pub fn after(now: Instant, wait: Duration) -> Instant {
    // Cannot fail with the cap on the platforms we run on; should it, `now` fails
    // closed (the deadline fires at once) instead of panicking.
    now.checked_add(wait.min(FAR_FUTURE)).unwrap_or(now)
}

/// [`after`] for tokio's `Instant`, which timers and `select!` take.
pub fn after_tokio(now: tokio::time::Instant, wait: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(after(now.into_std(), wait))
}

/// The time until unix second `at`, seen at unix second `now`: zero once it passed.
pub fn until_unix(at: u64, now: u64) -> Duration {
    Duration::from_secs(at.saturating_sub(now))
}

/// Seconds since the Unix epoch, from the system clock: what signed URLs' and
/// subscriptions' `expires` are compared with. A clock set before 1970 reads 0, so
/// everything with an expiry counts as live rather than the server panicking.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds as a float (`sim.time_scale` arithmetic) to a `Duration`: negative or NaN
/// is zero, too large for a `Duration` is [`FAR_FUTURE`].
pub fn from_secs_f64(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).map_or(FAR_FUTURE, |d| d.min(FAR_FUTURE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_waits_are_capped_not_panics() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let tokio_now = tokio::time::Instant::from_std(now);
        assert_eq!(
            after_tokio(tokio_now, Duration::from_secs(u64::MAX)).into_std(),
            now + FAR_FUTURE
        );
    }

    #[test]
    fn unix_and_float_conversions_saturate() {
        assert_eq!(until_unix(u64::MAX, 10), Duration::from_secs(u64::MAX - 10));
        assert_eq!(until_unix(5, 10), Duration::ZERO);
        assert_eq!(from_secs_f64(1.5), Duration::from_millis(1500));
        assert_eq!(from_secs_f64(-1.0), Duration::ZERO);
        assert_eq!(from_secs_f64(f64::NAN), Duration::ZERO);
        assert_eq!(from_secs_f64(1e300), FAR_FUTURE);
        assert_eq!(from_secs_f64(f64::INFINITY), FAR_FUTURE);
    }
}
