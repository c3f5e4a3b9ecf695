//! Subscription filters over HTTP (docs/api.md §4 `types`, `where`, `scopes`): a
//! table of cases, each a stream query, events marked with `data.n`, and the
//! markers the stream must receive.
//!
//! Proving that an event was *not* delivered without sleeping: the last event
//! of every case is a terminator the stream matches, published after the
//! others. Events of one call are delivered in publication order, so once
//! the terminator is read nothing published before it on that call can still
//! come. Events put on another call (the `call_sid` cases) are first seen
//! on an unfiltered witness stream before the terminator is published.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::common::{new_call_sid, sign, SseStream, TestServer, WAIT};

#[derive(Clone, Copy, Debug)]
enum Auth {
    Basic,
    Signed,
}

struct Case {
    name: &'static str,
    auth: Auth,
    /// Query string as sent; `{call}` is replaced by the case's call sid.
    query: &'static str,
    /// Events in publication order and whether the stream must get them.
    /// No `call_sid` key: the case's call. `"call_sid": null`: none.
    events: Vec<(Value, bool)>,
}

/// A `call.end` event with this data.
fn d(data: Value) -> Value {
    json!({"type": "call.end", "data": data})
}

/// An event of this type with empty data.
fn t(ty: &str) -> Value {
    json!({"type": ty, "data": {}})
}

/// A `call.end` event with this data on this call.
fn on_call(call: &str, data: Value) -> Value {
    json!({"type": "call.end", "call_sid": call, "data": data})
}

/// A `call.end` event with this scope (`None`: unscoped).
fn scoped(scope: Option<&str>) -> Value {
    match scope {
        Some(scope) => json!({"type": "call.end", "scope": scope, "data": {}}),
        None => json!({"type": "call.end", "data": {}}),
    }
}

fn case(name: &'static str, auth: Auth, query: &'static str, events: Vec<(Value, bool)>) -> Case {
    Case {
        name,
        auth,
        query,
        events,
    }
}

fn cases() -> Vec<Case> {
    use Auth::{Basic, Signed};
    let (y, n) = (true, false);
    vec![
        case(
            "= on a number and its text",
            Basic,
            "where=data.duration=90",
            vec![
                (d(json!({"duration": 90})), y),
                (d(json!({"duration": "90"})), y),
                (d(json!({"duration": 91})), n),
                (d(json!({"duration": "090"})), n),
                (d(json!({"duration": "90 "})), n),
                (d(json!({})), n),
                (d(json!({"duration": null})), n),
                (d(json!({"duration": [90]})), n),
                (d(json!({"duration": {"v": 90}})), n),
                (d(json!({"duration": 90})), y),
            ],
        ),
        case(
            "= on a string with an encoded +",
            Basic,
            "where=data.from=%2B14155550100",
            vec![
                (d(json!({"from": "+14155550100"})), y),
                (d(json!({"from": "14155550100"})), n),
                (d(json!({"from": " 14155550100"})), n),
                (d(json!({"from": "+141555501000"})), n),
                (d(json!({"from": "+14155550100"})), y),
            ],
        ),
        case(
            "= on a boolean",
            Basic,
            "where=data.answered=true",
            vec![
                (d(json!({"answered": true})), y),
                (d(json!({"answered": "true"})), y),
                (d(json!({"answered": false})), n),
                (d(json!({"answered": 1})), n),
                (d(json!({})), n),
                (d(json!({"answered": true})), y),
            ],
        ),
        case(
            "!= on text",
            Basic,
            "where=data.status!=busy",
            vec![
                (d(json!({"status": "completed"})), y),
                (d(json!({"status": "busy"})), n),
                (d(json!({})), n),
                (d(json!({"status": null})), n),
                (d(json!({"status": {}})), n),
                (d(json!({"status": ["busy"]})), n),
                (d(json!({"status": 5})), y),
                (d(json!({"status": "Busy"})), y),
                (d(json!({"status": "x"})), y),
            ],
        ),
        case(
            "!= on a number",
            Basic,
            "where=data.code!=5",
            vec![
                (d(json!({"code": 5})), n),
                (d(json!({"code": "5"})), n),
                (d(json!({"code": 6})), y),
                (d(json!({"code": "6"})), y),
                (d(json!({"other": 6})), n),
                (d(json!({"code": 7})), y),
            ],
        ),
        case(
            "^= prefix",
            Basic,
            "where=data.to^=%2B1415",
            vec![
                (d(json!({"to": "+14155550100"})), y),
                (d(json!({"to": "+1415"})), y),
                (d(json!({"to": "+1416"})), n),
                (d(json!({"to": "1415"})), n),
                (d(json!({"to": "+141"})), n),
                (d(json!({})), n),
                (d(json!({"to": null})), n),
                (d(json!({"to": ["+1415"]})), n),
                (d(json!({"to": "+14150000000"})), y),
            ],
        ),
        case(
            "^= on a number's text",
            Basic,
            "where=data.code^=12",
            vec![
                (d(json!({"code": 123})), y),
                (d(json!({"code": "1299"})), y),
                (d(json!({"code": 312})), n),
                (d(json!({"code": 1.2})), n),
                (d(json!({"code": 12})), y),
            ],
        ),
        case(
            "> with numbers, numeric strings and non-numbers",
            Basic,
            "where=data.duration%3E60",
            vec![
                (d(json!({"duration": 61})), y),
                (d(json!({"duration": 60})), n),
                (d(json!({"duration": 60.5})), y),
                (d(json!({"duration": "120"})), y),
                (d(json!({"duration": "1e2"})), y),
                (d(json!({"duration": "1E2"})), y),
                (d(json!({"duration": 100.0})), y),
                (d(json!({"duration": -100})), n),
                (d(json!({"duration": "abc"})), n),
                (d(json!({"duration": "+100"})), n),
                (d(json!({"duration": " 100"})), n),
                (d(json!({"duration": "100 "})), n),
                (d(json!({"duration": "0x100"})), n),
                (d(json!({"duration": "0100"})), n),
                (d(json!({"duration": ".5e3"})), n),
                (d(json!({"duration": "500."})), n),
                (d(json!({"duration": "inf"})), n),
                (d(json!({"duration": "Infinity"})), n),
                (d(json!({"duration": "NaN"})), n),
                (d(json!({"duration": ""})), n),
                (d(json!({"duration": true})), n),
                (d(json!({"duration": null})), n),
                (d(json!({"duration": {}})), n),
                (d(json!({"duration": [100]})), n),
                (d(json!({})), n),
                (d(json!({"duration": 1000})), y),
            ],
        ),
        case(
            ">=",
            Basic,
            "where=data.duration%3E%3D60",
            vec![
                (d(json!({"duration": 60})), y),
                (d(json!({"duration": 59.9})), n),
                (d(json!({"duration": "60"})), y),
                (d(json!({"duration": "6e1"})), y),
                (d(json!({"duration": "59"})), n),
                (d(json!({"duration": 61})), y),
            ],
        ),
        case(
            "< with non-numbers that parse leniently",
            Basic,
            "where=data.duration%3C10",
            vec![
                (d(json!({"duration": 9})), y),
                (d(json!({"duration": 10})), n),
                (d(json!({"duration": -5})), y),
                (d(json!({"duration": "-5"})), y),
                (d(json!({"duration": "-1e-3"})), y),
                (d(json!({"duration": "+5"})), n),
                (d(json!({"duration": " 5"})), n),
                (d(json!({"duration": "5 "})), n),
                (d(json!({"duration": "abc"})), n),
                (d(json!({"duration": "-inf"})), n),
                (d(json!({"duration": "NaN"})), n),
                (d(json!({"duration": true})), n),
                (d(json!({"duration": false})), n),
                (d(json!({"duration": null})), n),
                (d(json!({"duration": []})), n),
                (d(json!({"duration": {}})), n),
                (d(json!({})), n),
                (d(json!({"duration": 1})), y),
            ],
        ),
        case(
            "<=",
            Basic,
            "where=data.duration%3C%3D10",
            vec![
                (d(json!({"duration": 10})), y),
                (d(json!({"duration": "10"})), y),
                (d(json!({"duration": 10.1})), n),
                (d(json!({"duration": 10.0})), y),
                (d(json!({"duration": "1e1"})), y),
                (d(json!({"duration": 11})), n),
                (d(json!({"duration": 0})), y),
            ],
        ),
        case(
            "numeric value in exponent form",
            Basic,
            "where=data.duration%3E1e2",
            vec![
                (d(json!({"duration": 101})), y),
                (d(json!({"duration": 100})), n),
                (d(json!({"duration": "100.5"})), y),
                (d(json!({"duration": 1000})), y),
            ],
        ),
        case(
            "negative fractional value",
            Basic,
            "where=data.t%3C-1.5",
            vec![
                (d(json!({"t": -2})), y),
                (d(json!({"t": -1.5})), n),
                (d(json!({"t": "-1.6"})), y),
                (d(json!({"t": 0})), n),
                (d(json!({"t": -10})), y),
            ],
        ),
        case(
            "nested key",
            Basic,
            "where=data.a.b=1",
            vec![
                (d(json!({"a": {"b": 1}})), y),
                (d(json!({"a": {"b": "1"}})), y),
                (d(json!({"a": {"b": 2}})), n),
                (d(json!({"a": 1})), n),
                (d(json!({"a.b": 1})), n),
                (d(json!({"a": {"b": {"c": 1}}})), n),
                (d(json!({"a": {"c": 1}})), n),
                (d(json!({"b": 1})), n),
                (d(json!({"a": {"b": 1, "c": 2}})), y),
            ],
        ),
        case(
            "deeper nested key, numeric",
            Basic,
            "where=data.a.b.c%3E5",
            vec![
                (d(json!({"a": {"b": {"c": 6}}})), y),
                (d(json!({"a": {"b": {"c": 5}}})), n),
                (d(json!({"a": {"b": {"c": "7"}}})), y),
                (d(json!({"a": {"b": 6}})), n),
                (d(json!({"a": {"b": {"c": 100}}})), y),
            ],
        ),
        case(
            "call_sid =",
            Basic,
            "where=call_sid={call}",
            vec![
                (on_call("CAother0000000000000000000000000000", json!({})), n),
                (json!({"type": "call.end", "call_sid": null, "data": {}}), n),
                (d(json!({})), y),
                (on_call("{call}0", json!({})), n),
                (d(json!({})), y),
            ],
        ),
        case(
            "call_sid ^=",
            Basic,
            "where=call_sid^=CAfeed",
            vec![
                (on_call("CAfeed01", json!({})), y),
                (on_call("CAfee", json!({})), n),
                (on_call("CAFEED01", json!({})), n),
                (on_call("CAfeed99", json!({})), y),
            ],
        ),
        case(
            "type = in where",
            Basic,
            "where=type=call.end",
            vec![
                (t("call.end"), y),
                (t("call.start"), n),
                (t("call.end.x"), n),
                (t("call"), n),
                (t("call.end"), y),
            ],
        ),
        case(
            "type ^= and != in where",
            Basic,
            "where=type^=call.&where=type!=call.start",
            vec![
                (t("call.ringing"), y),
                (t("call.start"), n),
                (t("callx.y"), n),
                (t("call"), n),
                (t("call.a.b"), y),
                (t("call.end"), y),
            ],
        ),
        case(
            "types trailing .*",
            Basic,
            "types=call.*",
            vec![
                (t("call.start"), y),
                (t("call.a.b"), y),
                (t("call"), n),
                (t("callx.start"), n),
                (t("sms.call"), n),
                (t("xcall.start"), n),
                (t("call.end"), y),
            ],
        ),
        case(
            "types leading *",
            Basic,
            "types=*.end",
            vec![
                (t("call.end"), y),
                (t("gather.end"), y),
                (t("end"), n),
                (t("call.x.end"), n),
                (t("call.end.x"), n),
                (t("call.start"), n),
                (t("say.end"), y),
            ],
        ),
        case(
            "types lone *",
            Basic,
            "types=*",
            vec![
                (t("call"), y),
                (t("a"), y),
                (t("call.start"), n),
                (t("x9"), y),
            ],
        ),
        case(
            "types * in the middle",
            Basic,
            "types=call.*.end",
            vec![
                (t("call.x.end"), y),
                (t("call.end"), n),
                (t("call.x.y.end"), n),
                (t("sms.x.end"), n),
                (t("call.y.end"), y),
            ],
        ),
        case(
            "types *.* (a trailing .* is one or more segments)",
            Basic,
            "types=*.*",
            vec![(t("a.b"), y), (t("a"), n), (t("a.b.c"), y), (t("c.d"), y)],
        ),
        case(
            "types *.*.x",
            Basic,
            "types=*.*.x",
            vec![
                (t("a.b.x"), y),
                (t("a.x"), n),
                (t("a.b.c.x"), n),
                (t("a.b.x.y"), n),
                (t("c.d.x"), y),
            ],
        ),
        case(
            "types * then trailing .*",
            Basic,
            "types=*.x.*",
            vec![
                (t("a.x.b"), y),
                (t("a.x.b.c"), y),
                (t("a.x"), n),
                (t("x.b"), n),
                (t("a.y.b"), n),
                (t("b.x.c"), y),
            ],
        ),
        case(
            "types exact",
            Basic,
            "types=call.start",
            vec![
                (t("call.start"), y),
                (t("call.start.x"), n),
                (t("call"), n),
                (t("call.end"), n),
                (t("call.start"), y),
            ],
        ),
        case(
            "types comma list",
            Basic,
            "types=call.start,message.*",
            vec![
                (t("call.start"), y),
                (t("message.sent"), y),
                (t("message.a.b"), y),
                (t("call.end"), n),
                (t("message"), n),
                (t("call.start"), y),
            ],
        ),
        case(
            "types and where",
            Basic,
            "types=call.end&where=data.duration%3E60",
            vec![
                (d(json!({"duration": 90})), y),
                (d(json!({"duration": 30})), n),
                (json!({"type": "call.start", "data": {"duration": 90}}), n),
                (d(json!({"duration": 61})), y),
            ],
        ),
        case(
            "where clauses are ANDed",
            Basic,
            "where=data.a=1&where=data.b=2",
            vec![
                (d(json!({"a": 1, "b": 2})), y),
                (d(json!({"a": 1})), n),
                (d(json!({"b": 2})), n),
                (d(json!({"a": 1, "b": 3})), n),
                (d(json!({"a": "1", "b": "2"})), y),
                (d(json!({"a": 1, "b": 2, "c": 3})), y),
            ],
        ),
        case(
            "three where clauses",
            Basic,
            "where=data.x%3E%3D1&where=data.x%3C5&where=data.y!=no",
            vec![
                (d(json!({"x": 1, "y": "yes"})), y),
                (d(json!({"x": 5, "y": "yes"})), n),
                (d(json!({"x": 3, "y": "no"})), n),
                (d(json!({"x": 3})), n),
                (d(json!({"x": 0.5, "y": "yes"})), n),
                (d(json!({"x": 4.9, "y": "z"})), y),
            ],
        ),
        case(
            "Basic without scopes sees every scope",
            Basic,
            "",
            vec![
                (scoped(None), y),
                (scoped(Some("sup")), y),
                (scoped(Some("ops")), y),
                (scoped(None), y),
            ],
        ),
        case(
            "Basic with scopes is narrowed",
            Basic,
            "scopes=sup",
            vec![
                (scoped(None), y),
                (scoped(Some("sup")), y),
                (scoped(Some("ops")), n),
                (scoped(Some("supervisor")), n),
                (scoped(None), y),
            ],
        ),
        case(
            "Basic with two scopes",
            Basic,
            "types=call.*&scopes=sup,ops",
            vec![
                (scoped(None), y),
                (scoped(Some("sup")), y),
                (scoped(Some("ops")), y),
                (scoped(Some("dev")), n),
                (scoped(Some("supops")), n),
                (scoped(None), y),
            ],
        ),
        case(
            "signed without scopes sees only unscoped events",
            Signed,
            "",
            vec![
                (scoped(None), y),
                (scoped(Some("sup")), n),
                (scoped(Some("ops")), n),
                (scoped(None), y),
            ],
        ),
        case(
            "signed with scopes",
            Signed,
            "scopes=sup,ops",
            vec![
                (scoped(None), y),
                (scoped(Some("sup")), y),
                (scoped(Some("ops")), y),
                (scoped(Some("dev")), n),
                (scoped(Some("SUP")), n),
                (scoped(None), y),
            ],
        ),
        case(
            "signed with types, where and scopes",
            Signed,
            "types=call.*&where=data.duration%3E60&scopes=sup",
            vec![
                (
                    json!({"type": "call.end", "scope": "sup", "data": {"duration": 90}}),
                    y,
                ),
                (
                    json!({"type": "call.end", "scope": "ops", "data": {"duration": 90}}),
                    n,
                ),
                (
                    json!({"type": "call.end", "scope": "sup", "data": {"duration": 9}}),
                    n,
                ),
                (
                    json!({"type": "sms.end", "scope": "sup", "data": {"duration": 90}}),
                    n,
                ),
                (json!({"type": "call.end", "data": {"duration": 61}}), y),
            ],
        ),
        case(
            "signed types and where",
            Signed,
            "types=call.end&where=data.to^=%2B1415",
            vec![
                (
                    json!({"type": "call.end", "data": {"to": "+14155550100"}}),
                    y,
                ),
                (
                    json!({"type": "call.end", "data": {"to": "+14255550100"}}),
                    n,
                ),
                (
                    json!({"type": "call.start", "data": {"to": "+14155550100"}}),
                    n,
                ),
                (json!({"type": "call.end", "data": {"to": "+1415"}}), y),
            ],
        ),
    ]
}

/// Runs one case on its own stream; `Err` describes what went wrong.
async fn run_case(
    server: &TestServer,
    witness: &mut SseStream,
    index: usize,
    case: &Case,
) -> Result<(), String> {
    let call = new_call_sid();
    let query = case.query.replace("{call}", &call);
    let path = server.stream_path(0);
    let pq = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let mut stream = match case.auth {
        Auth::Basic => server.open_stream(&pq, server.creds(0)).await,
        Auth::Signed => server.open_stream(&sign(server.token(0), &pq), None).await,
    }
    .map_err(|reply| format!("stream refused: {} {}", reply.status, reply.text()))?;
    let open = stream
        .next_event(WAIT)
        .await
        .map_err(|err| format!("no stream.open: {err}"))?;
    if open.ty() != "stream.open" {
        return Err(format!("first event is not stream.open: {}", open.data));
    }

    assert!(
        case.events.last().is_some_and(|(_, want)| *want),
        "case {:?}: the last event must be a terminator the stream matches",
        case.name
    );
    let mut events = Vec::new();
    let mut expected = Vec::new();
    for (i, (template, want)) in case.events.iter().enumerate() {
        let marker = format!("{index}.{i}");
        let mut ev: Value =
            serde_json::from_str(&template.to_string().replace("{call}", &call)).expect("json");
        ev["data"]["n"] = json!(marker);
        match ev.get("call_sid") {
            None => ev["call_sid"] = json!(call),
            Some(Value::Null) => {
                if let Some(obj) = ev.as_object_mut() {
                    obj.remove("call_sid");
                }
            }
            Some(_) => {}
        }
        if *want {
            expected.push(marker.clone());
        }
        events.push((marker, ev));
    }

    let (last_marker, last_event) = events.pop().expect("a terminator");
    let mut unseen: HashSet<String> = HashSet::new();
    for (marker, ev) in &events {
        let reply = server.try_publish(0, ev).await;
        if reply.status != 202 {
            return Err(format!(
                "publishing {ev}: {} {}",
                reply.status,
                reply.text()
            ));
        }
        unseen.insert(marker.clone());
    }
    if !unseen.is_empty() {
        witness
            .collect_until(
                |ev| {
                    if let Some(m) = ev.marker() {
                        unseen.remove(&m);
                    }
                    unseen.is_empty()
                },
                WAIT,
            )
            .await
            .map_err(|inc| format!("the witness stream missed events: {inc:?}"))?;
    }
    let reply = server.try_publish(0, &last_event).await;
    if reply.status != 202 {
        return Err(format!(
            "publishing {last_event}: {} {}",
            reply.status,
            reply.text()
        ));
    }
    let received = stream
        .collect_until(
            |ev| ev.marker().as_deref() == Some(last_marker.as_str()),
            WAIT,
        )
        .await
        .map_err(|inc| format!("terminator not received: {inc:?}"))?;
    let mut got: Vec<String> = received
        .iter()
        .map(|ev| ev.marker().unwrap_or_else(|| ev.data.to_string()))
        .collect();
    // Order is only promised within one call.
    let one_call = events.iter().all(|(_, ev)| ev["call_sid"] == json!(call))
        && last_event["call_sid"] == json!(call);
    if !one_call {
        got.sort();
        expected.sort();
    }
    if got != expected {
        let describe = |markers: &[String]| -> Vec<String> {
            markers
                .iter()
                .map(|m| {
                    events
                        .iter()
                        .find(|(mm, _)| mm == m)
                        .map_or(m.clone(), |(_, ev)| format!("{m} {}", ev["data"]))
                })
                .collect()
        };
        let extra: Vec<String> = got
            .iter()
            .filter(|m| !expected.contains(m))
            .cloned()
            .collect();
        let missing: Vec<String> = expected
            .iter()
            .filter(|m| !got.contains(m))
            .cloned()
            .collect();
        return Err(format!(
            "received {got:?}, expected {expected:?}; delivered but should not: {:?}; missing: {:?}",
            describe(&extra),
            describe(&missing)
        ));
    }
    for ev in &received {
        let subs = ev.data["subscriptions"].as_array().map_or(0, Vec::len);
        if subs == 0 {
            return Err(format!("delivered without subscriptions: {}", ev.data));
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_filter_table() {
    let server = TestServer::start(|_| {});
    let (mut witness, _) = server.stream_basic(0, "").await;
    let mut failures = Vec::new();
    let table = cases();
    for (index, case) in table.iter().enumerate() {
        if let Err(why) = run_case(&server, &mut witness, index, case).await {
            failures.push(format!(
                "[{index}] {} ({:?} ?{}): {why}",
                case.name, case.auth, case.query
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} filter cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn invalid_filters_are_400_naming_the_parameter() {
    let server = TestServer::start(|_| {});
    let invalid = [
        ("where=data.x~5", "where[0]"),
        ("where=data.x", "where[0]"),
        ("where=", "where[0]"),
        ("where=foo=1", "where[0]"),
        ("where=data=1", "where[0]"),
        ("where=data.=1", "where[0]"),
        ("where=data..a=1", "where[0]"),
        ("where=data.x%3Eabc", "where[0]"),
        ("where=data.x%3E", "where[0]"),
        ("where=data.x%3C%2B5", "where[0]"),
        ("where=data.x%3E%3Dtrue", "where[0]"),
        ("where=data.a=1&where=data.b~2", "where[1]"),
        ("where=data.a=1&where=bar!=2", "where[1]"),
        ("types=Call.*", "types[0]"),
        ("types=", "types"),
        ("types=call.*,Bad", "types[1]"),
        ("types=call..start", "types[0]"),
        ("types=call.*,", "types[1]"),
        ("types=call.**", "types[0]"),
        ("types=ca*ll", "types[0]"),
        ("types=call%20start", "types[0]"),
        ("scopes=a%20b", "scopes"),
        ("scopes=a%2Fb", "scopes"),
    ];
    let mut failures = Vec::new();
    for (query, prefix) in invalid {
        let pq = format!("{}?{query}", server.stream_path(0));
        for (how, url, creds) in [
            ("basic", pq.clone(), server.creds(0)),
            ("signed", sign(server.token(0), &pq), None),
        ] {
            let reply = server.rejected(&url, creds).await;
            let ok = reply.status == 400
                && reply.content_type().starts_with("application/json")
                && reply.json()["code"] == json!("invalid_parameter")
                && reply.json()["status"] == json!(400)
                && reply.json()["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix));
            if !ok {
                failures.push(format!("{how} ?{query}: {} {}", reply.status, reply.text()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "expected 400 invalid_parameter naming the parameter:\n{}",
        failures.join("\n")
    );
}
