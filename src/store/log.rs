//! The event log of a durable single node (`data_dir`): every accepted request is
//! kept before it is answered `202`, then routed, in the order it was kept
//! (docs/api.md §8 "Durability", docs/durability.md). This is its handle: appends,
//! clients' rows, call records and webhooks' cursors go to the writer thread
//! ([`super::writer`]); reads of a client's history run on the blocking pool
//! against a snapshot, beside the writer (redb's readers do not block its
//! writer).

use std::sync::mpsc;
use std::sync::Arc;

use super::clients::{ClientWrite, KeptClient};
use super::delivered::DeliveredCursor;
use super::events::{Bounds, StoredMessage};
use super::records::RecordWrite;
use super::writer::{self, now_ms, saturating_i64, Append, Op};
use super::{Store, StoreError};
use crate::account::{AccountIdx, Accounts};
use crate::cluster::history::{Collect, History, Query};
use crate::cluster::order::{self, Landed, Landings, PER_MESSAGE};
use crate::cluster::wire;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::outbox::GAP_UNKNOWN;
use crate::publisher::Publisher;

/// What the log needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    /// Retention on disk (`retention.max_age_secs`, `retention.store_max_events`).
    pub bounds: Bounds,
    /// Largest event a kept message may hold (`publish.max_event_bytes`).
    pub max_event_bytes: usize,
    /// How long a client's row without a webhook outlives its last change
    /// (`auth.max_url_lifetime_secs`), in milliseconds.
    pub clients_max_age_ms: u64,
}

/// The node's event log. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    ops: mpsc::Sender<Op>,
    store: Arc<Store>,
    accounts: Arc<Accounts>,
    settings: LogSettings,
    metrics: Metrics,
}

impl EventLog {
    /// Opens the log in `store` and starts its writer, which routes what it keeps
    /// through `publisher`. Every account's watermark starts after the last kept
    /// message, with the log's identity as the cursors' epoch, so cursors handed
    /// out before a restart name positions of this log.
    pub fn start(
        store: Arc<Store>,
        landed: Landings,
        accounts: Arc<Accounts>,
        publisher: Publisher,
        settings: LogSettings,
        metrics: Metrics,
    ) -> Result<EventLog, StoreError> {
        let state = store.log_state()?;
        for (index, _) in accounts.iter().enumerate() {
            let account = AccountIdx(u32::try_from(index).unwrap_or(u32::MAX));
            landed
                .of(account)
                .start_after(state.last_seq, state.identity);
        }
        metrics.store_events.set(saturating_i64(state.events));
        let ops = writer::spawn(
            store.clone(),
            state,
            landed,
            publisher,
            settings,
            metrics.clone(),
        )?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                ops,
                store,
                accounts,
                settings,
                metrics,
            }),
        })
    }

    /// Keeps a request's events, then routes them; resolves once both are done
    /// (`202` means kept). Routing is not held to `publish.shard_queue`: a
    /// publish checks it first ([`Publisher::check_room`]), and the call router's
    /// own events are not held to it (see [`Publisher::route_call_event`]).
    pub async fn append(&self, account: AccountIdx, events: Vec<Event>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let message = StoredMessage {
            account_sid: inner.accounts.get(account).sid.to_string(),
            accepted_ms: now_ms(),
            events: u32::try_from(events.len()).unwrap_or(u32::MAX),
            batch: wire::encode(&events),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let append = Append {
            account,
            events,
            message,
            reply,
        };
        inner
            .ops
            .send(Op::Append(append))
            .map_err(|_| StoreError::Stopped)?;
        answer.await.unwrap_or(Err(StoreError::Stopped))
    }

    /// Keeps a client's whole list of subscriptions (an empty one forgets the
    /// client); resolves once it is on disk.
    pub async fn keep_client(
        &self,
        account: AccountIdx,
        client: &str,
        kept: KeptClient,
    ) -> Result<(), StoreError> {
        let write = ClientWrite::Client {
            account_sid: self.inner.accounts.get(account).sid.to_string(),
            client: client.to_owned(),
            kept,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .ops
            .send(Op::Client { write, reply })
            .map_err(|_| StoreError::Stopped)?;
        answer.await.unwrap_or(Err(StoreError::Stopped))
    }

    /// Commits the webhooks' cursors that wait for the next tick; resolves once
    /// they are on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .ops
            .send(Op::Flush { reply })
            .map_err(|_| StoreError::Stopped)?;
        answer.await.unwrap_or(Err(StoreError::Stopped))
    }

    /// Keeps a change to the call router's records with the next commit, which
    /// starts at once; nobody waits for it (a call's program never stalls on the
    /// disk), so a crash may lose the last few milliseconds of changes.
    pub fn keep_record(&self, write: RecordWrite) {
        let _ = self.inner.ops.send(Op::Record(write));
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The delivered cursor of webhook `sid`, for its worker to keep up to date:
    /// `from` is where a restored webhook's callback had acknowledged up to (it
    /// is owed what comes after; 0 for a new one).
    pub fn delivered_cursor(
        &self,
        sid: &str,
        landed: Arc<Landed>,
        from: u64,
    ) -> Arc<DeliveredCursor> {
        let cursor = Arc::new(DeliveredCursor::new(sid, landed, from));
        let _ = self.inner.ops.send(Op::Watch(Arc::downgrade(&cursor)));
        cursor
    }

    /// Reads a client's history from the log, on the blocking pool; `None` when
    /// the store cannot be read.
    pub async fn history(&self, query: Query) -> Option<History> {
        let inner = self.inner.clone();
        let read = actix_web::rt::task::spawn_blocking(move || inner.read_history(&query)).await;
        match read {
            Ok(Ok(history)) => {
                self.inner
                    .metrics
                    .store_history_events
                    .inc_by(history.events.len() as u64);
                Some(history)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read a client's history from the store");
                None
            }
            Err(_) => None,
        }
    }
}

impl Inner {
    fn read_history(&self, query: &Query) -> Result<History, StoreError> {
        let sid = &self.accounts.get(query.account).sid;
        let from = match query.after {
            0 => 0,
            after => order::message_of(after),
        };
        let mut kept = Collect::new(query);
        let mut unreadable = 0u64;
        let span = self.store.read_account(sid, from, |seq, message| {
            match wire::events_at(
                query.account,
                sid,
                &message.batch,
                self.settings.max_event_bytes,
                seq,
            ) {
                Ok(events) => kept.offer(events),
                Err(_) => unreadable += 1,
            }
        })?;
        if unreadable > 0 {
            tracing::warn!(
                messages = unreadable,
                "kept messages that do not check out were skipped"
            );
        }
        // Every sequence up to here has been pruned.
        let pruned_upto = match span.first {
            0 => span.last,
            first => first - 1,
        };
        let gap = if query.after != 0 && order::message_of(query.after) < pruned_upto {
            GAP_UNKNOWN
        } else {
            0
        };
        let end = order::position(span.last, (PER_MESSAGE - 1) as usize);
        Ok(kept.finish(end, gap))
    }
}
