//! The accepted events on disk: one row per publish request (a *message*, as in
//! cluster mode's stream), keyed by a node-wide sequence, so a request is kept all
//! or nothing and positions ([`crate::cluster::order`]) number every event the
//! same way before and after a restart.
//!
//! - `messages`: sequence → [`StoredMessage`] (codec-encoded), oldest first, so
//!   retention prunes from the front;
//! - `messages_by_account`: (account sid, sequence) → the message's event count,
//!   so a client's history reads only its own account's rows;
//! - `meta`: the log's identity (part of every cursor, so a cursor of another
//!   data directory is not read as a position here), its last sequence and how
//!   many events it holds.
//!
//! These are plain functions over the store, called from the log's writer thread
//! ([`super::log`]) and from history reads.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{io, Store, StoreError};
use crate::codec::{self, Decode, Encode};

const MESSAGES: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("messages");
const BY_ACCOUNT: TableDefinition<'static, (&str, u64), u32> =
    TableDefinition::new("messages_by_account");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

const IDENTITY: &str = "identity";
const LAST_SEQ: &str = "last_seq";
const EVENTS: &str = "events";

/// One publish request's events as kept.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredMessage {
    /// The account's sid: a node whose configuration lists its accounts in
    /// another order still finds its own.
    pub account_sid: String,
    /// When it was accepted, Unix milliseconds (retention by age).
    pub accepted_ms: u64,
    /// How many events `batch` holds (retention by count).
    pub events: u32,
    /// The events in the cluster's wire format ([`crate::cluster::wire`]).
    pub batch: Vec<u8>,
}

/// What one group commit writes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Writes<'a> {
    /// Accepted requests, in the order they get their sequences.
    pub messages: &'a [&'a StoredMessage],
    /// Clients' subscriptions and webhooks' cursors.
    pub clients: &'a [super::clients::ClientWrite],
    /// The call router's records.
    pub records: &'a [super::records::RecordWrite],
}

/// Where the log stands: read when the store opens, then kept by the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    /// Made once, when the log is first opened; part of every cursor.
    pub identity: u64,
    /// The last sequence given (0: none yet).
    pub last_seq: u64,
    /// Events kept.
    pub events: u64,
}

/// How much retention keeps.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Messages accepted longer ago than this are dropped, in milliseconds.
    pub max_age_ms: u64,
    /// The oldest messages are dropped while more events than this are kept.
    pub max_events: u64,
}

impl Store {
    /// The log's state, making its identity on first use.
    pub fn log_state(&self) -> Result<LogState, StoreError> {
        let txn = self.db.begin_write().map_err(io)?;
        let state = {
            let mut meta = txn.open_table(META).map_err(io)?;
            let get = |meta: &redb::Table<'_, &str, u64>, key| -> Result<Option<u64>, StoreError> {
                Ok(meta.get(key).map_err(io)?.map(|v| v.value()))
            };
            let identity = match get(&meta, IDENTITY)? {
                Some(identity) => identity,
                None => {
                    let identity: u64 = rand::random();
                    meta.insert(IDENTITY, identity).map_err(io)?;
                    identity
                }
            };
            LogState {
                identity,
                last_seq: get(&meta, LAST_SEQ)?.unwrap_or(0),
                events: get(&meta, EVENTS)?.unwrap_or(0),
            }
        };
        txn.open_table(MESSAGES).map_err(io)?;
        txn.open_table(BY_ACCOUNT).map_err(io)?;
        self.commit(txn)?;
        Ok(state)
    }

    /// Commits `writes` in one transaction (one `fsync`): the messages numbered
    /// from `state.last_seq + 1` in order, and the clients' writes. Returns the
    /// messages' sequences. `state` moves only once the commit has returned.
    pub fn write(&self, state: &mut LogState, writes: Writes<'_>) -> Result<Vec<u64>, StoreError> {
        let mut next = *state;
        let mut seqs = Vec::with_capacity(writes.messages.len());
        let txn = self.db.begin_write().map_err(io)?;
        if !writes.messages.is_empty() {
            let mut rows = txn.open_table(MESSAGES).map_err(io)?;
            let mut index = txn.open_table(BY_ACCOUNT).map_err(io)?;
            for message in writes.messages {
                next.last_seq = next.last_seq.checked_add(1).ok_or(StoreError::Full)?;
                next.events = next.events.saturating_add(u64::from(message.events));
                rows.insert(next.last_seq, codec::encode(*message).as_slice())
                    .map_err(io)?;
                index
                    .insert(
                        (message.account_sid.as_str(), next.last_seq),
                        message.events,
                    )
                    .map_err(io)?;
                seqs.push(next.last_seq);
            }
            let mut meta = txn.open_table(META).map_err(io)?;
            meta.insert(LAST_SEQ, next.last_seq).map_err(io)?;
            meta.insert(EVENTS, next.events).map_err(io)?;
        }
        super::clients::apply(&txn, writes.clients)?;
        super::records::apply(&txn, writes.records)?;
        self.commit(txn)?;
        *state = next;
        Ok(seqs)
    }

    /// Drops at most `budget` of the oldest messages that are past `bounds` at
    /// `now_ms`, in one transaction; returns how many went. Small transactions
    /// keep the writer free for publishes in between.
    pub fn prune(
        &self,
        state: &mut LogState,
        bounds: Bounds,
        now_ms: u64,
        budget: usize,
    ) -> Result<usize, StoreError> {
        let oldest_kept = now_ms.saturating_sub(bounds.max_age_ms);
        let mut next = *state;
        let txn = self.db.begin_write().map_err(io)?;
        let mut dropped = Vec::new();
        {
            let rows = txn.open_table(MESSAGES).map_err(io)?;
            for row in rows.iter().map_err(io)?.take(budget) {
                let (seq, value) = row.map_err(io)?;
                let message: StoredMessage =
                    codec::decode(value.value()).map_err(|_| StoreError::Corrupt("message"))?;
                let too_old = message.accepted_ms < oldest_kept;
                if !too_old && next.events <= bounds.max_events {
                    break;
                }
                next.events = next.events.saturating_sub(u64::from(message.events));
                dropped.push((seq.value(), message.account_sid));
            }
        }
        if dropped.is_empty() {
            return Ok(0);
        }
        {
            let mut rows = txn.open_table(MESSAGES).map_err(io)?;
            let mut index = txn.open_table(BY_ACCOUNT).map_err(io)?;
            for (seq, account) in &dropped {
                rows.remove(*seq).map_err(io)?;
                index.remove((account.as_str(), *seq)).map_err(io)?;
            }
            let mut meta = txn.open_table(META).map_err(io)?;
            meta.insert(EVENTS, next.events).map_err(io)?;
        }
        self.commit(txn)?;
        *state = next;
        Ok(dropped.len())
    }

    /// Reads one account's messages from sequence `from` on, oldest first, from
    /// one snapshot, handing each to `visit`. Returns the snapshot's first kept
    /// sequence of any account (0: none) and its last sequence.
    pub fn read_account(
        &self,
        account_sid: &str,
        from: u64,
        mut visit: impl FnMut(u64, StoredMessage),
    ) -> Result<Span, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let rows = txn.open_table(MESSAGES).map_err(io)?;
        let index = txn.open_table(BY_ACCOUNT).map_err(io)?;
        let meta = txn.open_table(META).map_err(io)?;
        let span = Span {
            first: rows.first().map_err(io)?.map_or(0, |(seq, _)| seq.value()),
            last: meta.get(LAST_SEQ).map_err(io)?.map_or(0, |v| v.value()),
        };
        for row in index
            .range((account_sid, from)..=(account_sid, u64::MAX))
            .map_err(io)?
        {
            let (key, _) = row.map_err(io)?;
            let seq = key.value().1;
            let Some(value) = rows.get(seq).map_err(io)? else {
                continue;
            };
            let message: StoredMessage =
                codec::decode(value.value()).map_err(|_| StoreError::Corrupt("message"))?;
            visit(seq, message);
        }
        Ok(span)
    }

    /// How many messages are kept (tests and diagnostics).
    pub fn message_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let rows = txn.open_table(MESSAGES).map_err(io)?;
        rows.len().map_err(io)
    }
}

/// The sequences a read's snapshot held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The oldest kept message of any account (0: none).
    pub first: u64,
    /// The last sequence given.
    pub last: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    const A: &str = "AC00000000000000000000000000000001";
    const B: &str = "AC00000000000000000000000000000002";

    fn message(account: &str, accepted_ms: u64, events: u32) -> StoredMessage {
        StoredMessage {
            account_sid: account.into(),
            accepted_ms,
            events,
            batch: vec![events as u8; 3],
        }
    }

    fn temp_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sb-events-{}", crate::account::random_hex()))
    }

    fn append(store: &Store, state: &mut LogState, messages: &[StoredMessage]) -> Vec<u64> {
        let messages: Vec<&StoredMessage> = messages.iter().collect();
        let writes = Writes {
            messages: &messages,
            ..Writes::default()
        };
        store.write(state, writes).expect("kept")
    }

    fn read(store: &Store, account: &str, from: u64) -> (Vec<u64>, Span) {
        let mut seqs = Vec::new();
        let span = store
            .read_account(account, from, |seq, _| seqs.push(seq))
            .expect("reads");
        (seqs, span)
    }

    #[test]
    fn messages_keep_their_sequences_and_identity_across_a_reopen() {
        let dir = temp_dir();
        let identity = {
            let store = Store::open(&dir, Metrics::new()).expect("opens");
            let mut state = store.log_state().expect("state");
            assert_eq!((state.last_seq, state.events), (0, 0));
            let seqs = append(&store, &mut state, &[message(A, 1, 2), message(B, 1, 1)]);
            assert_eq!(seqs, [1, 2]);
            let seqs = append(&store, &mut state, &[message(A, 2, 1)]);
            assert_eq!(seqs, [3]);
            state.identity
        };
        let store = Store::open(&dir, Metrics::new()).expect("opens again");
        let state = store.log_state().expect("state");
        assert_eq!(state.identity, identity, "cursors stay valid");
        assert_eq!((state.last_seq, state.events), (3, 4));
        let (seqs, span) = read(&store, A, 0);
        assert_eq!(seqs, [1, 3], "only the account's own messages");
        assert_eq!(span, Span { first: 1, last: 3 });
        assert_eq!(read(&store, A, 2).0, [3], "from a sequence on");
        let mut kept = Vec::new();
        store
            .read_account(B, 0, |_, m| kept.push(m))
            .expect("reads");
        assert_eq!(kept, [message(B, 1, 1)], "byte for byte");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pruning_drops_the_oldest_by_age_then_by_count_within_its_budget() {
        let dir = temp_dir();
        let store = Store::open(&dir, Metrics::new()).expect("opens");
        let mut state = store.log_state().unwrap();
        let batch: Vec<_> = (0..6).map(|n| message(A, 1000 + n * 100, 2)).collect();
        append(&store, &mut state, &batch);
        assert_eq!(state.events, 12);
        let bounds = Bounds {
            max_age_ms: 250,
            max_events: 100,
        };
        // At 1500 the messages accepted before 1250 are too old: 1000, 1100, 1200.
        assert_eq!(store.prune(&mut state, bounds, 1500, 2).unwrap(), 2);
        assert_eq!(store.prune(&mut state, bounds, 1500, 10).unwrap(), 1);
        assert_eq!(store.prune(&mut state, bounds, 1500, 10).unwrap(), 0);
        assert_eq!(state.events, 6);
        assert_eq!(read(&store, A, 0).0, [4, 5, 6]);
        // Over the count: the oldest go until at most 3 events remain.
        let bounds = Bounds {
            max_age_ms: u64::MAX,
            max_events: 3,
        };
        assert_eq!(store.prune(&mut state, bounds, 1500, 10).unwrap(), 2);
        assert_eq!(state.events, 2);
        let (seqs, span) = read(&store, A, 0);
        assert_eq!(seqs, [6]);
        assert_eq!(span, Span { first: 6, last: 6 });
        assert_eq!(store.message_count().unwrap(), 1);
        assert_eq!(store.log_state().unwrap().events, 2, "the count is kept");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
