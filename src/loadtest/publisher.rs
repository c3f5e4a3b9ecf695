//! One keep-alive publishing connection and what it saw: answers by status, I/O
//! failures, and request latency. Shared by the publish, fanout and soak scenarios.

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

    async fn fail(&mut self) {
        self.stats.io_errors += 1;
        self.failures += 1;
        // A short pause so a server that is down is not hammered in a tight loop.
        tokio::time::sleep(Duration::from_millis(20 * u64::from(self.failures))).await;
    }
}
