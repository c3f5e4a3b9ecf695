//! The node's reader of the stream: one ordered consumer from the node's start,
//! routing each message's events into this node's shards in stream order.
//!
//! After a reconnect the consumer is made again at once from the stream sequence
//! after the last one delivered (a restarted NATS server has forgotten it, and
//! async-nats would only notice by missed heartbeats, about 10 s later), so an
//! outage of NATS loses nothing and repeats nothing here. When the stream cannot be
//! reached (NATS down at start, or the stream's creation failed), the loop waits and
//! tries again. It stops when the server does, inside the runtime: a NATS
//! subscription dropped outside one panics.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{subject_account, wire, Backbone};
use crate::event::{Event, SharedEvent};
use crate::publisher::{PublishError, Publisher};

/// Pause before trying the stream again after it failed.
const RETRY: Duration = Duration::from_secs(1);

/// Pause before offering events again to a shard whose queue is full: the consumer
/// stops reading meanwhile, which is the back-pressure JetStream's flow control
/// passes on.
const SHARD_FULL_PAUSE: Duration = Duration::from_millis(2);

/// What the consumer needs from the configuration.
pub struct Settings {
    /// The stream's `max_age` (the retention window, `retention.max_age_secs`).
    pub max_age: Duration,
    /// Largest event another node may send (`publish.max_event_bytes`).
    pub max_event_bytes: usize,
}

/// Reads the stream until the server stops (`shutdown` turns true).
pub async fn run(
    backbone: Backbone,
    publisher: Publisher,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    // Messages stored from now on: this node's clients subscribe from now on.
    let mut resume = DeliverPolicy::New;
    let mut connections = backbone.inner.connections.subscribe();
    loop {
        let outcome = tokio::select! {
            outcome = read(&backbone, &publisher, &settings, resume, &mut connections) => outcome,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        backbone.inner.reading.store(false, Ordering::Relaxed);
        let (next, pause) = match outcome {
            Ok(Stop::Stopped) => return,
            Ok(Stop::Reconnected(next)) => (next, Duration::ZERO),
            Ok(Stop::Ended(next)) | Err(Failed(next)) => (next, RETRY),
        };
        if let Some(next) = next {
            resume = DeliverPolicy::ByStartSequence {
                start_sequence: next,
            };
        }
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
    settings: &Settings,
    resume: DeliverPolicy,
    connections: &mut watch::Receiver<u64>,
) -> Result<Stop, Failed> {
    let inner = &backbone.inner;
    let mut next = match resume {
        DeliverPolicy::ByStartSequence { start_sequence } => Some(start_sequence),
        _ => None,
    };
    let stream = inner
        .jetstream
        .get_or_create_stream(stream::Config {
            name: inner.stream.clone(),
            subjects: vec![format!("{}.>", inner.stream)],
            max_age: settings.max_age,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|error| {
            tracing::warn!(%error, stream = %inner.stream, "cannot reach the cluster's stream");
            Failed(next)
        })?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("{}.>", inner.stream),
            deliver_policy: resume,
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
        if let Ok(info) = message.info() {
            next = Some(info.stream_sequence.saturating_add(1));
            inner.metrics.backbone_lag.set(clamp(info.pending));
        }
        inner.metrics.backbone_consumed.inc();
        if let Some((account, events)) = take(backbone, settings, &message) {
            if deliver(publisher, account, events).await.is_err() {
                return Ok(Stop::Stopped);
            }
        }
    }
    Ok(Stop::Ended(next))
}

fn clamp(pending: u64) -> i64 {
    i64::try_from(pending).unwrap_or(i64::MAX)
}

/// The account and events of a message, or `None` (counted, logged without the
/// payload) when it is not one a node of this cluster wrote.
fn take(
    backbone: &Backbone,
    settings: &Settings,
    message: &async_nats::jetstream::Message,
) -> Option<(crate::account::AccountIdx, Vec<SharedEvent>)> {
    let inner = &backbone.inner;
    let rejected = |reason: &str| {
        inner
            .metrics
            .backbone_rejected
            .with_label_values(&[reason])
            .inc();
        tracing::warn!(subject = %message.subject, reason, "a message on the cluster's stream was not taken");
    };
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
        .map(|wire| {
            Event::from_parts(account, sid, wire.parts(), settings.max_event_bytes, now)
                .map(std::sync::Arc::new)
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
) -> Result<(), PublishError> {
    loop {
        match publisher.route_built(account, events.clone()) {
            Ok(()) => return Ok(()),
            Err(PublishError::Stopped) => return Err(PublishError::Stopped),
            Err(PublishError::Overloaded | PublishError::AccountShare { .. }) => {
                tokio::time::sleep(SHARD_FULL_PAUSE).await;
            }
        }
    }
}
