//! The control channel (docs/api.md §5):
//! `/v1/Accounts/{AccountSid}/Clients/{client}/Subscriptions[/{SubscriptionSid}]`.
//!
//! Create, list, read, change and delete a client's subscriptions, by Basic auth
//! (the body carries the subscription, form-encoded like Twilio or JSON) or by a
//! signed URL (the signed query carries it, so a browser cannot widen it). Changes
//! reach the client's proxy at once, so an open channel sees them without
//! reconnecting.
//!
//! A signed URL serves only the method it signs (`method=`, see
//! [`signed_method`]), and a create equal to a subscription the client already has
//! returns that one with 200, so replaying a signed create URL adds nothing.

pub mod shared;
pub mod signed_method;

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::publish::read_body;
use super::stream::cors_policy;
use super::stream::params::validate_client;
use super::{ApiError, AppState};
use crate::account::AccountIdx;
use crate::actors::proxy::{
    ControlError, ListSubscriptions, NewSubscription, Subscribe, Subscribed, SubscriptionChange,
    SubscriptionView, Unsubscribe, UpdateSubscription,
};
use crate::auth::Principal;
use crate::clock::unix_now;
use crate::config::CorsConfig;
use crate::filter::{Filter, FilterEdit, ScopeGrant};
use signed_method::{MethodError, SignedMethod};

/// Largest control-channel body.
const MAX_BODY: usize = 64 * 1024;

/// Registers the control-channel routes, with CORS for browsers.
pub fn configure(cfg: &mut web::ServiceConfig, cors: &CorsConfig) {
    cfg.service(
        web::resource("/v1/Accounts/{account_sid}/Clients/{client}/Subscriptions")
            .wrap(cors_policy(cors))
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/v1/Accounts/{account_sid}/Clients/{client}/Subscriptions/{sid}")
            .wrap(cors_policy(cors))
            .route(web::get().to(read))
            .route(web::post().to(update))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

/// What a request says about a subscription; `None` means "not given".
///
/// Public, with [`spec_from_pairs`] and [`spec_from_json`], so the parsers of
/// untrusted control bodies can be fuzzed without a server (`fuzz/`).
#[derive(Debug, Default)]
pub struct Spec {
    /// `types` items, not yet validated.
    pub types: Option<Vec<String>>,
    /// `where` clauses, not yet validated.
    pub wheres: Option<Vec<String>>,
    /// `scopes` items, not yet validated.
    pub scopes: Option<Vec<String>>,
    /// `expires`; `Some(None)` clears it.
    pub expires: Option<Option<u64>>,
    /// `callback`, not yet checked against the allow-list; `Some(None)` clears it.
    pub callback: Option<Option<String>>,
}

impl Spec {
    fn touches_filter(&self) -> bool {
        self.types.is_some() || self.wheres.is_some() || self.scopes.is_some()
    }
}

/// Validated `expires` and `callback` of a request; `None` means "not given".
struct Lifetime {
    expires: Option<Option<u64>>,
    callback: Option<Option<Arc<str>>>,
}

/// An authenticated control request: who, which client, and what they asked for.
struct Request {
    account: AccountIdx,
    client: Arc<str>,
    principal: Principal,
    spec: Spec,
}

impl Request {
    async fn read(
        req: &HttpRequest,
        sid: &str,
        client: &str,
        payload: Option<web::Payload>,
        state: &AppState,
    ) -> Result<Request, ApiError> {
        let principal = state.authenticate(req, sid)?;
        let client: Arc<str> = validate_client(client)?.into();
        if let Principal::SignedUrl { account, .. } = principal {
            SignedMethod::check(req.query_string(), req.method())
                .map_err(|error| method_refused(state, account, &client, error))?;
        }
        let spec = match (principal, payload) {
            // A signed URL: the subscription is what was signed; a body is ignored.
            (Principal::SignedUrl { expires, .. }, _) => {
                let mut spec = spec_from_pairs(req.query_string().as_bytes(), true)?;
                spec.expires = Some(Some(expires));
                spec
            }
            (Principal::Account(_), Some(payload)) => {
                let body = read_body(payload, MAX_BODY).await?;
                if is_json(req) {
                    spec_from_json(&body)?
                } else {
                    spec_from_pairs(&body, false)?
                }
            }
            (Principal::Account(_), None) => Spec::default(),
        };
        Ok(Request {
            account: principal.account(),
            client,
            principal,
            spec,
        })
    }

    fn absent_scopes(&self) -> ScopeGrant {
        match self.principal {
            Principal::Account(_) => ScopeGrant::All,
            Principal::SignedUrl { .. } => ScopeGrant::Only(Vec::new()),
        }
    }

    fn render(&self, state: &AppState, view: &SubscriptionView) -> Value {
        let account_sid = state.account_sid(self.account);
        let mut json = serde_json::to_value(view).unwrap_or(Value::Null);
        json["account_sid"] = account_sid.into();
        json["client"] = (*self.client).into();
        json["uri"] = format!(
            "/v1/Accounts/{account_sid}/Clients/{}/Subscriptions/{}",
            self.client, view.sid
        )
        .into();
        json
    }

    /// Validates `expires` and `callback` as given.
    fn checked(&self, state: &AppState) -> Result<Lifetime, ApiError> {
        if let Some(Some(expires)) = self.spec.expires {
            if expires <= unix_now() {
                return Err(ApiError::parameter("expires: is in the past"));
            }
        }
        let callback = match &self.spec.callback {
            Some(Some(url)) => {
                state
                    .egress
                    .check_url(url)
                    .map_err(|e| ApiError::parameter(format!("callback: {e}")))?;
                Some(Some(Arc::from(url.as_str())))
            }
            Some(None) => Some(None),
            None => None,
        };
        Ok(Lifetime {
            expires: self.spec.expires,
            callback,
        })
    }
}

/// Counts, logs and maps a signed URL used with a method it does not serve. The
/// log names the account and client, never the query (it holds the signature).
fn method_refused(
    state: &AppState,
    account: AccountIdx,
    client: &str,
    error: MethodError,
) -> ApiError {
    let (status, code, reason) = if error.is_refusal() {
        (
            StatusCode::FORBIDDEN,
            "method_not_signed",
            "method_not_signed",
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "method_invalid",
        )
    };
    state
        .metrics
        .control_refused
        .with_label_values(&[reason])
        .inc();
    tracing::info!(
        account = state.account_sid(account),
        client,
        reason,
        %error,
        "signed control URL refused"
    );
    ApiError::new(status, code, error.to_string())
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// Reads a form body or a signed query. In a query, parameters that are not part of
/// a subscription (`expires`, `signature`, …) are skipped; in a form they are errors.
pub fn spec_from_pairs(raw: &[u8], query: bool) -> Result<Spec, ApiError> {
    let mut spec = Spec::default();
    for (key, value) in form_urlencoded::parse(raw) {
        match key.as_ref() {
            "types" => spec
                .types
                .get_or_insert_with(Vec::new)
                .extend(split_list(&value)),
            "where" => spec
                .wheres
                .get_or_insert_with(Vec::new)
                .push(value.into_owned()),
            "scopes" => spec
                .scopes
                .get_or_insert_with(Vec::new)
                .extend(split_list(&value)),
            "callback" => spec.callback = Some((!value.is_empty()).then(|| value.into_owned())),
            "expires" if !query => spec.expires = Some(parse_expires_text(&value)?),
            _ if query => {}
            other => {
                return Err(ApiError::parameter(format!(
                    "{}: unknown field (types, where, scopes, expires, callback)",
                    other.chars().take(32).collect::<String>()
                )))
            }
        }
    }
    Ok(spec)
}

fn split_list(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    value.split(',').map(str::to_owned).collect()
}

fn parse_expires_text(value: &str) -> Result<Option<u64>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::parameter("expires: must be unix seconds"))
}

/// Reads a JSON body: `types`, `where`, `scopes` as lists or comma strings,
/// `expires` as a number or null, `callback` as a string or null.
pub fn spec_from_json(body: &[u8]) -> Result<Spec, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body: {e}"),
        )
    })?;
    let Value::Object(object) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "body: must be a JSON object",
        ));
    };
    let mut spec = Spec::default();
    for (key, value) in object {
        match key.as_str() {
            "types" => spec.types = Some(json_list("types", value)?),
            "where" => spec.wheres = Some(json_list("where", value)?),
            "scopes" => spec.scopes = Some(json_list("scopes", value)?),
            "expires" => {
                spec.expires = Some(match value {
                    Value::Null => None,
                    Value::Number(n) => Some(
                        n.as_u64()
                            .ok_or_else(|| ApiError::parameter("expires: must be unix seconds"))?,
                    ),
                    Value::String(s) => parse_expires_text(&s)?,
                    _ => return Err(ApiError::parameter("expires: must be unix seconds")),
                })
            }
            "callback" => {
                spec.callback = Some(match value {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => Some(s),
                    _ => return Err(ApiError::parameter("callback: must be a URL string")),
                })
            }
            other => {
                return Err(ApiError::parameter(format!(
                    "{}: unknown field (types, where, scopes, expires, callback)",
                    other.chars().take(32).collect::<String>()
                )))
            }
        }
    }
    Ok(spec)
}

fn json_list(field: &str, value: Value) -> Result<Vec<String>, ApiError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if field == "where" => Ok(vec![s]),
        Value::String(s) => Ok(split_list(&s)),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::parameter(format!(
                    "{field}: items must be strings"
                ))),
            })
            .collect(),
        _ => Err(ApiError::parameter(format!(
            "{field}: must be a list of strings or a comma-separated string"
        ))),
    }
}

/// Cluster mode: a change is refused while NATS is unreachable (503
/// `backbone_unavailable`, like a publish), or the other nodes would never hear
/// of it. Before it, the client's subscriptions shared by other nodes are made
/// here if this node does not hold the client yet.
async fn before_change(request: &Request, state: &AppState) -> Result<(), ApiError> {
    if let Some(backbone) = &state.backbone {
        if !backbone.connected() {
            return Err(crate::cluster::BackboneError::Unavailable.into());
        }
    }
    shared::arrive(state, request.account, Some(&request.client)).await;
    Ok(())
}

fn control_error(error: ControlError) -> ApiError {
    match error {
        ControlError::Quota(quota) => quota.into(),
        ControlError::Filter(parse) => parse.into(),
        _ => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
    }
}

async fn create(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (sid, client) = path.into_inner();
    let request = Request::read(&req, &sid, &client, Some(payload), &state).await?;
    let spec = &request.spec;
    let filter = Filter::from_parts(
        spec.types.clone().unwrap_or_default(),
        spec.wheres.clone().unwrap_or_default(),
        spec.scopes.clone(),
        request.absent_scopes(),
    )?;
    state
        .topology
        .quotas
        .check_filter(request.account, &filter)?;
    let Lifetime { expires, callback } = request.checked(&state)?;
    before_change(&request, &state).await?;
    let Subscribed { view, created } = state
        .ask_proxy(Subscribe {
            account: request.account,
            client: request.client.clone(),
            subscription: NewSubscription {
                filter: Arc::new(filter),
                expires: expires.flatten(),
                callback: callback.flatten(),
            },
            sid: None,
            delivered: None,
        })
        .await??;
    if created {
        shared::share_current(&state, request.account, &request.client).await;
    }
    let (mut response, outcome) = if created {
        (HttpResponse::Created(), "created")
    } else {
        (HttpResponse::Ok(), "existing")
    };
    state
        .metrics
        .control_creates
        .with_label_values(&[outcome])
        .inc();
    Ok(response.json(request.render(&state, &view)))
}

async fn views(request: &Request, state: &AppState) -> Result<Vec<SubscriptionView>, ApiError> {
    shared::arrive(state, request.account, Some(&request.client)).await;
    state
        .ask_proxy(ListSubscriptions {
            account: request.account,
            client: request.client.clone(),
        })
        .await?
        .map_err(control_error)
}

async fn list(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (sid, client) = path.into_inner();
    let request = Request::read(&req, &sid, &client, None, &state).await?;
    let views = views(&request, &state).await?;
    let rendered: Vec<Value> = views.iter().map(|v| request.render(&state, v)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "subscriptions": rendered })))
}

async fn find(
    request: &Request,
    state: &AppState,
    sub: &str,
) -> Result<SubscriptionView, ApiError> {
    views(request, state)
        .await?
        .into_iter()
        .find(|view| &*view.sid == sub)
        .ok_or_else(|| control_error(ControlError::UnknownSubscription))
}

async fn read(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (sid, client, sub) = path.into_inner();
    let request = Request::read(&req, &sid, &client, None, &state).await?;
    let view = find(&request, &state, &sub).await?;
    Ok(HttpResponse::Ok().json(request.render(&state, &view)))
}

async fn update(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (sid, client, sub) = path.into_inner();
    let request = Request::read(&req, &sid, &client, Some(payload), &state).await?;
    let spec = &request.spec;
    // Applied by the proxy to the filter the subscription has then (one message,
    // no read-then-write): fields not given keep their current value.
    let filter = spec.touches_filter().then(|| FilterEdit {
        types: spec.types.clone(),
        wheres: spec.wheres.clone(),
        scopes: spec.scopes.clone(),
        absent_scopes: request.absent_scopes(),
        signed: matches!(request.principal, Principal::SignedUrl { .. }),
    });
    let Lifetime { expires, callback } = request.checked(&state)?;
    before_change(&request, &state).await?;
    let view = state
        .ask_proxy(UpdateSubscription {
            account: request.account,
            client: request.client.clone(),
            sid: sub,
            change: SubscriptionChange {
                filter,
                expires,
                callback,
            },
        })
        .await?
        .map_err(control_error)?;
    shared::share_current(&state, request.account, &request.client).await;
    Ok(HttpResponse::Ok().json(request.render(&state, &view)))
}

async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (sid, client, sub) = path.into_inner();
    let request = Request::read(&req, &sid, &client, None, &state).await?;
    before_change(&request, &state).await?;
    state
        .ask_proxy(Unsubscribe {
            account: request.account,
            client: request.client.clone(),
            sid: sub,
        })
        .await?
        .map_err(control_error)?;
    shared::share_current(&state, request.account, &request.client).await;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies() {
        let spec = spec_from_pairs(
            b"types=call.*,gather.end&where=data.to%3D%2B1555&where=data.n%3E1&scopes=a&expires=&callback=",
            false,
        )
        .unwrap();
        assert_eq!(spec.types.unwrap(), ["call.*", "gather.end"]);
        assert_eq!(spec.wheres.unwrap(), ["data.to=+1555", "data.n>1"]);
        assert_eq!(spec.scopes.unwrap(), ["a"]);
        assert_eq!(spec.expires, Some(None));
        assert_eq!(spec.callback, Some(None));
        let err = spec_from_pairs(b"typos=x", false).unwrap_err();
        assert!(err.message.starts_with("typos:"), "{}", err.message);
        assert!(spec_from_pairs(b"typos=x&signature=y", true).is_ok());
        let err = spec_from_pairs(b"expires=soon", false).unwrap_err();
        assert!(err.message.starts_with("expires:"));
    }

    #[test]
    fn json_bodies() {
        let spec = spec_from_json(
            br#"{"types": "call.*,sms.*", "where": ["data.a=1"], "scopes": [], "expires": 99, "callback": "http://h/x"}"#,
        )
        .unwrap();
        assert_eq!(spec.types.unwrap(), ["call.*", "sms.*"]);
        assert_eq!(spec.wheres.unwrap(), ["data.a=1"]);
        assert_eq!(spec.scopes.unwrap(), Vec::<String>::new());
        assert_eq!(spec.expires, Some(Some(99)));
        assert_eq!(spec.callback, Some(Some("http://h/x".into())));
        for (body, field) in [
            (&br#"{"types": 1}"#[..], "types:"),
            (br#"{"where": [1]}"#, "where:"),
            (br#"{"expires": -1}"#, "expires:"),
            (br#"{"callback": 5}"#, "callback:"),
            (br#"{"other": 5}"#, "other:"),
        ] {
            let err = spec_from_json(body).unwrap_err();
            assert!(err.message.starts_with(field), "{}", err.message);
        }
        assert_eq!(spec_from_json(b"[1]").unwrap_err().code, "invalid_json");
    }
}
