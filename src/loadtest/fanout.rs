//! `loadtest fanout`: S subscribers, each on its own stream, and P publishers sending
//! M numbered ticks. Every subscriber should receive every tick once, in order per
//! publisher; the end-to-end latency is the receive instant minus the send stamp.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use super::histogram::{round3, Histogram};
use super::publisher::{PublishStats, Publisher};
use super::report::Progress;
use super::seqtrack::SeqTracker;
use super::subscriber::{open_live, End, Shared, SubscriberStats};
use super::{at_least, per_sec, Ctx, FanoutArgs, LoadError};

/// Streams opening at once (the rest wait their turn).
pub const OPENING_AT_ONCE: usize = 256;
/// Read buffer of a fan-out subscriber.
const BUFFER: usize = 32 * 1024;
/// How long subscribers may stay silent after the last publish before the run ends.
const QUIET: Duration = Duration::from_secs(5);

/// The options as reported.
pub fn params(a: &FanoutArgs) -> Value {
    json!({
        "subscribers": a.subscribers,
        "messages": a.messages,
        "rate": a.rate,
        "publishers": a.publishers,
        "subscribe_urls": a.subscribe_urls,
    })
}

/// Waits until each of `wanted` subscribers is live or has failed, for at most
/// `within` and a second: nothing is published before, so no subscriber misses the
/// start.
pub async fn until_subscribed(
    connected: &Cell<usize>,
    failed: &RefCell<BTreeMap<String, u64>>,
    wanted: usize,
    within: Duration,
    progress: &mut Progress,
) {
    let deadline = Instant::now() + within + Duration::from_secs(1);
    let failures = || failed.borrow().values().sum::<u64>() as usize;
    while connected.get() + failures() < wanted && Instant::now() < deadline {
        progress.tick(|| format!("{} of {wanted} subscribers live", connected.get()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long opening `n` streams may take.
pub fn connect_bound(n: usize) -> Duration {
    Duration::from_secs(30 + n as u64 / 1000)
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, a: &FanoutArgs) -> Result<Value, LoadError> {
    at_least("subscribers", a.subscribers as u64, 1)?;
    at_least("messages", a.messages, 1)?;
    at_least("publishers", a.publishers as u64, 1)?;
    if a.messages > super::seqtrack::MAX_SEQ {
        return Err(LoadError::Options(format!(
            "--messages at most {}",
            super::seqtrack::MAX_SEQ
        )));
    }
    // The servers subscribers connect to, in turn, each with its own signed request
    // (the request names its host).
    let mut servers = Vec::new();
    for url in &a.subscribe_urls {
        let common = super::Common {
            url: url.clone(),
            ..a.common.clone()
        };
        servers.push(super::target::Server::new(&common).await?);
    }
    let servers: Vec<&super::target::Server> = match servers.is_empty() {
        true => vec![&ctx.server],
        false => servers.iter().collect(),
    };
    let requests: Vec<Vec<u8>> = servers.iter().map(|s| s.stream_request("load.*")).collect();
    let shared = Shared {
        streams: a.publishers,
        deliveries: AtomicU64::new(0),
        soak: None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Semaphore::new(OPENING_AT_ONCE);
    let connected = Cell::new(0usize);
    let failed: RefCell<BTreeMap<String, u64>> = Default::default();
    let finished = Cell::new(0usize);
    let within = connect_bound(a.subscribers);

    let subscribers = (0..a.subscribers).map(|i| {
        let stop = stop_rx.clone();
        let (server, request) = (servers[i % servers.len()], &requests[i % servers.len()]);
        let (gate, shared) = (&gate, &shared);
        let (connected, failed, finished) = (&connected, &failed, &finished);
        async move {
            let opened = {
                let _permit = gate.acquire().await;
                open_live(server, request, None, BUFFER, within).await
            };
            let result = match opened {
                Ok(sub) => {
                    connected.set(connected.get() + 1);
                    Some(sub.consume(ctx.run, Some(a.messages), shared, stop).await)
                }
                Err(e) => {
                    *failed.borrow_mut().entry(e.key()).or_default() += 1;
                    None
                }
            };
            finished.set(finished.get() + 1);
            result
        }
    });

    let coordinate = async {
        let mut progress = Progress::new("fanout");
        until_subscribed(&connected, &failed, a.subscribers, within, &mut progress).await;
        let before = ctx.sample()?;
        let start = Instant::now();
        let deadline = start + ctx.duration;
        let published = publish_all(ctx, a, start, deadline, &shared, &mut progress).await;
        // Wait for the deliveries to finish: all subscribers complete, silence, or the
        // run's bound.
        let mut last_count = shared.deliveries.load(Ordering::Relaxed);
        let mut last_change = Instant::now();
        while finished.get() < a.subscribers && Instant::now() < deadline {
            let count = shared.deliveries.load(Ordering::Relaxed);
            if count != last_count {
                last_count = count;
                last_change = Instant::now();
            } else if last_change.elapsed() >= QUIET {
                break;
            }
            progress.tick(|| format!("{} published  {} deliveries", published.0.events, count));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = ctx.sample()?;
        let _ = stop_tx.send(true);
        progress.finish();
        Ok::<_, LoadError>((published, start, before, after))
    };

    let (coordinated, stats) = tokio::join!(coordinate, join_all(subscribers));
    let ((published, accepted), start, before, after) = coordinated?;
    let stats: Vec<SubscriberStats> = stats.into_iter().flatten().collect();

    let mut latency = Histogram::new();
    let (mut deliveries, mut lost, mut duplicated, mut out_of_order, mut foreign) = (0, 0, 0, 0, 0);
    let mut incomplete = 0;
    let mut last = start;
    for s in &stats {
        latency.merge(&s.latency);
        deliveries += s.deliveries;
        lost += s.tracker.missing_from(&accepted);
        duplicated += s.tracker.duplicated();
        out_of_order += s.tracker.out_of_order();
        foreign += s.foreign + s.tracker.out_of_range();
        if s.ended != End::Complete {
            incomplete += 1;
        }
        last = last.max(s.last.unwrap_or(start));
    }
    // Subscribers that never opened lost everything.
    let unopened = (a.subscribers - stats.len()) as u64;
    lost += unopened * published.events;
    let seconds = last.duration_since(start).as_secs_f64();
    let cpu = match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu_secs - b.cpu_secs),
        _ => None,
    };
    let failed = failed.into_inner();
    Ok(json!({
        "published": published.events,
        "expected": published.events * a.subscribers as u64,
        "deliveries": deliveries,
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "seconds": round3(seconds),
        "deliveries_per_sec": per_sec(deliveries, seconds),
        "latency_ms": latency.summary_ms(&["p50", "p90", "p99", "p999", "max"]),
        "server_cpu_secs": cpu.map(round3),
        "server_cpu_us_per_delivery": cpu.filter(|_| deliveries > 0).map(|c| round3(c * 1e6 / deliveries as f64)),
        "rss_before_bytes": before.map(|s| s.rss_bytes),
        "rss_after_bytes": after.map(|s| s.rss_bytes),
        "subscribers_connected": stats.len(),
        "subscribe_errors": failed,
        "subscribers_incomplete": incomplete,
        "publish_errors": published.errors_json(),
        "publish_latency_ms": published.latency.summary_ms(&["p50", "p99", "max"]),
        "foreign_events": foreign,
    }))
}

/// Publishes ticks `0..messages` over `publishers` connections, publisher `p` taking
/// `p, p + P, …` on its own call sid (so each publisher's ticks are ordered), paced at
/// `rate` per second when it is not 0. Refused ticks are not retried: they are not
/// expected (the returned tracker holds the accepted ones) and show in the errors.
async fn publish_all(
    ctx: &Ctx,
    a: &FanoutArgs,
    start: Instant,
    deadline: Instant,
    shared: &Shared,
    progress: &mut Progress,
) -> (PublishStats, SeqTracker) {
    let publishers = a.publishers as u64;
    let published = Cell::new(0u64);
    let accepted = RefCell::new(SeqTracker::new(1));
    let tasks = (0..publishers).map(|p| {
        let (published, accepted) = (&published, &accepted);
        async move {
            let mut publisher = Publisher::new(&ctx.server);
            let mut seq = p;
            while seq < a.messages && Instant::now() < deadline && !publisher.gave_up() {
                if a.rate > 0 {
                    let due = start + Duration::from_secs_f64(seq as f64 / a.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                // Only the ticks the server accepted are expected; the rest are
                // counted in publish_errors.
                if publisher.publish(seq..seq + 1, p, ctx.run).await {
                    published.set(published.get() + 1);
                    accepted.borrow_mut().record(seq);
                }
                seq += publishers;
            }
            publisher.stats
        }
    });
    let per_conn = progress
        .during(join_all(tasks), || {
            format!(
                "{} published  {} deliveries",
                published.get(),
                shared.deliveries.load(Ordering::Relaxed)
            )
        })
        .await;
    let mut stats = PublishStats::default();
    for s in &per_conn {
        stats.merge(s);
    }
    let accepted = std::mem::replace(&mut *accepted.borrow_mut(), SeqTracker::new(1));
    (stats, accepted)
}
