//! TwiML rules: from the element tree of [`super::xml`] to the verb model.
//!
//! One function per verb reads its attributes through [`Attrs`] (Twilio's names,
//! Twilio's defaults, unknown attributes ignored as Twilio ignores them) and checks
//! what may be inside it. Names are case-sensitive, as in Twilio: `<say>` is an
//! unknown verb and `numdigits` an unknown (ignored) attribute.

use super::error::{quote, TwimlError};
use super::model::{
    Conference, Dial, DialTarget, Gather, GatherChild, GatherInput, Message, MessageKind, Method,
    Pause, Play, Record, Redirect, Reject, RejectReason, Response, Say, Verb,
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
        method: attrs.method()?,
        input: attrs.input("input")?,
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
        method: attrs.method()?,
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
                "number to call (text, or Number, Client or Conference nouns)",
            ))
        }
        (true, false) => {}
    }
    Ok(Dial {
        targets,
        action: attrs.string("action"),
        method: attrs.method()?,
        timeout: attrs.u32_or("timeout", 30)?,
        caller_id: attrs.string("callerId"),
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
    })
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
                "Body" => body.get_or_insert_with(String::new).push_str(&plain_text(child)?),
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
        method: attrs.method()?,
    })
}

fn redirect(element: &Element) -> Result<Redirect, TwimlError> {
    Ok(Redirect {
        url: required_text(element, "URL")?,
        method: Attrs(element).method()?,
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
/// (`a<break/>b` is `a b`) without doubling spaces already there.
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
            && run.chars().next().is_some_and(|c| !is_space(c))
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

    /// `method`, POST when absent.
    fn method(&self) -> Result<Method, TwimlError> {
        match self.get("method").map(trim_xml) {
            None => Ok(Method::Post),
            Some(value) if value.eq_ignore_ascii_case("POST") => Ok(Method::Post),
            Some(value) if value.eq_ignore_ascii_case("GET") => Ok(Method::Get),
            Some(_) => Err(self.bad("method", "GET or POST")),
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
}

/// A telephone keypad key.
fn is_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

#[cfg(test)]
mod tests;
