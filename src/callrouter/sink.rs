//! Where call events go: into this process's event router (the default), or over
//! docs/api.md §3's publish endpoint to a remote event router (`call_router.publish_url`),
//! with each account's own credentials, so a call router can run apart from the
//! event routers it feeds.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::json;

use crate::account::{AccountIdx, Accounts};
use crate::event::Draft;
use crate::publisher::Publisher;

/// Retries of a call event the cluster's stream did not take: with
/// [`CLUSTER_RETRY`] between them, a call waits out 30 s of a NATS outage before it
/// gives an event up.
const CLUSTER_ATTEMPTS: u32 = 150;

/// The pause before each of [`CLUSTER_ATTEMPTS`].
const CLUSTER_RETRY: Duration = Duration::from_millis(200);

/// Attempts at a remote publish answered 429/503 before the event is given up.
const REMOTE_ATTEMPTS: u32 = 3;

/// Why an event did not reach its router.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The in-process router refused it (overload, shutdown).
    #[error(transparent)]
    Local(#[from] crate::publisher::PublishError),
    /// The node's event log did not keep it.
    #[error(transparent)]
    Kept(#[from] crate::store::StoreError),
    /// The cluster's stream did not take it.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::BackboneError),
    /// The remote router could not be reached or refused it.
    #[error("remote event router: {0}")]
    Remote(String),
}

/// The destination of call events.
#[derive(Clone)]
pub enum EventSink {
    /// This process's shards.
    InProcess(Box<Publisher>),
    /// The cluster's stream (cluster mode): every node, this one too, routes the
    /// event from there.
    Cluster {
        /// Builds the event.
        publisher: Box<Publisher>,
        /// Stores it.
        backbone: crate::cluster::Backbone,
    },
    /// This process's event log (`data_dir`), then its shards.
    Kept {
        /// Builds the event.
        publisher: Box<Publisher>,
        /// Keeps and routes it.
        log: crate::store::log::EventLog,
    },
    /// Another Switchboard's publish endpoint.
    Remote {
        /// Its base URL (`http://host:port`).
        base: Url,
        /// Credentials of each account, used as Basic auth there.
        accounts: Arc<Accounts>,
        /// Pooled HTTP client.
        http: reqwest::Client,
    },
}

impl EventSink {
    /// A sink to a remote router at `base`.
    pub fn remote(base: Url, accounts: Arc<Accounts>) -> EventSink {
        EventSink::Remote {
            base,
            accounts,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Publishes one event; resolves when the router has accepted it, so a call's
    /// events stay in order. In process, a busy shard takes it anyway (see
    /// [`Publisher::route_call_event`]): only a stopping router refuses. A remote
    /// router that answers 429/503 is retried after its `Retry-After`.
    pub async fn publish(&self, account: AccountIdx, draft: Draft) -> Result<(), SinkError> {
        match self {
            EventSink::InProcess(publisher) => Ok(publisher.route_call_event(account, draft)?),
            EventSink::Kept { publisher, log } => {
                let events = publisher.build_owned(account, vec![draft]);
                Ok(log.append(account, events).await?)
            }
            EventSink::Cluster {
                publisher,
                backbone,
            } => {
                // Built once, so a retry stores the same id (JetStream drops a
                // duplicate); the call waits out a short outage of NATS.
                let events = publisher.build(account, vec![draft]);
                let mut attempts = 0;
                loop {
                    match backbone.publish(account, &events).await {
                        Ok(()) => return Ok(()),
                        Err(error) if attempts >= CLUSTER_ATTEMPTS => return Err(error.into()),
                        Err(_) => {
                            attempts += 1;
                            tokio::time::sleep(CLUSTER_RETRY).await;
                        }
                    }
                }
            }
            EventSink::Remote {
                base,
                accounts,
                http,
            } => {
                let account = accounts.get(account);
                let url = base
                    .join(&format!("v1/Accounts/{}/Events", account.sid))
                    .map_err(|e| SinkError::Remote(e.to_string()))?;
                let body = json!({
                    "type": draft.type_name,
                    "call_sid": draft.call_sid,
                    "scope": draft.scope,
                    "data": draft.data.map(),
                });
                for attempt in 1..=REMOTE_ATTEMPTS {
                    let response = http
                        .post(url.clone())
                        .basic_auth(&*account.sid, Some(&*account.auth_token))
                        .json(&body)
                        .send()
                        .await
                        .map_err(|e| SinkError::Remote(e.without_url().to_string()))?;
                    match response.status() {
                        StatusCode::ACCEPTED => return Ok(()),
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                            if attempt < REMOTE_ATTEMPTS =>
                        {
                            let wait = response
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse::<u64>().ok())
                                .unwrap_or(1)
                                .min(5);
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                        }
                        status => {
                            return Err(SinkError::Remote(format!("answered {status}")));
                        }
                    }
                }
                Err(SinkError::Remote("still overloaded".into()))
            }
        }
    }
}
