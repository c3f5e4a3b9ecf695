//! Twilio's official Python helper library against the call router (docs/api.md §7: "the
//! official helper libraries work when pointed at this server"): numbers, calls
//! (create, fetch, update, list), messages and Twilio-style errors, through
//! `twilio-python` with `client.api.base_url` set to the test server.

use std::process::Command;

use serde_json::Value;

use crate::common::{require_python_module, TestServer};

#[tokio::test]
async fn twilio_python_uses_the_rest_api_as_it_uses_twilio() {
    let Some(python) = require_python_module("twilio") else {
        return;
    };
    let server = TestServer::start(|c| c.sim.time_scale = 0.01);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/twilio_python.py"
    );
    let (base, sid, token) = (
        server.base_url(),
        server.sid(0).to_owned(),
        server.token(0).to_owned(),
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("SWITCHBOARD_BASE", base)
            .env("ACCOUNT_SID", sid)
            .env("AUTH_TOKEN", token)
            .env("PHONE_NUMBER", "+14155550142")
            .output()
            .expect("run python3")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "twilio-python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_str(stdout.trim()).expect("the script's JSON summary");
    assert!(results["call"]
        .as_str()
        .is_some_and(|s| s.starts_with("CA")));
    assert_eq!(results["error_code"], 21211);
}
