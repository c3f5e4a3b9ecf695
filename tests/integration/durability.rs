//! A durable single node (API.md §8 "Durability", issue 12, docs/durability.md):
//! with `data_dir`, what a node keeps survives `kill -9`. So far that is its
//! provisioned numbers: the real binary, killed outright after a number was
//! provisioned, starts again on the same directory and the number still routes
//! calls to its application, with the same sid; the store's size is exported.

use serde_json::Value;

use crate::common::channels::scrape;
use crate::common::twilio::{fresh_number, Api, AppServer};
use crate::common::{http_client, random_hex};
use crate::process::{self, Options};

#[tokio::test]
async fn a_provisioned_number_survives_kill_9_and_still_routes_calls() {
    let (sid, token) = (format!("AC{}", random_hex(16)), random_hex(16));
    let dir = std::env::temp_dir().join(format!("sb-data-{}", random_hex(8)));
    let dir_text = dir.to_string_lossy().into_owned();
    let env = [("SWITCHBOARD_DATA_DIR", dir_text.as_str())];
    // The app runs on 127.0.0.1, which a configured account may not reach unless
    // private networks are allowed.
    let options = Options {
        config: "[egress]\nallow_private_networks = true\n",
        env: &env,
        ..Default::default()
    };
    let app = AppServer::start(&token);
    app.twiml("/voice", "<Response><Hangup/></Response>");

    let mut first = process::spawn_with(&sid, &token, &options);
    process::wait_ready(&http_client(), &first.base).await;
    let handle = first.handle();
    let provisioned = Api::new(&handle, 0)
        .provision(&fresh_number(), &[("VoiceUrl", &app.url("/voice"))])
        .await;
    let number = provisioned["phone_number"]
        .as_str()
        .expect("a number")
        .to_string();
    first.kill();

    let second = process::spawn_with(&sid, &token, &options);
    process::wait_ready(&http_client(), &second.base).await;
    let handle = second.handle();
    let api = Api::new(&handle, 0);
    let listed = api.get("IncomingPhoneNumbers.json").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let numbers: Vec<Value> = listed.json()["incoming_phone_numbers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(numbers.len(), 1, "the number, once: {numbers:?}");
    assert_eq!(numbers[0]["sid"], provisioned["sid"], "the same sid");
    assert_eq!(numbers[0]["voice_url"], provisioned["voice_url"]);

    let call = api.sim_call("+14155550199", &number).await;
    let request = app.first_request("/voice").await;
    request.assert_param("CallSid", &call);
    request.assert_param("To", &number);
    let metrics = scrape(&handle).await;
    let bytes = metrics
        .series
        .get("switchboard_store_bytes")
        .copied()
        .unwrap_or(0.0);
    assert!(bytes > 0.0, "the store's size is exported: {bytes}");
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}
