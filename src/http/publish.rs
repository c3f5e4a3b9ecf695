//! `POST /v1/Accounts/{AccountSid}/Events` (API.md §3): Basic auth, one event, a JSON
//! array or NDJSON; all-or-nothing; 202 only once every event has reached its shard
//! and the shard has handed it to the proxies that want it.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::future::join_all;
use futures_util::StreamExt;

use super::{ApiError, AppState};
use crate::account::AccountIdx;
use crate::actors::distributor::ShardMap;
use crate::actors::shard::Publish;
use crate::auth::AuthError;
use crate::event::{self, Draft, Event, Limits, SharedEvent};
use crate::metrics::family;

/// Registers the publish route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/Accounts/{account_sid}/Events", web::post().to(publish));
}

async fn publish(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = accept(&req, &path, payload, &state).await;
    if let Err(error) = &result {
        state
            .metrics
            .publish_rejected
            .with_label_values(&[reject_reason(error)])
            .inc();
    }
    result
}

async fn accept(
    req: &HttpRequest,
    path_sid: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "the server is shutting down",
        ));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)
        .map_err(|e| state.auth_failed(e))?;
    let account = crate::auth::basic(&state.accounts, path_sid, authorization)
        .map_err(|e| state.auth_failed(e))?;
    let ndjson = body_is_ndjson(req)?;
    let body = read_body(payload, state.config.publish.max_body_bytes).await?;
    let started = Instant::now();
    let drafts = event::parse_body(
        &body,
        ndjson,
        Limits {
            max_batch: state.config.publish.max_batch,
            max_event_bytes: state.config.publish.max_event_bytes,
        },
    )?;
    let ids = route(state, account, drafts).await?;
    state
        .metrics
        .publish_latency
        .observe(started.elapsed().as_secs_f64());
    Ok(accepted(&ids))
}

/// The 202 body: how many events were accepted and their ids.
pub fn accepted(ids: &[String]) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({"accepted": ids.len(), "ids": ids}))
}

/// Builds validated events and routes them to their shards, all or nothing; resolves
/// once every event has reached its shard and the proxies that want it. Shared by
/// publishing and client events.
pub async fn route(
    state: &AppState,
    account: AccountIdx,
    drafts: Vec<Draft>,
) -> Result<Vec<String>, ApiError> {
    let timestamp = event::now_rfc3339();
    let sid = state.account_sid(account);
    let events: Vec<SharedEvent> = drafts
        .into_iter()
        .map(|draft| Arc::new(Event::build(account, sid, draft, &timestamp)))
        .collect();
    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    let families: Vec<&'static str> = events.iter().map(|e| family(&e.type_name)).collect();

    let map = state.topology.distributor.current();
    let batches = split_by_shard(&map, events);
    reserve(&map, &batches, state.config.publish.shard_queue as i64)?;
    let sends = batches
        .into_iter()
        .enumerate()
        .filter(|(_, events)| !events.is_empty())
        .map(|(shard, events)| map.shards[shard].addr.send(Publish { events }));
    for result in join_all(sends).await {
        // A shard only goes away while the server stops.
        result.map_err(|_| ApiError::unavailable("draining", "the server is shutting down"))?;
    }
    for f in families {
        state.metrics.published.with_label_values(&[f]).inc();
    }
    Ok(ids)
}

/// Groups events by owning shard, keeping publication order within each shard.
fn split_by_shard(map: &ShardMap, events: Vec<SharedEvent>) -> Vec<Vec<SharedEvent>> {
    let mut batches: Vec<Vec<SharedEvent>> = vec![Vec::new(); map.shards.len()];
    for event in events {
        let shard = map.shard_for(event.account, event.call_sid.as_deref());
        batches[shard].push(event);
    }
    batches
}

/// Takes one queue slot on every target shard, or none: a request either goes to all
/// of its shards or is refused whole with 503, so a batch is never half published.
fn reserve(map: &ShardMap, batches: &[Vec<SharedEvent>], limit: i64) -> Result<(), ApiError> {
    let targets: Vec<usize> = (0..batches.len())
        .filter(|&i| !batches[i].is_empty())
        .collect();
    for (n, &shard) in targets.iter().enumerate() {
        let depth = &map.shards[shard].depth;
        depth.inc();
        if depth.get() > limit {
            for &taken in &targets[..=n] {
                map.shards[taken].depth.dec();
            }
            return Err(ApiError::unavailable(
                "overloaded",
                "a broker shard's queue is full; retry shortly",
            ));
        }
    }
    Ok(())
}

/// JSON unless the content type says NDJSON; anything else is 415.
pub fn body_is_ndjson(req: &HttpRequest) -> Result<bool, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(false);
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Ok(false),
        "application/x-ndjson" | "application/ndjson" => Ok(true),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type: {} is not accepted; use application/json or application/x-ndjson",
                mime.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// Reads the body, refusing with 413 as soon as it passes the limit.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<BytesMut, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body: at most {limit} bytes"),
        )
    };
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn reject_reason(error: &ApiError) -> &'static str {
    match error.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "auth",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE if error.code == "draining" => "draining",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "overload",
        _ => "invalid",
    }
}
