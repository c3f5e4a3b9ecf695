//! Headless Chromium driven over WebDriver: Debian's `chromedriver`, through the
//! fantoccini client, as a person would use a page (the console, the browser
//! example).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::{free_port, http_client, random_hex};

/// Upper bound for any single wait on the browser: generous, because Chromium's
/// first start on a loaded 2-core machine has taken over 20 s.
pub const BROWSER_WAIT: Duration = Duration::from_secs(60);

/// chromedriver on a free loopback port with a headless Chromium session of a
/// fresh profile. chromedriver runs in a process group of its own, with the
/// Chromium it starts, so dropping this ends them all even when a test fails
/// before [`Browser::close`]; the profile is removed too.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a session; panics (bounded by [`BROWSER_WAIT`]) if
    /// either does not come up.
    pub async fn launch(chromedriver: &Path, chromium: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", chromedriver.display()));
        let profile = std::env::temp_dir().join(format!("sb-webdriver-{}", random_hex(8)));
        std::fs::create_dir_all(&profile).expect("chromium profile dir");
        let mut browser = Browser {
            client: None,
            driver,
            profile,
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        browser.wait_ready(&webdriver).await;

        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1400,900",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", browser.profile.display()),
                ],
            }),
        );
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let client = match tokio::time::timeout(BROWSER_WAIT, builder.connect(&webdriver)).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => panic!("start a Chromium session: {err}"),
            Err(_) => panic!("no Chromium session within {BROWSER_WAIT:?}"),
        };
        browser.client = Some(client);
        browser
    }

    /// Waits (bounded) until chromedriver answers `GET /status` with `ready`.
    async fn wait_ready(&mut self, webdriver: &str) {
        let http = http_client();
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            if let Ok(response) = http.get(format!("{webdriver}/status")).send().await {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    return;
                }
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                panic!("chromedriver exited at start: {exit}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not get ready within {BROWSER_WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The WebDriver session.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Ends the session: chromedriver closes Chromium itself.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
    }

    /// Sends `signal` to chromedriver's process group; whether any process of it
    /// was there to receive it.
    fn signal_group(&self, signal: &str) -> bool {
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{}", self.driver.id()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM first: Chromium then ends its helper processes itself (after a
        // SIGKILL they linger a moment, writing to the profile).
        self.signal_group("TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // Reaps chromedriver, so that only live processes answer signal 0.
            let _ = self.driver.try_wait();
            if !self.signal_group("0") || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group("KILL");
        let _ = self.driver.wait();
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::fs::remove_dir_all(&self.profile).is_err()
            && self.profile.exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
