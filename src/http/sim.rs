//! The simulated telephone network (docs/api.md §7): inbound calls and SMS, key presses,
//! speech and hang-ups, authorised by the Basic credentials of the account that owns the
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
use crate::callrouter::RouterError;
use crate::callrouter::{CallInput, Utterance};

/// Largest simulator request.
const MAX_BODY: usize = 16 * 1024;

/// Longest speech, in bytes of UTF-8: a few sentences, more than any `Gather` asks
/// for.
const MAX_SPEECH_BYTES: usize = 1024;

/// The recogniser's `Confidence` when the request gives none.
const DEFAULT_CONFIDENCE: f64 = 0.9;

/// Registers the simulator routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/Sim/Calls", web::post().to(call))
        .route("/v1/Sim/Calls/{call_sid}/Digits", web::post().to(digits))
        .route("/v1/Sim/Calls/{call_sid}/Speech", web::post().to(speech))
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

/// Hands `input` to the account's live call: 202 `{"call_sid"}`.
fn to_call(
    state: &AppState,
    account: AccountIdx,
    call_sid: String,
    input: CallInput,
) -> Result<HttpResponse, ApiError> {
    state
        .call_router
        .input(account, &call_sid, input)
        .map_err(router_error)?;
    Ok(HttpResponse::Accepted().json(json!({ "call_sid": call_sid })))
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
    to_call(
        &state,
        account,
        path.into_inner(),
        CallInput::Digits(digits),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Speech {
    text: String,
    confidence: Option<f64>,
}

/// The caller says `text`, already transcribed. Like keys, it is accepted for any
/// live call; unlike keys, only a `Gather` listening for speech hears it.
async fn speech(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = authenticate(&req, &state)?;
    let said = utterance(json_body(payload).await?)?;
    to_call(&state, account, path.into_inner(), CallInput::Speech(said))
}

/// A `Speech` body checked: `text` trimmed, within [`MAX_SPEECH_BYTES`] and without
/// control characters; `confidence` from 0 to 1, [`DEFAULT_CONFIDENCE`] if absent.
fn utterance(Speech { text, confidence }: Speech) -> Result<Utterance, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_SPEECH_BYTES || text.contains(char::is_control) {
        return Err(ApiError::parameter(
            "text: 1 to 1024 bytes of words, without control characters",
        ));
    }
    let confidence = confidence.unwrap_or(DEFAULT_CONFIDENCE);
    if !(0.0..=1.0).contains(&confidence) {
        return Err(ApiError::parameter("confidence: a number from 0 to 1"));
    }
    Ok(Utterance {
        text: text.to_owned(),
        confidence,
    })
}

async fn hangup(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = authenticate(&req, &state)?;
    to_call(&state, account, path.into_inner(), CallInput::Hangup)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str, confidence: Option<f64>) -> Result<Utterance, String> {
        utterance(Speech {
            text: text.to_owned(),
            confidence,
        })
        .map_err(|error| error.message)
    }

    #[test]
    fn speech_bounds_are_inclusive() {
        let longest = "é".repeat(MAX_SPEECH_BYTES / 2);
        assert_eq!(checked(&longest, Some(1.0)).map(|u| u.text), Ok(longest));
        assert_eq!(
            checked(" billing ", Some(0.0)).map(|u| u.text),
            Ok("billing".into())
        );
        assert_eq!(
            checked("billing", None).map(|u| u.confidence),
            Ok(DEFAULT_CONFIDENCE)
        );
    }

    #[test]
    fn bad_speech_names_the_field() {
        let too_long = "a".repeat(MAX_SPEECH_BYTES + 1);
        for text in ["", " \t ", &too_long, "bill\ning", "\u{7}"] {
            let refused = checked(text, Some(0.5)).expect_err(text);
            assert!(refused.starts_with("text: "), "{text:?}: {refused}");
        }
        for confidence in [-0.01, 1.01, f64::NAN] {
            let refused = checked("billing", Some(confidence)).expect_err("out of range");
            assert!(
                refused.starts_with("confidence: "),
                "{confidence}: {refused}"
            );
        }
    }
}
