//! The real `switchboard serve` binary as a child process (docs/api.md §8): with no
//! config file it prints a working development account; after SIGTERM every
//! accepted event still reaches the open stream, the stream ends with
//! `stream.shutdown`, and the process exits 0.
//!
//! `spawn_with` is also the child-process fixture of other modules
//! (`log_secrets` runs it with `RUST_LOG=debug` and reads its stderr).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{free_port, http_client, random_hex, SseError, SseStream, TestServer, WAIT};

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    addr: SocketAddr,
    account: (String, String),
    /// Where the child's stderr goes when `Options::capture_stderr` is set.
    stderr: Option<PathBuf>,
    /// The config file and environment, to start it again where it was.
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How `spawn_with` runs the binary beyond its defaults (listen on a free
/// loopback port, `workers = 1`, one `[[account]]`, stdio discarded).
#[derive(Default)]
pub(crate) struct Options<'a> {
    /// TOML tables appended to the config after the `[[account]]` table.
    pub(crate) config: &'a str,
    /// Top-level TOML keys, written before any table.
    pub(crate) root: &'a str,
    /// Environment variables set for the child (e.g. `RUST_LOG`).
    pub(crate) env: &'a [(&'a str, &'a str)],
    /// Write the child's stderr to a file, read back with `Server::stderr`.
    /// A file rather than a pipe: a verbose child never blocks on a full pipe.
    pub(crate) capture_stderr: bool,
}

pub(crate) fn spawn(sid: &str, token: &str) -> Server {
    spawn_with(sid, token, &Options::default())
}

pub(crate) fn spawn_with(sid: &str, token: &str, options: &Options<'_>) -> Server {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sb-drain-{}", random_hex(6)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nworkers = 1\n{}\n[[account]]\nsid = \"{sid}\"\nauth_token = \"{token}\"\n{}\n",
            options.root, options.config
        ),
    )
    .expect("write config");
    let stderr = options.capture_stderr.then(|| dir.join("stderr.log"));
    let env: Vec<(String, String)> = options
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let child = launch(&config, &env, stderr.as_deref());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Server {
        child,
        base: format!("http://{addr}"),
        addr,
        account: (sid.to_owned(), token.to_owned()),
        stderr,
        config,
        env,
    }
}

/// `switchboard serve --config CONFIG` with `env`, its stderr appended to `stderr`
/// (or dropped).
fn launch(
    config: &std::path::Path,
    env: &[(String, String)],
    stderr: Option<&std::path::Path>,
) -> Child {
    let stderr = match stderr {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open the stderr file"),
        ),
        None => Stdio::null(),
    };
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn switchboard serve")
}

impl Server {
    /// A `TestServer` handle on this child (its one account is account 0), so
    /// the shared helpers can drive it.
    pub(crate) fn handle(&self) -> TestServer {
        TestServer::attach(self.addr, vec![self.account.clone()])
    }

    /// Kills the child at once (SIGKILL) and reaps it: a crash, not a drain.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the binary again on the same address, config and environment (after
    /// [`Server::kill`] or an exit), as a restarted service would be; wait for it
    /// with [`wait_ready`].
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.child = launch(&self.config, &self.env, self.stderr.as_deref());
    }

    /// Sends SIGTERM (the drain of docs/api.md §8).
    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM: {status:?}");
    }

    /// Waits (bounded by `within`) until the child exits; its exit status.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the child wrote to stderr so far (complete once it exited).
    pub(crate) fn stderr(&self) -> String {
        let path = self
            .stderr
            .as_ref()
            .expect("stderr is captured only with Options::capture_stderr");
        let bytes = std::fs::read(path).expect("read the captured stderr");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) {
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

    server.sigterm();

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

    let exit = server.wait_exit(WAIT).await;
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

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = Server {
        child,
        base: format!("http://{addr}"),
        addr,
        account: (sid.to_owned(), token.to_owned()),
        stderr: None,
        // Started without a config; never restarted.
        config: PathBuf::new(),
        env: Vec::new(),
    };

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
