//! A child process of a test (an example, `switchboard tail`) with its stdout and
//! stderr collected line by line, for bounded waits on what it printed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::WAIT;

/// A child process with its stdout and stderr collected line by line; killed on
/// drop.
pub struct Captured {
    child: std::process::Child,
    name: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Captured {
    /// Spawns `command` (named `name` in failure messages), stdin closed.
    pub fn spawn(name: &str, command: &mut Command) -> Captured {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {name}: {err}"));
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Captured {
            child,
            name: name.to_owned(),
            stdout,
            stderr,
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().clone()
    }

    pub fn output(&self) -> String {
        format!(
            "{} stdout:\n{}\n{} stderr:\n{}",
            self.name,
            self.stdout().join("\n"),
            self.name,
            self.stderr().join("\n")
        )
    }

    /// Waits (bounded by `WAIT`) until `done` returns something for the lines
    /// printed so far (stdout, stderr); fails if the process exits first.
    pub async fn until<T>(
        &mut self,
        what: &str,
        done: impl Fn(&[String], &[String]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = done(&self.stdout(), &self.stderr()) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers take the last lines before reporting them.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(found) = done(&self.stdout(), &self.stderr()) {
                    return found;
                }
                panic!("{what}: {} exited ({status})\n{}", self.name, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The port of the first `…http://127.0.0.1:PORT…` line the child printed.
    pub async fn port(&mut self) -> u16 {
        self.until("the address it listens on", |out, err| {
            out.iter().chain(err).find_map(|line| {
                let rest = line.split("http://127.0.0.1:").nth(1)?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
        })
        .await
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait_exit().await
    }

    /// Sends `signal` (`INT` is Ctrl-C).
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} {}", self.name);
    }

    /// Waits (bounded by `WAIT`) for the exit status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            match line {
                Ok(line) => sink.lock().push(line),
                Err(_) => break,
            }
        }
    });
    lines
}
