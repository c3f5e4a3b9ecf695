//! The Twilio-compatible REST API (docs/api.md §7): `/2010-04-01/Accounts/{AccountSid}/…`
//! for numbers, calls and messages (queues are in [`super::queues`]). Basic auth, form-encoded requests, Twilio-shaped
//! JSON and Twilio-style errors, so Twilio's helper libraries work against it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};

use super::publish::read_body;
use super::AppState;
use crate::account::AccountIdx;
use crate::auth::AuthError;
use crate::callrouter::records::API_VERSION;
use crate::callrouter::{AppSource, CallInput};
use crate::callrouter::{CallRouter, NewNumber, RouterError};
use crate::twiml::Method;

/// Largest form body.
const MAX_FORM: usize = 64 * 1024;

/// Registers the REST routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let base = format!("/{API_VERSION}/Accounts/{{account_sid}}");
    cfg.route(
        &format!("{base}/IncomingPhoneNumbers.json"),
        web::get().to(list_numbers),
    )
    .route(
        &format!("{base}/IncomingPhoneNumbers.json"),
        web::post().to(create_number),
    )
    .route(
        &format!("{base}/IncomingPhoneNumbers/{{sid}}"),
        web::get().to(read_number),
    )
    .route(&format!("{base}/Calls.json"), web::get().to(list_calls))
    .route(&format!("{base}/Calls.json"), web::post().to(create_call))
    .route(&format!("{base}/Calls/{{sid}}"), web::get().to(read_call))
    .route(
        &format!("{base}/Calls/{{sid}}"),
        web::post().to(update_call),
    )
    .route(
        &format!("{base}/Messages.json"),
        web::get().to(list_messages),
    )
    .route(
        &format!("{base}/Messages.json"),
        web::post().to(create_message),
    )
    .route(
        &format!("{base}/Messages/{{sid}}"),
        web::get().to(read_message),
    );
    super::queues::configure(cfg, &base);
}

/// A Twilio-style error: `{"code", "message", "more_info", "status"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioError {
    /// Twilio's error code.
    pub code: u32,
    /// HTTP status.
    pub status: u16,
    /// Text naming the parameter.
    pub message: String,
}

impl TwilioError {
    pub(super) fn new(code: u32, status: u16, message: impl Into<String>) -> TwilioError {
        TwilioError {
            code,
            status,
            message: message.into(),
        }
    }

    pub(super) fn missing(code: u32, param: &str) -> TwilioError {
        TwilioError::new(code, 400, format!("A '{param}' parameter is required."))
    }
}

impl fmt::Display for TwilioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ResponseError for TwilioError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status == 401 {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"Twilio API\""));
        }
        response.json(json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        }))
    }
}

impl From<RouterError> for TwilioError {
    fn from(error: RouterError) -> TwilioError {
        TwilioError::new(error.code, error.status, error.message)
    }
}

impl From<super::ApiError> for TwilioError {
    fn from(error: super::ApiError) -> TwilioError {
        TwilioError::new(20001, error.status.as_u16(), error.message)
    }
}

pub(super) type Reply = Result<HttpResponse, TwilioError>;

/// Authenticates a REST request (Basic auth only, as Twilio's API).
pub(super) fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    path_sid: &str,
) -> Result<AccountIdx, TwilioError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = match header {
        Some(header) => crate::auth::basic(&state.accounts, path_sid, header),
        None => Err(AuthError::Missing),
    };
    result.map_err(|error| {
        let forbidden = error == AuthError::WrongAccount;
        state.auth_failed(error);
        if forbidden {
            TwilioError::new(
                20403,
                403,
                "Forbidden: these credentials belong to another account",
            )
        } else {
            TwilioError::new(20003, 401, "Authentication Error - invalid username")
        }
    })
}

/// The form parameters of a request body (first value of each name wins).
pub(super) async fn form(payload: web::Payload) -> Result<HashMap<String, String>, TwilioError> {
    let body = read_body(payload, MAX_FORM).await?;
    let mut params = HashMap::new();
    for (key, value) in form_urlencoded::parse(&body) {
        params
            .entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    Ok(params)
}

pub(super) fn method(params: &HashMap<String, String>, name: &str) -> Result<Method, TwilioError> {
    match params.get(name).map(|m| m.to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("POST") => Ok(Method::Post),
        Some("GET") => Ok(Method::Get),
        Some(_) => Err(TwilioError::new(
            20001,
            400,
            format!("{name} must be GET or POST"),
        )),
    }
}

/// `TimeLimit`: the most seconds the call may last, a positive integer (the server's
/// `call_router.max_call_secs` still applies when it is larger).
fn time_limit(params: &HashMap<String, String>) -> Result<Option<u64>, TwilioError> {
    let Some(text) = non_empty(params, "TimeLimit") else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Some(secs)),
        _ => Err(TwilioError::new(
            20001,
            400,
            "TimeLimit must be a positive whole number of seconds",
        )),
    }
}

pub(super) fn non_empty(params: &HashMap<String, String>, name: &str) -> Option<String> {
    params.get(name).filter(|v| !v.is_empty()).cloned()
}

/// `{sid}.json` → `sid`; anything else is not a resource of ours.
pub(super) fn resource_sid(segment: &str) -> Result<&str, TwilioError> {
    segment
        .strip_suffix(".json")
        .ok_or_else(|| RouterError::not_found(segment).into())
}

/// Twilio's paging over a list: `Page`, `PageSize` (1–1000, default 50).
pub(super) fn page(
    req: &HttpRequest,
    key: &str,
    items: Vec<Value>,
) -> Result<HttpResponse, TwilioError> {
    let query: HashMap<String, String> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let size: usize = match query.get("PageSize") {
        None => 50,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| TwilioError::new(20001, 400, "PageSize must be 1 to 1000"))?,
    };
    let number: usize = match query.get("Page") {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| TwilioError::new(20001, 400, "Page must be a whole number"))?,
    };
    let path = req.path();
    let uri = |n: usize| format!("{path}?PageSize={size}&Page={n}");
    let start = number.saturating_mul(size);
    let total = items.len();
    let chunk: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let end = start + chunk.len();
    Ok(HttpResponse::Ok().json(json!({
        key: chunk,
        "page": number,
        "page_size": size,
        "start": start,
        "end": end.saturating_sub(1),
        "uri": uri(number),
        "first_page_uri": uri(0),
        "next_page_uri": (end < total).then(|| uri(number + 1)),
        "previous_page_uri": (number > 0).then(|| uri(number - 1)),
    })))
}

pub(super) fn router(state: &AppState) -> &Arc<CallRouter> {
    &state.call_router
}

/// A paged list of one resource of the account (`items` renders them).
pub(super) fn list(
    req: &HttpRequest,
    state: &AppState,
    sid: &str,
    key: &str,
    items: impl FnOnce(&CallRouter, AccountIdx, &str) -> Vec<Value>,
) -> Reply {
    let account = authenticate(req, state, sid)?;
    page(req, key, items(router(state), account, sid))
}

/// One resource of the account by `{sid}.json` (`find` renders it, if it exists).
pub(super) fn read(
    req: &HttpRequest,
    state: &AppState,
    (sid, segment): (String, String),
    find: impl FnOnce(&CallRouter, AccountIdx, &str, &str) -> Option<Value>,
) -> Reply {
    let account = authenticate(req, state, &sid)?;
    let resource = resource_sid(&segment)?;
    let json = find(router(state), account, &sid, resource)
        .ok_or_else(|| RouterError::not_found(resource))?;
    Ok(HttpResponse::Ok().json(json))
}

/// A required E.164 number parameter (`missing` and `invalid` are Twilio's codes).
fn phone_param(
    params: &HashMap<String, String>,
    name: &str,
    missing: u32,
    invalid: u32,
) -> Result<String, TwilioError> {
    let number = non_empty(params, name).ok_or_else(|| TwilioError::missing(missing, name))?;
    if !crate::callrouter::records::is_e164(&number) {
        return Err(TwilioError::new(
            invalid,
            400,
            format!("The '{name}' number {number} is not a valid phone number."),
        ));
    }
    Ok(number)
}

async fn create_number(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let account = authenticate(&req, &state, &path)?;
    let params = form(payload).await?;
    let phone_number = non_empty(&params, "PhoneNumber")
        .ok_or_else(|| TwilioError::missing(21421, "PhoneNumber"))?;
    let number = router(&state).provision(
        account,
        NewNumber {
            phone_number,
            friendly_name: non_empty(&params, "FriendlyName"),
            voice_url: non_empty(&params, "VoiceUrl"),
            voice_method: method(&params, "VoiceMethod")?,
            sms_url: non_empty(&params, "SmsUrl"),
            sms_method: method(&params, "SmsMethod")?,
            status_callback: non_empty(&params, "StatusCallback"),
        },
    )?;
    Ok(HttpResponse::Created().json(number.json(&path)))
}

async fn list_numbers(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Reply {
    list(
        &req,
        &state,
        &path,
        "incoming_phone_numbers",
        |router, account, sid| {
            router
                .numbers(account)
                .iter()
                .map(|n| n.json(sid))
                .collect()
        },
    )
}

async fn read_number(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Reply {
    read(
        &req,
        &state,
        path.into_inner(),
        |router, account, sid, number| router.number(account, number).map(|n| n.json(sid)),
    )
}

async fn create_call(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let account = authenticate(&req, &state, &path)?;
    let params = form(payload).await?;
    let to = phone_param(&params, "To", 21201, 21211)?;
    let from = phone_param(&params, "From", 21213, 21212)?;
    let source = match (non_empty(&params, "Twiml"), non_empty(&params, "Url")) {
        (Some(twiml), _) => AppSource::Twiml(twiml),
        (None, Some(url)) => AppSource::Url(url, method(&params, "Method")?),
        (None, None) => return Err(TwilioError::missing(21205, "Url")),
    };
    let call = router(&state).place_call(
        account,
        &to,
        &from,
        source,
        non_empty(&params, "StatusCallback"),
        time_limit(&params)?,
    )?;
    Ok(HttpResponse::Created().json(call.json(&path)))
}

async fn list_calls(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Reply {
    list(&req, &state, &path, "calls", |router, account, sid| {
        router.calls(account).iter().map(|c| c.json(sid)).collect()
    })
}

async fn read_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Reply {
    read(
        &req,
        &state,
        path.into_inner(),
        |router, account, sid, call| router.call(account, call).map(|c| c.json(sid)),
    )
}

/// `Status=completed|canceled` hangs up; `Url` (with `Method`) redirects.
async fn update_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let (sid, segment) = path.into_inner();
    let account = authenticate(&req, &state, &sid)?;
    let call_sid = resource_sid(&segment)?;
    let params = form(payload).await?;
    let router = router(&state);
    let call = router
        .call(account, call_sid)
        .ok_or_else(|| RouterError::not_found(call_sid))?;
    let input = match (
        non_empty(&params, "Status").as_deref(),
        non_empty(&params, "Url"),
    ) {
        (Some("completed" | "canceled"), _) => Some(CallInput::Hangup),
        (Some(other), _) => {
            return Err(TwilioError::new(
                20001,
                400,
                format!("Status {other} is not one of completed, canceled"),
            ))
        }
        (None, Some(url)) => Some(CallInput::Redirect(url, method(&params, "Method")?)),
        (None, None) => None,
    };
    if let Some(input) = input {
        if !call.status.is_final() {
            router.input(account, call_sid, input)?;
        }
    }
    let call = router.call(account, call_sid).unwrap_or(call);
    Ok(HttpResponse::Ok().json(call.json(&sid)))
}

async fn create_message(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let account = authenticate(&req, &state, &path)?;
    let params = form(payload).await?;
    let to = phone_param(&params, "To", 21604, 21211)?;
    let from = non_empty(&params, "From").ok_or_else(|| TwilioError::missing(21603, "From"))?;
    let body = non_empty(&params, "Body").ok_or_else(|| TwilioError::missing(21602, "Body"))?;
    let message = router(&state)
        .send_message(account, &to, &from, &body, "outbound-api", None, None)
        .await;
    Ok(HttpResponse::Created().json(message.json(&path)))
}

async fn list_messages(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Reply {
    list(&req, &state, &path, "messages", |router, account, sid| {
        router
            .messages(account)
            .iter()
            .map(|m| m.json(sid))
            .collect()
    })
}

async fn read_message(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Reply {
    read(
        &req,
        &state,
        path.into_inner(),
        |router, account, sid, message| router.message(account, message).map(|m| m.json(sid)),
    )
}
