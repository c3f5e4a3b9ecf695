//! One keep-alive publishing connection and what it saw: answers by status, I/O
//! failures, and request latency; and the paced one-tick-per-request loop. Shared by
//! the publish, fanout, soak and storm scenarios.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::histogram::Histogram;
use super::http1::Conn;
use super::target::Server;

/// Consecutive failed connection attempts after which a publisher gives up.
const MAX_RECONNECTS: u32 = 5;

/// Outcomes of one connection's requests; merged across connections at the end.
#[derive(Debug, Default, Clone)]
pub struct PublishStats {
    /// Requests answered (any status).
    pub requests: u64,
    /// Events in requests answered with 2xx.
    pub events: u64,
    /// Non-2xx answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connect or socket failures).
    pub io_errors: u64,
    /// Request round-trip times, microseconds.
    pub latency: Histogram,
    /// How late each paced request was sent against its schedule, microseconds
    /// ([`Publisher::paced`] only): the tool's own delays and earlier slow answers.
    pub lag: Histogram,
}

impl PublishStats {
    /// Adds another connection's counts.
    pub fn merge(&mut self, other: &PublishStats) {
        self.requests += other.requests;
        self.events += other.events;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        self.io_errors += other.io_errors;
        self.latency.merge(&other.latency);
        self.lag.merge(&other.lag);
    }

    /// The `errors` object: status code (or `"io"`) → count.
    pub fn errors_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (status, n) in &self.statuses {
            map.insert(status.to_string(), json!(n));
        }
        if self.io_errors > 0 {
            map.insert("io".into(), json!(self.io_errors));
        }
        Value::Object(map)
    }

    /// Refused or failed requests in all.
    pub fn error_count(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.io_errors
    }
}

/// When paced ticks are due: the `n`-th at `start + n / rate`; none is due at or
/// after `deadline`, and none is sent after it (a publisher that fell behind does not
/// catch up in a burst once the phase it measures is over).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// When the first tick is due.
    pub start: Instant,
    /// Ticks per second (at least 1).
    pub rate: u64,
    /// No tick is sent from then on.
    pub deadline: Instant,
}

/// A publishing connection that reconnects after a failure.
pub struct Publisher<'a> {
    server: &'a Server,
    conn: Option<Conn>,
    head: Vec<u8>,
    body: Vec<u8>,
    request: Vec<u8>,
    failures: u32,
    /// What this connection saw.
    pub stats: PublishStats,
}

impl<'a> Publisher<'a> {
    /// A publisher for `server` (connects on first use).
    pub fn new(server: &'a Server) -> Publisher<'a> {
        Publisher {
            server,
            conn: None,
            head: server.publish_head(),
            body: Vec::with_capacity(1024),
            request: Vec::with_capacity(2048),
            failures: 0,
            stats: PublishStats::default(),
        }
    }

    /// Whether the connection failed too often in a row to go on.
    pub fn gave_up(&self) -> bool {
        self.failures >= MAX_RECONNECTS
    }

    /// Publishes the ticks `seqs` on call number `call`; returns whether the server
    /// accepted them (2xx). Failures are counted, never returned.
    pub async fn publish(&mut self, seqs: Range<u64>, call: u64, run: u64) -> bool {
        let events = seqs.end - seqs.start;
        if self.conn.is_none() {
            match Conn::connect(self.server.endpoint.addr, None, 16 * 1024).await {
                Ok(conn) => self.conn = Some(conn),
                Err(_) => {
                    self.fail().await;
                    return false;
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        self.server.tick_body(&mut self.body, seqs, call, run);
        self.request.clear();
        super::http1::finish_request(&mut self.request, &self.head, &self.body);
        let started = Instant::now();
        let answer = match conn.send(&self.request).await {
            Ok(()) => conn.read_response().await,
            Err(e) => Err(e.into()),
        };
        match answer {
            Ok(head) => {
                self.failures = 0;
                self.stats.requests += 1;
                self.stats
                    .latency
                    .record(started.elapsed().as_micros() as u64);
                if head.close {
                    self.conn = None;
                }
                if (200..300).contains(&head.status) {
                    self.stats.events += events;
                    true
                } else {
                    *self.stats.statuses.entry(head.status).or_default() += 1;
                    false
                }
            }
            Err(_) => {
                self.conn = None;
                self.fail().await;
                false
            }
        }
    }

    /// Publishes the ticks `seqs` one per request, each when `pace` says it is due
    /// (never before; late if the previous answer was slow, the lateness recorded in
    /// `stats.lag`), tick `seq` on call number `seq % calls`. After every request
    /// `each(seq, accepted)` says whether to go on. Stops at the end of `seqs`, at
    /// `pace.deadline` (ticks still due then are not sent), or when the connection
    /// gave up.
    pub async fn paced(
        &mut self,
        seqs: Range<u64>,
        pace: Pace,
        calls: u64,
        run: u64,
        mut each: impl FnMut(u64, bool) -> bool,
    ) {
        let rate = pace.rate.max(1) as f64;
        for seq in seqs.clone() {
            let due = pace.start + Duration::from_secs_f64((seq - seqs.start) as f64 / rate);
            if due >= pace.deadline || Instant::now() >= pace.deadline || self.gave_up() {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            self.stats.lag.record(due.elapsed().as_micros() as u64);
            let accepted = self.publish(seq..seq + 1, seq % calls.max(1), run).await;
            if !each(seq, accepted) {
                break;
            }
        }
    }

    async fn fail(&mut self) {
        self.stats.io_errors += 1;
        self.failures += 1;
        // A short pause so a server that is down is not hammered in a tight loop.
        tokio::time::sleep(Duration::from_millis(20 * u64::from(self.failures))).await;
    }
}
