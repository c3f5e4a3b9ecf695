//! Signed stream URLs, written from docs/api.md §4 and independent of the crate's
//! signer: `canonical` is the path, `?`, and the query exactly as sent up to
//! (excluding) `&signature=`; the signature is base64url without padding of
//! HMAC-SHA1(AuthToken, canonical), appended as the last parameter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Current unix time in seconds.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// base64url (no padding) of HMAC-SHA1(token, canonical).
pub fn signature(token: &str, canonical: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Names of the query parameters of a path+query, in order, as sent.
pub fn param_names(path_and_query: &str) -> Vec<&str> {
    match path_and_query.split_once('?') {
        None => Vec::new(),
        Some((_, query)) => query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
            .collect(),
    }
}

/// Appends one raw `name=value` parameter to a path+query.
pub fn append_param(path_and_query: &str, pair: &str) -> String {
    if path_and_query.contains('?') {
        format!("{path_and_query}&{pair}")
    } else {
        format!("{path_and_query}?{pair}")
    }
}

/// Signs `path_and_query`, adding `expires=<now + 3600>` when absent.
pub fn sign(token: &str, path_and_query: &str) -> String {
    sign_with_expires(token, path_and_query, now_secs() + 3600)
}

/// Signs `path_and_query`, adding `expires=<expires>` when absent.
pub fn sign_with_expires(token: &str, path_and_query: &str, expires: i64) -> String {
    let canonical = if param_names(path_and_query).contains(&"expires") {
        path_and_query.to_string()
    } else {
        append_param(path_and_query, &format!("expires={expires}"))
    };
    sign_exact(token, &canonical)
}

/// Appends `&signature=` for exactly this canonical string (no `expires`
/// added): for URLs that are deliberately odd but correctly signed.
pub fn sign_exact(token: &str, canonical: &str) -> String {
    let sig = signature(token, canonical);
    append_param(canonical, &format!("signature={sig}"))
}

/// Splits a signed path+query into (canonical, signature).
pub fn split_signed(signed: &str) -> (&str, &str) {
    let at = signed
        .rfind("&signature=")
        .expect("a signed URL has &signature=");
    (&signed[..at], &signed[at + "&signature=".len()..])
}
