//! `POST /v1/Accounts/{AccountSid}/SignedUrls` (docs/api.md §9, docs/api.md §9): an app
//! server's Basic credentials and a path in, a signed URL out, that a browser then
//! really opens; lifetimes over `auth.max_url_lifetime_secs` refused; and the
//! attacks on a minting endpoint replayed: a signed URL minting more URLs, one
//! account minting for another, minting for surfaces a browser has no business
//! with.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::{eventually_metrics, request};
use crate::common::{event, new_call_sid, now_secs, sign, Reply, TestServer, WAIT};

fn signed_urls_path(server: &TestServer, account: usize) -> String {
    format!("/v1/Accounts/{}/SignedUrls", server.sid(account))
}

async fn mint(server: &TestServer, creds_of: usize, body: &Value) -> Reply {
    request(
        server,
        Method::POST,
        &signed_urls_path(server, 0),
        server.creds(creds_of),
        Some(("application/json", body.to_string())),
    )
    .await
}

/// The `expires` value of a signed path and query.
fn expires_of(url: &str) -> u64 {
    url.split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("expires="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no expires in {url}"))
}

#[tokio::test]
async fn the_urls_it_signs_open_a_stream_and_a_control_channel() {
    let server = TestServer::start(|_| {});
    let wanted = format!("{}?client=page-1&types=call.*", server.stream_path(0));
    let reply = mint(&server, 0, &json!({"url": wanted, "expires_in": 600})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let body = reply.json();
    let url = body["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("{wanted}&expires=")), "{url}");
    assert!(!url.contains(server.token(0)), "the token leaked: {url}");
    let expires = expires_of(&url);
    assert_eq!(body["expires"], json!(expires));
    let now = now_secs() as u64;
    assert!(
        (now + 595..=now + 605).contains(&expires),
        "{expires} vs {now}"
    );

    // A browser opens it: the signature verifies and the signed filter applies.
    let (mut stream, open) = server.stream_signed(&url).await;
    assert_eq!(open.data["data"]["client"], json!("page-1"));
    let call = new_call_sid();
    server
        .publish(0, &event("sms.start", Some(&call), json!({"n": "no"})))
        .await;
    server
        .publish(0, &event("call.start", Some(&call), json!({"n": "yes"})))
        .await;
    let seen = stream.until_marker("yes", WAIT).await;
    let markers: Vec<_> = seen.iter().filter_map(|e| e.marker()).collect();
    assert_eq!(markers, ["yes"]);

    // A control-channel URL, signed for POST, creates a subscription with it.
    let control = format!(
        "/v1/Accounts/{}/Clients/page-1/Subscriptions?method=POST",
        server.sid(0)
    );
    let reply = mint(&server, 0, &json!({"url": control})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let signed = reply.json()["url"].as_str().expect("url").to_owned();
    let created = request(
        &server,
        Method::POST,
        &signed,
        None,
        Some((
            "application/json",
            json!({"types": ["gather.end"]}).to_string(),
        )),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    // Without `expires_in`: an hour, as `switchboard sign`.
    let now = now_secs() as u64;
    assert!((now + 3595..=now + 3605).contains(&expires_of(&signed)));

    eventually_metrics(&server, "the signed URLs counted by surface", |m| {
        m.value("switchboard_signed_urls_total", &[("surface", "stream")]) == 1.0
            && m.value("switchboard_signed_urls_total", &[("surface", "control")]) == 1.0
    })
    .await;
}

#[tokio::test]
async fn lifetimes_over_the_configured_maximum_are_refused() {
    let server = TestServer::start(|config| config.auth.max_url_lifetime_secs = 120);
    let url = server.stream_path(0);
    let reply = mint(&server, 0, &json!({"url": url, "expires_in": 121})).await;
    let message = reply.assert_error(400, "expires_too_far");
    assert!(message.starts_with("expires_in:"), "{message}");
    assert!(!reply.text().contains("signature="), "{}", reply.text());

    let reply = mint(&server, 0, &json!({"url": url, "expires_in": 120})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    // No lifetime asked: the default hour is cut to the maximum, never refused.
    let reply = mint(&server, 0, &json!({"url": url})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let expires = reply.json()["expires"].as_u64().expect("expires");
    assert!(expires <= now_secs() as u64 + 120, "{expires}");
    for bad in [json!(0), json!(-1), json!("60"), json!(1e300)] {
        let reply = mint(&server, 0, &json!({"url": url, "expires_in": bad})).await;
        let message = reply.assert_error(400, "invalid_parameter");
        assert!(message.starts_with("expires_in:"), "{bad}: {message}");
    }
}

/// The attacks: each is refused with its status and code, and no answer carries a
/// signature.
#[tokio::test]
async fn only_the_accounts_own_basic_credentials_mint_and_only_for_browser_surfaces() {
    let server = TestServer::start(|_| {});
    let own_stream = json!({"url": server.stream_path(0)});

    // A signed URL (say, leaked from a page) cannot mint URLs: it would outlive its
    // own expiry and widen its filters.
    let leaked = sign(
        server.token(0),
        &format!("{}?client=page", signed_urls_path(&server, 0)),
    );
    let reply = request(
        &server,
        Method::POST,
        &leaked,
        None,
        Some(("application/json", own_stream.to_string())),
    )
    .await;
    reply.assert_error(403, "forbidden");

    // No credentials; another account's credentials on this account's path.
    let reply = request(
        &server,
        Method::POST,
        &signed_urls_path(&server, 0),
        None,
        Some(("application/json", own_stream.to_string())),
    )
    .await;
    reply.assert_error(401, "unauthorized");
    mint(&server, 1, &own_stream)
        .await
        .assert_error(403, "forbidden");

    // The account's own credentials, asking for another account's stream.
    let reply = mint(&server, 0, &json!({"url": server.stream_path(1)})).await;
    let message = reply.assert_error(403, "forbidden");
    assert!(message.starts_with("url:"), "{message}");

    // Surfaces a browser must not get a signed URL for, and URLs already signed.
    let sid = server.sid(0);
    for url in [
        format!("/v1/Accounts/{sid}/Events"),
        format!("/v1/Accounts/{sid}/SignedUrls"),
        format!("/2010-04-01/Accounts/{sid}/Calls.json"),
        format!("/v1/Accounts/{sid}/Stream?expires=4102444800"),
        format!("/v1/Accounts/{sid}/Clients/c/Subscriptions"),
        format!("http://127.0.0.1/v1/Accounts/{sid}/Stream"),
    ] {
        let reply = mint(&server, 0, &json!({ "url": url })).await;
        let message = reply.assert_error(400, "invalid_parameter");
        assert!(message.starts_with("url:"), "{url}: {message}");
    }

    // Bounded input: a body over 16 KiB is refused before it is parsed.
    let huge = json!({"url": format!("{}?x={}", server.stream_path(0), "a".repeat(20_000))});
    let reply = mint(&server, 0, &huge).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    mint(&server, 0, &json!({"url": 7}))
        .await
        .assert_error(400, "invalid_json");

    let scrape = eventually_metrics(&server, "the signed URLs counter", |m| {
        m.has("switchboard_signed_urls_total")
    })
    .await;
    for surface in ["stream", "client_events", "control"] {
        let signed = scrape.value("switchboard_signed_urls_total", &[("surface", surface)]);
        assert_eq!(signed, 0.0, "{surface}: nothing may have been signed");
    }
}
