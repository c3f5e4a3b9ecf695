//! One event as one terminal line: `HH:MM:SS.mmm  type  call  key=value …`.
//!
//! Events carry tenant data (a caller's number, a redirect URL, a client event's
//! free-form fields), and a terminal obeys escape sequences, so a line never
//! writes a control character as is: text is shown bare only when it is plainly
//! printable, and quoted with every control character escaped otherwise. A
//! published `"\u001b]0;…"` cannot retitle or clear the operator's terminal.

use std::fmt::Write;

use serde_json::Value;

/// Longest value shown in full; longer ones are cut with `…` so one event stays
/// one readable line.
const MAX_VALUE_CHARS: usize = 80;

/// The human-readable line of a delivered event (without the newline).
pub fn human(event: &Value) -> String {
    let mut line = String::with_capacity(128);
    line.push_str(&clock_time(event.get("timestamp").and_then(Value::as_str)));
    line.push_str("  ");
    let ty = event.get("type").and_then(Value::as_str).unwrap_or("?");
    let _ = write!(line, "{:<16}", shown(ty));
    line.push(' ');
    let call = event.get("call_sid").and_then(Value::as_str).unwrap_or("-");
    line.push_str(&shown(call));
    if let Some(Value::Object(data)) = event.get("data") {
        for (key, value) in data {
            let _ = write!(line, "  {}={}", shown(key), value_text(value));
        }
    }
    line
}

/// The line of a stream notice (`stream.open`, `stream.gap`, …): as [`human`],
/// with `stream.open`'s list of subscriptions shown as their count.
pub fn notice(event: &Value) -> String {
    let listed = event
        .pointer("/data/subscriptions")
        .and_then(Value::as_array)
        .map(Vec::len);
    match listed {
        Some(count) => {
            let mut event = event.clone();
            event["data"]["subscriptions"] = count.into();
            human(&event)
        }
        None => human(event),
    }
}

/// `HH:MM:SS.mmm` of an RFC 3339 UTC timestamp as the server writes it
/// (`2026-11-26T07:20:50.123Z`), or the text as is (sanitised) when it has another
/// shape.
fn clock_time(timestamp: Option<&str>) -> String {
    let Some(timestamp) = timestamp else {
        return "--:--:--.---".to_owned();
    };
    match timestamp.split_once('T') {
        Some((_, time)) => shown(time.trim_end_matches('Z')),
        None => shown(timestamp),
    }
}

/// A data value: strings as text, anything else as its compact JSON (whose
/// strings are quoted already; only the control characters JSON leaves raw, DEL
/// and C1, are escaped), cut at [`MAX_VALUE_CHARS`].
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => shown(text),
        other => {
            let json = other.to_string();
            let mut text = String::with_capacity(json.len());
            for c in json.chars().take(MAX_VALUE_CHARS) {
                push_escaped(&mut text, c);
            }
            if json.chars().nth(MAX_VALUE_CHARS).is_some() {
                text.push('…');
            }
            text
        }
    }
}

/// Text as shown on a terminal: bare when every character is printable and not a
/// space or quote, otherwise double-quoted with `"`, `\` and control characters
/// (C0, DEL and C1, which includes the 8-bit CSI) escaped; cut at
/// [`MAX_VALUE_CHARS`].
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
    let ellipsis = if cut.len() < text.len() { "…" } else { "" };
    let bare = !cut.is_empty()
        && cut
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '"' && c != '\\');
    if bare {
        return format!("{cut}{ellipsis}");
    }
    let mut quoted = String::with_capacity(cut.len() + 2);
    quoted.push('"');
    for c in cut.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c => push_escaped(&mut quoted, c),
        }
    }
    quoted.push('"');
    quoted.push_str(ellipsis);
    quoted
}

/// Pushes `c`, or its escape when it is a control character.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_event_reads_as_time_type_call_and_its_data() {
        let event = json!({
            "id": "x", "type": "gather.end", "call_sid": "CA01",
            "timestamp": "2026-11-26T07:20:50.123Z",
            "data": {"digits": "1234", "from": "+14155550100", "duration": 12, "muted": false}
        });
        assert_eq!(
            human(&event),
            "07:20:50.123  gather.end       CA01  digits=1234  from=+14155550100  duration=12  muted=false"
        );
    }

    #[test]
    fn events_without_call_or_data_still_make_a_line() {
        let event = json!({"type": "custom.ping", "timestamp": "2026-11-26T07:20:50.123Z"});
        assert_eq!(human(&event), "07:20:50.123  custom.ping      -");
        assert_eq!(human(&json!({})), "--:--:--.---  ?                -");
    }

    #[test]
    fn nested_values_are_compact_json_and_spaces_are_quoted() {
        let event = json!({
            "type": "client.note", "timestamp": "t",
            "data": {"text": "call back later", "tags": ["vip", 2], "empty": ""}
        });
        let line = human(&event);
        assert!(
            line.ends_with(r#"text="call back later"  tags=["vip",2]  empty="""#),
            "{line}"
        );
    }

    /// The attack: a tenant publishes escape sequences meant for the operator's
    /// terminal (retitle, clear screen, 8-bit CSI). None reaches it as a control
    /// character.
    #[test]
    fn control_characters_from_events_never_reach_the_terminal() {
        let event = json!({
            "type": "client.x", "call_sid": "CA\u{1b}[2J", "timestamp": "2026-11-26T07:20:50.123Z\u{7}",
            "data": {"\u{1b}]0;owned\u{7}": "a\u{9b}31mred\u{7f}", "n": "line\nbreak", "o": {"k": "\u{9b}"}}
        });
        let line = human(&event);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(line.contains(r#""CA\u{1b}[2J""#), "{line}");
        assert!(line.contains(r#""a\u{9b}31mred\u{7f}""#), "{line}");
        assert!(line.contains(r#"n="line\nbreak""#), "{line}");
        assert!(line.contains(r#"o={"k":"\u{9b}"}"#), "{line}");
    }

    #[test]
    fn a_stream_open_notice_counts_its_subscriptions() {
        let open = json!({
            "type": "stream.open", "timestamp": "2026-11-26T07:20:50.123Z",
            "data": {"client": "me", "subscriptions": [{"sid": "SU1"}, {"sid": "SU2"}]}
        });
        assert_eq!(
            notice(&open),
            "07:20:50.123  stream.open      -  client=me  subscriptions=2"
        );
    }

    #[test]
    fn long_values_are_cut() {
        let long = "9".repeat(500);
        let line = human(&json!({"type": "t", "data": {"v": long}}));
        assert!(
            line.ends_with(&format!("v={}…", "9".repeat(MAX_VALUE_CHARS))),
            "{line}"
        );
    }
}
