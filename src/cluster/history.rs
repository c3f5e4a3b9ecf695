//! Reading a client's events back from the stream: what a client resuming with a
//! cluster cursor missed, or everything retained for `cursor=earliest`, on a node
//! whose own outbox for it does not reach back that far (docs/cluster.md,
//! "Cursors").
//!
//! A read is one short-lived pull consumer on the account's subjects, from the
//! message holding the cursor's position up to the last message stored when the
//! read began. Each message is checked as the node's consumer checks it, and only
//! the events matching one of the client's stream filters are kept, at most the
//! outbox's `max_events` of them (the newest: the rest count as a gap, as in an
//! outbox that overflowed).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::StreamExt;

use super::consumer::take;
use super::order::{self, message_of};
use super::{Backbone, BackboneError};
use crate::account::AccountIdx;
use crate::event::SharedEvent;
use crate::filter::Filter;
use crate::outbox::GAP_UNKNOWN;

/// Messages asked for at once.
const BATCH: usize = 256;

/// The longest a read may take before it is given up (the client is then told of
/// a gap of unknown size).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What to read.
pub struct Query {
    /// The client's account.
    pub account: AccountIdx,
    /// The events after this position (0: from the oldest retained).
    pub after: u64,
    /// The client's stream filters: an event matching any is kept.
    pub filters: Vec<Arc<Filter>>,
    /// Most events kept (the outbox's `max_events`).
    pub limit: usize,
}

/// What the stream held.
pub struct History {
    /// Matching events after the query's position, oldest first, each with its
    /// position.
    pub events: Vec<SharedEvent>,
    /// The read covered every position up to here.
    pub end: u64,
    /// Events missing before the first one: [`GAP_UNKNOWN`] when messages after
    /// the position have left the stream's retention, plus those over the limit.
    pub gap: u64,
}

impl Backbone {
    /// Reads `query` from the stream, on the backbone's thread.
    pub async fn history(&self, query: Query) -> Result<History, BackboneError> {
        if !self.connected() {
            return Err(BackboneError::Unavailable);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let backbone = self.clone();
        self.inner.arbiter.spawn(async move {
            let read = tokio::time::timeout(READ_TIMEOUT, backbone.read_history(query)).await;
            let _ = tx.send(read.unwrap_or(Err(BackboneError::NotAcknowledged)));
        });
        rx.await.unwrap_or(Err(BackboneError::Unavailable))
    }

    async fn read_history(&self, query: Query) -> Result<History, BackboneError> {
        let inner = &self.inner;
        let failed = |error: &dyn std::fmt::Display| {
            tracing::warn!(%error, "cannot read a client's history from the stream");
            BackboneError::NotAcknowledged
        };
        let mut stream = inner
            .jetstream
            .get_stream(&inner.stream)
            .await
            .map_err(|e| failed(&e))?;
        let state = stream.info().await.map_err(|e| failed(&e))?.state.clone();
        let from = match query.after {
            0 => state.first_sequence,
            after => message_of(after).max(state.first_sequence),
        };
        // Messages after the cursor's own that the stream no longer has.
        let gap = match query.after {
            0 => 0,
            after if message_of(after).saturating_add(1) < state.first_sequence => GAP_UNKNOWN,
            _ => 0,
        };
        let end = order::position(state.last_sequence, (order::PER_MESSAGE - 1) as usize);
        if state.messages == 0 || from > state.last_sequence {
            return Ok(History {
                events: Vec::new(),
                end,
                gap,
            });
        }
        let sid = &inner.accounts.get(query.account).sid;
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: format!("{}.{sid}.*", inner.stream),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let mut kept = Collect::new(&query);
        'read: loop {
            let mut batch = consumer
                .fetch()
                .max_messages(BATCH)
                .messages()
                .await
                .map_err(|e| failed(&e))?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| failed(&e))?;
                got += 1;
                let Ok(info) = message.info() else { continue };
                let (seq, pending) = (info.stream_sequence, info.pending);
                if seq > state.last_sequence {
                    break 'read;
                }
                if let Some((_, events)) = take(self, &message, seq) {
                    kept.offer(events);
                }
                if pending == 0 || seq == state.last_sequence {
                    break 'read;
                }
            }
            if got == 0 {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, "a history consumer is left to expire");
        }
        let history = kept.finish(end, gap);
        inner
            .metrics
            .backbone_history_events
            .inc_by(history.events.len() as u64);
        Ok(history)
    }
}

/// Keeps the newest [`Query::limit`] events after the query's position that match
/// one of its filters, counting the older ones it lets go: what a read of a
/// client's history keeps, from the stream or from a node's store.
pub struct Collect<'q> {
    query: &'q Query,
    kept: VecDeque<SharedEvent>,
    dropped: u64,
}

impl<'q> Collect<'q> {
    /// Nothing kept yet.
    pub fn new(query: &'q Query) -> Collect<'q> {
        Collect {
            query,
            kept: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Offers a message's events, in order.
    pub fn offer(&mut self, events: Vec<SharedEvent>) {
        for event in events {
            let fields = event.fields();
            if event.position <= self.query.after
                || !self.query.filters.iter().any(|f| f.matches(&fields))
            {
                continue;
            }
            self.kept.push_back(event);
            if self.kept.len() > self.query.limit {
                self.kept.pop_front();
                self.dropped += 1;
            }
        }
    }

    /// The history read up to position `end`; `gap` counts events known missing
    /// before the first (to which the ones let go here are added).
    pub fn finish(self, end: u64, gap: u64) -> History {
        History {
            events: self.kept.into(),
            end,
            gap: gap.saturating_add(self.dropped),
        }
    }
}
