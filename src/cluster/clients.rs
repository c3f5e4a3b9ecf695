//! Client sessions shared by the nodes (docs/cluster.md, "Client sessions"): a
//! client's stream subscriptions, whichever node made them, in a JetStream
//! key-value bucket, so the client may reconnect to any node and a control-channel
//! change made on one node reaches its open stream on another.
//!
//! The bucket is `<stream>_CLIENTS`, one key per client, `<AccountSid>.<client>`,
//! whose value is the client's stream subscriptions (codec-encoded). The node that
//! changes them (a control-channel request, or a stream URL that added one) writes
//! the client's whole list; every node watches the bucket and makes the list of a
//! client it holds equal to what was written. A node that does not hold the client
//! reads its entry when the client first comes to it. Webhook subscriptions stay
//! with the node that made them: every node delivering them would post each event
//! once per node.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, stream};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{Backbone, BackboneError};
use crate::account::AccountIdx;
use crate::actors::proxy::{NewSubscription, SubscriptionView};
use crate::codec::{self, Decode, Encode};
use crate::filter::{Filter, ScopeGrant};

/// Largest entry taken from the bucket: far above what `[limits]` lets a client
/// hold, so only a forged entry is refused.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Most subscriptions an entry may list.
const MAX_SUBSCRIPTIONS: usize = 1024;

/// Pause before watching the bucket again after the watch failed.
const RETRY: Duration = Duration::from_secs(1);

/// One stream subscription as the nodes share it: what rebuilds it, sid included.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SharedSub {
    /// `SU` + 32 hex, the same on every node.
    pub sid: String,
    /// Type patterns (empty: every type).
    pub types: Vec<String>,
    /// Canonical `where` clauses.
    pub wheres: Vec<String>,
    /// Granted scopes, `None` for all.
    pub scopes: Option<Vec<String>>,
    /// Unix seconds, `None` while the session lives.
    pub expires: Option<u64>,
}

/// Why an entry of the bucket was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Larger than [`MAX_ENTRY_BYTES`], or more than [`MAX_SUBSCRIPTIONS`].
    #[error("a shared client entry is too large")]
    TooLarge,
    /// Not something a node wrote.
    #[error("a shared client entry does not decode")]
    Malformed,
    /// A subscription's sid or filter does not check out.
    #[error("a shared subscription is not valid: {0}")]
    Invalid(String),
}

impl SharedSub {
    /// The shared form of a stream subscription; `None` for a webhook's.
    pub fn of(view: &SubscriptionView) -> Option<SharedSub> {
        view.callback.is_none().then(|| SharedSub::from_view(view))
    }

    /// A subscription's sid, filter and expiry, webhook or not.
    pub fn from_view(view: &SubscriptionView) -> SharedSub {
        SharedSub {
            sid: view.sid.to_string(),
            types: view.types.clone().unwrap_or_default(),
            wheres: view.wheres.clone(),
            scopes: view.scopes.clone(),
            expires: view.expires,
        }
    }

    /// The subscription again, its filter checked as a control-channel request's.
    pub fn subscription(&self) -> Result<NewSubscription, EntryError> {
        let well_formed_sid = self.sid.len() == 34
            && self.sid.starts_with("SU")
            && self.sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed_sid {
            return Err(EntryError::Invalid("sid".into()));
        }
        // `None` is every scope; a list (even empty) is just those.
        let absent = match self.scopes {
            None => ScopeGrant::All,
            Some(_) => ScopeGrant::only(Vec::<String>::new()),
        };
        let filter = Filter::from_parts(
            self.types.clone(),
            self.wheres.clone(),
            self.scopes.clone(),
            absent,
        )
        .map_err(|error| EntryError::Invalid(error.to_string()))?;
        Ok(NewSubscription {
            filter: Arc::new(filter),
            expires: self.expires,
            callback: None,
        })
    }
}

/// A client's stream subscriptions from its entry's bytes.
pub fn decode_entry(bytes: &[u8]) -> Result<Vec<SharedSub>, EntryError> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge);
    }
    let subs: Vec<SharedSub> = codec::decode(bytes).map_err(|_| EntryError::Malformed)?;
    if subs.len() > MAX_SUBSCRIPTIONS {
        return Err(EntryError::TooLarge);
    }
    Ok(subs)
}

/// The key of a client's entry.
fn key(account_sid: &str, client: &str) -> String {
    format!("{account_sid}.{client}")
}

/// The account sid and client of a key.
fn parse_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('.')
        .filter(|(_, client)| !client.is_empty() && !client.contains('.'))
}

impl Backbone {
    /// The bucket, made if missing (entries expire `max_age` after their last
    /// change). Made as the stream a bucket is (`KV_<bucket>`, one message per
    /// key): async-nats's `create_key_value` first reads the account's JetStream
    /// info in a form nats-server 2.9 does not answer.
    async fn clients(&self) -> Result<kv::Store, BackboneError> {
        let inner = &self.inner;
        inner
            .clients
            .get_or_try_init(|| async {
                let bucket = format!("{}_CLIENTS", inner.stream);
                let made = inner
                    .jetstream
                    .get_or_create_stream(stream::Config {
                        name: format!("KV_{bucket}"),
                        subjects: vec![format!("$KV.{bucket}.>")],
                        max_messages_per_subject: 1,
                        max_age: inner.settings.clients_max_age,
                        max_message_size: MAX_ENTRY_BYTES as i32,
                        storage: stream::StorageType::File,
                        allow_rollup: true,
                        deny_delete: true,
                        allow_direct: true,
                        discard: stream::DiscardPolicy::New,
                        ..Default::default()
                    })
                    .await;
                let store = match made {
                    Ok(_) => inner.jetstream.get_key_value(&bucket).await.ok(),
                    Err(_) => None,
                };
                store.ok_or_else(|| {
                    tracing::warn!(%bucket, "cannot make the bucket of shared clients");
                    BackboneError::NotAcknowledged
                })
            })
            .await
            .cloned()
    }

    /// The client's shared stream subscriptions (none when it has no entry).
    pub async fn shared_client(
        &self,
        account: AccountIdx,
        client: &str,
    ) -> Result<Vec<SharedSub>, BackboneError> {
        if !self.connected() {
            return Err(BackboneError::Unavailable);
        }
        let sid = &self.inner.accounts.get(account).sid;
        let value = self
            .clients()
            .await?
            .get(key(sid, client))
            .await
            .map_err(|_| BackboneError::NotAcknowledged)?;
        match value {
            None => Ok(Vec::new()),
            Some(bytes) => decode_entry(&bytes).map_err(|error| {
                self.shared_rejected(&error);
                BackboneError::NotAcknowledged
            }),
        }
    }

    /// Writes the client's stream subscriptions (an empty list removes its entry).
    pub async fn share_client(
        &self,
        account: AccountIdx,
        client: &str,
        subs: &[SharedSub],
    ) -> Result<(), BackboneError> {
        if !self.connected() {
            return Err(BackboneError::Unavailable);
        }
        let sid = &self.inner.accounts.get(account).sid;
        let store = self.clients().await?;
        let written = match subs {
            [] => store.delete(key(sid, client)).await.map(drop).map_err(drop),
            subs => store
                .put(key(sid, client), codec::encode(&subs.to_vec()).into())
                .await
                .map(drop)
                .map_err(drop),
        };
        self.inner
            .metrics
            .backbone_shared_writes
            .with_label_values(&[if written.is_ok() { "ok" } else { "failed" }])
            .inc();
        written.map_err(|()| BackboneError::NotAcknowledged)
    }

    fn shared_rejected(&self, error: &EntryError) {
        self.inner
            .metrics
            .backbone_rejected
            .with_label_values(&["client_entry"])
            .inc();
        tracing::warn!(%error, "a shared client entry was not taken");
    }

    /// Watches the bucket until `shutdown`, calling `changed` with each client's
    /// new list, in the order written (an entry deleted or expired: an empty
    /// list), from what is written after the node started. Runs on the calling
    /// thread (the server's). After a failure or a reconnect the watch starts
    /// again after the last revision seen.
    pub fn watch_clients<F, Fut>(&self, mut shutdown: watch::Receiver<bool>, changed: F)
    where
        F: Fn(AccountIdx, Arc<str>, Vec<SharedSub>) -> Fut + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let backbone = self.clone();
        actix_rt::spawn(async move {
            let mut next: Option<u64> = None;
            loop {
                tokio::select! {
                    _ = backbone.watch_once(&mut next, &changed) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
            }
        });
    }

    async fn watch_once<F, Fut>(&self, next: &mut Option<u64>, changed: &F)
    where
        F: Fn(AccountIdx, Arc<str>, Vec<SharedSub>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        // A reconnect starts the watch again at once (a restarted NATS forgets it,
        // and the watch would only notice by missed heartbeats).
        let mut connections = self.inner.connections.subscribe();
        connections.mark_unchanged();
        let Ok(store) = self.clients().await else {
            return;
        };
        if next.is_none() {
            // From now on: remember where "now" is, so that a watch made again
            // after a failure misses nothing written in between.
            let Ok(status) = store.status().await else {
                return;
            };
            *next = Some(status.info.state.last_sequence.saturating_add(1));
        }
        let revision = next.unwrap_or(1);
        let watched = store.watch_from_revision(">", revision).await;
        let mut entries = match watched {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "cannot watch the bucket of shared clients");
                return;
            }
        };
        loop {
            let entry = tokio::select! {
                entry = entries.next() => entry,
                _ = connections.changed() => return,
            };
            let Some(Ok(entry)) = entry else { return };
            *next = Some(entry.revision.saturating_add(1));
            let Some((sid, client)) = parse_key(&entry.key) else {
                self.shared_rejected(&EntryError::Malformed);
                continue;
            };
            let Some(account) = self.inner.accounts.lookup(sid) else {
                continue;
            };
            let subs = match entry.operation {
                kv::Operation::Put => match decode_entry(&entry.value) {
                    Ok(subs) => subs,
                    Err(error) => {
                        self.shared_rejected(&error);
                        continue;
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => Vec::new(),
            };
            changed(account, client.into(), subs).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(sid: &str) -> SharedSub {
        SharedSub {
            sid: sid.into(),
            types: vec!["call.*".into()],
            wheres: vec!["data.to^=+1415".into()],
            scopes: Some(vec!["supervisor".into()]),
            expires: Some(1_900_000_000),
        }
    }

    #[test]
    fn a_subscription_crosses_as_its_view_and_back() {
        let original = shared("SU0123456789abcdef0123456789abcdef");
        let entry = codec::encode(&vec![original.clone()]);
        let back = decode_entry(&entry).expect("decodes");
        assert_eq!(back, std::slice::from_ref(&original));
        let subscription = back[0].subscription().expect("checks out");
        assert_eq!(subscription.expires, Some(1_900_000_000));
        assert_eq!(subscription.filter.types_text(), ["call.*"]);
        assert_eq!(
            subscription.filter.scopes_text(),
            Some(vec!["supervisor".into()])
        );
        let every_scope = SharedSub {
            scopes: None,
            ..original
        };
        assert_eq!(
            every_scope.subscription().unwrap().filter.scopes_text(),
            None
        );
    }

    #[test]
    fn forged_entries_are_refused() {
        for sid in [
            "SU0",
            "XX0123456789abcdef0123456789abcdef",
            "SU0123456789abcdef0123456789abcdeZ",
        ] {
            assert_eq!(
                shared(sid).subscription().map(drop),
                Err(EntryError::Invalid("sid".into())),
                "{sid}"
            );
        }
        let bad_filter = SharedSub {
            wheres: vec!["data.x~1".into()],
            ..shared("SU0123456789abcdef0123456789abcdef")
        };
        assert!(matches!(
            bad_filter.subscription(),
            Err(EntryError::Invalid(_))
        ));
        assert_eq!(decode_entry(b"\xff\xff\xff"), Err(EntryError::Malformed));
        assert_eq!(
            decode_entry(&vec![0u8; MAX_ENTRY_BYTES + 1]),
            Err(EntryError::TooLarge)
        );
        let many = vec![shared("SU0123456789abcdef0123456789abcdef"); MAX_SUBSCRIPTIONS + 1];
        assert_eq!(
            decode_entry(&codec::encode(&many)),
            Err(EntryError::TooLarge)
        );
    }

    #[test]
    fn keys_name_one_account_and_one_client() {
        assert_eq!(parse_key(&key("AC1", "web-7")), Some(("AC1", "web-7")));
        for bad in ["AC1", "AC1.", "AC1.a.b"] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }
}
