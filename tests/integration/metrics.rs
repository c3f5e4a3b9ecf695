//! Operations surface (docs/api.md §8): `/metrics` after a known workload moves by
//! exactly that workload; `promtool check metrics` accepts a live scrape; every
//! query of the Grafana dashboard names exported metrics and runs on a real
//! Prometheus; `/healthz` and `/readyz` (503 while draining).

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::channels::{eventually_metrics, scrape};
use crate::common::require_tool;
use crate::common::{free_port, http_client, new_call_sid, random_hex, TestServer, WAIT};

#[tokio::test]
async fn counters_move_by_exactly_the_workload() {
    let server = TestServer::start(|c| {
        c.shards = 2;
        c.proxies = 2;
        // A hung-up SSE client is noticed at the next write: heartbeats bound it.
        c.stream.heartbeat_secs = 1;
    });
    let before = scrape(&server).await;
    assert_eq!(before.value("switchboard_shards", &[]), 2.0);
    assert_eq!(before.value("switchboard_proxies", &[]), 2.0);
    for name in [
        "switchboard_events_published_total",
        "switchboard_events_delivered_total",
        "switchboard_publish_rejected_total",
        "switchboard_auth_failures_total",
        "switchboard_connections",
        "switchboard_subscriptions",
        "switchboard_mailbox_depth",
        "process_cpu_seconds_total",
    ] {
        assert!(before.has(name), "{name} is exported before any traffic");
    }

    let (mut stream, _open) = server.stream_basic(0, "client=watcher&types=call.*").await;
    let call = new_call_sid();
    server
        .publish(
            0,
            &json!([
                {"type": "call.start", "call_sid": call},
                {"type": "call.ringing", "call_sid": call},
                {"type": "call.end", "call_sid": call, "data": {"n": "last"}},
            ]),
        )
        .await;
    server
        .publish(
            0,
            &json!([{"type": "gather.start"}, {"type": "gather.end"}]),
        )
        .await;
    let invalid = server.try_publish(0, &json!({"type": "Bad"})).await;
    assert_eq!(invalid.status, 400);
    let wrong = server
        .post_events(
            server.sid(0),
            Some((server.sid(0), "wrong-token")),
            Some("application/json"),
            r#"{"type":"call.start"}"#.to_string(),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let got = stream.until_marker("last", WAIT).await;
    assert_eq!(got.len(), 3);

    let after = eventually_metrics(&server, "three deliveries counted", |s| {
        s.value(
            "switchboard_events_delivered_total",
            &[("transport", "sse")],
        ) == 3.0
    })
    .await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(
        delta("switchboard_events_published_total", &[("family", "call")]),
        3.0
    );
    assert_eq!(
        delta(
            "switchboard_events_published_total",
            &[("family", "gather")]
        ),
        2.0
    );
    assert_eq!(
        delta("switchboard_events_published_total", &[("family", "other")]),
        0.0
    );
    assert_eq!(delta("switchboard_publish_latency_seconds_count", &[]), 2.0);
    assert_eq!(
        delta(
            "switchboard_publish_rejected_total",
            &[("reason", "invalid")]
        ),
        1.0
    );
    assert_eq!(
        delta("switchboard_publish_rejected_total", &[("reason", "auth")]),
        1.0
    );
    assert_eq!(
        delta(
            "switchboard_auth_failures_total",
            &[("reason", "bad_credentials")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "switchboard_delivery_latency_seconds_count",
            &[("transport", "sse")]
        ),
        3.0
    );
    assert_eq!(
        after.value("switchboard_connections", &[("transport", "sse")]),
        1.0
    );
    assert_eq!(
        after.value("switchboard_subscriptions", &[("transport", "stream")]),
        1.0
    );
    assert_eq!(after.value("switchboard_sessions", &[]), 1.0);
    // One filter, registered once on each of the two shards.
    assert_eq!(
        after.value("switchboard_aggregated_subscriptions", &[]),
        2.0
    );
    // Delivered events stay retained for replay.
    assert_eq!(after.value("switchboard_cached_events", &[]), 3.0);
    for index in ["0", "1"] {
        for actor in ["shard", "proxy"] {
            assert_eq!(
                after.value(
                    "switchboard_mailbox_depth",
                    &[("actor", actor), ("index", index)]
                ),
                0.0,
                "{actor} {index} drained"
            );
        }
    }

    drop(stream);
    eventually_metrics(
        &server,
        "the connection gauge falls when the client leaves",
        |s| s.value("switchboard_connections", &[("transport", "sse")]) == 0.0,
    )
    .await;
}

#[tokio::test]
async fn a_second_client_with_the_same_filter_costs_no_upstream_subscription() {
    let server = TestServer::start(|c| {
        c.shards = 2;
        c.proxies = 1;
    });
    let (_a, _) = server.stream_basic(0, "client=a&types=call.*").await;
    let (_b, _) = server.stream_basic(0, "client=b&types=call.*").await;
    let (_c, _) = server.stream_basic(0, "client=c&types=gather.*").await;
    let s = scrape(&server).await;
    assert_eq!(
        s.value("switchboard_subscriptions", &[("transport", "stream")]),
        3.0
    );
    // Two distinct filters, each once per shard.
    assert_eq!(s.value("switchboard_aggregated_subscriptions", &[]), 4.0);
}

#[tokio::test]
async fn promtool_accepts_a_live_scrape() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let server = TestServer::start(|_| {});
    let (_stream, _) = server.stream_basic(0, "").await;
    server.publish(0, &json!({"type": "call.start"})).await;
    let text = server.get("/metrics").await.text();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write scrape");
    let output = child.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `expr` in the dashboards, with Grafana's variables filled in.
fn dashboard_exprs() -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => collect(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards");
    let mut exprs = Vec::new();
    for entry in std::fs::read_dir(dir).expect("grafana/dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("dashboard");
            let json: Value = serde_json::from_str(&text).expect("dashboard is JSON");
            collect(&json, &mut exprs);
        }
    }
    assert!(
        exprs.len() >= 10,
        "the dashboard has its panels: {}",
        exprs.len()
    );
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$job", ".*")
        })
        .collect()
}

/// Metric names an expression selects: identifiers followed by `{`, `[` or `)`
/// that are not PromQL functions, keywords or labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    let mut in_braces = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == b'{' {
            in_braces += 1;
        } else if c == b'}' {
            in_braces -= 1;
        }
        if in_braces == 0 && (c.is_ascii_alphabetic() || c == b'_') {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("switchboard_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
            continue;
        }
        i += 1;
    }
    names
}

#[tokio::test]
async fn every_dashboard_query_names_an_exported_metric() {
    let server = TestServer::start(|_| {});
    let scrape = scrape(&server).await;
    let mut checked = 0;
    for expr in dashboard_exprs() {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                scrape.has(&name),
                "dashboard query names {name}, which the server does not export: {expr}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20);
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn every_dashboard_query_runs_on_a_real_prometheus() {
    let Some(prometheus) = require_tool("prometheus") else {
        return;
    };
    let server = TestServer::start(|_| {});
    let (_stream, _) = server.stream_basic(0, "").await;
    server.publish(0, &json!({"type": "call.start"})).await;

    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sb-prom-{}", random_hex(6)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchboard\n    static_configs:\n      - targets: [\"{}\"]\n",
            server.addr
        ),
    )
    .expect("write prometheus.yml");
    let _prometheus = Prometheus(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let client = http_client();
    let query = |expr: String| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", expr.as_str())])
                .send()
                .await?;
            resp.json::<Value>().await
        }
    };
    // Wait (bounded) until Prometheus has scraped the server at least twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = query("count_over_time(up{job=\"switchboard\"}[1m]) >= 2".into()).await;
        if up.as_ref().is_ok_and(|v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the server: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for expr in dashboard_exprs() {
        let answer = query(expr.clone()).await.expect("query answer");
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        let result = answer["data"]["result"].as_array().expect("result vector");
        assert!(!result.is_empty(), "{expr} returns no series");
    }
}

#[tokio::test]
async fn health_and_readiness_while_draining() {
    let mut server = TestServer::start(|c| c.drain_grace_secs = 3);
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);
    server.begin_shutdown();
    let deadline = Instant::now() + WAIT;
    let ready = loop {
        let ready = server.get("/readyz").await;
        if ready.status != 200 || Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(ready.status, 503);
    assert!(ready.headers.contains_key("retry-after"));
    assert_eq!(ready.json()["code"], "draining");
    assert_eq!(
        server.get("/healthz").await.status,
        200,
        "alive while draining"
    );
    let publish = server.try_publish(0, &json!({"type": "call.start"})).await;
    assert_eq!(publish.status, 503);
    assert!(publish.headers.contains_key("retry-after"));
}

/// docs/api.md §8 lists every metric: each family a live scrape exports (with
/// every label value created at zero at start-up) is named there, so a new metric
/// cannot ship undocumented.
#[tokio::test]
async fn every_exported_metric_is_in_the_api_reference() {
    let server = TestServer::start(|_| {});
    let text = server.get("/metrics").await.text();
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| name.starts_with("switchboard_"))
        .collect();
    assert!(
        families.len() > 50,
        "a scrape with its families: {families:?}"
    );
    let missing: Vec<&str> = families
        .into_iter()
        .filter(|name| !reference.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from docs/api.md §8: {missing:?}"
    );
}
