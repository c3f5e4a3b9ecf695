//! TwiML rules: from the element tree of [`super::xml`] to the verb model.
//!
//! One function per verb reads its attributes through [`Attrs`] (Twilio's names,
//! Twilio's defaults, unknown attributes ignored as Twilio ignores them) and checks
//! what may be inside it. Names are case-sensitive, as in Twilio: `<say>` is an
//! unknown verb and `numdigits` an unknown (ignored) attribute.

use super::error::{quote, TwimlError};
use super::model::{
    Conference, Dial, DialTarget, Enqueue, Gather, GatherChild, GatherInput, Message, MessageKind,
    Method, Pause, Play, QueueNoun, Record, Redirect, Reject, RejectReason, Response, Say,
    SpeechTimeout, Verb, MAX_DIAL_NOUNS, MAX_QUEUE_NAME_CHARS,
};
use super::xml::{read_document, trim_xml, Element, Node};

/// SSML elements Twilio accepts inside `<Say>`. Their text is spoken; the markup
/// itself means nothing to the simulated network, so it is dropped.
const SSML_ELEMENTS: &[&str] = &[
    "break",
    "emphasis",
    "lang",
    "p",
    "phoneme",
    "prosody",
    "s",
    "say-as",
    "sub",
    "w",
    "amazon:domain",
    "amazon:effect",
];

/// Most phrases in `<Gather hints>`, as Twilio documents.
const MAX_HINTS: usize = 500;
/// Longest phrase in `<Gather hints>`, in characters, as Twilio documents.
const MAX_HINT_CHARS: usize = 100;
/// Longest `<Gather language>` tag: RFC 5646's advice for a BCP 47 tag's length.
const MAX_LANGUAGE_CHARS: usize = 35;

/// Parses a TwiML document into the verbs the call actor runs.
///
/// The root must be `<Response>`; each child element becomes a [`Verb`] in order,
/// an unknown one becoming [`Verb::Unknown`] rather than an error. Anything else
/// that is wrong (not XML, another root, text between verbs, a bad attribute value,
/// a child where TwiML allows none, content after `</Response>`, more than
/// [`MAX_DEPTH`](super::MAX_DEPTH) levels) is a [`TwimlError`], Twilio's 12100.
///
/// Pure and total: no I/O, and no input makes it panic. Callers bound the input
/// size (the whole document is held in memory as a tree).
pub fn parse(xml: &str) -> Result<Response, TwimlError> {
    let root = read_document(xml)?;
    if root.name != "Response" {
        return Err(TwimlError::WrongRoot {
            found: quote(&root.name),
        });
    }
    let mut verbs = Vec::new();
    for node in &root.children {
        match node {
            Node::Element(element) => verbs.push(verb(element)?),
            Node::Text { text, position } => no_text(&root, text, *position)?,
        }
    }
    Ok(Response { verbs })
}

/// One child of `<Response>`.
fn verb(element: &Element) -> Result<Verb, TwimlError> {
    Ok(match element.name.as_str() {
        "Say" => Verb::Say(say(element)?),
        "Play" => Verb::Play(play(element)?),
        "Pause" => Verb::Pause(pause(element)?),
        "Gather" => Verb::Gather(gather(element)?),
        "Record" => Verb::Record(record(element)?),
        "Dial" => Verb::Dial(dial(element)?),
        "Message" => Verb::Message(message(element, MessageKind::Message)?),
        "Sms" => Verb::Message(message(element, MessageKind::Sms)?),
        "Redirect" => Verb::Redirect(redirect(element)?),
        "Hangup" => {
            no_content(element)?;
            Verb::Hangup
        }
        "Reject" => Verb::Reject(reject(element)?),
        "Enqueue" => Verb::Enqueue(enqueue(element)?),
        "Leave" => {
            no_content(element)?;
            Verb::Leave
        }
        other => Verb::Unknown {
            name: other.to_owned(),
        },
    })
}

fn say(element: &Element) -> Result<Say, TwimlError> {
    let attrs = Attrs(element);
    let mut speech = Speech::default();
    speech.collect(element)?;
    Ok(Say {
        text: trim_xml(&speech.text).to_owned(),
        voice: attrs.string("voice"),
        language: attrs.string("language"),
        loop_count: attrs.u32_or("loop", 1)?,
    })
}

fn play(element: &Element) -> Result<Play, TwimlError> {
    let attrs = Attrs(element);
    let url = plain_text(element)?;
    let digits = attrs.digits("digits")?;
    if url.is_empty() && digits.is_none() {
        return Err(missing(element, "URL (or digits attribute)"));
    }
    Ok(Play {
        url,
        loop_count: attrs.u32_or("loop", 1)?,
        digits,
    })
}

fn pause(element: &Element) -> Result<Pause, TwimlError> {
    no_content(element)?;
    Ok(Pause {
        length: Attrs(element).u32_or("length", 1)?,
    })
}

fn gather(element: &Element) -> Result<Gather, TwimlError> {
    let attrs = Attrs(element);
    let mut children = Vec::new();
    for node in &element.children {
        match node {
            Node::Text { text, position } => no_text(element, text, *position)?,
            Node::Element(child) => children.push(match child.name.as_str() {
                "Say" => GatherChild::Say(say(child)?),
                "Play" => GatherChild::Play(play(child)?),
                "Pause" => GatherChild::Pause(pause(child)?),
                _ => return Err(disallowed(element, child)),
            }),
        }
    }
    let num_digits = match attrs.opt_u32("numDigits")? {
        Some(0) => return Err(attrs.bad("numDigits", "a whole number from 1")),
        other => other,
    };
    Ok(Gather {
        num_digits,
        timeout: attrs.u32_or("timeout", 5)?,
        finish_on_key: attrs.finish_key("finishOnKey")?,
        action: attrs.string("action"),
        method: attrs.method("method")?,
        input: attrs.input("input")?,
        speech_timeout: attrs.speech_timeout("speechTimeout")?,
        hints: attrs.hints("hints")?,
        language: attrs.language("language")?,
        children,
    })
}

fn record(element: &Element) -> Result<Record, TwimlError> {
    no_content(element)?;
    let attrs = Attrs(element);
    Ok(Record {
        max_length: attrs.u32_or("maxLength", 3600)?,
        timeout: attrs.u32_or("timeout", 5)?,
        finish_on_key: attrs.finish_keys("finishOnKey", "1234567890*#")?,
        action: attrs.string("action"),
        method: attrs.method("method")?,
        play_beep: attrs.bool_or("playBeep", true)?,
    })
}

fn dial(element: &Element) -> Result<Dial, TwimlError> {
    let attrs = Attrs(element);
    let mut text = String::new();
    let mut targets = Vec::new();
    for node in &element.children {
        match node {
            Node::Text { text: run, .. } => text.push_str(run),
            Node::Element(child) => targets.push(match child.name.as_str() {
                "Number" => DialTarget::Number(required_text(child, "phone number")?),
                "Client" => DialTarget::Client(client(child)?),
                "Conference" => DialTarget::Conference(conference(child)?),
                "Queue" => DialTarget::Queue(queue(child)?),
                _ => return Err(disallowed(element, child)),
            }),
        }
    }
    let number = trim_xml(&text);
    match (number.is_empty(), targets.is_empty()) {
        (false, false) => return Err(mixed(element)),
        (false, true) => targets.push(DialTarget::Number(number.to_owned())),
        (true, true) => {
            return Err(missing(
                element,
                "number to call (text, or Number, Client, Conference or Queue nouns)",
            ))
        }
        (true, false) => {}
    }
    // A room or a queue is a different kind of call from ringing parties: Twilio
    // joins one room or takes one caller, never alongside anything else.
    let joins = targets
        .iter()
        .any(|target| matches!(target, DialTarget::Conference(_) | DialTarget::Queue(_)));
    if joins && targets.len() > 1 {
        return Err(bad_content(
            element,
            "a Conference or Queue noun on its own, without other nouns",
        ));
    }
    if targets.len() > MAX_DIAL_NOUNS {
        return Err(bad_content(element, "at most 10 Number and Client nouns"));
    }
    Ok(Dial {
        targets,
        action: attrs.string("action"),
        method: attrs.method("method")?,
        timeout: attrs.u32_or("timeout", 30)?,
        caller_id: attrs.string("callerId"),
        time_limit: attrs.u32_or("timeLimit", 14400)?,
        record: attrs.dial_record("record")?,
    })
}

/// `<Client>alice</Client>` or `<Client><Identity>alice</Identity>…</Client>`;
/// `<Parameter>`s (custom parameters for the client) are accepted and not kept.
fn client(element: &Element) -> Result<String, TwimlError> {
    let mut text = String::new();
    let mut identity = None;
    for node in &element.children {
        match node {
            Node::Text { text: run, .. } => text.push_str(run),
            Node::Element(child) => match child.name.as_str() {
                "Identity" => identity = Some(plain_text(child)?),
                "Parameter" => no_content(child)?,
                _ => return Err(disallowed(element, child)),
            },
        }
    }
    let text = trim_xml(&text);
    let name = match identity {
        Some(_) if !text.is_empty() => return Err(mixed(element)),
        Some(identity) => identity,
        None => text.to_owned(),
    };
    if name.is_empty() {
        return Err(missing(element, "client name"));
    }
    Ok(name)
}

fn conference(element: &Element) -> Result<Conference, TwimlError> {
    let attrs = Attrs(element);
    Ok(Conference {
        name: required_text(element, "room name")?,
        muted: attrs.bool_or("muted", false)?,
        start_conference_on_enter: attrs.bool_or("startConferenceOnEnter", true)?,
        end_conference_on_exit: attrs.bool_or("endConferenceOnExit", false)?,
        beep: attrs.string("beep"),
        wait_url: attrs.string("waitUrl"),
        wait_method: attrs.method("waitMethod")?,
    })
}

/// `<Dial><Queue>`: `reservationSid` and `postWorkActivitySid` (TaskRouter) are not
/// simulated and are ignored.
fn queue(element: &Element) -> Result<QueueNoun, TwimlError> {
    let attrs = Attrs(element);
    Ok(QueueNoun {
        name: queue_name(element)?,
        url: attrs.string("url"),
        method: attrs.method("method")?,
    })
}

/// `<Enqueue>`: the queue's name as text; `workflowSid` and the rest are ignored.
fn enqueue(element: &Element) -> Result<Enqueue, TwimlError> {
    let attrs = Attrs(element);
    Ok(Enqueue {
        name: queue_name(element)?,
        action: attrs.string("action"),
        method: attrs.method("method")?,
        wait_url: attrs.string("waitUrl"),
        wait_url_method: attrs.method("waitUrlMethod")?,
    })
}

/// The text of `<Enqueue>` or `<Queue>`: a queue's name, which Twilio bounds as a
/// queue's `FriendlyName`.
fn queue_name(element: &Element) -> Result<String, TwimlError> {
    let name = required_text(element, "queue name")?;
    if name.chars().count() > MAX_QUEUE_NAME_CHARS {
        return Err(bad_content(
            element,
            "a queue name of at most 64 characters",
        ));
    }
    Ok(name)
}

/// `<Message>`/`<Sms>`: the body as text, or `<Body>` and `<Media>` nouns. Several
/// `<Body>`s are concatenated; an empty body is allowed (the executor decides).
fn message(element: &Element, kind: MessageKind) -> Result<Message, TwimlError> {
    let attrs = Attrs(element);
    let mut text = String::new();
    let mut body: Option<String> = None;
    let mut media = Vec::new();
    for node in &element.children {
        match node {
            Node::Text { text: run, .. } => text.push_str(run),
            Node::Element(child) => match child.name.as_str() {
                "Body" => body
                    .get_or_insert_with(String::new)
                    .push_str(&plain_text(child)?),
                "Media" => media.push(required_text(child, "URL")?),
                _ => return Err(disallowed(element, child)),
            },
        }
    }
    let text = trim_xml(&text);
    let nouns = body.is_some() || !media.is_empty();
    if nouns && !text.is_empty() {
        return Err(mixed(element));
    }
    Ok(Message {
        kind,
        body: body.unwrap_or_else(|| text.to_owned()),
        media,
        to: attrs.string("to"),
        from: attrs.string("from"),
        action: attrs.string("action"),
        method: attrs.method("method")?,
    })
}

fn redirect(element: &Element) -> Result<Redirect, TwimlError> {
    Ok(Redirect {
        url: required_text(element, "URL")?,
        method: Attrs(element).method("method")?,
    })
}

fn reject(element: &Element) -> Result<Reject, TwimlError> {
    no_content(element)?;
    let attrs = Attrs(element);
    let reason = match attrs.get("reason").map(trim_xml) {
        None => RejectReason::Rejected,
        Some(value) if value.eq_ignore_ascii_case("rejected") => RejectReason::Rejected,
        Some(value) if value.eq_ignore_ascii_case("busy") => RejectReason::Busy,
        Some(_) => return Err(attrs.bad("reason", "rejected or busy")),
    };
    Ok(Reject { reason })
}

/// The text of `<Say>`, SSML markup dropped. Element boundaries separate words
/// (`a<break/>b` is `a b`) without doubling spaces already there or putting one
/// before punctuation.
#[derive(Default)]
struct Speech {
    text: String,
    at_boundary: bool,
}

impl Speech {
    /// Appends the text under `element`. Recursion is bounded by the tree depth,
    /// which [`super::MAX_DEPTH`] limits.
    fn collect(&mut self, element: &Element) -> Result<(), TwimlError> {
        for node in &element.children {
            match node {
                Node::Text { text, .. } => self.push(text),
                Node::Element(child) if SSML_ELEMENTS.contains(&child.name.as_str()) => {
                    self.at_boundary = true;
                    self.collect(child)?;
                    self.at_boundary = true;
                }
                Node::Element(child) => return Err(disallowed(element, child)),
            }
        }
        Ok(())
    }

    fn push(&mut self, run: &str) {
        let is_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        if self.at_boundary
            && self.text.chars().next_back().is_some_and(|c| !is_space(c))
            && run.chars().next().is_some_and(char::is_alphanumeric)
        {
            self.text.push(' ');
        }
        if !run.is_empty() {
            self.at_boundary = false;
        }
        self.text.push_str(run);
    }
}

/// The element's text, trimmed; an element inside it is an error.
fn plain_text(element: &Element) -> Result<String, TwimlError> {
    let mut text = String::new();
    for node in &element.children {
        match node {
            Node::Text { text: run, .. } => text.push_str(run),
            Node::Element(child) => return Err(disallowed(element, child)),
        }
    }
    Ok(trim_xml(&text).to_owned())
}

/// [`plain_text`] that must not be empty; `what` names it in the error.
fn required_text(element: &Element, what: &'static str) -> Result<String, TwimlError> {
    let text = plain_text(element)?;
    if text.is_empty() {
        return Err(missing(element, what));
    }
    Ok(text)
}

/// Refuses any content: for verbs such as `<Pause>` and `<Hangup>`.
fn no_content(element: &Element) -> Result<(), TwimlError> {
    for node in &element.children {
        match node {
            Node::Text { text, position } => no_text(element, text, *position)?,
            Node::Element(child) => return Err(disallowed(element, child)),
        }
    }
    Ok(())
}

/// Allows whitespace (indentation) where no text belongs, refuses anything else.
fn no_text(element: &Element, text: &str, position: u64) -> Result<(), TwimlError> {
    let trimmed = trim_xml(text);
    if trimmed.is_empty() {
        return Ok(());
    }
    Err(TwimlError::Text {
        element: quote(&element.name),
        text: quote(trimmed),
        position,
    })
}

fn disallowed(parent: &Element, child: &Element) -> TwimlError {
    TwimlError::DisallowedChild {
        parent: quote(&parent.name),
        child: quote(&child.name),
        position: child.position,
    }
}

fn missing(element: &Element, what: &'static str) -> TwimlError {
    TwimlError::Missing {
        element: quote(&element.name),
        what,
        position: element.position,
    }
}

fn mixed(element: &Element) -> TwimlError {
    TwimlError::MixedContent {
        element: quote(&element.name),
        position: element.position,
    }
}

fn bad_content(element: &Element, expected: &'static str) -> TwimlError {
    TwimlError::BadContent {
        element: quote(&element.name),
        expected,
        position: element.position,
    }
}

/// Typed access to one element's attributes, with the error naming the element and
/// the attribute. Values are trimmed of XML whitespace before they are read.
struct Attrs<'a>(&'a Element);

impl<'a> Attrs<'a> {
    /// The raw (unescaped) value. quick-xml refuses duplicate attributes, so the
    /// first is the only one.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .attrs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn bad(&self, name: &str, expected: &'static str) -> TwimlError {
        TwimlError::BadAttribute {
            element: quote(&self.0.name),
            attribute: name.to_owned(),
            value: quote(self.get(name).unwrap_or_default()),
            expected,
            position: self.0.position,
        }
    }

    /// A free-form value such as a URL or a voice; empty counts as absent.
    fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(trim_xml)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    }

    /// A non-negative integer: ASCII digits only (no sign, no fraction).
    fn opt_u32(&self, name: &str) -> Result<Option<u32>, TwimlError> {
        let Some(value) = self.get(name).map(trim_xml) else {
            return Ok(None);
        };
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.bad(name, "a whole number of 0 or more"));
        }
        value
            .parse()
            .map(Some)
            .map_err(|_| self.bad(name, "a whole number below 4294967296"))
    }

    fn u32_or(&self, name: &str, default: u32) -> Result<u32, TwimlError> {
        Ok(self.opt_u32(name)?.unwrap_or(default))
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool, TwimlError> {
        match self.get(name).map(trim_xml) {
            None => Ok(default),
            Some(value) if value.eq_ignore_ascii_case("true") => Ok(true),
            Some(value) if value.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(self.bad(name, "true or false")),
        }
    }

    /// A method attribute (`method`, `waitMethod`), POST when absent.
    fn method(&self, name: &str) -> Result<Method, TwimlError> {
        match self.get(name).map(trim_xml) {
            None => Ok(Method::Post),
            Some(value) if value.eq_ignore_ascii_case("POST") => Ok(Method::Post),
            Some(value) if value.eq_ignore_ascii_case("GET") => Ok(Method::Get),
            Some(_) => Err(self.bad(name, "GET or POST")),
        }
    }

    /// `<Gather finishOnKey>`: one key, `#` when absent, none when empty.
    fn finish_key(&self, name: &str) -> Result<Option<char>, TwimlError> {
        let Some(value) = self.get(name).map(trim_xml) else {
            return Ok(Some('#'));
        };
        let mut chars = value.chars();
        match (chars.next(), chars.next()) {
            (None, _) => Ok(None),
            (Some(key), None) if is_key(key) => Ok(Some(key)),
            _ => Err(self.bad(name, "one key (0-9, * or #) or nothing")),
        }
    }

    /// `<Record finishOnKey>`: a set of keys, `default` when absent, none when empty.
    fn finish_keys(&self, name: &str, default: &str) -> Result<String, TwimlError> {
        match self.get(name).map(trim_xml) {
            None => Ok(default.to_owned()),
            Some(value) if value.chars().all(is_key) => Ok(value.to_owned()),
            Some(_) => Err(self.bad(name, "keys among 0-9, * and #, or nothing")),
        }
    }

    /// `<Play digits>`: DTMF tones and `w` pauses; empty counts as absent.
    fn digits(&self, name: &str) -> Result<Option<String>, TwimlError> {
        let Some(value) = self.string(name) else {
            return Ok(None);
        };
        if value.chars().all(|c| is_key(c) || c == 'w' || c == 'W') {
            Ok(Some(value))
        } else {
            Err(self.bad(name, "DTMF digits: 0-9, *, # and w (wait)"))
        }
    }

    /// `<Dial record>`: whether to record the bridged call, no when absent. Every
    /// Twilio `record-from-…` mode is a yes, as is `true`, the attribute's older
    /// boolean form; `do-not-record` and `false` are no.
    fn dial_record(&self, name: &str) -> Result<bool, TwimlError> {
        const YES: &[&str] = &[
            "record-from-answer",
            "record-from-ringing",
            "record-from-answer-dual",
            "record-from-ringing-dual",
            "true",
        ];
        const NO: &[&str] = &["do-not-record", "false"];
        let Some(value) = self.get(name).map(trim_xml) else {
            return Ok(false);
        };
        let is = |values: &[&str]| values.iter().any(|v| value.eq_ignore_ascii_case(v));
        if is(YES) {
            Ok(true)
        } else if is(NO) {
            Ok(false)
        } else {
            Err(self.bad(
                name,
                "do-not-record, record-from-answer, record-from-ringing, their -dual forms, true or false",
            ))
        }
    }

    /// `<Gather input>`: `dtmf`, `speech`, or both separated by a space.
    fn input(&self, name: &str) -> Result<GatherInput, TwimlError> {
        let Some(value) = self.get(name) else {
            return Ok(GatherInput::default());
        };
        let mut input = GatherInput {
            dtmf: false,
            speech: false,
        };
        for token in value.split_ascii_whitespace() {
            if token.eq_ignore_ascii_case("dtmf") {
                input.dtmf = true;
            } else if token.eq_ignore_ascii_case("speech") {
                input.speech = true;
            } else {
                return Err(self.bad(name, "dtmf, speech or \"dtmf speech\""));
            }
        }
        if !input.dtmf && !input.speech {
            return Err(self.bad(name, "dtmf, speech or \"dtmf speech\""));
        }
        Ok(input)
    }

    /// `<Gather speechTimeout>`: `auto` or whole seconds from 1 (Twilio's "positive
    /// integer"); `None` when absent.
    fn speech_timeout(&self, name: &str) -> Result<Option<SpeechTimeout>, TwimlError> {
        if self
            .get(name)
            .is_some_and(|value| trim_xml(value).eq_ignore_ascii_case("auto"))
        {
            return Ok(Some(SpeechTimeout::Auto));
        }
        match self.opt_u32(name) {
            Ok(None) => Ok(None),
            Ok(Some(secs)) if secs > 0 => Ok(Some(SpeechTimeout::Secs(secs))),
            _ => Err(self.bad(name, "auto or a whole number of seconds from 1")),
        }
    }

    /// `<Gather hints>`: comma-separated phrases, trimmed, within Twilio's bounds;
    /// none when absent.
    fn hints(&self, name: &str) -> Result<Vec<String>, TwimlError> {
        let hints: Vec<String> = self
            .get(name)
            .unwrap_or_default()
            .split(',')
            .map(trim_xml)
            .filter(|hint| !hint.is_empty())
            .map(str::to_owned)
            .collect();
        if hints.len() > MAX_HINTS
            || hints
                .iter()
                .any(|hint| hint.chars().count() > MAX_HINT_CHARS)
        {
            return Err(self.bad(
                name,
                "at most 500 comma-separated phrases of at most 100 characters",
            ));
        }
        Ok(hints)
    }

    /// `<Gather language>`: a language tag's characters, bounded; empty counts as
    /// absent.
    fn language(&self, name: &str) -> Result<Option<String>, TwimlError> {
        let Some(tag) = self.string(name) else {
            return Ok(None);
        };
        if tag.len() <= MAX_LANGUAGE_CHARS
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            Ok(Some(tag))
        } else {
            Err(self.bad(
                name,
                "a language tag such as en-US: letters, digits and -, at most 35",
            ))
        }
    }
}

/// A telephone keypad key.
fn is_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twiml::MAX_DEPTH;

    /// Parses a document that must be valid.
    fn ok(xml: &str) -> Vec<Verb> {
        match parse(xml) {
            Ok(response) => response.verbs,
            Err(err) => panic!("{xml}: {err}"),
        }
    }

    /// Parses a document wrapped in `<Response>` that must be valid, returning its
    /// only verb.
    fn one(inner: &str) -> Verb {
        let mut verbs = ok(&format!("<Response>{inner}</Response>"));
        assert_eq!(verbs.len(), 1, "{inner}");
        verbs.remove(0)
    }

    /// Parses a document that must be refused, checks the code and that the message
    /// mentions each of `needles`.
    fn refused(xml: &str, needles: &[&str]) -> TwimlError {
        let err = match parse(xml) {
            Ok(response) => panic!("{xml} parsed as {response:?}"),
            Err(err) => err,
        };
        assert_eq!(err.code(), 12100, "{xml}");
        let message = err.to_string();
        for needle in needles {
            assert!(
                message.contains(needle),
                "{xml}: `{message}` lacks `{needle}`"
            );
        }
        err
    }

    #[test]
    fn realistic_ivr() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- main menu -->
<Response>
    <Say voice="alice" language="en-GB">Welcome to Acme.</Say>
    <Gather numDigits="4" action="/pin" timeout="10">
        <Say>Please enter your four digit PIN.</Say>
    </Gather>
    <Play>https://app.example/audio/{Digits}.mp3</Play>
    <Hangup/>
</Response>
"#;
        let expected = vec![
            Verb::Say(Say {
                text: "Welcome to Acme.".into(),
                voice: Some("alice".into()),
                language: Some("en-GB".into()),
                loop_count: 1,
            }),
            Verb::Gather(Gather {
                num_digits: Some(4),
                timeout: 10,
                action: Some("/pin".into()),
                children: vec![GatherChild::Say(Say {
                    text: "Please enter your four digit PIN.".into(),
                    ..Say::default()
                })],
                ..Gather::default()
            }),
            Verb::Play(Play {
                url: "https://app.example/audio/{Digits}.mp3".into(),
                ..Play::default()
            }),
            Verb::Hangup,
        ];
        assert_eq!(ok(doc), expected);
        let names: Vec<_> = expected.iter().map(Verb::verb_name).collect();
        assert_eq!(names, ["Say", "Gather", "Play", "Hangup"]);
    }

    #[test]
    fn empty_response_and_self_closing_response() {
        assert_eq!(ok("<Response></Response>"), vec![]);
        assert_eq!(ok("<Response/>"), vec![]);
        assert_eq!(
            ok("\u{feff}<?xml version=\"1.0\"?>\n<Response>\n</Response>\n<!-- end -->\n"),
            vec![]
        );
    }

    #[test]
    fn say_defaults_and_attributes() {
        assert_eq!(
            one("<Say>Hello</Say>"),
            Verb::Say(Say {
                text: "Hello".into(),
                ..Say::default()
            })
        );
        assert_eq!(one("<Say/>"), Verb::Say(Say::default()));
        assert_eq!(
            one(
                r#"<Say voice="Polly.Joanna" language="en-US" loop="3" bogus="x">  Hi
  there  </Say>"#
            ),
            Verb::Say(Say {
                text: "Hi\n  there".into(),
                voice: Some("Polly.Joanna".into()),
                language: Some("en-US".into()),
                loop_count: 3,
            })
        );
        assert_eq!(
            one(r#"<Say loop="0">x</Say>"#),
            Verb::Say(Say {
                text: "x".into(),
                loop_count: 0,
                ..Say::default()
            })
        );
    }

    #[test]
    fn say_keeps_the_words_of_ssml() {
        let verb = one(
            r#"<Say>Hello<break time="1s"/>world, <emphasis level="strong">this</emphasis> is <prosody rate="slow"><say-as interpret-as="digits">123</say-as></prosody>.</Say>"#,
        );
        let Verb::Say(say) = verb else {
            panic!("{verb:?}")
        };
        assert_eq!(say.text, "Hello world, this is 123.");
    }

    #[test]
    fn play_defaults_and_attributes() {
        assert_eq!(
            one("<Play>https://a/b.mp3</Play>"),
            Verb::Play(Play {
                url: "https://a/b.mp3".into(),
                ..Play::default()
            })
        );
        assert_eq!(
            one(r#"<Play loop="2" digits="ww12#">https://a/b.mp3</Play>"#),
            Verb::Play(Play {
                url: "https://a/b.mp3".into(),
                loop_count: 2,
                digits: Some("ww12#".into())
            })
        );
        assert_eq!(
            one(r#"<Play digits="1234"/>"#),
            Verb::Play(Play {
                url: String::new(),
                loop_count: 1,
                digits: Some("1234".into())
            })
        );
    }

    #[test]
    fn pause_defaults_and_attributes() {
        assert_eq!(one("<Pause/>"), Verb::Pause(Pause { length: 1 }));
        assert_eq!(
            one(r#"<Pause length="7"/>"#),
            Verb::Pause(Pause { length: 7 })
        );
        assert_eq!(
            one(r#"<Pause length=" 0 "></Pause>"#),
            Verb::Pause(Pause { length: 0 })
        );
    }

    #[test]
    fn gather_defaults_and_attributes() {
        assert_eq!(one("<Gather/>"), Verb::Gather(Gather::default()));
        let verb = one(
            r#"<Gather numDigits="1" timeout="3" finishOnKey="*" action="https://app/menu?x=1&amp;y=2"
                       method="get" input="dtmf speech" hints="ignored">
                 <Say>Press a key</Say>
                 <Pause length="2"/>
                 <Play>https://app/beep.mp3</Play>
               </Gather>"#,
        );
        assert_eq!(
            verb,
            Verb::Gather(Gather {
                num_digits: Some(1),
                timeout: 3,
                finish_on_key: Some('*'),
                action: Some("https://app/menu?x=1&y=2".into()),
                method: Method::Get,
                input: GatherInput {
                    dtmf: true,
                    speech: true
                },
                speech_timeout: None,
                hints: vec!["ignored".into()],
                language: None,
                children: vec![
                    GatherChild::Say(Say {
                        text: "Press a key".into(),
                        ..Say::default()
                    }),
                    GatherChild::Pause(Pause { length: 2 }),
                    GatherChild::Play(Play {
                        url: "https://app/beep.mp3".into(),
                        ..Play::default()
                    }),
                ],
            })
        );
        let Verb::Gather(none) = one(r#"<Gather finishOnKey=""/>"#) else {
            panic!()
        };
        assert_eq!(none.finish_on_key, None);
        let Verb::Gather(speech) = one(r#"<Gather input="Speech"/>"#) else {
            panic!()
        };
        assert_eq!(
            speech.input,
            GatherInput {
                dtmf: false,
                speech: true
            }
        );
    }

    #[test]
    fn gather_speech_attributes() {
        let Verb::Gather(gather) = one(
            r#"<Gather input="speech dtmf" speechTimeout=" Auto " language="en-GB"
                       hints=" billing, technical support ,, $OPERAND_AMOUNT,"/>"#,
        ) else {
            panic!()
        };
        assert_eq!(gather.speech_timeout, Some(SpeechTimeout::Auto));
        assert_eq!(gather.language.as_deref(), Some("en-GB"));
        assert_eq!(
            gather.hints,
            ["billing", "technical support", "$OPERAND_AMOUNT"]
        );
        let Verb::Gather(gather) = one(r#"<Gather input="speech" speechTimeout="3" hints=""/>"#)
        else {
            panic!()
        };
        assert_eq!(gather.speech_timeout, Some(SpeechTimeout::Secs(3)));
        assert!(gather.hints.is_empty());
        // Twilio's bounds are inclusive.
        let hints = vec!["h".repeat(MAX_HINT_CHARS); MAX_HINTS].join(",");
        let Verb::Gather(gather) = one(&format!(
            r#"<Gather hints="{hints}" language="{}"/>"#,
            "a".repeat(MAX_LANGUAGE_CHARS)
        )) else {
            panic!()
        };
        assert_eq!(gather.hints.len(), MAX_HINTS);
    }

    #[test]
    fn record_defaults_and_attributes() {
        assert_eq!(one("<Record/>"), Verb::Record(Record::default()));
        assert_eq!(
            one(
                r##"<Record maxLength="20" timeout="2" finishOnKey="#" action="/done" method="GET" playBeep="FALSE" trim="trim-silence"/>"##
            ),
            Verb::Record(Record {
                max_length: 20,
                timeout: 2,
                finish_on_key: "#".into(),
                action: Some("/done".into()),
                method: Method::Get,
                play_beep: false,
            })
        );
        let Verb::Record(none) = one(r#"<Record finishOnKey=""/>"#) else {
            panic!()
        };
        assert_eq!(none.finish_on_key, "");
    }

    #[test]
    fn dial_plain_number_with_every_attribute() {
        assert_eq!(
            one("<Dial>+15551234567</Dial>"),
            Verb::Dial(Dial {
                targets: vec![DialTarget::Number("+15551234567".into())],
                ..Dial::default()
            })
        );
        assert_eq!(
            one(
                r#"<Dial action="/after" method="GET" timeout="12" callerId="+15550000000" record="record-from-answer" timeLimit="600">
                     +15551234567
                   </Dial>"#
            ),
            Verb::Dial(Dial {
                targets: vec![DialTarget::Number("+15551234567".into())],
                action: Some("/after".into()),
                method: Method::Get,
                timeout: 12,
                caller_id: Some("+15550000000".into()),
                time_limit: 600,
                record: true,
            })
        );
    }

    #[test]
    fn dial_record_and_time_limit() {
        let dial = |attrs: &str| {
            let Verb::Dial(dial) = one(&format!("<Dial {attrs}>+1</Dial>")) else {
                panic!("{attrs}")
            };
            dial
        };
        let plain = dial("");
        assert_eq!((plain.time_limit, plain.record), (14400, false));
        for (value, record) in [
            ("do-not-record", false),
            ("false", false),
            ("Do-Not-Record", false),
            ("record-from-answer", true),
            ("record-from-ringing", true),
            ("record-from-answer-dual", true),
            ("record-from-ringing-dual", true),
            (" record-from-ringing-dual ", true),
            ("TRUE", true),
        ] {
            assert_eq!(
                dial(&format!(r#"record="{value}""#)).record,
                record,
                "{value}"
            );
        }
        assert_eq!(dial(r#"timeLimit="0""#).time_limit, 0);
        assert_eq!(dial(r#"timeLimit=" 86400 ""#).time_limit, 86400);
    }

    #[test]
    fn dial_nouns() {
        let verb = one(r#"<Dial>
                 <Number sendDigits="1">+15550000001</Number>
                 <Number>+15550000002</Number>
                 <Client>alice</Client>
                 <Client><Identity>bob</Identity><Parameter name="k" value="v"/></Client>
               </Dial>"#);
        assert_eq!(
            verb,
            Verb::Dial(Dial {
                targets: vec![
                    DialTarget::Number("+15550000001".into()),
                    DialTarget::Number("+15550000002".into()),
                    DialTarget::Client("alice".into()),
                    DialTarget::Client("bob".into()),
                ],
                ..Dial::default()
            })
        );
    }

    #[test]
    fn dial_conference_defaults_and_attributes() {
        assert_eq!(
            one("<Dial><Conference>room-1</Conference></Dial>"),
            Verb::Dial(Dial {
                targets: vec![DialTarget::Conference(Conference {
                    name: "room-1".into(),
                    ..Conference::default()
                })],
                ..Dial::default()
            })
        );
        let verb = one(
            r#"<Dial timeout="5"><Conference muted="true" startConferenceOnEnter="False" endConferenceOnExit="TRUE"
                 beep="onEnter" waitUrl="https://app/hold.xml" waitMethod="get">Team &amp; Co</Conference></Dial>"#,
        );
        assert_eq!(
            verb,
            Verb::Dial(Dial {
                targets: vec![DialTarget::Conference(Conference {
                    name: "Team & Co".into(),
                    muted: true,
                    start_conference_on_enter: false,
                    end_conference_on_exit: true,
                    beep: Some("onEnter".into()),
                    wait_url: Some("https://app/hold.xml".into()),
                    wait_method: Method::Get,
                })],
                timeout: 5,
                ..Dial::default()
            })
        );
    }

    #[test]
    fn dial_queue_defaults_and_attributes() {
        assert_eq!(
            one("<Dial><Queue> support </Queue></Dial>"),
            Verb::Dial(Dial {
                targets: vec![DialTarget::Queue(QueueNoun {
                    name: "support".into(),
                    ..QueueNoun::default()
                })],
                ..Dial::default()
            })
        );
        assert_eq!(
            one(
                r#"<Dial record="record-from-answer" timeLimit="60"><Queue url="/whisper?a=1&amp;b=2" method="get" reservationSid="WR1">Sales &amp; Co</Queue></Dial>"#
            ),
            Verb::Dial(Dial {
                targets: vec![DialTarget::Queue(QueueNoun {
                    name: "Sales & Co".into(),
                    url: Some("/whisper?a=1&b=2".into()),
                    method: Method::Get,
                })],
                time_limit: 60,
                record: true,
                ..Dial::default()
            })
        );
    }

    #[test]
    fn dial_noun_rules() {
        // A room or a queue stands alone.
        for inner in [
            "<Conference>r</Conference><Number>+1</Number>",
            "<Number>+1</Number><Conference>r</Conference>",
            "<Conference>r</Conference><Conference>s</Conference>",
            "<Queue>q</Queue><Client>alice</Client>",
            "<Client>alice</Client><Queue>q</Queue>",
            "<Queue>q</Queue><Queue>r</Queue>",
            "<Queue>q</Queue><Conference>r</Conference>",
        ] {
            let doc = format!("<Response><Dial>{inner}</Dial></Response>");
            check_bad_content(&doc, "Dial", "Conference or Queue noun on its own");
        }
        // Text beside a queue is mixed content, as beside any noun.
        refused(
            "<Response><Dial>+1<Queue>q</Queue></Dial></Response>",
            &["<Dial>", "mixes"],
        );
        // Up to MAX_DIAL_NOUNS numbers and clients ring at once; one more is refused.
        let nouns = |count: usize| {
            (0..count)
                .map(|i| match i % 2 {
                    0 => format!("<Number>+1555000{i:04}</Number>"),
                    _ => format!("<Client>agent{i}</Client>"),
                })
                .collect::<String>()
        };
        let Verb::Dial(dial) = one(&format!("<Dial>{}</Dial>", nouns(MAX_DIAL_NOUNS))) else {
            panic!()
        };
        assert_eq!(dial.targets.len(), MAX_DIAL_NOUNS);
        let doc = format!(
            "<Response><Dial>{}</Dial></Response>",
            nouns(MAX_DIAL_NOUNS + 1)
        );
        check_bad_content(
            &doc,
            "Dial",
            &format!("at most {MAX_DIAL_NOUNS} Number and Client nouns"),
        );
    }

    #[test]
    fn enqueue_defaults_and_attributes() {
        let verb = one("<Enqueue>support</Enqueue>");
        assert_eq!(
            verb,
            Verb::Enqueue(Enqueue {
                name: "support".into(),
                ..Enqueue::default()
            })
        );
        assert_eq!(verb.verb_name(), "Enqueue");
        assert_eq!(
            one(
                r#"<Enqueue action="/left?x=1&amp;y=2" method="GET" waitUrl="https://app/hold.xml" waitUrlMethod="get" workflowSid="WW1" bogus="x">
                     Tier 1 &amp; 2
                   </Enqueue>"#
            ),
            Verb::Enqueue(Enqueue {
                name: "Tier 1 & 2".into(),
                action: Some("/left?x=1&y=2".into()),
                method: Method::Get,
                wait_url: Some("https://app/hold.xml".into()),
                wait_url_method: Method::Get,
            })
        );
        // An empty attribute counts as absent, as everywhere.
        let Verb::Enqueue(enqueue) = one(r#"<Enqueue waitUrl="" action=" ">q</Enqueue>"#) else {
            panic!()
        };
        assert_eq!((enqueue.wait_url, enqueue.action), (None, None));
    }

    #[test]
    fn queue_names_are_bounded_in_characters() {
        // Twilio's bound is inclusive and counts characters, not bytes.
        let longest = "é".repeat(MAX_QUEUE_NAME_CHARS);
        let Verb::Enqueue(enqueue) = one(&format!("<Enqueue>{longest}</Enqueue>")) else {
            panic!()
        };
        assert_eq!(enqueue.name, longest);
        let Verb::Dial(dial) = one(&format!("<Dial><Queue>{longest}</Queue></Dial>")) else {
            panic!()
        };
        assert_eq!(
            dial.targets,
            [DialTarget::Queue(QueueNoun {
                name: longest,
                ..QueueNoun::default()
            })]
        );
        let too_long = "q".repeat(MAX_QUEUE_NAME_CHARS + 1);
        let expected = format!("a queue name of at most {MAX_QUEUE_NAME_CHARS} characters");
        for (doc, element) in [
            (
                format!("<Response><Enqueue>{too_long}</Enqueue></Response>"),
                "Enqueue",
            ),
            (
                format!("<Response><Dial><Queue>{too_long}</Queue></Dial></Response>"),
                "Queue",
            ),
        ] {
            let err = check_bad_content(&doc, element, &expected);
            assert!(!err.to_string().contains(&too_long), "{err}");
        }
    }

    #[test]
    fn leave() {
        assert_eq!(one("<Leave/>"), Verb::Leave);
        assert_eq!(one("<Leave>  </Leave>"), Verb::Leave);
        assert_eq!(Verb::Leave.verb_name(), "Leave");
        assert_eq!(
            ok("<Response><Say>bye</Say><Leave/><Hangup/></Response>")[1],
            Verb::Leave
        );
    }

    /// `doc` is refused because `element`'s content breaks one of its rules, and the
    /// message says which element and what was expected.
    fn check_bad_content(doc: &str, element: &str, expected: &str) -> TwimlError {
        let err = refused(doc, &[&format!("<{element}> at byte"), expected]);
        assert!(
            matches!(&err, TwimlError::BadContent { element: e, position, .. }
                if e == element && *position > 0),
            "{doc}: {err:?}"
        );
        err
    }

    #[test]
    fn message_and_sms() {
        assert_eq!(
            one(
                r#"<Message to="+15550000001" from="+15550000002" action="/status" method="get">Your code is 42</Message>"#
            ),
            Verb::Message(Message {
                kind: MessageKind::Message,
                body: "Your code is 42".into(),
                media: vec![],
                to: Some("+15550000001".into()),
                from: Some("+15550000002".into()),
                action: Some("/status".into()),
                method: Method::Get,
            })
        );
        let sms = one("<Sms>Hi</Sms>");
        assert_eq!(
            sms,
            Verb::Message(Message {
                kind: MessageKind::Sms,
                body: "Hi".into(),
                ..Message::default()
            })
        );
        assert_eq!(sms.verb_name(), "Sms");
        assert_eq!(
            one("<Message><Body>See this</Body><Media>https://app/cat.jpg</Media></Message>"),
            Verb::Message(Message {
                body: "See this".into(),
                media: vec!["https://app/cat.jpg".into()],
                ..Message::default()
            })
        );
        assert_eq!(one("<Message/>"), Verb::Message(Message::default()));
    }

    #[test]
    fn redirect_hangup_reject() {
        assert_eq!(
            one("<Redirect>https://app/next</Redirect>"),
            Verb::Redirect(Redirect {
                url: "https://app/next".into(),
                method: Method::Post
            })
        );
        assert_eq!(
            one(r#"<Redirect method="GET">/next?a=1&amp;b=2</Redirect>"#),
            Verb::Redirect(Redirect {
                url: "/next?a=1&b=2".into(),
                method: Method::Get
            })
        );
        assert_eq!(one("<Hangup></Hangup>"), Verb::Hangup);
        assert_eq!(
            one("<Reject/>"),
            Verb::Reject(Reject {
                reason: RejectReason::Rejected
            })
        );
        assert_eq!(
            one(r#"<Reject reason="busy"/>"#),
            Verb::Reject(Reject {
                reason: RejectReason::Busy
            })
        );
        assert_eq!(
            one(r#"<Reject reason="Rejected"/>"#),
            Verb::Reject(Reject {
                reason: RejectReason::Rejected
            })
        );
    }

    #[test]
    fn unknown_verbs_keep_their_neighbours() {
        let verbs = ok(
            r#"<Response><Say>a</Say><Foo bar="1"><Anything><Dial/></Anything>text</Foo><say>b</say><Hangup/></Response>"#,
        );
        assert_eq!(
            verbs,
            vec![
                Verb::Say(Say {
                    text: "a".into(),
                    ..Say::default()
                }),
                Verb::Unknown { name: "Foo".into() },
                Verb::Unknown { name: "say".into() },
                Verb::Hangup,
            ]
        );
        assert_eq!(verbs[1].verb_name(), "Foo");
    }

    #[test]
    fn entities_in_text_and_urls() {
        assert_eq!(
            one("<Say>Tom &amp; Jerry &lt;3 &quot;hi&quot; &apos;x&apos; &#233;&#x263A;</Say>"),
            Verb::Say(Say {
                text: "Tom & Jerry <3 \"hi\" 'x' é☺".into(),
                ..Say::default()
            })
        );
        assert_eq!(
            one("<Play>https://app/a.mp3?x=1&amp;y=2</Play>"),
            Verb::Play(Play {
                url: "https://app/a.mp3?x=1&y=2".into(),
                ..Play::default()
            })
        );
        assert_eq!(
            one("<Say><![CDATA[a & b < c]]></Say>"),
            Verb::Say(Say {
                text: "a & b < c".into(),
                ..Say::default()
            })
        );
        refused("<Response><Say>&nbsp;</Say></Response>", &["nbsp"]);
        refused(r#"<Response><Play digits="&foo;"/></Response>"#, &["foo"]);
        refused(
            "<Response><Say>a & b</Say></Response>",
            &["not well-formed"],
        );
    }

    #[test]
    fn attribute_values_are_case_insensitive_names_are_not() {
        let Verb::Record(record) = one(r#"<Record playBeep="True" method="pOsT"/>"#) else {
            panic!()
        };
        assert!(record.play_beep);
        assert_eq!(record.method, Method::Post);
        // `numdigits` is not `numDigits`: ignored like any unknown attribute.
        let Verb::Gather(gather) = one(r#"<Gather numdigits="abc"/>"#) else {
            panic!()
        };
        assert_eq!(gather.num_digits, None);
    }

    #[test]
    fn nesting_up_to_the_limit_is_fine() {
        let depth_below_response = MAX_DEPTH - 1;
        let doc = format!(
            "<Response>{}{}</Response>",
            "<Foo>".repeat(depth_below_response),
            "</Foo>".repeat(depth_below_response)
        );
        assert_eq!(ok(&doc), vec![Verb::Unknown { name: "Foo".into() }]);
        let doc = format!(
            "<Response>{}{}</Response>",
            "<Foo>".repeat(depth_below_response + 1),
            "</Foo>".repeat(depth_below_response + 1)
        );
        let err = refused(&doc, &["<Foo>", "16 levels"]);
        assert!(
            matches!(err, TwimlError::TooDeep { max: 16, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn document_level_errors() {
        refused("", &["no root"]);
        refused("  <!-- nothing -->  ", &["no root"]);
        refused("hello", &["hello"]);
        refused("{\"verbs\": []}", &["document"]);
        refused("<Response>", &["<Response>", "never closed"]);
        refused("<Response><Say>hi</Response>", &["not well-formed"]);
        refused("<Response></Say>", &["not well-formed"]);
        refused("<Response a=1/>", &["not well-formed"]);
        refused(
            r#"<Response><Say voice="a" voice="b">x</Say></Response>"#,
            &["not well-formed", "Say"],
        );
        let err = refused("<response/>", &["<response>", "<Response>"]);
        assert_eq!(
            err,
            TwimlError::WrongRoot {
                found: "response".into()
            }
        );
        refused("<Say>hi</Say>", &["<Say>"]);
        refused("<Response/><Response/>", &["after </Response>", "byte 11"]);
        refused("<Response/>trailing", &["after </Response>"]);
        refused("<Response/>&amp;", &["after </Response>"]);
        refused("<Response/><?xml version=\"1.0\"?>", &["declaration"]);
        refused(
            "<Response>Hello <Say>x</Say></Response>",
            &["Hello", "<Response>"],
        );
        refused(
            "<Response><Say>x</Say>oops</Response>",
            &["oops", "<Response>"],
        );
    }

    #[test]
    fn bad_attribute_values() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"<Gather numDigits="abc"/>"#, "Gather", "numDigits"),
            (r#"<Gather numDigits="0"/>"#, "Gather", "numDigits"),
            (r#"<Gather numDigits="1.5"/>"#, "Gather", "numDigits"),
            (r#"<Gather numDigits=""/>"#, "Gather", "numDigits"),
            (r#"<Gather timeout="-1"/>"#, "Gather", "timeout"),
            (r#"<Gather timeout="+1"/>"#, "Gather", "timeout"),
            (r#"<Gather timeout="99999999999"/>"#, "Gather", "timeout"),
            (r#"<Gather method="PUT"/>"#, "Gather", "method"),
            (r#"<Gather finishOnKey="12"/>"#, "Gather", "finishOnKey"),
            (r#"<Gather finishOnKey="a"/>"#, "Gather", "finishOnKey"),
            (r#"<Gather input="voice"/>"#, "Gather", "input"),
            (r#"<Gather input=" "/>"#, "Gather", "input"),
            (r#"<Gather speechTimeout="0"/>"#, "Gather", "speechTimeout"),
            (
                r#"<Gather speechTimeout="soon"/>"#,
                "Gather",
                "speechTimeout",
            ),
            (r#"<Gather speechTimeout=""/>"#, "Gather", "speechTimeout"),
            (
                r#"<Gather speechTimeout="2.5"/>"#,
                "Gather",
                "speechTimeout",
            ),
            (r#"<Gather language="en_US"/>"#, "Gather", "language"),
            (r#"<Gather language="en US"/>"#, "Gather", "language"),
            (r#"<Say loop="x">a</Say>"#, "Say", "loop"),
            (r#"<Play loop="-2">u</Play>"#, "Play", "loop"),
            (r#"<Play digits="12a">u</Play>"#, "Play", "digits"),
            (r#"<Pause length="1s"/>"#, "Pause", "length"),
            (r#"<Record maxLength="ten"/>"#, "Record", "maxLength"),
            (r#"<Record playBeep="yes"/>"#, "Record", "playBeep"),
            (r#"<Record finishOnKey="1x"/>"#, "Record", "finishOnKey"),
            (r#"<Record method="DELETE"/>"#, "Record", "method"),
            (r#"<Dial timeout="soon">+1</Dial>"#, "Dial", "timeout"),
            (r#"<Dial method="put">+1</Dial>"#, "Dial", "method"),
            (
                r#"<Dial><Conference muted="1">r</Conference></Dial>"#,
                "Conference",
                "muted",
            ),
            (
                r#"<Dial><Conference startConferenceOnEnter="no">r</Conference></Dial>"#,
                "Conference",
                "startConferenceOnEnter",
            ),
            (
                r#"<Message method="PATCH">x</Message>"#,
                "Message",
                "method",
            ),
            (
                r#"<Redirect method="HEAD">/x</Redirect>"#,
                "Redirect",
                "method",
            ),
            (r#"<Reject reason="nope"/>"#, "Reject", "reason"),
            (r#"<Dial record="yes">+1</Dial>"#, "Dial", "record"),
            (r#"<Dial record="">+1</Dial>"#, "Dial", "record"),
            (
                r#"<Dial record="record-from-hangup">+1</Dial>"#,
                "Dial",
                "record",
            ),
            (r#"<Dial timeLimit="4h">+1</Dial>"#, "Dial", "timeLimit"),
            (r#"<Dial timeLimit="-1">+1</Dial>"#, "Dial", "timeLimit"),
            (
                r#"<Dial><Queue method="PUT">q</Queue></Dial>"#,
                "Queue",
                "method",
            ),
            (r#"<Enqueue method="PUT">q</Enqueue>"#, "Enqueue", "method"),
            (
                r#"<Enqueue waitUrlMethod="HEAD">q</Enqueue>"#,
                "Enqueue",
                "waitUrlMethod",
            ),
            (
                r#"<Gather><Say loop="many">x</Say></Gather>"#,
                "Say",
                "loop",
            ),
        ];
        for (inner, element, attribute) in cases {
            let doc = format!("<Response>{inner}</Response>");
            check_bad_attribute(&doc, element, attribute);
        }
        for (attribute, value) in [
            ("hints", format!("a, {}", "h".repeat(MAX_HINT_CHARS + 1))),
            ("hints", vec!["h"; MAX_HINTS + 1].join(",")),
            ("language", "a".repeat(MAX_LANGUAGE_CHARS + 1)),
        ] {
            let doc = format!(r#"<Response><Gather {attribute}="{value}"/></Response>"#);
            check_bad_attribute(&doc, "Gather", attribute);
        }
    }

    /// `doc` is refused for `element`'s `attribute`, and the message says which.
    fn check_bad_attribute(doc: &str, element: &str, attribute: &str) {
        let err = refused(doc, &[&format!("<{element} {attribute}=")]);
        assert!(
            matches!(&err, TwimlError::BadAttribute { element: e, attribute: a, position, .. }
                if e == element && a == attribute && *position > 0),
            "{doc}: {err:?}"
        );
    }

    #[test]
    fn disallowed_children() {
        let cases: &[(&str, &str, &str)] = &[
            ("<Gather><Dial>+1</Dial></Gather>", "Gather", "Dial"),
            ("<Gather><Gather/></Gather>", "Gather", "Gather"),
            ("<Gather><Foo/></Gather>", "Gather", "Foo"),
            ("<Gather><Hangup/></Gather>", "Gather", "Hangup"),
            ("<Dial><Sip>sip:a@b</Sip></Dial>", "Dial", "Sip"),
            ("<Dial><Say>x</Say></Dial>", "Dial", "Say"),
            ("<Say><Play>u</Play></Say>", "Say", "Play"),
            ("<Play><b/>u</Play>", "Play", "b"),
            ("<Pause><Say>x</Say></Pause>", "Pause", "Say"),
            ("<Hangup><Say>x</Say></Hangup>", "Hangup", "Say"),
            ("<Redirect><Url>x</Url></Redirect>", "Redirect", "Url"),
            ("<Message><Foo/></Message>", "Message", "Foo"),
            ("<Dial><Number><x/>1</Number></Dial>", "Number", "x"),
            ("<Dial><Client><Foo/></Client></Dial>", "Client", "Foo"),
            ("<Dial><Enqueue>q</Enqueue></Dial>", "Dial", "Enqueue"),
            ("<Dial><Leave/></Dial>", "Dial", "Leave"),
            ("<Enqueue><Task>{}</Task></Enqueue>", "Enqueue", "Task"),
            ("<Enqueue>q<Play>u</Play></Enqueue>", "Enqueue", "Play"),
            ("<Dial><Queue><b/>q</Queue></Dial>", "Queue", "b"),
            ("<Leave><Say>x</Say></Leave>", "Leave", "Say"),
            ("<Gather><Leave/></Gather>", "Gather", "Leave"),
        ];
        for (inner, parent, child) in cases {
            let doc = format!("<Response>{inner}</Response>");
            let err = refused(
                &doc,
                &[&format!("<{child}>"), &format!("inside <{parent}>")],
            );
            assert!(
                matches!(err, TwimlError::DisallowedChild { .. }),
                "{doc}: {err:?}"
            );
        }
    }

    #[test]
    fn missing_and_misplaced_content() {
        refused("<Response><Dial/></Response>", &["<Dial>", "number"]);
        refused(
            "<Response><Dial>  </Dial></Response>",
            &["<Dial>", "number"],
        );
        refused("<Response><Play/></Response>", &["<Play>", "URL"]);
        refused("<Response><Play>   </Play></Response>", &["<Play>", "URL"]);
        refused("<Response><Redirect/></Response>", &["<Redirect>", "URL"]);
        refused(
            "<Response><Dial><Number/></Dial></Response>",
            &["<Number>", "phone number"],
        );
        refused(
            "<Response><Dial><Client/></Dial></Response>",
            &["<Client>", "client name"],
        );
        refused(
            "<Response><Dial><Conference/></Dial></Response>",
            &["<Conference>", "room name"],
        );
        refused(
            "<Response><Enqueue/></Response>",
            &["<Enqueue>", "queue name"],
        );
        refused(
            "<Response><Enqueue waitUrl=\"/hold\">  </Enqueue></Response>",
            &["<Enqueue>", "queue name"],
        );
        refused(
            "<Response><Dial><Queue url=\"/w\"/></Dial></Response>",
            &["<Queue>", "queue name"],
        );
        refused(
            "<Response><Message><Media/></Message></Response>",
            &["<Media>", "URL"],
        );
        refused(
            "<Response><Dial>+1<Number>+2</Number></Dial></Response>",
            &["<Dial>", "mixes"],
        );
        refused(
            "<Response><Dial><Client>a<Identity>b</Identity></Client></Dial></Response>",
            &["<Client>", "mixes"],
        );
        refused(
            "<Response><Message>a<Body>b</Body></Message></Response>",
            &["<Message>", "mixes"],
        );
        refused(
            "<Response><Gather>press 1</Gather></Response>",
            &["press 1", "<Gather>"],
        );
        refused("<Response><Pause>5</Pause></Response>", &["`5`", "<Pause>"]);
        refused("<Response><Hangup>now</Hangup></Response>", &["<Hangup>"]);
        refused(
            "<Response><Leave>now</Leave></Response>",
            &["`now`", "<Leave>"],
        );
        refused("<Response><Reject>busy</Reject></Response>", &["<Reject>"]);
        refused("<Response><Record>x</Record></Response>", &["<Record>"]);
    }

    #[test]
    fn long_input_is_quoted_short() {
        let long = "x".repeat(10_000);
        let err = refused(&format!("<Response>{long}</Response>"), &["<Response>"]);
        assert!(err.to_string().len() < 300, "{err}");
        let err = refused(
            &format!(r#"<Response><Gather timeout="{long}"/></Response>"#),
            &["timeout"],
        );
        assert!(err.to_string().len() < 300, "{err}");
    }

    /// A valid document touching most of the grammar, for mutation.
    const SEED: &str = r##"<?xml version="1.0"?><Response><Say voice="alice" loop="2">Hi &amp; bye</Say><Gather numDigits="4" finishOnKey="#" action="/a?x=1&amp;y=2" input="dtmf speech" speechTimeout="auto" hints="pin, help" language="en-US"><Say>PIN</Say><Play>https://a/{Digits}.mp3</Play><Pause length="2"/></Gather><Record maxLength="30" playBeep="false"/><Dial timeout="10" timeLimit="600" record="record-from-answer"><Number>+15550001</Number><Client>bob</Client></Dial><Dial><Conference muted="true">room</Conference></Dial><Dial><Queue url="/whisper" method="GET">support</Queue></Dial><Enqueue action="/left" waitUrl="/hold" waitUrlMethod="GET">support</Enqueue><Leave/><Message to="+1">x</Message><Redirect method="GET">/next</Redirect><Reject reason="busy"/><Hangup/></Response>"##;

    #[derive(Debug, Clone)]
    enum Mutation {
        Insert(usize, u8),
        Delete(usize),
        Replace(usize, u8),
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        // Bytes that matter to XML are over-represented; any byte is possible.
        let byte = prop_oneof![
            proptest::sample::select(b"<>/&;\"'=!?[]-# \n{}".to_vec()),
            any::<u8>(),
        ];
        prop_oneof![
            (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
        ]
    }

    #[test]
    fn seed_is_valid() {
        assert_eq!(ok(SEED).len(), 12);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(input in "\\PC*") {
            if let Err(err) = parse(&input) {
                proptest::prop_assert_eq!(err.code(), 12100);
            }
        }

        #[test]
        fn never_panics_on_xmlish_strings(input in "[<>/&;=\"' a-zA-Z#{}\\[\\]!?-]{0,200}") {
            let _ = parse(&input);
            let _ = parse(&format!("<Response>{input}</Response>"));
        }

        #[test]
        fn never_panics_on_mutated_documents(mutations in proptest::collection::vec(mutation(), 1..8)) {
            let mut bytes = SEED.as_bytes().to_vec();
            for mutation in mutations {
                match mutation {
                    Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
                    Mutation::Delete(i) if !bytes.is_empty() => {
                        let at = i % bytes.len();
                        bytes.remove(at);
                    }
                    Mutation::Replace(i, b) if !bytes.is_empty() => {
                        let at = i % bytes.len();
                        bytes[at] = b;
                    }
                    _ => {}
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Err(err) = parse(&text) {
                proptest::prop_assert_eq!(err.code(), 12100);
                proptest::prop_assert!(!err.to_string().is_empty());
            }
        }
    }
}
