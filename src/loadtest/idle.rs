//! `loadtest idle`: N SSE connections opened and held for `--hold` seconds; the
//! server's resident memory before and after gives its cost per idle connection.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use super::fanout::{connect_bound, OPENING_AT_ONCE};
use super::report::Progress;
use super::subscriber::open_live;
use super::{at_least, Ctx, IdleArgs, LoadError};

/// Connections per loopback source address: one address has about 28 000 ephemeral
/// ports, so beyond this the tool moves on to 127.0.0.2, 127.0.0.3, …
pub const PER_SOURCE: usize = 25_000;
/// Read buffer of an idle connection: it only ever reads heartbeats.
const BUFFER: usize = 1024;
/// Time the server gets to settle once all connections are open, before its memory
/// is read.
const SETTLE: Duration = Duration::from_secs(1);

/// The options as reported.
pub fn params(a: &IdleArgs) -> Value {
    json!({"connections": a.connections, "hold": a.hold})
}

/// The source address of connection `i`, when more than one address is needed.
pub fn source_for(i: usize, total: usize, server: IpAddr) -> Option<IpAddr> {
    if total <= PER_SOURCE || !server.is_loopback() || !server.is_ipv4() {
        return None;
    }
    let n = (i / PER_SOURCE + 1) as u32;
    let ip = u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n.min(0x00ff_fffe);
    Some(IpAddr::V4(Ipv4Addr::from(ip)))
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, a: &IdleArgs) -> Result<Value, LoadError> {
    at_least("connections", a.connections as u64, 1)?;
    if a.connections > PER_SOURCE && !ctx.server.endpoint.addr.ip().is_loopback() {
        return Err(LoadError::Options(format!(
            "more than {PER_SOURCE} connections need a loopback server address (to spread them over 127.0.0.x)"
        )));
    }
    let request = ctx.server.stream_request("load.idle");
    let before = ctx.sample()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Semaphore::new(OPENING_AT_ONCE);
    let opened = Cell::new(0usize);
    let failed: RefCell<BTreeMap<String, u64>> = Default::default();
    let within = connect_bound(a.connections);
    let server_ip = ctx.server.endpoint.addr.ip();

    let connections = (0..a.connections).map(|i| {
        let stop = stop_rx.clone();
        let (gate, request, opened, failed) = (&gate, &request, &opened, &failed);
        async move {
            let sub = {
                let _permit = gate.acquire().await;
                let source = source_for(i, a.connections, server_ip);
                open_live(&ctx.server, request, source, BUFFER, within).await
            };
            match sub {
                Ok(sub) => {
                    opened.set(opened.get() + 1);
                    sub.hold(stop).await
                }
                Err(e) => {
                    *failed.borrow_mut().entry(e.key()).or_default() += 1;
                    false
                }
            }
        }
    });

    let coordinate = async {
        let mut progress = Progress::new("idle");
        let start = Instant::now();
        let open_deadline = start + within + Duration::from_secs(1);
        let failures = || failed.borrow().values().sum::<u64>() as usize;
        while opened.get() + failures() < a.connections && Instant::now() < open_deadline {
            progress.tick(|| format!("{} open  {} failed", opened.get(), failures()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let open_secs = start.elapsed().as_secs_f64();
        tokio::time::sleep(SETTLE.min(Duration::from_secs(a.hold.max(1)))).await;
        let after = ctx.sample();
        let hold_end = Instant::now() + Duration::from_secs(a.hold).saturating_sub(SETTLE);
        while Instant::now() < hold_end {
            progress.tick(|| format!("holding {}", opened.get()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop_tx.send(true);
        progress.finish();
        (open_secs, after)
    };

    let ((open_secs, after), held) = tokio::join!(coordinate, join_all(connections));
    let after = after?;
    let holding = held.iter().filter(|h| **h).count() as u64;
    let dropped = opened.get() as u64 - holding;
    let rss_per = match (before, after) {
        (Some(b), Some(a)) if holding > 0 => {
            Some((a.rss_bytes as f64 - b.rss_bytes as f64) / holding as f64)
        }
        _ => None,
    };
    Ok(json!({
        "connections": holding,
        "failed": failures_total(&failed.borrow()) + dropped,
        "failures": failed.into_inner(),
        "dropped_while_held": dropped,
        "open_seconds": super::histogram::round3(open_secs),
        "rss_before_bytes": before.map(|s| s.rss_bytes),
        "rss_after_bytes": after.map(|s| s.rss_bytes),
        "rss_per_connection_bytes": rss_per.map(f64::round),
    }))
}

fn failures_total(failed: &BTreeMap<String, u64>) -> u64 {
    failed.values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_only_when_needed() {
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        assert_eq!(source_for(0, 100, lo), None);
        assert_eq!(
            source_for(0, 60_000, lo),
            Some(Ipv4Addr::new(127, 0, 0, 1).into())
        );
        assert_eq!(
            source_for(PER_SOURCE, 60_000, lo),
            Some(Ipv4Addr::new(127, 0, 0, 2).into())
        );
        let other: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
        assert_eq!(source_for(30_000, 60_000, other), None);
    }
}
