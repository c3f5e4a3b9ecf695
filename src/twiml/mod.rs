//! TwiML parsing and the verb model: what an app's document tells a call to do.
//!
//! A call's program (`callrouter::program`, run by the call actor) fetches a document
//! from the app, hands it to [`parse`], and runs the resulting [`Response`]'s verbs in
//! order. This module is pure (no actors, no I/O, no clocks) so every rule is
//! unit-tested here and the program only executes.
//!
//! - [`parse`] checks the document against the subset of Twilio's schema that
//!   docs/api.md §7 lists and applies Twilio's defaults, so a [`Verb`] carries typed,
//!   final values. A failure is a [`TwimlError`], which is always Twilio's
//!   [`DOCUMENT_PARSE_FAILURE`] (12100); an unknown verb is not a failure but a
//!   [`Verb::Unknown`], for a `call.warning` with [`SCHEMA_VALIDATION_WARNING`]
//!   (12200).
//! - [`fill_template`] fills URI templates (`…/audio/{Digits}.mp3`) from the call's
//!   parameters when a URL is used.
//!
//! Hostile documents: nesting is limited to [`MAX_DEPTH`] levels and only XML's
//! predefined entities and character references are expanded (no DTD entities, no
//! external anything). The size of the document is the caller's limit.

mod error;
mod model;
mod parse;
mod template;
mod xml;

pub use error::{TwimlError, DOCUMENT_PARSE_FAILURE, SCHEMA_VALIDATION_WARNING};
pub use model::{
    Conference, Dial, DialTarget, Enqueue, Gather, GatherChild, GatherInput, Message, MessageKind,
    Method, Pause, Play, QueueNoun, Record, Redirect, Reject, RejectReason, Response, Say,
    SpeechTimeout, Verb, MAX_DIAL_NOUNS, MAX_QUEUE_NAME_CHARS,
};
pub use parse::parse;
pub use template::fill_template;

/// The deepest element nesting accepted, counting `<Response>` as level 1.
///
/// Real TwiML needs 3 or 4 levels (`Response` > `Gather` > `Say` > SSML); the limit
/// keeps a hostile document from costing more than its size.
pub const MAX_DEPTH: usize = 16;
