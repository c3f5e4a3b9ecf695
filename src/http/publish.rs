//! `POST /v1/Accounts/{AccountSid}/Events` (API.md §3): Basic auth, one event, a JSON
//! array or NDJSON; all-or-nothing; 202 once every event is in its shard's mailbox.

use std::time::Instant;

use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::{guard, web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;

use super::{ApiError, AppState};
use crate::account::AccountIdx;
use crate::auth::AuthError;
use crate::event::{self, Draft, EventId, Limits};

/// Registers the publish route, matched without a regular expression: actix's router
/// compiles every `{param}` pattern to one, which took about 6% of the CPU of a
/// one-event publish. A static prefix and a guard on the path's shape pick the route,
/// and the handler reads the sid from the path itself.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/Accounts")
            .guard(guard::fn_guard(|ctx| {
                events_path_sid(ctx.head().uri.path()).is_some()
            }))
            .default_service(web::to(publish)),
    );
}

/// The account sid in `/v1/Accounts/{sid}/Events`; `None` for any other path.
fn events_path_sid(path: &str) -> Option<&str> {
    let sid = path
        .strip_prefix("/v1/Accounts/")?
        .strip_suffix("/Events")?;
    (!sid.is_empty() && !sid.contains('/')).then_some(sid)
}

async fn publish(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = match events_path_sid(req.path()) {
        Some(sid) if req.method() == Method::POST => accept(&req, sid, payload, &state).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method: the events endpoint takes POST",
        )),
    };
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
    state
        .topology
        .quotas
        .publish(account, drafts.len(), Instant::now())?;
    let ids = route(state, account, drafts)?;
    state
        .metrics
        .publish_latency
        .observe(started.elapsed().as_secs_f64());
    Ok(accepted(&ids))
}

/// The 202 body: how many events were accepted and their ids,
/// `{"accepted":N,"ids":["EV…",…]}`. Written directly: the ids are fixed-width ASCII,
/// and building a `serde_json::Value` of them first cost more than the rest of the
/// response.
pub fn accepted(ids: &[EventId]) -> HttpResponse {
    let mut body = Vec::with_capacity(32 + 37 * ids.len());
    body.extend_from_slice(b"{\"accepted\":");
    body.extend_from_slice(ids.len().to_string().as_bytes());
    body.extend_from_slice(b",\"ids\":[");
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.push(b'"');
        body.extend_from_slice(&id.text());
        body.push(b'"');
    }
    body.extend_from_slice(b"]}");
    HttpResponse::Accepted()
        .content_type(header::ContentType::json())
        .body(body)
}

/// Routes validated events (see [`crate::publisher::Publisher::route`]); shared by
/// publishing and client events.
pub fn route(
    state: &AppState,
    account: AccountIdx,
    drafts: Vec<Draft>,
) -> Result<Vec<EventId>, ApiError> {
    Ok(state.publisher.route(account, drafts)?)
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
        .trim();
    let is = |name: &str| mime.eq_ignore_ascii_case(name);
    if is("application/json") || mime.is_empty() {
        Ok(false)
    } else if is("application/x-ndjson") || is("application/ndjson") {
        Ok(true)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type: {} is not accepted; use application/json or application/x-ndjson",
                mime.to_ascii_lowercase()
                    .chars()
                    .take(64)
                    .collect::<String>()
            ),
        ))
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

#[cfg(test)]
mod tests {
    use super::events_path_sid;

    #[test]
    fn only_the_events_path_of_one_account_matches() {
        let sid = "AC00000000000000000000000000000001";
        assert_eq!(
            events_path_sid(&format!("/v1/Accounts/{sid}/Events")),
            Some(sid)
        );
        for other in [
            "/v1/Accounts//Events",
            "/v1/Accounts/AC1/x/Events",
            "/v1/Accounts/AC1/ClientEvents",
            "/v1/Accounts/AC1/Events/",
            "/v1/Accounts/AC1/Stream",
            "/v2/Accounts/AC1/Events",
            "/v1/Accounts/Events",
        ] {
            assert_eq!(events_path_sid(other), None, "{other}");
        }
    }
}
