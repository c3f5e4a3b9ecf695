//! A small element tree built from quick-xml events, with the document-level checks.
//!
//! Reading the whole document into a tree first keeps the TwiML rules in
//! [`super::parse`] simple (look at an element's children, its text, its
//! attributes) and puts every XML concern here: well-formedness (quick-xml checks
//! end tags; we check for elements left open at the end, which it does not), one
//! root, nothing but whitespace, comments and processing instructions outside it,
//! the depth limit, and entities.
//!
//! The tree is built iteratively with an explicit stack, and the depth limit is
//! checked before an element is pushed, so a document of a million nested tags
//! costs 17 stack entries and an error, not a stack overflow. Entities: quick-xml
//! reports each `&name;` in text as its own event and expands nothing; we resolve
//! character references and the five predefined entities and refuse every other
//! name, so a DTD's `<!ENTITY …>` declarations (tolerated, never read) cannot expand
//! into anything.

use quick_xml::escape::{resolve_xml_entity, EscapeError};
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

use super::error::{quote, TwimlError};
use super::MAX_DEPTH;

/// One element with its attributes (unescaped) and children.
#[derive(Debug)]
pub(super) struct Element {
    /// The qualified name as written.
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Elements and text runs in document order.
    pub children: Vec<Node>,
    /// Byte offset of the element's `<` in the input.
    pub position: u64,
}

/// A child of an [`Element`].
#[derive(Debug)]
pub(super) enum Node {
    /// A nested element.
    Element(Element),
    /// A run of character data: adjacent text, CDATA and references are merged into
    /// one run (comments and processing instructions do not split it). Unescaped,
    /// untrimmed, line ends normalised.
    Text {
        /// The characters.
        text: String,
        /// Byte offset where the run starts.
        position: u64,
    },
}

/// Reads `xml` into its root element, or says why it is not a single well-formed
/// element. Does not look at names other than to report them.
pub(super) fn read_document(xml: &str) -> Result<Element, TwimlError> {
    // A UTF-8 byte order mark is allowed before the document; keep positions
    // relative to what the caller passed.
    let (input, base) = match xml.strip_prefix('\u{feff}') {
        Some(rest) => (rest, '\u{feff}'.len_utf8() as u64),
        None => (xml, 0),
    };
    let mut reader = Reader::from_str(input);
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
    };
    loop {
        let position = base + reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Err(xml_error(base + reader.error_position(), &err)),
        };
        match event {
            Event::Start(start) => {
                let element = open(&reader, &start, position)?;
                builder.check_new_element(&element)?;
                builder.stack.push(element);
            }
            Event::Empty(start) => {
                let element = open(&reader, &start, position)?;
                builder.check_new_element(&element)?;
                builder.close(element);
            }
            Event::End(_) => match builder.stack.pop() {
                // quick-xml has already checked that the name matches.
                Some(element) => builder.close(element),
                None => {
                    return Err(TwimlError::Xml {
                        position,
                        detail: "end tag without a start tag".to_owned(),
                    })
                }
            },
            Event::Text(text) => {
                let text = text
                    .xml10_content()
                    .map_err(|err| xml_error(position, &err))?;
                builder.text(&text, position)?;
            }
            Event::CData(cdata) => {
                let text = cdata
                    .xml10_content()
                    .map_err(|err| xml_error(position, &err))?;
                builder.text(&text, position)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference, position)?;
                builder.text(resolved.encode_utf8(&mut [0; 4]), position)?;
            }
            Event::Decl(_) => {
                if builder.root.is_some() || !builder.stack.is_empty() {
                    return Err(TwimlError::Xml {
                        position,
                        detail: "XML declaration after the start of the document".to_owned(),
                    });
                }
            }
            // Harmless wherever they are. A DOCTYPE's internal subset is never read,
            // so its entity declarations have no effect (references to them fail).
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = builder.stack.pop() {
        return Err(TwimlError::Unclosed {
            element: quote(&open.name),
            position: open.position,
        });
    }
    builder.root.ok_or(TwimlError::NoRoot)
}

/// The state of [`read_document`]: open elements, and the root once it is closed.
struct Builder {
    stack: Vec<Element>,
    root: Option<Element>,
}

impl Builder {
    /// Refuses an element that would be a second root or go over [`MAX_DEPTH`].
    fn check_new_element(&self, element: &Element) -> Result<(), TwimlError> {
        if self.root.is_some() {
            return Err(TwimlError::TrailingContent {
                position: element.position,
            });
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(TwimlError::TooDeep {
                element: quote(&element.name),
                max: MAX_DEPTH,
                position: element.position,
            });
        }
        Ok(())
    }

    /// Attaches a finished element to its parent, or makes it the root.
    fn close(&mut self, element: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(element)),
            None => self.root = Some(element),
        }
    }

    /// Appends character data to the open element's last text run; outside the
    /// root only whitespace is allowed.
    fn text(&mut self, text: &str, position: u64) -> Result<(), TwimlError> {
        let Some(parent) = self.stack.last_mut() else {
            let trimmed = trim_xml(text);
            if trimmed.is_empty() {
                return Ok(());
            }
            return Err(match self.root {
                Some(_) => TwimlError::TrailingContent { position },
                None => TwimlError::Text {
                    element: "document".to_owned(),
                    text: quote(trimmed),
                    position,
                },
            });
        };
        match parent.children.last_mut() {
            Some(Node::Text { text: run, .. }) => run.push_str(text),
            _ => parent.children.push(Node::Text {
                text: text.to_owned(),
                position,
            }),
        }
        Ok(())
    }
}

/// Builds an [`Element`] (no children yet) from a start or empty tag.
fn open(
    reader: &Reader<&[u8]>,
    start: &BytesStart<'_>,
    position: u64,
) -> Result<Element, TwimlError> {
    let decoder = reader.decoder();
    let name = decoder
        .decode(start.name().as_ref())
        .map_err(|err| xml_error(position, &err))?
        .into_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|err| TwimlError::Xml {
            position,
            detail: format!("in <{}>: {}", quote(&name), quote(&err.to_string())),
        })?;
        let key = decoder
            .decode(attr.key.as_ref())
            .map_err(|err| xml_error(position, &err))?
            .into_owned();
        let value = attr
            .decode_and_unescape_value_with(decoder, resolve_xml_entity)
            .map_err(|err| match err {
                quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, entity)) => {
                    TwimlError::UnknownEntity {
                        name: quote(&entity),
                        position,
                    }
                }
                other => TwimlError::Xml {
                    position,
                    detail: format!(
                        "in attribute {} of <{}>: {}",
                        quote(&key),
                        quote(&name),
                        quote(&other.to_string())
                    ),
                },
            })?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        position,
    })
}

/// The character a `&…;` reference in text stands for: a character reference, or
/// one of XML's five predefined entities. Anything else is refused.
fn resolve_reference(reference: &BytesRef<'_>, position: u64) -> Result<char, TwimlError> {
    if let Some(ch) = reference
        .resolve_char_ref()
        .map_err(|err| xml_error(position, &err))?
    {
        return Ok(ch);
    }
    let name = reference
        .decode()
        .map_err(|err| xml_error(position, &err))?;
    resolve_xml_entity(&name)
        .and_then(|value| value.chars().next())
        .ok_or_else(|| TwimlError::UnknownEntity {
            name: quote(&name),
            position,
        })
}

/// Trims XML whitespace (space, tab, CR, LF), not Unicode spaces, which are text.
pub(super) fn trim_xml(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// A [`TwimlError::Xml`] from any quick-xml error.
fn xml_error(position: u64, err: &dyn std::fmt::Display) -> TwimlError {
    TwimlError::Xml {
        position,
        detail: quote(&err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(element: &Element) -> Vec<&str> {
        element
            .children
            .iter()
            .filter_map(|node| match node {
                Node::Text { text, .. } => Some(text.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    #[test]
    fn merges_text_cdata_and_references_into_one_run() {
        let root = read_document("<a>x &amp; <![CDATA[<y>]]>&#x41;<!-- c -->z</a>").unwrap();
        assert_eq!(texts(&root), ["x & <y>Az"]);
    }

    #[test]
    fn positions_count_the_bom() {
        let err = read_document("\u{feff}<a><b></a>").unwrap_err();
        assert!(matches!(err, TwimlError::Xml { .. }), "{err:?}");
        let root = read_document("\u{feff}<a><b/></a>").unwrap();
        let Node::Element(b) = &root.children[0] else {
            panic!("expected an element")
        };
        assert_eq!(b.position, 6);
    }

    #[test]
    fn unclosed_element_is_reported_by_name() {
        let err = read_document("<a><b>").unwrap_err();
        assert_eq!(
            err,
            TwimlError::Unclosed {
                element: "b".into(),
                position: 3
            }
        );
    }

    #[test]
    fn doctype_entities_are_never_expanded() {
        let doc = r#"<!DOCTYPE a [<!ENTITY x "boom">]><a>&x;</a>"#;
        let err = read_document(doc).unwrap_err();
        assert!(
            matches!(&err, TwimlError::UnknownEntity { name, .. } if name == "x"),
            "{err:?}"
        );
        let doc = r#"<!DOCTYPE a [<!ENTITY x "boom">]><a b="&x;"/>"#;
        let err = read_document(doc).unwrap_err();
        assert!(
            matches!(&err, TwimlError::UnknownEntity { name, .. } if name == "x"),
            "{err:?}"
        );
    }

    #[test]
    fn a_million_open_tags_stop_at_the_depth_limit() {
        let doc = "<a>".repeat(1_000_000);
        let err = read_document(&doc).unwrap_err();
        assert!(
            matches!(err, TwimlError::TooDeep { max: MAX_DEPTH, position, .. } if position == 3 * MAX_DEPTH as u64),
            "{err:?}"
        );
    }

    #[test]
    fn text_outside_the_root() {
        assert!(matches!(
            read_document("hello <a/>"),
            Err(TwimlError::Text { .. })
        ));
        assert!(matches!(
            read_document("<a/> hello"),
            Err(TwimlError::TrailingContent { position: 4 })
        ));
        assert!(matches!(
            read_document("<a/><b/>"),
            Err(TwimlError::TrailingContent { position: 4 })
        ));
        assert!(read_document("  <a/>\n<!-- ok -->\n").is_ok());
    }

    /// Found while writing the bounded-message invariant of
    /// `fuzz/fuzz_targets/twiml.rs`: element and attribute names were quoted whole,
    /// so a document with a 10 000-character name made a 10 kB `call.error` message
    /// and log line.
    #[test]
    fn errors_quote_long_names_briefly() {
        let long = "N".repeat(10_000);
        for document in [
            format!("<{long}>"),
            format!("<a>{}</a>", format!("<{long}>").repeat(MAX_DEPTH)),
            format!(r#"<{long} x="1" x="2"/>"#),
            format!(r#"<a {long}="&#0;"/>"#),
        ] {
            let err = read_document(&document).unwrap_err();
            let message = err.to_string();
            let start: String = message.chars().take(80).collect();
            assert!(message.len() < 300, "{} bytes: {start}…", message.len());
        }
    }
}
