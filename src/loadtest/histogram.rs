//! A log-linear latency histogram in microseconds: exact below 256 µs, then 128
//! buckets per power of two, so every percentile is within 0.8 % of the true value
//! while recording costs one array increment. Each connection keeps its own and the
//! scenario merges them at the end, so the hot path shares nothing.

use serde_json::{json, Value};

/// Sub-buckets per power of two, as a power of two (2^7 = 128).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// Counts of recorded values by bucket; grows only to the largest bucket used.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

fn index(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (value >> shift) - SUB;
    ((u64::from(shift) + 1) * SUB + sub) as usize
}

/// The highest value that lands in bucket `idx`.
fn highest(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < 2 * SUB {
        return idx;
    }
    let shift = idx / SUB - 1;
    let sub = idx % SUB + SUB;
    ((sub + 1) << shift) - 1
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one value (microseconds).
    pub fn record(&mut self, value: u64) {
        let idx = index(value);
        if idx >= self.counts.len() {
            self.counts.resize(idx + 1, 0);
        }
        self.counts[idx] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the smallest bucket bound at or below which
    /// at least `q` of the values lie, never above the maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest(idx).min(self.max);
            }
        }
        self.max
    }

    /// The named quantiles in milliseconds (`"p50"` → 0.5, …, `"max"`), as a JSON
    /// object; every value is `null` when nothing was recorded, so an empty run is not
    /// mistaken for a zero-latency one.
    pub fn summary_ms(&self, names: &[&str]) -> Value {
        let mut out = serde_json::Map::new();
        for name in names {
            let micros = match *name {
                "max" => Some(self.max),
                other => other
                    .strip_prefix('p')
                    .and_then(quantile_of)
                    .map(|q| self.quantile(q)),
            };
            let value = match micros {
                Some(us) if self.total > 0 => json!(round3(us as f64 / 1000.0)),
                _ => Value::Null,
            };
            out.insert((*name).to_owned(), value);
        }
        Value::Object(out)
    }
}

/// `"50"` → 0.5, `"99"` → 0.99, `"999"` → 0.999 (the usual percentile spelling).
fn quantile_of(digits: &str) -> Option<f64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: f64 = format!("0.{digits}").parse().ok()?;
    Some(value)
}

/// Rounds to three decimals (microsecond resolution in milliseconds).
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..256 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 127);
        assert_eq!(h.quantile(1.0), 255);
        assert_eq!(h.count(), 256);
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000);
        assert_eq!(h.quantile(1.0), 100_000);
    }

    #[test]
    fn bucket_bounds_hold_their_values() {
        for v in [0u64, 1, 255, 256, 257, 1000, 65_535, 1 << 40, u64::MAX / 3] {
            let idx = index(v);
            assert!(highest(idx) >= v, "{v}");
            if idx > 0 {
                assert!(highest(idx - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_max() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(5_000);
        b.record(20);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), 5_000);
        assert_eq!(a.quantile(0.5), 20);
    }

    #[test]
    fn summary_is_in_milliseconds_and_null_when_empty() {
        let mut h = Histogram::new();
        assert_eq!(
            h.summary_ms(&["p50", "max"]),
            json!({"p50": null, "max": null})
        );
        h.record(1500);
        let s = h.summary_ms(&["p50", "p999", "max"]);
        assert!((s["max"].as_f64().unwrap() - 1.5).abs() < 1e-9, "{s}");
        assert!((s["p999"].as_f64().unwrap() - 1.5).abs() < 0.02, "{s}");
    }
}
