//! `loadtest soak`: mixed load for a bounded time — S subscribers on their own
//! streams, ticks published at a steady rate, and a trickle of IVR calls — reported as
//! one row per interval, so a slow leak or a latency creep shows as a trend.
//!
//! A row's `lost` counts the (subscriber, tick) pairs published in that interval that
//! never arrived; it is filled in at the end, once late deliveries had their chance.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use super::calls::{CallRig, CallStats};
use super::fanout::{connect_bound, until_subscribed, OPENING_AT_ONCE};
use super::histogram::{round3, Histogram};
use super::publisher::{Pace, Publisher};
use super::report::Progress;
use super::seqtrack::{SeqTracker, MAX_SEQ};
use super::subscriber::{open_live, Shared, SoakShared, SubscriberStats};
use super::{at_least, per_sec, Ctx, LoadError, SoakArgs, Target};

/// Read buffer of a soak subscriber.
const BUFFER: usize = 16 * 1024;
/// Longest wait for late deliveries after the last publish.
const DRAIN: Duration = Duration::from_secs(5);
/// Calls in flight at most (a trickle that backs up is not allowed to grow unbounded).
const MAX_CALLS_IN_FLIGHT: usize = 1000;

/// The options as reported.
pub fn params(a: &SoakArgs) -> Value {
    json!({
        "interval": a.interval,
        "subscribers": a.subscribers,
        "rate": a.rate,
        "calls_per_sec": a.calls_per_sec,
    })
}

/// One interval's numbers as they are measured.
struct Row {
    t_secs: f64,
    seqs: std::ops::Range<u64>,
    published: u64,
    deliveries: u64,
    p99_ms: Value,
    rss: Option<u64>,
    calls_completed: u64,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, a: &SoakArgs) -> Result<Value, LoadError> {
    at_least("interval", a.interval, 1)?;
    at_least("subscribers", a.subscribers as u64, 1)?;
    at_least("rate", a.rate, 1)?;
    if ctx.server.target == Target::Nchan && a.calls_per_sec > 0 {
        return Err(LoadError::Options(
            "--calls-per-sec must be 0 with --target nchan (nchan has no call router)".into(),
        ));
    }
    let ticks = (a.rate.saturating_mul(ctx.duration.as_secs() + 1)).min(MAX_SEQ);
    let shared = Shared {
        streams: 1,
        deliveries: AtomicU64::new(0),
        soak: Some(SoakShared {
            hist: Mutex::new(Histogram::new()),
            received: (0..ticks).map(|_| AtomicU32::new(0)).collect(),
        }),
    };
    let rig = match a.calls_per_sec {
        0 => None,
        _ => Some(CallRig::start(&ctx.server, "1234").await?),
    };
    let call_events = match &rig {
        Some(rig) => Some(rig.open_events(&ctx.server).await?),
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let request = ctx.server.stream_request("load.*");
    let gate = Semaphore::new(OPENING_AT_ONCE);
    let connected = Cell::new(0usize);
    let failed: RefCell<BTreeMap<String, u64>> = Default::default();
    let within = connect_bound(a.subscribers);
    let subscribers = (0..a.subscribers).map(|_| {
        let stop = stop_rx.clone();
        let (gate, request, shared, connected, failed) =
            (&gate, &request, &shared, &connected, &failed);
        async move {
            let opened = {
                let _permit = gate.acquire().await;
                open_live(&ctx.server, request, None, BUFFER, within).await
            };
            match opened {
                Ok(sub) => {
                    connected.set(connected.get() + 1);
                    Some(sub.consume(ctx.run, None, shared, stop).await)
                }
                Err(e) => {
                    *failed.borrow_mut().entry(e.key()).or_default() += 1;
                    None
                }
            }
        }
    });

    let next_seq = Cell::new(0u64);
    let accepted = RefCell::new(SeqTracker::new(1));
    let calls_total = RefCell::new(CallStats::default());
    let publishing = Cell::new(false);
    let started = Cell::new(None::<Instant>);

    let coordinate = async {
        let mut progress = Progress::new("soak");
        until_subscribed(&connected, &failed, a.subscribers, within, &mut progress).await;
        let before = ctx.sample()?;
        let start = Instant::now();
        started.set(Some(start));
        publishing.set(true);
        let deadline = start + ctx.duration;
        let mut rows = Vec::new();
        let (mut seq_mark, mut delivered_mark, mut completed_mark) = (0, 0, 0);
        let mut at = start;
        while at < deadline {
            at = (at + Duration::from_secs(a.interval)).min(deadline);
            while Instant::now() < at {
                progress.tick(|| {
                    format!(
                        "{} published  {} deliveries  {} calls",
                        next_seq.get(),
                        shared.deliveries.load(Ordering::Relaxed),
                        calls_total.borrow().completed
                    )
                });
                tokio::time::sleep_until(
                    at.min(Instant::now() + Duration::from_millis(200)).into(),
                )
                .await;
            }
            let seq = next_seq.get();
            let delivered = shared.deliveries.load(Ordering::Relaxed);
            let completed = calls_total.borrow().completed;
            let hist = shared
                .soak
                .as_ref()
                .map(|s| std::mem::take(&mut *s.hist.lock()))
                .unwrap_or_default();
            rows.push(Row {
                t_secs: round3(at.duration_since(start).as_secs_f64()),
                seqs: seq_mark..seq,
                published: seq - seq_mark,
                deliveries: delivered - delivered_mark,
                p99_ms: hist.summary_ms(&["p99"])["p99"].clone(),
                rss: ctx.sample()?.map(|s| s.rss_bytes),
                calls_completed: completed - completed_mark,
            });
            (seq_mark, delivered_mark, completed_mark) = (seq, delivered, completed);
        }
        publishing.set(false);
        // Late deliveries: wait until they stop (bounded).
        let drain_end = Instant::now() + DRAIN;
        let mut last = shared.deliveries.load(Ordering::Relaxed);
        while Instant::now() < drain_end {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = shared.deliveries.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let after = ctx.sample()?;
        let _ = stop_tx.send(true);
        progress.finish();
        Ok::<_, LoadError>((rows, start, before, after))
    };

    let publish = async {
        while !publishing.get() && !*stop_rx.borrow() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let Some(start) = started.get() else {
            return Default::default();
        };
        let pace = Pace {
            start,
            rate: a.rate,
            deadline: start + ctx.duration,
        };
        let mut publisher = Publisher::new(&ctx.server);
        publisher
            .paced(0..ticks, pace, 1, ctx.run, |seq, ok| {
                if ok {
                    accepted.borrow_mut().record(seq);
                }
                next_seq.set(seq + 1);
                publishing.get()
            })
            .await;
        publisher.stats
    };

    let call_trickle = async {
        let Some(rig) = &rig else { return };
        while !publishing.get() && !*stop_rx.borrow() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let Some(start) = started.get() else { return };
        let deadline = start + ctx.duration;
        let mut in_flight = FuturesUnordered::new();
        let mut n = 0u64;
        loop {
            let due = start + Duration::from_secs_f64(n as f64 / a.calls_per_sec as f64);
            let launch = due < deadline && in_flight.len() < MAX_CALLS_IN_FLIGHT;
            if !launch && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due.into()), if launch => {
                    in_flight.push(async move {
                        let mut stats = CallStats::default();
                        let mut conn = None;
                        rig.call(&ctx.server, &mut conn, n, &mut stats).await;
                        stats
                    });
                    n += 1;
                }
                Some(stats) = in_flight.next(), if !in_flight.is_empty() => {
                    calls_total.borrow_mut().merge(&stats);
                }
            }
        }
    };
    let call_reader = async {
        if let (Some(rig), Some(events)) = (&rig, call_events) {
            rig.read_events(events, stop_rx.clone()).await;
        }
    };

    let (coordinated, stats, published, (), ()) = tokio::join!(
        coordinate,
        join_all(subscribers),
        publish,
        call_trickle,
        call_reader
    );
    let (rows, start, before, after) = coordinated?;
    let stats: Vec<SubscriberStats> = stats.into_iter().flatten().collect();
    let accepted = accepted.into_inner();
    let received = shared.soak.as_ref().map(|s| &s.received);
    let live = stats.len() as u64;
    let lost_in = |seqs: &std::ops::Range<u64>| -> u64 {
        seqs.clone()
            .filter(|seq| accepted.contains(*seq))
            .map(|seq| {
                let got = received
                    .and_then(|r| r.get(seq as usize))
                    .map_or(0, |c| u64::from(c.load(Ordering::Relaxed)));
                live.saturating_sub(got)
            })
            .sum()
    };
    let interval = a.interval as f64;
    let intervals: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "t_secs": row.t_secs,
                "published_per_sec": round3(row.published as f64 / interval),
                "deliveries_per_sec": round3(row.deliveries as f64 / interval),
                "p99_ms": row.p99_ms,
                "lost": lost_in(&row.seqs),
                "rss_bytes": row.rss,
                "calls_completed": row.calls_completed,
            })
        })
        .collect();
    let mut latency = Histogram::new();
    let (mut deliveries, mut duplicated, mut out_of_order) = (0, 0, 0);
    for s in &stats {
        latency.merge(&s.latency);
        deliveries += s.deliveries;
        duplicated += s.tracker.duplicated();
        out_of_order += s.tracker.out_of_order();
    }
    let all = 0..rows.last().map_or(0, |r| r.seqs.end);
    let lost = lost_in(&all) + (a.subscribers as u64 - live) * published.events;
    let seconds = start.elapsed().as_secs_f64();
    let calls = calls_total.into_inner();
    Ok(json!({
        "intervals": intervals,
        "published": published.events,
        "deliveries": deliveries,
        "expected": published.events * a.subscribers as u64,
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "seconds": round3(seconds),
        "deliveries_per_sec": per_sec(deliveries, seconds),
        "latency_ms": latency.summary_ms(&["p50", "p99", "max"]),
        "publish_errors": published.errors_json(),
        "subscribers_connected": live,
        "subscribe_errors": failed.into_inner(),
        "calls_started": calls.started,
        "calls_completed": calls.completed,
        "calls_failed": calls.failed(),
        "call_failures": calls.failures,
        "call_events": rig.as_ref().map(|r| r.events.load(Ordering::Relaxed)),
        "rss_before_bytes": before.map(|s| s.rss_bytes),
        "rss_after_bytes": after.map(|s| s.rss_bytes),
    }))
}
