//! `loadtest calls`: N simulated inbound calls, C at a time, to a number whose voice
//! application is the tool's own IVR ([`super::ivr`]). Each caller presses the digits
//! and the call hangs up after thanking them. Set-up latency is from sending
//! `POST /v1/Sim/Calls` to the router's first request for the call's document (the
//! call was answered and its application is running); the account's `call.*` and
//! `gather.*` events are counted on one stream.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use memchr::memmem;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::histogram::{round3, Histogram};
use super::http1::Conn;
use super::ivr::{Board, Ivr};
use super::report::Progress;
use super::sse::string_after;
use super::subscriber::{open_live, Subscription};
use super::target::Server;
use super::{at_least, per_sec, CallsArgs, Ctx, LoadError, Target};

/// How long a call may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// How long a call may take from the key presses to its `call.end`.
const END_WITHIN: Duration = Duration::from_secs(60);

/// The options as reported.
pub fn params(a: &CallsArgs) -> Value {
    json!({"calls": a.calls, "concurrency": a.concurrency, "digits": a.digits})
}

/// What the callers saw, merged.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Calls the simulator accepted.
    pub started: u64,
    /// Calls that gathered the digits and ended `completed`.
    pub completed: u64,
    /// Calls refused or that did not complete, by reason.
    pub failures: BTreeMap<String, u64>,
    /// Create → answered, microseconds.
    pub setup: Histogram,
}

impl CallStats {
    fn fail(&mut self, reason: impl Into<String>) {
        *self.failures.entry(reason.into()).or_default() += 1;
    }

    /// Calls that did not complete.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Adds another caller's counts.
    pub fn merge(&mut self, other: &CallStats) {
        self.started += other.started;
        self.completed += other.completed;
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.setup.merge(&other.setup);
    }
}

/// Everything a caller needs: the IVR, the number, the event stream's accounting.
pub struct CallRig {
    board: Arc<Board>,
    _ivr: Ivr,
    number: String,
    digits: String,
    /// Call events seen on the stream (notices excluded).
    pub events: AtomicU64,
    /// `call.end` statuses seen, by status.
    pub ends: Mutex<BTreeMap<String, u64>>,
}

impl CallRig {
    /// Starts the IVR and gives a fresh number its voice URL.
    pub async fn start(server: &Server, digits: &str) -> Result<CallRig, LoadError> {
        if server.target != Target::Switchboard {
            return Err(LoadError::Options(
                "calls need the switchboard target (nchan has no call router)".into(),
            ));
        }
        let valid = !digits.is_empty()
            && digits.len() <= 32
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'*');
        if !valid {
            return Err(LoadError::Options(
                "--digits: 1 to 32 of 0-9 and * (# ends a Gather early)".into(),
            ));
        }
        let board = Arc::new(Board::default());
        let ivr = Ivr::start(board.clone(), digits.len())
            .await
            .map_err(|e| LoadError::Setup(format!("cannot start the IVR on 127.0.0.1: {e}")))?;
        let mut conn = Conn::connect(server.endpoint.addr, None, 16 * 1024)
            .await
            .map_err(|e| LoadError::Setup(format!("cannot connect to the server: {e}")))?;
        let path = format!(
            "/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json",
            server.account
        );
        // A random number, retried if another run already took it.
        for _ in 0..5 {
            let number = format!("+1555{:07}", rand::random::<u32>() % 10_000_000);
            let body: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("PhoneNumber", &number)
                .append_pair("VoiceUrl", &ivr.voice_url())
                .append_pair("FriendlyName", "switchboard loadtest")
                .finish();
            let request = server.post(&path, "application/x-www-form-urlencoded", body.as_bytes());
            conn.send(&request)
                .await
                .map_err(|e| LoadError::Setup(format!("provisioning a number: {e}")))?;
            let head = conn
                .read_response()
                .await
                .map_err(|e| LoadError::Setup(format!("provisioning a number: {e}")))?;
            match head.status {
                201 => {
                    return Ok(CallRig {
                        board,
                        _ivr: ivr,
                        number,
                        digits: digits.to_owned(),
                        events: AtomicU64::new(0),
                        ends: Mutex::new(BTreeMap::new()),
                    })
                }
                400 | 409 if String::from_utf8_lossy(conn.body()).contains("21452") => continue,
                status => {
                    return Err(LoadError::Setup(format!(
                        "provisioning a number: {status} {}",
                        String::from_utf8_lossy(conn.body())
                    )))
                }
            }
        }
        Err(LoadError::Setup(
            "no free phone number after 5 tries".into(),
        ))
    }

    /// Opens the account's call event stream (live before any call starts).
    pub async fn open_events(&self, server: &Server) -> Result<Subscription, LoadError> {
        let request = server.stream_request("call.*,gather.*");
        open_live(server, &request, None, 64 * 1024, Duration::from_secs(10))
            .await
            .map_err(|e| LoadError::Setup(format!("opening the call event stream: {e}")))
    }

    /// Reads the event stream until `stop`: counts events and marks ended calls.
    pub async fn read_events(&self, events: Subscription, stop: watch::Receiver<bool>) {
        let sid_key = memmem::Finder::new(b"\"call_sid\":\"");
        let type_key = memmem::Finder::new(b"\"type\":\"");
        let status_key = memmem::Finder::new(b"\"status\":\"");
        events
            .for_each_event(stop, |data| {
                self.events.fetch_add(1, Ordering::Relaxed);
                if string_after(data, &type_key) != Some(&b"call.end"[..]) {
                    return;
                }
                let status = string_after(data, &status_key)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .unwrap_or_default();
                *self.ends.lock().entry(status.clone()).or_default() += 1;
                if let Some(sid) = string_after(data, &sid_key) {
                    let sid = String::from_utf8_lossy(sid);
                    self.board.update(&sid, |s| s.ended = Some(status));
                }
            })
            .await;
    }

    /// Makes one call on `conn` (reconnecting if needed) and accounts it in `stats`.
    pub async fn call(
        &self,
        server: &Server,
        conn: &mut Option<Conn>,
        caller: u64,
        stats: &mut CallStats,
    ) {
        let start = Instant::now();
        let body = format!(
            r#"{{"from":"+1666{:07}","to":"{}"}}"#,
            caller % 10_000_000,
            self.number
        );
        let (status, answer) = match post(server, conn, "/v1/Sim/Calls", &body).await {
            Ok(reply) => reply,
            Err(reason) => return stats.fail(reason),
        };
        if status != 201 {
            return stats.fail(status.to_string());
        }
        let Some(sid) = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["call_sid"].as_str().map(str::to_owned))
        else {
            return stats.fail("bad_answer");
        };
        stats.started += 1;
        let outcome = self.follow(server, conn, &sid, start, stats).await;
        self.board.forget(&sid);
        match outcome {
            Ok(()) => stats.completed += 1,
            Err(reason) => stats.fail(reason),
        }
    }

    async fn follow(
        &self,
        server: &Server,
        conn: &mut Option<Conn>,
        sid: &str,
        start: Instant,
        stats: &mut CallStats,
    ) -> Result<(), String> {
        if !self
            .board
            .wait(sid, ANSWER_WITHIN, |s| {
                s.answered.is_some() || s.ended.is_some()
            })
            .await
        {
            return Err("not_answered".into());
        }
        let (answered, _) = self.board.read(sid, |s| s.answered);
        let Some(answered) = answered else {
            return Err("ended_unanswered".into());
        };
        stats
            .setup
            .record(answered.saturating_duration_since(start).as_micros() as u64);
        let path = format!("/v1/Sim/Calls/{sid}/Digits");
        let body = format!(r#"{{"digits":"{}"}}"#, self.digits);
        match post(server, conn, &path, &body).await? {
            (202, _) => {}
            (status, _) => return Err(format!("digits_{status}")),
        }
        if !self
            .board
            .wait(sid, END_WITHIN, |s| s.ended.is_some())
            .await
        {
            return Err("no_call_end".into());
        }
        let ((gathered, ended), _) = self
            .board
            .read(sid, |s| (s.gathered.clone(), s.ended.clone()));
        if gathered.as_deref() != Some(self.digits.as_str()) {
            return Err("digits_not_gathered".into());
        }
        match ended.as_deref() {
            Some("completed") => Ok(()),
            other => Err(format!("ended_{}", other.unwrap_or("unknown"))),
        }
    }
}

/// A Basic-auth JSON `POST` on a keep-alive connection: the status and body, or
/// `"io"` when no answer came.
async fn post(
    server: &Server,
    conn: &mut Option<Conn>,
    path: &str,
    body: &str,
) -> Result<(u16, Vec<u8>), String> {
    if conn.is_none() {
        *conn = Some(
            Conn::connect(server.endpoint.addr, None, 16 * 1024)
                .await
                .map_err(|_| "io".to_owned())?,
        );
    }
    let Some(c) = conn.as_mut() else {
        return Err("io".into());
    };
    let request = server.post(path, "application/json", body.as_bytes());
    let answer = match c.send(&request).await {
        Ok(()) => c.read_response().await,
        Err(e) => Err(e.into()),
    };
    match answer {
        Ok(head) => {
            let reply = (head.status, c.body().to_vec());
            if head.close {
                *conn = None;
            }
            Ok(reply)
        }
        Err(_) => {
            *conn = None;
            Err("io".into())
        }
    }
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, a: &CallsArgs) -> Result<Value, LoadError> {
    at_least("calls", a.calls, 1)?;
    at_least("concurrency", a.concurrency as u64, 1)?;
    let rig = CallRig::start(&ctx.server, &a.digits).await?;
    let events = rig.open_events(&ctx.server).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let before = ctx.sample()?;
    let start = Instant::now();
    let deadline = start + ctx.duration;
    let next = Cell::new(0u64);
    let done = Cell::new(0u64);
    let rss_peak = Cell::new(before.map(|s| s.rss_bytes));

    let callers = (0..a.concurrency.min(a.calls as usize)).map(|_| {
        let (rig, next, done) = (&rig, &next, &done);
        async move {
            let mut stats = CallStats::default();
            let mut conn = None;
            loop {
                let n = next.get();
                if n >= a.calls || Instant::now() >= deadline {
                    break;
                }
                next.set(n + 1);
                rig.call(&ctx.server, &mut conn, n, &mut stats).await;
                done.set(done.get() + 1);
            }
            stats
        }
    });
    let work = async {
        let per_caller = join_all(callers).await;
        let _ = stop_tx.send(true);
        per_caller
    };
    let watch_progress = async {
        let mut progress = Progress::new("calls");
        while !*stop_rx.borrow() {
            progress.tick(|| {
                format!(
                    "{} calls done  {} events",
                    done.get(),
                    rig.events.load(Ordering::Relaxed)
                )
            });
            if let Some(pid) = ctx.server_pid {
                if let Ok(s) = super::procstat::sample(pid) {
                    rss_peak.set(rss_peak.get().max(Some(s.rss_bytes)));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        progress.finish();
    };
    let (per_caller, (), ()) = tokio::join!(
        work,
        rig.read_events(events, stop_rx.clone()),
        watch_progress
    );
    let seconds = start.elapsed().as_secs_f64();
    let after = ctx.sample()?;
    let mut stats = CallStats::default();
    for s in &per_caller {
        stats.merge(s);
    }
    let events = rig.events.load(Ordering::Relaxed);
    let calls_made = stats.started.max(1);
    Ok(json!({
        "calls": done.get(),
        "completed": stats.completed,
        "failed": stats.failed(),
        "failures": stats.failures,
        "seconds": round3(seconds),
        "calls_per_sec": per_sec(stats.completed, seconds),
        "setup_ms": stats.setup.summary_ms(&["p50", "p99", "max"]),
        "events": events,
        "events_per_sec": per_sec(events, seconds),
        "call_end_statuses": rig.ends.lock().clone(),
        "rss_before_bytes": before.map(|s| s.rss_bytes),
        "rss_peak_bytes": rss_peak.get(),
        "rss_after_bytes": after.map(|s| s.rss_bytes),
        "rss_per_call_bytes": match (before, after) {
            (Some(b), Some(a)) => Some(((a.rss_bytes as f64 - b.rss_bytes as f64) / calls_made as f64).round()),
            _ => None,
        },
    }))
}
