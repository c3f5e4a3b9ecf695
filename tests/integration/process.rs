//! The real `switchboard serve` binary as a child process (API.md §8): with no
//! config file it prints a working development account; after SIGTERM every
//! accepted event still reaches the open stream, the stream ends with
//! `stream.shutdown`, and the process exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{free_port, http_client, random_hex, SseError, SseStream, WAIT};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(sid: &str, token: &str) -> Server {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sb-drain-{}", random_hex(6)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nworkers = 1\n[[account]]\nsid = \"{sid}\"\nauth_token = \"{token}\"\n"
        ),
    )
    .expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn switchboard serve");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(resp) = client.get(format!("{base}/readyz")).send().await {
            if resp.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_flushes_accepted_events_closes_streams_and_exits_zero() {
    let sid = format!("AC{}", random_hex(16));
    let token = random_hex(16);
    let mut server = spawn(&sid, &token);
    let client = http_client();
    wait_ready(&client, &server.base).await;

    let stream_client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = stream_client
        .get(format!(
            "{}/v1/Accounts/{sid}/Stream?client=drainer",
            server.base
        ))
        .basic_auth(&sid, Some(&token))
        .send()
        .await
        .expect("open stream");
    assert_eq!(resp.status(), 200);
    let mut stream = SseStream::new(resp);
    stream.expect_open().await;

    let events: Vec<Value> = (0..50)
        .map(|n| json!({"type": "call.progress", "call_sid": format!("CA{}", n % 7), "data": {"n": n}}))
        .collect();
    let reply = client
        .post(format!("{}/v1/Accounts/{sid}/Events", server.base))
        .basic_auth(&sid, Some(&token))
        .json(&events)
        .send()
        .await
        .expect("publish");
    assert_eq!(reply.status(), 202);
    let accepted: Value = reply.json().await.expect("202 body");
    let mut ids: Vec<String> = accepted["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect();

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());

    let got = stream
        .collect_until(|ev| ev.ty() == "stream.shutdown", WAIT)
        .await
        .expect("stream.shutdown after the accepted events");
    let mut delivered: Vec<String> = got
        .iter()
        .filter(|ev| ev.ty() == "call.progress")
        .map(|ev| ev.data["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(got.last().map(|ev| ev.ty()), Some("stream.shutdown"));
    ids.sort();
    delivered.sort();
    assert_eq!(
        delivered, ids,
        "every accepted event is delivered before shutdown"
    );
    assert!(matches!(
        stream.next_event(WAIT).await,
        Err(SseError::Eof) | Err(SseError::Transport(_))
    ));

    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = server.child.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn serve_without_a_config_file_prints_a_working_development_account() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn switchboard serve");
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<String> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|l| l.expect("stdout line"))
            .collect()
    })
    .await
    .expect("read stdout");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let sid = lines[0]
        .strip_prefix("account_sid: ")
        .expect("first line: account_sid");
    let token = lines[1]
        .strip_prefix("auth_token: ")
        .expect("second line: auth_token");
    assert!(sid.len() == 34 && sid.starts_with("AC"), "{sid}");
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );

    let client = http_client();
    wait_ready(&client, &server.base).await;
    let reply = client
        .post(format!("{}/v1/Accounts/{sid}/Events", server.base))
        .basic_auth(sid, Some(token))
        .json(&json!({"type": "call.start"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(reply.status(), 202, "the printed credentials publish");
}
