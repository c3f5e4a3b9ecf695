//! Ended calls and messages the REST API keeps (docs/api.md §7
//! `call_router.keep_ended`, issue #8 point 13): each account keeps its own
//! newest records, so one tenant ending many calls or sending many messages
//! cannot push out another tenant's.

use serde_json::json;

use crate::common::twilio::{created, fresh_number, Api};
use crate::common::TestServer;

/// An external number no account owns: the simulated far end answers it.
const EXTERNAL: &str = "+16505550199";

/// Places an outbound call that hangs up at once and waits until it ended.
async fn ended_call(api: &Api<'_>, from: &str) -> String {
    let reply = api
        .post(
            "Calls.json",
            &[
                ("To", EXTERNAL),
                ("From", from),
                ("Twiml", "<Response><Hangup/></Response>"),
            ],
        )
        .await;
    let sid = created(&reply, "POST Calls.json")["sid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.final_call(&sid).await;
    sid
}

/// Sends an SMS to the external number; returns its sid.
async fn sent_message(api: &Api<'_>, from: &str, body: &str) -> String {
    let reply = api
        .post(
            "Messages.json",
            &[("To", EXTERNAL), ("From", from), ("Body", body)],
        )
        .await;
    created(&reply, "POST Messages.json")["sid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The status of `GET {rel}` for `api`'s account.
async fn status(api: &Api<'_>, rel: &str) -> u16 {
    api.get(rel).await.status
}

#[tokio::test]
async fn one_account_ending_many_calls_keeps_another_accounts_records() {
    const KEEP: usize = 2;
    let server = TestServer::start(|config| {
        config.sim.time_scale = 0.01;
        config.sim.ring_secs = 1.0;
        config.call_router.keep_ended = KEEP;
    });
    let (tenant_a, tenant_b) = (Api::new(&server, 0), Api::new(&server, 1));
    let from_a = fresh_number();
    let from_b = (0..100)
        .map(|_| fresh_number())
        .find(|n| *n != from_a)
        .expect("a second number");
    tenant_a.provision(&from_a, &[]).await;
    tenant_b.provision(&from_b, &[]).await;

    // B's records come first, so a shared pool would push them out first.
    let b_call = ended_call(&tenant_b, &from_b).await;
    let b_message = sent_message(&tenant_b, &from_b, "from B").await;

    let mut a_calls = Vec::new();
    let mut a_messages = Vec::new();
    for n in 0..KEEP + 2 {
        a_calls.push(ended_call(&tenant_a, &from_a).await);
        a_messages.push(sent_message(&tenant_a, &from_a, &format!("from A {n}")).await);
    }

    let call = tenant_b.call(&b_call).await;
    assert_eq!(call["sid"], json!(b_call), "{call}");
    let message = tenant_b.get(&format!("Messages/{b_message}.json")).await;
    assert_eq!(message.status, 200, "B's message: {}", message.text());
    assert_eq!(message.json()["body"], json!("from B"));

    // A keeps its own newest KEEP and forgets its older ones.
    for (n, (call, message)) in a_calls.iter().zip(&a_messages).enumerate() {
        let want = if n < 2 { 404 } else { 200 };
        assert_eq!(
            status(&tenant_a, &format!("Calls/{call}.json")).await,
            want,
            "A's call {n}"
        );
        assert_eq!(
            status(&tenant_a, &format!("Messages/{message}.json")).await,
            want,
            "A's message {n}"
        );
    }
}
