//! An event's `data` object, kept as the JSON text it is delivered as and parsed only
//! when something reads inside it (a `where` filter on `data.…`, a steering event's
//! `url`).
//!
//! Building a `serde_json` map of every event's `data` was a tenth of a one-event
//! publish and most of what a retained event held, for the few events a `data`
//! filter ever looks at. The text is checked on the way in by the same parser that
//! builds the map, so it is refused exactly when the map could not be built, and the
//! map made later from it always is.

use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// `data` as a draft carries it: the publisher's text, the map, or both.
#[derive(Clone, Default)]
pub struct Data {
    /// The delivered text: the publisher's, when it is on one line (an SSE `data:`
    /// line cannot hold a break). `None`: rendered from the map.
    text: Option<Box<str>>,
    /// The parsed map: set when the data was built (the call router, a client event's
    /// `client`), else made from `text` on first use. Never empty with `text` unset.
    parsed: OnceLock<Map<String, Value>>,
}

impl Data {
    /// The publisher's text of a `data` object, checked with [`check`]; text over
    /// several lines is parsed and will be written again on one.
    pub(crate) fn from_checked_text(text: &str) -> Data {
        if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none() {
            Data {
                text: Some(text.into()),
                parsed: OnceLock::new(),
            }
        } else {
            Data::from(parse(text.as_bytes()))
        }
    }

    /// The text delivered as `data`, when it is the publisher's own.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The parsed map (made now if it was not yet).
    pub fn map(&self) -> &Map<String, Value> {
        map_of(
            self.text.as_deref().unwrap_or("{}").as_bytes(),
            &self.parsed,
        )
    }

    /// Adds a key; the data is then rendered from the map, not the publisher's text.
    pub fn insert(&mut self, key: &str, value: Value) {
        self.map();
        let mut map = self.parsed.take().unwrap_or_default();
        map.insert(key.to_owned(), value);
        *self = Data::from(map);
    }

    /// The map made so far, for an event to keep.
    pub(crate) fn into_parsed(self) -> OnceLock<Map<String, Value>> {
        self.parsed
    }
}

impl From<Map<String, Value>> for Data {
    fn from(map: Map<String, Value>) -> Data {
        Data {
            text: None,
            parsed: OnceLock::from(map),
        }
    }
}

/// Two `data` are the same when their maps are: the text is only how it is written.
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.map() == other.map()
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => f.write_str(text),
            None => write!(f, "{:?}", self.map()),
        }
    }
}

/// What filters read of an event's `data`.
#[derive(Clone, Copy)]
pub enum DataView<'a> {
    /// A map at hand (a live call's `call.start`, tests).
    Parsed(&'a Map<String, Value>),
    /// An event's JSON text of `data` and the cell its map is made in, once.
    Lazy(&'a [u8], &'a OnceLock<Map<String, Value>>),
}

impl<'a> DataView<'a> {
    /// The map, made now if this is the first look inside.
    pub fn map(self) -> &'a Map<String, Value> {
        match self {
            DataView::Parsed(map) => map,
            DataView::Lazy(text, cell) => map_of(text, cell),
        }
    }
}

impl<'a> From<&'a Map<String, Value>> for DataView<'a> {
    fn from(map: &'a Map<String, Value>) -> DataView<'a> {
        DataView::Parsed(map)
    }
}

impl fmt::Debug for DataView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.map())
    }
}

fn map_of<'a>(text: &[u8], cell: &'a OnceLock<Map<String, Value>>) -> &'a Map<String, Value> {
    cell.get_or_init(|| parse(text))
}

/// The map of text that [`check`] passed. Such text always parses; were it ever not
/// to, the event would read as having empty `data` (no `data` filter matches it)
/// rather than stop the thread that looked.
fn parse(text: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(text).unwrap_or_default()
}

/// Checks that `text` is JSON that serde_json reads into a [`Value`], refusing what
/// that refuses (a number out of range, a bad escape, nesting deeper than 128) with
/// the same error, but building nothing: it walks the text with the same
/// `deserialize_any` calls as `Value`'s own `Deserialize`.
pub fn check(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Checked>(text).map(drop)
}

/// A JSON value read and dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check refuses what building the map refuses, with the same message, and
    /// passes what it builds.
    #[test]
    fn the_check_agrees_with_building_the_map() {
        let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        let cases = [
            r#"{"a":1,"b":[true,null,{"c":"\u00e9"}],"d":-0.5e-3}"#.to_owned(),
            r#"{"a":1e400}"#.into(),
            r#"{"a":-1e400}"#.into(),
            r#"{"a":"\ud800"}"#.into(),
            r#"{"a":"\udc00\ud800"}"#.into(),
            r#"{"a":"\x"}"#.into(),
            "{\"a\":\"\u{1}\"}".into(),
            r#"{"a":123456789012345678901234567890}"#.into(),
            r#"{"a":1,"a":2}"#.into(),
            format!(r#"{{"a":{deep}}}"#),
            r#"{"a":1,}"#.into(),
            r#"{"a" 1}"#.into(),
        ];
        for text in &cases {
            let built = serde_json::from_str::<Map<String, Value>>(text).map(drop);
            let checked = check(text);
            assert_eq!(
                checked.as_ref().map_err(ToString::to_string),
                built.as_ref().map_err(ToString::to_string),
                "{text}"
            );
        }
    }

    #[test]
    fn text_is_kept_and_parsed_on_first_look() {
        let data = Data::from_checked_text(r#"{"n": 1.50}"#);
        assert_eq!(data.text(), Some(r#"{"n": 1.50}"#));
        assert!(data.parsed.get().is_none(), "nothing parsed yet");
        assert_eq!(data.map()["n"], 1.5);
        assert_eq!(
            data.text(),
            Some(r#"{"n": 1.50}"#),
            "the text is what is delivered"
        );
    }

    #[test]
    fn text_over_lines_is_parsed_and_written_again() {
        let data = Data::from_checked_text("{\n\"x\": [1,\r\n 2]}");
        assert_eq!(data.text(), None);
        assert_eq!(data.map()["x"], serde_json::json!([1, 2]));
    }

    #[test]
    fn inserting_drops_the_publishers_text() {
        let mut data = Data::from_checked_text(r#"{"a":1}"#);
        data.insert("client", Value::from("crm"));
        assert_eq!(data.text(), None);
        assert_eq!(
            Value::Object(data.map().clone()),
            serde_json::json!({"a": 1, "client": "crm"})
        );
    }

    #[test]
    fn a_lazy_view_parses_once() {
        let cell = OnceLock::new();
        let view = DataView::Lazy(br#"{"k":"v"}"#, &cell);
        assert_eq!(view.map()["k"], "v");
        assert!(std::ptr::eq(view.map(), cell.get().unwrap()));
    }
}
