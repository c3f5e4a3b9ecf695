//! One SSE subscription over its own connection: open it, wait until it is live, then
//! account every tick it receives (sequence, latency) until it has them all, the
//! server closes it, or the run says stop.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::histogram::Histogram;
use super::http1::{Chunked, Conn, Framing, HttpError};
use super::seqtrack::{Delivery, SeqTracker};
use super::sse::{Fields, SseReader};
use super::target::Server;
use super::Target;

/// Largest SSE frame accepted (the server's own bound on an event is 64 KiB).
const MAX_FRAME: usize = 1024 * 1024;

/// Why a subscription did not open.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// Connecting or reading failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered something else than 200.
    #[error("status {0}")]
    Status(u16),
    /// The server closed the stream before it was live.
    #[error("closed before the stream opened")]
    Closed,
    /// The first frame did not come in time.
    #[error("no stream.open in time")]
    Timeout,
    /// The stream's framing is broken.
    #[error("malformed stream")]
    Malformed,
}

impl SubscribeError {
    /// The key this failure is counted under: the status code, `timeout` or `io`.
    pub fn key(&self) -> String {
        match self {
            SubscribeError::Status(code) => code.to_string(),
            SubscribeError::Timeout => "timeout".into(),
            _ => "io".into(),
        }
    }
}

/// Opens a stream and waits until it is live, all within `within`.
pub async fn open_live(
    server: &Server,
    request: &[u8],
    source: Option<IpAddr>,
    buffer: usize,
    within: Duration,
) -> Result<Subscription, SubscribeError> {
    let open = async {
        let mut sub = Subscription::open(server, request, source, buffer).await?;
        sub.wait_live(server.target, within).await?;
        Ok(sub)
    };
    tokio::time::timeout(within, open)
        .await
        .unwrap_or(Err(SubscribeError::Timeout))
}

/// An open SSE stream.
pub struct Subscription {
    conn: Conn,
    raw: Vec<u8>,
    chunked: Option<Chunked>,
    reader: SseReader,
    fields: Fields,
}

impl Subscription {
    /// Connects (from `source`, when given), sends the stream request and reads the
    /// answer's head; `buffer` sizes the read buffers (small for idle connections).
    pub async fn open(
        server: &Server,
        request: &[u8],
        source: Option<IpAddr>,
        buffer: usize,
    ) -> Result<Subscription, SubscribeError> {
        let mut conn = Conn::connect(server.endpoint.addr, source, buffer)
            .await
            .map_err(HttpError::from)?;
        conn.send(request).await.map_err(HttpError::from)?;
        let head = conn.read_head().await?;
        if head.status != 200 {
            return Err(SubscribeError::Status(head.status));
        }
        let chunked = match head.body {
            Framing::Chunked => Some(Chunked::new()),
            Framing::UntilClose => None,
            Framing::Length(_) => return Err(SubscribeError::Malformed),
        };
        let mut sub = Subscription {
            conn,
            raw: vec![0; buffer.max(512)],
            chunked,
            reader: SseReader::new(buffer, MAX_FRAME),
            fields: Fields::default(),
        };
        let mut first = Vec::new();
        sub.conn.take_buffered(&mut first);
        sub.absorb(&first)?;
        Ok(sub)
    }

    /// Waits until the stream is live: Switchboard's first frame (`stream.open`) has
    /// arrived; for nchan the head arriving was the sign. Bounded by `within`.
    pub async fn wait_live(
        &mut self,
        target: Target,
        within: Duration,
    ) -> Result<(), SubscribeError> {
        if target == Target::Nchan {
            return Ok(());
        }
        match self.wait_frame(within, |_, _| true).await? {
            true => Ok(()),
            false => Err(SubscribeError::Timeout),
        }
    }

    /// Waits up to `within` for the next event that is not a stream notice (a
    /// `cursor=earliest` replay or a live one): `true` if one came, `false` if the
    /// wait ran out first.
    pub async fn wait_event(&mut self, within: Duration) -> Result<bool, SubscribeError> {
        self.wait_frame(within, |fields, data| {
            data.is_some_and(|data| !fields.is_notice(data))
        })
        .await
    }

    /// Reads frames until one satisfies `wanted` (given its data) — `true` — or
    /// `within` runs out — `false`; the stream ending first is
    /// [`SubscribeError::Closed`].
    async fn wait_frame(
        &mut self,
        within: Duration,
        wanted: impl Fn(&Fields, Option<&[u8]>) -> bool,
    ) -> Result<bool, SubscribeError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(frame) = self
                .reader
                .next_frame()
                .map_err(|_| SubscribeError::Malformed)?
            {
                if wanted(&self.fields, frame.data) {
                    return Ok(true);
                }
            }
            match tokio::time::timeout_at(deadline, self.read()).await {
                Err(_) => return Ok(false),
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return Err(SubscribeError::Closed),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Reads what arrives next into the frame reader; `false` when the stream ended.
    async fn read(&mut self) -> Result<bool, SubscribeError> {
        let n = self
            .conn
            .read_raw(&mut self.raw)
            .await
            .map_err(HttpError::from)?;
        if n == 0 {
            return Ok(false);
        }
        let raw = std::mem::take(&mut self.raw);
        let result = self.absorb(&raw[..n]);
        self.raw = raw;
        result?;
        Ok(!self.chunked.as_ref().is_some_and(Chunked::done))
    }

    fn absorb(&mut self, bytes: &[u8]) -> Result<(), SubscribeError> {
        match self.chunked.as_mut() {
            Some(decoder) => {
                decoder
                    .feed(bytes, self.reader.buffer())
                    .map_err(|_| SubscribeError::Malformed)?;
            }
            None => self.reader.buffer().extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Holds the connection, discarding what arrives (heartbeats), until `stop`;
    /// `true` if it was still open then.
    pub async fn hold(mut self, mut stop: watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow_and_update() {
                return true;
            }
            tokio::select! {
                _ = stop.changed() => return true,
                read = self.conn.read_raw(&mut self.raw) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return false;
                    }
                }
            }
        }
    }

    /// Calls `each` with the data of every event that is not a stream notice, until
    /// the stream ends or `stop`.
    pub async fn for_each_event(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut each: impl FnMut(&[u8]),
    ) {
        loop {
            loop {
                match self.reader.next_frame() {
                    Ok(Some(frame)) => match frame.data {
                        Some(data) if !self.fields.is_notice(data) => each(data),
                        _ => {}
                    },
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            if *stop.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = stop.changed() => return,
                read = self.read() => if !matches!(read, Ok(true)) {
                    return;
                },
            }
        }
    }

    /// Accounts ticks of run `run` until `expected` distinct ones arrived (when
    /// given), the stream ends, or `stop`.
    pub async fn consume(
        mut self,
        run: u64,
        expected: Option<u64>,
        shared: &Shared,
        mut stop: watch::Receiver<bool>,
    ) -> SubscriberStats {
        let mut stats = SubscriberStats {
            tracker: SeqTracker::new(shared.streams),
            latency: Histogram::new(),
            deliveries: 0,
            foreign: 0,
            last: None,
            ended: End::Stopped,
        };
        loop {
            let now = super::now_ns();
            let mut batch = 0;
            loop {
                let frame = match self.reader.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(_) => {
                        stats.ended = End::Failed;
                        return stats;
                    }
                };
                let Some(data) = frame.data else { continue };
                if self.fields.is_notice(data) {
                    continue;
                }
                let Some(tick) = self.fields.tick(data).filter(|t| t.run == run) else {
                    stats.foreign += 1;
                    continue;
                };
                batch += 1;
                let micros = now.saturating_sub(tick.sent_ns) / 1000;
                stats.latency.record(micros);
                let delivery = stats.tracker.record(tick.seq);
                if let Some(soak) = &shared.soak {
                    soak.hist.lock().record(micros);
                    if delivery == Delivery::New {
                        if let Some(count) = soak.received.get(tick.seq as usize) {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            if batch > 0 {
                stats.last = Some(Instant::now());
            }
            stats.deliveries += batch;
            shared.deliveries.fetch_add(batch, Ordering::Relaxed);
            if expected.is_some_and(|n| stats.tracker.distinct() >= n) {
                stats.ended = End::Complete;
                return stats;
            }
            if *stop.borrow_and_update() {
                return stats;
            }
            tokio::select! {
                _ = stop.changed() => return stats,
                read = self.read() => match read {
                    Ok(true) => {}
                    Ok(false) => {
                        stats.ended = End::Closed;
                        return stats;
                    }
                    Err(_) => {
                        stats.ended = End::Failed;
                        return stats;
                    }
                },
            }
        }
    }
}

/// Counters all subscribers of a run add to.
pub struct Shared {
    /// Ordering classes (the number of publishers).
    pub streams: usize,
    /// Deliveries so far (progress and per-interval rates).
    pub deliveries: AtomicU64,
    /// What soak needs on top.
    pub soak: Option<SoakShared>,
}

/// Soak's per-interval accounting.
pub struct SoakShared {
    /// Latencies of the current interval (swapped out at each row).
    pub hist: Mutex<Histogram>,
    /// For each sequence number, how many subscribers received it.
    pub received: Vec<AtomicU32>,
}

/// How a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It received every expected tick.
    Complete,
    /// The run stopped it.
    Stopped,
    /// The server closed it.
    Closed,
    /// Reading failed or the stream was malformed.
    Failed,
}

/// What one subscriber received.
pub struct SubscriberStats {
    /// Sequence accounting.
    pub tracker: SeqTracker,
    /// End-to-end latencies, microseconds.
    pub latency: Histogram,
    /// Ticks of this run received (duplicates included).
    pub deliveries: u64,
    /// Events that were not this run's ticks.
    pub foreign: u64,
    /// When the last tick arrived.
    pub last: Option<Instant>,
    /// How it ended.
    pub ended: End,
}
