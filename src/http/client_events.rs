//! `POST /v1/Accounts/{AccountSid}/ClientEvents?client=…` (API.md §6): a browser (by
//! signed URL) or a server (Basic auth) sends a `client.*` event; the router stamps
//! the sender's id in `data.client` and routes it like any published event, so
//! subscribers of `client.*` (the call router among them) receive it. WebSocket text
//! frames come through [`send`] too.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::publish::{accepted, read_body, route};
use super::stream::cors_policy;
use super::stream::params::validate_client;
use super::{ApiError, AppState};
use crate::account::AccountIdx;
use crate::config::CorsConfig;
use crate::event::{self, Limits};

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
    let client = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == "client")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| ApiError::parameter("client: required (the sender's client id)"))?;
    let client = validate_client(&client)?;
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "the server is shutting down",
        ));
    }
    let body = read_body(payload, state.config.publish.max_event_bytes).await?;
    let ids = send(&state, principal.account(), &client, &body, "http").await?;
    Ok(accepted(&ids))
}

/// Validates one client event, stamps the sender and routes it. `via` is the metric
/// label (`http`, `ws`).
pub async fn send(
    state: &AppState,
    account: AccountIdx,
    client: &str,
    body: &[u8],
    via: &'static str,
) -> Result<Vec<String>, ApiError> {
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
    draft.data.insert("client".into(), Value::from(client));
    // The built-in call router acts on client events that name its calls.
    state.call_router.client_event(account, draft);
    let ids = route(state, account, drafts).await?;
    state.metrics.client_events.with_label_values(&[via]).inc();
    Ok(ids)
}
