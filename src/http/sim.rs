//! The simulated telephone network (docs/api.md §7): inbound calls and SMS, key presses
//! and hang-ups, authorised by the Basic credentials of the account that owns the
//! number. JSON in, JSON out.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::publish::read_body;
use super::{ApiError, AppState};
use crate::account::AccountIdx;
use crate::auth::AuthError;
use crate::callrouter::CallInput;
use crate::callrouter::RouterError;

/// Largest simulator request.
const MAX_BODY: usize = 16 * 1024;

/// Registers the simulator routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/Sim/Calls", web::post().to(call))
        .route("/v1/Sim/Calls/{call_sid}/Digits", web::post().to(digits))
        .route("/v1/Sim/Calls/{call_sid}/Hangup", web::post().to(hangup))
        .route("/v1/Sim/Messages", web::post().to(message));
}

fn authenticate(req: &HttpRequest, state: &AppState) -> Result<AccountIdx, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)
        .map_err(|e| state.auth_failed(e))?;
    crate::auth::basic_any(&state.accounts, header).map_err(|e| state.auth_failed(e))
}

async fn json_body<T: for<'de> Deserialize<'de>>(payload: web::Payload) -> Result<T, ApiError> {
    let body = read_body(payload, MAX_BODY).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body: {e}"),
        )
    })
}

fn router_error(error: RouterError) -> ApiError {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let code = match error.status {
        404 => "not_found",
        429 => "quota_exceeded",
        _ => "invalid_parameter",
    };
    ApiError::new(status, code, error.message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCall {
    from: String,
    to: String,
}

async fn call(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = authenticate(&req, &state)?;
    let NewCall { from, to } = json_body(payload).await?;
    if from.is_empty() || from.len() > 64 {
        return Err(ApiError::parameter("from: 1 to 64 characters"));
    }
    let call_sid = state
        .call_router
        .inbound_call(account, &from, &to)
        .map_err(router_error)?;
    Ok(HttpResponse::Created().json(json!({ "call_sid": call_sid })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Digits {
    digits: String,
}

async fn digits(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = authenticate(&req, &state)?;
    let Digits { digits } = json_body(payload).await?;
    let valid = !digits.is_empty()
        && digits.len() <= 64
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'w'));
    if !valid {
        return Err(ApiError::parameter("digits: 1 to 64 of 0-9, *, # and w"));
    }
    state
        .call_router
        .input(account, &path, CallInput::Digits(digits))
        .map_err(router_error)?;
    Ok(HttpResponse::Accepted().json(json!({ "call_sid": path.into_inner() })))
}

async fn hangup(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = authenticate(&req, &state)?;
    state
        .call_router
        .input(account, &path, CallInput::Hangup)
        .map_err(router_error)?;
    Ok(HttpResponse::Accepted().json(json!({ "call_sid": path.into_inner() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    from: String,
    to: String,
    body: String,
}

async fn message(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = authenticate(&req, &state)?;
    let NewMessage { from, to, body } = json_body(payload).await?;
    if body.len() > 1600 {
        return Err(ApiError::parameter("body: at most 1600 characters"));
    }
    let message = state
        .call_router
        .inbound_message(account, &from, &to, &body)
        .await
        .map_err(router_error)?;
    Ok(HttpResponse::Created().json(json!({ "message_sid": message.sid })))
}
