//! Clients' subscriptions beyond this process: in cluster mode a client's
//! stream subscriptions are the same on every node ([`crate::cluster::clients`]);
//! on a durable single node (`data_dir`) every subscription of a client, webhooks
//! included, is kept in the store ([`crate::store::clients`]) and made again
//! after a restart. Otherwise every function here does nothing.
//!
//! Cluster mode:
//!
//! - Before a request that may make a client's session here (a stream connect, a
//!   control-channel request), this node starts reading the client's account if
//!   it does not yet; and if it does not hold the client, the client's shared
//!   entry is read and its subscriptions made here, with their sids, so the
//!   client finds them.
//! - After a request changed them here, the client's whole list is written.
//! - When another node writes a client this node holds, the list here is made
//!   equal to it: its open stream follows without reconnecting.
//!
//! Each step goes through the client's proxy like any control-channel request.
//! Two nodes changing one client within the same few milliseconds: the last
//! write wins on every node (docs/cluster.md).
//!
//! With `data_dir`: after a request changed a client's subscriptions, its whole
//! list is kept before the request is answered; a client this node does not hold
//! gets its kept subscriptions back when it comes; at start, every client with a
//! webhook gets its subscriptions back, each webhook first queueing what it was
//! owed (docs/durability.md, "Sessions and webhooks").

use std::sync::Arc;

use crate::account::AccountIdx;
use crate::actors::proxy::{
    ListSubscriptions, Subscribe, SubscriptionChange, SubscriptionView, Unsubscribe,
    UpdateSubscription,
};
use crate::clock::unix_now;
use crate::cluster::clients::SharedSub;
use crate::filter::{FilterEdit, ScopeGrant};
use crate::http::AppState;
use crate::store::clients::{KeptClient, KeptSub};
use crate::store::log::EventLog;

/// Before a request that may make a session of `client` here: makes sure this
/// node reads the account's messages, then makes the client's shared
/// subscriptions here if this node does not hold it yet (`None`: a client the
/// server named, which nobody comes back to). An entry that cannot be read is
/// logged: the request goes on with what this node has.
pub async fn arrive(state: &AppState, account: AccountIdx, client: Option<&Arc<str>>) {
    if let Some(log) = &state.log {
        if let Some(client) = client {
            if state.topology.directory.owner(account, client).is_none() {
                restore_kept(state, log, account, client, false).await;
            }
        }
        return;
    }
    let Some(backbone) = &state.backbone else {
        return;
    };
    backbone.need(account).await;
    let Some(client) = client else {
        return;
    };
    if state.topology.directory.owner(account, client).is_some() {
        return;
    }
    match backbone.shared_client(account, client).await {
        Ok(shared) if shared.is_empty() => {}
        Ok(shared) => adopt(state, account, client.clone(), shared, true).await,
        Err(error) => tracing::warn!(%error, "cannot read a client's shared subscriptions"),
    }
}

/// Writes the client's stream subscriptions, as `views` lists them, for the
/// other nodes.
pub async fn share(
    state: &AppState,
    account: AccountIdx,
    client: &str,
    views: &[SubscriptionView],
) {
    if let Some(log) = &state.log {
        let kept = KeptClient {
            written_ms: unix_now().saturating_mul(1000),
            subs: views.iter().map(KeptSub::of).collect(),
        };
        if let Err(error) = log.keep_client(account, client, kept).await {
            tracing::warn!(%error, "cannot keep a client's subscriptions");
        }
        return;
    }
    let Some(backbone) = &state.backbone else {
        return;
    };
    let shared: Vec<SharedSub> = views.iter().filter_map(SharedSub::of).collect();
    if let Err(error) = backbone.share_client(account, client, &shared).await {
        tracing::warn!(%error, "cannot share a client's subscriptions");
    }
}

/// Writes the client's stream subscriptions as they are now on this node.
pub async fn share_current(state: &AppState, account: AccountIdx, client: &Arc<str>) {
    if state.backbone.is_none() && state.log.is_none() {
        return;
    }
    let listed = state
        .ask_proxy(ListSubscriptions {
            account,
            client: client.clone(),
        })
        .await;
    match listed {
        Ok(Ok(views)) => share(state, account, client, &views).await,
        Ok(Err(_)) => share(state, account, client, &[]).await,
        Err(error) => {
            tracing::warn!(error = %error.message, "cannot list a client's subscriptions to share them")
        }
    }
}

/// Makes the client's stream subscriptions here equal to `shared`: those missing
/// are added with their sids, those changed are updated, those no longer listed
/// removed. Only for a client this node holds, unless `create`. Webhook
/// subscriptions are left alone. Expired ones are not made.
pub async fn adopt(
    state: &AppState,
    account: AccountIdx,
    client: Arc<str>,
    shared: Vec<SharedSub>,
    create: bool,
) {
    let held = state.topology.directory.owner(account, &client).is_some();
    if !held && !create {
        return;
    }
    let current: Vec<SubscriptionView> = match held {
        false => Vec::new(),
        true => match state
            .ask_proxy(ListSubscriptions {
                account,
                client: client.clone(),
            })
            .await
        {
            Ok(Ok(views)) => views,
            Ok(Err(_)) => Vec::new(),
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot list a client's subscriptions to adopt the shared ones");
                return;
            }
        },
    };
    let now = unix_now();
    let wanted: Vec<&SharedSub> = shared
        .iter()
        .filter(|sub| sub.expires.is_none_or(|at| at > now))
        .collect();
    for view in current.iter().filter(|v| v.callback.is_none()) {
        if !wanted.iter().any(|sub| *sub.sid == *view.sid) {
            let removed = state
                .ask_proxy(Unsubscribe {
                    account,
                    client: client.clone(),
                    sid: view.sid.to_string(),
                })
                .await;
            log_failure("remove", removed.map(|r| r.map_err(|e| e.to_string())));
        }
    }
    for sub in wanted {
        let Ok(subscription) = sub.subscription() else {
            tracing::warn!(sid = %sub.sid, "a shared subscription does not check out");
            continue;
        };
        let here = current.iter().find(|v| *v.sid == *sub.sid);
        match here {
            Some(view) if SharedSub::of(view).as_ref() == Some(sub) => {}
            Some(_) => {
                let change = SubscriptionChange {
                    // Every part replaced: `signed` makes absent scopes mean the
                    // shared grant, not the one the subscription has here.
                    filter: Some(FilterEdit {
                        types: Some(sub.types.clone()),
                        wheres: Some(sub.wheres.clone()),
                        scopes: sub.scopes.clone(),
                        absent_scopes: match sub.scopes {
                            None => ScopeGrant::All,
                            Some(_) => ScopeGrant::only(Vec::<String>::new()),
                        },
                        signed: true,
                    }),
                    expires: Some(sub.expires),
                    callback: None,
                };
                let updated = state
                    .ask_proxy(UpdateSubscription {
                        account,
                        client: client.clone(),
                        sid: sub.sid.clone(),
                        change,
                    })
                    .await;
                log_failure(
                    "update",
                    updated.map(|r| r.map(drop).map_err(|e| e.to_string())),
                );
            }
            None => {
                let added = state
                    .ask_proxy(Subscribe {
                        account,
                        client: client.clone(),
                        subscription,
                        sid: Some(sub.sid.as_str().into()),
                        delivered: None,
                    })
                    .await;
                log_failure("add", added.map(|r| r.map(drop).map_err(|e| e.to_string())));
            }
        }
    }
}

/// Makes the kept subscriptions of `client` (not held here) again, with their
/// sids: every one at start (`at_start`, only called for clients with a
/// webhook), or, when the client comes back, unless its row is older than any
/// signed URL of it could be. Expired subscriptions are not made; a webhook whose
/// callback the egress rules now refuse is skipped with a warning.
async fn restore_kept(
    state: &AppState,
    log: &EventLog,
    account: AccountIdx,
    client: &Arc<str>,
    at_start: bool,
) {
    let sid = &state.accounts.get(account).sid;
    let kept = match log.store().kept_client(sid, client) {
        Ok(Some(kept)) => kept,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot read a client's kept subscriptions");
            return;
        }
    };
    let now = unix_now();
    let max_age_ms = state.config.auth.max_url_lifetime_secs.saturating_mul(1000);
    let stale = kept.written_ms.saturating_add(max_age_ms) < now.saturating_mul(1000);
    let has_webhook = kept.subs.iter().any(|sub| sub.callback.is_some());
    if stale && !has_webhook && !at_start {
        return;
    }
    for kept in kept.subs {
        if kept.sub.expires.is_some_and(|at| at <= now) {
            continue;
        }
        let Ok(mut subscription) = kept.sub.subscription() else {
            tracing::warn!(sid = %kept.sub.sid, "a kept subscription does not check out");
            continue;
        };
        let mut delivered = None;
        if let Some(callback) = &kept.callback {
            if let Err(error) = state.egress.check_url(callback) {
                tracing::warn!(sid = %kept.sub.sid, %error, "a kept webhook's callback is refused now; not restored");
                continue;
            }
            subscription.callback = Some(callback.as_str().into());
            delivered = match log.store().webhook_cursor(&kept.sub.sid) {
                Ok(cursor) => cursor,
                Err(error) => {
                    tracing::warn!(%error, "cannot read a webhook's cursor; it delivers from now on");
                    None
                }
            };
        }
        let added = state
            .ask_proxy(Subscribe {
                account,
                client: client.clone(),
                subscription,
                sid: Some(kept.sub.sid.as_str().into()),
                delivered,
            })
            .await;
        log_failure(
            "restore",
            added.map(|r| r.map(drop).map_err(|e| e.to_string())),
        );
    }
}

/// At start, with `data_dir`: every kept client with a webhook gets its
/// subscriptions back (the others come back with their clients). Returns how
/// many clients were restored.
pub async fn restore_webhooks(state: &AppState) -> usize {
    let Some(log) = &state.log else {
        return 0;
    };
    let rows = match log.store().kept_clients() {
        Ok(rows) => rows,
        Err(error) => {
            tracing::error!(%error, "cannot read the kept clients");
            return 0;
        }
    };
    let mut restored = 0;
    for (account_sid, client, kept) in rows {
        if !kept.subs.iter().any(|sub| sub.callback.is_some()) {
            continue;
        }
        let Some(account) = state.accounts.lookup(&account_sid) else {
            tracing::warn!(account = %account_sid, "a kept client's account is not configured; not restored");
            continue;
        };
        restore_kept(state, log, account, &Arc::from(client), true).await;
        restored += 1;
    }
    restored
}

fn log_failure<T>(what: &str, outcome: Result<Result<T, String>, crate::http::ApiError>) {
    let error = match outcome {
        Ok(Ok(_)) => return,
        Ok(Err(error)) => error,
        Err(error) => error.message,
    };
    tracing::warn!(what, %error, "a shared subscription was not applied here");
}
