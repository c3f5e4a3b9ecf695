//! `loadtest storm`: does a reconnect storm become publish latency? One paced
//! publisher (one tick per request, keep-alive) runs through two phases of `--phase`
//! seconds each: alone ("quiet"), then while N clients reconnect in a loop
//! ("storm"). Each client has its own fixed `client=storm-<run>-<i>` id and opens a
//! signed `types=load.*&cursor=earliest` stream, reads until `stream.open` and one
//! event (or a short bounded wait), closes, and opens again. The publisher's request
//! latency is kept per phase and compared (`p99_ratio`).
//!
//! With a fixed id the server keeps the client's session between its connections, so
//! every reconnect asks for a replay of what the shards retain, as a page reloaded
//! mid-call does.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::fanout::OPENING_AT_ONCE;
use super::histogram::round3;
use super::procstat::ProcSample;
use super::publisher::{Pace, PublishStats, Publisher};
use super::report::Progress;
use super::subscriber::{open_live, SubscribeError};
use super::{at_least, per_sec, Ctx, LoadError, StormArgs, Target};

/// Call sids the ticks are spread over.
const CALLS: u64 = 8;
/// Read buffer of a storm client (it reads about one event per connection).
const BUFFER: usize = 16 * 1024;
/// How long a connection may take to be answered and send `stream.open`.
const OPEN_WITHIN: Duration = Duration::from_secs(5);
/// How long a client waits for an event once its stream is open before it closes
/// anyway.
const EVENT_WITHIN: Duration = Duration::from_secs(1);
/// Most connections one client opens in the storm phase.
const MAX_RECONNECTS: u64 = 10_000;
/// How long a storm client's signed URL stays valid after the storm phase.
const URL_MARGIN: Duration = Duration::from_secs(60);
/// Pause after a refused or failed connection, so a refusing server is not hammered
/// in a tight loop.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The options as reported.
pub fn params(a: &StormArgs) -> Value {
    json!({"clients": a.clients, "rate": a.rate, "phase": a.phase})
}

/// What the storm's clients saw, all together.
#[derive(Debug, Default)]
struct Tally {
    /// Connections that opened, got `stream.open`, then an event or the wait's end.
    reconnects: u64,
    /// Of those, the ones whose wait for an event ran out.
    without_event: u64,
    /// Connections answered with another status than 200, by status.
    refused: BTreeMap<String, u64>,
    /// Connections that failed otherwise (`timeout`, `io`).
    failed: BTreeMap<String, u64>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, a: &StormArgs) -> Result<Value, LoadError> {
    at_least("clients", a.clients as u64, 1)?;
    at_least("rate", a.rate, 1)?;
    at_least("phase", a.phase, 1)?;
    if ctx.server.target == Target::Nchan {
        return Err(LoadError::Options(
            "storm needs the switchboard target (nchan has no client sessions or cursor=earliest replays)"
                .into(),
        ));
    }
    // Both phases fit in --duration.
    let phase = Duration::from_secs(a.phase).min(ctx.duration / 2);
    let ticks = (a.rate as f64 * phase.as_secs_f64()).ceil() as u64;
    let mut publisher = Publisher::new(&ctx.server);
    let published = Cell::new(0u64);
    let count = |_: u64, accepted: bool| {
        if accepted {
            published.set(published.get() + 1);
        }
        true
    };
    let mut progress = Progress::new("storm");
    let before = ctx.sample()?;

    // Quiet: the publisher alone.
    let start = Instant::now();
    let pace = Pace {
        start,
        rate: a.rate,
        deadline: start + phase,
    };
    let quiet_run = publisher.paced(0..ticks, pace, CALLS, ctx.run, count);
    progress
        .during(quiet_run, || {
            format!("quiet  {} published", published.get())
        })
        .await;
    let quiet_secs = start.elapsed().as_secs_f64();
    let quiet = std::mem::take(&mut publisher.stats);
    let middle = ctx.sample()?;

    // Storm: the same publisher, on the same connection, at the same rate, while the
    // clients reconnect.
    let start = Instant::now();
    let pace = Pace {
        start,
        rate: a.rate,
        deadline: start + phase,
    };
    let tally = RefCell::new(Tally::default());
    let gate = Semaphore::new(OPENING_AT_ONCE);
    // The URLs outlive the phase by a minute, no more: a client's subscription lasts
    // as long as its URL, so its session ends `stream.idle_ttl_secs` after its last
    // connection, not an hour later.
    let valid_for = phase + URL_MARGIN;
    let clients = (0..a.clients).map(|i| {
        let id = format!("storm-{}-{i}", ctx.run);
        let query = [("client", id.as_str()), ("cursor", "earliest")];
        let request = ctx.server.stream_request_with("load.*", &query, valid_for);
        reconnect_loop(ctx, request, pace.deadline, &gate, &tally)
    });
    let storm_run = async {
        tokio::join!(
            publisher.paced(ticks..2 * ticks, pace, CALLS, ctx.run, count),
            join_all(clients)
        )
    };
    progress
        .during(storm_run, || {
            format!(
                "storm  {} published  {} reconnects",
                published.get(),
                tally.borrow().reconnects
            )
        })
        .await;
    progress.finish();
    let storm_secs = start.elapsed().as_secs_f64();
    let storm = publisher.stats;
    let after = ctx.sample()?;

    let tally = tally.into_inner();
    let mut stream_errors = tally.refused.clone();
    stream_errors.extend(tally.failed.clone());
    Ok(json!({
        "phase_secs": round3(phase.as_secs_f64()),
        "quiet": phase_json(&quiet, ticks, quiet_secs, cpu(before, middle)),
        "storm": phase_json(&storm, ticks, storm_secs, cpu(middle, after)),
        "p99_ratio": p99_ratio(&quiet, &storm),
        "reconnects": tally.reconnects,
        "reconnects_per_sec": per_sec(tally.reconnects, storm_secs),
        "reconnects_without_event": tally.without_event,
        "stream_refusals": tally.refused.values().sum::<u64>(),
        "stream_errors": stream_errors,
        "rss_before_bytes": before.map(|s| s.rss_bytes),
        "rss_after_bytes": after.map(|s| s.rss_bytes),
    }))
}

/// One client of the storm: opens its stream, waits for `stream.open` and one event
/// (at most [`EVENT_WITHIN`]), closes and opens again, until `deadline` or
/// [`MAX_RECONNECTS`]. A connection the deadline cuts short is not counted.
async fn reconnect_loop(
    ctx: &Ctx,
    request: Vec<u8>,
    deadline: Instant,
    gate: &Semaphore,
    tally: &RefCell<Tally>,
) {
    for _ in 0..MAX_RECONNECTS {
        if Instant::now() >= deadline {
            break;
        }
        let attempt = async {
            let _permit = gate.acquire().await;
            let mut sub = open_live(&ctx.server, &request, None, BUFFER, OPEN_WITHIN).await?;
            sub.wait_event(EVENT_WITHIN).await
            // Dropping `sub` closes the connection.
        };
        let Ok(outcome) = tokio::time::timeout_at(deadline.into(), attempt).await else {
            break;
        };
        let failed = {
            let mut tally = tally.borrow_mut();
            match outcome {
                Ok(got_event) => {
                    tally.reconnects += 1;
                    if !got_event {
                        tally.without_event += 1;
                    }
                    false
                }
                Err(SubscribeError::Status(status)) => {
                    *tally.refused.entry(status.to_string()).or_default() += 1;
                    true
                }
                Err(e) => {
                    *tally.failed.entry(e.key()).or_default() += 1;
                    true
                }
            }
        };
        if failed {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// The server's CPU seconds between two samples (`None` without `--server-pid`).
fn cpu(from: Option<ProcSample>, to: Option<ProcSample>) -> Option<f64> {
    match (from, to) {
        (Some(from), Some(to)) => Some(round3(to.cpu_secs - from.cpu_secs)),
        _ => None,
    }
}

/// One phase's publishing numbers; `due` ticks were scheduled in it.
fn phase_json(stats: &PublishStats, due: u64, seconds: f64, cpu: Option<f64>) -> Value {
    let sent = stats.requests + stats.io_errors;
    json!({
        "published": stats.events,
        "unsent": due.saturating_sub(sent),
        "refused": stats.error_count(),
        "errors": stats.errors_json(),
        "published_per_sec": per_sec(stats.events, seconds),
        "latency_ms": stats.latency.summary_ms(&["p50", "p99", "p999", "max"]),
        "lag_ms": stats.lag.summary_ms(&["p99", "max"]),
        "server_cpu_secs": cpu,
    })
}

/// The storm's publish latency p99 over the quiet one's; `null` if either phase
/// recorded nothing.
fn p99_ratio(quiet: &PublishStats, storm: &PublishStats) -> Value {
    let (q, s) = (quiet.latency.quantile(0.99), storm.latency.quantile(0.99));
    if quiet.latency.count() == 0 || storm.latency.count() == 0 || q == 0 {
        return Value::Null;
    }
    json!(round3(s as f64 / q as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(latencies: &[u64]) -> PublishStats {
        let mut s = PublishStats::default();
        for &us in latencies {
            s.latency.record(us);
        }
        s
    }

    #[test]
    fn the_ratio_compares_the_p99s_and_is_null_without_data() {
        let quiet = stats(&[100; 100]);
        let storm = stats(&[250; 100]);
        assert_eq!(p99_ratio(&quiet, &storm), json!(2.5));
        assert_eq!(p99_ratio(&stats(&[]), &storm), Value::Null);
        assert_eq!(p99_ratio(&quiet, &stats(&[])), Value::Null);
    }

    #[test]
    fn a_phase_reports_refusals_by_status() {
        let mut s = stats(&[1000, 2000]);
        s.events = 2;
        s.statuses.insert(429, 3);
        s.requests = 5;
        let v = phase_json(&s, 8, 1.0, None);
        assert_eq!(v["published"], 2);
        assert_eq!(v["unsent"], 3, "8 due, 5 answered: {v}");
        assert_eq!(v["refused"], 3);
        assert_eq!(v["errors"], json!({"429": 3}));
        assert!(v["latency_ms"]["p99"].as_f64().is_some(), "{v}");
        assert_eq!(v["lag_ms"]["p99"], Value::Null, "nothing paced: {v}");
        assert_eq!(v["server_cpu_secs"], Value::Null);
    }
}
