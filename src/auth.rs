//! Authentication: HTTP Basic `AccountSid:AuthToken` for servers, HMAC-SHA1 signed
//! URLs for browsers (docs/api.md §1, §4).
//!
//! A signed URL's `canonical` text is the request path, `?`, and the query string
//! exactly as sent up to (not including) `&signature=`; the signature is base64url
//! without padding of HMAC-SHA1(AuthToken, canonical) and must be the last parameter.
//! Signatures and tokens are compared in constant time.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::account::{AccountIdx, Accounts};

type HmacSha1 = Hmac<Sha1>;

/// Why a request was not authenticated. Each variant maps to one HTTP status and one
/// `switchboard_auth_failures_total{reason}` label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor a `signature` parameter.
    #[error("authentication required: Basic AccountSid:AuthToken or a signed URL")]
    Missing,
    /// Basic credentials that do not name a known account with that token.
    #[error("invalid credentials")]
    BadCredentials,
    /// The account in the path does not exist.
    #[error("unknown account")]
    UnknownAccount,
    /// Missing, malformed, misplaced or wrong signature.
    #[error("invalid signature: {0}")]
    BadSignature(&'static str),
    /// A correctly signed URL without `expires`: a signed URL must say when it ends,
    /// and one that does not is refused like a missing signature (401).
    #[error("expires: a signed URL needs expires in unix seconds")]
    MissingExpires,
    /// A correctly signed URL whose `expires` is not unix seconds (negative, too
    /// large, not a number): the signature is fine, so this is a validation error
    /// (400 naming `expires`), not an authentication failure.
    #[error("expires: must be unix seconds, a whole number")]
    BadExpires,
    /// A correctly signed URL whose `expires` has passed.
    #[error("the signed URL expired at {0}")]
    Expired(u64),
    /// A correctly signed URL whose `expires` is further ahead than
    /// `auth.max_url_lifetime_secs`: refused so that a leaked URL cannot live for
    /// years, and so no huge `expires` ever reaches time arithmetic.
    #[error("expires: a signed URL may live at most {0} seconds")]
    ExpiresTooFar(u64),
    /// Valid Basic credentials of one account used on another account's path (docs/api.md
    /// §1: 403). Never returned for a signed URL: one signed with another account's
    /// token is just a bad signature, so the answer reveals nothing (§4).
    #[error("these credentials belong to another account")]
    WrongAccount,
}

impl AuthError {
    /// Every value [`AuthError::reason`] can return, for pre-creating metric series.
    pub const REASONS: &'static [&'static str] = &[
        "missing",
        "bad_credentials",
        "unknown_account",
        "bad_signature",
        "missing_expires",
        "bad_expires",
        "expired",
        "expires_too_far",
        "wrong_account",
    ];

    /// Low-cardinality reason used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::BadCredentials => "bad_credentials",
            AuthError::UnknownAccount => "unknown_account",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::MissingExpires => "missing_expires",
            AuthError::BadExpires => "bad_expires",
            AuthError::Expired(_) => "expired",
            AuthError::ExpiresTooFar(_) => "expires_too_far",
            AuthError::WrongAccount => "wrong_account",
        }
    }
}

/// A successfully authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// Basic auth: the account itself, which may see every scope.
    Account(AccountIdx),
    /// A signed URL, valid until `expires` (unix seconds); its filters are the ones
    /// signed into the URL.
    SignedUrl {
        /// The account whose token signed the URL.
        account: AccountIdx,
        /// When the URL stops being valid.
        expires: u64,
    },
}

impl Principal {
    /// The authenticated account.
    pub fn account(&self) -> AccountIdx {
        match *self {
            Principal::Account(account) | Principal::SignedUrl { account, .. } => account,
        }
    }
}

/// When a signed URL is checked, and how far ahead its `expires` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Unix seconds now.
    pub now: u64,
    /// `auth.max_url_lifetime_secs`.
    pub max_lifetime: u64,
}

impl Validity {
    /// The latest `expires` a signed URL may carry, saturating rather than wrapping.
    fn latest_expires(&self) -> u64 {
        self.now.saturating_add(self.max_lifetime)
    }
}

/// Authenticates a request to `/v1/Accounts/{path_sid}/…` by its `Authorization`
/// header if present, otherwise by its signed URL.
pub fn authenticate(
    accounts: &Accounts,
    path_sid: &str,
    authorization: Option<&str>,
    path: &str,
    raw_query: &str,
    validity: Validity,
) -> Result<Principal, AuthError> {
    match authorization {
        Some(header) => basic(accounts, path_sid, header).map(Principal::Account),
        None if has_param(raw_query, "signature") => {
            signed_url(accounts, path_sid, path, raw_query, validity)
        }
        // `expires` without `signature`: meant as a signed URL, but unsigned.
        None if has_param(raw_query, "expires") => {
            Err(AuthError::BadSignature("signature is missing"))
        }
        None => Err(AuthError::Missing),
    }
}

/// Checks `Authorization: Basic base64(sid:token)` against the path's account.
///
/// The header a client library sends is the account's own canonical value, compared
/// whole in constant time; any other spelling (another case of `Basic`, spaces,
/// another account's credentials) is decoded and judged as before, so the shortcut
/// accepts nothing the full check would refuse and changes no error.
pub fn basic(accounts: &Accounts, path_sid: &str, header: &str) -> Result<AccountIdx, AuthError> {
    if let Some(idx) = accounts.lookup(path_sid) {
        if secret_eq(&accounts.get(idx).basic_header, header.as_bytes()) {
            return Ok(idx);
        }
    }
    let idx = basic_any(accounts, header)?;
    if &*accounts.get(idx).sid != path_sid {
        return Err(AuthError::WrongAccount);
    }
    Ok(idx)
}

/// Checks Basic credentials of any account (for routes without an account in the
/// path, such as the simulator's).
pub fn basic_any(accounts: &Accounts, header: &str) -> Result<AccountIdx, AuthError> {
    let mut decoded = [0u8; MAX_BASIC_BYTES];
    let (sid, token) = parse_basic(header, &mut decoded).ok_or(AuthError::BadCredentials)?;
    let idx = accounts.lookup(sid).ok_or(AuthError::BadCredentials)?;
    if !secret_eq(accounts.get(idx).auth_token.as_bytes(), token.as_bytes()) {
        return Err(AuthError::BadCredentials);
    }
    Ok(idx)
}

/// Whether two secrets are equal, in a time that depends on their lengths only: every
/// word is compared, with no exit at the first difference, so the time a wrong token
/// takes does not tell how much of it was right. A word at a time, with `subtle`
/// judging the folded difference: its byte-by-byte slice comparison was a twentieth
/// of a one-event publish.
fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_ne_bytes(word)
    };
    let difference = a
        .chunks(8)
        .zip(b.chunks(8))
        .fold(0u64, |d, (x, y)| d | (word(x) ^ word(y)));
    difference.ct_eq(&0).into()
}

/// Longest auth token an account may have (the configuration refuses longer ones);
/// Twilio's are 32 characters.
pub const MAX_TOKEN_BYTES: usize = 128;

/// Most bytes of decoded Basic credentials read: a sid (34), `:` and the longest
/// token fit, so anything longer is no account's.
pub const MAX_BASIC_BYTES: usize = 256;

/// Splits a Basic `Authorization` header into sid and token, decoded into `decoded`
/// (on the caller's stack: every publish is authenticated this way, and the two
/// strings it used to allocate were a tenth of a one-event publish's work).
pub fn parse_basic<'d>(
    header: &str,
    decoded: &'d mut [u8; MAX_BASIC_BYTES],
) -> Option<(&'d str, &'d str)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // Refuses, without decoding, what could not fit.
    let n = STANDARD.decode_slice(encoded.trim(), decoded).ok()?;
    let text = std::str::from_utf8(&decoded[..n]).ok()?;
    text.split_once(':')
}

/// The user name of the admin endpoints' Basic credentials.
pub const ADMIN_USER: &str = "admin";

/// Checks Basic credentials for the admin endpoints (`/v1/Admin/…`): user
/// [`ADMIN_USER`], password the configured `admin_token`, compared in constant time.
/// With no token configured nothing is admin, whatever is sent; no account's
/// credentials are admin either.
pub fn admin(admin_token: &str, header: Option<&str>) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let mut decoded = [0u8; MAX_BASIC_BYTES];
    let (user, token) = parse_basic(header, &mut decoded).ok_or(AuthError::BadCredentials)?;
    // Both compared, so the time taken does not tell which was wrong.
    let user_ok = secret_eq(user.as_bytes(), ADMIN_USER.as_bytes());
    let token_ok = secret_eq(token.as_bytes(), admin_token.as_bytes());
    if admin_token.is_empty() || !(user_ok & token_ok) {
        return Err(AuthError::BadCredentials);
    }
    Ok(())
}

/// Verifies a signed URL for the path's account with exactly one HMAC, under that
/// account's token only. A URL signed with another account's token is a bad
/// signature like any other (docs/api.md §4): trying the other tokens would make a failed
/// check cost one HMAC per account and tell an attacker which account a URL
/// belongs to.
pub fn signed_url(
    accounts: &Accounts,
    path_sid: &str,
    path: &str,
    raw_query: &str,
    validity: Validity,
) -> Result<Principal, AuthError> {
    let account = accounts.lookup(path_sid).ok_or(AuthError::UnknownAccount)?;
    let (unsigned, signature) = split_signature(raw_query)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthError::BadSignature("signature is not base64url without padding"))?;
    let mut mac = keyed(&accounts.get(account).auth_token);
    mac.update(path.as_bytes());
    mac.update(b"?");
    mac.update(unsigned.as_bytes());
    if mac.verify_slice(&signature).is_err() {
        return Err(AuthError::BadSignature("signature does not match"));
    }
    let expires = query_value(unsigned, "expires")
        .ok_or(AuthError::MissingExpires)?
        .parse::<u64>()
        .map_err(|_| AuthError::BadExpires)?;
    if validity.now > expires {
        return Err(AuthError::Expired(expires));
    }
    if expires > validity.latest_expires() {
        return Err(AuthError::ExpiresTooFar(validity.max_lifetime));
    }
    Ok(Principal::SignedUrl { account, expires })
}

/// Splits a raw query into the signed part and the signature value, insisting that
/// `signature` appears exactly once and last.
fn split_signature(raw_query: &str) -> Result<(&str, &str), AuthError> {
    let (unsigned, signature) =
        raw_query
            .rsplit_once("&signature=")
            .ok_or(AuthError::BadSignature(
                "signature must be the last parameter",
            ))?;
    if signature.contains('&') || has_param(unsigned, "signature") {
        return Err(AuthError::BadSignature(
            "signature must be the last parameter",
        ));
    }
    Ok((unsigned, signature))
}

/// Appends `&signature=…` to a path and query that already carry every parameter,
/// `expires` included.
pub fn sign_path_and_query(token: &str, path_and_query: &str) -> String {
    let mut mac = keyed(token);
    mac.update(path_and_query.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{path_and_query}&signature={signature}")
}

/// What `switchboard sign` prints: the path and query with `expires` appended when
/// absent (`now + expires_in`), then the signature.
pub fn sign_url(token: &str, path_and_query: &str, expires_in: u64, now: u64) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut query = query.to_owned();
    if !has_param(&query, "expires") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&format!("expires={}", now.saturating_add(expires_in)));
    }
    sign_path_and_query(token, &format!("{path}?{query}"))
}

/// Twilio's webhook signature: standard padded base64 of HMAC-SHA1(token, data).
/// Used for `X-Switchboard-Signature` and `X-Twilio-Signature`.
pub fn sign_base64(token: &str, data: &[u8]) -> String {
    let mut mac = keyed(token);
    mac.update(data);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `X-Twilio-Signature` exactly as Twilio computes it: base64 of HMAC-SHA1 over the
/// full URL followed by every POST parameter sorted by name, each name then value
/// (for a GET, `params` is empty and the URL carries the query).
pub fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    sign_base64(token, data.as_bytes())
}

fn keyed(token: &str) -> HmacSha1 {
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha1::new_from_slice(token.as_bytes()).expect("HMAC takes keys of any length")
}

/// True when the raw query has a parameter with this exact (undecoded) name.
pub fn has_param(raw_query: &str, name: &str) -> bool {
    raw_query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

/// The first raw value of a parameter (undecoded; only used for plain numbers).
fn query_value<'q>(raw_query: &'q str, name: &str) -> Option<&'q str> {
    raw_query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn admin_credentials_are_the_admin_user_and_the_configured_token() {
        let basic = |user: &str, token: &str| {
            format!("Basic {}", STANDARD.encode(format!("{user}:{token}")))
        };
        assert_eq!(admin("s3cret", Some(&basic("admin", "s3cret"))), Ok(()));
        for (configured, header) in [
            ("s3cret", Some(basic("admin", "s3cre"))),
            ("s3cret", Some(basic("admin", "s3cret "))),
            ("s3cret", Some(basic("root", "s3cret"))),
            ("s3cret", Some(basic("", "s3cret"))),
            ("s3cret", Some("Bearer s3cret".to_string())),
            // No token configured: not even an empty password passes.
            ("", Some(basic("admin", ""))),
        ] {
            assert_eq!(
                admin(configured, header.as_deref()),
                Err(AuthError::BadCredentials),
                "{header:?}"
            );
        }
        assert_eq!(admin("s3cret", None), Err(AuthError::Missing));
    }

    use super::*;
    use crate::config::AccountConfig;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "12345678901234567890123456789012";

    /// Checked at unix second `now` with the default lifetime of one day.
    fn at(now: u64) -> Validity {
        Validity {
            now,
            max_lifetime: 86_400,
        }
    }

    fn accounts() -> std::sync::Arc<Accounts> {
        Accounts::new(&[
            AccountConfig {
                sid: SID.into(),
                auth_token: TOKEN.into(),
            },
            AccountConfig {
                sid: "ACffffffffffffffffffffffffffffffff".into(),
                auth_token: "other-token".into(),
            },
        ])
    }

    /// Fixed vector computed independently with Python's hmac module:
    /// `base64.urlsafe_b64encode(hmac.new(TOKEN, canonical, sha1).digest()).rstrip("=")`
    #[test]
    fn signer_matches_fixed_vector() {
        let signed = sign_path_and_query(
            TOKEN,
            "/v1/Accounts/AC0123456789abcdef0123456789abcdef/Stream?types=call.*&expires=1767225600",
        );
        assert_eq!(
            signed,
            "/v1/Accounts/AC0123456789abcdef0123456789abcdef/Stream?types=call.*&expires=1767225600&signature=c80ZVnTICxc9ZTBf7WUnVC3i2Ec"
        );
    }

    /// Twilio's published webhook-signature example (twilio.com/docs/usage/security).
    #[test]
    fn base64_signature_matches_twilio_vector() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let mut data = url.to_string();
        for (k, v) in [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ] {
            data.push_str(k);
            data.push_str(v);
        }
        assert_eq!(
            sign_base64("12345", data.as_bytes()),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }

    #[test]
    fn twilio_signature_sorts_parameters() {
        let params: Vec<(String, String)> = [
            ("To", "+18005551212"),
            ("From", "+14158675310"),
            ("Digits", "1234"),
            ("Caller", "+14158675310"),
            ("CallSid", "CA1234567890ABCDE"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }

    #[test]
    fn sign_url_appends_expires_then_signature() {
        let url = sign_url(
            TOKEN,
            &format!("/v1/Accounts/{SID}/Stream?types=call.*"),
            60,
            1000,
        );
        assert!(
            url.contains("types=call.*&expires=1060&signature="),
            "{url}"
        );
        let (path, query) = url.split_once('?').unwrap();
        let p = signed_url(&accounts(), SID, path, query, at(1000)).unwrap();
        assert_eq!(
            p,
            Principal::SignedUrl {
                account: AccountIdx(0),
                expires: 1060
            }
        );
        assert_eq!(
            signed_url(&accounts(), SID, path, query, at(1061)),
            Err(AuthError::Expired(1060))
        );
    }

    #[test]
    fn tampering_and_misplacement_rejected() {
        let url = sign_url(
            TOKEN,
            &format!("/v1/Accounts/{SID}/Stream?types=call.*"),
            60,
            1000,
        );
        let (path, query) = url.split_once('?').unwrap();
        let acc = accounts();
        let tampered = query.replace("call.*", "sms.*");
        assert!(matches!(
            signed_url(&acc, SID, path, &tampered, at(1000)),
            Err(AuthError::BadSignature(_))
        ));
        let (unsigned, sig) = query.rsplit_once("&signature=").unwrap();
        let moved = format!("signature={sig}&{unsigned}");
        assert!(matches!(
            signed_url(&acc, SID, path, &moved, at(1000)),
            Err(AuthError::BadSignature(_))
        ));
        let doubled = format!("signature={sig}&{query}");
        assert!(matches!(
            signed_url(&acc, SID, path, &doubled, at(1000)),
            Err(AuthError::BadSignature(_))
        ));
        assert!(matches!(
            signed_url(&acc, SID, path, unsigned, at(1000)),
            Err(AuthError::BadSignature(_))
        ));
    }

    #[test]
    fn other_accounts_signature_is_just_a_bad_signature() {
        let url = sign_url(
            "other-token",
            &format!("/v1/Accounts/{SID}/Stream"),
            60,
            1000,
        );
        let (path, query) = url.split_once('?').unwrap();
        let cross = signed_url(&accounts(), SID, path, query, at(1000));
        let (unsigned, _) = query.rsplit_once("&signature=").unwrap();
        let garbage = format!("{unsigned}&signature={}", URL_SAFE_NO_PAD.encode([7u8; 20]));
        assert_eq!(
            cross,
            Err(AuthError::BadSignature("signature does not match"))
        );
        assert_eq!(
            cross,
            signed_url(&accounts(), SID, path, &garbage, at(1000))
        );
    }

    #[test]
    fn expires_beyond_the_lifetime_is_too_far() {
        let path = format!("/v1/Accounts/{SID}/Stream");
        let check = |expires: &str, now: u64| {
            let url = sign_path_and_query(TOKEN, &format!("{path}?expires={expires}"));
            let (path, query) = url.split_once('?').unwrap();
            signed_url(&accounts(), SID, path, query, at(now))
        };
        assert!(check("87400", 1000).is_ok(), "exactly the lifetime");
        assert_eq!(check("87401", 1000), Err(AuthError::ExpiresTooFar(86_400)));
        assert_eq!(
            check(&u64::MAX.to_string(), 1000),
            Err(AuthError::ExpiresTooFar(86_400))
        );
        // The latest allowed time saturates instead of wrapping near u64::MAX.
        assert!(check(&u64::MAX.to_string(), u64::MAX - 5).is_ok());
        for bad in ["99999999999999999999999", "-1", "soon", ""] {
            assert_eq!(check(bad, 1000), Err(AuthError::BadExpires), "{bad}");
        }
    }

    #[test]
    fn every_reason_is_listed_for_metrics() {
        let all = [
            AuthError::Missing,
            AuthError::BadCredentials,
            AuthError::UnknownAccount,
            AuthError::BadSignature("x"),
            AuthError::MissingExpires,
            AuthError::BadExpires,
            AuthError::Expired(0),
            AuthError::ExpiresTooFar(1),
            AuthError::WrongAccount,
        ];
        for error in all {
            assert!(AuthError::REASONS.contains(&error.reason()), "{error:?}");
        }
        assert_eq!(AuthError::REASONS.len(), 9);
    }

    #[test]
    fn secrets_are_equal_only_when_every_byte_is() {
        for len in [0usize, 1, 7, 8, 9, 31, 32, 70] {
            let secret: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            assert!(secret_eq(&secret, &secret.clone()), "{len}");
            for at in 0..len {
                let mut off = secret.clone();
                off[at] ^= 1;
                assert!(!secret_eq(&secret, &off), "{len} bytes, differing at {at}");
            }
            let mut longer = secret.clone();
            longer.push(0);
            assert!(!secret_eq(&secret, &longer), "a zero byte more, {len}");
            assert!(!secret_eq(&longer, &secret), "a zero byte less, {len}");
        }
    }

    #[test]
    fn basic_auth() {
        let acc = accounts();
        let header = format!("Basic {}", STANDARD.encode(format!("{SID}:{TOKEN}")));
        assert_eq!(basic(&acc, SID, &header), Ok(AccountIdx(0)));
        // That header is the one compared whole; every other spelling below is
        // decoded.
        assert_eq!(&*acc.get(AccountIdx(0)).basic_header, header.as_bytes());
        assert_eq!(
            basic(&acc, "ACffffffffffffffffffffffffffffffff", &header),
            Err(AuthError::WrongAccount)
        );
        // Shorter, a prefix, longer, and the same length but one byte off.
        let mut off_by_one = TOKEN.to_string();
        off_by_one.replace_range(31.., "3");
        for token in ["nope", &TOKEN[..31], &format!("{TOKEN}0"), &off_by_one] {
            let wrong = format!("Basic {}", STANDARD.encode(format!("{SID}:{token}")));
            assert_eq!(
                basic(&acc, SID, &wrong),
                Err(AuthError::BadCredentials),
                "{token}"
            );
        }
        assert_eq!(basic(&acc, SID, "Bearer x"), Err(AuthError::BadCredentials));
        let long = format!("Basic {}", STANDARD.encode("x".repeat(MAX_BASIC_BYTES + 1)));
        assert_eq!(basic(&acc, SID, &long), Err(AuthError::BadCredentials));
        let no_colon = format!("Basic {}", STANDARD.encode(SID));
        assert_eq!(basic(&acc, SID, &no_colon), Err(AuthError::BadCredentials));
        // The scheme in any case and spaces around the credentials, as decoded.
        let spaced = format!("  bAsIc   {}  ", STANDARD.encode(format!("{SID}:{TOKEN}")));
        assert_eq!(basic(&acc, SID, &spaced), Ok(AccountIdx(0)));
        let account = format!("{:?}", acc.get(AccountIdx(0)));
        assert!(account.contains(SID), "{account}");
        assert!(
            !account.contains(TOKEN) && !account.contains(&header[6..]),
            "the token is not shown, nor the header made of it: {account}"
        );
        assert_eq!(
            basic(&acc, SID, "Basic !!!"),
            Err(AuthError::BadCredentials)
        );
    }
}
