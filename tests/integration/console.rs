//! The web console (`/console`) in a real browser: headless Chromium driven over
//! WebDriver (chromedriver, through fantoccini) as a person would use it. It signs
//! in with the account's sid and token, starts a simulated call, watches it over
//! SSE, presses digits and hangs up; then, with a call in a conference, mutes and
//! unmutes it. Each step is checked on the page and, where it changes a call, on
//! the server too (the call's record, the events the router published), so the
//! buttons are known to do what they say and not merely to redraw the page. A
//! second test holds the page's connection handling: it renews its short-lived
//! stream URL before it expires, and comes back by itself after a server restart.
//!
//! A screenshot of the muted conference call is written to
//! `target/test-artifacts/console.png` (`docs/console.png` is one, copied by hand).

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use crate::common::twilio::{Api, AppServer, EventLog};
use crate::common::webdriver::{Browser, BROWSER_WAIT};
use crate::common::{event, http_client, new_call_sid, random_hex, require_tool, TestServer};
use crate::process::{self, Options};

/// `sim.time_scale` of the test server: ten times faster than real time, so the
/// call's prompts take a fraction of a second while its waits (a 600-second
/// `Gather` timeout, a 6000-second `Pause`) still last a minute and ten minutes:
/// the browser has time to press digits, and nothing but the console ends the call.
const TIME_SCALE: f64 = 0.1;

/// `auth.max_url_lifetime_secs` of the restart test's server: every URL the page
/// signs there lives this long, so it must renew its stream within the test.
const URL_LIFETIME_SECS: u64 = 10;

/// The caller's numbers the console dials from.
const CALLER: &str = "+14155550123";
const ROOM_CALLER: &str = "+14155550177";
const OTHER_CALLER: &str = "+14155550188";
/// The caller the console watches waiting in a queue.
const QUEUE_CALLER: &str = "+14155550166";

#[tokio::test]
async fn the_console_shows_a_live_call_and_its_buttons_drive_it() {
    let (Some(chromedriver), Some(chromium)) =
        (require_tool("chromedriver"), require_tool("chromium"))
    else {
        return;
    };
    let started = Instant::now();
    let server = TestServer::start(|config| {
        config.sim.time_scale = TIME_SCALE;
        config.sim.ring_secs = 1.0;
    });
    let (sid, token) = server.accounts[0].clone();
    let app = AppServer::start(&token);
    app.twiml(
        "/voice",
        r#"<Response><Gather numDigits="4" timeout="600" action="/done"><Say>Enter your code</Say></Gather></Response>"#,
    );
    app.twiml(
        "/done",
        r#"<Response><Say>Thanks</Say><Pause length="6000"/></Response>"#,
    );
    app.twiml(
        "/room",
        r#"<Response><Dial><Conference>standup</Conference></Dial></Response>"#,
    );
    app.twiml(
        "/queue",
        r#"<Response><Enqueue>support</Enqueue></Response>"#,
    );
    let api = Api::new(&server, 0);
    let pin_number = api.voice_number(&app.url("/voice")).await;
    let room_number = api.voice_number(&app.url("/room")).await;
    let queue_number = api.voice_number(&app.url("/queue")).await;

    let console_url = format!("http://{}/console", server.addr);
    assert_security_headers(&console_url).await;

    let browser = Browser::launch(&chromedriver, &chromium).await;
    let page = browser.client();
    sign_in(page, &console_url, &sid, &token).await;

    // A call with digits, hung up from the console.
    let call = start_call(page, &pin_number, CALLER).await;
    click_css(page, &format!("#calls [data-call-sid='{call}']")).await;
    wait_js(
        page,
        "the Gather's prompt in the call's timeline",
        "return document.querySelector('#timeline li[data-type=\"gather.start\"]') !== null || null",
        vec![],
    )
    .await;
    type_into(page, "digits-input", "1234").await;
    click(page, "send-digits").await;
    wait_js(
        page,
        "gather.end with the digits 1234 in the call's timeline",
        "return [...document.querySelectorAll('#timeline li[data-type=\"gather.end\"]')]
            .some((li) => li.textContent.includes('1234'))
            && document.getElementById('detail-digits').textContent === '1234' || null",
        vec![],
    )
    .await;
    app.first_request("/done")
        .await
        .assert_param("Digits", "1234");

    click(page, "hangup").await;
    wait_js(
        page,
        "the call to show as completed",
        "const card = document.querySelector(`#calls [data-call-sid='${arguments[0]}']`);
         return card && card.dataset.status === 'completed'
            && document.getElementById('detail-status').textContent === 'completed' || null",
        vec![json!(call)],
    )
    .await;
    let record = api.final_call(&call).await;
    assert_eq!(record["status"], "completed", "the call's record: {record}");
    assert_hung_up_by_the_console(&server, &call, started).await;

    // The token is in the page's memory only: not in storage, cookies or the URL.
    let kept = page
        .execute(
            "return [JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie, location.href].join(' ')",
            vec![],
        )
        .await
        .expect("read the page's storage");
    let kept = kept.as_str().unwrap_or_default();
    assert!(
        !kept.contains(&token),
        "the token must stay in memory: {kept}"
    );

    // A call in a conference with another caller: mute and unmute it.
    let other = api.sim_call(OTHER_CALLER, &room_number).await;
    let call = start_call(page, &room_number, ROOM_CALLER).await;
    let participant = format!("#participants li[data-participant='{call}']");
    wait_js(
        page,
        "both callers listed as the conference's participants",
        "return document.querySelectorAll('#participants li').length === 2
            && document.querySelector(`#participants li[data-participant='${arguments[0]}']`) !== null
            && document.querySelector(arguments[1])?.dataset.muted === 'false' || null",
        vec![json!(other), json!(participant)],
    )
    .await;
    click(page, "mute").await;
    wait_participant(page, &participant, "true").await;
    wait_js(
        page,
        "conference.mute in the call's timeline",
        "return document.querySelector('#timeline li[data-type=\"conference.mute\"]') !== null || null",
        vec![],
    )
    .await;
    save_screenshot(page).await;
    click(page, "unmute").await;
    wait_participant(page, &participant, "false").await;

    // A caller waiting in a queue shows where it waits, and the console hangs
    // it up out of the queue.
    let queued = start_call(page, &queue_number, QUEUE_CALLER).await;
    click_css(page, &format!("#calls [data-call-sid='{queued}']")).await;
    wait_js(
        page,
        "the caller shown waiting in support",
        "const card = document.querySelector(`#calls [data-call-sid='${arguments[0]}']`);
         return card && card.textContent.includes('queued in support (#1)')
            && document.getElementById('detail-queue').textContent === 'support (#1)' || null",
        vec![json!(queued)],
    )
    .await;
    click(page, "hangup").await;
    wait_js(
        page,
        "the queued caller hung up and out of the queue",
        "return [...document.querySelectorAll('#timeline li[data-type=\"queue.leave\"]')]
            .some((li) => li.textContent.includes('result=hangup'))
            && document.getElementById('detail-queue').textContent === '—'
            && document.getElementById('detail-status').textContent === 'completed' || null",
        vec![],
    )
    .await;

    // Event data is text, never markup: a caller id carrying HTML shows as
    // written and makes no element (the policy would block its script anyway).
    let markup = "<img src=x id=injected onerror=alert(1)>";
    let injected = publish_call(&server, markup).await;
    wait_card(page, &injected).await;
    let shown = wait_js(
        page,
        "the card of the call whose caller id is markup",
        "const card = document.querySelector(`#calls [data-call-sid='${arguments[0]}']`);
         return card && card.textContent.includes(arguments[1])
            && document.getElementById('injected') === null
            && document.querySelectorAll('img').length === 0 || null",
        vec![json!(injected), json!(markup)],
    )
    .await;
    assert_eq!(shown, json!(true));

    browser.close().await;
    eprintln!("console test: {:?} in all", started.elapsed());
}

/// With signed URLs that live `URL_LIFETIME_SECS`, the page renews its stream before each
/// one expires, staying connected throughout; when the server is killed and
/// started again on the same port, the page reconnects by itself and shows the
/// calls that come after.
#[tokio::test]
async fn the_console_renews_its_stream_and_comes_back_after_a_restart() {
    let (Some(chromedriver), Some(chromium)) =
        (require_tool("chromedriver"), require_tool("chromium"))
    else {
        return;
    };
    let started = Instant::now();
    let (sid, token) = (format!("AC{}", random_hex(16)), random_hex(16));
    let tables =
        format!("[auth]\nmax_url_lifetime_secs = {URL_LIFETIME_SECS}\n[stream]\nretry_ms = 500\n");
    let mut server = process::spawn_with(
        &sid,
        &token,
        &Options {
            config: &tables,
            ..Default::default()
        },
    );
    process::wait_ready(&http_client(), &server.base).await;
    let handle = server.handle();
    let browser = Browser::launch(&chromedriver, &chromium).await;
    let page = browser.client();
    sign_in(page, &format!("{}/console", server.base), &sid, &token).await;

    let first = publish_call(&handle, "+14155550101").await;
    wait_card(page, &first).await;

    // Two seconds past the first URL's expiry: the page renewed it without ever
    // dropping the stream, and the client's subscription lives on with the new
    // URL, so a call published now (before the next renewal) still arrives.
    let watch = Duration::from_secs(URL_LIFETIME_SECS + 2);
    let watched = Instant::now();
    let mut states = Vec::new();
    while watched.elapsed() < watch {
        let state = connection_state(page).await;
        if states.last() != Some(&state) {
            states.push(state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        states,
        ["connected"],
        "the page must renew its stream before the signed URL expires, without dropping it"
    );
    let second = publish_call(&handle, "+14155550102").await;
    wait_card(page, &second).await;

    server.kill();
    wait_js(
        page,
        "the page to notice the server is gone",
        "const state = document.getElementById('conn-state').dataset.state;
         return state !== 'connected' ? state : null",
        vec![],
    )
    .await;
    server.restart();
    process::wait_ready(&http_client(), &server.base).await;
    wait_js(
        page,
        "the page to reconnect to the restarted server",
        "return document.getElementById('conn-state').dataset.state === 'connected' || null",
        vec![],
    )
    .await;
    let third = publish_call(&handle, "+14155550103").await;
    wait_card(page, &third).await;

    browser.close().await;
    eprintln!("console restart test: {:?} in all", started.elapsed());
}

/// Opens the console and signs in; waits until its stream is connected.
async fn sign_in(page: &Client, console_url: &str, sid: &str, token: &str) {
    page.goto(console_url).await.expect("open /console");
    type_into(page, "sid", sid).await;
    type_into(page, "token", token).await;
    click(page, "connect").await;
    wait_js(
        page,
        "the connection state to be `connected`",
        "return document.getElementById('conn-state').dataset.state === 'connected' || null",
        vec![],
    )
    .await;
}

async fn connection_state(page: &Client) -> String {
    let state = page
        .execute(
            "return document.getElementById('conn-state').dataset.state",
            vec![],
        )
        .await
        .expect("read the connection state");
    state.as_str().unwrap_or_default().to_string()
}

/// Publishes a `call.start` of a new call from `from`, as a call router does;
/// returns its CallSid.
async fn publish_call(server: &TestServer, from: &str) -> String {
    let call = new_call_sid();
    let data = json!({"from": from, "to": "+14155550000", "direction": "inbound", "status": "in-progress"});
    server
        .publish(0, &event("call.start", Some(&call), data))
        .await;
    call
}

async fn wait_card(page: &Client, call: &str) {
    wait_js(
        page,
        &format!("a card for {call}"),
        "return document.querySelector(`#calls [data-call-sid='${arguments[0]}']`) !== null || null",
        vec![json!(call)],
    )
    .await;
}

/// The page and its files come with the headers that keep the token in it.
async fn assert_security_headers(console_url: &str) {
    let http = http_client();
    for (url, content_type) in [
        (console_url.to_string(), "text/html; charset=utf-8"),
        (
            format!("{console_url}/app.js"),
            "text/javascript; charset=utf-8",
        ),
        (format!("{console_url}/app.css"), "text/css; charset=utf-8"),
    ] {
        let response = http.get(&url).send().await.expect("GET a console file");
        assert_eq!(response.status(), 200, "GET {url}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("content-type"), content_type, "GET {url}");
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "GET {url}: CSP {csp:?} lacks {directive}"
            );
        }
        assert_eq!(header("x-content-type-options"), "nosniff", "GET {url}");
        assert_eq!(header("referrer-policy"), "no-referrer", "GET {url}");
    }
}

/// The router's own events show the call ended because of the console: a
/// `client.hangup` from the console's client, then `call.end`, long before the
/// call's `Pause` would have ended it.
async fn assert_hung_up_by_the_console(server: &TestServer, call: &str, started: Instant) {
    let mut log = EventLog::open(server, 0, "cursor=earliest").await;
    log.until_event("call.end", Some(call)).await;
    let events = log.of_call(call);
    let hangup = events
        .iter()
        .position(|ev| {
            ev["type"] == "client.hangup"
                && ev["data"]["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("console-"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no client.hangup from the console for {call}; its events:\n{}",
                log.dump()
            )
        });
    let end = events
        .iter()
        .position(|ev| ev["type"] == "call.end")
        .unwrap_or_default();
    assert!(
        hangup < end,
        "client.hangup must come before call.end:\n{}",
        log.dump()
    );
    assert_eq!(events[end]["data"]["status"], "completed");
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "the call outlived its Pause: it was not the console that ended it"
    );
}

/// Starts a call from `from` to `to` with the console's form; waits until its
/// card shows it in progress and returns its CallSid.
async fn start_call(page: &Client, to: &str, from: &str) -> String {
    wait_js(
        page,
        &format!("{to} among the numbers to call"),
        "return document.querySelector(`#call-to option[value='${arguments[0]}']`) !== null || null",
        vec![json!(to)],
    )
    .await;
    page.find(Locator::Id("call-to"))
        .await
        .expect("the number list")
        .select_by_value(to)
        .await
        .expect("choose the number");
    let caller = page.find(Locator::Id("call-from")).await.expect("from");
    caller.clear().await.expect("clear the caller");
    caller.send_keys(from).await.expect("type the caller");
    click(page, "start-call").await;
    let sid = wait_js(
        page,
        &format!("a call card from {from} in progress"),
        "const card = [...document.querySelectorAll('#calls [data-call-sid]')]
            .find((c) => c.dataset.status === 'in-progress' && c.textContent.includes(arguments[0]));
         return card ? card.dataset.callSid : null",
        vec![json!(from)],
    )
    .await;
    sid.as_str().unwrap_or_default().to_string()
}

async fn wait_participant(page: &Client, participant: &str, muted: &str) {
    wait_js(
        page,
        &format!("{participant} to show muted={muted}"),
        "return document.querySelector(arguments[0])?.dataset.muted === arguments[1] || null",
        vec![json!(participant), json!(muted)],
    )
    .await;
}

async fn type_into(page: &Client, id: &str, text: &str) {
    page.find(Locator::Id(id))
        .await
        .unwrap_or_else(|err| panic!("find #{id}: {err}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|err| panic!("type into #{id}: {err}"));
}

async fn click(page: &Client, id: &str) {
    click_css(page, &format!("#{id}")).await;
}

async fn click_css(page: &Client, css: &str) {
    page.find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("find {css}: {err}"))
        .click()
        .await
        .unwrap_or_else(|err| panic!("click {css}: {err}"));
}

/// Runs `script` in the page until it returns something other than `null`, for
/// at most `BROWSER_WAIT`; fails with the page's visible text otherwise.
async fn wait_js(page: &Client, what: &str, script: &str, args: Vec<Value>) -> Value {
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        match page.execute(script, args.clone()).await {
            Ok(Value::Null) => {}
            Ok(value) => return value,
            Err(err) => panic!("waiting for {what}: the script failed: {err}"),
        }
        if Instant::now() >= deadline {
            let text = page
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_else(|err| json!(format!("(unreadable: {err})")));
            panic!(
                "waited {BROWSER_WAIT:?} for {what}; the page shows:\n{}",
                text.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a PNG of the page to `target/test-artifacts/console.png`.
async fn save_screenshot(page: &Client) {
    let png = page.screenshot().await.expect("screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    let path = dir.join("console.png");
    std::fs::write(&path, png).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    eprintln!("console test: screenshot at {}", path.display());
}
