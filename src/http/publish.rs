//! `POST /v1/Accounts/{AccountSid}/Events` (docs/api.md §3): Basic auth, one event, a JSON
//! array or NDJSON; all-or-nothing; 202 once every event is in its shard's mailbox.

use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
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
            .default_service(web::to(self::publish_route)),
    );
}

/// The account sid in `/v1/Accounts/{sid}/Events`; `None` for any other path.
pub fn events_path_sid(path: &str) -> Option<&str> {
    super::account_path_sid(path, "Events")
}

async fn publish_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = match events_path_sid(req.path()).filter(|_| req.method() == Method::POST) {
        Some(sid) => publish_read(&req, sid, payload, &state).await,
        None => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method: the events endpoint takes POST",
        )),
    };
    count_rejection(&state, result.as_ref().err());
    result.map(|ids| accepted(&ids))
}

/// A publish through actix-web: what can be refused before the body is read is (a
/// wrong token does not make the server read 8 MB), then the rest once it is.
async fn publish_read(
    req: &HttpRequest,
    sid: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<EventId>, ApiError> {
    let headers = req.headers();
    let head = PublishHead {
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        content_type: headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
    };
    let checked = before_body(state, sid, &head)?;
    let body = read_body(payload, state.config.publish.max_body_bytes).await?;
    if !state.publish_waits() {
        return publish_body(state, checked, &body);
    }
    // The lane leaves these publishes to this route: the 202 waits for JetStream
    // or the event log.
    let started = Instant::now();
    let drafts = checked_drafts(state, checked, &body, started)?;
    let ids = accept(state, checked.account, drafts).await?;
    observe_latency(state, started);
    Ok(ids)
}

/// The headers a publish reads, as sent (the first of each name).
#[derive(Debug, Clone, Copy)]
pub struct PublishHead<'a> {
    /// `Authorization`.
    pub authorization: Option<&'a [u8]>,
    /// `Content-Type`.
    pub content_type: Option<&'a [u8]>,
}

/// A header value as text when it is visible ASCII (and tabs), as
/// `HeaderValue::to_str` reads it; `None` otherwise.
fn header_text(value: &[u8]) -> Option<&str> {
    // A fold without an early exit vectorises over the whole value (a header is
    // short, and nearly always all visible ASCII).
    let visible = value
        .iter()
        .fold(true, |ok, &b| ok & ((b == b'\t') | (32..127).contains(&b)));
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// A publish that passed the checks that need no body.
#[derive(Debug, Clone, Copy)]
struct Checked {
    account: AccountIdx,
    ndjson: bool,
}

/// Publishes a request whose body was read whole: the events endpoint's one path for
/// both actix-web's route and the front door's lane (which has read the body before
/// the request is looked at). `Ok` is the accepted ids, for the 202.
pub fn publish(
    state: &AppState,
    path_sid: &str,
    head: &PublishHead<'_>,
    body: &[u8],
) -> Result<Vec<EventId>, ApiError> {
    let result = before_body(state, path_sid, head).and_then(|checked| {
        if body.len() > state.config.publish.max_body_bytes {
            return Err(too_large(state.config.publish.max_body_bytes));
        }
        publish_body(state, checked, body)
    });
    count_rejection(state, result.as_ref().err());
    result
}

/// Draining, credentials and the content type.
fn before_body(
    state: &AppState,
    path_sid: &str,
    head: &PublishHead<'_>,
) -> Result<Checked, ApiError> {
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "the server is shutting down",
        ));
    }
    let authorization = head
        .authorization
        .and_then(header_text)
        .ok_or(AuthError::Missing)
        .map_err(|e| state.auth_failed(e))?;
    let account = crate::auth::basic(&state.accounts, path_sid, authorization)
        .map_err(|e| state.auth_failed(e))?;
    let ndjson = content_is_ndjson(head.content_type)?;
    Ok(Checked { account, ndjson })
}

/// Parses, checks the quota and routes: all or nothing.
fn publish_body(state: &AppState, checked: Checked, body: &[u8]) -> Result<Vec<EventId>, ApiError> {
    let started = Instant::now();
    let drafts = checked_drafts(state, checked, body, started)?;
    let ids = route(state, checked.account, drafts)?;
    observe_latency(state, started);
    Ok(ids)
}

/// The request's events, parsed and held to the account's publish rate.
fn checked_drafts(
    state: &AppState,
    checked: Checked,
    body: &[u8],
    started: Instant,
) -> Result<Vec<Draft>, ApiError> {
    let drafts = event::parse_body(
        body,
        checked.ndjson,
        Limits {
            max_batch: state.config.publish.max_batch,
            max_event_bytes: state.config.publish.max_event_bytes,
        },
    )?;
    state
        .topology
        .quotas
        .publish(checked.account, drafts.len(), started)?;
    Ok(drafts)
}

fn observe_latency(state: &AppState, started: Instant) {
    state
        .metrics
        .publish_latency
        .observe(started.elapsed().as_secs_f64());
}

fn count_rejection(state: &AppState, error: Option<&ApiError>) {
    if let Some(error) = error {
        state
            .metrics
            .publish_rejected
            .with_label_values(&[reject_reason(error)])
            .inc();
    }
}

/// The 202: how many events were accepted and their ids,
/// `{"accepted":N,"ids":["EV…",…]}`. Written directly: the ids are fixed-width ASCII,
/// and building a `serde_json::Value` of them first cost more than the rest of the
/// response.
pub fn accepted(ids: &[EventId]) -> HttpResponse {
    HttpResponse::Accepted()
        .content_type(header::ContentType::json())
        .body(accepted_json(ids))
}

/// The body of [`accepted`].
pub fn accepted_json(ids: &[EventId]) -> Vec<u8> {
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
    body
}

/// Routes validated events into this node's shards (see
/// [`crate::publisher::Publisher::route`]).
fn route(
    state: &AppState,
    account: AccountIdx,
    drafts: Vec<Draft>,
) -> Result<Vec<EventId>, ApiError> {
    Ok(state.publisher.route(account, drafts)?)
}

/// Accepts validated events: into this node's shards; with `data_dir` into its
/// event log first; in cluster mode into the cluster's stream (every node's
/// consumer then routes them, this one's too). Shared by publishing and client
/// events.
pub async fn accept(
    state: &AppState,
    account: AccountIdx,
    drafts: Vec<Draft>,
) -> Result<Vec<EventId>, ApiError> {
    match (&state.backbone, &state.log) {
        (Some(backbone), _) => accept_clustered(state, backbone, account, drafts).await,
        (None, Some(log)) => accept_kept(state, log, account, drafts).await,
        (None, None) => route(state, account, drafts),
    }
}

/// Keeps a request in the event log, then routes it: refused before it is kept
/// when its shards have no room, so a 503 never leaves a kept event behind.
async fn accept_kept(
    state: &AppState,
    log: &crate::store::log::EventLog,
    account: AccountIdx,
    drafts: Vec<Draft>,
) -> Result<Vec<EventId>, ApiError> {
    let events = state.publisher.build_owned(account, drafts);
    state.publisher.check_room(account, &events)?;
    let ids = events.iter().map(|event| event.id).collect();
    log.append(account, events).await?;
    Ok(ids)
}

async fn accept_clustered(
    state: &AppState,
    backbone: &crate::cluster::Backbone,
    account: AccountIdx,
    drafts: Vec<Draft>,
) -> Result<Vec<EventId>, ApiError> {
    let events = state.publisher.build(account, drafts);
    backbone.publish(account, &events).await?;
    Ok(events.iter().map(|event| event.id).collect())
}

/// JSON unless the content type says NDJSON; anything else is 415.
fn content_is_ndjson(content_type: Option<&[u8]>) -> Result<bool, ApiError> {
    let Some(value) = content_type else {
        return Ok(false);
    };
    let unsupported = |what: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type: {what} is not accepted; use application/json or application/x-ndjson"
            ),
        )
    };
    // A value that is not text names no type this endpoint takes.
    let text = header_text(value).ok_or_else(|| unsupported("a value that is not text".into()))?;
    let mime = text.split(';').next().unwrap_or("").trim();
    let is = |name: &str| mime.eq_ignore_ascii_case(name);
    if is("application/json") || mime.is_empty() {
        Ok(false)
    } else if is("application/x-ndjson") || is("application/ndjson") {
        Ok(true)
    } else {
        Err(unsupported(
            mime.to_ascii_lowercase().chars().take(64).collect(),
        ))
    }
}

/// Reads the body, refusing with 413 as soon as it passes the limit.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<BytesMut, ApiError> {
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
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("body: at most {limit} bytes"),
    )
}

fn reject_reason(error: &ApiError) -> &'static str {
    match error.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "auth",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE if error.code == "draining" => "draining",
        StatusCode::SERVICE_UNAVAILABLE if error.code == "backbone_unavailable" => "backbone",
        StatusCode::SERVICE_UNAVAILABLE if error.code == "store_unavailable" => "store",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "overload",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::{content_is_ndjson, events_path_sid, header_text};
    use actix_web::http::header::HeaderValue;

    #[test]
    fn header_text_reads_values_as_header_value_to_str_does() {
        for value in [
            &b"Basic eDp5"[..],
            b"application/json; charset=utf-8",
            b"a\tb",
            b"",
            b"caf\xc3\xa9",
            b"\x7f",
            b"\x80",
        ] {
            let expected = HeaderValue::from_bytes(value)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned));
            assert_eq!(header_text(value).map(str::to_owned), expected, "{value:?}");
        }
    }

    #[test]
    fn content_types_pick_the_format_or_are_refused() {
        assert_eq!(content_is_ndjson(None), Ok(false));
        assert_eq!(content_is_ndjson(Some(b"application/json")), Ok(false));
        assert_eq!(
            content_is_ndjson(Some(b"Application/X-NDJSON; q=1")),
            Ok(true)
        );
        let refused = content_is_ndjson(Some(b"text/plain")).unwrap_err();
        assert_eq!(refused.code, "unsupported_media_type");
        assert!(refused.message.starts_with("Content-Type: text/plain"));
        let not_text = content_is_ndjson(Some(b"\xff")).unwrap_err();
        assert_eq!(not_text.code, "unsupported_media_type", "{not_text:?}");
    }

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
