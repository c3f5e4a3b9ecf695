//! The node's durable store, with `data_dir` (docs/api.md §8 "Durability", issue 12,
//! docs/durability.md): an embedded redb database, `switchboard.redb` in the data
//! directory. redb is ACID and crash-safe: a commit that returned is on disk, and
//! a `kill -9` at any moment leaves the last committed state.
//!
//! What is kept so far: provisioned numbers and call queues, written before the
//! create is answered and loaded back when the node starts, and accepted events
//! ([`events`], written by [`log`] before their `202`), clients' subscriptions
//! and webhooks' delivery cursors ([`clients`]), and the call router's calls
//! and messages ([`records`]). docs/durability.md says what a
//! restart still loses.

pub mod clients;
pub mod delivered;
pub mod events;
pub mod log;
pub mod records;
pub mod writer;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};

use crate::codec::{self, Decode, Encode};
use crate::metrics::Metrics;

/// Numbers by phone number: a [`StoredNumber`], codec-encoded.
const NUMBERS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("numbers");
/// Call queues by sid: a [`StoredQueue`], codec-encoded.
const QUEUES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("queues");

/// redb's page cache: 64 MiB rather than its default 1 GiB, so a node's memory
/// does not grow with its log. The log is written once and read back only for
/// resuming clients, and the operating system's page cache holds the file too.
const CACHE_BYTES: usize = 64 << 20;

/// The database file in `data_dir`.
pub const FILE: &str = "switchboard.redb";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or the database could not be opened or made.
    #[error("data_dir {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A read or a commit failed.
    #[error("the store failed: {0}")]
    Io(String),
    /// A stored record does not decode (written by another version).
    #[error("a stored {0} does not decode")]
    Corrupt(&'static str),
    /// The event log's sequence would pass `u64::MAX`.
    #[error("the event log's sequence is exhausted")]
    Full,
    /// The log's writer thread is gone: nothing more can be kept.
    #[error("the event log is stopped")]
    Stopped,
    /// Kept, but not routed: the shards are gone, the node is stopping (the
    /// events are delivered after the restart).
    #[error("the server is shutting down")]
    ShuttingDown,
}

fn io(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(error.to_string())
}

/// A provisioned number as it is kept: its account by sid, so a node whose
/// configuration lists its accounts in another order still finds it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredNumber {
    /// `PN` + 32 hex.
    pub sid: String,
    /// The owning account's sid.
    pub account_sid: String,
    /// E.164.
    pub phone_number: String,
    /// Display name.
    pub friendly_name: String,
    /// The voice application and its method (`GET`, `POST`).
    pub voice: Option<(String, String)>,
    /// The SMS application and its method.
    pub sms: Option<(String, String)>,
    /// Called when a call to this number ends.
    pub status_callback: Option<String>,
    /// Created, Unix milliseconds.
    pub created_ms: i64,
}

/// A call queue as it is kept (not its callers: their calls end with the node).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredQueue {
    /// `QU` + 32 hex.
    pub sid: String,
    /// The owning account's sid.
    pub account_sid: String,
    /// `FriendlyName`.
    pub name: String,
    /// `MaxSize`.
    pub max_size: u32,
    /// Created, Unix milliseconds.
    pub created_ms: i64,
}

/// The open store of one node.
pub struct Store {
    db: Database,
    path: PathBuf,
    metrics: Metrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or makes) the store in `dir`, making the directory if missing.
    pub fn open(dir: &Path, metrics: Metrics) -> Result<Store, StoreError> {
        let path = dir.join(FILE);
        let failed = |message: String| StoreError::Open {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| failed(e.to_string()))?;
        let store = Store { db, path, metrics };
        // Every table exists from the start, so reads never meet a missing one.
        let txn = store.db.begin_write().map_err(io)?;
        txn.open_table(NUMBERS).map_err(io)?;
        txn.open_table(QUEUES).map_err(io)?;
        clients::create_tables(&txn)?;
        records::create_tables(&txn)?;
        store.commit(txn)?;
        Ok(store)
    }

    /// Commits, counting it and measuring the file after.
    fn commit(&self, txn: redb::WriteTransaction) -> Result<(), StoreError> {
        let committed = txn.commit().map_err(io);
        let outcome = if committed.is_ok() { "ok" } else { "failed" };
        self.metrics
            .store_commits
            .with_label_values(&[outcome])
            .inc();
        if let Ok(meta) = std::fs::metadata(&self.path) {
            self.metrics
                .store_bytes
                .set(i64::try_from(meta.len()).unwrap_or(i64::MAX));
        }
        committed
    }

    /// Keeps a number; on disk when this returns.
    pub fn put_number(&self, number: &StoredNumber) -> Result<(), StoreError> {
        let bytes = codec::encode(number);
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut table = txn.open_table(NUMBERS).map_err(io)?;
            table
                .insert(number.phone_number.as_str(), bytes.as_slice())
                .map_err(io)?;
        }
        self.commit(txn)
    }

    /// Every kept number.
    pub fn numbers(&self) -> Result<Vec<StoredNumber>, StoreError> {
        self.all(NUMBERS, "number")
    }

    /// Keeps a queue (created or changed); on disk when this returns.
    pub fn put_queue(&self, queue: &StoredQueue) -> Result<(), StoreError> {
        let bytes = codec::encode(queue);
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut table = txn.open_table(QUEUES).map_err(io)?;
            table
                .insert(queue.sid.as_str(), bytes.as_slice())
                .map_err(io)?;
        }
        self.commit(txn)
    }

    /// Forgets a deleted queue; on disk when this returns.
    pub fn drop_queue(&self, sid: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut table = txn.open_table(QUEUES).map_err(io)?;
            table.remove(sid).map_err(io)?;
        }
        self.commit(txn)
    }

    /// Every kept queue.
    pub fn queues(&self) -> Result<Vec<StoredQueue>, StoreError> {
        self.all(QUEUES, "queue")
    }

    /// Every record of a table of codec-encoded values.
    fn all<T: Decode<()>>(
        &self,
        table: TableDefinition<'static, &str, &[u8]>,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(table).map_err(io)?;
        let mut records = Vec::new();
        for row in table.iter().map_err(io)? {
            let (_, value) = row.map_err(io)?;
            records.push(codec::decode(value.value()).map_err(|_| StoreError::Corrupt(what))?);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(phone: &str) -> StoredNumber {
        StoredNumber {
            sid: format!("PN{:032x}", 7),
            account_sid: "AC00000000000000000000000000000001".into(),
            phone_number: phone.into(),
            friendly_name: "front desk".into(),
            voice: Some(("http://app.example/voice".into(), "POST".into())),
            sms: None,
            status_callback: None,
            created_ms: 1_765_000_000_000,
        }
    }

    #[test]
    fn numbers_outlive_the_store_that_wrote_them() {
        let dir = std::env::temp_dir().join(format!("sb-store-{}", crate::account::random_hex()));
        {
            let store = Store::open(&dir, Metrics::new()).expect("opens");
            store.put_number(&number("+14155550100")).expect("kept");
            store.put_number(&number("+14155550101")).expect("kept");
        }
        let store = Store::open(&dir, Metrics::new()).expect("opens again");
        let mut phones: Vec<String> = store
            .numbers()
            .expect("reads")
            .into_iter()
            .map(|n| n.phone_number)
            .collect();
        phones.sort();
        assert_eq!(phones, ["+14155550100", "+14155550101"]);
        assert_eq!(store.numbers().unwrap()[0], number("+14155550100"));
        assert!(
            store.metrics.store_bytes.get() > 0,
            "the file's size is measured"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn queues_outlive_the_store_and_a_dropped_one_stays_dropped() {
        let dir = std::env::temp_dir().join(format!("sb-store-{}", crate::account::random_hex()));
        let queue = |n: u32, name: &str| StoredQueue {
            sid: format!("QU{n:032x}"),
            account_sid: "AC00000000000000000000000000000001".into(),
            name: name.into(),
            max_size: n,
            created_ms: 1_765_000_000_000,
        };
        {
            let store = Store::open(&dir, Metrics::new()).expect("opens");
            store.put_queue(&queue(1, "support")).expect("kept");
            store.put_queue(&queue(2, "sales")).expect("kept");
            // A rename is the same sid kept again.
            store.put_queue(&queue(1, "help")).expect("kept");
            store.drop_queue(&queue(2, "sales").sid).expect("dropped");
        }
        let store = Store::open(&dir, Metrics::new()).expect("opens again");
        assert_eq!(store.queues().expect("reads"), [queue(1, "help")]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_a_clear_error() {
        let file =
            std::env::temp_dir().join(format!("sb-store-file-{}", crate::account::random_hex()));
        std::fs::write(&file, b"not a directory").unwrap();
        let error = Store::open(&file, Metrics::new()).expect_err("refused");
        assert!(error.to_string().starts_with("data_dir "), "{error}");
        let _ = std::fs::remove_file(&file);
    }
}
