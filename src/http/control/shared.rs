//! Cluster mode: a client's stream subscriptions the same on every node
//! ([`crate::cluster::clients`]). Standalone, every function here does nothing.
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

/// Before a request that may make a session of `client` here: makes sure this
/// node reads the account's messages, then makes the client's shared
/// subscriptions here if this node does not hold it yet (`None`: a client the
/// server named, which nobody comes back to). An entry that cannot be read is
/// logged: the request goes on with what this node has.
pub async fn arrive(state: &AppState, account: AccountIdx, client: Option<&Arc<str>>) {
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
    if state.backbone.is_none() {
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
        .filter(|sub| sub.expires.map_or(true, |at| at > now))
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
                    })
                    .await;
                log_failure("add", added.map(|r| r.map(drop).map_err(|e| e.to_string())));
            }
        }
    }
}

fn log_failure<T>(what: &str, outcome: Result<Result<T, String>, crate::http::ApiError>) {
    let error = match outcome {
        Ok(Ok(_)) => return,
        Ok(Err(error)) => error,
        Err(error) => error.message,
    };
    tracing::warn!(what, %error, "a shared subscription was not applied here");
}
