//! When to add or retire a broker shard, without the actor: the shard supervisor
//! feeds it each shard's events per second at every check and does what it says.
//!
//! The rule, as autoscalers with hysteresis have it: add a shard as soon as the
//! busiest one is above the high-water mark, in events per second, in the share of
//! its time spent routing, or in publish batches queued (a hot or backed-up shard
//! delays every call it owns);
//! retire the least busy only once the whole load would stay below the low-water mark
//! on one shard fewer, and has stayed so for `retire_after` (a lull between bursts
//! must not cost two hand-offs). Always within `min..=max` shards.

use std::time::{Duration, Instant};

use super::proxy::ProxyId;
use super::slots::ShardId;

/// The bounds and marks (`[scaling]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Marks {
    /// Fewest shards.
    pub min: usize,
    /// Most shards.
    pub max: usize,
    /// Events per second of one shard above which a shard is added.
    pub high: f64,
    /// Publish batches queued at one shard above which a shard is added (half of
    /// `publish.shard_queue`: a shard that far behind is about to refuse).
    pub queue_high: i64,
    /// Share of its time one shard spends routing (0 to 1) above which a shard is
    /// added: events that each match many subscriptions cost more than their rate
    /// says.
    pub busy_high: f64,
    /// Events per second per shard, on one shard fewer, below which one is retired.
    pub low: f64,
    /// How long the load must stay low before a shard is retired.
    pub retire_after: Duration,
}

/// One shard's load at a look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// The shard.
    pub shard: ShardId,
    /// Events it routed per second since the last look.
    pub events_per_sec: f64,
    /// The share of the time since the last look it spent routing.
    pub busy: f64,
    /// Publish batches queued for it now.
    pub queued: i64,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<Id = ShardId> {
    /// Nothing.
    Hold,
    /// Add one.
    Add,
    /// Retire this one.
    Retire(Id),
}

/// What both rules share: the bounds, and since when the load would fit on one
/// fewer (a lull between bursts must not cost a retirement and an addition).
#[derive(Debug)]
struct Hysteresis {
    min: usize,
    max: usize,
    retire_after: Duration,
    low_since: Option<Instant>,
}

impl Hysteresis {
    fn new(min: usize, max: usize, retire_after: Duration) -> Hysteresis {
        Hysteresis {
            min,
            max,
            retire_after,
            low_since: None,
        }
    }

    /// The decision for `n` actors, `hot` (one more is wanted), `fits_on_fewer`
    /// (the load would sit below the low mark on one fewer) and the `least` busy.
    fn decide<Id>(
        &mut self,
        n: usize,
        hot: bool,
        fits_on_fewer: bool,
        least: Option<Id>,
        now: Instant,
    ) -> Decision<Id> {
        if n < self.min || (hot && n < self.max) {
            self.low_since = None;
            return Decision::Add;
        }
        if n > self.max {
            self.low_since = None;
            return least.map_or(Decision::Hold, Decision::Retire);
        }
        if hot || !fits_on_fewer || n <= self.min || n <= 1 {
            self.low_since = None;
            return Decision::Hold;
        }
        let since = *self.low_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.retire_after {
            return Decision::Hold;
        }
        self.low_since = None;
        least.map_or(Decision::Hold, Decision::Retire)
    }
}

/// The shard rule and the one thing it remembers: since when the load is low.
#[derive(Debug)]
pub struct Scaler {
    marks: Marks,
    hysteresis: Hysteresis,
}

impl Scaler {
    /// A rule with these marks.
    pub fn new(marks: Marks) -> Scaler {
        Scaler {
            marks,
            hysteresis: Hysteresis::new(marks.min, marks.max, marks.retire_after),
        }
    }

    /// What to do, given each shard's load at `now`.
    pub fn decide(&mut self, loads: &[Load], now: Instant) -> Decision {
        let n = loads.len();
        let least = loads
            .iter()
            .min_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec))
            .map(|load| load.shard);
        let hot = loads.iter().any(|l| {
            l.events_per_sec > self.marks.high
                || l.busy > self.marks.busy_high
                || l.queued > self.marks.queue_high
        });
        let total: f64 = loads.iter().map(|l| l.events_per_sec).sum();
        let fits_on_fewer = n > 1 && total / ((n - 1) as f64) < self.marks.low;
        self.hysteresis.decide(n, hot, fits_on_fewer, least, now)
    }
}

/// The proxy bounds and mark (`[scaling]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyMarks {
    /// Fewest proxies.
    pub min: usize,
    /// Most proxies.
    pub max: usize,
    /// Sessions a proxy is meant to hold.
    pub sessions_per_proxy: usize,
    /// How long the sessions must fit in one proxy fewer before one is retired.
    pub retire_after: Duration,
}

/// One proxy's load at a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// The proxy.
    pub proxy: ProxyId,
    /// Its client sessions.
    pub sessions: usize,
}

/// When to add or retire a proxy. New sessions go to the least loaded proxy (see
/// [`super::directory`]), so proxies fill evenly: one is added once every proxy
/// holds `sessions_per_proxy`, and one is retired (its sessions moved to the
/// others) once all sessions would fill one proxy fewer to at most half of it, for
/// `retire_after`. The least loaded is retired, the newest of a tie, so the fewest
/// sessions move.
#[derive(Debug)]
pub struct ProxyScaler {
    marks: ProxyMarks,
    hysteresis: Hysteresis,
}

impl ProxyScaler {
    /// A rule with these marks.
    pub fn new(marks: ProxyMarks) -> ProxyScaler {
        ProxyScaler {
            marks,
            hysteresis: Hysteresis::new(marks.min, marks.max, marks.retire_after),
        }
    }

    /// What to do, given each proxy's sessions at `now`.
    pub fn decide(&mut self, fills: &[Fill], now: Instant) -> Decision<ProxyId> {
        let n = fills.len();
        let capacity = self.marks.sessions_per_proxy;
        let least = fills
            .iter()
            .min_by_key(|f| (f.sessions, std::cmp::Reverse(f.proxy)))
            .map(|f| f.proxy);
        let hot = n > 0 && fills.iter().all(|f| f.sessions >= capacity);
        let total: usize = fills.iter().map(|f| f.sessions).sum();
        let fits_on_fewer = n > 1 && total.saturating_mul(2) <= (n - 1).saturating_mul(capacity);
        self.hysteresis.decide(n, hot, fits_on_fewer, least, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler() -> Scaler {
        Scaler::new(Marks {
            min: 1,
            max: 3,
            high: 1000.0,
            queue_high: 512,
            busy_high: 0.8,
            low: 100.0,
            retire_after: Duration::from_secs(10),
        })
    }

    /// Shards with these events per second and nothing queued.
    fn at(rates: &[(ShardId, f64)]) -> Vec<Load> {
        rates
            .iter()
            .map(|&(shard, events_per_sec)| Load {
                shard,
                events_per_sec,
                busy: 0.0,
                queued: 0,
            })
            .collect()
    }

    #[test]
    fn a_hot_shard_adds_one_up_to_the_maximum() {
        let mut s = scaler();
        let t = Instant::now();
        assert_eq!(s.decide(&at(&[(0, 1500.0)]), t), Decision::Add);
        assert_eq!(s.decide(&at(&[(0, 900.0), (1, 800.0)]), t), Decision::Hold);
        assert_eq!(s.decide(&at(&[(0, 1200.0), (1, 10.0)]), t), Decision::Add);
        assert_eq!(
            s.decide(&at(&[(0, 5000.0), (1, 5000.0), (2, 5000.0)]), t),
            Decision::Hold,
            "at the maximum"
        );
    }

    #[test]
    fn a_shard_retires_only_after_the_load_stays_low() {
        let mut s = scaler();
        let t = Instant::now();
        let quiet = at(&[(0, 30.0), (4, 10.0), (2, 20.0)]);
        assert_eq!(s.decide(&quiet, t), Decision::Hold, "low only just now");
        assert_eq!(s.decide(&quiet, t + Duration::from_secs(5)), Decision::Hold);
        // A burst in between starts the wait over.
        assert_eq!(
            s.decide(
                &at(&[(0, 300.0), (4, 10.0), (2, 20.0)]),
                t + Duration::from_secs(6)
            ),
            Decision::Hold
        );
        assert_eq!(
            s.decide(&quiet, t + Duration::from_secs(11)),
            Decision::Hold
        );
        assert_eq!(
            s.decide(&quiet, t + Duration::from_secs(21)),
            Decision::Retire(4),
            "the least busy"
        );
        // A load that would not fit below the mark on one shard fewer stays.
        let mut s = scaler();
        let busy = at(&[(0, 60.0), (1, 60.0)]);
        assert_eq!(s.decide(&busy, t), Decision::Hold);
        assert_eq!(s.decide(&busy, t + Duration::from_secs(60)), Decision::Hold);
    }

    #[test]
    fn a_backed_up_or_busy_shard_adds_one_whatever_its_rate() {
        let mut s = scaler();
        let t = Instant::now();
        let mut loads = at(&[(0, 10.0), (1, 10.0)]);
        loads[1].queued = 600;
        assert_eq!(s.decide(&loads, t), Decision::Add);
        loads[1].queued = 100;
        assert_eq!(s.decide(&loads, t), Decision::Hold);
        loads[0].busy = 0.9;
        assert_eq!(s.decide(&loads, t), Decision::Add, "busy 90% of the time");
        loads[0].busy = 0.5;
        assert_eq!(s.decide(&loads, t), Decision::Hold);
    }

    #[test]
    fn the_bounds_hold_whatever_the_load() {
        let mut s = Scaler::new(Marks {
            min: 2,
            ..scaler().marks
        });
        let t = Instant::now();
        assert_eq!(
            s.decide(&at(&[(0, 0.0)]), t),
            Decision::Add,
            "below the minimum"
        );
        assert_eq!(
            s.decide(&at(&[(0, 0.0), (1, 0.0)]), t + Duration::from_secs(99)),
            Decision::Hold
        );
        assert_eq!(
            s.decide(&at(&[(0, 0.0), (1, 5.0), (2, 0.0), (3, 9.0)]), t),
            Decision::Retire(0),
            "above the maximum"
        );
    }

    fn proxies(sessions: &[(u32, usize)]) -> Vec<Fill> {
        sessions
            .iter()
            .map(|&(id, sessions)| Fill {
                proxy: ProxyId(id),
                sessions,
            })
            .collect()
    }

    #[test]
    fn a_proxy_is_added_once_every_proxy_is_full_and_retired_once_half_would_do() {
        let mut s = ProxyScaler::new(ProxyMarks {
            min: 1,
            max: 3,
            sessions_per_proxy: 10,
            retire_after: Duration::from_secs(5),
        });
        let t = Instant::now();
        assert_eq!(s.decide(&proxies(&[(0, 9)]), t), Decision::Hold);
        assert_eq!(s.decide(&proxies(&[(0, 10)]), t), Decision::Add);
        assert_eq!(
            s.decide(&proxies(&[(0, 12), (1, 3)]), t),
            Decision::Hold,
            "new sessions go to the emptier one"
        );
        assert_eq!(
            s.decide(&proxies(&[(0, 30), (1, 10), (2, 11)]), t),
            Decision::Hold,
            "at the maximum"
        );
        // 9 sessions would fill two proxies to at most half: wait, then retire the
        // least loaded, the newest of a tie.
        let quiet = proxies(&[(0, 5), (1, 2), (2, 2)]);
        assert_eq!(s.decide(&quiet, t), Decision::Hold);
        assert_eq!(s.decide(&quiet, t + Duration::from_secs(4)), Decision::Hold);
        assert_eq!(
            s.decide(&quiet, t + Duration::from_secs(5)),
            Decision::Retire(ProxyId(2))
        );
        // 6 sessions do not fit one proxy at half of 10.
        let two = proxies(&[(0, 4), (1, 2)]);
        assert_eq!(s.decide(&two, t), Decision::Hold);
        assert_eq!(s.decide(&two, t + Duration::from_secs(60)), Decision::Hold);
        assert_eq!(
            s.decide(&proxies(&[(0, 3)]), t + Duration::from_secs(99)),
            Decision::Hold,
            "never below the minimum"
        );
    }
}
