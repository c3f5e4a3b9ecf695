//! What goes on a client's wire: a delivered event's JSON with the client's matched
//! subscriptions appended, and SSE frames. Plain functions over byte buffers, shared
//! by the transports and measured by `benches/publish_path.rs`.

use bytes::{BufMut, BytesMut};

use crate::outbox::Entry;

/// Longest cursor text: `Cursor::decode` refuses longer ones, and the encoder's
/// output (a few varints, base64url) is far shorter.
const MAX_CURSOR_LEN: usize = 64;

/// Bytes a transport may add around an event's shared JSON besides its
/// subscriptions: `,"subscriptions":[`, `]`, `}`, and either the SSE `id: …\n`,
/// `data: ` and blank line or the JSON `,"cursor":"…"` and a list comma.
const FRAME_OVERHEAD: usize = 64 + MAX_CURSOR_LEN;

/// An upper bound of the bytes one event takes on any transport, so writers can cap
/// a chunk, a long-poll response or a WebSocket backlog in bytes before rendering.
pub fn framed_len(entry: &Entry) -> usize {
    let subs: usize = entry.subs.iter().map(|sid| sid.len() + 3).sum();
    entry.event.json_open.len() + subs + FRAME_OVERHEAD
}

/// Appends one delivered event's JSON: the shared serialised event, then
/// `"subscriptions"` and the closing brace.
pub fn write_event(buf: &mut BytesMut, entry: &Entry) {
    write_event_at(buf, entry, None);
}

/// [`write_event`] with the event's `"cursor"` added, for transports that carry the
/// cursor inside the JSON (WebSocket frames, long-poll lists).
pub fn write_event_at(buf: &mut BytesMut, entry: &Entry, cursor: Option<&str>) {
    buf.put_slice(&entry.event.json_open);
    buf.put_slice(b",\"subscriptions\":[");
    for (i, sid) in entry.subs.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_u8(b'"');
        buf.put_slice(sid.as_bytes()); // `SU` + hex: nothing to escape
        buf.put_u8(b'"');
    }
    buf.put_u8(b']');
    if let Some(cursor) = cursor {
        buf.put_slice(b",\"cursor\":\"");
        buf.put_slice(cursor.as_bytes()); // base64url: nothing to escape
        buf.put_u8(b'"');
    }
    buf.put_u8(b'}');
}

/// Appends one SSE frame. The JSON has no raw newlines (serde escapes them), so one
/// `data:` line carries it; notices that must not move the client's position have no
/// `id:`.
pub fn sse_frame(out: &mut BytesMut, id: Option<&str>, json: &[u8]) {
    frame_with(out, id, |out| out.put_slice(json));
}

/// One delivered event as an SSE frame with its cursor as `id:`, its JSON written
/// straight into the chunk rather than rendered apart and copied in.
pub fn sse_event(out: &mut BytesMut, id: &str, entry: &Entry) {
    frame_with(out, Some(id), |out| write_event(out, entry));
}

fn frame_with(out: &mut BytesMut, id: Option<&str>, json: impl FnOnce(&mut BytesMut)) {
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"data: ");
    json(out);
    out.put_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountIdx;
    use crate::event::{Draft, Event};
    use crate::outbox::MatchedSubs;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn event_with_subscriptions_is_valid_json_in_one_frame() {
        let mut data = serde_json::Map::new();
        data.insert("text".into(), "two\nlines".into());
        let event = Arc::new(Event::build(
            AccountIdx(0),
            "ACx",
            Draft {
                type_name: "say.start".into(),
                call_sid: None,
                scope: None,
                data: data.into(),
            },
            "t",
        ));
        let entry = Entry {
            seq: 1,
            event,
            subs: MatchedSubs::from_iter([Arc::from("SU1"), Arc::from("SU2")]),
            at: Instant::now(),
        };
        let mut json = BytesMut::new();
        write_event(&mut json, &entry);
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["subscriptions"], serde_json::json!(["SU1", "SU2"]));
        let mut with_cursor = BytesMut::new();
        write_event_at(&mut with_cursor, &entry, Some("abc"));
        let value: serde_json::Value = serde_json::from_slice(&with_cursor).unwrap();
        assert_eq!(value["cursor"], "abc");
        assert_eq!(value["subscriptions"], serde_json::json!(["SU1", "SU2"]));
        let mut frame = BytesMut::new();
        sse_frame(&mut frame, Some("c1"), &json);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with("id: c1\ndata: {"));
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 3);
        // An event framed in place is the same frame.
        let mut in_place = BytesMut::new();
        sse_event(&mut in_place, "c1", &entry);
        assert_eq!(in_place, frame);
    }

    #[test]
    fn framed_len_bounds_every_transport() {
        let event = Arc::new(Event::build(
            AccountIdx(0),
            "ACx",
            Draft {
                type_name: "call.start".into(),
                call_sid: None,
                scope: None,
                data: serde_json::Map::new().into(),
            },
            "t",
        ));
        let entry = Entry {
            seq: u64::MAX,
            event,
            subs: MatchedSubs::from_iter([Arc::from("SU1"), Arc::from("SU2")]),
            at: Instant::now(),
        };
        let cursor = "c".repeat(MAX_CURSOR_LEN);
        let mut json = BytesMut::new();
        write_event(&mut json, &entry);
        let mut sse = BytesMut::new();
        sse_frame(&mut sse, Some(&cursor), &json);
        let mut with_cursor = BytesMut::new();
        write_event_at(&mut with_cursor, &entry, Some(&cursor));
        assert!(sse.len() <= framed_len(&entry), "{} SSE bytes", sse.len());
        assert!(with_cursor.len() < framed_len(&entry), "list item");
    }
}
