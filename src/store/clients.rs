//! Clients' subscriptions on disk, so they outlive a restart: one row per client
//! with its whole list, written after each control-channel change (as cluster
//! mode shares it, [`crate::cluster::clients`]), webhooks included; and for each
//! webhook subscription the position up to which its callback has acknowledged
//! every event, so a restarted node delivers what was still queued.
//!
//! - `clients`: (account sid, client) → [`KeptClient`] (codec-encoded);
//! - `webhook_cursors`: subscription sid → position.
//!
//! Rows are written by the log's writer thread ([`super::log`]) in its group
//! commits; reads run anywhere.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{io, Store, StoreError};
use crate::cluster::clients::SharedSub;
use crate::codec::{self, Decode, Encode};

const CLIENTS: TableDefinition<'static, (&str, &str), &[u8]> = TableDefinition::new("clients");
const WEBHOOK_CURSORS: TableDefinition<'static, &str, u64> =
    TableDefinition::new("webhook_cursors");

/// Largest row taken back: far above what `[limits]` lets a client hold, so only
/// a damaged row is refused.
const MAX_ROW_BYTES: usize = 1 << 20;

/// A client's subscriptions as kept.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeptClient {
    /// When the row was written, Unix milliseconds: a client with no webhook
    /// whose row is older than `auth.max_url_lifetime_secs` is not restored (no
    /// signed URL of it can still be valid).
    pub written_ms: u64,
    /// Its subscriptions.
    pub subs: Vec<KeptSub>,
}

/// One subscription as kept.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeptSub {
    /// The subscription, as cluster mode shares it (sid, filter, expiry).
    pub sub: SharedSub,
    /// The callback of a webhook subscription.
    pub callback: Option<String>,
}

/// A write to the clients' tables, within a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientWrite {
    /// The client's whole list (an empty list removes the row).
    Client {
        /// The client's account.
        account_sid: String,
        /// The client's id.
        client: String,
        /// Its subscriptions now.
        kept: KeptClient,
    },
    /// A webhook's callback acknowledged every event up to this position.
    Delivered {
        /// The webhook subscription's sid.
        sid: String,
        /// The position.
        position: u64,
    },
}

impl KeptSub {
    /// The kept form of a subscription, webhook or not.
    pub fn of(view: &crate::actors::proxy::SubscriptionView) -> KeptSub {
        KeptSub {
            sub: SharedSub::from_view(view),
            callback: view.callback.as_deref().map(str::to_owned),
        }
    }
}

impl Store {
    /// Every kept client: `(account sid, client, row)`. A row that does not
    /// decode is skipped with a warning (it names no secret).
    pub fn kept_clients(&self) -> Result<Vec<(String, String, KeptClient)>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(CLIENTS).map_err(io)?;
        let mut rows = Vec::new();
        for row in table.iter().map_err(io)? {
            let (key, value) = row.map_err(io)?;
            let (account, client) = key.value();
            match decode_row(value.value()) {
                Ok(kept) => rows.push((account.to_owned(), client.to_owned(), kept)),
                Err(error) => tracing::warn!(%error, client, "a kept client is skipped"),
            }
        }
        Ok(rows)
    }

    /// One client's row, if kept.
    pub fn kept_client(
        &self,
        account_sid: &str,
        client: &str,
    ) -> Result<Option<KeptClient>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(CLIENTS).map_err(io)?;
        let value = table.get((account_sid, client)).map_err(io)?;
        value.map(|v| decode_row(v.value())).transpose()
    }

    /// Forgets at most `budget` clients whose row holds no webhook and was last
    /// written more than `max_age_ms` before `now_ms`: no signed URL of them can
    /// still be valid, and they would not be restored (clients come and go, and
    /// their rows must not pile up). Returns how many went.
    pub fn prune_clients(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        budget: usize,
    ) -> Result<usize, StoreError> {
        let oldest_kept = now_ms.saturating_sub(max_age_ms);
        let txn = self.db.begin_write().map_err(io)?;
        let stale: Vec<(String, String)> = {
            let table = txn.open_table(CLIENTS).map_err(io)?;
            let mut stale = Vec::new();
            for row in table.iter().map_err(io)? {
                let (key, value) = row.map_err(io)?;
                let gone = decode_row(value.value()).map_or(true, |kept| {
                    kept.written_ms < oldest_kept && kept.subs.iter().all(|s| s.callback.is_none())
                });
                if gone {
                    let (account, client) = key.value();
                    stale.push((account.to_owned(), client.to_owned()));
                    if stale.len() >= budget {
                        break;
                    }
                }
            }
            stale
        };
        if stale.is_empty() {
            return Ok(0);
        }
        {
            let mut table = txn.open_table(CLIENTS).map_err(io)?;
            for (account, client) in &stale {
                table
                    .remove((account.as_str(), client.as_str()))
                    .map_err(io)?;
            }
        }
        self.commit(txn)?;
        Ok(stale.len())
    }

    /// The position a webhook's callback has acknowledged everything up to.
    pub fn webhook_cursor(&self, sid: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(WEBHOOK_CURSORS).map_err(io)?;
        Ok(table.get(sid).map_err(io)?.map(|v| v.value()))
    }
}

fn decode_row(bytes: &[u8]) -> Result<KeptClient, StoreError> {
    if bytes.len() > MAX_ROW_BYTES {
        return Err(StoreError::Corrupt("client"));
    }
    codec::decode(bytes).map_err(|_| StoreError::Corrupt("client"))
}

/// Makes the clients' tables (at open, so reads never meet a missing one).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CLIENTS).map_err(io)?;
    txn.open_table(WEBHOOK_CURSORS).map_err(io)?;
    Ok(())
}

/// Applies `writes` in `txn`. A client's new list drops the cursors of its
/// webhooks that are gone.
pub(super) fn apply(txn: &WriteTransaction, writes: &[ClientWrite]) -> Result<(), StoreError> {
    let mut clients = txn.open_table(CLIENTS).map_err(io)?;
    let mut cursors = txn.open_table(WEBHOOK_CURSORS).map_err(io)?;
    for write in writes {
        match write {
            ClientWrite::Client {
                account_sid,
                client,
                kept,
            } => {
                let key = (account_sid.as_str(), client.as_str());
                let before = clients
                    .get(key)
                    .map_err(io)?
                    .and_then(|v| decode_row(v.value()).ok());
                for gone in before.iter().flat_map(|b| &b.subs).filter(|old| {
                    old.callback.is_some() && !kept.subs.iter().any(|s| s.sub.sid == old.sub.sid)
                }) {
                    cursors.remove(gone.sub.sid.as_str()).map_err(io)?;
                }
                if kept.subs.is_empty() {
                    clients.remove(key).map_err(io)?;
                } else {
                    clients
                        .insert(key, codec::encode(kept).as_slice())
                        .map_err(io)?;
                }
            }
            ClientWrite::Delivered { sid, position } => {
                cursors.insert(sid.as_str(), *position).map_err(io)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::events::Writes;

    const A: &str = "AC00000000000000000000000000000001";

    fn sub(n: u8, callback: Option<&str>) -> KeptSub {
        KeptSub {
            sub: SharedSub {
                sid: format!("SU{:032x}", n),
                types: vec!["call.*".into()],
                wheres: Vec::new(),
                scopes: None,
                expires: None,
            },
            callback: callback.map(str::to_owned),
        }
    }

    fn client_write(client: &str, subs: Vec<KeptSub>) -> ClientWrite {
        ClientWrite::Client {
            account_sid: A.into(),
            client: client.into(),
            kept: KeptClient {
                written_ms: 7,
                subs,
            },
        }
    }

    fn write(store: &Store, clients: &[ClientWrite]) {
        let mut state = store.log_state().expect("state");
        let writes = Writes {
            clients,
            ..Writes::default()
        };
        store.write(&mut state, writes).expect("kept");
    }

    #[test]
    fn clients_and_webhook_cursors_outlive_the_store_and_go_with_their_subscription() {
        let dir = std::env::temp_dir().join(format!("sb-clients-{}", crate::account::random_hex()));
        let hook = sub(2, Some("https://hooks.example/in"));
        {
            let store = Store::open(&dir, Metrics::new()).expect("opens");
            write(
                &store,
                &[
                    client_write("desk", vec![sub(1, None), hook.clone()]),
                    ClientWrite::Delivered {
                        sid: hook.sub.sid.clone(),
                        position: 4096,
                    },
                ],
            );
        }
        let store = Store::open(&dir, Metrics::new()).expect("opens again");
        let rows = store.kept_clients().expect("reads");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), (A, "desk"));
        assert_eq!(rows[0].2.subs, [sub(1, None), hook.clone()]);
        assert_eq!(store.webhook_cursor(&hook.sub.sid).unwrap(), Some(4096));
        assert!(store.kept_client(A, "other").unwrap().is_none());

        // The webhook is deleted: its cursor goes too; an empty list, the row.
        write(&store, &[client_write("desk", vec![sub(1, None)])]);
        assert_eq!(store.webhook_cursor(&hook.sub.sid).unwrap(), None);
        assert_eq!(store.kept_client(A, "desk").unwrap().unwrap().subs.len(), 1);
        write(&store, &[client_write("desk", Vec::new())]);
        assert!(store.kept_clients().unwrap().is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_clients_without_webhooks_are_forgotten_within_the_budget() {
        let dir = std::env::temp_dir().join(format!("sb-clients-{}", crate::account::random_hex()));
        let store = Store::open(&dir, Metrics::new()).expect("opens");
        // Written at 7 ms: "old" and "older" hold stream subscriptions only.
        write(
            &store,
            &[
                client_write("old", vec![sub(1, None)]),
                client_write("older", vec![sub(2, None)]),
                client_write("hooked", vec![sub(3, Some("https://hooks.example/in"))]),
            ],
        );
        assert_eq!(
            store.prune_clients(100, 1000, 10).unwrap(),
            0,
            "not stale yet"
        );
        assert_eq!(
            store.prune_clients(2000, 1000, 1).unwrap(),
            1,
            "the budget holds"
        );
        assert_eq!(store.prune_clients(2000, 1000, 10).unwrap(), 1);
        let left: Vec<String> = store
            .kept_clients()
            .unwrap()
            .into_iter()
            .map(|(_, client, _)| client)
            .collect();
        assert_eq!(left, ["hooked"], "a webhook is kept until it is deleted");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
