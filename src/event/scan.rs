//! The common event, read without serde: `{"type":"…","call_sid":"…","data":{…}}`
//! with plain keys and names, any of `call_sid` and `scope`, `data` last.
//!
//! serde_json's walk of the event object (a visitor, a value per field, a raw-value
//! pass over `data` to find its end) was a fifth of a one-event publish. Publishers
//! write events this way nearly always, and what such text means is plain: no escape
//! can make a key or a name mean another, and `data` runs to the object's last `}`.
//! Anything else (an escape, a repeated or unknown key, `null`, `data` before another
//! key, a name that does not validate) is `None` and goes to serde_json, whose reading
//! and errors stay the only ones; a proptest and the `publish_body` fuzz target hold
//! the two readings to the same drafts.

use super::{check_data, is_valid_name, is_valid_type, Data, Draft};

/// The draft of `text`, if it is an event of the common form whose fields are valid.
pub(super) fn common_event(text: &str) -> Option<Draft> {
    let mut scan = Scan { text, at: 0 };
    scan.byte(b'{')?;
    let (mut type_name, mut call_sid, mut scope) = (None, None, None);
    loop {
        let slot = match scan.string()? {
            "type" => &mut type_name,
            "call_sid" => &mut call_sid,
            "scope" => &mut scope,
            "data" => {
                scan.byte(b':')?;
                let data = scan.rest_of_object()?;
                if !data.starts_with('{') || check_data(data).is_err() {
                    return None;
                }
                return draft(type_name?, call_sid, scope, Data::from_checked_text(data));
            }
            _ => return None,
        };
        scan.byte(b':')?;
        if slot.replace(scan.string()?).is_some() {
            return None;
        }
        match scan.next()? {
            b',' => {}
            b'}' => {
                scan.end()?;
                return draft(type_name?, call_sid, scope, Data::default());
            }
            _ => return None,
        }
    }
}

fn draft(
    type_name: &str,
    call_sid: Option<&str>,
    scope: Option<&str>,
    data: Data,
) -> Option<Draft> {
    let name = |name: Option<&str>| match name {
        Some(name) if !is_valid_name(name) => None,
        name => Some(name.map(str::to_owned)),
    };
    if !is_valid_type(type_name) {
        return None;
    }
    Some(Draft {
        type_name: type_name.to_owned(),
        call_sid: name(call_sid)?,
        scope: name(scope)?,
        data,
    })
}

/// A position in the event's text.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

/// JSON's whitespace, and only it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Scan<'a> {
    /// The next byte that is not whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while is_space(*bytes.get(self.at)?) {
            self.at += 1;
        }
        self.at += 1;
        Some(bytes[self.at - 1])
    }

    /// Consumes `expected` after optional whitespace.
    fn byte(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// A string with nothing escaped and no control character, without its quotes.
    fn string(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        let rest = &self.text.as_bytes()[self.at..];
        let len = memchr::memchr(b'"', rest)?;
        // A fold without an early exit vectorises; an escape or a control character
        // anywhere sends the event to serde_json.
        let plain = rest[..len]
            .iter()
            .fold(true, |plain, &b| plain & (b != b'\\') & (b >= 0x20));
        if !plain {
            return None;
        }
        let s = &self.text[self.at..self.at + len];
        self.at += len + 1;
        Some(s)
    }

    /// The value that ends the object, up to (not including) its closing `}`, which
    /// must be the text's last byte but whitespace. Whether that is one JSON value is
    /// for the caller to check.
    fn rest_of_object(&mut self) -> Option<&'a str> {
        let rest = self.text[self.at..].trim_matches(|c: char| c.is_ascii() && is_space(c as u8));
        let value = rest.strip_suffix('}')?;
        Some(value.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8)))
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.text.as_bytes()[self.at..]
            .iter()
            .all(|&b| is_space(b))
            .then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_form_is_read() {
        let draft = common_event(
            " {\"type\":\"call.dtmf\", \"call_sid\" : \"CA1\",\"scope\":\"team-a\",\n\
             \"data\": {\"digits\":\"12\"} } ",
        )
        .unwrap();
        assert_eq!(draft.type_name, "call.dtmf");
        assert_eq!(draft.call_sid.as_deref(), Some("CA1"));
        assert_eq!(draft.scope.as_deref(), Some("team-a"));
        assert_eq!(draft.data.text(), Some(r#"{"digits":"12"}"#));
        let bare = common_event(r#"{"type":"a"}"#).unwrap();
        assert_eq!((bare.call_sid, bare.scope), (None, None));
        assert_eq!(bare.data, Data::default());
    }

    /// Each of these is left to serde_json, which reads or refuses it.
    #[test]
    fn anything_else_is_left_to_serde() {
        for text in [
            r#"{"type":"a","type":"b"}"#,
            r#"{"\u0074ype":"a"}"#,
            r#"{"type":"a\u002eb"}"#,
            r#"{"type":"a","call_sid":null}"#,
            r#"{"type":"a","extra":1}"#,
            r#"{"data":{},"type":"a"}"#,
            r#"{"type":"A"}"#,
            r#"{"type":"a","call_sid":"bad sid"}"#,
            r#"{"type":"a","data":null}"#,
            r#"{"type":"a","data":[1]}"#,
            r#"{"type":"a","data":{"x":1e400}}"#,
            r#"{"type":"a","data":{"x":1}} }"#,
            r#"{"type":"a","data":{"x":1},"y":2}"#,
            r#"{"type":"a"} x"#,
            r#"{"type":"a",}"#,
            r#"{"type":"a""#,
            r#"{"type""a"}"#,
            r#"{"call_sid":"CA1"}"#,
            "",
            "{",
            "[]",
        ] {
            assert!(common_event(text).is_none(), "{text}");
        }
    }
}
