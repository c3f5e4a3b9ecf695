//! What one JetStream message carries: the events of one publish request, so a
//! request is stored all or nothing (JetStream has no multi-message transaction),
//! encoded with the internal codec (`crate::codec`).

use crate::codec::{self, Decode, DecodeError, Encode};
use crate::event::{Event, EventId, EventParts};

/// The events of one publish request, in the order they were sent.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct WireBatch {
    /// The events.
    pub events: Vec<WireEvent>,
}

/// One event as it crosses (see [`Event::parts`]).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct WireEvent {
    /// [`EventId`]'s value.
    pub id: u128,
    /// The type.
    pub type_name: String,
    /// The call.
    pub call_sid: Option<String>,
    /// The scope.
    pub scope: Option<String>,
    /// The delivered JSON without its closing `}`.
    pub json_open: Vec<u8>,
    /// Where `data` starts in `json_open`.
    pub data_at: u32,
}

impl WireEvent {
    /// The event's parts, for [`Event::from_parts`].
    pub fn parts(&self) -> EventParts<'_> {
        EventParts {
            id: EventId(self.id),
            type_name: &self.type_name,
            call_sid: self.call_sid.as_deref(),
            scope: self.scope.as_deref(),
            json_open: &self.json_open,
            data_at: self.data_at as usize,
        }
    }
}

/// Encodes a request's events.
pub fn encode<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<u8> {
    let batch = WireBatch {
        events: events.into_iter().map(wire_event).collect(),
    };
    codec::encode(&batch)
}

/// Whether every event of a message is of one call (or of none), so one shard
/// routes them all in one batch ([`Event::one_call_message`]).
pub fn one_call<'a>(mut call_sids: impl Iterator<Item = Option<&'a str>>) -> bool {
    let first = call_sids.next();
    call_sids.all(|sid| Some(sid) == first)
}

/// Why a kept or received message's events were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The bytes do not decode.
    Decode,
    /// An event's parts do not check out, or the message is empty.
    Check,
}

impl Unreadable {
    /// The reason, as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Unreadable::Decode => "decode",
            Unreadable::Check => "check",
        }
    }
}

/// Rebuilds the events of the message numbered `seq` (a stream or store sequence)
/// for `account` (sid `sid`), each with its position, checking each as
/// [`Event::from_parts`] does.
pub fn events_at(
    account: crate::account::AccountIdx,
    sid: &str,
    payload: &[u8],
    max_event_bytes: usize,
    seq: u64,
) -> Result<Vec<crate::event::SharedEvent>, Unreadable> {
    let batch = decode(payload).map_err(|_| Unreadable::Decode)?;
    let now = std::time::Instant::now();
    let one_call = one_call(batch.events.iter().map(|e| e.call_sid.as_deref()));
    let events: Vec<_> = batch
        .events
        .iter()
        .enumerate()
        .map(|(index, wire)| {
            let mut event = Event::from_parts(
                account,
                sid,
                wire.parts(),
                max_event_bytes,
                now,
                super::order::position(seq, index),
            )
            .map_err(|_| Unreadable::Check)?;
            event.one_call_message = one_call;
            Ok(std::sync::Arc::new(event))
        })
        .collect::<Result<_, _>>()?;
    if events.is_empty() {
        return Err(Unreadable::Check);
    }
    Ok(events)
}

fn wire_event(event: &Event) -> WireEvent {
    let parts = event.parts();
    WireEvent {
        id: parts.id.0,
        type_name: parts.type_name.to_owned(),
        call_sid: parts.call_sid.map(str::to_owned),
        scope: parts.scope.map(str::to_owned),
        json_open: parts.json_open.to_vec(),
        // An event is at most `publish.max_event_bytes` (64 KiB by default) plus
        // its envelope, far below 4 GiB.
        data_at: u32::try_from(parts.data_at).unwrap_or(u32::MAX),
    }
}

/// Decodes a message's events (bounded by [`codec::DECODE_LIMIT`]).
pub fn decode(bytes: &[u8]) -> Result<WireBatch, DecodeError> {
    codec::decode(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::account::AccountIdx;
    use crate::event::{Draft, PartsError};

    const SID: &str = "AC00000000000000000000000000000001";

    fn event(n: u32, call: Option<&str>) -> crate::event::SharedEvent {
        let body = format!(
            r#"{{"type":"call.digits","call_sid":{},"data":{{"n":{n},"text":"a \"quoted\" é"}}}}"#,
            call.map_or("null".to_owned(), |c| format!("\"{c}\""))
        );
        let drafts = crate::event::parse_body(
            body.as_bytes(),
            false,
            crate::event::Limits {
                max_batch: 10,
                max_event_bytes: 65536,
            },
        )
        .expect("a valid event");
        let draft: Draft = drafts.into_iter().next().expect("one draft");
        Arc::new(Event::build(
            AccountIdx(3),
            SID,
            draft,
            "2026-12-07T00:00:00Z",
        ))
    }

    fn rebuilt(wire: &WireEvent) -> Result<Event, PartsError> {
        Event::from_parts(AccountIdx(3), SID, wire.parts(), 65536, Instant::now(), 0)
    }

    #[test]
    fn a_batch_crosses_whole_and_rebuilds_byte_for_byte() {
        let events = vec![event(1, Some("CA1")), event(2, None)];
        let batch = decode(&encode(events.iter().map(|e| &**e))).expect("decodes");
        assert_eq!(batch.events.len(), 2);
        for (wire, original) in batch.events.iter().zip(&events) {
            let copy = rebuilt(wire).expect("checks out");
            assert_eq!(copy.json(), original.json());
            assert_eq!(copy.id, original.id);
            assert_eq!(copy.call_sid, original.call_sid);
            assert_eq!(copy.data_json(), original.data_json());
        }
    }

    #[test]
    fn an_event_claiming_another_account_or_id_is_refused() {
        let events = [event(1, Some("CA1"))];
        let wire = &decode(&encode(events.iter().map(|e| &**e)))
            .expect("decodes")
            .events[0];
        let elsewhere = Event::from_parts(
            AccountIdx(3),
            "AC00000000000000000000000000000002",
            wire.parts(),
            65536,
            Instant::now(),
            0,
        );
        assert!(elsewhere.is_err(), "the JSON names another account");
        let mut other_id = wire.clone();
        other_id.id ^= 1;
        assert!(rebuilt(&other_id).is_err(), "the JSON names another id");
    }

    #[test]
    fn malformed_parts_are_refused_not_trusted() {
        let wire = decode(&encode([&*event(1, Some("CA1"))]))
            .expect("decodes")
            .events[0]
            .clone();
        let cases: Vec<(&str, WireEvent)> = vec![
            (
                "type",
                WireEvent {
                    type_name: "a..b".into(),
                    ..wire.clone()
                },
            ),
            (
                "call_sid",
                WireEvent {
                    call_sid: Some("x".repeat(65)),
                    ..wire.clone()
                },
            ),
            (
                "offset past the end",
                WireEvent {
                    data_at: 1_000_000,
                    ..wire.clone()
                },
            ),
            (
                "offset into the envelope",
                WireEvent {
                    data_at: 3,
                    ..wire.clone()
                },
            ),
            ("data not JSON", {
                let mut bad = wire.clone();
                let at = bad.data_at as usize;
                bad.json_open.truncate(at);
                bad.json_open.extend_from_slice(b"{\"n\":");
                bad
            }),
            ("oversized", {
                let mut big = wire.clone();
                big.json_open.extend(std::iter::repeat_n(b' ', 70_000));
                big
            }),
        ];
        for (what, case) in cases {
            assert!(rebuilt(&case).is_err(), "{what} should be refused");
        }
    }

    #[test]
    fn garbage_and_lying_lengths_do_not_decode() {
        assert!(decode(b"").is_err());
        assert!(decode(&[0xff; 64]).is_err());
        // A length prefix claiming far more than the limit allocates nothing.
        let mut lie = vec![253];
        lie.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&lie).is_err());
    }
}
