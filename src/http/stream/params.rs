//! The stream URL's query parameters (docs/api.md §4), decoded and validated once.
//! Authentication has already happened; every error here is a 400 naming the
//! parameter.

use std::borrow::Cow;

use super::super::ApiError;
use crate::auth::Principal;
use crate::filter::{Filter, ScopeGrant};
use crate::grant::Grant;

/// Longest client id.
const MAX_CLIENT_LEN: usize = 64;

/// The cursor value that asks for everything the router still retains.
pub const EARLIEST: &str = "earliest";

/// The stream URL's parameters that may appear at most once; `where` repeats.
pub const SINGLE_PARAMS: &[&str] = &[
    "client",
    "types",
    "scopes",
    "expires",
    "transport",
    "cursor",
    "timeout",
    "act",
];

/// Which transport a stream request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Server-sent events (the default).
    Sse,
    /// `transport=poll`.
    Poll,
}

/// A validated stream request.
#[derive(Debug)]
pub struct StreamParams {
    /// The client id, if the URL named one.
    pub client: Option<String>,
    /// The URL's own subscription, if it carried `types`, `where` or `scopes`.
    pub filter: Option<Filter>,
    /// What the client gets if it has no subscription at all.
    pub default_filter: Filter,
    /// When the subscription (and a signed URL's stream) ends, unix seconds.
    pub expires: Option<u64>,
    /// The transport.
    pub transport: Transport,
    /// The `Last-Event-ID` header, or else `cursor=`, if not empty.
    pub cursor: Option<String>,
    /// A long-poll's `timeout=`, in seconds.
    pub timeout: Option<u64>,
    /// What this connection's own URL grants: the scopes written to it and the
    /// actions its client events may take (`where`, `scopes`, `act`).
    pub grant: Grant,
}

impl StreamParams {
    /// Parses the raw query of an authenticated request. `last_event_id` is the
    /// header's value, which takes precedence over `cursor=` (see [`resume_cursor`]).
    pub fn parse(
        raw_query: &str,
        principal: Principal,
        last_event_id: Option<&str>,
        now: u64,
    ) -> Result<StreamParams, ApiError> {
        let mut query = QueryParams::parse(raw_query, SINGLE_PARAMS)?;
        let client = query.take("client");
        let types = query.take("types");
        let scopes = query.take("scopes");
        let expires = query.take("expires");
        let transport = query.take("transport");
        let cursor = query.take("cursor");
        let timeout = query.take("timeout");
        let act = query.take("act");
        let wheres = query.wheres;

        let client = client.map(|c| validate_client(&c)).transpose()?;
        let transport = match transport.as_deref() {
            None | Some("") => Transport::Sse,
            Some("poll") => Transport::Poll,
            Some(other) => {
                return Err(ApiError::parameter(format!(
                    "transport: `{}` is not supported (poll for long-poll; omit it for SSE or WebSocket)",
                    truncate(other)
                )))
            }
        };
        let (absent_scopes, expires) = match principal {
            Principal::Account(_) => (ScopeGrant::All, parse_expires(expires.as_deref(), now)?),
            Principal::SignedUrl { expires, .. } => (ScopeGrant::Only(Vec::new()), Some(expires)),
        };
        let wheres: Vec<&str> = wheres.iter().map(|w| w.as_ref()).collect();
        let grant = Grant::parse(principal, &wheres, scopes.as_deref(), act.as_deref())?;
        let filter = if types.is_some() || !wheres.is_empty() || scopes.is_some() {
            Some(Filter::parse(
                types.as_deref(),
                &wheres,
                scopes.as_deref(),
                absent_scopes.clone(),
            )?)
        } else {
            None
        };
        let cursor = resume_cursor(cursor.as_deref(), last_event_id)?;
        let timeout = timeout
            .map(|t| {
                t.parse::<u64>().map_err(|_| {
                    ApiError::parameter(format!(
                        "timeout: `{}` is not a whole number of seconds",
                        truncate(&t)
                    ))
                })
            })
            .transpose()?;
        Ok(StreamParams {
            timeout,
            client,
            filter,
            default_filter: Filter::all(absent_scopes),
            expires,
            transport,
            cursor,
            grant,
        })
    }
}

/// Where to resume: the `Last-Event-ID` header if present, else `cursor=`; empty
/// values count as absent.
///
/// The header wins because an `EventSource` reconnects to the very URL it was given
/// and puts the last id it saw in the header: a page opened with a signed
/// `cursor=earliest` must resume after that id, not replay everything again.
/// `earliest` in the header is refused (docs/api.md §4: the header carries real cursors
/// only). It is only honoured from the query, where a signed URL's signature covers
/// it, so the holder of a plain signed URL cannot turn each request into a full
/// retention replay. A 400 rather than silently ignoring it: `EventSource` never
/// sends it (the server sends no such id), so whoever did gets told why.
fn resume_cursor(query: Option<&str>, header: Option<&str>) -> Result<Option<String>, ApiError> {
    let header = header.filter(|c| !c.is_empty());
    if header == Some(EARLIEST) {
        return Err(ApiError::parameter(
            "Last-Event-ID: `earliest` is not a cursor; ask for a replay with cursor=earliest in the URL",
        ));
    }
    Ok(header
        .or(query.filter(|c| !c.is_empty()))
        .map(str::to_owned))
}

/// A URL's query split into its single-valued parameters and its repeatable
/// `where` clauses, decoded once. Every URL that carries a grant (stream,
/// client events) reads its query through this, so "given more than once" means
/// the same everywhere.
pub struct QueryParams<'q> {
    singles: Vec<(&'static str, Cow<'q, str>)>,
    /// The `where` clauses, in order.
    pub wheres: Vec<Cow<'q, str>>,
}

impl<'q> QueryParams<'q> {
    /// Decodes `raw_query`, keeping the parameters named in `singles` (each at most
    /// once: a repeat is a 400 naming it) and every `where`. Others (`signature`,
    /// already checked; cache busters browsers add) are ignored.
    pub fn parse(raw_query: &'q str, singles: &[&'static str]) -> Result<Self, ApiError> {
        let mut query = QueryParams {
            singles: Vec::new(),
            wheres: Vec::new(),
        };
        for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
            if key == "where" {
                query.wheres.push(value);
                continue;
            }
            let Some(name) = singles.iter().copied().find(|name| *name == key) else {
                continue;
            };
            if query.singles.iter().any(|(seen, _)| *seen == name) {
                return Err(ApiError::parameter(format!("{name}: given more than once")));
            }
            query.singles.push((name, value));
        }
        Ok(query)
    }

    /// Takes a single-valued parameter's value, if the query had it.
    pub fn take(&mut self, name: &str) -> Option<Cow<'q, str>> {
        let at = self.singles.iter().position(|(seen, _)| *seen == name)?;
        Some(self.singles.swap_remove(at).1)
    }
}

/// Checks a client id: 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn validate_client(client: &str) -> Result<String, ApiError> {
    let valid = (1..=MAX_CLIENT_LEN).contains(&client.len())
        && client
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(client.to_owned())
    } else {
        Err(ApiError::parameter(format!(
            "client: `{}` must be 1 to {MAX_CLIENT_LEN} characters [A-Za-z0-9_-]",
            truncate(client)
        )))
    }
}

/// `expires` on a Basic-auth stream: optional unix seconds in the future.
fn parse_expires(value: Option<&str>, now: u64) -> Result<Option<u64>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(at) if at > now => Ok(Some(at)),
        Ok(_) => Err(ApiError::parameter("expires: is in the past")),
        Err(_) => Err(ApiError::parameter(format!(
            "expires: `{}` is not unix seconds",
            truncate(value)
        ))),
    }
}

/// At most 64 characters of untrusted input, for error messages.
fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountIdx;

    const BASIC: Principal = Principal::Account(AccountIdx(0));

    fn message(raw: &str) -> String {
        StreamParams::parse(raw, BASIC, None, 100)
            .unwrap_err()
            .message
    }

    #[test]
    fn errors_name_the_parameter() {
        assert!(message("client=a%20b").starts_with("client:"));
        assert!(message(&format!("client={}", "a".repeat(65))).starts_with("client:"));
        assert!(message("transport=ws").starts_with("transport:"));
        assert!(message("transport=sse").starts_with("transport:"));
        assert!(message("types=a&types=b").starts_with("types:"));
        assert!(message("expires=soon").starts_with("expires:"));
        assert!(message("expires=50").starts_with("expires:"));
        assert!(message("where=data.x~1").starts_with("where"));
        assert!(message("timeout=soon").starts_with("timeout:"));
        assert!(message("timeout=-1").starts_with("timeout:"));
        assert!(message("types=Call").starts_with("types"));
        assert!(message("act=kill").starts_with("act"));
        assert!(message("act=hangup&act=mute").starts_with("act:"));
    }

    #[test]
    fn filters_and_defaults() {
        let p = StreamParams::parse("client=c1&cursor=", BASIC, Some("abc"), 100).unwrap();
        assert!(p.filter.is_none());
        assert_eq!(p.cursor.as_deref(), Some("abc"));
        assert_eq!(p.client.as_deref(), Some("c1"));
        let p = StreamParams::parse("types=call.*&transport=poll&_=1", BASIC, None, 100).unwrap();
        assert!(p.filter.is_some());
        assert_eq!(p.transport, Transport::Poll);
        let signed = Principal::SignedUrl {
            account: AccountIdx(0),
            expires: 500,
        };
        let p = StreamParams::parse("types=a", signed, None, 100).unwrap();
        assert_eq!(p.expires, Some(500));
        assert_eq!(p.filter.unwrap().scopes(), &ScopeGrant::Only(Vec::new()));
    }

    #[test]
    fn earliest_counts_only_in_the_query_and_the_header_wins() {
        let signed = Principal::SignedUrl {
            account: AccountIdx(0),
            expires: 500,
        };
        for principal in [BASIC, signed] {
            let p = StreamParams::parse("cursor=earliest", principal, None, 100).unwrap();
            assert_eq!(p.cursor.as_deref(), Some(EARLIEST));
            let error = StreamParams::parse("", principal, Some(EARLIEST), 100).unwrap_err();
            assert_eq!(error.status.as_u16(), 400);
            assert!(
                error.message.starts_with("Last-Event-ID:"),
                "{}",
                error.message
            );
            // An EventSource reconnecting to a cursor=earliest URL resumes after
            // the last id it saw instead of replaying everything again.
            let p = StreamParams::parse("cursor=earliest", principal, Some("abc"), 100).unwrap();
            assert_eq!(p.cursor.as_deref(), Some("abc"));
            let p = StreamParams::parse("cursor=xyz", principal, Some(""), 100).unwrap();
            assert_eq!(p.cursor.as_deref(), Some("xyz"));
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::account::AccountIdx;
    use proptest::prelude::*;

    proptest! {
        /// Any query string is either parsed or refused with a 400 naming a parameter.
        #[test]
        fn any_query_is_parsed_or_a_400(raw in "[a-z_=&%0-9A-F.*<>!^+ -]{0,120}") {
            let principal = Principal::Account(AccountIdx(0));
            if let Err(error) = StreamParams::parse(&raw, principal, None, 0) {
                prop_assert_eq!(error.status.as_u16(), 400);
                let named = SINGLE_PARAMS
                    .iter()
                    .chain(&["where"])
                    .any(|p| error.message.starts_with(p));
                prop_assert!(named, "{}", error.message);
            }
        }
    }
}
