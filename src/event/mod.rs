//! Events: validated at the HTTP edge, serialised once into shared bytes, then moved
//! through shards, proxies and outboxes as an `Arc` (docs/api.md §2).
//!
//! The delivered JSON is stored without its closing brace so that each client's
//! stream can append its own `"subscriptions"` list (or nothing, for a webhook or a
//! notice) without re-serialising the event.

mod data;
mod scan;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::account::AccountIdx;
use crate::filter::EventFields;

pub use data::{check as check_data, Data, DataView};

/// Longest event type, in bytes.
pub const MAX_TYPE_LEN: usize = 64;
/// Longest `call_sid` or `scope`.
pub const MAX_NAME_LEN: usize = 64;

/// An event id: unique per account, stable across replays. Rendered `EV` + 32 hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u128);

impl EventId {
    /// A fresh random id (122 bits of entropy make collisions a non-issue).
    pub fn random() -> EventId {
        EventId(rand::random())
    }
}

impl EventId {
    /// The id as text, `EV` + 32 lowercase hex digits, without `fmt`'s machinery:
    /// every event renders its id once into its JSON and once into the 202 body, and
    /// `{:032x}` of a `u128` cost about as much as the rest of the envelope.
    pub fn text(&self) -> [u8; 34] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 34];
        out[0] = b'E';
        out[1] = b'V';
        for (i, digit) in out[2..].iter_mut().enumerate() {
            let nibble = (self.0 >> (124 - 4 * i)) & 0xf;
            *digit = HEX[nibble as usize];
        }
        out
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        // Only ASCII letters and digits were written.
        f.write_str(std::str::from_utf8(&text).expect("ASCII"))
    }
}

/// One accepted event. Immutable once built; shared as [`SharedEvent`].
#[derive(Debug)]
pub struct Event {
    /// Stable id, also returned by the publish response.
    pub id: EventId,
    /// Owning account: the first thing every match checks.
    pub account: AccountIdx,
    /// Dotted type name, validated.
    pub type_name: Box<str>,
    /// The call this event belongs to; decides the shard and thus the ordering.
    pub call_sid: Option<Box<str>>,
    /// Publisher's security scope, if any.
    pub scope: Option<Box<str>>,
    /// `data` parsed, made from its text in `json_open` when a `where` filter first
    /// looks inside (see [`Data`]).
    data: OnceLock<Map<String, Value>>,
    /// The delivered JSON object without its closing `}`.
    pub json_open: Bytes,
    /// Where `data`'s text starts in `json_open`: it is the envelope's last field.
    data_at: usize,
    /// When the publish was accepted, for end-to-end latency.
    pub accepted_at: Instant,
    /// Cluster mode: the event's place in the cluster's order
    /// ([`crate::cluster::order`]); 0 on a standalone node.
    pub position: u64,
    /// Cluster mode: every event of its stream message is of this event's call, so
    /// one shard routes them all in one batch (an outbox may then release it as
    /// soon as the messages before it have landed).
    pub one_call_message: bool,
}

/// The event as it travels: one allocation shared by every subscriber.
pub type SharedEvent = Arc<Event>;

impl Event {
    /// Builds and serialises an event. `timestamp` is the RFC 3339 text of when it was
    /// accepted (one call per request, shared by the batch).
    pub fn build(account: AccountIdx, account_sid: &str, draft: Draft, timestamp: &str) -> Event {
        let id = EventId::random();
        let (json_open, data_at) = render_open(&Envelope {
            id,
            account_sid,
            type_name: &draft.type_name,
            call_sid: draft.call_sid.as_deref(),
            scope: draft.scope.as_deref(),
            timestamp,
            data: &draft.data,
        });
        Event {
            id,
            account,
            type_name: draft.type_name.into(),
            call_sid: draft.call_sid.map(Into::into),
            scope: draft.scope.map(Into::into),
            data: draft.data.into_parsed(),
            json_open,
            data_at,
            accepted_at: Instant::now(),
            position: 0,
            one_call_message: false,
        }
    }

    /// What another node needs to rebuild this event (cluster mode): its rendered
    /// JSON travels as it is, so every node delivers the same bytes.
    pub fn parts(&self) -> EventParts<'_> {
        EventParts {
            id: self.id,
            type_name: &self.type_name,
            call_sid: self.call_sid.as_deref(),
            scope: self.scope.as_deref(),
            json_open: &self.json_open,
            data_at: self.data_at,
        }
    }

    /// Rebuilds an event another node accepted for `account` (whose sid is
    /// `account_sid`), checking what the bytes claim: a well-formed type, bounded
    /// names, the envelope's id and account at its start, and a JSON object for
    /// `data`. `accepted_at` is when this node got it.
    pub fn from_parts(
        account: AccountIdx,
        account_sid: &str,
        parts: EventParts<'_>,
        max_event_bytes: usize,
        accepted_at: Instant,
        position: u64,
    ) -> Result<Event, PartsError> {
        let names_ok = crate::filter::well_formed_type(parts.type_name)
            && [parts.call_sid, parts.scope]
                .into_iter()
                .flatten()
                .all(|name| !name.is_empty() && name.len() <= MAX_NAME_LEN);
        if !names_ok {
            return Err(PartsError("type, call_sid or scope"));
        }
        let json = parts.json_open;
        // The envelope's fixed start names this event and this account, checked
        // piece by piece rather than rendered (every node does this for every
        // event). An account sid is `AC` and hex, which JSON writes unescaped.
        let id = parts.id.text();
        let rest = json
            .strip_prefix(b"{\"id\":\"")
            .and_then(|rest| rest.strip_prefix(&id[..]))
            .and_then(|rest| rest.strip_prefix(b"\",\"account_sid\":\""))
            .and_then(|rest| rest.strip_prefix(account_sid.as_bytes()))
            .and_then(|rest| rest.strip_prefix(b"\""))
            .ok_or(PartsError("the envelope's id or account"))?;
        let start = json.len() - rest.len();
        // Room for the envelope around the largest `data` a publish may carry.
        if json.len() > max_event_bytes.saturating_add(1024) {
            return Err(PartsError("size"));
        }
        let data = json
            .get(parts.data_at..)
            .filter(|data| data.first() == Some(&b'{') && parts.data_at >= start)
            .ok_or(PartsError("data's offset"))?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
            return Err(PartsError("data"));
        }
        Ok(Event {
            id: parts.id,
            account,
            type_name: parts.type_name.into(),
            call_sid: parts.call_sid.map(Into::into),
            scope: parts.scope.map(Into::into),
            data: OnceLock::new(),
            json_open: Bytes::copy_from_slice(json),
            data_at: parts.data_at,
            accepted_at,
            position,
            one_call_message: false,
        })
    }

    /// The fields filters look at.
    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            type_name: &self.type_name,
            call_sid: self.call_sid.as_deref(),
            scope: self.scope.as_deref(),
            data: DataView::Lazy(self.data_json(), &self.data),
        }
    }

    /// `data` as delivered.
    pub fn data_json(&self) -> &[u8] {
        &self.json_open[self.data_at..]
    }

    /// The complete delivered JSON (no `subscriptions`), e.g. for the publish bench
    /// and webhooks.
    pub fn json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_open.len() + 1);
        out.extend_from_slice(&self.json_open);
        out.push(b'}');
        out
    }
}

/// An event's parts as they cross between nodes (see [`Event::parts`]).
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    /// The event's id.
    pub id: EventId,
    /// Its type.
    pub type_name: &'a str,
    /// Its call, which decides its shard.
    pub call_sid: Option<&'a str>,
    /// Its scope.
    pub scope: Option<&'a str>,
    /// The delivered JSON without its closing `}`.
    pub json_open: &'a [u8],
    /// Where `data` starts in `json_open`.
    pub data_at: usize,
}

/// Why another node's event was not taken: which part did not check out.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("an event from the cluster failed its check: {0}")]
pub struct PartsError(&'static str);

/// A stream notice (`stream.open`, `stream.gap`, `stream.expired`, `stream.shutdown`):
/// the same envelope as an event, rendered whole since it goes to one client.
pub fn notice(account_sid: &str, type_name: &str, data: Map<String, Value>) -> Bytes {
    let (open, _) = render_open(&Envelope {
        id: EventId::random(),
        account_sid,
        type_name,
        call_sid: None,
        scope: None,
        timestamp: &now_rfc3339(),
        data: &Data::from(data),
    });
    let mut out = open.to_vec();
    out.push(b'}');
    out.into()
}

/// What the delivered JSON says about an event, in the order it says it.
struct Envelope<'a> {
    id: EventId,
    account_sid: &'a str,
    type_name: &'a str,
    call_sid: Option<&'a str>,
    scope: Option<&'a str>,
    timestamp: &'a str,
    data: &'a Data,
}

/// The envelope as JSON without its closing `}`:
/// `{"id":…,"account_sid":…,"type":…[,"call_sid":…][,"scope":…],"timestamp":…,"data":{…}`.
///
/// Written by hand rather than by a derived `Serialize`: the fixed keys are copied as
/// they are, and the values, validated names in practice, are copied unless they
/// need escaping; `data` is the publisher's text when there is one, else serde_json's.
/// serde's generic serialisation of the envelope was about a fifth of a one-event
/// publish's instructions. Without the publisher's text of `data` the output is
/// byte-for-byte what serde_json writes for the same fields (a proptest holds it to
/// that). Also returns where `data` starts.
fn render_open(envelope: &Envelope<'_>) -> (Bytes, usize) {
    let mut out = Vec::with_capacity(capacity(envelope));
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(&envelope.id.text());
    out.extend_from_slice(b"\",\"account_sid\":");
    push_json_str(&mut out, envelope.account_sid);
    out.extend_from_slice(b",\"type\":");
    push_json_str(&mut out, envelope.type_name);
    if let Some(call_sid) = envelope.call_sid {
        out.extend_from_slice(b",\"call_sid\":");
        push_json_str(&mut out, call_sid);
    }
    if let Some(scope) = envelope.scope {
        out.extend_from_slice(b",\"scope\":");
        push_json_str(&mut out, scope);
    }
    out.extend_from_slice(b",\"timestamp\":");
    push_json_str(&mut out, envelope.timestamp);
    out.extend_from_slice(b",\"data\":");
    let data_at = out.len();
    match envelope.data.text() {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        // Serialising an already-parsed map into a Vec cannot fail.
        None => serde_json::to_writer(&mut out, envelope.data.map()).expect("data serialises"),
    }
    (out.into(), data_at)
}

/// Room for an envelope whose strings need no escaping and whose `data` is the
/// publisher's text, so that writing it never grows the buffer (growing it was a
/// twentieth of a one-event publish). The id, fixed keys and quotes take 92 bytes, the
/// two optional keys with their quotes 25 more.
fn capacity(envelope: &Envelope<'_>) -> usize {
    let data = match envelope.data.text() {
        Some(text) => text.len(),
        None => 32 * envelope.data.map().len(),
    };
    117 + envelope.account_sid.len()
        + envelope.type_name.len()
        + envelope.call_sid.map_or(0, str::len)
        + envelope.scope.map_or(0, str::len)
        + envelope.timestamp.len()
        + data
}

/// Appends `s` as a JSON string: copied between quotes when nothing in it needs
/// escaping, otherwise escaped by serde_json.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // A fold without an early exit, so the check vectorises over the whole string.
    let escapes = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escapes {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    }
}

/// Now as RFC 3339 UTC with milliseconds, as every delivered timestamp is written.
pub fn now_rfc3339() -> String {
    rfc3339_millis(std::time::SystemTime::now())
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (a clock before 1970 reads as 1970). Written by
/// hand: chrono's format-string interpreter ran on every publish and took about 2.5%
/// of a one-event publish's CPU.
fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let fields = [
        (year, 4usize, b'-'),
        (month, 2, b'-'),
        (day, 2, b'T'),
        (of_day / 3600, 2, b':'),
        (of_day / 60 % 60, 2, b':'),
        (of_day % 60, 2, b'.'),
        (u64::from(since.subsec_millis()), 3, b'Z'),
    ];
    let mut out = [0u8; 24];
    let mut at = 0;
    for (value, width, separator) in fields {
        // Digits from the last: one division per digit, no powers.
        let mut rest = value;
        for place in (at..at + width).rev() {
            out[place] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out[at + width] = separator;
        at += width + 1;
    }
    // Only ASCII digits and separators were written.
    String::from_utf8(out.to_vec()).expect("ASCII")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A validated event before it gets an id: what the publisher sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Validated type.
    pub type_name: String,
    /// Validated call sid.
    pub call_sid: Option<String>,
    /// Validated scope.
    pub scope: Option<String>,
    /// The `data` object (empty when absent): the publisher's own JSON text,
    /// delivered as it was sent (as nchan and Centrifugo pass a publication through)
    /// instead of serialising it again, which cost more than the rest of the envelope.
    pub data: Data,
}

/// Why a publish body was refused. Carries the position of the offending event so the
/// message can name `events[i].field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body (or one NDJSON line) is not JSON of the right shape.
    #[error("{at}: {message}")]
    Malformed {
        /// `body` or `events[i]`.
        at: String,
        /// What the parser said.
        message: String,
    },
    /// An event failed validation.
    #[error("events[{index}].{field}: {message}")]
    Invalid {
        /// Position of the event in the request, from 0.
        index: usize,
        /// The offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An event or the batch is over a limit.
    #[error("{at}: {message}")]
    TooLarge {
        /// `events[i]` or `events`.
        at: String,
        /// Which limit.
        message: String,
    },
}

/// Limits applied while parsing a publish body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most events per request.
    pub max_batch: usize,
    /// Largest single event in bytes of JSON.
    pub max_event_bytes: usize,
}

/// Parses a publish body: one object, a JSON array of objects, or (with `ndjson`) one
/// object per line. All-or-nothing: the first bad event fails the whole body.
pub fn parse_body(body: &[u8], ndjson: bool, limits: Limits) -> Result<Vec<Draft>, EventError> {
    let raws: Vec<&RawValue> = if ndjson {
        let mut raws = Vec::new();
        for line in body.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = raws.len();
            check_count(at + 1, limits)?;
            raws.push(serde_json::from_slice::<&RawValue>(line).map_err(|e| {
                EventError::Malformed {
                    at: format!("events[{at}]"),
                    message: format!("invalid JSON: {e}"),
                }
            })?);
        }
        raws
    } else {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let malformed = |e: serde_json::Error| EventError::Malformed {
            at: "body".into(),
            message: format!("invalid JSON: {e}"),
        };
        match first {
            Some(b'[') => {
                let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(malformed)?;
                check_count(raws.len(), limits)?;
                raws
            }
            _ => {
                if let Some(draft) = one_event(body, limits) {
                    return Ok(vec![draft]);
                }
                vec![serde_json::from_slice::<&RawValue>(body).map_err(malformed)?]
            }
        }
    };
    if raws.is_empty() {
        return Err(EventError::Malformed {
            at: "body".into(),
            message: "no events".into(),
        });
    }
    raws.iter()
        .enumerate()
        .map(|(index, raw)| {
            if raw.get().len() > limits.max_event_bytes {
                return Err(EventError::TooLarge {
                    at: format!("events[{index}]"),
                    message: format!(
                        "an event is at most {} bytes of JSON",
                        limits.max_event_bytes
                    ),
                });
            }
            validate(index, raw.get())
        })
        .collect()
}

/// A body of one valid event, read in one pass: the syntax pass that finds where
/// each event of a batch ends (and refuses a malformed body as a whole) was a third
/// of a one-event publish's parsing. `None` for anything else, which then takes the
/// usual path and its errors, so what is accepted and every refusal are as before.
fn one_event(body: &[u8], limits: Limits) -> Option<Draft> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = body.iter().position(|b| !is_space(b))?;
    let end = body.iter().rposition(|b| !is_space(b))? + 1;
    let text = &body[start..end];
    if text.first() != Some(&b'{') || text.len() > limits.max_event_bytes {
        return None;
    }
    validate(0, std::str::from_utf8(text).ok()?).ok()
}

fn check_count(count: usize, limits: Limits) -> Result<(), EventError> {
    if count > limits.max_batch {
        return Err(EventError::TooLarge {
            at: "events".into(),
            message: format!("at most {} events per request", limits.max_batch),
        });
    }
    Ok(())
}

/// An event object's fields as the parser met them: the four known ones (a repeated
/// key keeps its last value, as a JSON object read into a map does) and the first
/// unknown key. Read in one pass straight from the text, rather than into a
/// `serde_json::Value` map that validation then takes apart: building and hashing
/// that map was the largest single cost of a publish.
/// `data` is kept as its text: it is parsed once from there (for `where` filters) and
/// delivered as it is.
#[derive(Default)]
struct Fields<'a> {
    type_name: Option<Value>,
    call_sid: Option<Value>,
    scope: Option<Value>,
    data: Option<&'a RawValue>,
    unknown: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Fields<'de>, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

/// What a non-object event is told; [`validate`] recognises it.
const NOT_AN_OBJECT: &str = "an event must be a JSON object";

impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NOT_AN_OBJECT)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let slot = match key.0.as_ref() {
                "type" => &mut fields.type_name,
                "call_sid" => &mut fields.call_sid,
                "scope" => &mut fields.scope,
                "data" => {
                    fields.data = Some(map.next_value()?);
                    continue;
                }
                other => {
                    if fields.unknown.is_none() {
                        fields.unknown = Some(other.chars().take(64).collect());
                    }
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

/// An object key, borrowed from the body unless it had escapes.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Validates the JSON text of one event: the common form by hand, anything else by
/// serde_json, whose reading and errors are the authority ([`scan`]).
fn validate(index: usize, raw: &str) -> Result<Draft, EventError> {
    match scan::common_event(raw) {
        Some(draft) => Ok(draft),
        None => validate_serde(index, raw),
    }
}

/// Validates the JSON text of one event with serde_json.
fn validate_serde(index: usize, raw: &str) -> Result<Draft, EventError> {
    let invalid = |field: &str, message: String| EventError::Invalid {
        index,
        field: field.to_owned(),
        message,
    };
    let fields: Fields<'_> = serde_json::from_str(raw).map_err(|e| EventError::Malformed {
        at: format!("events[{index}]"),
        message: if e.is_data() {
            // The text is JSON (the body parsed); only its shape can be wrong.
            NOT_AN_OBJECT.into()
        } else {
            format!("invalid JSON: {e}")
        },
    })?;
    if let Some(unknown) = fields.unknown {
        return Err(invalid(
            &unknown,
            "unknown field (allowed: type, call_sid, scope, data)".into(),
        ));
    }
    let type_name = match fields.type_name {
        Some(Value::String(t)) => t,
        Some(_) => return Err(invalid("type", "must be a string".into())),
        None => return Err(invalid("type", "is required".into())),
    };
    if !is_valid_type(&type_name) {
        return Err(invalid(
            "type",
            format!(
                "must match ^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$ and be at most {MAX_TYPE_LEN} bytes"
            ),
        ));
    }
    let name_field = |field: &'static str, value: Option<Value>| match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_valid_name(&s) => Ok(Some(s)),
        Some(_) => Err(invalid(
            field,
            format!("must be a string of 1 to {MAX_NAME_LEN} characters [A-Za-z0-9_.-]"),
        )),
    };
    let call_sid = name_field("call_sid", fields.call_sid)?;
    let scope = name_field("scope", fields.scope)?;
    let data = match fields.data.map(RawValue::get) {
        None | Some("null") => Data::default(),
        Some(text) if text.starts_with('{') => {
            check_data(text).map_err(|e| EventError::Malformed {
                at: format!("events[{index}]"),
                message: format!("invalid JSON: {e}"),
            })?;
            Data::from_checked_text(text)
        }
        Some(_) => return Err(invalid("data", "must be a JSON object".into())),
    };
    Ok(Draft {
        type_name,
        call_sid,
        scope,
        data,
    })
}

/// True for a type matching `^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$` of at most 64 bytes.
pub fn is_valid_type(t: &str) -> bool {
    t.len() <= MAX_TYPE_LEN
        && t.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && t.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// True for 1–64 characters of `[A-Za-z0-9_.-]` (call sids, scopes).
pub fn is_valid_name(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_chrono_across_leap_years_and_centuries() {
        use std::time::{Duration, UNIX_EPOCH};
        // Day boundaries, leap days (2000, 2024), a non-leap century (2100), and a
        // spread of arbitrary instants up to year 2500.
        let mut samples = vec![0u64, 951_782_400, 951_868_799_999, 1_709_164_800_123];
        samples.push(4_107_542_400_000);
        samples.extend((0..2000u64).map(|i| i * 8_424_113_327_u64 % 16_725_225_600_000));
        for millis in samples {
            let t = UNIX_EPOCH + Duration::from_millis(millis);
            let expected = chrono::DateTime::<chrono::Utc>::from(t)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(rfc3339_millis(t), expected, "{millis} ms");
        }
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    const LIMITS: Limits = Limits {
        max_batch: 3,
        max_event_bytes: 200,
    };

    #[test]
    fn type_grammar() {
        for ok in ["call", "call.start", "a1_.b_2", "x.0"] {
            assert!(is_valid_type(ok), "{ok}");
        }
        for bad in [
            "",
            "Call",
            "1call",
            "call.",
            ".call",
            "call..end",
            "call-start",
            "call.*",
        ] {
            assert!(!is_valid_type(bad), "{bad}");
        }
        assert!(is_valid_type(&"a".repeat(64)));
        assert!(!is_valid_type(&"a".repeat(65)));
    }

    #[test]
    fn parses_single_array_and_ndjson() {
        let one = parse_body(
            br#"{"type":"call.start","call_sid":"CA1","data":{"a":1}}"#,
            false,
            LIMITS,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].call_sid.as_deref(), Some("CA1"));
        let many = parse_body(
            br#" [{"type":"a"},{"type":"b","scope":"s"}]"#,
            false,
            LIMITS,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        let nd = parse_body(b"{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n", true, LIMITS).unwrap();
        assert_eq!(nd.len(), 2);
    }

    #[test]
    fn errors_name_the_event_and_field() {
        let err = parse_body(br#"[{"type":"a"},{"type":"B"}]"#, false, LIMITS).unwrap_err();
        assert_eq!(err.to_string().split(':').next(), Some("events[1].type"));
        let err = parse_body(br#"[{"type":"a","extra":1}]"#, false, LIMITS).unwrap_err();
        assert!(err.to_string().starts_with("events[0].extra:"), "{err}");
        let err = parse_body(br#"[{"type":"a","data":[1]}]"#, false, LIMITS).unwrap_err();
        assert!(err.to_string().starts_with("events[0].data:"), "{err}");
        let err = parse_body(b"{\"type\":\"a\"}\nnope", true, LIMITS).unwrap_err();
        assert!(err.to_string().starts_with("events[1]:"), "{err}");
        assert!(matches!(
            parse_body(b"[]", false, LIMITS),
            Err(EventError::Malformed { .. })
        ));
        assert!(matches!(
            parse_body(b"", false, LIMITS),
            Err(EventError::Malformed { .. })
        ));
        assert!(matches!(
            parse_body(b"[1]", false, LIMITS),
            Err(EventError::Malformed { .. })
        ));
    }

    #[test]
    fn limits() {
        let four = br#"[{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"}]"#;
        assert!(matches!(
            parse_body(four, false, LIMITS),
            Err(EventError::TooLarge { .. })
        ));
        let big = format!(r#"{{"type":"a","data":{{"x":"{}"}}}}"#, "y".repeat(300));
        assert!(matches!(
            parse_body(big.as_bytes(), false, LIMITS),
            Err(EventError::TooLarge { .. })
        ));
    }

    #[test]
    fn delivered_shape() {
        let draft = parse_body(
            br#"{"type":"gather.end","call_sid":"CA1","data":{"digits":"1234"}}"#,
            false,
            LIMITS,
        )
        .unwrap()
        .remove(0);
        let event = Event::build(AccountIdx(0), "ACx", draft, "2026-11-26T07:20:50.123Z");
        let v: Value = serde_json::from_slice(&event.json()).unwrap();
        assert_eq!(v["id"], event.id.to_string());
        assert_eq!(v["account_sid"], "ACx");
        assert_eq!(v["type"], "gather.end");
        assert_eq!(v["call_sid"], "CA1");
        assert_eq!(v["timestamp"], "2026-11-26T07:20:50.123Z");
        assert_eq!(v["data"]["digits"], "1234");
        assert!(v.get("scope").is_none());
        assert_eq!(event.id.to_string().len(), 34);
    }

    #[test]
    fn event_id_text_is_ev_and_32_hex_digits() {
        for n in [
            0u128,
            1,
            0xabc,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            let id = EventId(n);
            assert_eq!(id.to_string(), format!("EV{n:032x}"));
            assert_eq!(&id.text()[..], format!("EV{n:032x}").as_bytes());
        }
    }

    fn one(body: &str) -> Result<Draft, EventError> {
        parse_body(body.as_bytes(), false, LIMITS).map(|mut drafts| drafts.remove(0))
    }

    #[test]
    fn data_is_delivered_as_the_publisher_wrote_it() {
        let draft = one(r#"{"type":"a","data":{"n": 1.50, "s":"\u00e9"}}"#).unwrap();
        assert_eq!(draft.data.text(), Some(r#"{"n": 1.50, "s":"\u00e9"}"#));
        let event = Event::build(AccountIdx(0), "ACx", draft, "t");
        let json = String::from_utf8(event.json()).unwrap();
        assert!(
            json.ends_with(r#","data":{"n": 1.50, "s":"\u00e9"}}"#),
            "{json}"
        );
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["data"]["s"], "é");
        // What filters read is the same data, parsed.
        assert_eq!(event.fields().data.map()["n"], 1.5);
    }

    #[test]
    fn data_spread_over_lines_is_written_again_on_one() {
        let draft = one("{\"type\":\"a\",\"data\":{\n  \"x\": [1,\r\n 2]\n}}").unwrap();
        assert_eq!(draft.data.text(), None);
        let event = Event::build(AccountIdx(0), "ACx", draft, "t");
        assert!(!event.json().iter().any(|b| *b == b'\n' || *b == b'\r'));
        assert!(event.json().ends_with(br#""data":{"x":[1,2]}}"#));
    }

    #[test]
    fn changing_data_drops_the_publishers_text() {
        let mut draft = one(r#"{"type":"client.note","data":{"a":1}}"#).unwrap();
        draft.data.insert("client", Value::from("crm"));
        let event = Event::build(AccountIdx(0), "ACx", draft, "t");
        let v: Value = serde_json::from_slice(&event.json()).unwrap();
        assert_eq!(v["data"], serde_json::json!({"a": 1, "client": "crm"}));
    }

    /// Found by the publish_body fuzzer: serde_json's default float parser may be one
    /// ulp off, so data rendered again rather than copied (a changed event, such as a
    /// client event whose `data` gains `client`) would carry another number than the
    /// publisher's. `float_roundtrip` parses correctly rounded.
    #[test]
    fn numbers_rendered_again_are_the_numbers_sent() {
        let draft = one(r#"{"type":"a","data":{"n":2222222222222221e50}}"#).unwrap();
        let mut rendered = draft.clone();
        rendered.data.insert("m", Value::Null);
        let event = Event::build(AccountIdx(0), "ACx", rendered, "t");
        let v: Value = serde_json::from_slice(&event.json()).unwrap();
        assert_eq!(v["data"]["n"], draft.data.map()["n"]);
        assert_eq!(v["data"]["n"].as_f64(), Some(2222222222222221e50));
    }

    #[test]
    fn fields_are_read_as_a_json_object_would_be() {
        // A repeated key keeps its last value; an escaped key is the key it spells.
        let draft = one(r#"{"type":"a","type":"b","\u0063all_sid":"CA1"}"#).unwrap();
        assert_eq!(draft.type_name, "b");
        assert_eq!(draft.call_sid.as_deref(), Some("CA1"));
        // `null` is absent.
        let draft = one(r#"{"type":"a","call_sid":null,"scope":null,"data":null}"#).unwrap();
        assert_eq!((draft.call_sid, draft.scope), (None, None));
        assert!(draft.data.map().is_empty() && draft.data.text().is_none());
        // An unknown field is named before anything else is checked.
        let err = one(r#"{"type":5,"zz":1}"#).unwrap_err();
        assert!(err.to_string().starts_with("events[0].zz:"), "{err}");
        let err = one(r#"{"type":5}"#).unwrap_err();
        assert_eq!(err.to_string(), "events[0].type: must be a string");
        let err = one(r#"{"call_sid":"CA1"}"#).unwrap_err();
        assert_eq!(err.to_string(), "events[0].type: is required");
        let err = one(r#"{"type":"a","scope":"no spaces"}"#).unwrap_err();
        assert!(err.to_string().starts_with("events[0].scope:"), "{err}");
        let err = one(r#"{"type":"a","data":"text"}"#).unwrap_err();
        assert!(err.to_string().starts_with("events[0].data:"), "{err}");
    }

    #[test]
    fn events_that_are_not_objects_or_hold_unreadable_data_are_malformed() {
        for (body, expected) in [
            ("[1]", "events[0]: an event must be a JSON object"),
            (
                r#"["call.start"]"#,
                "events[0]: an event must be a JSON object",
            ),
        ] {
            let err = parse_body(body.as_bytes(), false, LIMITS).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
        // Syntactically JSON, but not a number serde_json can hold.
        let err = one(r#"{"type":"a","data":{"x":1e400}}"#).unwrap_err();
        assert!(
            matches!(&err, EventError::Malformed { at, message } if at == "events[0]" && message.starts_with("invalid JSON")),
            "{err:?}"
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_batch: 1000,
        max_event_bytes: 64 * 1024,
    };

    /// The envelope as a derived `Serialize` writes it: what [`render_open`] must
    /// match byte for byte when there is no publisher text of `data`.
    #[derive(serde::Serialize)]
    struct SerdeEnvelope<'a> {
        id: String,
        account_sid: &'a str,
        #[serde(rename = "type")]
        type_name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_sid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a str>,
        timestamp: &'a str,
        data: &'a Map<String, Value>,
    }

    impl<'a> SerdeEnvelope<'a> {
        fn of(e: &Envelope<'a>) -> SerdeEnvelope<'a> {
            SerdeEnvelope {
                id: e.id.to_string(),
                account_sid: e.account_sid,
                type_name: e.type_name,
                call_sid: e.call_sid,
                scope: e.scope,
                timestamp: e.timestamp,
                data: e.data.map(),
            }
        }
    }

    #[test]
    fn an_envelope_without_escapes_fits_its_capacity_exactly() {
        let data = Data::from_checked_text(r#"{"seq":1}"#);
        let envelope = Envelope {
            id: EventId(7),
            account_sid: "AC00000000000000000000000000000b0b",
            type_name: "load.tick",
            call_sid: Some("CA0123"),
            scope: Some("team"),
            timestamp: "2026-11-26T07:20:50.123Z",
            data: &data,
        };
        assert_eq!(render_open(&envelope).0.len(), capacity(&envelope));
    }

    proptest! {
        /// Any strings, escapes and control characters included, come out of the
        /// hand-written envelope exactly as serde_json writes them.
        #[test]
        fn envelope_is_what_serde_writes(
            id: u128,
            account_sid in "\\PC{0,40}|[\\x00-\\x7f]{0,40}",
            type_name in "\\PC{0,20}|[\\x00-\\x7f]{0,20}",
            call_sid in proptest::option::of("\\PC{0,20}|[\\x00-\\x7f]{0,20}"),
            scope in proptest::option::of("[\\x00-\\x7f]{0,20}"),
            key in "\\PC{0,8}",
            value in "\\PC{0,8}",
        ) {
            let mut data = Map::new();
            data.insert(key, Value::from(value));
            let envelope = Envelope {
                id: EventId(id),
                account_sid: &account_sid,
                type_name: &type_name,
                call_sid: call_sid.as_deref(),
                scope: scope.as_deref(),
                timestamp: "2026-11-26T07:20:50.123Z",
                data: &Data::from(data),
            };
            let (ours, data_at) = render_open(&envelope);
            prop_assert_eq!(&ours[data_at..], serde_json::to_vec(envelope.data.map()).unwrap());
            let mut theirs = serde_json::to_vec(&SerdeEnvelope::of(&envelope)).unwrap();
            theirs.pop();
            prop_assert_eq!(&ours[..], &theirs[..]);
        }

        /// A single event read in one pass is the event the syntax pass, the size
        /// check and the typed pass would give, and only then.
        #[test]
        fn one_pass_events_are_the_events_of_three(
            ty in "[a-z.]{0,6}",
            key in "[a-z]{1,3}",
            n in any::<i64>(),
            pad in "[ \t\r\n\x0c]{0,2}",
            cut in 0usize..80,
            tail in "[]},x ]{0,2}",
        ) {
            let whole = format!(
                "{pad}{{\"type\":\"{ty}\",\"data\":{{\"{key}\":{n}}}}}{pad}{tail}"
            );
            for body in [whole.as_bytes(), &whole.as_bytes()[..cut.min(whole.len())]] {
                let three = serde_json::from_slice::<&RawValue>(body)
                    .ok()
                    .filter(|raw| raw.get().len() <= LIMITS.max_event_bytes)
                    .and_then(|raw| validate(0, raw.get()).ok());
                let one = one_event(body, LIMITS);
                prop_assert_eq!(&one, &three, "{:?}", String::from_utf8_lossy(body));
                prop_assert_eq!(
                    one.as_ref().map(|d| d.data.text()),
                    three.as_ref().map(|d| d.data.text())
                );
            }
        }

        /// Whatever the hand reading of the common form takes, serde_json reads as
        /// the same draft, `data`'s delivered text included. The events are mostly of
        /// that form, with names that may not validate, values that need escapes,
        /// `data` that is not last or not readable, a repeated or extra key.
        #[test]
        fn the_common_form_is_read_as_serde_reads_it(
            type_name in prop_oneof![
                4 => "[a-z][a-z0-9_]{0,4}(\\.[a-z0-9_]{1,3})?",
                1 => "[a -~]{0,4}",
            ],
            call_sid in proptest::option::of(prop_oneof![
                4 => "[A-Za-z0-9_.-]{1,6}",
                1 => "[a -~]{0,4}",
            ]),
            scope in proptest::option::of("[A-Za-z0-9_.-]{1,6}"),
            data in proptest::option::of(
                "\\{( ?\"[a-z]{1,2}\":(1|2.50|\"\\\\u00e9\"|\\[\\]|\\{\\})(,\"[a-z]\":(1|-0.5e-3|true|null|1e400|\"\\\\ud800\")){0,2})?\\}|null|\\[\\]",
            ),
            rotate in 0usize..3,
            data_at in prop_oneof![4 => Just(usize::MAX), 1 => 0usize..3],
            extra in proptest::option::of(("x|type|call_sid|typ\\\\u0065", 0usize..4)),
            space in "[ \t\r\n]{0,2}",
            tail in prop_oneof![6 => Just(String::new()), 1 => "\\}| |,|x"],
        ) {
            let mut members = vec![format!("\"type\":{space}\"{type_name}\"")];
            members.extend(call_sid.map(|sid| format!("\"call_sid\":\"{sid}\"")));
            members.extend(scope.map(|scope| format!("\"scope\"{space}:\"{scope}\"")));
            let len = members.len();
            members.rotate_left(rotate % len);
            if let Some(data) = data {
                members.insert(data_at.min(members.len()), format!("\"data\":{space}{data}"));
            }
            if let Some((key, at)) = extra {
                members.insert(at.min(members.len()), format!("\"{key}\":\"a\""));
            }
            let text = format!("{space}{{{space}{}}}{tail}", members.join(&format!(",{space}")));
            if let Some(draft) = scan::common_event(&text) {
                let serde = validate_serde(0, &text);
                prop_assert_eq!(serde.as_ref(), Ok(&draft), "{}", text);
                let serde = serde.unwrap();
                prop_assert_eq!(serde.data.text(), draft.data.text(), "{}", text);
            }
        }

        /// Arbitrary bytes never panic the publish parser, as JSON or as NDJSON.
        #[test]
        fn parse_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), ndjson: bool) {
            let _ = parse_body(&body, ndjson, LIMITS);
        }

        /// Almost-valid events: every outcome is either all events or a typed error.
        #[test]
        fn near_valid_events(ty in "[a-zA-Z0-9_.*-]{0,70}", sid in "\\PC{0,70}", extra in "[a-z]{0,5}") {
            let body = serde_json::json!([{"type": ty, "call_sid": sid}, {"type": "ok", extra.clone(): 1}]);
            match parse_body(body.to_string().as_bytes(), false, LIMITS) {
                Ok(drafts) => {
                    prop_assert_eq!(drafts.len(), 2);
                    prop_assert!(is_valid_type(&drafts[0].type_name));
                }
                Err(EventError::Invalid { index, .. }) => prop_assert!(index <= 1),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
