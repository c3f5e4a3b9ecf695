//! Requests to the customer's application: TwiML fetches for calls and SMS, and
//! status callbacks, each signed with `X-Twilio-Signature` as Twilio signs them so
//! existing apps and Twilio's own validators accept them.

use std::time::Duration;

use reqwest::Url;

use super::RouterError;
use crate::auth::twilio_signature;
use crate::egress::{read_capped, Egress, EgressError, ReadError};
use crate::twiml::{self, Method, Response};

/// Twilio's limit on an application's answer.
const MAX_DOCUMENT: usize = 64 * 1024;
/// How long the application gets to answer, the body included.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Why a document could not be had, with Twilio's error code.
///
/// Every message is a fixed text (a status code or a byte offset at most): it
/// becomes `call.error`'s `error_message`, seen by every `call.*` subscriber, and
/// must not carry bytes of whatever answered — a redirect may have led the router
/// to an internal service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The application failed: status, timeout, refused connection, refused URL
    /// (Twilio 11200).
    #[error("HTTP retrieval failure: {0}")]
    Fetch(FetchError),
    /// The answer is over 64 KiB, declared or not (Twilio 11750).
    #[error("response body too large: the document is over 64 KiB")]
    TooLarge,
    /// The document is not valid TwiML (Twilio 12100).
    #[error("document parse failure: {0}")]
    Parse(String),
}

impl AppError {
    /// Twilio's error code for the failure.
    pub fn code(&self) -> u16 {
        match self {
            AppError::Fetch(_) => 11200,
            AppError::TooLarge => 11750,
            AppError::Parse(_) => 12100,
        }
    }
}

/// Why an application request failed, in words that quote nothing it answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL (or a redirect's) is refused by the egress rules (docs/api.md §5); the
    /// rule is named, the host is not (a redirect's target came from the answer).
    #[error("the URL is refused: {0}")]
    Refused(&'static str),
    /// A non-2xx answer.
    #[error("the application answered {0}")]
    Status(u16),
    /// No complete answer within the timeout.
    #[error("the application did not answer within {} s", TIMEOUT.as_secs())]
    Timeout,
    /// No connection could be made.
    #[error("the application could not be reached")]
    Connect,
    /// Anything else that broke the exchange.
    #[error("the request to the application failed")]
    Other,
}

impl FetchError {
    /// The failure behind a reqwest error, egress refusals first.
    fn of(error: &reqwest::Error) -> FetchError {
        if let Some(refusal) = EgressError::cause_of(error) {
            FetchError::Refused(refusal.rule())
        } else if error.is_timeout() {
            FetchError::Timeout
        } else if error.is_connect() {
            FetchError::Connect
        } else {
            FetchError::Other
        }
    }
}

impl From<ReadError> for AppError {
    fn from(error: ReadError) -> AppError {
        match error {
            ReadError::TooLarge(_) => AppError::TooLarge,
            ReadError::Http(error) => AppError::Fetch(FetchError::of(&error)),
        }
    }
}

/// Signed requests to applications, under the egress rules. Cheap to clone.
#[derive(Clone)]
pub struct AppClient {
    http: reqwest::Client,
    egress: Egress,
}

impl AppClient {
    /// A client with Twilio's timeout under `egress`'s rules. Every URL a tenant
    /// makes the router request is checked, documents' `action`, `Redirect` and
    /// `Play` URLs and every redirect included.
    pub fn new(egress: Egress) -> AppClient {
        AppClient {
            http: egress.app_client(TIMEOUT, "TwilioProxy/1.1 (Switchboard)"),
            egress,
        }
    }

    /// Checks an application URL given to the REST API: absolute http(s) that the
    /// egress rules allow, else Twilio's 21205 naming the parameter.
    pub fn check(&self, param: &str, url: &str) -> Result<(), RouterError> {
        self.egress
            .check_url(url)
            .map(drop)
            .map_err(|e| RouterError::invalid(21205, format!("{param}: {e}")))
    }

    /// The egress rules every tenant URL is held to (a `client.redirect`'s target
    /// is checked against them before the event is answered).
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    fn allowed(&self, url: &Url) -> Result<(), AppError> {
        self.egress
            .check_url(url.as_str())
            .map(drop)
            .map_err(|e| AppError::Fetch(FetchError::Refused(e.rule())))
    }

    /// Requests a TwiML document and parses it.
    pub async fn document(
        &self,
        token: &str,
        url: &Url,
        method: Method,
        params: &[(String, String)],
    ) -> Result<Response, AppError> {
        let body = self.request(token, url, method, params).await?;
        twiml::parse(&body).map_err(|e| AppError::Parse(e.summary()))
    }

    /// Makes one signed request; returns the body of a 2xx answer (at most 64 KiB).
    pub async fn request(
        &self,
        token: &str,
        url: &Url,
        method: Method,
        params: &[(String, String)],
    ) -> Result<String, AppError> {
        self.allowed(url)?;
        let request = match method {
            Method::Post => {
                let signature = twilio_signature(token, url.as_str(), params);
                self.http
                    .post(url.clone())
                    .header("X-Twilio-Signature", signature)
                    .form(params)
            }
            Method::Get => {
                let mut url = url.clone();
                url.query_pairs_mut().extend_pairs(params);
                let signature = twilio_signature(token, url.as_str(), &[]);
                self.http.get(url).header("X-Twilio-Signature", signature)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| AppError::Fetch(FetchError::of(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(AppError::Fetch(FetchError::Status(status.as_u16())));
        }
        let bytes = read_capped(response, MAX_DOCUMENT).await.map_err(|e| {
            if matches!(e, ReadError::TooLarge(_)) {
                self.egress.count_too_large();
            }
            AppError::from(e)
        })?;
        String::from_utf8(bytes).map_err(|_| AppError::Parse("the document is not UTF-8".into()))
    }

    /// Fetches a media URL for `Play` (the body is not read: nothing is played).
    pub async fn media(&self, url: &Url) -> Result<(), AppError> {
        self.allowed(url)?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| AppError::Fetch(FetchError::of(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(AppError::Fetch(FetchError::Status(
                response.status().as_u16(),
            )))
        }
    }
}
