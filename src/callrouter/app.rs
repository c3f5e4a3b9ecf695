//! Requests to the customer's application: TwiML fetches for calls and SMS, and
//! status callbacks, each signed with `X-Twilio-Signature` as Twilio signs them so
//! existing apps and Twilio's own validators accept them.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::RouterError;
use crate::auth::twilio_signature;
use crate::twiml::{self, Method, Response};
use crate::webhook::check_callback;

/// Twilio's limit on an application's answer.
const MAX_DOCUMENT: usize = 64 * 1024;
/// How long the application gets to answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Why a document could not be had, with Twilio's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The application failed: status, timeout, refused connection, oversized body
    /// (Twilio 11200).
    #[error("HTTP retrieval failure: {0}")]
    Fetch(String),
    /// The document is not valid TwiML (Twilio 12100).
    #[error("document parse failure: {0}")]
    Parse(String),
}

impl AppError {
    /// Twilio's error code for the failure.
    pub fn code(&self) -> u16 {
        match self {
            AppError::Fetch(_) => 11200,
            AppError::Parse(_) => 12100,
        }
    }
}

/// Signed requests to applications. Cheap to clone.
#[derive(Clone)]
pub struct AppClient {
    http: reqwest::Client,
    /// Hosts applications may be on (`webhook.allowed_hosts`); empty allows any.
    allowed_hosts: Arc<[String]>,
}

impl AppClient {
    /// A client with Twilio's timeout that calls only `allowed_hosts` (empty: any).
    /// Every URL a tenant makes the router request is checked, documents' `action`,
    /// `Redirect` and `Play` URLs included, so the router cannot be aimed at internal
    /// addresses when the list is set.
    pub fn new(allowed_hosts: Vec<String>) -> AppClient {
        AppClient {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .user_agent("TwilioProxy/1.1 (Switchboard)")
                .build()
                .unwrap_or_default(),
            allowed_hosts: allowed_hosts.into(),
        }
    }

    /// Checks an application URL given to the REST API: absolute http(s) on an
    /// allowed host, else Twilio's 21205 naming the parameter.
    pub fn check(&self, param: &str, url: &str) -> Result<(), RouterError> {
        check_callback(url, &self.allowed_hosts).map_err(|e| {
            RouterError::invalid(
                21205,
                format!(
                    "{param}: {}",
                    e.to_string().trim_start_matches("callback: ")
                ),
            )
        })
    }

    /// The hosts applications may be on (empty: any).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    fn allowed(&self, url: &Url) -> Result<(), AppError> {
        check_callback(url.as_str(), &self.allowed_hosts)
            .map_err(|e| AppError::Fetch(e.to_string().trim_start_matches("callback: ").to_owned()))
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
        twiml::parse(&body).map_err(|e| AppError::Parse(e.to_string()))
    }

    /// Makes one signed request; returns the body of a 2xx answer.
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
            .map_err(|e| AppError::Fetch(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(AppError::Fetch(format!(
                "the application answered {status}"
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_DOCUMENT)
        {
            return Err(AppError::Fetch("the document is over 64 KiB".into()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AppError::Fetch(e.without_url().to_string()))?;
        if bytes.len() > MAX_DOCUMENT {
            return Err(AppError::Fetch("the document is over 64 KiB".into()));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| AppError::Parse("not UTF-8".into()))
    }

    /// Fetches a media URL for `Play` (the body is discarded: nothing is played).
    pub async fn media(&self, url: &Url) -> Result<(), AppError> {
        self.allowed(url)?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| AppError::Fetch(e.without_url().to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(AppError::Fetch(format!(
                "the media URL answered {}",
                response.status()
            )))
        }
    }
}
