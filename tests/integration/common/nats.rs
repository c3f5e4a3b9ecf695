//! A NATS server (`nats-server -js`) of a test's own, for the cluster tests: on a
//! free loopback port, with JetStream storing into a fresh temporary directory,
//! stopped and restarted on the same port and store so a test can take the backbone
//! away and give it back.
//!
//! `nats-server` is an outside tool like the others of `tools`: missing outside CI
//! the test is skipped (`start` answers `None`), missing under CI it fails.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{random_hex, require_tool, WAIT};

/// Where Debian's package puts the binary, in case `/usr/sbin` is not on `PATH`.
const FALLBACK_BIN: &str = "/usr/sbin/nats-server";

/// A running (or stopped) `nats-server -js` child. Dropping it kills the child
/// and removes its directory.
pub struct NatsServer {
    bin: PathBuf,
    /// The client port (`nats://127.0.0.1:<port>`).
    pub port: u16,
    /// The HTTP monitoring port (`/healthz`).
    pub monitor_port: u16,
    /// The temporary directory: `store/` (JetStream) and `nats.log`.
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Finds `nats-server`, starts it on a free port with JetStream on and waits
    /// (bounded by `WAIT`) until it is ready. `None` when the tool is missing
    /// outside CI (the test is skipped); under CI a missing tool panics.
    pub fn start() -> Option<NatsServer> {
        let bin = find_bin()?;
        let (port, monitor_port) = two_free_ports();
        let dir = std::env::temp_dir().join(format!("switchboard-nats-{}", random_hex(8)));
        std::fs::create_dir_all(dir.join("store"))
            .unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
        let mut nats = NatsServer {
            bin,
            port,
            monitor_port,
            dir,
            child: None,
        };
        nats.spawn_and_wait();
        Some(nats)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server the way an operator does (SIGTERM: it closes its clients and
    /// flushes its store), waiting (bounded) for it to exit; a server still there
    /// after `WAIT` is killed. Does nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + WAIT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server at once (SIGKILL) and reaps it: a crash, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and the same store (stopping it
    /// first if it runs) and waits (bounded) until it is ready.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// The server's log so far (stdout and stderr of every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// Spawns the child and waits until its client port greets with `INFO` and
    /// `/healthz` (JetStream included) answers 200, within `WAIT`.
    fn spawn_and_wait(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|err| panic!("open {}: {err}", self.log_path().display()));
        let log_err = log.try_clone().expect("clone the log file handle");
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", self.bin.display()));
        self.child = Some(child);

        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "nats-server exited before it was ready ({status}); log:\n{}",
                        self.log()
                    );
                }
            }
            let last = match self.ready_once() {
                Ok(()) => return,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                let log = self.log();
                self.kill();
                panic!(
                    "nats-server on {} not ready within {WAIT:?}: {last}; log:\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// One readiness check: the client port greets, and `/healthz` answers 200.
    fn ready_once(&self) -> Result<(), String> {
        let client = SocketAddr::from(([127, 0, 0, 1], self.port));
        let sock = TcpStream::connect_timeout(&client, Duration::from_millis(500))
            .map_err(|err| format!("client port: {err}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|err| err.to_string())?;
        let mut greeting = String::new();
        BufReader::new(sock)
            .read_line(&mut greeting)
            .map_err(|err| format!("client port greeting: {err}"))?;
        if !greeting.starts_with("INFO ") {
            return Err(format!("client port greeted with {greeting:?}"));
        }
        let status =
            http_status(self.monitor_port, "/healthz").map_err(|err| format!("/healthz: {err}"))?;
        if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(format!("/healthz answered {status:?}"))
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `nats-server` on `PATH`, else the Debian location, else the decision of
/// `require_tool` (skip outside CI, fail under CI).
fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("nats-server").is_file())
    });
    if !on_path && Path::new(FALLBACK_BIN).is_file() {
        return Some(PathBuf::from(FALLBACK_BIN));
    }
    require_tool("nats-server")
}

/// Two distinct loopback ports that were free a moment ago (both bound at once,
/// then released for the child to take).
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let ports = (
        a.local_addr().expect("local_addr").port(),
        b.local_addr().expect("local_addr").port(),
    );
    drop((a, b));
    ports
}

/// The status line of `GET path` on `127.0.0.1:port`.
fn http_status(port: u16, path: &str) -> std::io::Result<String> {
    super::status_line(SocketAddr::from(([127, 0, 0, 1], port)), path)
}
