//! The runnable examples (`examples/README.md`, docs/api.md §4, §5, §7) against a
//! real server, run as a reader of the docs would run them:
//!
//! - `examples/webhooks/receiver.py --subscribe` makes its own webhook
//!   subscription, prints each verified event once (a batch delivered again adds
//!   nothing), refuses forged and tampered requests with 403, and removes its
//!   subscription when stopped;
//! - `examples/ivr/ivr.py` answers a simulated call's menu, routes key 1 to the
//!   sales conference, 2 to a recording and anything else back to the menu, and
//!   accepts the router's `X-Twilio-Signature` (and nothing else);
//! - `examples/browser/index.html`, served by `python3 -m http.server` on another
//!   origin, lists in headless Chromium (over WebDriver) the events of a signed URL
//!   with `cursor=earliest`, then live ones, writing event data as text only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::Client;
use serde_json::{json, Value};

use crate::common::captured::Captured;
use crate::common::channels::{request, subs_path, webhook_signature};
use crate::common::twilio::{sim_server, Api, EventLog};
use crate::common::webdriver::{Browser, BROWSER_WAIT};
use crate::common::{event, http_client, new_call_sid, random_hex, require_tool, sign, TestServer};

const CALLER: &str = "+14155550100";

/// A file of `examples/`.
fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

/// The receiver's stdout lines for event `id`.
fn lines_of(stdout: &[String], id: &str) -> usize {
    stdout
        .iter()
        .filter(|line| line.split(' ').next() == Some(id))
        .count()
}

// ---------------------------------------------------------------------------
// examples/webhooks/receiver.py

#[tokio::test]
async fn the_webhook_receiver_verifies_each_event_once_and_refuses_forgeries() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let server = TestServer::start(|_| {});
    let (sid, token) = server.accounts[0].clone();
    let client = format!("hooks-{}", random_hex(4));
    let mut receiver = Captured::spawn(
        "receiver.py",
        Command::new(&python)
            .arg(example("webhooks/receiver.py"))
            .args(["--port", "0", "--subscribe", "--types", "call.*"])
            .args(["--url", &server.base_url(), "--client", &client])
            .env("SWITCHBOARD_ACCOUNT", &sid)
            .env("SWITCHBOARD_TOKEN", &token),
    );
    let port = receiver.port().await;
    let callback = format!("http://127.0.0.1:{port}/hook");
    receiver
        .until("its subscription", |_, err| {
            err.iter().find(|l| l.starts_with("subscribed SU")).cloned()
        })
        .await;
    let listed = request(
        &server,
        reqwest::Method::GET,
        &subs_path(&server, 0, &client),
        server.creds(0),
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let subs = listed.json()["subscriptions"].clone();
    assert_eq!(subs[0]["callback"], json!(callback), "{subs}");
    assert_eq!(subs[0]["types"], json!(["call.*"]), "{subs}");

    // Call events reach it, each once; a gather.end is not in its types.
    let call = new_call_sid();
    let ids = server
        .publish(
            0,
            &json!([
                event("call.start", Some(&call), json!({"from": CALLER})),
                event("gather.end", Some(&call), json!({"digits": "1"})),
                event("call.end", Some(&call), json!({"duration": 61})),
            ]),
        )
        .await;
    let (start, gather, end) = (&ids[0], &ids[1], &ids[2]);
    receiver
        .until("both call events on stdout", |out, _| {
            (lines_of(out, start) == 1 && lines_of(out, end) == 1).then_some(())
        })
        .await;
    let stdout = receiver.stdout();
    let first = stdout
        .iter()
        .find(|l| l.starts_with(start.as_str()))
        .unwrap();
    assert_eq!(
        first,
        &format!("{start} call.start {call} {{\"from\":\"{CALLER}\"}}"),
        "the line of an event: id, type, call, data"
    );
    assert_eq!(lines_of(&stdout, gather), 0, "{stdout:?}");

    // A batch delivered again (as after a lost acknowledgement) is answered 200
    // and prints only what it had not seen.
    let http = http_client();
    let fresh = format!("EV{}", random_hex(16));
    let batch = json!([
        {"id": start, "account_sid": sid, "type": "call.start", "call_sid": call,
         "timestamp": "2026-11-26T07:20:50.123Z", "data": {"from": CALLER}},
        {"id": fresh, "account_sid": sid, "type": "call.warning", "call_sid": call,
         "timestamp": "2026-11-26T07:20:51.000Z", "data": {"error_code": 12200}},
    ])
    .to_string();
    let post = |signature: String, body: String| {
        http.post(&callback)
            .header("Content-Type", "application/json")
            .header("X-Switchboard-Signature", signature)
            .body(body)
            .send()
    };
    let again = post(
        webhook_signature(&token, &callback, batch.as_bytes()),
        batch.clone(),
    )
    .await
    .expect("POST a batch again");
    assert_eq!(again.status().as_u16(), 200);
    receiver
        .until("the new event of the repeated batch", |out, _| {
            (lines_of(out, &fresh) == 1).then_some(())
        })
        .await;
    assert_eq!(lines_of(&receiver.stdout(), start), 1, "printed twice");

    // Forgeries: no signature, another account's token, a body changed after
    // signing, a signature for another URL.
    let forged = format!(
        r#"[{{"id":"EV{}","type":"call.start","call_sid":"{call}","data":{{}}}}]"#,
        random_hex(16)
    );
    let other_token = server.token(1).to_owned();
    let tampered = forged.replace("call.start", "call.end");
    for (what, signature, body) in [
        ("no signature", String::new(), forged.clone()),
        (
            "another account's token",
            webhook_signature(&other_token, &callback, forged.as_bytes()),
            forged.clone(),
        ),
        (
            "a tampered body",
            webhook_signature(&token, &callback, forged.as_bytes()),
            tampered,
        ),
        (
            "another URL",
            webhook_signature(&token, "http://127.0.0.1:1/hook", forged.as_bytes()),
            forged.clone(),
        ),
    ] {
        let refused = post(signature, body).await.expect("POST a forgery");
        assert_eq!(refused.status().as_u16(), 403, "{what}");
    }
    receiver
        .until("the refusals on stderr", |_, err| {
            (err.iter().filter(|l| l.contains("bad signature")).count() == 4).then_some(())
        })
        .await;
    let printed = receiver.stdout();
    assert_eq!(
        printed.len(),
        3,
        "only the verified events are printed: {printed:?}"
    );

    // Stopped, it removes its subscription.
    let status = receiver.terminate().await;
    assert!(status.success(), "exit {status}\n{}", receiver.output());
    let listed = request(
        &server,
        reqwest::Method::GET,
        &subs_path(&server, 0, &client),
        server.creds(0),
        None,
    )
    .await;
    assert_eq!(
        listed.json()["subscriptions"],
        json!([]),
        "{}",
        receiver.output()
    );
}

// ---------------------------------------------------------------------------
// examples/ivr/ivr.py

#[tokio::test]
async fn the_ivr_routes_a_simulated_call_by_key_and_accepts_only_signed_requests() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let server = sim_server();
    let token = server.token(0).to_owned();
    let mut ivr = Captured::spawn(
        "ivr.py",
        Command::new(&python)
            .arg(example("ivr/ivr.py"))
            .args(["--port", "0"])
            .env("SWITCHBOARD_TOKEN", &token),
    );
    let port = ivr.port().await;
    let api = Api::new(&server, 0);
    let number = api
        .voice_number(&format!("http://127.0.0.1:{port}/voice"))
        .await;
    let mut log = EventLog::open(
        &server,
        0,
        "types=call.*,gather.*,say.*,conference.*,record.*",
    )
    .await;

    // 1: sales. The menu is read, the caller presses 1 and joins the conference.
    let sales = api.sim_call(CALLER, &number).await;
    log.until_event("say.start", Some(&sales)).await;
    api.sim_digits(&sales, "1").await;
    let joined = log.until_event("conference.join", Some(&sales)).await;
    assert_eq!(joined["data"]["conference"], "sales", "{joined}");
    let types = log.types_of(&sales);
    let events = log.of_call(&sales);
    let gather_end = events
        .iter()
        .position(|e| e["type"] == "gather.end")
        .unwrap_or_else(|| panic!("no gather.end: {types:?}"));
    assert_eq!(events[gather_end]["data"]["digits"], "1", "{types:?}");
    let connecting = events
        .iter()
        .position(|e| e["type"] == "say.start" && e["data"]["text"] == "Connecting you to sales.")
        .unwrap_or_else(|| panic!("no sales greeting: {}", log.dump()));
    assert!(gather_end < connecting, "{types:?}");
    api.sim_hangup(&sales).await;
    log.until_event("call.end", Some(&sales)).await;

    // 2: support. A message is recorded, then the app thanks and hangs up.
    let support = api.sim_call(CALLER, &number).await;
    log.until_event("gather.start", Some(&support)).await;
    api.sim_digits(&support, "2").await;
    log.until_event("record.end", Some(&support)).await;
    let end = log.until_event("call.end", Some(&support)).await;
    assert_eq!(end["data"]["status"], "completed", "{end}");

    // Any other key: back to the menu, read again.
    let other = api.sim_call(CALLER, &number).await;
    log.until_event("gather.start", Some(&other)).await;
    api.sim_digits(&other, "9").await;
    log.until_count("gather.start", Some(&other), 2).await;
    api.sim_hangup(&other).await;
    log.until_event("call.end", Some(&other)).await;

    // The app accepted every request the router signed, on each path.
    for (path, call) in [
        ("/voice", &sales),
        ("/menu", &sales),
        ("/menu", &support),
        ("/recorded", &support),
        ("/voice", &other),
    ] {
        let expected = format!("POST {path} signature ok CallSid={call}");
        ivr.until(&expected, |out, _| {
            out.iter().any(|l| l.starts_with(&expected)).then_some(())
        })
        .await;
    }
    let menu_lines = ivr.stdout();
    assert!(
        menu_lines.iter().any(|l| l
            .starts_with(&format!("POST /menu signature ok CallSid={sales}"))
            && l.ends_with("Digits=1")),
        "{menu_lines:?}"
    );
    assert!(
        !menu_lines.iter().any(|l| l.contains("refused")),
        "the app refused a request of the router: {menu_lines:?}"
    );

    // Requests the router did not sign are refused.
    let http = http_client();
    let url = format!("http://127.0.0.1:{port}/voice");
    let params = [("CallSid", new_call_sid()), ("From", CALLER.to_owned())];
    let post = |signature: Option<String>| {
        let mut request = http.post(&url).form(&params);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send()
    };
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let sign_with = |token: &str| crate::common::twilio::twilio_signature(token, &url, &pairs);
    let unsigned = post(None).await.expect("POST");
    assert_eq!(unsigned.status().as_u16(), 403);
    let refused = post(Some(sign_with(server.token(1)))).await.expect("POST");
    assert_eq!(
        refused.status().as_u16(),
        403,
        "signed with another account's token"
    );
    let accepted = post(Some(sign_with(&token))).await.expect("POST");
    assert_eq!(accepted.status().as_u16(), 200);
    let twiml = accepted.text().await.expect("TwiML");
    assert!(
        twiml.contains("<Gather numDigits=\"1\" action=\"/menu\""),
        "{twiml}"
    );
}

// ---------------------------------------------------------------------------
// examples/browser/index.html

#[tokio::test]
async fn the_browser_page_lists_a_signed_streams_events_as_text() {
    let (Some(python), Some(chromium), Some(chromedriver)) = (
        require_tool("python3"),
        require_tool("chromium"),
        require_tool("chromedriver"),
    ) else {
        return;
    };
    let server = TestServer::start(|_| {});
    // Published before the page opens: `cursor=earliest` replays them. The data
    // carries markup, which the page must show as text.
    let call = new_call_sid();
    let markup = "<img src=x onerror=\"document.title='owned'\">";
    let mut ids = server
        .publish(
            0,
            &json!([
                event("call.start", Some(&call), json!({"from": markup})),
                event("acme.audit", None, json!({})),
                event("gather.end", Some(&call), json!({"digits": "42"})),
            ]),
        )
        .await;
    ids.remove(1); // not among the URL's types
    let signed = sign(
        server.token(0),
        &format!(
            "{}?client=page-{}&types=call.*,gather.*&cursor=earliest",
            server.stream_path(0),
            random_hex(4)
        ),
    );

    // The page from another origin, served as examples/README.md says.
    let mut pages = Captured::spawn(
        "http.server",
        Command::new(&python)
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(example("browser")),
    );
    let page_port = pages.port().await;
    assert_ne!(page_port, server.addr.port());
    let page_url = format!(
        "http://127.0.0.1:{page_port}/index.html#{}{signed}",
        server.base_url()
    );

    let browser = Browser::launch(&chromedriver, &chromium).await;
    let page = browser.client();
    page.goto(&page_url).await.expect("open the page");
    let listed = wait_for_events(page, 2).await;
    assert_eq!(ids_of(&listed), ids, "replayed, in order: {listed}");

    // Live: an event published now is listed too.
    let live = server
        .publish(
            0,
            &json!(event("call.end", Some(&call), json!({"duration": 9}))),
        )
        .await;
    ids.extend(live);
    let listed = wait_for_events(page, 3).await;
    assert_eq!(ids_of(&listed), ids, "live: {listed}");

    let state = page
        .execute(
            "return {
               status: document.getElementById('status').textContent,
               images: document.querySelectorAll('#events img').length,
               first: document.querySelector('#events li').textContent,
               title: document.title,
             }",
            vec![],
        )
        .await
        .expect("read the page");
    assert!(
        state["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("connected as client page-")),
        "{state}"
    );
    assert_eq!(state["images"], 0, "event data became markup: {state}");
    assert!(
        state["first"]
            .as_str()
            .is_some_and(|t| t.contains(&call) && t.contains("<img src=x")),
        "{state}"
    );
    assert_ne!(state["title"], "owned", "{state}");
    browser.close().await;
}

/// Waits (bounded) until the page lists `n` events; returns them as
/// `[{"id", "type", "text"}]`.
async fn wait_for_events(page: &Client, n: usize) -> Value {
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        let listed = page
            .execute(
                "const items = [...document.querySelectorAll('#events li')];
                 if (items.length < arguments[0]) return null;
                 return items.map((li) => ({id: li.dataset.id, type: li.dataset.type,
                                           text: li.textContent}));",
                vec![json!(n)],
            )
            .await
            .expect("query the page");
        if !listed.is_null() {
            return listed;
        }
        if Instant::now() >= deadline {
            let text = page
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            panic!("the page did not list {n} events within {BROWSER_WAIT:?}; it shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids_of(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
