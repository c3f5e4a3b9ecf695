//! Signed control-channel URLs (docs/api.md §5, issue #8 point 3): a signed URL
//! serves only the method its query signs (`method=`), and a create equal to
//! an existing subscription returns that one with 200, so replaying a signed
//! create URL adds nothing — no twin subscription, no second webhook.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::{
    allow_origin, marked, markers, post_form, preflight, request, scrape, sid_of, strings,
    subs_path, HookReceiver, HookRequest,
};
use crate::common::{new_call_sid, now_secs, sign, string_list, TestServer, WAIT};

/// Every subscription of `client`, by Basic auth; none when the client has no
/// session at all (404) or an empty list.
async fn listed(server: &TestServer, client: &str) -> Vec<Value> {
    let reply = request(
        server,
        Method::GET,
        &subs_path(server, 0, client),
        server.creds(0),
        None,
    )
    .await;
    if reply.status == 404 {
        reply.assert_error(404, "not_found");
        return Vec::new();
    }
    assert_eq!(reply.status, 200, "list: {}", reply.text());
    reply.json()["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A scoped copy of `event`.
fn scoped(mut event: Value, scope: &str) -> Value {
    event["scope"] = json!(scope);
    event
}

#[tokio::test]
async fn a_list_url_sent_as_post_is_403_and_creates_nothing() {
    let server = TestServer::start(|_| {});
    let client = "att1";
    let path = subs_path(&server, 0, client);
    // A page allowed to see `sup` events may list its subscriptions.
    let list_url = sign(server.token(0), &format!("{path}?scopes=sup&method=GET"));

    // The attack: the list URL sent as POST (on the old code, a create of an
    // all-types `sup` subscription).
    for body in [vec![], vec![("types", "*")]] {
        post_form(&server, &list_url, None, &body)
            .await
            .assert_error(403, "method_not_signed");
    }
    assert!(
        listed(&server, client).await.is_empty(),
        "a refused POST added a subscription"
    );

    // Behaviourally: the client's channel, whose own URL grants `sup` for
    // `call.end`, gets no scoped `call.start`; the unscoped `call.end`
    // published after it proves the scoped one had its chance.
    let stream_url = sign(
        server.token(0),
        &format!(
            "{}?client={client}&types=call.end&scopes=sup",
            server.stream_path(0)
        ),
    );
    let (mut stream, _) = server.stream_signed(&stream_url).await;
    let call = new_call_sid();
    server
        .publish(0, &scoped(marked("call.start", &call, "stolen"), "sup"))
        .await;
    server.publish(0, &marked("call.end", &call, "end")).await;
    let got = stream.until_marker("end", WAIT).await;
    assert_eq!(markers(&got), strings(&["end"]));

    // The list URL does what it was signed for.
    let reply = request(&server, Method::GET, &list_url, None, None).await;
    assert_eq!(reply.status, 200, "signed GET list: {}", reply.text());
    let subs = reply.json()["subscriptions"].clone();
    assert_eq!(subs.as_array().map(Vec::len), Some(1), "{subs}");
    assert_eq!(string_list(&subs[0]["types"]), strings(&["call.end"]));

    let metrics = scrape(&server).await;
    assert_eq!(
        metrics.value(
            "switchboard_control_refused_total",
            &[("reason", "method_not_signed")]
        ),
        2.0
    );
}

#[tokio::test]
async fn a_signed_url_serves_only_its_method() {
    let server = TestServer::start(|_| {});
    let client = "meth1";
    let path = subs_path(&server, 0, client);
    let expires = now_secs() + 600;
    let create = sign(
        server.token(0),
        &format!("{path}?types=call.*&method=POST&expires={expires}"),
    );
    let reply = post_form(&server, &create, None, &[]).await;
    assert_eq!(reply.status, 201, "signed create: {}", reply.text());
    let sid = sid_of(&reply.json());
    let one = format!("{path}/{sid}");

    // A create URL is no list URL, and a signed URL without method= serves none.
    request(&server, Method::GET, &create, None, None)
        .await
        .assert_error(403, "method_not_signed");
    let unnamed = sign(server.token(0), &path);
    for method in [Method::GET, Method::POST] {
        let message = request(&server, method, &unnamed, None, None)
            .await
            .assert_error(403, "method_not_signed");
        assert!(message.starts_with("method"), "{message}");
    }
    // A correctly signed method= that is no method is a 400 naming it.
    for bad in ["PUT", "GET&method=POST"] {
        let url = sign(server.token(0), &format!("{path}?method={bad}"));
        let message = request(&server, Method::GET, &url, None, None)
            .await
            .assert_error(400, "invalid_parameter");
        assert!(message.starts_with("method"), "{bad}: {message}");
    }

    // GET reads, and only reads.
    let read = sign(server.token(0), &format!("{one}?method=GET"));
    let reply = request(&server, Method::GET, &read, None, None).await;
    assert_eq!(reply.status, 200, "signed GET read: {}", reply.text());
    assert_eq!(sid_of(&reply.json()), sid);
    for method in [Method::DELETE, Method::PATCH, Method::POST] {
        request(&server, method.clone(), &read, None, None)
            .await
            .assert_error(403, "method_not_signed");
    }

    // PATCH and POST on one subscription both change it, each under its own name.
    let patch = sign(
        server.token(0),
        &format!("{one}?types=call.end&method=PATCH"),
    );
    request(&server, Method::POST, &patch, None, None)
        .await
        .assert_error(403, "method_not_signed");
    let reply = request(&server, Method::PATCH, &patch, None, None).await;
    assert_eq!(reply.status, 200, "signed PATCH: {}", reply.text());
    assert_eq!(string_list(&reply.json()["types"]), strings(&["call.end"]));
    let change = sign(server.token(0), &format!("{one}?types=say.*&method=POST"));
    request(&server, Method::PATCH, &change, None, None)
        .await
        .assert_error(403, "method_not_signed");
    let reply = request(&server, Method::POST, &change, None, None).await;
    assert_eq!(reply.status, 200, "signed POST change: {}", reply.text());
    assert_eq!(string_list(&reply.json()["types"]), strings(&["say.*"]));

    // DELETE only through a DELETE URL.
    request(&server, Method::DELETE, &read, None, None)
        .await
        .assert_error(403, "method_not_signed");
    assert_eq!(
        listed(&server, client).await.len(),
        1,
        "refused DELETE removed it"
    );
    let delete = sign(server.token(0), &format!("{one}?method=DELETE"));
    let reply = request(&server, Method::DELETE, &delete, None, None).await;
    assert_eq!(reply.status, 204, "signed DELETE: {}", reply.text());
    assert!(listed(&server, client).await.is_empty());

    // Basic auth is unaffected: no method= needed.
    let reply = post_form(&server, &path, server.creds(0), &[("types", "call.*")]).await;
    assert_eq!(reply.status, 201, "Basic create: {}", reply.text());

    // Browsers' CORS preflight for a signed URL still answers.
    let reply = preflight(&server, &delete, "https://app.example", "DELETE").await;
    assert!(
        reply.status == 200 || reply.status == 204,
        "preflight: {} {}",
        reply.status,
        reply.text()
    );
    assert!(allow_origin(&reply).is_some(), "preflight allow-origin");
}

#[tokio::test]
async fn stream_and_control_urls_do_not_stand_in_for_each_other() {
    let server = TestServer::start(|_| {});
    let client = "swap1";
    let path = subs_path(&server, 0, client);
    let query = format!("client={client}&types=call.*&method=POST");

    // A signed stream URL's query moved to the control path.
    let stream_url = sign(
        server.token(0),
        &format!("{}?{query}", server.stream_path(0)),
    );
    let (_, signed_query) = stream_url.split_once('?').expect("a query");
    let moved = format!("{path}?{signed_query}");
    let reply = post_form(&server, &moved, None, &[]).await;
    assert_eq!(
        reply.status,
        401,
        "stream URL on the control path: {}",
        reply.text()
    );
    assert!(listed(&server, client).await.is_empty());

    // A signed control URL's query moved to the stream path.
    let control_url = sign(server.token(0), &format!("{path}?{query}"));
    let (_, signed_query) = control_url.split_once('?').expect("a query");
    let reply = server
        .rejected(&format!("{}?{signed_query}", server.stream_path(0)), None)
        .await;
    assert_eq!(
        reply.status,
        401,
        "control URL on the stream path: {}",
        reply.text()
    );
}

/// Ids of the events in webhook requests that were acknowledged, with how
/// many times each was.
fn acked_counts(requests: &[HookRequest]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for req in requests.iter().filter(|r| r.answered == 200) {
        let batch: Vec<Value> = serde_json::from_slice(&req.body).unwrap_or_default();
        for ev in batch {
            let id = ev["id"].as_str().unwrap_or("").to_string();
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test]
async fn replaying_a_signed_create_adds_no_twin_and_no_second_webhook() {
    let server = TestServer::start(|c| c.webhook.max_batch = 1);
    let receiver = HookReceiver::start(0).await;
    let callback = receiver.url("/hook");
    let client = "replay1";
    let path = subs_path(&server, 0, client);
    let create = sign(
        server.token(0),
        &format!(
            "{path}?types=call.*&where=data.n!%3Dx&callback={}&method=POST",
            crate::common::pct(&callback)
        ),
    );

    let reply = post_form(&server, &create, None, &[]).await;
    assert_eq!(reply.status, 201, "first create: {}", reply.text());
    let first = reply.json();
    assert_eq!(first["callback"], json!(callback));
    let sid = sid_of(&first);
    for n in 0..2 {
        let reply = post_form(&server, &create, None, &[]).await;
        assert_eq!(reply.status, 200, "replay {n}: {}", reply.text());
        assert_eq!(
            reply.json(),
            first,
            "replay {n} answers the same subscription"
        );
    }
    let subs = listed(&server, client).await;
    assert_eq!(subs.len(), 1, "listed: {subs:?}");
    assert_eq!(sid_of(&subs[0]), sid);

    let call = new_call_sid();
    let mut published = Vec::new();
    for n in ["1", "2", "3", "end"] {
        published.extend(server.publish(0, &marked("call.progress", &call, n)).await);
    }
    let last = published.last().cloned().expect("published");
    let requests = receiver
        .wait_for(WAIT, "acknowledged the terminator", |reqs| {
            acked_counts(reqs).contains_key(&last)
        })
        .await;
    let counts = acked_counts(&requests);
    for id in &published {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id} delivered {:?} times",
            counts.get(id)
        );
    }
    assert_eq!(
        counts.len(),
        published.len(),
        "unexpected events: {counts:?}"
    );

    let metrics = scrape(&server).await;
    assert_eq!(
        metrics.value(
            "switchboard_control_creates_total",
            &[("outcome", "existing")]
        ),
        2.0
    );
    assert_eq!(
        metrics.value(
            "switchboard_control_creates_total",
            &[("outcome", "created")]
        ),
        1.0
    );
}

#[tokio::test]
async fn only_an_equal_create_is_answered_with_the_existing_subscription() {
    let server = TestServer::start(|_| {});
    let client = "eq1";
    let path = subs_path(&server, 0, client);
    let expires = (now_secs() + 600).to_string();
    let base = [
        ("types", "call.*,say.end"),
        ("where", "data.to=+1555"),
        ("where", "data.n>1"),
        ("scopes", "a,b"),
        ("expires", expires.as_str()),
    ];
    let reply = post_form(&server, &path, server.creds(0), &base).await;
    assert_eq!(reply.status, 201, "create: {}", reply.text());
    let sid = sid_of(&reply.json());

    // The same subscription written differently (Basic auth, JSON): 200, same sid.
    let reply = crate::common::channels::send_json(
        &server,
        Method::POST,
        &path,
        server.creds(0),
        &json!({"types": ["say.end", "call.*"], "where": ["data.n>1", "data.to=+1555"],
                "scopes": "b,a", "expires": expires.parse::<u64>().unwrap()}),
    )
    .await;
    assert_eq!(reply.status, 200, "equal create: {}", reply.text());
    assert_eq!(sid_of(&reply.json()), sid);

    // Any difference is another subscription.
    let later = (now_secs() + 700).to_string();
    let variants: Vec<Vec<(&str, &str)>> = vec![
        vec![("types", "call.*")],
        vec![("types", "call.*,say.end"), ("where", "data.to=+1555")],
        vec![
            ("types", "call.*,say.end"),
            ("where", "data.to=+1555"),
            ("where", "data.n>1"),
            ("scopes", "a"),
            ("expires", expires.as_str()),
        ],
        vec![
            ("types", "call.*,say.end"),
            ("where", "data.to=+1555"),
            ("where", "data.n>1"),
            ("scopes", "a,b"),
            ("expires", later.as_str()),
        ],
    ];
    let mut sids = vec![sid];
    for pairs in &variants {
        let reply = post_form(&server, &path, server.creds(0), pairs).await;
        assert_eq!(reply.status, 201, "{pairs:?}: {}", reply.text());
        sids.push(sid_of(&reply.json()));
    }
    let mut listed_sids: Vec<String> = listed(&server, client).await.iter().map(sid_of).collect();
    listed_sids.sort();
    sids.sort();
    assert_eq!(listed_sids, sids);
}

#[tokio::test]
async fn a_signed_url_grants_no_scope_it_does_not_sign() {
    let server = TestServer::start(|_| {});
    let client = "scope1";
    let path = subs_path(&server, 0, client);

    // Signed creates with no scopes and with an empty scopes grant none.
    for query in [
        "types=call.*&method=POST",
        "types=call.*&scopes=&method=POST",
    ] {
        let url = sign(server.token(0), &format!("{path}?{query}"));
        let reply = post_form(&server, &url, None, &[("scopes", "sup")]).await;
        assert!(
            reply.status == 201 || reply.status == 200,
            "{query}: {}",
            reply.text()
        );
        let sub = reply.json();
        assert_eq!(sub["scopes"], json!([]), "{query}: {sub}");
    }
    // Both are one subscription: an empty scopes is the same as none.
    assert_eq!(listed(&server, client).await.len(), 1);

    // A Basic-auth subscription sees every scope; a signed change of its filter
    // without scopes narrows it to none instead of keeping the wider grant.
    let reply = post_form(&server, &path, server.creds(0), &[("types", "say.*")]).await;
    assert_eq!(reply.status, 201, "Basic create: {}", reply.text());
    let wide = reply.json();
    assert_eq!(wide["scopes"], Value::Null, "{wide}");
    let change = sign(
        server.token(0),
        &format!("{path}/{}?types=say.*&method=PATCH", sid_of(&wide)),
    );
    let reply = request(&server, Method::PATCH, &change, None, None).await;
    assert_eq!(reply.status, 200, "signed PATCH: {}", reply.text());
    assert_eq!(reply.json()["scopes"], json!([]), "{}", reply.text());

    // Behaviourally, over a Basic-auth channel (which itself may see every
    // scope): the scoped event reaches no subscription; the unscoped one after
    // it does.
    let (mut stream, _) = server.stream_basic(0, &format!("client={client}")).await;
    let call = new_call_sid();
    server
        .publish(0, &scoped(marked("say.start", &call, "scoped"), "sup"))
        .await;
    server.publish(0, &marked("say.end", &call, "end")).await;
    let got = stream.until_marker("end", WAIT).await;
    assert_eq!(markers(&got), strings(&["end"]));
}
