//! The benchmark's own files (`loadtest/`, issue 9) must not rot while nobody runs
//! the benchmark: `loadtest/switchboard.toml` loads with the real
//! `Config::from_file`, validates, is sized for every scenario of
//! `loadtest/compare`, and a server built from it accepts a publish with its
//! account; the nginx template's placeholders are the ones the script fills in.
//! Nothing here needs nginx.

use std::path::{Path, PathBuf};

use serde_json::json;
use switchboard::Config;

use crate::common::{event, new_call_sid, TestServer};

fn loadtest_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("loadtest")
        .join(name)
}

fn load() -> Config {
    let config = Config::from_file(&loadtest_file("switchboard.toml"))
        .unwrap_or_else(|e| panic!("loadtest/switchboard.toml: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("loadtest/switchboard.toml: {e}"));
    config
}

#[test]
fn the_benchmark_config_is_valid_and_sized_for_every_scenario() {
    let config = load();
    // One core's worth of server, as nchan gets one worker process.
    assert_eq!(
        (config.workers, config.shards, config.proxies),
        (1, 1, 1),
        "workers, shards, proxies"
    );
    assert_eq!(config.accounts.len(), 1, "one fixed benchmark account");
    // idle-10k and fanout-10k: 10 000 sessions plus the publishers'.
    assert!(config.limits.sessions_per_account > 10_000 + 100);
    // calls: 10 000 at once.
    assert!(config.limits.calls_per_account >= 10_000);
    // publish-1 / publish-100 measure the server, not the rate limiter.
    assert!(config.limits.publish_per_sec >= 10_000_000);
    assert!(config.limits.publish_burst >= 10_000_000);
    assert!(
        config.publish.max_batch >= 100,
        "publish-100 sends batches of 100"
    );
    // The calls scenario's application listens on 127.0.0.1.
    assert!(config.egress.private_networks_allowed());
    assert!(config.sim.time_scale < 1.0, "simulated time runs fast");
}

#[tokio::test]
async fn a_server_from_the_benchmark_config_takes_its_accounts_publish() {
    let file = load();
    let (sid, token) = (
        file.accounts[0].sid.clone(),
        file.accounts[0].auth_token.clone(),
    );
    let mut server = TestServer::start(move |config| {
        // Everything from the file; only the listen address is the test's.
        let listen = config.listen;
        *config = file;
        config.listen = listen;
    });
    server.accounts = vec![(sid, token)];
    let ids = server
        .publish(
            0,
            &event("load.test", Some(&new_call_sid()), json!({"seq": 1})),
        )
        .await;
    assert_eq!(ids.len(), 1);
}

#[test]
fn the_nginx_template_has_exactly_the_placeholders_compare_fills() {
    let template = std::fs::read_to_string(loadtest_file("nchan.conf")).expect("nchan.conf");
    let script = std::fs::read_to_string(loadtest_file("compare")).expect("compare");
    let parts: Vec<&str> = template.split('@').collect();
    let mut placeholders: Vec<&str> = parts[1..parts.len() - 1]
        .iter()
        .copied()
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase()))
        .collect();
    placeholders.sort_unstable();
    placeholders.dedup();
    assert_eq!(placeholders, ["PIDFILE", "PORT", "TMPDIR"]);
    for p in placeholders {
        assert!(
            script.contains(&format!("\"@{p}@\"")),
            "loadtest/compare does not fill @{p}@"
        );
    }
    for line in [
        "worker_processes 1;",
        "daemon off;",
        "load_module /usr/lib/nginx/modules/ngx_nchan_module.so;",
        "nchan_publisher;",
        "nchan_subscriber;",
        "nchan_channel_id $arg_id;",
    ] {
        assert!(template.contains(line), "nchan.conf lacks `{line}`");
    }
}
