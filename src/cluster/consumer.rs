//! The node's reader of the stream: one ordered consumer from the node's start,
//! routing each message's events into this node's shards in stream order, each
//! event with its position and each message with a ticket of the landed watermark
//! ([`super::order`]).
//!
//! After a reconnect the consumer is made again at once from the stream sequence
//! after the last one delivered (a restarted NATS server has forgotten it, and
//! async-nats would only notice by missed heartbeats, about 10 s later), so an
//! outage of NATS loses nothing and repeats nothing here. When the stream cannot be
//! reached (NATS down at start, or the stream's creation failed), the loop waits and
//! tries again. It stops when the server does, inside the runtime: a NATS
//! subscription dropped outside one panics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::order::{self, Ticket};
use super::{subject_account, wire, Backbone};
use crate::event::{Event, SharedEvent};
use crate::publisher::{PublishError, Publisher};

/// Pause before trying the stream again after it failed.
const RETRY: Duration = Duration::from_secs(1);

/// Pause before offering events again to a shard whose queue is full: the consumer
/// stops reading meanwhile, which is the back-pressure JetStream's flow control
/// passes on.
const SHARD_FULL_PAUSE: Duration = Duration::from_millis(2);

/// What the backbone needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The stream's `max_age` (the retention window, `retention.max_age_secs`).
    pub max_age: Duration,
    /// Largest event another node may send (`publish.max_event_bytes`).
    pub max_event_bytes: usize,
    /// How long a shared client entry outlives its last change
    /// (`auth.max_url_lifetime_secs`).
    pub clients_max_age: Duration,
}

/// Reads the stream until the server stops (`shutdown` turns true).
pub async fn run(backbone: Backbone, publisher: Publisher, mut shutdown: watch::Receiver<bool>) {
    // The stream sequence to read from; none yet: from the messages stored after
    // the node started, as its clients subscribe from then on.
    let mut resume = None;
    let mut connections = backbone.inner.connections.subscribe();
    loop {
        let outcome = tokio::select! {
            outcome = read(&backbone, &publisher, resume, &mut connections) => outcome,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        backbone.inner.reading.store(false, Ordering::Relaxed);
        let (next, pause) = match outcome {
            Ok(Stop::Stopped) => return,
            Ok(Stop::Reconnected(next)) => (next, Duration::ZERO),
            Ok(Stop::Ended(next)) | Err(Failed(next)) => (next, RETRY),
        };
        resume = next.or(resume);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// How a read of the stream ended.
enum Stop {
    /// The shards are gone: the server is stopping.
    Stopped,
    /// The message stream ended; carry on from this sequence.
    Ended(Option<u64>),
    /// NATS was connected again; carry on from this sequence at once.
    Reconnected(Option<u64>),
}

/// A read failed; carry on from this sequence.
struct Failed(Option<u64>);

async fn read(
    backbone: &Backbone,
    publisher: &Publisher,
    resume: Option<u64>,
    connections: &mut watch::Receiver<u64>,
) -> Result<Stop, Failed> {
    let inner = &backbone.inner;
    let mut next = resume;
    let stream = inner
        .jetstream
        .get_or_create_stream(stream::Config {
            name: inner.stream.clone(),
            subjects: vec![format!("{}.>", inner.stream)],
            max_age: inner.settings.max_age,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|error| {
            tracing::warn!(%error, stream = %inner.stream, "cannot reach the cluster's stream");
            Failed(next)
        })?;
    let info = stream.cached_info();
    let last_stored = match next {
        Some(next) => next.saturating_sub(1),
        None => info.state.last_sequence,
    };
    next = Some(last_stored.saturating_add(1));
    inner.landed.start_after(
        last_stored,
        stream_identity(&inner.stream, info.created.unix_timestamp_nanos()),
    );
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("{}.>", inner.stream),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: last_stored.saturating_add(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot create the node's consumer");
            Failed(next)
        })?;
    let mut messages = consumer.messages().await.map_err(|error| {
        tracing::warn!(%error, "cannot read the node's consumer");
        Failed(next)
    })?;
    tracing::info!(stream = %inner.stream, "reading the cluster's stream");
    // Connections made before this consumer need nothing more of it.
    connections.mark_unchanged();
    inner.reading.store(true, Ordering::Relaxed);
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = connections.changed() => return Ok(Stop::Reconnected(next)),
        };
        let Some(message) = message else { break };
        let message = message.map_err(|error| {
            tracing::warn!(%error, "the node's consumer failed");
            Failed(next)
        })?;
        let Ok(info) = message.info() else {
            rejected(backbone, &message, "info");
            continue;
        };
        if info.delivered > 1 || next.is_some_and(|next| info.stream_sequence < next) {
            // Routed already: a client must not get it twice.
            inner.metrics.backbone_redelivered.inc();
            continue;
        }
        next = Some(info.stream_sequence.saturating_add(1));
        inner.metrics.backbone_lag.set(clamp(info.pending));
        inner.metrics.backbone_consumed.inc();
        let ticket = Arc::new(inner.landed.read(info.stream_sequence));
        if let Some((account, events)) = take(backbone, &message, info.stream_sequence) {
            if deliver(publisher, account, events, ticket).await.is_err() {
                return Ok(Stop::Stopped);
            }
        }
    }
    Ok(Stop::Ended(next))
}

fn clamp(pending: u64) -> i64 {
    i64::try_from(pending).unwrap_or(i64::MAX)
}

/// The stream's identity in cursors: its name and creation time, so a cursor of a
/// stream deleted and made again is not read as a position in the new one.
fn stream_identity(name: &str, created_nanos: i128) -> u64 {
    crate::hash::fnv1a_64_from(
        crate::hash::fnv1a_64(name.as_bytes()),
        &created_nanos.to_le_bytes(),
    )
}

/// Counts and logs (without the payload) a message this node did not take.
fn rejected(backbone: &Backbone, message: &async_nats::jetstream::Message, reason: &str) {
    backbone
        .inner
        .metrics
        .backbone_rejected
        .with_label_values(&[reason])
        .inc();
    tracing::warn!(subject = %message.subject, reason, "a message on the cluster's stream was not taken");
}

/// The account and events of the message stored at `stream_seq`, each event with
/// its position, or `None` (counted) when it is not one a node of this cluster
/// wrote.
pub(super) fn take(
    backbone: &Backbone,
    message: &async_nats::jetstream::Message,
    stream_seq: u64,
) -> Option<(crate::account::AccountIdx, Vec<SharedEvent>)> {
    let inner = &backbone.inner;
    let rejected = |reason: &str| rejected(backbone, message, reason);
    let Some(sid) = subject_account(&inner.stream, &message.subject) else {
        rejected("subject");
        return None;
    };
    let Some(account) = inner.accounts.lookup(sid) else {
        rejected("unknown_account");
        return None;
    };
    let Ok(batch) = wire::decode(&message.payload) else {
        rejected("decode");
        return None;
    };
    let now = Instant::now();
    let events: Result<Vec<SharedEvent>, _> = batch
        .events
        .iter()
        .enumerate()
        .map(|(index, wire)| {
            Event::from_parts(
                account,
                sid,
                wire.parts(),
                inner.settings.max_event_bytes,
                now,
                order::position(stream_seq, index),
            )
            .map(Arc::new)
        })
        .collect();
    match events {
        Ok(events) if !events.is_empty() => Some((account, events)),
        _ => {
            rejected("check");
            None
        }
    }
}

/// Routes a message's events into the shards, waiting while a shard's queue is full
/// (never dropping them); `Err` once the shards are gone.
async fn deliver(
    publisher: &Publisher,
    account: crate::account::AccountIdx,
    events: Vec<SharedEvent>,
    ticket: Arc<Ticket>,
) -> Result<(), PublishError> {
    loop {
        match publisher.route_built(account, events.clone(), Some(ticket.clone())) {
            Ok(()) => return Ok(()),
            Err(PublishError::Stopped) => return Err(PublishError::Stopped),
            Err(PublishError::Overloaded | PublishError::AccountShare { .. }) => {
                tokio::time::sleep(SHARD_FULL_PAUSE).await;
            }
        }
    }
}
