//! `GET /v1/Admin/Topology` (docs/api.md §8): the live shards and proxies behind the
//! admin credentials, agreeing with the metrics.

use reqwest::Method;

use crate::common::channels::{create_sub, request, scrape};
use crate::common::{Creds, Reply, TestServer};

const PATH: &str = "/v1/Admin/Topology";
const TOKEN: &str = "an-admin-token-for-tests";

async fn get(server: &TestServer, creds: Creds<'_>) -> Reply {
    request(server, Method::GET, PATH, creds, None).await
}

#[tokio::test]
async fn without_an_admin_token_the_topology_is_off_whatever_is_sent() {
    let server = TestServer::start(|_| {});
    for creds in [None, Some(("admin", "")), server.creds(0)] {
        let reply = get(&server, creds).await;
        let message = reply.assert_error(403, "admin_disabled");
        assert!(message.contains("admin_token"), "{message}");
    }
}

#[tokio::test]
async fn only_the_admin_credentials_see_the_topology() {
    let server = TestServer::start(|c| c.admin_token = TOKEN.into());
    let before = scrape(&server).await;
    let refused = [
        None,
        Some(("admin", "an-admin-token-for-test")),
        Some(("root", TOKEN)),
        // An account's own credentials are not admin.
        server.creds(0),
    ];
    for creds in refused {
        let reply = get(&server, creds).await;
        reply.assert_error(401, "unauthorized");
        assert!(reply.headers.contains_key("www-authenticate"), "{creds:?}");
        assert!(!reply.text().contains(TOKEN), "the token is not echoed");
    }
    let after = scrape(&server).await;
    let failures = |s: &crate::common::scrape::Scrape| {
        s.value("switchboard_auth_failures_total", &[("reason", "missing")])
            + s.value(
                "switchboard_auth_failures_total",
                &[("reason", "bad_credentials")],
            )
    };
    assert_eq!(failures(&after) - failures(&before), 4.0);
    assert_eq!(get(&server, Some(("admin", TOKEN))).await.status, 200);
}

#[tokio::test]
async fn the_topology_shows_every_shard_and_proxy_as_the_metrics_do() {
    let server = TestServer::start(|c| {
        c.admin_token = TOKEN.into();
        c.shards = 3;
        c.proxies = 2;
    });
    for n in 0..6 {
        create_sub(&server, 0, &format!("ops-{n}"), &[("types", "call.*")]).await;
    }
    create_sub(&server, 0, "ops-0", &[("types", "gather.end")]).await;
    let (_stream, _) = server.stream_basic(0, "client=panel&types=call.*").await;

    let reply = get(&server, Some(("admin", TOKEN))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let view = reply.json();
    let metrics = scrape(&server).await;

    assert_eq!(view["slots"], 1024);
    let shards = view["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 3);
    let mut slots = 0;
    for (index, shard) in shards.iter().enumerate() {
        assert_eq!(shard["index"], index);
        assert_eq!(shard["answered"], true);
        let owned = shard["slots"].as_u64().expect("slots");
        assert_eq!(
            owned as f64,
            metrics.value("switchboard_shard_slots", &[("index", &index.to_string())])
        );
        slots += owned;
        // Every proxy's distinct filters, each registered with every shard.
        assert_eq!(
            shard["upstream_subscriptions"], view["totals"]["filters"],
            "{shard}"
        );
        assert_eq!(shard["queue_depth"], 0);
    }
    assert_eq!(slots, 1024, "every slot has one shard");

    let proxies = view["proxies"].as_array().expect("proxies");
    assert_eq!(proxies.len(), 2);
    for (index, proxy) in proxies.iter().enumerate() {
        assert_eq!(proxy["answered"], true);
        assert_eq!(
            proxy["sessions"].as_f64(),
            Some(metrics.value(
                "switchboard_proxy_sessions",
                &[("index", &index.to_string())]
            ))
        );
    }
    let totals = &view["totals"];
    assert_eq!(totals["shards"], 3);
    assert_eq!(totals["proxies"], 2);
    assert_eq!(totals["sessions"], 7);
    assert_eq!(totals["client_subscriptions"], 8);
    assert_eq!(
        totals["upstream_subscriptions"].as_f64(),
        Some(metrics.value("switchboard_aggregated_subscriptions", &[]))
    );
    assert_eq!(
        totals["filters"].as_f64(),
        Some(metrics.value("switchboard_proxy_filters", &[]))
    );
}
