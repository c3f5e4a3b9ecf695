//! `switchboard loadtest` (docs/api.md §9) against a real server over real sockets: each
//! scenario through the library entry point with small bounded counts, and the real
//! binary's `--json` output.

use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use switchboard::loadtest::{run, LoadtestArgs, Report};

use crate::common::TestServer;

/// A server whose limits let a small load test through untouched.
fn server() -> TestServer {
    TestServer::start(|config| {
        config.limits.publish_per_sec = 1_000_000;
        config.limits.publish_burst = 1_000_000;
        config.sim.time_scale = 0.01;
        config.sim.ring_secs = 0.0;
    })
}

/// [`load`], measuring the server: it runs in this process, so `--server-pid` is
/// ours.
async fn load_measured(server: &TestServer, argv: &[&str]) -> Report {
    let pid = std::process::id().to_string();
    let mut full = argv.to_vec();
    full.extend_from_slice(&["--server-pid", &pid]);
    load(server, &full).await
}

/// Runs `loadtest <argv…>` against `server` as account 0 through the library.
async fn load(server: &TestServer, argv: &[&str]) -> Report {
    let url = server.base_url();
    let mut full = vec!["loadtest"];
    full.extend_from_slice(argv);
    full.extend_from_slice(&[
        "--url",
        &url,
        "--account",
        server.sid(0),
        "--token",
        server.token(0),
        "--duration",
        "20",
    ]);
    let args = LoadtestArgs::try_parse_from(&full).expect("arguments parse");
    let report = run(&args).await.expect("the load test runs");
    eprintln!("{}", report.to_table());
    report
}

fn n(results: &Value, key: &str) -> u64 {
    results[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {results}"))
}

#[tokio::test]
async fn publish_gets_every_request_accepted() {
    let server = server();
    let report = load_measured(
        &server,
        &["publish", "--requests", "2000", "--connections", "8"],
    )
    .await;
    assert_eq!(report.scenario, "publish");
    assert_eq!(report.target, "switchboard");
    let r = &report.results;
    assert_eq!(n(r, "requests"), 2000, "{r}");
    assert_eq!(n(r, "events"), 2000, "{r}");
    assert_eq!(
        r["errors"],
        serde_json::json!({}),
        "every request got 202: {r}"
    );
    let latency = &r["latency_ms"];
    for key in ["p50", "p99", "p999", "max"] {
        assert!(
            latency[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {r}"
        );
    }
    assert!(latency["p50"].as_f64() <= latency["max"].as_f64(), "{r}");
    // The test process is the server here, so its CPU moved during the run.
    assert!(
        r["server_cpu_secs"].as_f64().is_some_and(|v| v > 0.0),
        "{r}"
    );
    assert!(r["server_cpu_us_per_event"].as_f64().is_some(), "{r}");
    assert!(n(r, "rss_after_bytes") > 0, "{r}");
}

#[tokio::test]
async fn publish_batches_count_events_and_report_refusals() {
    let server = TestServer::start(|config| {
        // Room for two batches of 50 at once, then refusals: the tool must show them.
        config.limits.publish_per_sec = 1;
        config.limits.publish_burst = 100;
        config.publish.max_batch = 50;
    });
    let report = load(
        &server,
        &[
            "publish",
            "--requests",
            "10",
            "--connections",
            "1",
            "--batch",
            "50",
        ],
    )
    .await;
    let r = &report.results;
    assert_eq!(n(r, "requests"), 10, "{r}");
    assert_eq!(n(r, "events"), 100, "two batches of 50 fit the burst: {r}");
    assert_eq!(r["errors"]["429"], 8, "the other eight were refused: {r}");
    assert!(
        r["server_cpu_us_per_event"].is_null(),
        "no --server-pid: {r}"
    );
}

#[tokio::test]
async fn fanout_delivers_every_message_to_every_subscriber_once_in_order() {
    let server = server();
    let report = load(
        &server,
        &[
            "fanout",
            "--subscribers",
            "20",
            "--messages",
            "50",
            "--publishers",
            "4",
        ],
    )
    .await;
    let r = &report.results;
    assert_eq!(n(r, "published"), 50, "{r}");
    assert_eq!(n(r, "expected"), 1000, "{r}");
    assert_eq!(n(r, "deliveries"), 1000, "{r}");
    assert_eq!(n(r, "lost"), 0, "{r}");
    assert_eq!(n(r, "duplicated"), 0, "{r}");
    assert_eq!(n(r, "out_of_order"), 0, "{r}");
    assert_eq!(n(r, "subscribers_connected"), 20, "{r}");
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_ms"][key].as_f64().is_some(), "{key} in {r}");
    }
    assert!(
        r["deliveries_per_sec"].as_f64().is_some_and(|v| v > 0.0),
        "{r}"
    );
}

#[tokio::test]
async fn fanout_counts_what_a_refusing_server_never_delivered() {
    // Stream sessions beyond the quota are refused: those subscribers lose everything,
    // and the run says so instead of hiding them.
    let server = TestServer::start(|config| config.limits.sessions_per_account = 3);
    let report = load(
        &server,
        &[
            "fanout",
            "--subscribers",
            "5",
            "--messages",
            "10",
            "--publishers",
            "1",
        ],
    )
    .await;
    let r = &report.results;
    assert_eq!(n(r, "subscribers_connected"), 3, "{r}");
    assert_eq!(r["subscribe_errors"]["429"], 2, "{r}");
    assert_eq!(n(r, "deliveries"), 30, "{r}");
    assert_eq!(n(r, "lost"), 20, "{r}");
}

#[tokio::test]
async fn idle_holds_every_connection() {
    let server = server();
    let report = load_measured(&server, &["idle", "--connections", "200", "--hold", "2"]).await;
    let r = &report.results;
    assert_eq!(n(r, "connections"), 200, "{r}");
    assert_eq!(n(r, "failed"), 0, "{r}");
    assert!(n(r, "rss_before_bytes") > 0, "{r}");
    assert!(n(r, "rss_after_bytes") > 0, "{r}");
    assert!(r["rss_per_connection_bytes"].as_f64().is_some(), "{r}");
}

#[tokio::test]
async fn calls_complete_with_their_events() {
    let server = server();
    let report = load_measured(
        &server,
        &[
            "calls",
            "--calls",
            "10",
            "--concurrency",
            "4",
            "--digits",
            "42",
        ],
    )
    .await;
    let r = &report.results;
    assert_eq!(n(r, "calls"), 10, "{r}");
    assert_eq!(n(r, "completed"), 10, "{r}");
    assert_eq!(n(r, "failed"), 0, "{r}");
    assert_eq!(r["call_end_statuses"]["completed"], 10, "{r}");
    // call.start, gather.start, gather.end and call.end of each call.
    assert_eq!(n(r, "events"), 40, "{r}");
    for key in ["p50", "p99", "max"] {
        assert!(r["setup_ms"][key].as_f64().is_some(), "{key} in {r}");
    }
    assert!(r["rss_per_call_bytes"].as_f64().is_some(), "{r}");
}

#[tokio::test]
async fn calls_say_why_the_application_is_refused() {
    // Without private networks the router may not reach the tool's IVR on 127.0.0.1:
    // the run stops at set-up with the server's reason instead of failing every call.
    let server = TestServer::start(|config| {
        config.egress.allow_private_networks = Some(false);
    });
    let url = server.base_url();
    let args = LoadtestArgs::try_parse_from([
        "loadtest",
        "calls",
        "--calls",
        "3",
        "--url",
        &url,
        "--account",
        server.sid(0),
        "--token",
        server.token(0),
    ])
    .expect("arguments parse");
    let error = run(&args)
        .await
        .expect_err("the number cannot point at 127.0.0.1");
    assert!(
        error.to_string().contains("allow_private_networks"),
        "{error}"
    );
}

#[tokio::test]
async fn soak_reports_every_interval_without_loss() {
    let server = server();
    let pid = std::process::id().to_string();
    let url = server.base_url();
    let args = LoadtestArgs::try_parse_from([
        "loadtest",
        "soak",
        "--duration",
        "3",
        "--interval",
        "1",
        "--subscribers",
        "10",
        "--rate",
        "50",
        "--calls-per-sec",
        "2",
        "--url",
        &url,
        "--account",
        server.sid(0),
        "--token",
        server.token(0),
        "--server-pid",
        &pid,
    ])
    .expect("arguments parse");
    let report = run(&args).await.expect("the soak runs");
    eprintln!("{}", report.to_table());
    let r = &report.results;
    let intervals = r["intervals"].as_array().expect("intervals");
    assert_eq!(intervals.len(), 3, "{r}");
    for (i, row) in intervals.iter().enumerate() {
        assert_eq!(row["t_secs"].as_f64(), Some((i + 1) as f64), "{row}");
        assert_eq!(row["lost"], 0, "{row}");
        assert!(
            row["published_per_sec"].as_f64().is_some_and(|v| v > 0.0),
            "{row}"
        );
        assert!(
            row["deliveries_per_sec"].as_f64().is_some_and(|v| v > 0.0),
            "{row}"
        );
        assert!(row["rss_bytes"].as_u64().is_some_and(|v| v > 0), "{row}");
    }
    assert!(n(r, "published") >= 140, "about 50 a second for 3 s: {r}");
    assert_eq!(n(r, "lost"), 0, "{r}");
    assert_eq!(n(r, "duplicated"), 0, "{r}");
    assert_eq!(n(r, "out_of_order"), 0, "{r}");
    assert_eq!(n(r, "deliveries"), n(r, "published") * 10, "{r}");
    assert!(n(r, "calls_completed") >= 1, "{r}");
    assert_eq!(n(r, "calls_failed"), 0, "{r}");
}

#[tokio::test]
async fn storm_reconnects_with_earliest_while_the_publisher_runs() {
    let server = server();
    let report = load_measured(
        &server,
        &["storm", "--clients", "20", "--rate", "50", "--phase", "1"],
    )
    .await;
    assert_eq!(report.scenario, "storm");
    assert_eq!(report.params["clients"], 20, "{}", report.params);
    let r = &report.results;
    for phase in ["quiet", "storm"] {
        let p = &r[phase];
        assert!(n(p, "published") > 0, "{phase}: {r}");
        assert_eq!(n(p, "refused"), 0, "{phase}: {r}");
        assert_eq!(p["errors"], serde_json::json!({}), "{phase}: {r}");
        for key in ["p50", "p99", "p999", "max"] {
            assert!(
                p["latency_ms"][key].as_f64().is_some_and(|v| v > 0.0),
                "{phase} {key}: {r}"
            );
        }
        assert!(p["server_cpu_secs"].as_f64().is_some(), "{phase}: {r}");
    }
    assert!(
        r["p99_ratio"].as_f64().is_some_and(|v| v > 0.0),
        "the ratio is a positive number: {r}"
    );
    assert!(n(r, "reconnects") > 0, "{r}");
    assert_eq!(n(r, "stream_refusals"), 0, "{r}");
    assert_eq!(r["stream_errors"], serde_json::json!({}), "{r}");
    // Every client asked for a replay after the quiet phase's ticks: its first
    // connection had one to read.
    assert!(n(r, "reconnects_without_event") < n(r, "reconnects"), "{r}");
}

#[tokio::test]
async fn storm_refuses_the_nchan_target() {
    let args = LoadtestArgs::try_parse_from([
        "loadtest",
        "storm",
        "--target",
        "nchan",
        "--url",
        "http://127.0.0.1:9",
    ])
    .expect("arguments parse");
    let error = run(&args).await.expect_err("storm is switchboard only");
    assert!(
        matches!(error, switchboard::loadtest::LoadError::Options(_)),
        "{error}"
    );
    assert!(error.to_string().contains("switchboard target"), "{error}");
}

#[tokio::test]
async fn nchan_target_refuses_batches_before_sending_anything() {
    let args = LoadtestArgs::try_parse_from([
        "loadtest",
        "publish",
        "--target",
        "nchan",
        "--batch",
        "2",
        "--url",
        "http://127.0.0.1:9",
    ])
    .expect("arguments parse");
    let error = run(&args).await.expect_err("batches are refused for nchan");
    assert!(error.to_string().contains("--batch must be 1"), "{error}");
}

#[tokio::test]
async fn the_binary_prints_one_json_object() {
    let server = server();
    let url = server.base_url();
    let (sid, token) = (server.sid(0).to_owned(), server.token(0).to_owned());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "loadtest",
                "publish",
                "--json",
                "--requests",
                "300",
                "--connections",
                "4",
            ])
            .args(["--url", &url, "--duration", "20"])
            .env("SWITCHBOARD_ACCOUNT", sid)
            .env("SWITCHBOARD_TOKEN", token)
            .stdin(Stdio::null())
            .output()
    });
    // The server must outlive the child: keep it until the output is in.
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the binary finishes within a minute")
        .expect("join")
        .expect("run the binary");
    drop(server);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    assert_eq!(json["scenario"], "publish");
    assert_eq!(json["target"], "switchboard");
    assert_eq!(json["params"]["requests"], 300);
    assert_eq!(json["results"]["requests"], 300, "{json}");
    assert_eq!(json["results"]["errors"], serde_json::json!({}), "{json}");
}
