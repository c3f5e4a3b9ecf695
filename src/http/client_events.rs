//! `POST /v1/Accounts/{AccountSid}/ClientEvents?client=…` (docs/api.md §6): a browser (by
//! signed URL) or a server (Basic auth) sends a `client.*` event; the router stamps
//! the sender's id in `data.client` and routes it like any published event, so
//! subscribers of `client.*` (the call router among them) receive it. WebSocket text
//! frames come through [`send`] too.
//!
//! The sender's [`Grant`] decides before anything is published (docs/api.md §6): a
//! `scope` beyond its `scopes=` and an action on a call it may not steer are 403
//! `forbidden`, neither published nor acted on; an accepted action is carried out
//! only once the event is accepted.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::publish::{accept, accepted, read_body};
use super::stream::cors_policy;
use super::stream::params::{validate_client, QueryParams};
use super::{ApiError, AppState};
use crate::account::AccountIdx;
use crate::auth::Principal;
use crate::config::CorsConfig;
use crate::event::{self, EventId, Limits};
use crate::grant::Grant;

/// Registers the client-events route, with CORS for browsers.
pub fn configure(cfg: &mut web::ServiceConfig, cors: &CorsConfig) {
    cfg.service(
        web::resource("/v1/Accounts/{account_sid}/ClientEvents")
            .wrap(cors_policy(cors))
            .route(web::post().to(post)),
    );
}

async fn post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = state.authenticate(&req, &path)?;
    let (client, grant) = sender(req.query_string(), principal)?;
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "the server is shutting down",
        ));
    }
    let body = read_body(payload, state.config.publish.max_event_bytes).await?;
    let ids = send(&state, principal.account(), &client, &grant, &body, "http").await?;
    Ok(accepted(&ids))
}

/// The sender's client id and grant from a client-events URL: `client` (required),
/// and the `where`, `scopes` and `act` a signed URL grants (docs/api.md §4, §6).
fn sender(raw_query: &str, principal: Principal) -> Result<(String, Grant), ApiError> {
    let mut query = QueryParams::parse(raw_query, &["client", "scopes", "act"])?;
    let (client, scopes, act) = (
        query.take("client"),
        query.take("scopes"),
        query.take("act"),
    );
    let wheres = query.wheres;
    let client =
        client.ok_or_else(|| ApiError::parameter("client: required (the sender's client id)"))?;
    let client = validate_client(&client)?;
    let wheres: Vec<&str> = wheres.iter().map(|w| w.as_ref()).collect();
    let grant = Grant::parse(principal, &wheres, scopes.as_deref(), act.as_deref())?;
    Ok((client, grant))
}

/// Validates one client event, checks it against the sender's grant, stamps the
/// sender, routes it, then carries out the call action it asks for. `via` is the
/// metric label (`http`, `ws`). The one path of both transports.
pub async fn send(
    state: &AppState,
    account: AccountIdx,
    client: &str,
    grant: &Grant,
    body: &[u8],
    via: &'static str,
) -> Result<Vec<EventId>, ApiError> {
    state
        .topology
        .quotas
        .client_event(account, client, std::time::Instant::now())?;
    let mut drafts = event::parse_body(
        body,
        false,
        Limits {
            max_batch: 1,
            max_event_bytes: state.config.publish.max_event_bytes,
        },
    )?;
    let draft = drafts
        .first_mut()
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "body: no event"))?;
    if !draft.type_name.starts_with("client.") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            "events[0].type: a client event's type starts with `client.`",
        ));
    }
    draft.data.insert("client", Value::from(client));
    if let Err(refusal) = grant.may_send(draft.scope.as_deref()) {
        return Err(refused(state, via, refusal.reason(), refusal.into()));
    }
    // The built-in call router acts on client events that name its calls.
    let steer = state
        .call_router
        .authorize(account, grant, draft)
        .map_err(|e| refused(state, via, e.reason(), e.into()))?;
    let ids = accept(state, account, drafts).await?;
    if let Some(steer) = steer {
        state.call_router.steer(account, steer);
    }
    state.metrics.client_events.with_label_values(&[via]).inc();
    Ok(ids)
}

/// Counts and logs a refused client event (reason and status only, never its body),
/// and hands the error back.
fn refused(state: &AppState, via: &'static str, reason: &'static str, error: ApiError) -> ApiError {
    state
        .metrics
        .client_events_refused
        .with_label_values(&[via, reason])
        .inc();
    // debug: a refusal is the sender's mistake or probe; the counter shows the rate.
    tracing::debug!(
        via,
        reason,
        status = error.status.as_u16(),
        "client event refused"
    );
    error
}
