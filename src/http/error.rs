//! The one error type of the HTTP surface: `{"status", "code", "message"}` with the
//! matching status, plus `Retry-After` on 429/503. Every module error converts into it,
//! so handlers use `?` and never hand-write an error body.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::auth::AuthError;
use crate::cursor::CursorError;
use crate::event::EventError;
use crate::filter::ParseError;

/// An API error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable text naming the field at fault.
    pub message: String,
    /// Seconds to send in `Retry-After` (429 and 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with no `Retry-After`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_parameter`; `message` starts with the parameter's name.
    pub fn parameter(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }

    /// 503 with `Retry-After`, for overload and draining.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// 404 for routes that do not exist.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Switchboard\""),
            ));
        }
        response.json(serde_json::json!({
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
        }))
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        let (status, code) = match error {
            AuthError::BadExpires => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            AuthError::WrongAccount => (StatusCode::FORBIDDEN, "forbidden"),
            AuthError::Expired(_) => (StatusCode::UNAUTHORIZED, "expired"),
            AuthError::ExpiresTooFar(_) => (StatusCode::UNAUTHORIZED, "expires_too_far"),
            AuthError::BadSignature(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            AuthError::Missing
            | AuthError::BadCredentials
            | AuthError::UnknownAccount
            | AuthError::MissingExpires => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl From<EventError> for ApiError {
    fn from(error: EventError) -> ApiError {
        let (status, code) = match error {
            EventError::Malformed { .. } => (StatusCode::BAD_REQUEST, "invalid_json"),
            EventError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_event"),
            EventError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl From<crate::cluster::BackboneError> for ApiError {
    fn from(error: crate::cluster::BackboneError) -> ApiError {
        use crate::cluster::BackboneError;
        match error {
            BackboneError::Unavailable | BackboneError::NotAcknowledged => {
                ApiError::unavailable("backbone_unavailable", error.to_string())
            }
            BackboneError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body: {error}"),
            ),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> ApiError {
        match error {
            crate::store::StoreError::ShuttingDown => {
                ApiError::unavailable("draining", "the server is shutting down")
            }
            // The cause is logged where it happened; the client learns only that
            // nothing was kept.
            _ => ApiError::unavailable(
                "store_unavailable",
                "the events could not be kept on disk; nothing was published, retry shortly",
            ),
        }
    }
}

impl From<crate::publisher::PublishError> for ApiError {
    fn from(error: crate::publisher::PublishError) -> ApiError {
        let code = match error {
            crate::publisher::PublishError::Overloaded => "overloaded",
            crate::publisher::PublishError::Stopped => "draining",
            crate::publisher::PublishError::AccountShare { .. } => {
                return ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        error.to_string(),
                    )
                };
            }
        };
        ApiError::unavailable(code, error.to_string())
    }
}

impl From<crate::limits::QuotaError> for ApiError {
    fn from(error: crate::limits::QuotaError) -> ApiError {
        use crate::limits::QuotaError;
        let (code, retry_after) = match error {
            QuotaError::Exceeded { .. } => ("quota_exceeded", None),
            QuotaError::RateLimited { retry_after, .. } => ("rate_limited", Some(retry_after)),
        };
        ApiError {
            retry_after,
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, error.to_string())
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(error: ParseError) -> ApiError {
        ApiError::parameter(error.to_string())
    }
}

impl From<crate::grant::GrantError> for ApiError {
    fn from(error: crate::grant::GrantError) -> ApiError {
        ApiError::parameter(error.to_string())
    }
}

impl From<crate::grant::Refusal> for ApiError {
    fn from(error: crate::grant::Refusal) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
    }
}

impl From<crate::callrouter::steer::SteerError> for ApiError {
    fn from(error: crate::callrouter::steer::SteerError) -> ApiError {
        use crate::callrouter::steer::SteerError;
        match error {
            SteerError::Forbidden(refusal) => refusal.into(),
            SteerError::UrlRefused(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
            }
            SteerError::MissingUrl | SteerError::BadUrl(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", error.to_string())
            }
        }
    }
}

impl From<CursorError> for ApiError {
    fn from(error: CursorError) -> ApiError {
        ApiError::parameter(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn body_and_retry_after() {
        let response = ApiError::unavailable("draining", "shutting down").error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let body = response.into_body().try_into_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], 503);
        assert_eq!(json["code"], "draining");
        assert_eq!(json["message"], "shutting down");
    }

    #[test]
    fn auth_statuses() {
        assert_eq!(
            ApiError::from(AuthError::WrongAccount).status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(ApiError::from(AuthError::Expired(1)).code, "expired");
        assert_eq!(
            ApiError::from(AuthError::Missing).status,
            StatusCode::UNAUTHORIZED
        );
    }
}
