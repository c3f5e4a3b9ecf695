//! Why a TwiML document was refused.
//!
//! Every variant is Twilio's error 12100 ("Document parse failure"): the call actor
//! emits it as `call.error` with `error_code` [`TwimlError::code`] and
//! [`TwimlError::summary`] as `error_message`, then ends the call. The summary gives
//! the byte offset and quotes nothing from the document (it reaches every
//! subscriber); the [`Display`](std::fmt::Display) text also names the element, the
//! attribute and the value, for tools and tests run by the document's author. An
//! unknown verb is not an error at all (see [`Verb::Unknown`](super::Verb::Unknown)).

/// Twilio's code for a document that cannot be parsed or violates the TwiML schema.
pub const DOCUMENT_PARSE_FAILURE: u16 = 12100;

/// Twilio's code for a schema warning, used when a document holds an unknown verb.
///
/// Not produced by this module: the executor emits it as `call.warning` when it meets
/// [`Verb::Unknown`](super::Verb::Unknown), then goes on with the next verb.
pub const SCHEMA_VALIDATION_WARNING: u16 = 12200;

/// The longest piece of the input quoted back in an error message, in characters.
///
/// Errors travel in events and logs; a hostile document must not make them large.
pub(crate) const QUOTE_MAX_CHARS: usize = 64;

/// Why [`parse`](super::parse) refused a document. Every variant maps to 12100.
///
/// `position` fields are byte offsets into the document as given (a leading BOM
/// counts), pointing at the start of the element or markup concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwimlError {
    /// The input is not well-formed XML (bad syntax, mismatched end tag, bad
    /// character reference, duplicate attribute, …).
    #[error("not well-formed XML at byte {position}: {detail}")]
    Xml {
        /// Where the reader gave up.
        position: u64,
        /// What the XML reader reported.
        detail: String,
    },
    /// The document has no element at all (empty, or only whitespace and comments).
    #[error("no root element: a TwiML document is a <Response> element")]
    NoRoot,
    /// The root element is not `<Response>` (the name is case-sensitive, as Twilio's).
    #[error("root element is <{found}>, expected <Response>")]
    WrongRoot {
        /// The root element's name as written.
        found: String,
    },
    /// An element is still open at the end of the input.
    #[error("<{element}> at byte {position} is never closed")]
    Unclosed {
        /// The innermost open element.
        element: String,
        /// Where it starts.
        position: u64,
    },
    /// An entity reference other than XML's five predefined ones and character
    /// references. Nothing is expanded from a DTD, by design.
    #[error("unknown entity `&{name};` at byte {position} (only &lt; &gt; &amp; &apos; &quot; and &#…; are expanded)")]
    UnknownEntity {
        /// The entity's name, without `&` and `;`.
        name: String,
        /// Where the element holding it starts (for attribute values) or where the
        /// reference is (for text).
        position: u64,
    },
    /// Elements nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("<{element}> at byte {position} is nested more than {max} levels deep")]
    TooDeep {
        /// The element that went over the limit.
        element: String,
        /// The limit.
        max: usize,
        /// Where the element starts.
        position: u64,
    },
    /// Text where only elements may appear: directly inside `<Response>`, inside
    /// `<Gather>`, in a verb that takes no content, or outside the root.
    #[error("unexpected text `{text}` inside <{element}> at byte {position}")]
    Text {
        /// The element holding the text (`Response` for text at the top level,
        /// `document` for text outside the root).
        element: String,
        /// The text, trimmed and truncated.
        text: String,
        /// Where the text starts.
        position: u64,
    },
    /// An attribute value that does not fit the attribute's type.
    #[error("<{element} {attribute}=\"{value}\"> at byte {position}: expected {expected}")]
    BadAttribute {
        /// The element, e.g. `Gather`.
        element: String,
        /// The attribute, e.g. `numDigits`.
        attribute: String,
        /// The value as written (unescaped, truncated).
        value: String,
        /// What would have been accepted.
        expected: &'static str,
        /// Where the element starts.
        position: u64,
    },
    /// An element where TwiML does not allow it, e.g. `<Dial>` inside `<Gather>`.
    #[error("<{child}> at byte {position} is not allowed inside <{parent}>")]
    DisallowedChild {
        /// The enclosing element.
        parent: String,
        /// The element that is not allowed there.
        child: String,
        /// Where the child starts.
        position: u64,
    },
    /// An element without the content it needs, e.g. `<Play/>` without a URL or a
    /// `<Dial>` with neither a number nor nouns.
    #[error("<{element}> at byte {position} has no {what}")]
    Missing {
        /// The element.
        element: String,
        /// What it lacks, e.g. `URL`.
        what: &'static str,
        /// Where the element starts.
        position: u64,
    },
    /// Content that breaks a rule of the element's own: a queue name over
    /// [`MAX_QUEUE_NAME_CHARS`](super::MAX_QUEUE_NAME_CHARS), a `<Dial>` with a
    /// `<Conference>` or `<Queue>` beside other nouns or with more than
    /// [`MAX_DIAL_NOUNS`](super::MAX_DIAL_NOUNS) numbers and clients.
    #[error("<{element}> at byte {position}: expected {expected}")]
    BadContent {
        /// The element, e.g. `Enqueue`.
        element: String,
        /// What would have been accepted.
        expected: &'static str,
        /// Where the element starts.
        position: u64,
    },
    /// Both text and nested nouns in one element (e.g. `<Dial>+1555<Number>…`),
    /// where TwiML allows one or the other.
    #[error("<{element}> at byte {position} mixes text with nested elements")]
    MixedContent {
        /// The element.
        element: String,
        /// Where the element starts.
        position: u64,
    },
    /// Text or elements after `</Response>`.
    #[error("content after </Response> at byte {position}")]
    TrailingContent {
        /// Where the extra content starts.
        position: u64,
    },
}

impl TwimlError {
    /// Twilio's error code for this failure, for `data.error_code` of `call.error`.
    ///
    /// Always [`DOCUMENT_PARSE_FAILURE`] (12100): Twilio reports every schema or
    /// syntax problem with that one code and tells them apart only in the message.
    pub fn code(&self) -> u16 {
        DOCUMENT_PARSE_FAILURE
    }

    /// What went wrong and where, in a fixed text that quotes nothing from the
    /// document: the `error_message` of `call.error` reaches every subscriber, and a
    /// document fetched through a redirect may be an internal service's answer, so
    /// its bytes (element names, text, attribute values, the XML reader's
    /// description) must not travel. The byte offset is enough to find the fault.
    pub fn summary(&self) -> String {
        match self {
            TwimlError::Xml { position, .. } => format!("not well-formed XML at byte {position}"),
            TwimlError::NoRoot => "no root element: a TwiML document is a <Response> element".into(),
            TwimlError::WrongRoot { .. } => "the root element is not <Response>".into(),
            TwimlError::Unclosed { position, .. } => {
                format!("an element at byte {position} is never closed")
            }
            TwimlError::UnknownEntity { position, .. } => format!(
                "unknown entity at byte {position} (only &lt; &gt; &amp; &apos; &quot; and &#…; are expanded)"
            ),
            TwimlError::TooDeep { max, position, .. } => {
                format!("an element at byte {position} is nested more than {max} levels deep")
            }
            TwimlError::Text { position, .. } => {
                format!("unexpected text at byte {position}")
            }
            TwimlError::BadAttribute {
                expected, position, ..
            } => format!("an attribute of the element at byte {position}: expected {expected}"),
            TwimlError::DisallowedChild { position, .. } => {
                format!("the element at byte {position} is not allowed there")
            }
            TwimlError::Missing { what, position, .. } => {
                format!("the element at byte {position} has no {what}")
            }
            TwimlError::BadContent {
                expected, position, ..
            } => format!("the content of the element at byte {position}: expected {expected}"),
            TwimlError::MixedContent { position, .. } => {
                format!("the element at byte {position} mixes text with nested elements")
            }
            TwimlError::TrailingContent { position } => {
                format!("content after </Response> at byte {position}")
            }
        }
    }
}

/// `text` cut to [`QUOTE_MAX_CHARS`] characters (with `…` when cut), for messages.
pub(crate) fn quote(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_12100_for_every_variant() {
        let all = [
            TwimlError::NoRoot,
            TwimlError::TrailingContent { position: 3 },
            TwimlError::WrongRoot { found: "x".into() },
        ];
        for err in all {
            assert_eq!(err.code(), 12100);
        }
    }

    #[test]
    fn display_names_element_attribute_and_position() {
        let err = TwimlError::BadAttribute {
            element: "Gather".into(),
            attribute: "numDigits".into(),
            value: "abc".into(),
            expected: "a whole number",
            position: 42,
        };
        assert_eq!(
            err.to_string(),
            "<Gather numDigits=\"abc\"> at byte 42: expected a whole number"
        );
    }

    #[test]
    fn summary_quotes_nothing_from_the_document() {
        let secret = "SECRET-BODY-123";
        let all = [
            TwimlError::Xml {
                position: 1,
                detail: secret.into(),
            },
            TwimlError::WrongRoot {
                found: secret.into(),
            },
            TwimlError::Unclosed {
                element: secret.into(),
                position: 2,
            },
            TwimlError::UnknownEntity {
                name: secret.into(),
                position: 3,
            },
            TwimlError::TooDeep {
                element: secret.into(),
                max: 4,
                position: 5,
            },
            TwimlError::Text {
                element: secret.into(),
                text: secret.into(),
                position: 6,
            },
            TwimlError::BadAttribute {
                element: secret.into(),
                attribute: secret.into(),
                value: secret.into(),
                expected: "a whole number",
                position: 7,
            },
            TwimlError::DisallowedChild {
                parent: secret.into(),
                child: secret.into(),
                position: 8,
            },
            TwimlError::Missing {
                element: secret.into(),
                what: "URL",
                position: 9,
            },
            TwimlError::MixedContent {
                element: secret.into(),
                position: 10,
            },
            TwimlError::BadContent {
                element: secret.into(),
                expected: "a queue name of at most 64 characters",
                position: 11,
            },
        ];
        for err in all {
            let summary = err.summary();
            assert!(!summary.contains("SECRET"), "{summary}");
            let positioned = !matches!(err, TwimlError::WrongRoot { .. });
            assert!(!positioned || summary.contains("at byte"), "{summary}");
        }
        assert_eq!(
            TwimlError::BadAttribute {
                element: "Gather".into(),
                attribute: "numDigits".into(),
                value: "abc".into(),
                expected: "a whole number",
                position: 42,
            }
            .summary(),
            "an attribute of the element at byte 42: expected a whole number"
        );
    }

    #[test]
    fn quote_truncates_on_char_boundaries() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(100);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_MAX_CHARS + 1);
        assert!(quoted.ends_with('…'));
    }
}
