//! A contact center on call queues (docs/api.md §7): an IVR `<Enqueue>`s callers
//! into `support`, their `waitUrl` documents are requested in turn with where they
//! stand, an agent's `<Dial><Queue>` takes the caller who waited longest, and the
//! Queues resource — driven through Twilio's own Python helper library — shows
//! sizes and wait times and dequeues a caller to another document.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::channels::{request, scrape};
use crate::common::twilio::{sim_server, Api, AppRequest, AppServer, EventLog};

use super::CALLER;

/// Bounds every wait for the application's requests.
const WITHIN: Duration = Duration::from_secs(15);

/// The queue- and dial-level events of one call, in order.
fn queue_types(log: &EventLog, call: &str) -> Vec<String> {
    log.types_of(call)
        .into_iter()
        .filter(|t| !t.starts_with("say.") && !t.starts_with("play."))
        .collect()
}

/// The `/hold` requests of `call`.
fn holds_of(app: &AppServer, call: &str) -> Vec<AppRequest> {
    app.requests_to("/hold")
        .into_iter()
        .filter(|req| req.param("CallSid") == Some(call))
        .collect()
}

/// The `/after` request of `call` (waited for, bounded).
async fn after_of(app: &AppServer, call: &str) -> AppRequest {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let found = app
            .requests_to("/after")
            .into_iter()
            .find(|req| req.param("CallSid") == Some(call));
        if let Some(found) = found {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no /after request of {call}: {:?}",
            app.requests_to("/after")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A number parameter of a request.
#[track_caller]
fn number(req: &AppRequest, name: &str) -> u64 {
    req.param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a number: {}", req.summary()))
}

/// Fetches the queue through twilio-python: `[current_size, average_wait_time,
/// max_size, friendly_name, [[call_sid, position, wait_time] …]]`.
async fn queue_state(api: &Api<'_>, queue: &str) -> Option<Value> {
    api.twilio_python(
        "q = client.queues(os.environ['QUEUE']).fetch()\n\
         members = [[m.call_sid, m.position, m.wait_time] for m in client.queues(q.sid).members.list()]\n\
         print(json.dumps([q.current_size, q.average_wait_time, q.max_size, q.friendly_name, members]))",
        &[("QUEUE", queue)],
    )
    .await
}

#[tokio::test]
async fn an_agent_takes_the_caller_who_waited_longest_and_the_queues_resource_shows_it() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/ivr",
        r#"<Response><Say>Thanks for calling</Say><Enqueue action="/after" waitUrl="/hold">support</Enqueue><Say>never said</Say></Response>"#,
    );
    // 30 simulated seconds of hold music: 0.3 s real, so each caller requests it
    // again and again while it waits.
    app.twiml(
        "/hold",
        r#"<Response><Say>Your call is important to us</Say><Pause length="30"/></Response>"#,
    );
    app.twiml("/after", "<Response><Hangup/></Response>");
    app.twiml(
        "/agent",
        r#"<Response><Dial action="/agent-done" timeout="20"><Queue url="/whisper">support</Queue></Dial></Response>"#,
    );
    app.twiml("/whisper", "<Response><Say>Connecting you</Say></Response>");
    app.twiml("/agent-done", "<Response><Hangup/></Response>");
    app.twiml(
        "/callback",
        "<Response><Say>We will call you back</Say><Hangup/></Response>",
    );
    let ivr = api.voice_number(&app.url("/ivr")).await;
    let agent_number = api.voice_number(&app.url("/agent")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,queue.*,dial.*,say.*").await;

    // The queue is made beforehand through the helper library, as apps do.
    let Some(created) = api
        .twilio_python(
            "q = client.queues.create(friendly_name='support', max_size=10)\n\
             listed = [l.sid for l in client.queues.list()]\n\
             print(json.dumps([q.sid, q.friendly_name, q.max_size, q.current_size, listed]))",
            &[],
        )
        .await
    else {
        return;
    };
    let queue_sid = created[0].as_str().unwrap_or_default().to_owned();
    assert!(queue_sid.starts_with("QU"), "{created}");
    assert_eq!(created, json!([queue_sid, "support", 10, 0, [queue_sid]]));

    // Three callers, each waiting before the next calls.
    let mut callers = Vec::new();
    for n in 1..=3 {
        let caller = api.sim_call(CALLER, &ivr).await;
        let join = log.until_event("queue.join", Some(&caller)).await;
        assert_eq!(
            join["data"],
            json!({"verb": "Enqueue", "queue": "support", "queue_sid": queue_sid, "position": n, "size": n}),
            "{join}"
        );
        callers.push(caller);
    }
    // Each caller's wait document is requested in turn, again and again, with
    // where it stands.
    for (i, caller) in callers.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + WITHIN;
        while holds_of(&app, caller).len() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{caller}'s waitUrl was not requested twice: {:?}",
                holds_of(&app, caller)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let hold = holds_of(&app, caller)
            .pop()
            .unwrap_or_else(|| unreachable!());
        hold.assert_signed();
        hold.assert_param("QueueSid", &queue_sid);
        hold.assert_param("QueuePosition", &(i + 1).to_string());
        hold.assert_param("CurrentQueueSize", "3");
        hold.assert_param("MaxQueueSize", "10");
        assert!(number(&hold, "QueueTime") > 0, "{}", hold.summary());
        assert!(number(&hold, "AvgQueueTime") > 0, "{}", hold.summary());
    }

    let Some(state) = queue_state(&api, &queue_sid).await else {
        return;
    };
    assert_eq!(state[0], json!(3), "current_size: {state}");
    assert!(
        state[1].as_u64().unwrap_or(0) > 0,
        "average_wait_time: {state}"
    );
    assert_eq!((&state[2], &state[3]), (&json!(10), &json!("support")));
    let positions: Vec<(Value, Value)> = state[4]
        .as_array()
        .unwrap_or_else(|| unreachable!())
        .iter()
        .map(|m| (m[0].clone(), m[1].clone()))
        .collect();
    assert_eq!(
        positions,
        [
            (json!(callers[0]), json!(1)),
            (json!(callers[1]), json!(2)),
            (json!(callers[2]), json!(3)),
        ]
    );
    let waits: Vec<u64> = state[4]
        .as_array()
        .unwrap_or_else(|| unreachable!())
        .iter()
        .map(|m| m[2].as_u64().unwrap_or(0))
        .collect();
    assert!(
        waits[0] >= waits[1] && waits[1] >= waits[2] && waits[2] > 0,
        "the first caller waited longest: {waits:?}"
    );

    // The agent takes the first caller, who hears the whisper first.
    let agent = api.sim_call(CALLER, &agent_number).await;
    let leave = log.until_event("queue.leave", Some(&callers[0])).await;
    assert_eq!(leave["data"]["result"], json!("bridged"), "{leave}");
    assert_eq!(leave["data"]["position"], json!(1), "{leave}");
    assert_eq!(leave["data"]["participant"], json!(agent), "{leave}");
    assert!(
        leave["data"]["wait_time"].as_u64().unwrap_or(0) > 0,
        "{leave}"
    );
    let whisper = app.first_request("/whisper").await;
    whisper.assert_signed();
    whisper.assert_param("CallSid", &callers[0]);
    whisper.assert_param("DequeingCallSid", &agent);
    whisper.assert_param("QueueSid", &queue_sid);
    let dial = log.until_event("dial.start", Some(&agent)).await;
    assert_eq!(dial["data"]["queue"], json!("support"), "{dial}");

    let Some(state) = queue_state(&api, &queue_sid).await else {
        return;
    };
    assert_eq!(
        state[0],
        json!(2),
        "current_size after the agent took one: {state}"
    );
    let members: Vec<Value> = state[4]
        .as_array()
        .unwrap_or_else(|| unreachable!())
        .iter()
        .map(|m| json!([m[0], m[1]]))
        .collect();
    assert_eq!(
        members,
        [json!([callers[1], 1]), json!([callers[2], 2])],
        "the others moved up: {state}"
    );

    // The caller hangs up: the agent's Dial ends and it goes on to its action.
    api.sim_hangup(&callers[0]).await;
    log.until_event("call.end", Some(&callers[0])).await;
    let done = app.first_request("/agent-done").await;
    done.assert_signed();
    done.assert_param("CallSid", &agent);
    done.assert_param("DialCallStatus", "completed");
    done.assert_param("DialCallSid", &callers[0]);
    done.assert_param("QueueSid", &queue_sid);

    // The third caller is taken out through the REST API to a callback document.
    let Some(dequeued) = api
        .twilio_python(
            "m = client.queues(os.environ['QUEUE']).members(os.environ['CALL']).update(url=os.environ['URL'], method='POST')\n\
             print(json.dumps([m.call_sid, m.position]))",
            &[
                ("QUEUE", &queue_sid),
                ("CALL", &callers[2]),
                ("URL", &app.url("/callback")),
            ],
        )
        .await
    else {
        return;
    };
    assert_eq!(dequeued, json!([callers[2], 2]));
    log.until_event("call.end", Some(&callers[2])).await;
    let leave = log.one_of("queue.leave", &callers[2]);
    assert_eq!(leave["data"]["result"], json!("redirected"), "{leave}");
    assert_eq!(leave["data"]["position"], json!(2), "{leave}");

    // The second hangs up while waiting.
    api.sim_hangup(&callers[1]).await;
    log.until_event("call.end", Some(&callers[1])).await;
    let leave = log.one_of("queue.leave", &callers[1]);
    assert_eq!(leave["data"]["result"], json!("hangup"), "{leave}");
    assert_eq!(leave["data"]["position"], json!(1), "{leave}");
    log.until_event("call.end", Some(&agent)).await;

    // The exact sequences, hold music left out.
    let bridged = ["call.start", "queue.join", "queue.leave", "call.end"];
    for caller in &callers {
        assert_eq!(queue_types(&log, caller), bridged, "{}", log.dump());
    }
    assert_eq!(
        queue_types(&log, &agent),
        ["call.start", "dial.start", "dial.end", "call.end"],
        "{}",
        log.dump()
    );
    let end = log.one_of("dial.end", &agent);
    assert_eq!(end["data"]["dial_call_status"], json!("completed"), "{end}");
    assert_eq!(end["data"]["dial_call_sid"], json!(callers[0]), "{end}");
    // The first caller heard the whisper last; the Enqueue's own next verb
    // never ran.
    let said: Vec<Value> = log
        .of_call(&callers[0])
        .into_iter()
        .filter(|ev| ev["type"] == json!("say.start"))
        .map(|ev| ev["data"]["text"].clone())
        .collect();
    assert_eq!(said.first(), Some(&json!("Thanks for calling")), "{said:?}");
    assert_eq!(said.last(), Some(&json!("Connecting you")), "{said:?}");
    assert!(!said.contains(&json!("never said")), "{said:?}");

    let Some(state) = queue_state(&api, &queue_sid).await else {
        return;
    };
    assert_eq!(state[0], json!(0), "the queue is empty: {state}");
    let metrics = scrape(&server).await;
    assert_eq!(metrics.value("switchboard_queue_members", &[]), 0.0);
    assert_eq!(metrics.value("switchboard_queues", &[]), 1.0);
    for result in ["bridged", "redirected", "hangup"] {
        let count = metrics.value(
            "switchboard_queue_wait_seconds_count",
            &[("result", result)],
        );
        assert_eq!(count, 1.0, "{result}");
    }
}

#[tokio::test]
async fn an_agent_on_an_empty_queue_gets_the_next_caller_and_leave_and_full_go_to_the_action() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml(
        "/agent",
        r#"<Response><Dial action="/agent-done" timeout="2000"><Queue>sales</Queue></Dial></Response>"#,
    );
    app.twiml("/agent-done", "<Response><Hangup/></Response>");
    app.twiml(
        "/caller",
        r#"<Response><Enqueue action="/after" waitUrl="/hold">sales</Enqueue></Response>"#,
    );
    app.twiml("/hold", "<Response><Leave/></Response>");
    app.twiml("/after", "<Response><Hangup/></Response>");
    app.twiml(
        "/lonely",
        r#"<Response><Enqueue action="/after" waitUrl="/hold">lonely</Enqueue></Response>"#,
    );
    app.twiml(
        "/tiny",
        r#"<Response><Enqueue action="/after">tiny</Enqueue></Response>"#,
    );
    let agent_number = api.voice_number(&app.url("/agent")).await;
    let caller_number = api.voice_number(&app.url("/caller")).await;
    let lonely_number = api.voice_number(&app.url("/lonely")).await;
    let tiny_number = api.voice_number(&app.url("/tiny")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,queue.*,dial.*").await;

    // A Dial on a queue nobody made fails at once, as in Twilio.
    let agent = api.sim_call(CALLER, &agent_number).await;
    let end = log.until_event("dial.end", Some(&agent)).await;
    assert_eq!(end["data"]["dial_call_status"], json!("failed"), "{end}");
    log.until_event("call.end", Some(&agent)).await;

    // Once the queue exists, the agent waits on it and takes the next caller at
    // once, before its wait document (which would leave) is requested.
    let created = api.post("Queues.json", &[("FriendlyName", "sales")]).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["max_size"], json!(1000), "Twilio's default");
    let agent = api.sim_call(CALLER, &agent_number).await;
    log.until_event("dial.start", Some(&agent)).await;
    let caller = api.sim_call(CALLER, &caller_number).await;
    let leave = log.until_event("queue.leave", Some(&caller)).await;
    assert_eq!(leave["data"]["result"], json!("bridged"), "{leave}");
    assert_eq!(leave["data"]["participant"], json!(agent), "{leave}");
    // The agent hangs up: the caller goes on to its Enqueue action.
    api.sim_hangup(&agent).await;
    let end = log.until_event("dial.end", Some(&agent)).await;
    assert_eq!(end["data"]["dial_call_status"], json!("completed"), "{end}");
    assert_eq!(end["data"]["dial_call_sid"], json!(caller), "{end}");
    log.until_event("call.end", Some(&caller)).await;
    let after = after_of(&app, &caller).await;
    after.assert_signed();
    after.assert_param("QueueResult", "bridged");
    after.assert_param(
        "QueueSid",
        created.json()["sid"].as_str().unwrap_or_default(),
    );
    assert!(
        app.requests_to("/hold").is_empty(),
        "the caller never waited"
    );
    assert!(
        app.requests_to("/agent-done").len() == 1,
        "an agent that hangs up gets no action: {:?}",
        app.requests_to("/agent-done")
    );

    // A caller alone leaves through its wait document's <Leave>.
    let lonely = api.sim_call(CALLER, &lonely_number).await;
    log.until_event("call.end", Some(&lonely)).await;
    let leave = log.until_event("queue.leave", Some(&lonely)).await;
    assert_eq!(leave["data"]["result"], json!("leave"), "{leave}");
    after_of(&app, &lonely)
        .await
        .assert_param("QueueResult", "leave");

    // A full queue sends the caller straight to the action.
    let created = api
        .post("Queues.json", &[("FriendlyName", "tiny"), ("MaxSize", "1")])
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let first = api.sim_call(CALLER, &tiny_number).await;
    log.until_event("queue.join", Some(&first)).await;
    let second = api.sim_call(CALLER, &tiny_number).await;
    log.until_event("call.end", Some(&second)).await;
    after_of(&app, &second)
        .await
        .assert_param("QueueResult", "queue-full");
    assert_eq!(
        log.types_of(&second),
        ["call.start", "call.end"],
        "a refused caller never joined: {}",
        log.dump()
    );
    // The front caller is dequeued through the REST API to another document.
    let sid = created.json()["sid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dequeued = api
        .post(
            &format!("Queues/{sid}/Members/Front.json"),
            &[("Url", &app.url("/after")), ("Method", "GET")],
        )
        .await;
    assert_eq!(dequeued.status, 200, "{}", dequeued.text());
    assert_eq!(
        dequeued.json()["call_sid"],
        json!(first),
        "{}",
        dequeued.text()
    );
    assert_eq!(dequeued.json()["position"], json!(1), "{}", dequeued.text());
    log.until_event("call.end", Some(&first)).await;
    let leave = log.until_event("queue.leave", Some(&first)).await;
    assert_eq!(leave["data"]["result"], json!("redirected"), "{leave}");
    let redirected = after_of(&app, &first).await;
    assert_eq!(redirected.method, "GET", "{}", redirected.summary());
    assert_eq!(
        redirected.param("QueueResult"),
        None,
        "a redirect is no action"
    );
}

#[tokio::test]
async fn bad_queue_requests_are_refused_naming_the_field_and_change_nothing() {
    let server = sim_server();
    let api = Api::new(&server, 0);
    let other = Api::new(&server, 1);
    let long = "q".repeat(65);
    for (params, field) in [
        (vec![], "FriendlyName"),
        (vec![("FriendlyName", long.as_str())], "FriendlyName"),
        (vec![("FriendlyName", "a"), ("MaxSize", "0")], "MaxSize"),
        (vec![("FriendlyName", "a"), ("MaxSize", "5001")], "MaxSize"),
        (vec![("FriendlyName", "a"), ("MaxSize", "many")], "MaxSize"),
    ] {
        let reply = api.post("Queues.json", &params).await;
        assert_eq!(reply.status, 400, "{params:?}: {}", reply.text());
        let message = reply.json()["message"].as_str().unwrap_or("").to_owned();
        assert!(message.contains(field), "{params:?}: {message}");
    }
    let listed = api.get("Queues.json").await;
    assert_eq!(listed.json()["queues"], json!([]), "nothing was created");

    let created = api
        .post("Queues.json", &[("FriendlyName", "support")])
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let sid = created.json()["sid"].as_str().unwrap_or("").to_owned();
    let again = api
        .post("Queues.json", &[("FriendlyName", "support")])
        .await;
    assert_eq!(again.status, 400, "{}", again.text());
    assert_eq!(again.json()["code"], json!(22003), "{}", again.text());

    // Another account sees neither the queue nor its members, and cannot
    // dequeue from it.
    for path in [
        format!("Queues/{sid}.json"),
        format!("Queues/{sid}/Members.json"),
        format!("Queues/{sid}/Members/Front.json"),
    ] {
        let reply = other.get(&path).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
    }
    let reply = other
        .post(
            &format!("Queues/{sid}/Members/Front.json"),
            &[("Url", "http://127.0.0.1:9/x")],
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(other.get("Queues.json").await.json()["queues"], json!([]));
    // The same name is another account's own queue.
    let theirs = other
        .post("Queues.json", &[("FriendlyName", "support")])
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.text());
    assert_ne!(theirs.json()["sid"], json!(sid));

    // Dequeuing needs a Url, and an empty queue has no front member.
    let reply = api
        .post(&format!("Queues/{sid}/Members/Front.json"), &[])
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("Url"), "{}", reply.text());
    let reply = api
        .post(
            &format!("Queues/{sid}/Members/Front.json"),
            &[("Url", "http://127.0.0.1:9/x")],
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
}

#[tokio::test]
async fn a_queue_is_renamed_resized_and_deleted_through_the_helper_library() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    let other = Api::new(&server, 1);
    app.twiml(
        "/sales",
        r#"<Response><Enqueue action="/after">sales</Enqueue></Response>"#,
    );
    app.twiml(
        "/emea",
        r#"<Response><Enqueue action="/after">sales-emea</Enqueue></Response>"#,
    );
    app.twiml("/after", "<Response><Hangup/></Response>");
    let sales_number = api.voice_number(&app.url("/sales")).await;
    let emea_number = api.voice_number(&app.url("/emea")).await;
    let mut log = EventLog::open(&server, 0, "types=call.*,queue.*").await;

    let waiting = api.sim_call(CALLER, &sales_number).await;
    let join = log.until_event("queue.join", Some(&waiting)).await;
    let sid = join["data"]["queue_sid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Renamed and shrunk to one caller while one waits in it.
    let Some(updated) = api
        .twilio_python(
            "q = client.queues(os.environ['QUEUE']).update(friendly_name='sales-emea', max_size=1)\n\
             print(json.dumps([q.sid, q.friendly_name, q.max_size, q.current_size]))",
            &[("QUEUE", &sid)],
        )
        .await
    else {
        return;
    };
    assert_eq!(updated, json!([sid, "sales-emea", 1, 1]));
    // The new name reaches the same queue, now full; the old name is free and
    // makes a new queue.
    let refused = api.sim_call(CALLER, &emea_number).await;
    log.until_event("call.end", Some(&refused)).await;
    after_of(&app, &refused)
        .await
        .assert_param("QueueResult", "queue-full");
    let newcomer = api.sim_call(CALLER, &sales_number).await;
    let join = log.until_event("queue.join", Some(&newcomer)).await;
    assert_ne!(join["data"]["queue_sid"], json!(sid), "{join}");

    // Another account can neither change nor delete it.
    let reply = other
        .post(&format!("Queues/{sid}.json"), &[("MaxSize", "5")])
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    let reply = request(
        &server,
        reqwest::Method::DELETE,
        &other.path(&format!("Queues/{sid}.json")),
        server.creds(1),
        None,
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    let reply = api
        .post(&format!("Queues/{sid}.json"), &[("MaxSize", "0")])
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("MaxSize"), "{}", reply.text());

    // A queue someone waits in cannot be deleted; once empty it can.
    let delete = "from twilio.base.exceptions import TwilioRestException\n\
                  try:\n    print(json.dumps(client.queues(os.environ['QUEUE']).delete()))\n\
                  except TwilioRestException as e:\n    print(json.dumps([e.status, e.code]))";
    let Some(refused) = api.twilio_python(delete, &[("QUEUE", &sid)]).await else {
        return;
    };
    assert_eq!(refused, json!([400, 20001]));
    api.sim_hangup(&waiting).await;
    let leave = log.until_event("queue.leave", Some(&waiting)).await;
    assert_eq!(leave["data"]["result"], json!("hangup"), "{leave}");
    assert_eq!(leave["data"]["queue_sid"], json!(sid), "{leave}");
    let Some(deleted) = api.twilio_python(delete, &[("QUEUE", &sid)]).await else {
        return;
    };
    assert_eq!(deleted, json!(true));
    let reply = api.get(&format!("Queues/{sid}.json")).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    api.sim_hangup(&newcomer).await;
    log.until_event("call.end", Some(&newcomer)).await;
}
