//! Signed-URL attacks of issue #8 points 10 and 11, replayed over HTTP: a URL
//! signed with another account's token must look exactly like garbage (no
//! oracle), and no value of `expires` (huge, negative, not a number) may crash
//! a writer, leak a connection gauge or stop a webhook worker (docs/api.md §4).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::Rng;
use serde_json::json;

use crate::common::channels::{
    create_sub, eventually_metrics, marked, markers, scrape, strings, wait_sse_connections,
    HookReceiver,
};
use crate::common::signing::{sign_exact, split_signed};
use crate::common::{new_call_sid, random_hex, sign, TestServer, WAIT};

/// `u64::MAX`: the largest `expires` that still parses as unix seconds.
const HUGE: &str = "18446744073709551615";

fn auth_failures(scrape: &crate::common::scrape::Scrape, reason: &str) -> f64 {
    scrape.value("switchboard_auth_failures_total", &[("reason", reason)])
}

#[tokio::test]
async fn a_cross_signed_url_is_indistinguishable_from_garbage_among_many_accounts() {
    let server = TestServer::start(|c| {
        for _ in 0..48 {
            c.accounts.push(switchboard::config::AccountConfig {
                sid: format!("AC{}", random_hex(16)),
                auth_token: random_hex(16),
            });
        }
    });
    let before = scrape(&server).await;
    let pq = format!("{}?types=call.*", server.stream_path(0));
    // Account 1's token on account 0's path: valid somewhere, not here.
    let cross = sign(server.token(1), &pq);
    let (canonical, _) = split_signed(&cross);
    let random: [u8; 20] = rand::thread_rng().gen();
    let garbage = format!("{canonical}&signature={}", URL_SAFE_NO_PAD.encode(random));

    let cross_reply = server.rejected(&cross, None).await;
    let garbage_reply = server.rejected(&garbage, None).await;
    cross_reply.assert_error(401, "invalid_signature");
    garbage_reply.assert_error(401, "invalid_signature");
    assert_eq!(
        cross_reply.text(),
        garbage_reply.text(),
        "the answer must not tell a cross-signed URL from garbage"
    );
    assert_eq!(
        cross_reply.headers.get("www-authenticate"),
        garbage_reply.headers.get("www-authenticate")
    );
    eventually_metrics(&server, "two bad signatures, no wrong_account", |s| {
        auth_failures(s, "bad_signature") == auth_failures(&before, "bad_signature") + 2.0
            && auth_failures(s, "wrong_account") == auth_failures(&before, "wrong_account")
    })
    .await;
}

#[tokio::test]
async fn signed_urls_with_far_or_malformed_expires_are_refused_and_break_nothing() {
    let server = TestServer::start(|c| c.stream.heartbeat_secs = 1);
    let path = server.stream_path(0);
    let before = scrape(&server).await;

    for expires in [
        HUGE.to_string(),
        (crate::common::now_secs() + 86_400 + 120).to_string(),
    ] {
        let url = sign_exact(
            server.token(0),
            &format!("{path}?types=call.*&expires={expires}"),
        );
        let message = server
            .rejected(&url, None)
            .await
            .assert_error(401, "expires_too_far");
        assert!(message.starts_with("expires"), "{message}");
    }
    for bad in [
        "99999999999999999999999",
        "-1",
        "-18446744073709551616",
        "1e99",
    ] {
        let url = sign_exact(
            server.token(0),
            &format!("{path}?types=call.*&expires={bad}"),
        );
        let message = server
            .rejected(&url, None)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(message.starts_with("expires"), "expires={bad}: {message}");
    }

    // The server still serves, and no refused request left a connection counted.
    let (mut stream, _) = server
        .stream_signed(&sign(server.token(0), &format!("{path}?types=call.*")))
        .await;
    let call = new_call_sid();
    server
        .publish(0, &marked("call.start", &call, "alive"))
        .await;
    let got = stream.until_marker("alive", WAIT).await;
    assert_eq!(markers(&got), strings(&["alive"]));
    drop(stream);
    wait_sse_connections(&server, 0).await;
    let after = scrape(&server).await;
    assert_eq!(
        auth_failures(&after, "expires_too_far"),
        auth_failures(&before, "expires_too_far") + 2.0
    );
}

/// An operator may allow very long URLs; a far `expires` is then a far deadline,
/// not an `Instant` overflow that killed the writer and leaked its gauge.
#[tokio::test]
async fn far_expiries_that_are_allowed_are_served_and_their_gauges_released() {
    let server = TestServer::start(|c| {
        c.stream.heartbeat_secs = 1;
        c.auth.max_url_lifetime_secs = u64::MAX;
    });
    let path = server.stream_path(0);
    let prior = scrape(&server)
        .await
        .value("switchboard_connections", &[("transport", "sse")]);

    let signed = sign_exact(
        server.token(0),
        &format!("{path}?types=call.*&expires={HUGE}"),
    );
    let (mut by_url, open) = server.stream_signed(&signed).await;
    assert_eq!(
        open.data["data"]["subscriptions"][0]["expires"],
        json!(u64::MAX)
    );
    let (mut by_basic, _) = server
        .stream_basic(0, &format!("types=call.*&expires={HUGE}"))
        .await;
    let call = new_call_sid();
    server
        .publish(0, &marked("call.start", &call, "both"))
        .await;
    for stream in [&mut by_url, &mut by_basic] {
        let got = stream.until_marker("both", WAIT).await;
        assert_eq!(markers(&got), strings(&["both"]));
    }
    wait_sse_connections(&server, prior as usize + 2).await;
    drop(by_url);
    drop(by_basic);
    wait_sse_connections(&server, prior as usize).await;
}

/// A webhook subscription expiring at `u64::MAX` whose first delivery fails: the
/// retry clock used to overflow and panic the worker, losing the events.
#[tokio::test]
async fn a_webhook_with_a_huge_expires_still_retries() {
    let server = TestServer::start(|c| {
        c.webhook.initial_backoff_ms = 20;
        c.webhook.max_backoff_secs = 1;
    });
    let receiver = HookReceiver::start(1).await;
    let callback = receiver.url("/hook");
    create_sub(
        &server,
        0,
        "hugehook",
        &[
            ("types", "call.*"),
            ("callback", &callback),
            ("expires", HUGE),
        ],
    )
    .await;
    let ids = server
        .publish(0, &marked("call.start", &new_call_sid(), "retried"))
        .await;
    receiver
        .wait_for(WAIT, "a 500 then the event acknowledged", |reqs| {
            reqs.len() >= 2
                && reqs.iter().any(|r| {
                    r.answered == 200 && String::from_utf8_lossy(&r.body).contains(&ids[0])
                })
        })
        .await;
    // And the server is still up for everything else.
    let reply = server.get("/healthz").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A page renews its filterless stream URL before it expires (as the console
/// does): the client's default subscription takes the new URL's expiry, so events
/// keep coming after the first URL's `expires` has passed. It used to keep the
/// first URL's expiry and vanish then, leaving the renewed stream silent.
#[tokio::test]
async fn a_renewed_filterless_url_keeps_the_default_subscription_alive() {
    let server = TestServer::start(|_| {});
    let path = format!("{}?client=renewing-page", server.stream_path(0));
    let now = crate::common::now_secs();
    let first = crate::common::sign_with_expires(server.token(0), &path, now + 2);
    let (first_stream, _) = server.stream_signed(&first).await;
    let second = crate::common::sign_with_expires(server.token(0), &path, now + 120);
    let (mut renewed, open) = server.stream_signed(&second).await;
    drop(first_stream);
    let subs = open.data["data"]["subscriptions"].as_array().expect("list");
    assert_eq!(
        subs.len(),
        1,
        "still the one default subscription: {subs:?}"
    );
    assert_eq!(subs[0]["expires"], json!(now + 120), "renewed: {subs:?}");

    // Past the first URL's expiry (and the proxy's expiry check of it).
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let call = new_call_sid();
    server
        .publish(0, &marked("call.progress", &call, "after"))
        .await;
    let seen = renewed.until_marker("after", WAIT).await;
    assert_eq!(markers(&seen), ["after"]);
}
