//! `POST /v1/Accounts/{AccountSid}/SignedUrls` (docs/api.md §9): an app server that
//! would rather not implement HMAC sends a path and a lifetime with its Basic
//! credentials and gets the signed URL back, to hand to a browser.
//!
//! Only Basic auth may mint: a signed URL is a delegated, narrowed grant, and one
//! that could mint others would let a leaked page URL outlive its `expires` and
//! widen its own filters. Only the surfaces a browser is meant to use can be
//! signed (the stream, client events, the control channel), each within the
//! caller's own account and the `auth.max_url_lifetime_secs` bound that the
//! signature check enforces later, so a URL this endpoint issues is never one
//! the server would refuse for its lifetime.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::control::signed_method::SignedMethod;
use super::publish::read_body;
use super::stream::params::validate_client;
use super::{ApiError, AppState};
use crate::auth::{has_param, Principal};

/// Largest request body: a URL and a number.
const MAX_BODY: usize = 16 * 1024;
/// Longest `url` accepted: far above any real filter set (queries are bounded by
/// the filter limits anyway), far below what would cost anything to sign.
const MAX_URL_BYTES: usize = 8 * 1024;
/// `expires_in` when the request gives none, as `switchboard sign` does (or the
/// server's maximum lifetime, if that is shorter).
const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/Accounts/{account_sid}/SignedUrls",
        web::post().to(post),
    );
}

async fn post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = match state.authenticate(&req, &path)? {
        Principal::Account(account) => account,
        Principal::SignedUrl { .. } => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "SignedUrls takes the account's Basic credentials, not a signed URL",
            ))
        }
    };
    let body = read_body(payload, MAX_BODY).await?;
    let request = Request::parse(&body)?;
    let signable = request.check(&path, state.config.auth.max_url_lifetime_secs)?;
    let now = crate::clock::unix_now();
    let token = &state.accounts.get(account).auth_token;
    let url = crate::auth::sign_url(token, &request.url, signable.lifetime, now);
    state
        .metrics
        .signed_urls
        .with_label_values(&[signable.surface.label()])
        .inc();
    Ok(HttpResponse::Created().json(json!({
        "url": url,
        "expires": now.saturating_add(signable.lifetime),
    })))
}

/// The request body, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    url: String,
    /// Kept as JSON so a wrong type is an error naming `expires_in`, not serde's
    /// position in the text.
    #[serde(default)]
    expires_in: Option<Value>,
}

/// The surfaces a URL may be signed for: the label of
/// `switchboard_signed_urls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `…/Stream`.
    Stream,
    /// `…/ClientEvents`.
    ClientEvents,
    /// `…/Clients/{client}/Subscriptions[/{sid}]`.
    Control,
}

impl Surface {
    /// Every surface, for pre-registering the metric's labels.
    pub const ALL: [Surface; 3] = [Surface::Stream, Surface::ClientEvents, Surface::Control];

    /// Low-cardinality metric label.
    pub fn label(self) -> &'static str {
        match self {
            Surface::Stream => "stream",
            Surface::ClientEvents => "client_events",
            Surface::Control => "control",
        }
    }
}

/// What a valid request signs.
#[derive(Debug, PartialEq, Eq)]
struct Signable {
    surface: Surface,
    lifetime: u64,
}

impl Request {
    fn parse(body: &[u8]) -> Result<Request, ApiError> {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body: {e}; expected {{\"url\": \"/v1/Accounts/AC…/Stream?…\", \"expires_in\": 600}}"),
            )
        })
    }

    /// Checks the URL and the lifetime against the caller's account (`path_sid`)
    /// and the server's maximum lifetime.
    fn check(&self, path_sid: &str, max_lifetime: u64) -> Result<Signable, ApiError> {
        let surface = surface(&self.url, path_sid)?;
        let lifetime = lifetime(self.expires_in.as_ref(), max_lifetime)?;
        Ok(Signable { surface, lifetime })
    }
}

/// Which surface `url` names, refusing anything but a path and query of the
/// caller's own account that the server would accept a signature for.
fn surface(url: &str, path_sid: &str) -> Result<Surface, ApiError> {
    if url.len() > MAX_URL_BYTES {
        return Err(ApiError::parameter(format!(
            "url: at most {MAX_URL_BYTES} bytes"
        )));
    }
    // The signature covers the bytes the browser will send, so the URL must already
    // be in that form: printable ASCII, percent-encoded, no fragment.
    if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return Err(ApiError::parameter(
            "url: printable ASCII only, percent-encoded, without a fragment",
        ));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let rest = path.strip_prefix("/v1/Accounts/").ok_or_else(|| {
        ApiError::parameter(
            "url: must be a path starting /v1/Accounts/{AccountSid}/, without scheme or host",
        )
    })?;
    let (sid, leaf) = rest.split_once('/').unwrap_or((rest, ""));
    if sid != path_sid {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "url: names another account than the credentials'",
        ));
    }
    for taken in ["expires", "signature"] {
        if has_param(query, taken) {
            return Err(ApiError::parameter(format!(
                "url: must not carry {taken}= (give the lifetime as expires_in)"
            )));
        }
    }
    let segments: Vec<&str> = leaf.split('/').collect();
    match segments.as_slice() {
        ["Stream"] => Ok(Surface::Stream),
        ["ClientEvents"] => Ok(Surface::ClientEvents),
        ["Clients", client, "Subscriptions"] | ["Clients", client, "Subscriptions", _] => {
            validate_client(client)
                .map_err(|e| ApiError::parameter(format!("url: {}", e.message)))?;
            // A control-channel URL without `method=` serves no method at all: refuse
            // to issue a URL that could never be used.
            SignedMethod::from_query(query)
                .map_err(|e| ApiError::parameter(format!("url: {e}")))?;
            Ok(Surface::Control)
        }
        _ => Err(ApiError::parameter(
            "url: must be the account's Stream, ClientEvents or Clients/{client}/Subscriptions",
        )),
    }
}

/// The lifetime asked for, within 1 ..= `max_lifetime` seconds.
fn lifetime(expires_in: Option<&Value>, max_lifetime: u64) -> Result<u64, ApiError> {
    let Some(value) = expires_in.filter(|v| !v.is_null()) else {
        return Ok(DEFAULT_LIFETIME_SECS.min(max_lifetime));
    };
    let seconds = value.as_u64().filter(|s| *s > 0).ok_or_else(|| {
        ApiError::parameter(format!(
            "expires_in: a whole number of seconds, 1 to {max_lifetime}"
        ))
    })?;
    if seconds > max_lifetime {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "expires_too_far",
            format!("expires_in: at most {max_lifetime} seconds (auth.max_url_lifetime_secs)"),
        ));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn check(body: &str) -> Result<Signable, ApiError> {
        Request::parse(body.as_bytes())?.check(SID, 86_400)
    }

    fn url_body(url: &str) -> String {
        json!({ "url": url }).to_string()
    }

    #[test]
    fn signs_the_three_browser_surfaces_with_a_bounded_lifetime() {
        let stream =
            format!(r#"{{"url": "/v1/Accounts/{SID}/Stream?types=call.*", "expires_in": 600}}"#);
        assert_eq!(
            check(&stream).unwrap(),
            Signable {
                surface: Surface::Stream,
                lifetime: 600
            }
        );
        let events = url_body(&format!(
            "/v1/Accounts/{SID}/ClientEvents?client=c1&act=hangup"
        ));
        assert_eq!(check(&events).unwrap().surface, Surface::ClientEvents);
        assert_eq!(check(&events).unwrap().lifetime, DEFAULT_LIFETIME_SECS);
        let control = url_body(&format!(
            "/v1/Accounts/{SID}/Clients/c1/Subscriptions/SU0?method=DELETE"
        ));
        assert_eq!(check(&control).unwrap().surface, Surface::Control);
    }

    #[test]
    fn the_default_lifetime_never_exceeds_the_maximum() {
        let body = url_body(&format!("/v1/Accounts/{SID}/Stream"));
        let signable = Request::parse(body.as_bytes())
            .unwrap()
            .check(SID, 60)
            .unwrap();
        assert_eq!(signable.lifetime, 60);
    }

    #[test]
    fn refuses_lifetimes_out_of_bounds_naming_expires_in() {
        let url = format!("/v1/Accounts/{SID}/Stream");
        let too_far = json!({"url": url, "expires_in": 86_401}).to_string();
        let error = check(&too_far).unwrap_err();
        assert_eq!(
            (error.status.as_u16(), error.code),
            (400, "expires_too_far")
        );
        assert!(
            error.message.starts_with("expires_in:"),
            "{}",
            error.message
        );
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!("600"),
            json!(u64::MAX),
        ] {
            let body = json!({"url": url, "expires_in": bad}).to_string();
            let error = check(&body).unwrap_err();
            assert_eq!(error.status.as_u16(), 400, "{bad}");
            assert!(
                error.message.starts_with("expires_in:"),
                "{bad}: {}",
                error.message
            );
        }
    }

    #[test]
    fn refuses_urls_it_must_not_sign() {
        let other = "AC00000000000000000000000000000000";
        let cases = [
            (format!("/v1/Accounts/{other}/Stream"), 403),
            (format!("http://evil.example/v1/Accounts/{SID}/Stream"), 400),
            (format!("/v1/Accounts/{SID}/Events"), 400),
            (format!("/v1/Accounts/{SID}/SignedUrls"), 400),
            (
                format!("/v1/Accounts/{SID}/Stream?expires=99999999999"),
                400,
            ),
            (format!("/v1/Accounts/{SID}/Stream?a=1&signature=x"), 400),
            (format!("/v1/Accounts/{SID}/Clients/c1/Subscriptions"), 400),
            (
                format!("/v1/Accounts/{SID}/Clients/bad%20id/Subscriptions?method=GET"),
                400,
            ),
            (format!("/v1/Accounts/{SID}/Stream?types=call.*#frag"), 400),
            (format!("/v1/Accounts/{SID}/Stream?types=a b"), 400),
            (format!("/v1/Accounts/{SID}/Stream/extra"), 400),
            (
                format!("/v1/Accounts/{SID}/Stream?{}", "x".repeat(MAX_URL_BYTES)),
                400,
            ),
        ];
        for (url, status) in cases {
            let error = check(&url_body(&url)).unwrap_err();
            assert_eq!(error.status.as_u16(), status, "{url}: {}", error.message);
            assert!(
                error.message.starts_with("url:"),
                "{url}: {}",
                error.message
            );
        }
    }

    #[test]
    fn malformed_bodies_are_invalid_json() {
        for body in ["", "[]", "{\"url\": 5}", "{\"url\": \"/x\", \"other\": 1}"] {
            let error = check(body).unwrap_err();
            assert_eq!(error.code, "invalid_json", "{body}");
        }
    }
}
