//! Memory per idle call: places `IDLE_CALLS` (default 10 000) simulated outbound calls
//! that each sit in a one-hour `<Pause>`, waits until all are running, and reports the
//! growth of the process's resident memory per call. Everything a call costs is in the
//! figure: its actor and program future, its registry entry and REST record, and the
//! `call.start` event each one publishes (retained by the shards for replay).
//!
//! Run: `cargo bench --bench idle_calls` (or `IDLE_CALLS=2000 cargo bench --bench
//! idle_calls`). Run as a test (`cargo test --benches`, as CI does, or `cargo bench --
//! --test`) it places 100 calls: a check that it still works, not a measurement. Bounded: gives up after two
//! minutes.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use switchboard::config::AccountConfig;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not (criterion's rule too).
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let calls: usize = std::env::var("IDLE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 100 } else { 10_000 });
    let account = switchboard::account::generate();
    let mut config = switchboard::Config {
        accounts: vec![AccountConfig {
            sid: account.sid.clone(),
            auth_token: account.auth_token.clone(),
        }],
        ..Default::default()
    };
    config.sim.ring_secs = 0.0;
    // One account holds them all (plus the warm-up call).
    config.limits.calls_per_account = calls + 1;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        actix_rt::System::new()
            .block_on(switchboard::serve(config, listener, async move {
                let _ = stop_rx.await;
            }))
            .expect("serve");
    });

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "server never came up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Warm up allocator arenas and connection pools with one call first.
        let place = |n: usize| {
            let http = http.clone();
            let url = format!("{base}/2010-04-01/Accounts/{}/Calls.json", account.sid);
            let (sid, token) = (account.sid.clone(), account.auth_token.clone());
            async move {
                let reply = http
                    .post(url)
                    .basic_auth(sid, Some(token))
                    .form(&[
                        ("To", format!("+1415{:07}", n)),
                        ("From", "+14155550100".to_string()),
                        ("Twiml", "<Response><Pause length=\"3600\"/></Response>".to_string()),
                    ])
                    .send()
                    .await
                    .expect("place call");
                let status = reply.status();
                assert_eq!(status, 201, "{}", reply.text().await.unwrap_or_default());
            }
        };
        place(0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = resident_bytes();
        let started = Instant::now();
        for chunk in (1..=calls).collect::<Vec<_>>().chunks(200) {
            futures_util::future::join_all(chunk.iter().map(|&n| place(n))).await;
        }
        loop {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text");
            if metric(&text, "switchboard_calls_active") as usize > calls {
                break;
            }
            assert!(Instant::now() < deadline, "calls never all started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = resident_bytes();
        let per_call = after.saturating_sub(before) as f64 / calls as f64;
        println!(
            "idle_calls: {calls} calls placed and running in {:.1?}; resident memory {:.1} MiB -> {:.1} MiB; {:.1} KiB per idle call",
            started.elapsed(),
            before as f64 / (1 << 20) as f64,
            after as f64 / (1 << 20) as f64,
            per_call / 1024.0
        );
    });
    let _ = stop_tx.send(());
    let _ = server.join();
}
