//! Twilio-style REST: outbound calls (from the app's URL or inline TwiML),
//! hanging up and redirecting live calls, errors in Twilio's shape, and paged
//! call lists.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::channels::request;
use crate::common::new_call_sid;
use crate::common::twilio::{
    assert_sid, assert_twilio_error, created, fresh_number, sim_server, Api, AppServer, EventLog,
    API_VERSION,
};

use super::{CALLER, EXTERNAL};

#[tokio::test]
async fn an_outbound_call_rings_then_runs_the_apps_twiml() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/outbound", "<Response><Say>Hi</Say></Response>");
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;

    let sent = Instant::now();
    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", EXTERNAL),
                ("From", &from),
                ("Url", &app.url("/outbound")),
            ],
        )
        .await;
    let resource = created(&reply, "POST Calls.json");
    assert_sid(&resource["sid"], "CA");
    let call = resource["sid"].as_str().unwrap_or("").to_string();
    let status = resource["status"].as_str().unwrap_or("");
    assert!(
        status == "queued" || status == "ringing",
        "a new call is queued or ringing: {resource}"
    );
    assert_eq!(resource["direction"], json!("outbound-api"), "{resource}");
    assert_eq!(resource["to"], json!(EXTERNAL), "{resource}");
    assert_eq!(resource["from"], json!(from), "{resource}");
    assert_eq!(resource["api_version"], json!(API_VERSION), "{resource}");

    let req = app.first_request("/outbound").await;
    let ring = Duration::from_millis(10); // ring_secs 1.0 × time_scale 0.01
    assert!(
        req.at.duration_since(sent) >= ring,
        "the app was requested {:?} after the POST, before the ring time",
        req.at.duration_since(sent)
    );
    req.assert_signed();
    req.assert_param("CallSid", &call);
    req.assert_param("AccountSid", server.sid(0));
    req.assert_param("Direction", "outbound-api");
    req.assert_param("From", &from);
    req.assert_param("To", EXTERNAL);
    req.assert_param("ApiVersion", API_VERSION);

    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    let events = log.of_call(&call);
    assert_eq!(
        events[0]["data"]["direction"],
        json!("outbound-api"),
        "{}",
        events[0]
    );
    assert_eq!(
        events[3]["data"]["status"],
        json!("completed"),
        "{}",
        events[3]
    );
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["direction"], json!("outbound-api"), "{done}");
}

#[tokio::test]
async fn an_outbound_call_can_carry_its_twiml_inline() {
    let server = sim_server();
    let api = Api::new(&server, 0);
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;

    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", EXTERNAL),
                ("From", &from),
                ("Twiml", "<Response><Say>x</Say></Response>"),
            ],
        )
        .await;
    let resource = created(&reply, "POST Calls.json with Twiml");
    assert_sid(&resource["sid"], "CA");
    let call = resource["sid"].as_str().unwrap_or("").to_string();

    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_eq!(log.of_call(&call)[1]["data"]["text"], json!("x"));
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
}

#[tokio::test]
async fn rest_status_completed_hangs_up_a_live_call() {
    let server = sim_server();
    let api = Api::new(&server, 0);
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut log = EventLog::open(&server, 0, "types=call.*").await;

    // 3000 simulated seconds: 30 s real, far beyond every wait below.
    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", EXTERNAL),
                ("From", &from),
                ("Twiml", r#"<Response><Pause length="3000"/></Response>"#),
            ],
        )
        .await;
    let call = created(&reply, "POST Calls.json")["sid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    log.until_event("call.start", Some(&call)).await;
    assert_eq!(api.call(&call).await["status"], json!("in-progress"));

    let reply = api
        .post(&format!("Calls/{call}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(
        reply.status,
        200,
        "POST Calls/{call}.json: {}",
        reply.text()
    );
    assert_eq!(reply.json()["sid"], json!(call), "{}", reply.text());

    let end = log.until_event("call.end", Some(&call)).await;
    assert_eq!(end["data"]["status"], json!("completed"), "{end}");
    let done = api.final_call(&call).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert!(done["end_time"].is_string(), "end_time once ended: {done}");
}

#[tokio::test]
async fn a_live_call_is_redirected_by_rest_and_by_a_client_event() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    let hold = r#"<Response><Pause length="3000"/></Response>"#;
    app.twiml("/hold", hold);
    app.twiml("/next", "<Response><Say>moved by rest</Say></Response>");
    app.twiml("/client", "<Response><Say>moved by client</Say></Response>");
    let number = api.voice_number(&app.url("/hold")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,say.*").await;

    // By REST: POST Calls/{sid}.json with Url.
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.start", Some(&call)).await;
    let reply = api
        .post(&format!("Calls/{call}.json"), &[("Url", &app.url("/next"))])
        .await;
    assert_eq!(
        reply.status,
        200,
        "POST Calls/{call}.json Url: {}",
        reply.text()
    );
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_eq!(
        log.of_call(&call)[1]["data"]["text"],
        json!("moved by rest")
    );
    let next = app.first_request("/next").await;
    next.assert_signed();
    next.assert_param("CallSid", &call);

    // By a client event: client.redirect with data.url.
    let call = api.sim_call(CALLER, &number).await;
    log.until_event("call.start", Some(&call)).await;
    api.client_event(
        "ops",
        &json!({"type": "client.redirect", "call_sid": call, "data": {"url": app.url("/client")}}),
    )
    .await;
    log.until_event("call.end", Some(&call)).await;
    assert_eq!(
        log.types_of(&call),
        ["call.start", "say.start", "say.end", "call.end"],
        "{}",
        log.dump()
    );
    assert_eq!(
        log.of_call(&call)[1]["data"]["text"],
        json!("moved by client")
    );
    let moved = app.first_request("/client").await;
    moved.assert_signed();
    moved.assert_param("CallSid", &call);
}

#[tokio::test]
async fn rest_errors_are_twilio_shaped() {
    let server = sim_server();
    let api = Api::new(&server, 0);

    let path = api.path("Calls.json");
    let wrong = request(
        &server,
        Method::GET,
        &path,
        Some((server.sid(0), "not-the-token")),
        None,
    )
    .await;
    assert_twilio_error(&wrong, 401, 20003);
    let none = request(&server, Method::GET, &path, None, None).await;
    assert_twilio_error(&none, 401, 20003);

    let other = Api::new(&server, 1).path("Calls.json");
    let reply = request(&server, Method::GET, &other, server.creds(0), None).await;
    assert_twilio_error(&reply, 403, 20403);

    let unknown = api.get(&format!("Calls/{}.json", new_call_sid())).await;
    assert_twilio_error(&unknown, 404, 20404);

    let from = fresh_number();
    api.provision(&from, &[]).await;
    let reply = api
        .post(
            "Calls.json",
            &[("From", &from), ("Url", "http://127.0.0.1:9/never")],
        )
        .await;
    assert_twilio_error(&reply, 400, 21201);

    let reply = api
        .post("IncomingPhoneNumbers.json", &[("PhoneNumber", &from)])
        .await;
    assert_twilio_error(&reply, 400, 21452);

    // The simulated network only calls numbers of the caller's account.
    let reply = api
        .sim("Calls", &json!({"from": CALLER, "to": EXTERNAL}))
        .await;
    assert_eq!(
        reply.status,
        404,
        "sim call to an unprovisioned number: {}",
        reply.text()
    );
    let reply = Api::new(&server, 1)
        .sim("Calls", &json!({"from": CALLER, "to": from}))
        .await;
    assert!(
        reply.status == 403 || reply.status == 404,
        "sim call to another account's number: {} {}",
        reply.status,
        reply.text()
    );
}

#[tokio::test]
async fn call_lists_are_paged_newest_first_under_calls() {
    let server = sim_server();
    let api = Api::new(&server, 0);
    let from = fresh_number();
    api.provision(&from, &[]).await;
    let mut sids = Vec::new();
    for _ in 0..3 {
        let reply = api
            .post(
                "Calls.json",
                &[
                    ("To", EXTERNAL),
                    ("From", &from),
                    ("Twiml", "<Response><Hangup/></Response>"),
                ],
            )
            .await;
        sids.push(
            created(&reply, "POST Calls.json")["sid"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }

    let page = api.get("Calls.json?PageSize=2").await;
    assert_eq!(page.status, 200, "GET Calls.json: {}", page.text());
    let page = page.json();
    let listed: Vec<&str> = page["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls array: {page}"))
        .iter()
        .map(|c| c["sid"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        listed,
        [sids[2].as_str(), sids[1].as_str()],
        "newest first: {page}"
    );
    assert_eq!(page["page"], json!(0), "{page}");
    assert_eq!(page["page_size"], json!(2), "{page}");
    let next = page["next_page_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("next_page_uri on a full page: {page}"));
    assert!(
        next.starts_with(&api.path("Calls.json")),
        "next_page_uri {next:?}"
    );

    let rest = request(&server, Method::GET, next, server.creds(0), None).await;
    assert_eq!(rest.status, 200, "GET {next}: {}", rest.text());
    let rest = rest.json();
    let listed: Vec<&str> = rest["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls array: {rest}"))
        .iter()
        .map(|c| c["sid"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(listed, [sids[0].as_str()], "the last page: {rest}");
    assert_eq!(rest["page"], json!(1), "{rest}");
    assert_eq!(rest["next_page_uri"], Value::Null, "{rest}");
}
