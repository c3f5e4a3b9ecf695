//! The verb model: what a parsed TwiML document tells the call actor to do.
//!
//! Plain data with typed fields and Twilio's defaults already applied, so the
//! executor never looks at an attribute string again. Each struct's [`Default`] is
//! the verb as Twilio runs it with no attributes at all, which keeps tests and the
//! executor's own constructions short (`Gather { num_digits: Some(4),
//! ..Gather::default() }`).
//!
//! URLs (`action`, `Play`, `Redirect`, `waitUrl`, `<Queue url>`) are kept as
//! written: they may be relative to the document's URL, which only the executor
//! knows, and `Play`'s may be a URI template for [`fill_template`](super::fill_template).

/// A whole TwiML document: the children of `<Response>`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The verbs, executed one after the other.
    pub verbs: Vec<Verb>,
}

/// One child of `<Response>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Say>`: speak text.
    Say(Say),
    /// `<Play>`: play an audio file or DTMF tones.
    Play(Play),
    /// `<Pause>`: wait silently.
    Pause(Pause),
    /// `<Gather>`: collect digits or speech while prompting.
    Gather(Gather),
    /// `<Record>`: record the caller.
    Record(Record),
    /// `<Dial>`: connect to another party.
    Dial(Dial),
    /// `<Message>` or the legacy `<Sms>` (see [`Message::kind`]).
    Message(Message),
    /// `<Redirect>`: fetch another document and run it instead of the rest of this one.
    Redirect(Redirect),
    /// `<Hangup>`: end the call.
    Hangup,
    /// `<Reject>`: refuse an incoming call without answering it.
    Reject(Reject),
    /// `<Enqueue>`: wait in a named queue until an agent's `<Dial><Queue>` takes the
    /// call or it leaves.
    Enqueue(Enqueue),
    /// `<Leave>`: leave the queue the call waits in and go on after its `<Enqueue>`.
    ///
    /// Meaningful only in an [`Enqueue::wait_url`] document, the one place a call is
    /// in a queue; the parser cannot know where a document runs, so what it does
    /// elsewhere is the executor's decision.
    Leave,
    /// An element this router does not implement (or misspelt, e.g. `<say>`).
    ///
    /// Not an error: the executor emits `call.warning` with 12200
    /// ([`SCHEMA_VALIDATION_WARNING`](super::SCHEMA_VALIDATION_WARNING)) and goes on,
    /// as Twilio does. Its attributes and content are not looked at.
    Unknown {
        /// The element's name as written.
        name: String,
    },
}

impl Verb {
    /// The element name as Twilio spells it, for events' `data.verb`.
    ///
    /// `Sms` stays `Sms` (not `Message`), and an unknown verb gives its own name, so
    /// the event says what the document said.
    pub fn verb_name(&self) -> &str {
        match self {
            Verb::Say(_) => "Say",
            Verb::Play(_) => "Play",
            Verb::Pause(_) => "Pause",
            Verb::Gather(_) => "Gather",
            Verb::Record(_) => "Record",
            Verb::Dial(_) => "Dial",
            Verb::Message(message) => message.kind.verb_name(),
            Verb::Redirect(_) => "Redirect",
            Verb::Hangup => "Hangup",
            Verb::Reject(_) => "Reject",
            Verb::Enqueue(_) => "Enqueue",
            Verb::Leave => "Leave",
            Verb::Unknown { name } => name,
        }
    }
}

/// The HTTP method for a verb's callback (`action`, `Redirect`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: parameters go in the query string.
    Get,
    /// `POST`: parameters go in a form body. Twilio's default everywhere.
    #[default]
    Post,
}

impl Method {
    /// `"GET"` or `"POST"`, for building the request and for events.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// `<Say>`: speak text to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    /// What to say: the element's text, entities expanded, trimmed. SSML tags inside
    /// (`<break/>`, `<emphasis>`, …) are dropped and their text kept, since the
    /// simulated network only needs the words (it times `Say` per word).
    pub text: String,
    /// `voice`, as written (e.g. `alice`, `Polly.Joanna`); `None` = Twilio's default.
    pub voice: Option<String>,
    /// `language`, as written (e.g. `en-US`); `None` = Twilio's default.
    pub language: Option<String>,
    /// `loop`: how many times to say it. Default 1; Twilio reads 0 as "repeat until
    /// the call moves on" (it caps at 1000), which the executor decides how to bound.
    pub loop_count: u32,
}

impl Default for Say {
    fn default() -> Self {
        Say {
            text: String::new(),
            voice: None,
            language: None,
            loop_count: 1,
        }
    }
}

/// `<Play>`: play an audio URL, or DTMF tones with `digits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    /// The audio URL (the element's text, trimmed), possibly a URI template such as
    /// `https://app/audio/{Digits}.mp3` to fill with
    /// [`fill_template`](super::fill_template). Empty only when `digits` is set:
    /// a `<Play>` with neither is refused by the parser.
    pub url: String,
    /// `loop`: how many times to play. Default 1; 0 means "repeat" as for
    /// [`Say::loop_count`].
    pub loop_count: u32,
    /// `digits`: DTMF tones to play (`0-9`, `*`, `#`, `w` = half-second wait).
    pub digits: Option<String>,
}

impl Default for Play {
    fn default() -> Self {
        Play {
            url: String::new(),
            loop_count: 1,
            digits: None,
        }
    }
}

/// `<Pause>`: silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// `length` in seconds. Default 1.
    pub length: u32,
}

impl Default for Pause {
    fn default() -> Self {
        Pause { length: 1 }
    }
}

/// Which kinds of input a `<Gather>` listens for (`input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatherInput {
    /// Keypad digits. Default on.
    pub dtmf: bool,
    /// Speech recognition. Off unless `input` names `speech`; the simulated caller's
    /// words arrive already transcribed.
    pub speech: bool,
}

impl Default for GatherInput {
    fn default() -> Self {
        GatherInput {
            dtmf: true,
            speech: false,
        }
    }
}

/// A verb nested inside `<Gather>`: the prompt played while listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherChild {
    /// A nested `<Say>`.
    Say(Say),
    /// A nested `<Play>`.
    Play(Play),
    /// A nested `<Pause>`.
    Pause(Pause),
}

/// `<Gather speechTimeout>`: how long Twilio waits after the caller stops speaking
/// before it sends what was said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechTimeout {
    /// `auto`: the first pause ends the speech. The simulated caller's words arrive
    /// whole, pause included, so the `Gather` ends at once.
    Auto,
    /// Seconds (at least 1).
    Secs(u32),
}

/// `<Gather>`: collect keypad digits or speech, then request `action` with `Digits`,
/// or with `SpeechResult` and `Confidence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    /// `numDigits`: stop after this many digits. `None` (the default) = no limit,
    /// only `finishOnKey` or the timeout ends the input.
    pub num_digits: Option<u32>,
    /// `timeout`: seconds of silence after the last digit (or the prompt) before
    /// giving up. Default 5.
    pub timeout: u32,
    /// `finishOnKey`: the key that ends input and is not included in `Digits`.
    /// Default `#`; `None` when the attribute is empty (no finish key).
    pub finish_on_key: Option<char>,
    /// `action`: where to send `Digits`. `None` = the current document's URL, as
    /// Twilio does.
    pub action: Option<String>,
    /// `method` for `action`. Default POST.
    pub method: Method,
    /// `input`. Default DTMF only.
    pub input: GatherInput,
    /// `speechTimeout`. `None` = the `timeout`, as Twilio does.
    pub speech_timeout: Option<SpeechTimeout>,
    /// `hints`: the comma-separated words and phrases the caller is likely to say,
    /// trimmed, empty ones dropped (Twilio's bounds: at most 500, each at most 100
    /// characters). A recogniser's aid: the simulated caller's words need none.
    pub hints: Vec<String>,
    /// `language` of the speech: a BCP 47 tag as written (e.g. `en-GB`; letters,
    /// digits and `-`, at most 35 characters); `None` = Twilio's default, `en-US`.
    pub language: Option<String>,
    /// Nested `<Say>`, `<Play>` and `<Pause>`, in order.
    pub children: Vec<GatherChild>,
}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            num_digits: None,
            timeout: 5,
            finish_on_key: Some('#'),
            action: None,
            method: Method::Post,
            input: GatherInput::default(),
            speech_timeout: None,
            hints: Vec::new(),
            language: None,
            children: Vec::new(),
        }
    }
}

impl Gather {
    /// Seconds from the end of the caller's speech to the end of the `Gather`.
    pub fn speech_timeout_secs(&self) -> u32 {
        match self.speech_timeout {
            None => self.timeout,
            Some(SpeechTimeout::Auto) => 0,
            Some(SpeechTimeout::Secs(secs)) => secs,
        }
    }
}

/// `<Record>`: record the caller, then request `action` with `RecordingUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `maxLength` in seconds. Default 3600.
    pub max_length: u32,
    /// `timeout`: seconds of silence that end the recording. Default 5.
    pub timeout: u32,
    /// `finishOnKey`: every key in this set ends the recording. Default
    /// `1234567890*#`; empty = no key does.
    pub finish_on_key: String,
    /// `action`: where to send the recording. `None` = the current document's URL.
    pub action: Option<String>,
    /// `method` for `action`. Default POST.
    pub method: Method,
    /// `playBeep`: beep before recording. Default true.
    pub play_beep: bool,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            max_length: 3600,
            timeout: 5,
            finish_on_key: "1234567890*#".to_owned(),
            action: None,
            method: Method::Post,
            play_beep: true,
        }
    }
}

/// `<Conference>` inside `<Dial>`: join a named room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conference {
    /// The room name (the element's text, trimmed; never empty).
    pub name: String,
    /// `muted`: join unable to speak. Default false.
    pub muted: bool,
    /// `startConferenceOnEnter`: this participant starts the conference. Default true.
    pub start_conference_on_enter: bool,
    /// `endConferenceOnExit`: the conference ends when this participant leaves.
    /// Default false.
    pub end_conference_on_exit: bool,
    /// `beep` as written (`true`, `false`, `onEnter`, `onExit`); `None` = Twilio's
    /// default (`true`).
    pub beep: Option<String>,
    /// `waitUrl` as written; `None` = Twilio's default hold music.
    pub wait_url: Option<String>,
    /// `waitMethod`: how `wait_url` is requested. Default POST.
    pub wait_method: Method,
}

impl Default for Conference {
    fn default() -> Self {
        Conference {
            name: String::new(),
            muted: false,
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            beep: None,
            wait_url: None,
            wait_method: Method::Post,
        }
    }
}

impl Conference {
    /// Whether the room beeps when this participant enters: `beep` is `true`
    /// (the default) or `onEnter`.
    pub fn beeps_on_enter(&self) -> bool {
        self.beeps_unless("onExit")
    }

    /// Whether the room beeps when this participant leaves: `beep` is `true` (the
    /// default) or `onExit`.
    pub fn beeps_on_exit(&self) -> bool {
        self.beeps_unless("onEnter")
    }

    /// Beeps unless `beep` is `false` or `other`, the value that beeps only on the
    /// other side (case-insensitive, as the parser's booleans; any other value
    /// counts as Twilio's default, `true`).
    fn beeps_unless(&self, other: &str) -> bool {
        !self.beep.as_deref().is_some_and(|beep| {
            beep.eq_ignore_ascii_case("false") || beep.eq_ignore_ascii_case(other)
        })
    }
}

/// The longest queue name (`<Enqueue>`, `<Queue>`), in characters: Twilio's limit
/// on a queue's `FriendlyName`, which is what the name becomes.
pub const MAX_QUEUE_NAME_CHARS: usize = 64;

/// The most `Number` and `Client` nouns in one `<Dial>`: Twilio rings at most 10
/// parties at once.
pub const MAX_DIAL_NOUNS: usize = 10;

/// `<Queue>` inside `<Dial>`: connect to the caller waiting longest in a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueNoun {
    /// The queue's name (text, trimmed; never empty, at most
    /// [`MAX_QUEUE_NAME_CHARS`]).
    pub name: String,
    /// `url`: a document run on the dequeued caller's side before the two are
    /// connected (Twilio's whisper). `None` = none.
    pub url: Option<String>,
    /// `method` for `url`. Default POST.
    pub method: Method,
}

/// Whom a `<Dial>` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    /// A phone number: `<Dial>` text or a `<Number>` noun, as written.
    Number(String),
    /// A client identity: a `<Client>` noun's text (or its `<Identity>`).
    Client(String),
    /// A conference room; always the `<Dial>`'s only target.
    Conference(Conference),
    /// A queue's longest-waiting caller; always the `<Dial>`'s only target.
    Queue(QueueNoun),
}

/// `<Dial>`: call other parties and bridge the first to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// Who to call, in document order; never empty. Either one `Conference` or
    /// `Queue` alone, or 1 to [`MAX_DIAL_NOUNS`] `Number`s and `Client`s, which ring
    /// at once as in Twilio (first to answer wins).
    pub targets: Vec<DialTarget>,
    /// `action`: requested with `DialCallStatus` when the dialled leg ends. `None` =
    /// the call goes on with the next verb.
    pub action: Option<String>,
    /// `method` for `action`. Default POST.
    pub method: Method,
    /// `timeout`: seconds to ring before giving up. Default 30.
    pub timeout: u32,
    /// `callerId` shown to the called party; `None` = the caller's number.
    pub caller_id: Option<String>,
    /// `timeLimit`: seconds the bridged call may last before it is hung up. Default
    /// 14400 (4 hours), as Twilio.
    pub time_limit: u32,
    /// `record`: whether the bridged call is recorded. Twilio's `record-from-answer`,
    /// `record-from-ringing`, their `-dual` forms and `true` all say yes (only
    /// whether is kept: when recording starts and mono or dual channels are not
    /// simulated); `do-not-record` (the default) and `false` say no.
    pub record: bool,
}

impl Default for Dial {
    fn default() -> Self {
        Dial {
            targets: Vec::new(),
            action: None,
            method: Method::Post,
            timeout: 30,
            caller_id: None,
            time_limit: 14400,
            record: false,
        }
    }
}

/// Whether a message verb was written as `<Message>` or the legacy `<Sms>`.
///
/// They behave the same; the name is kept for [`Verb::verb_name`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageKind {
    /// `<Message>`.
    #[default]
    Message,
    /// `<Sms>`.
    Sms,
}

impl MessageKind {
    /// The element name.
    pub fn verb_name(self) -> &'static str {
        match self {
            MessageKind::Message => "Message",
            MessageKind::Sms => "Sms",
        }
    }
}

/// `<Message>` / `<Sms>`: send a text message during the call or SMS session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Which element it was.
    pub kind: MessageKind,
    /// The body: the element's text or its `<Body>` noun, trimmed (may be empty).
    pub body: String,
    /// `<Media>` nouns' URLs (only with `<Message>`-style nested nouns).
    pub media: Vec<String>,
    /// `to`; `None` = the caller (Twilio's default).
    pub to: Option<String>,
    /// `from`; `None` = the number called (Twilio's default).
    pub from: Option<String>,
    /// `action`: requested with the message's status. `None` = none.
    pub action: Option<String>,
    /// `method` for `action`. Default POST.
    pub method: Method,
}

/// `<Redirect>`: continue with the document at `url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirect {
    /// The URL (the element's text, trimmed; never empty).
    pub url: String,
    /// `method`. Default POST.
    pub method: Method,
}

/// Why `<Reject>` refuses the call, which is what the caller hears.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RejectReason {
    /// `rejected` (the default): the call ends as not answered.
    #[default]
    Rejected,
    /// `busy`: the caller hears a busy signal.
    Busy,
}

impl RejectReason {
    /// `"rejected"` or `"busy"`, as Twilio writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Rejected => "rejected",
            RejectReason::Busy => "busy",
        }
    }
}

/// `<Reject>`: refuse an incoming call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reject {
    /// `reason`. Default `rejected`.
    pub reason: RejectReason,
}

/// `<Enqueue>`: put the caller in a named queue until an agent dials it or it leaves.
///
/// `workflowSid` (TaskRouter) and Twilio's other attributes are not simulated and
/// are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueue {
    /// The queue's name: the element's text, trimmed; never empty, at most
    /// [`MAX_QUEUE_NAME_CHARS`] characters (Twilio's `FriendlyName` limit, 64).
    pub name: String,
    /// `action`: requested with `QueueResult` when the caller leaves the queue.
    /// `None` = the call goes on with the next verb.
    pub action: Option<String>,
    /// `method` for `action`. Default POST.
    pub method: Method,
    /// `waitUrl` as written: the document (or `.mp3`/`.wav` audio) played while
    /// waiting. `None` = silence (Twilio's default music is not simulated).
    pub wait_url: Option<String>,
    /// `waitUrlMethod`: how `wait_url` is requested. Default POST.
    pub wait_url_method: Method,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verb_names_follow_the_document() {
        let sms = Verb::Message(Message {
            kind: MessageKind::Sms,
            ..Message::default()
        });
        assert_eq!(sms.verb_name(), "Sms");
        assert_eq!(Verb::Message(Message::default()).verb_name(), "Message");
        assert_eq!(Verb::Hangup.verb_name(), "Hangup");
        let unknown = Verb::Unknown { name: "Pay".into() };
        assert_eq!(unknown.verb_name(), "Pay");
        assert_eq!(Verb::Gather(Gather::default()).verb_name(), "Gather");
        assert_eq!(Verb::Enqueue(Enqueue::default()).verb_name(), "Enqueue");
        assert_eq!(Verb::Leave.verb_name(), "Leave");
    }

    #[test]
    fn defaults_are_twilios() {
        assert_eq!(Say::default().loop_count, 1);
        assert_eq!(Pause::default().length, 1);
        let gather = Gather::default();
        assert_eq!(
            (gather.timeout, gather.finish_on_key, gather.method),
            (5, Some('#'), Method::Post)
        );
        assert_eq!(
            gather.speech_timeout_secs(),
            5,
            "speechTimeout follows timeout"
        );
        let record = Record::default();
        assert_eq!(record.max_length, 3600);
        assert_eq!(record.finish_on_key, "1234567890*#");
        assert!(record.play_beep);
        let dial = Dial::default();
        assert_eq!(
            (dial.timeout, dial.time_limit, dial.record),
            (30, 14400, false)
        );
        assert!(Conference::default().start_conference_on_enter);
        assert_eq!(Conference::default().wait_method, Method::Post);
        assert_eq!(Reject::default().reason.as_str(), "rejected");
        let enqueue = Enqueue::default();
        assert_eq!(
            (enqueue.method, enqueue.wait_url_method),
            (Method::Post, Method::Post)
        );
        assert_eq!(QueueNoun::default().method, Method::Post);
        assert_eq!(Method::default().as_str(), "POST");
    }

    #[test]
    fn speech_timeout_defaults_to_the_timeout_and_auto_is_at_once() {
        let gather = |speech_timeout| Gather {
            timeout: 12,
            speech_timeout,
            ..Gather::default()
        };
        assert_eq!(gather(None).speech_timeout_secs(), 12);
        assert_eq!(
            gather(Some(SpeechTimeout::Secs(2))).speech_timeout_secs(),
            2
        );
        assert_eq!(gather(Some(SpeechTimeout::Auto)).speech_timeout_secs(), 0);
    }

    #[test]
    fn beep_applies_on_enter_exit_or_both() {
        let beeps = |beep: Option<&str>| {
            let room = Conference {
                beep: beep.map(str::to_owned),
                ..Conference::default()
            };
            (room.beeps_on_enter(), room.beeps_on_exit())
        };
        assert_eq!(beeps(None), (true, true));
        assert_eq!(beeps(Some("true")), (true, true));
        assert_eq!(beeps(Some("false")), (false, false));
        assert_eq!(beeps(Some("FALSE")), (false, false));
        assert_eq!(beeps(Some("onEnter")), (true, false));
        assert_eq!(beeps(Some("onExit")), (false, true));
    }
}
