//! SMS in (the app's reply) and out (REST).

use serde_json::{json, Value};

use crate::common::twilio::{
    assert_sid, assert_twilio_error, created, fresh_number, sim_server, Api, AppServer, EventLog,
};
use crate::common::WAIT;

use super::{CALLER, EXTERNAL};

#[tokio::test]
async fn sms_in_gets_the_apps_reply_and_rest_sends_sms() {
    let server = sim_server();
    let app = AppServer::start(server.token(0));
    let api = Api::new(&server, 0);
    app.twiml("/sms", "<Response><Message>Got it</Message></Response>");
    let number = fresh_number();
    api.provision(&number, &[("SmsUrl", &app.url("/sms"))])
        .await;
    let mut log = EventLog::open(&server, 0, "types=message.*").await;

    let message = api.sim_message(CALLER, &number, "Hello router").await;
    let received = log.until_event("message.received", None).await;
    assert_eq!(received["data"]["from"], json!(CALLER), "{received}");
    assert_eq!(received["data"]["to"], json!(number), "{received}");
    assert_eq!(
        received["data"]["body"],
        json!("Hello router"),
        "{received}"
    );
    let reply = log.until_event("message.sent", None).await;
    assert_eq!(reply["data"]["body"], json!("Got it"), "{reply}");
    assert_eq!(reply["data"]["to"], json!(CALLER), "{reply}");
    assert_eq!(reply["data"]["from"], json!(number), "{reply}");
    let order: Vec<&str> = log
        .events
        .iter()
        .map(|ev| ev["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        order,
        ["message.received", "message.sent"],
        "{}",
        log.dump()
    );

    let req = app.first_request("/sms").await;
    assert_eq!(req.method, "POST", "{}", req.summary());
    req.assert_signed();
    req.assert_param("Body", "Hello router");
    req.assert_param("From", CALLER);
    req.assert_param("To", &number);
    req.assert_param("MessageSid", &message);
    req.assert_param("SmsSid", &message);
    req.assert_param("NumMedia", "0");
    req.assert_param("AccountSid", server.sid(0));

    // Out through REST.
    let reply = api
        .post(
            "Messages.json",
            &[
                ("To", EXTERNAL),
                ("From", &number),
                ("Body", "Outbound hello"),
            ],
        )
        .await;
    let sent = created(&reply, "POST Messages.json");
    assert_sid(&sent["sid"], "SM");
    assert_eq!(sent["body"], json!("Outbound hello"), "{sent}");
    assert_eq!(sent["to"], json!(EXTERNAL), "{sent}");
    assert_eq!(sent["from"], json!(number), "{sent}");
    assert_eq!(sent["direction"], json!("outbound-api"), "{sent}");
    log.until("message.sent of the REST message", WAIT, |evs| {
        evs.iter()
            .any(|ev| ev["type"] == "message.sent" && ev["data"]["body"] == json!("Outbound hello"))
    })
    .await;
    let event = log
        .of_type("message.sent")
        .into_iter()
        .find(|ev| ev["data"]["body"] == json!("Outbound hello"))
        .unwrap_or(Value::Null);
    assert_eq!(event["data"]["to"], json!(EXTERNAL), "{event}");
    assert_eq!(event["data"]["from"], json!(number), "{event}");
    let sid = sent["sid"].as_str().unwrap_or("");
    let got = api.get(&format!("Messages/{sid}.json")).await;
    assert_eq!(got.status, 200, "GET Messages/{sid}.json: {}", got.text());
    assert_eq!(got.json()["body"], json!("Outbound hello"));

    let reply = api
        .post("Messages.json", &[("To", EXTERNAL), ("From", &number)])
        .await;
    assert_twilio_error(&reply, 400, 21602);
}
