//! Signed stream URLs (docs/api.md §4): what is signed, where the signature goes,
//! expiry, accounts, the order of authentication and validation, and the
//! `switchboard sign` command.

use std::time::Duration;

use serde_json::json;

use crate::common::signing::{sign_exact, split_signed};
use crate::common::{
    event, new_call_sid, now_secs, sign, sign_with_expires, signature, unknown_account_sid,
    TestServer, WAIT,
};

#[tokio::test]
async fn a_valid_signed_url_streams_its_subscription() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let pq = sign(
        server.token(0),
        &format!(
            "{}?client=browser-1&types=call.*&where=data.from=%2B14155550100&where=call_sid={call}",
            server.stream_path(0)
        ),
    );
    let (mut stream, open) = server.stream_signed(&pq).await;
    assert_eq!(open.data["account_sid"], json!(server.sid(0)));
    assert_eq!(open.data["data"]["client"], json!("browser-1"));

    let ev = |ty: &str, from: &str, n: &str| event(ty, Some(&call), json!({"from": from, "n": n}));
    server
        .publish(0, &ev("call.start", "+14155550100", "yes"))
        .await;
    server
        .publish(0, &ev("call.start", "+14155550101", "other-number"))
        .await;
    server
        .publish(0, &ev("sms.start", "+14155550100", "other-type"))
        .await;
    server
        .publish(0, &ev("call.end", "+14155550100", "end"))
        .await;
    let seen = stream.until_marker("end", WAIT).await;
    let markers: Vec<_> = seen.iter().filter_map(|e| e.marker()).collect();
    assert_eq!(markers, ["yes", "end"]);
}

#[tokio::test]
async fn the_helper_agrees_with_the_crates_signer() {
    let token = "0123456789abcdef0123456789abcdef";
    let pq = "/v1/Accounts/AC0123456789abcdef0123456789abcdef/Stream?types=call.*&where=data.to^=%2B1415&expires=1900000000";
    let mine = sign(token, pq);
    let theirs = switchboard::auth::sign_path_and_query(token, pq);
    assert_eq!(theirs, mine);
    // Known answer, computed independently of both.
    let (canonical, sig) = split_signed(&mine);
    assert_eq!(canonical, pq);
    assert_eq!(sig.len(), 27, "20 bytes of HMAC-SHA1 in unpadded base64");
    assert!(sig
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}

/// The parameters of the URL whose every part is tampered with in turn.
fn tamper_base(expires: i64) -> Vec<(String, String)> {
    [
        ("client", "tamper-1".to_string()),
        ("types", "call.*".to_string()),
        ("where", "data.duration%3E60".to_string()),
        ("scopes", "sup".to_string()),
        ("expires", expires.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn join(path: &str, params: &[(String, String)]) -> String {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", query.join("&"))
}

#[tokio::test]
async fn tampering_with_any_parameter_is_401_invalid_signature() {
    let server = TestServer::start(|_| {});
    let path = server.stream_path(0);
    let expires = now_secs() + 600;
    let base = tamper_base(expires);
    let canonical = join(&path, &base);
    let sig = signature(server.token(0), &canonical);

    let changed_value = |name: &str| -> String {
        match name {
            "client" => "tamper-2".into(),
            "types" => "call.end".into(),
            "where" => "data.duration%3E0".into(),
            "scopes" => "sup,admin".into(),
            _ => (expires + 3600).to_string(),
        }
    };
    let mut variants: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for i in 0..base.len() {
        let name = base[i].0.clone();
        let mut changed = base.clone();
        changed[i].1 = changed_value(&name);
        variants.push((format!("{name} changed"), changed));
        let mut dropped = base.clone();
        dropped.remove(i);
        variants.push((format!("{name} dropped"), dropped));
        let mut renamed = base.clone();
        renamed[i].0 = name.to_uppercase();
        variants.push((format!("{name} renamed"), renamed));
    }
    for (name, value) in [
        ("scopes", "admin"),
        ("types", "sms.*"),
        ("where", "type=call.end"),
        ("cursor", "earliest"),
    ] {
        let mut added = base.clone();
        added.push((name.to_string(), value.to_string()));
        variants.push((format!("{name} added"), added));
        let mut added_first = base.clone();
        added_first.insert(0, (name.to_string(), value.to_string()));
        variants.push((format!("{name} added first"), added_first));
    }
    let mut swapped = base.clone();
    swapped.swap(0, 1);
    variants.push(("client and types swapped".into(), swapped));
    let mut reencoded = base.clone();
    reencoded[1].1 = "call.%2A".into();
    variants.push(("types re-encoded".into(), reencoded));
    // Same decoded value, different bytes (lowercase percent-escape). A raw
    // `>` cannot be used here: the client itself re-encodes it as `%3E`.
    let mut reencoded = base.clone();
    reencoded[2].1 = "data.duration%3e60".into();
    variants.push(("where re-encoded".into(), reencoded));

    let mut failures = Vec::new();
    for (what, params) in &variants {
        let url = format!("{}&signature={sig}", join(&path, params));
        let reply = server.rejected(&url, None).await;
        if reply.status != 401 || reply.json()["code"] != json!("invalid_signature") {
            failures.push(format!("{what}: {} {}", reply.status, reply.text()));
            continue;
        }
        reply.assert_error(401, "invalid_signature");
    }
    // The signature itself altered, and a path for the other account.
    let mut flipped = sig.clone().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let url = format!(
        "{canonical}&signature={}",
        String::from_utf8(flipped).unwrap()
    );
    server
        .rejected(&url, None)
        .await
        .assert_error(401, "invalid_signature");
    let path_changed = canonical.replace("/Stream?", "/stream?");
    let reply = server
        .rejected(&format!("{path_changed}&signature={sig}"), None)
        .await;
    assert!(
        (400..500).contains(&reply.status),
        "path changed: {}",
        reply.status
    );

    assert!(
        failures.is_empty(),
        "not 401 invalid_signature:\n{}",
        failures.join("\n")
    );

    // The untouched URL works.
    let (mut stream, _) = server
        .stream_signed(&format!("{canonical}&signature={sig}"))
        .await;
    let mut ev = event(
        "call.end",
        Some(&new_call_sid()),
        json!({"duration": 90, "n": "ok"}),
    );
    ev["scope"] = json!("sup");
    server.publish(0, &ev).await;
    let got = stream
        .next_event(WAIT)
        .await
        .expect("the untampered URL streams");
    assert_eq!(got.marker().as_deref(), Some("ok"));
}

#[tokio::test]
async fn a_missing_signature_is_401_invalid_signature() {
    let server = TestServer::start(|_| {});
    let path = server.stream_path(0);
    let expires = now_secs() + 600;
    // A URL that is a signed URL in every way but the signature.
    let url = format!("{path}?client=c1&types=call.*&expires={expires}");
    server
        .rejected(&url, None)
        .await
        .assert_error(401, "invalid_signature");
}

#[tokio::test]
async fn a_misplaced_or_malformed_signature_is_401_invalid_signature() {
    let server = TestServer::start(|_| {});
    let path = server.stream_path(0);
    let expires = now_secs() + 600;
    let canonical = format!("{path}?types=call.*&expires={expires}");
    let sig = signature(server.token(0), &canonical);

    let cases = [
        (
            "first",
            format!("{path}?signature={sig}&types=call.*&expires={expires}"),
        ),
        (
            "in the middle",
            format!("{path}?types=call.*&signature={sig}&expires={expires}"),
        ),
        (
            "twice",
            format!("{canonical}&signature={sig}&signature={sig}"),
        ),
        (
            "followed by another parameter",
            format!("{canonical}&signature={sig}&client=x"),
        ),
        ("empty", format!("{canonical}&signature=")),
        ("not base64", format!("{canonical}&signature=%%%%!!!")),
        ("padded", format!("{canonical}&signature={sig}=")),
        (
            "base64 of the wrong length",
            format!("{canonical}&signature=AAAA"),
        ),
        (
            "other token",
            format!(
                "{canonical}&signature={}",
                signature("not-the-token", &canonical)
            ),
        ),
        (
            "other canonical",
            format!(
                "{canonical}&signature={}",
                signature(server.token(0), &path)
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (what, url) in cases {
        let reply = server.rejected(&url, None).await;
        let code = reply.json()["code"].clone();
        if reply.status != 401 || code != json!("invalid_signature") {
            failures.push(format!(
                "signature {what}: {} {}",
                reply.status,
                reply.text()
            ));
        } else {
            reply.assert_error(401, "invalid_signature");
        }
    }
    assert!(
        failures.is_empty(),
        "not 401 invalid_signature:\n{}",
        failures.join("\n")
    );
    // The well-formed one works.
    server
        .stream_signed(&format!("{canonical}&signature={sig}"))
        .await;
}

#[tokio::test]
async fn an_expired_url_is_401_expired() {
    let server = TestServer::start(|_| {});
    let path = format!("{}?types=call.*", server.stream_path(0));
    for expires in [now_secs() - 10, now_secs() - 86_400, 0] {
        let url = sign_with_expires(server.token(0), &path, expires);
        server
            .rejected(&url, None)
            .await
            .assert_error(401, "expired");
    }
    // Expiry is authentication: it comes before validating other parameters.
    let url = sign_with_expires(
        server.token(0),
        &format!("{path}&where=bogus"),
        now_secs() - 10,
    );
    server
        .rejected(&url, None)
        .await
        .assert_error(401, "expired");
    // A correctly signed URL without `expires` is refused as unauthenticated
    // (docs/api.md §4): a signed URL must say when it ends.
    let url = sign_exact(server.token(0), &path);
    let message = server
        .rejected(&url, None)
        .await
        .assert_error(401, "unauthorized");
    assert!(message.starts_with("expires"), "{message}");
}

#[tokio::test]
async fn a_correctly_signed_url_with_a_malformed_expires_is_400_naming_it() {
    // Authentication first, then validation (docs/api.md §4): the signature is
    // right, so a malformed `expires` is a 400 naming the parameter.
    let server = TestServer::start(|_| {});
    let path = format!("{}?types=call.*", server.stream_path(0));
    for bad in ["soon", "1.5e9", "", "-"] {
        let url = sign_exact(server.token(0), &format!("{path}&expires={bad}"));
        let message = server
            .rejected(&url, None)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with("expires"),
            "message {message:?} for expires={bad:?}"
        );
    }
}

#[tokio::test]
async fn cross_signed_urls_and_unknown_accounts_are_401() {
    let server = TestServer::start(|_| {});
    // A's path, B's token: just a bad signature (docs/api.md §4), never a 403 that
    // would tell the holder the URL is valid elsewhere.
    let url = sign(
        server.token(1),
        &format!("{}?types=call.*", server.stream_path(0)),
    );
    server
        .rejected(&url, None)
        .await
        .assert_error(401, "invalid_signature");
    // B's own URL works.
    server
        .stream_signed(&sign(
            server.token(1),
            &format!("{}?types=call.*", server.stream_path(1)),
        ))
        .await;
    // An account the server does not know.
    let stranger = unknown_account_sid();
    let url = sign(
        server.token(0),
        &format!("/v1/Accounts/{stranger}/Stream?types=call.*"),
    );
    server
        .rejected(&url, None)
        .await
        .assert_error(401, "unauthorized");
    let url = sign("some-token", &format!("/v1/Accounts/{stranger}/Stream"));
    server
        .rejected(&url, None)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn authentication_comes_before_validation() {
    let server = TestServer::start(|_| {});
    let pq = format!(
        "{}?types=call.*&where=data.duration~60",
        server.stream_path(0)
    );
    // Correctly signed: a 400 naming the parameter.
    let url = sign(server.token(0), &pq);
    let message = server
        .rejected(&url, None)
        .await
        .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("where[0]"), "message {message:?}");
    // Same URL with a bad signature: 401, nothing about the parameter.
    let (canonical, _) = split_signed(&url);
    let bad = format!("{canonical}&signature={}", signature("wrong", canonical));
    server
        .rejected(&bad, None)
        .await
        .assert_error(401, "invalid_signature");
    // Basic: right credentials → 400; wrong → 401; other account → 403.
    let message = server
        .rejected(&pq, server.creds(0))
        .await
        .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("where[0]"), "message {message:?}");
    server
        .rejected(&pq, Some((server.sid(0), "wrong")))
        .await
        .assert_error(401, "unauthorized");
    server
        .rejected(&pq, server.creds(1))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn the_sign_command_prints_a_url_the_server_accepts() {
    let server = TestServer::start(|_| {});
    let (sid, token) = (server.sid(0), server.token(0));
    let pq = format!("/v1/Accounts/{sid}/Stream?types=call.*");
    let before = now_secs();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "sign",
                "--account",
                sid,
                "--token",
                token,
                "--expires-in",
                "60",
                &pq,
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("switchboard sign did not finish in 30 s")
    .expect("running switchboard sign");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "switchboard sign failed: {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|line| {
            line.find("/v1/Accounts/")
                .map(|at| line[at..].trim().to_string())
        })
        .unwrap_or_else(|| panic!("no path+query in the output: {stdout:?}"));
    assert!(
        line.starts_with(&format!("{pq}&expires=")),
        "printed {line:?}"
    );
    let (canonical, sig) = split_signed(&line);
    assert!(
        !sig.contains('&'),
        "signature is the last parameter in {line:?}"
    );
    let expires: i64 = canonical
        .rsplit_once("&expires=")
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or_else(|| panic!("expires is not the last signed parameter in {line:?}"));
    assert!(
        (before + 55..=now_secs() + 65).contains(&expires),
        "expires {expires} is not about 60 s ahead"
    );
    assert_eq!(
        sig,
        signature(token, canonical),
        "the printed signature follows the spec"
    );

    let (mut stream, _) = server.stream_signed(&line).await;
    let ids = server
        .publish(0, &event("call.start", None, json!({})))
        .await;
    let ev = stream
        .next_event(WAIT)
        .await
        .expect("event on the CLI-signed stream");
    assert_eq!(ev.data["id"], json!(ids[0]));
}
