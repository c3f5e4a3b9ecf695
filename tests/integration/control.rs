//! The control channel `/v1/Accounts/{sid}/Clients/{client}/Subscriptions`
//! (docs/api.md §5, docs/design.md "Control channel"): CRUD with Basic auth in
//! form and JSON bodies, changes applied to an open stream without
//! reconnecting, one delivery per event however many subscriptions match,
//! caching before the first connection, signed URLs that cannot be widened,
//! and refusals naming the field.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::{
    allow_origin, create_sub, eventually_metrics, markers, matched_subs, post_form, preflight,
    request, request_with_headers, scrape, send_json, sid_of, strings, subs_path, where_list,
};
use crate::common::{
    event, new_call_sid, now_secs, open_subscription_sids, sign, string_list, TestServer, WAIT,
};

/// An event of type `ty` on `call` with `data`.
fn on_call(ty: &str, call: &str, data: Value) -> Value {
    event(ty, Some(call), data)
}

/// Asserts the 201/200 subscription shape of docs/design.md for `client`.
#[track_caller]
fn assert_sub_shape(server: &TestServer, client: &str, sub: &Value) {
    let sid = sid_of(sub);
    assert!(
        sid.len() > 2 && sid[2..].bytes().all(|b| b.is_ascii_alphanumeric()),
        "sid {sid:?}"
    );
    assert_eq!(
        sub["account_sid"],
        json!(server.sid(0)),
        "account_sid in {sub}"
    );
    assert_eq!(sub["client"], json!(client), "client in {sub}");
    assert_eq!(
        sub["uri"],
        json!(format!("{}/{sid}", subs_path(server, 0, client))),
        "uri in {sub}"
    );
    for key in ["types", "where", "scopes", "expires", "callback"] {
        assert!(
            sub.as_object().is_some_and(|o| o.contains_key(key)),
            "{key} missing in {sub}"
        );
    }
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

#[tokio::test]
async fn create_read_list_and_delete_with_form_and_json_bodies() {
    let server = TestServer::start(|_| {});
    let path = subs_path(&server, 0, "ctl1");
    let expires = now_secs() + 600;
    let expires_text = expires.to_string();

    // Form-encoded, `where` repeated, types as a comma list.
    let reply = post_form(
        &server,
        &path,
        server.creds(0),
        &[
            ("types", "call.*,gather.end"),
            ("where", "data.to=+1555"),
            ("where", "data.duration>60"),
            ("expires", &expires_text),
        ],
    )
    .await;
    assert_eq!(reply.status, 201, "form POST: {}", reply.text());
    assert!(reply.content_type().starts_with("application/json"));
    let form_sub = reply.json();
    assert_sub_shape(&server, "ctl1", &form_sub);
    assert_eq!(
        sorted(string_list(&form_sub["types"])),
        strings(&["call.*", "gather.end"])
    );
    assert_eq!(
        sorted(where_list(&form_sub["where"])),
        strings(&["data.duration>60", "data.to=+1555"])
    );
    assert_eq!(
        form_sub["scopes"],
        Value::Null,
        "Basic without scopes: every scope"
    );
    assert_eq!(form_sub["expires"], json!(expires));
    assert_eq!(form_sub["callback"], Value::Null);

    // JSON, types as a list.
    let reply = send_json(
        &server,
        Method::POST,
        &path,
        server.creds(0),
        &json!({"types": ["say.*"], "where": ["data.from=+14155550100"], "scopes": ["sup"]}),
    )
    .await;
    assert_eq!(reply.status, 201, "JSON POST: {}", reply.text());
    let json_sub = reply.json();
    assert_sub_shape(&server, "ctl1", &json_sub);
    assert_eq!(string_list(&json_sub["types"]), strings(&["say.*"]));
    assert_eq!(
        where_list(&json_sub["where"]),
        strings(&["data.from=+14155550100"])
    );
    assert_eq!(string_list(&json_sub["scopes"]), strings(&["sup"]));
    assert_eq!(json_sub["expires"], Value::Null);

    // JSON, types and scopes as comma strings; an empty scopes is none.
    let reply = send_json(
        &server,
        Method::POST,
        &path,
        server.creds(0),
        &json!({"types": "play.*,record.end", "scopes": ""}),
    )
    .await;
    assert_eq!(reply.status, 201, "JSON POST (strings): {}", reply.text());
    let comma_sub = reply.json();
    assert_eq!(
        sorted(string_list(&comma_sub["types"])),
        strings(&["play.*", "record.end"])
    );
    assert_eq!(
        comma_sub["scopes"],
        Value::Null,
        "empty scopes is none: {comma_sub}"
    );

    // No types: all types.
    let reply = send_json(&server, Method::POST, &path, server.creds(0), &json!({})).await;
    assert_eq!(reply.status, 201, "JSON POST {{}}: {}", reply.text());
    let all_sub = reply.json();
    assert_eq!(
        all_sub["types"],
        Value::Null,
        "absent types: all: {all_sub}"
    );

    let created = [&form_sub, &json_sub, &comma_sub, &all_sub];
    let mut sids: Vec<String> = created.iter().map(|s| sid_of(s)).collect();
    sids.sort();
    sids.dedup();
    assert_eq!(sids.len(), 4, "distinct sids");

    // List.
    let reply = request(&server, Method::GET, &path, server.creds(0), None).await;
    assert_eq!(reply.status, 200, "GET list: {}", reply.text());
    let listed = reply.json()["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no subscriptions array: {}", reply.text()))
        .clone();
    assert_eq!(
        sorted(listed.iter().map(sid_of).collect()),
        sids,
        "listed: {listed:?}"
    );

    // Read one: the same object as created.
    for sub in created {
        let one = format!("{path}/{}", sid_of(sub));
        let reply = request(&server, Method::GET, &one, server.creds(0), None).await;
        assert_eq!(reply.status, 200, "GET one: {}", reply.text());
        assert_eq!(&reply.json(), sub);
    }

    // Delete: 204, then 404 on read and on a second delete.
    let one = format!("{path}/{}", sid_of(&json_sub));
    let reply = request(&server, Method::DELETE, &one, server.creds(0), None).await;
    assert_eq!(reply.status, 204, "DELETE: {}", reply.text());
    assert!(reply.body.is_empty(), "204 with a body: {}", reply.text());
    request(&server, Method::GET, &one, server.creds(0), None)
        .await
        .assert_error(404, "not_found");
    request(&server, Method::DELETE, &one, server.creds(0), None)
        .await
        .assert_error(404, "not_found");
    let reply = request(&server, Method::GET, &path, server.creds(0), None).await;
    assert_eq!(
        reply.json()["subscriptions"].as_array().map(Vec::len),
        Some(3)
    );

    // Unknown subscription, unknown client.
    request(
        &server,
        Method::GET,
        &format!("{path}/SU{}", "0".repeat(32)),
        server.creds(0),
        None,
    )
    .await
    .assert_error(404, "not_found");
    request(
        &server,
        Method::GET,
        &subs_path(&server, 0, "nobody"),
        server.creds(0),
        None,
    )
    .await
    .assert_error(404, "not_found");
}

#[tokio::test]
async fn changes_apply_to_the_open_stream_without_reconnecting() {
    let server = TestServer::start(|_| {});
    let sub = create_sub(
        &server,
        0,
        "pc",
        &[("types", "call.*"), ("where", "data.kind=a")],
    )
    .await;
    let sid = sid_of(&sub);
    // Without filters: the stream attaches to the client's subscriptions.
    let (mut stream, open) = server.stream_basic(0, "client=pc").await;
    assert_eq!(open_subscription_sids(&open), vec![sid.clone()]);

    let call = new_call_sid();
    let send = |ty: &'static str, n: &'static str| {
        let call = call.clone();
        let server = &server;
        async move {
            server
                .publish(0, &on_call(ty, &call, json!({"n": n, "kind": "a"})))
                .await
        }
    };
    send("call.start", "1").await;
    let got = stream.until_marker("1", WAIT).await;
    assert_eq!(markers(&got), strings(&["1"]));
    assert_eq!(matched_subs(&got[0].data), vec![sid.clone()]);

    // PATCH (JSON) the types: the where clause is kept.
    let one = format!("{}/{sid}", subs_path(&server, 0, "pc"));
    let reply = send_json(
        &server,
        Method::PATCH,
        &one,
        server.creds(0),
        &json!({"types": ["say.*"]}),
    )
    .await;
    assert_eq!(reply.status, 200, "PATCH: {}", reply.text());
    let patched = reply.json();
    assert_eq!(sid_of(&patched), sid);
    assert_eq!(string_list(&patched["types"]), strings(&["say.*"]));
    assert_eq!(where_list(&patched["where"]), strings(&["data.kind=a"]));

    send("call.progress", "old-type").await;
    // The kept where clause still applies.
    server
        .publish(
            0,
            &on_call("say.start", &call, json!({"n": "kind-b", "kind": "b"})),
        )
        .await;
    send("say.start", "2").await;
    let got = stream.until_marker("2", WAIT).await;
    assert_eq!(
        markers(&got),
        strings(&["2"]),
        "after PATCH: the new type, not the old one"
    );

    // POST on the subscription (form) changes it again.
    let reply = post_form(&server, &one, server.creds(0), &[("types", "call.end")]).await;
    assert_eq!(
        reply.status,
        200,
        "POST on the subscription: {}",
        reply.text()
    );
    assert_eq!(string_list(&reply.json()["types"]), strings(&["call.end"]));
    send("say.end", "old-again").await;
    send("call.end", "3").await;
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["3"]));

    // DELETE: the open stream no longer gets that subscription's events.
    let other = create_sub(&server, 0, "pc", &[("types", "dial.*")]).await;
    let reply = request(&server, Method::DELETE, &one, server.creds(0), None).await;
    assert_eq!(reply.status, 204, "DELETE: {}", reply.text());
    send("call.end", "deleted").await;
    send("dial.start", "4").await;
    let got = stream.until_marker("4", WAIT).await;
    assert_eq!(markers(&got), strings(&["4"]));
    assert_eq!(matched_subs(&got[0].data), vec![sid_of(&other)]);
}

#[tokio::test]
async fn an_event_matching_two_subscriptions_is_delivered_once() {
    let server = TestServer::start(|_| {});
    let call = new_call_sid();
    let by_type = sid_of(&create_sub(&server, 0, "dup", &[("types", "call.*")]).await);
    let by_call =
        sid_of(&create_sub(&server, 0, "dup", &[("where", &format!("call_sid={call}"))]).await);
    let (mut stream, open) = server.stream_basic(0, "client=dup").await;
    assert_eq!(
        sorted(open_subscription_sids(&open)),
        sorted(vec![by_type.clone(), by_call.clone()])
    );

    let other_call = new_call_sid();
    server
        .publish(0, &on_call("call.start", &call, json!({"n": "both"})))
        .await;
    server
        .publish(0, &on_call("call.start", &other_call, json!({"n": "type"})))
        .await;
    server
        .publish(0, &on_call("say.start", &call, json!({"n": "call"})))
        .await;
    server
        .publish(
            0,
            &on_call("say.start", &other_call, json!({"n": "neither"})),
        )
        .await;
    server
        .publish(0, &on_call("call.end", &call, json!({"n": "end"})))
        .await;

    let got = stream.until_marker("end", WAIT).await;
    let mut seen: Vec<String> = markers(&got);
    seen.sort();
    assert_eq!(seen, strings(&["both", "call", "end", "type"]), "once each");
    for ev in &got {
        let expected = match ev.marker().as_deref() {
            Some("both") | Some("end") => sorted(vec![by_type.clone(), by_call.clone()]),
            Some("type") => vec![by_type.clone()],
            Some("call") => vec![by_call.clone()],
            other => panic!("unexpected event {other:?}: {}", ev.data),
        };
        assert_eq!(
            matched_subs(&ev.data),
            expected,
            "subscriptions of {}",
            ev.data
        );
    }
}

#[tokio::test]
async fn a_subscription_created_before_the_first_connection_caches_events() {
    let server = TestServer::start(|_| {});
    let sid = sid_of(&create_sub(&server, 0, "early", &[("types", "call.*")]).await);
    let call = new_call_sid();
    let mut wanted = Vec::new();
    wanted.extend(
        server
            .publish(0, &on_call("call.start", &call, json!({"n": "1"})))
            .await,
    );
    server
        .publish(0, &on_call("say.start", &call, json!({"n": "no"})))
        .await;
    wanted.extend(
        server
            .publish(0, &on_call("call.ringing", &call, json!({"n": "2"})))
            .await,
    );

    let (mut stream, open) = server.stream_basic(0, "client=early").await;
    assert_eq!(open_subscription_sids(&open), vec![sid.clone()]);
    wanted.extend(
        server
            .publish(0, &on_call("call.end", &call, json!({"n": "3"})))
            .await,
    );
    let got = stream.until_marker("3", WAIT).await;
    assert_eq!(markers(&got), strings(&["1", "2", "3"]));
    let ids: Vec<Value> = got.iter().map(|ev| ev.data["id"].clone()).collect();
    assert_eq!(ids, wanted.iter().map(|id| json!(id)).collect::<Vec<_>>());
    for ev in &got {
        assert_eq!(matched_subs(&ev.data), vec![sid.clone()]);
    }
}

#[tokio::test]
async fn a_signed_post_creates_exactly_the_signed_subscription() {
    let server = TestServer::start(|_| {});
    let expires = now_secs() + 600;
    let path = subs_path(&server, 0, "sc");
    let signed = sign(
        server.token(0),
        &format!("{path}?types=call.end&method=POST&expires={expires}"),
    );
    // A body trying to widen it is ignored (form and JSON).
    let reply = post_form(&server, &signed, None, &[("types", "*"), ("scopes", "sup")]).await;
    assert_eq!(reply.status, 201, "signed POST: {}", reply.text());
    let sub = reply.json();
    assert_sub_shape(&server, "sc", &sub);
    assert_eq!(string_list(&sub["types"]), strings(&["call.end"]));
    assert_eq!(sub["expires"], json!(expires));
    assert!(
        string_list(&sub["scopes"]).is_empty() && sub["scopes"] != Value::Null,
        "a signed subscription without scopes sees unscoped events only: {sub}"
    );
    assert_eq!(sub["callback"], Value::Null);

    let signed_json = sign(
        server.token(0),
        &format!("{path}?types=call.end&method=POST&expires={}", expires + 1),
    );
    let reply = send_json(
        &server,
        Method::POST,
        &signed_json,
        None,
        &json!({"types": ["*"], "scopes": ["sup"], "where": []}),
    )
    .await;
    assert_eq!(reply.status, 201, "signed POST (JSON): {}", reply.text());
    assert_eq!(string_list(&reply.json()["types"]), strings(&["call.end"]));

    // Exactly those two exist.
    let reply = request(&server, Method::GET, &path, server.creds(0), None).await;
    let listed = reply.json()["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 2, "listed: {listed:?}");
    for one in &listed {
        assert_eq!(string_list(&one["types"]), strings(&["call.end"]), "{one}");
    }

    // Behaviourally: no other type, no scoped event.
    let (mut stream, _) = server.stream_basic(0, "client=sc").await;
    let call = new_call_sid();
    server
        .publish(0, &on_call("call.start", &call, json!({"n": "type"})))
        .await;
    let mut scoped = on_call("call.end", &call, json!({"n": "scoped"}));
    scoped["scope"] = json!("sup");
    server.publish(0, &scoped).await;
    server
        .publish(0, &on_call("call.end", &call, json!({"n": "ok"})))
        .await;
    let got = stream.until_marker("ok", WAIT).await;
    assert_eq!(markers(&got), strings(&["ok"]));

    // A tampered or missing signature is 401; so is another account's signature
    // (docs/api.md §4: a bad signature like any other).
    let tampered = signed.replace("types=call.end", "types=call.*");
    post_form(&server, &tampered, None, &[])
        .await
        .assert_error_shape(&["invalid_signature", "unauthorized"]);
    let foreign = sign(
        server.token(1),
        &format!("{path}?types=call.end&method=POST"),
    );
    post_form(&server, &foreign, None, &[])
        .await
        .assert_error(401, "invalid_signature");
}

#[tokio::test]
async fn credentials_are_checked() {
    let server = TestServer::start(|_| {});
    let path = subs_path(&server, 0, "auth1");
    let reply = post_form(&server, &path, None, &[("types", "call.*")]).await;
    assert_eq!(reply.status, 401, "no credentials: {}", reply.text());
    post_form(
        &server,
        &path,
        Some((server.sid(0), "wrong")),
        &[("types", "call.*")],
    )
    .await
    .assert_error(401, "unauthorized");
    post_form(&server, &path, server.creds(1), &[("types", "call.*")])
        .await
        .assert_error(403, "forbidden");
    // Account B can read nothing of account A's clients either.
    create_sub(&server, 0, "auth1", &[("types", "call.*")]).await;
    request(&server, Method::GET, &path, server.creds(1), None)
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn invalid_input_is_400_naming_the_field() {
    let server = TestServer::start(|_| {});
    let path = subs_path(&server, 0, "bad1");
    let form_cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("types", "Call.*")], "types"),
        (vec![("types", "call..end")], "types"),
        (vec![("where", "data.x=1"), ("where", "data.x~1")], "where"),
        (vec![("where", "nofield")], "where"),
        (vec![("where", "bogus.x=1")], "where"),
        (vec![("expires", "abc")], "expires"),
        (vec![("scopes", "a b")], "scopes"),
        (vec![("callback", "ftp://example.com/x")], "callback"),
        (vec![("callback", "not a url")], "callback"),
    ];
    for (pairs, field) in &form_cases {
        let message = post_form(&server, &path, server.creds(0), pairs)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with(field),
            "message {message:?} for {pairs:?} should name {field}"
        );
    }
    // The second where clause is named by its position.
    let message = post_form(
        &server,
        &path,
        server.creds(0),
        &[("where", "data.x=1"), ("where", "data.x~1")],
    )
    .await
    .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("where[1]"), "message {message:?}");

    let json_cases = [
        (json!({"types": 5}), "types"),
        (json!({"types": ["call.*", "Bad"]}), "types"),
        (json!({"where": ["data.x~1"]}), "where"),
        (json!({"expires": "soon"}), "expires"),
        (json!({"callback": "gopher://x"}), "callback"),
    ];
    for (body, field) in &json_cases {
        let message = send_json(&server, Method::POST, &path, server.creds(0), body)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(
            message.starts_with(field),
            "message {message:?} for {body} should name {field}"
        );
    }
    // PATCH validates too, and leaves the subscription as it was.
    let sub = create_sub(&server, 0, "bad1", &[("types", "call.*")]).await;
    let one = format!("{path}/{}", sid_of(&sub));
    let message = send_json(
        &server,
        Method::PATCH,
        &one,
        server.creds(0),
        &json!({"types": ["NOPE"]}),
    )
    .await
    .assert_error(400, "invalid_parameter");
    assert!(message.starts_with("types"), "message {message:?}");
    let reply = request(&server, Method::GET, &one, server.creds(0), None).await;
    assert_eq!(reply.json(), sub);
    // Nothing was created by the refused requests.
    let reply = request(&server, Method::GET, &path, server.creds(0), None).await;
    assert_eq!(
        reply.json()["subscriptions"].as_array().map(Vec::len),
        Some(1)
    );

    // An invalid client id in the path is never created.
    let reply = post_form(
        &server,
        &subs_path(&server, 0, "a.b"),
        server.creds(0),
        &[("types", "call.*")],
    )
    .await;
    reply.assert_error_shape(&["invalid_parameter", "not_found"]);
}

#[tokio::test]
async fn browsers_on_other_origins_get_cors_answers() {
    let server = TestServer::start(|_| {});
    let path = subs_path(&server, 0, "cors1");
    let origin = "https://app.example";
    let reply = preflight(&server, &path, origin, "POST").await;
    assert!(
        (200..300).contains(&reply.status),
        "preflight answered {}: {}",
        reply.status,
        reply.text()
    );
    let allowed = allow_origin(&reply);
    assert!(
        matches!(allowed.as_deref(), Some("*") | Some("https://app.example")),
        "preflight Access-Control-Allow-Origin {allowed:?}"
    );

    let reply = request_with_headers(
        &server,
        Method::POST,
        &path,
        server.creds(0),
        Some(("application/json", json!({"types": "call.*"}).to_string())),
        &[("Origin", origin)],
    )
    .await;
    assert_eq!(reply.status, 201, "POST with Origin: {}", reply.text());
    let allowed = allow_origin(&reply);
    assert!(
        matches!(allowed.as_deref(), Some("*") | Some("https://app.example")),
        "Access-Control-Allow-Origin {allowed:?}"
    );
}

#[tokio::test]
async fn an_expired_subscription_stops_delivering() {
    let server = TestServer::start(|_| {});
    let expires = now_secs() + 2;
    let short = sid_of(
        &create_sub(
            &server,
            0,
            "exp1",
            &[("types", "call.*"), ("expires", &expires.to_string())],
        )
        .await,
    );
    let lasting = sid_of(&create_sub(&server, 0, "exp1", &[("types", "dial.*")]).await);
    let (mut stream, _) = server.stream_basic(0, "client=exp1").await;
    let call = new_call_sid();
    server
        .publish(0, &on_call("call.start", &call, json!({"n": "1"})))
        .await;
    let got = stream.until_marker("1", WAIT).await;
    assert_eq!(matched_subs(&got[0].data), vec![short.clone()]);

    // Wait for what must happen, the server removing the subscription, rather
    // than for the clock: the client is the server's only one.
    eventually_metrics(&server, "the short subscription expires", |s| {
        s.value("switchboard_subscriptions", &[("transport", "stream")]) == 1.0
    })
    .await;
    assert!(now_secs() >= expires, "removed before it expired");
    server
        .publish(0, &on_call("call.progress", &call, json!({"n": "expired"})))
        .await;
    server
        .publish(0, &on_call("dial.start", &call, json!({"n": "2"})))
        .await;
    let got = stream.until_marker("2", WAIT).await;
    assert_eq!(
        markers(&got),
        strings(&["2"]),
        "nothing of the expired subscription"
    );
    assert_eq!(matched_subs(&got[0].data), vec![lasting]);
}

#[tokio::test]
async fn a_session_ends_when_its_last_subscription_expires_with_no_connection() {
    let server = TestServer::start(|_| {});
    let expires = now_secs() + 2;
    create_sub(
        &server,
        0,
        "leaving",
        &[("types", "call.*"), ("expires", &expires.to_string())],
    )
    .await;
    let before = scrape(&server).await;
    assert_eq!(before.value("switchboard_sessions", &[]), 1.0);
    assert_eq!(
        before.value("switchboard_subscriptions", &[("transport", "stream")]),
        1.0
    );
    eventually_metrics(
        &server,
        "the session ends after its subscription expires",
        |s| {
            s.value("switchboard_sessions", &[]) == 0.0
                && s.value("switchboard_subscriptions", &[("transport", "stream")]) == 0.0
        },
    )
    .await;
    let reply = request(
        &server,
        Method::GET,
        &subs_path(&server, 0, "leaving"),
        server.creds(0),
        None,
    )
    .await;
    assert_eq!(reply.status, 404, "the client is gone: {}", reply.text());
}

#[tokio::test]
async fn subscriptions_made_by_stream_urls_are_listed() {
    let server = TestServer::start(|_| {});
    let (_stream, open) = server.stream_basic(0, "client=mix&types=call.*").await;
    let url_sub = open_subscription_sids(&open);
    assert_eq!(url_sub.len(), 1);
    let made = sid_of(&create_sub(&server, 0, "mix", &[("types", "dial.*")]).await);
    let reply = request(
        &server,
        Method::GET,
        &subs_path(&server, 0, "mix"),
        server.creds(0),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "GET list: {}", reply.text());
    let listed = reply.json()["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        sorted(listed.iter().map(sid_of).collect()),
        sorted(vec![url_sub[0].clone(), made]),
        "listed: {listed:?}"
    );
}

/// Two updates of one subscription at once, one changing its types and the other
/// its `where`: each is applied to the filter as the other left it, so both hold
/// in the end, however they interleave (a handler that read the subscription and
/// then wrote it whole could lose one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_of_different_fields_both_hold() {
    let server = std::sync::Arc::new(TestServer::start(|_| {}));
    for round in 0..20 {
        let client = format!("race-{round}");
        let sub = create_sub(&server, 0, &client, &[("types", "call.*")]).await;
        let one = format!("{}/{}", subs_path(&server, 0, &client), sid_of(&sub));
        let patch = |body: Value| {
            let (server, one) = (server.clone(), one.clone());
            tokio::spawn(async move {
                send_json(&server, Method::PATCH, &one, server.creds(0), &body).await
            })
        };
        let types = patch(json!({"types": ["say.*"]}));
        let wheres = patch(json!({"where": ["data.kind=a"]}));
        for reply in [
            types.await.expect("PATCH types"),
            wheres.await.expect("PATCH where"),
        ] {
            assert_eq!(reply.status, 200, "PATCH: {}", reply.text());
        }
        let reply = request(&server, Method::GET, &one, server.creds(0), None).await;
        let now = reply.json();
        assert_eq!(
            string_list(&now["types"]),
            strings(&["say.*"]),
            "round {round}: {now}"
        );
        assert_eq!(
            where_list(&now["where"]),
            strings(&["data.kind=a"]),
            "round {round}: {now}"
        );
    }
}
