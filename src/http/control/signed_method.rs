//! The method a signed control-channel URL serves (docs/api.md §5).
//!
//! A signature covers the path and the query, not the HTTP method, so without a
//! signed `method=` a URL handed out to *list* a client's subscriptions could be
//! sent as `POST` to *create* one (an all-types subscription, since the list URL
//! carries no filter). The signer therefore names the one method the URL is for,
//! and the control channel serves that method only.
//!
//! Choices the public contract leaves open, documented in docs/api.md §5:
//! - no `method=` at all is a URL that grants no method: `403 method_not_signed`,
//!   like a mismatch, rather than a 400 (the URL is well formed and correctly
//!   signed; it just does not allow what was asked);
//! - the value is matched case-insensitively (`method=post` is `POST`), as Twilio
//!   reads its own `Method` parameters;
//! - a value outside `GET`, `POST`, `PATCH`, `DELETE`, or `method=` given twice, is a
//!   correctly signed URL with an invalid parameter: `400` naming `method`;
//! - `method=POST` serves `POST` only and `method=PATCH` serves `PATCH` only, though
//!   both change an existing subscription: the text of §5, taken literally.

use std::fmt;

use actix_web::http::Method;

/// A method a signed control-channel URL may be signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedMethod {
    /// List or read.
    Get,
    /// Create, or change `…/{SubscriptionSid}`.
    Post,
    /// Change `…/{SubscriptionSid}`.
    Patch,
    /// Remove `…/{SubscriptionSid}`.
    Delete,
}

/// Why a signed URL may not be used with the request's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    /// The signed query has no `method=`: the URL grants no method.
    #[error("method: this signed URL names no method; sign it with method=GET, POST, PATCH or DELETE in its query")]
    Missing,
    /// The URL was signed for another method than the request's.
    #[error("method: this signed URL serves {signed} only, not {used}")]
    Mismatch {
        /// What the URL was signed for.
        signed: SignedMethod,
        /// What the request used.
        used: UsedMethod,
    },
    /// `method=` holds something other than the four methods.
    #[error("method: must be GET, POST, PATCH or DELETE")]
    Invalid,
    /// `method=` appears more than once, so the URL does not say which it serves.
    #[error("method: given more than once")]
    Repeated,
}

impl MethodError {
    /// Whether this is a refusal (403 `method_not_signed`) rather than a malformed
    /// parameter (400).
    pub fn is_refusal(&self) -> bool {
        matches!(self, MethodError::Missing | MethodError::Mismatch { .. })
    }
}

/// The request's method as named in a refusal: one of the four, or "another
/// method" (the routes only take the four, so this never names arbitrary text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsedMethod(Option<SignedMethod>);

impl fmt::Display for UsedMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(method) => method.fmt(f),
            None => f.write_str("another method"),
        }
    }
}

impl fmt::Display for SignedMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignedMethod::Get => "GET",
            SignedMethod::Post => "POST",
            SignedMethod::Patch => "PATCH",
            SignedMethod::Delete => "DELETE",
        })
    }
}

impl SignedMethod {
    const ALL: [SignedMethod; 4] = [
        SignedMethod::Get,
        SignedMethod::Post,
        SignedMethod::Patch,
        SignedMethod::Delete,
    ];

    fn parse(text: &str) -> Option<SignedMethod> {
        SignedMethod::ALL
            .into_iter()
            .find(|m| text.eq_ignore_ascii_case(&m.to_string()))
    }

    fn of(method: &Method) -> Option<SignedMethod> {
        SignedMethod::ALL
            .into_iter()
            .find(|m| method.as_str() == m.to_string())
    }

    /// The method a signed query names. `raw_query` is the query as sent; its
    /// signature has already been verified, so `method=` is what the signer wrote.
    pub fn from_query(raw_query: &str) -> Result<SignedMethod, MethodError> {
        let mut values = form_urlencoded::parse(raw_query.as_bytes())
            .filter(|(key, _)| key == "method")
            .map(|(_, value)| value);
        let first = values.next().ok_or(MethodError::Missing)?;
        if values.next().is_some() {
            return Err(MethodError::Repeated);
        }
        SignedMethod::parse(&first).ok_or(MethodError::Invalid)
    }

    /// Checks that a verified signed query allows the request's method.
    pub fn check(raw_query: &str, used: &Method) -> Result<SignedMethod, MethodError> {
        let signed = SignedMethod::from_query(raw_query)?;
        let used = SignedMethod::of(used);
        if used != Some(signed) {
            return Err(MethodError::Mismatch {
                signed,
                used: UsedMethod(used),
            });
        }
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_serves_itself_only() {
        let methods = [Method::GET, Method::POST, Method::PATCH, Method::DELETE];
        for (signed, name) in SignedMethod::ALL
            .into_iter()
            .zip(["GET", "POST", "PATCH", "DELETE"])
        {
            let query = format!("types=call.*&method={name}&expires=9");
            for used in &methods {
                let got = SignedMethod::check(&query, used);
                if used.as_str() == name {
                    assert_eq!(got, Ok(signed), "{name} on {used}");
                } else {
                    let err = got.unwrap_err();
                    assert!(err.is_refusal(), "{name} on {used}: {err:?}");
                    assert_eq!(
                        err.to_string(),
                        format!("method: this signed URL serves {name} only, not {used}")
                    );
                }
            }
        }
    }

    #[test]
    fn post_and_patch_are_distinct_grants() {
        assert!(SignedMethod::check("method=POST", &Method::PATCH).is_err());
        assert!(SignedMethod::check("method=PATCH", &Method::POST).is_err());
    }

    #[test]
    fn missing_method_grants_nothing() {
        for query in ["", "types=call.*&expires=9", "methods=GET", "xmethod=GET"] {
            let err = SignedMethod::check(query, &Method::GET).unwrap_err();
            assert_eq!(err, MethodError::Missing, "{query:?}");
            assert!(err.is_refusal());
            assert!(err.to_string().starts_with("method:"));
        }
    }

    #[test]
    fn values_are_case_insensitive_and_decoded() {
        assert_eq!(
            SignedMethod::from_query("method=post"),
            Ok(SignedMethod::Post)
        );
        assert_eq!(
            SignedMethod::from_query("method=%44ELETE"),
            Ok(SignedMethod::Delete)
        );
    }

    #[test]
    fn bad_values_are_parameter_errors() {
        for (query, want) in [
            ("method=PUT", MethodError::Invalid),
            ("method=", MethodError::Invalid),
            ("method=GET%20", MethodError::Invalid),
            ("method=OPTIONS", MethodError::Invalid),
            ("method=GET&method=POST", MethodError::Repeated),
            ("method=GET&method=GET", MethodError::Repeated),
        ] {
            let err = SignedMethod::check(query, &Method::GET).unwrap_err();
            assert_eq!(err, want, "{query:?}");
            assert!(!err.is_refusal(), "{query:?}");
            assert!(err.to_string().starts_with("method:"), "{err}");
        }
    }

    #[test]
    fn other_request_methods_are_refused_by_name() {
        let err = SignedMethod::check("method=GET", &Method::PUT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "method: this signed URL serves GET only, not another method"
        );
    }
}
