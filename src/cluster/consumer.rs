//! The node's reader of one account's messages: an ordered consumer on the
//! account's subjects from when the manager started it ([`super::demand`]),
//! routing each message's events into this node's shards in stream order, each
//! event with its position and each message with a ticket of the account's landed
//! watermark ([`super::order`]).
//!
//! After a reconnect the consumer is made again at once from the stream sequence
//! after the last one delivered (a restarted NATS server has forgotten it, and
//! async-nats would only notice by missed heartbeats, about 10 s later), so an
//! outage of NATS loses nothing and repeats nothing here. When the stream cannot be
//! reached, the loop waits and tries again. It stops when the manager says so,
//! inside the runtime: a NATS subscription dropped outside one panics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::demand::Unready;
use super::{subject_account, wire, Backbone};
use crate::account::{random_hex, AccountIdx};
use crate::event::SharedEvent;
use crate::publisher::Publisher;

/// Pause before trying the stream again after it failed.
const RETRY: Duration = Duration::from_secs(1);

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
    /// How long an account's consumer outlives its last session here
    /// (`cluster.consumer_grace_secs`).
    pub consumer_grace: Duration,
}

/// What a consumer hears from the manager, and tells it.
pub struct Signals {
    /// Turns true when the account's consumer is no longer needed, or the server
    /// stops.
    pub stop: watch::Receiver<bool>,
    /// What it tells.
    pub report: Report,
}

/// What a consumer tells the manager.
pub struct Report {
    /// Whether the consumer reads now.
    pub reading: watch::Sender<bool>,
    /// Messages of the account stored and not read yet, as of the last one read.
    pub lag: Arc<AtomicU64>,
}

/// Reads `account`'s messages until the manager stops it (see [`super::demand`]).
pub async fn run(
    backbone: Backbone,
    publisher: Publisher,
    account: AccountIdx,
    mut signals: Signals,
) {
    // The stream sequence to read from; none yet: from the messages stored after
    // the consumer started, as the account's sessions here are made from then on.
    let mut resume = None;
    let mut connections = backbone.inner.connections.subscribe();
    let mut unready = Some(Unready::new(&backbone.inner.unready));
    loop {
        // Named, so that it can be deleted at once when no longer needed (NATS
        // would keep an ordered consumer 30 s after its reader left).
        let name = format!(
            "{}-{}",
            backbone.inner.accounts.get(account).sid,
            &random_hex()[..12]
        );
        let reader = Reader {
            backbone: &backbone,
            publisher: &publisher,
            account,
            report: &signals.report,
        };
        let outcome = tokio::select! {
            outcome = reader.read(&name, resume, &mut connections, &mut unready) => outcome,
            _ = signals.stop.wait_for(|stop| *stop) => {
                delete(&backbone, &name).await;
                return;
            }
        };
        delete(&backbone, &name).await;
        signals.report.reading.send_replace(false);
        unready.get_or_insert_with(|| Unready::new(&backbone.inner.unready));
        let (next, pause) = match outcome {
            Ok(Stop::Stopped) => return,
            Ok(Stop::Reconnected(next)) => (next, Duration::ZERO),
            Ok(Stop::Ended(next)) | Err(Failed(next)) => (next, RETRY),
        };
        resume = next.or(resume);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = signals.stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Deletes a consumer this node made, if NATS still has it (best effort, bounded).
async fn delete(backbone: &Backbone, name: &str) {
    let inner = &backbone.inner;
    let deleted = tokio::time::timeout(
        RETRY,
        inner
            .jetstream
            .delete_consumer_from_stream(name, &inner.stream),
    )
    .await;
    if !matches!(deleted, Ok(Ok(_))) {
        tracing::debug!(consumer = name, "a consumer is left to expire");
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

/// What stays the same across one account consumer's reads.
struct Reader<'a> {
    backbone: &'a Backbone,
    publisher: &'a Publisher,
    account: AccountIdx,
    report: &'a Report,
}

impl<'a> Reader<'a> {
    /// Reads with a consumer named `name` from `resume` (or from the messages
    /// stored from now on) until it ends, fails or NATS reconnects.
    async fn read(
        &self,
        name: &str,
        resume: Option<u64>,
        connections: &mut watch::Receiver<u64>,
        unready: &mut Option<Unready<'a>>,
    ) -> Result<Stop, Failed> {
        let Reader {
            backbone,
            publisher,
            account,
            report,
        } = *self;
        let inner = &backbone.inner;
        let sid = &inner.accounts.get(account).sid;
        let mut next = resume;
        let stream = inner
            .jetstream
            .get_stream(&inner.stream)
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
        let landed = inner.landed.of(account);
        landed.start_after(
            last_stored,
            stream_identity(&inner.stream, info.created.unix_timestamp_nanos()),
        );
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                name: Some(name.to_owned()),
                filter_subject: format!("{}.{sid}.*", inner.stream),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: last_stored.saturating_add(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot create an account's consumer");
                Failed(next)
            })?;
        let mut messages = consumer.messages().await.map_err(|error| {
            tracing::warn!(%error, "cannot read an account's consumer");
            Failed(next)
        })?;
        tracing::info!(stream = %inner.stream, account = %sid, "reading the account's messages");
        // Connections made before this consumer need nothing more of it.
        connections.mark_unchanged();
        *unready = None;
        report.reading.send_replace(true);
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = connections.changed() => return Ok(Stop::Reconnected(next)),
            };
            let Some(message) = message else { break };
            let message = message.map_err(|error| {
                tracing::warn!(%error, "an account's consumer failed");
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
            report.lag.store(info.pending, Ordering::Relaxed);
            inner.metrics.backbone_consumed.inc();
            let ticket = Arc::new(landed.read(info.stream_sequence));
            if let Some((account, events)) = take(backbone, &message, info.stream_sequence) {
                // While a shard's queue is full the consumer stops reading: the
                // back-pressure JetStream's flow control passes on.
                let routed = publisher.route_accepted(account, events, ticket).await;
                if routed.is_err() {
                    return Ok(Stop::Stopped);
                }
            }
        }
        Ok(Stop::Ended(next))
    }
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
) -> Option<(AccountIdx, Vec<SharedEvent>)> {
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
    match wire::events_at(
        account,
        sid,
        &message.payload,
        inner.settings.max_event_bytes,
        stream_seq,
    ) {
        Ok(events) => Some((account, events)),
        Err(reason) => {
            rejected(reason.label());
            None
        }
    }
}
