//! The call router's records on disk: calls (live and ended) and SMS messages,
//! so the `Calls` and `Messages` lists outlive a restart within
//! `call_router.keep_ended`, and a call a crash interrupted is known as such.
//!
//! - `calls`: call sid → [`KeptCall`];
//! - `sms`: message sid → [`KeptMessage`].
//!
//! Rows are written by the log's writer thread ([`super::log`]) as calls change
//! (no caller waits: a call's program never stalls on the disk), and dropped when
//! the router lets a record go.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{io, Store, StoreError};
use crate::codec::{self, Decode, Encode};

const CALLS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("calls");
const SMS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("sms");

/// A call as kept: [`crate::callrouter::records::CallRecord`] with its account by
/// sid and its times as Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeptCall {
    /// `CA` + 32 hex.
    pub sid: String,
    /// The owner's sid.
    pub account_sid: String,
    /// The dialling call of a `<Dial>` leg.
    pub parent: Option<String>,
    /// Called number.
    pub to: String,
    /// Caller.
    pub from: String,
    /// Twilio's status name.
    pub status: String,
    /// Twilio's direction name.
    pub direction: String,
    /// Created.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
    /// Answered.
    pub start_ms: Option<i64>,
    /// Ended.
    pub end_ms: Option<i64>,
    /// Simulated seconds from answer to end.
    pub duration: Option<u64>,
}

/// An SMS as kept.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeptMessage {
    /// `SM` + 32 hex.
    pub sid: String,
    /// The owner's sid.
    pub account_sid: String,
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
    /// Text.
    pub body: String,
    /// `sent`, `received` or `failed`.
    pub status: String,
    /// `outbound-api`, `inbound` or `outbound-reply`.
    pub direction: String,
    /// Created.
    pub created_ms: i64,
    /// Twilio's error code of a failed message.
    pub error_code: Option<u16>,
}

/// A change to the records, within a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// A call as it is now.
    Call(KeptCall),
    /// A call the router let go.
    DropCall(String),
    /// A message.
    Message(KeptMessage),
    /// A message the router let go.
    DropMessage(String),
}

/// Largest row taken back: far above any record, so only a damaged one is
/// refused.
const MAX_ROW_BYTES: usize = 64 * 1024;

impl Store {
    /// Every kept call and message. Rows that do not decode are skipped with a
    /// warning.
    pub fn records(&self) -> Result<(Vec<KeptCall>, Vec<KeptMessage>), StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        Ok((read_all(&txn, CALLS)?, read_all(&txn, SMS)?))
    }
}

fn read_all<T: Decode<()>>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<'static, &str, &[u8]>,
) -> Result<Vec<T>, StoreError> {
    let table = txn.open_table(table).map_err(io)?;
    let mut rows = Vec::new();
    for row in table.iter().map_err(io)? {
        let (sid, value) = row.map_err(io)?;
        let bytes = value.value();
        match (bytes.len() <= MAX_ROW_BYTES)
            .then(|| codec::decode(bytes).ok())
            .flatten()
        {
            Some(record) => rows.push(record),
            None => tracing::warn!(sid = sid.value(), "a kept record is skipped"),
        }
    }
    Ok(rows)
}

/// Makes the records' tables (at open, so reads never meet a missing one).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CALLS).map_err(io)?;
    txn.open_table(SMS).map_err(io)?;
    Ok(())
}

/// Applies `writes` in `txn`, in order.
pub(super) fn apply(txn: &WriteTransaction, writes: &[RecordWrite]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut calls = txn.open_table(CALLS).map_err(io)?;
    let mut sms = txn.open_table(SMS).map_err(io)?;
    for write in writes {
        match write {
            RecordWrite::Call(call) => {
                calls
                    .insert(call.sid.as_str(), codec::encode(call).as_slice())
                    .map_err(io)?;
            }
            RecordWrite::DropCall(sid) => {
                calls.remove(sid.as_str()).map_err(io)?;
            }
            RecordWrite::Message(message) => {
                sms.insert(message.sid.as_str(), codec::encode(message).as_slice())
                    .map_err(io)?;
            }
            RecordWrite::DropMessage(sid) => {
                sms.remove(sid.as_str()).map_err(io)?;
            }
        }
    }
    Ok(())
}
