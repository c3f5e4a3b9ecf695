//! `loadtest publish`: K keep-alive connections publish R requests of N events each
//! as fast as the server answers. Measures the publish path alone (no subscribers).

use std::cell::Cell;
use std::time::Instant;

use futures_util::future::join_all;
use serde_json::{json, Value};

use super::histogram::round3;
use super::publisher::{PublishStats, Publisher};
use super::report::Progress;
use super::{at_least, per_sec, Ctx, LoadError, PublishArgs, Target};

/// Call sids the events are spread over, so every broker shard gets work.
const CALLS: u64 = 1024;

/// The options as reported.
pub fn params(a: &PublishArgs) -> Value {
    json!({"connections": a.connections, "batch": a.batch, "requests": a.requests})
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, a: &PublishArgs) -> Result<Value, LoadError> {
    at_least("connections", a.connections as u64, 1)?;
    at_least("batch", a.batch as u64, 1)?;
    at_least("requests", a.requests, 1)?;
    if a.batch > 1 && ctx.server.target == Target::Nchan {
        return Err(LoadError::Options(
            "--batch must be 1 with --target nchan (nchan publishes one message per request)"
                .into(),
        ));
    }
    if a.batch > 1000 {
        return Err(LoadError::Options(
            "--batch at most 1000 (the server's publish.max_batch ceiling)".into(),
        ));
    }
    let batch = a.batch as u64;
    let next = Cell::new(0u64);
    let sent = Cell::new(0u64);
    let before = ctx.sample()?;
    let start = Instant::now();
    let deadline = start + ctx.duration;

    let connections = (0..a.connections.min(a.requests as usize)).map(|_| {
        let (next, sent) = (&next, &sent);
        async move {
            let mut publisher = Publisher::new(&ctx.server);
            loop {
                let n = next.get();
                if n >= a.requests || Instant::now() >= deadline || publisher.gave_up() {
                    break;
                }
                next.set(n + 1);
                let first = n * batch;
                publisher
                    .publish(first..first + batch, n % CALLS, ctx.run)
                    .await;
                sent.set(sent.get() + 1);
            }
            publisher.stats
        }
    });
    let mut progress = Progress::new("publish");
    let per_conn = progress
        .during(join_all(connections), || {
            let elapsed = start.elapsed().as_secs_f64();
            format!(
                "{} requests  {:.0} req/s",
                sent.get(),
                per_sec(sent.get(), elapsed)
            )
        })
        .await;
    progress.finish();
    let seconds = start.elapsed().as_secs_f64();
    let after = ctx.sample()?;

    let mut stats = PublishStats::default();
    for s in &per_conn {
        stats.merge(s);
    }
    let cpu = match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu_secs - b.cpu_secs),
        _ => None,
    };
    let cpu_per_event = cpu
        .filter(|_| stats.events > 0)
        .map(|c| round3(c * 1e6 / stats.events as f64));
    Ok(json!({
        "requests": stats.requests,
        "events": stats.events,
        "seconds": round3(seconds),
        "requests_per_sec": per_sec(stats.requests, seconds),
        "events_per_sec": per_sec(stats.events, seconds),
        "errors": stats.errors_json(),
        "latency_ms": stats.latency.summary_ms(&["p50", "p99", "p999", "max"]),
        "server_cpu_secs": cpu.map(round3),
        "server_cpu_us_per_event": cpu_per_event,
        "rss_before_bytes": before.map(|s| s.rss_bytes),
        "rss_after_bytes": after.map(|s| s.rss_bytes),
    }))
}
