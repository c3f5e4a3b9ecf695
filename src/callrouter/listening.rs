//! A `<Gather>` listening: the rules that turn the caller's keys and speech into its
//! result, apart from time, which the call's program keeps. Plain data, so every
//! rule is tested here.
//!
//! Keys the caller pressed before the `Gather` wait for it (Twilio's type-ahead); its
//! speech exists only while a speech `Gather` listens, since nothing else is
//! transcribed. The first kind of input wins: once a key is taken the caller's speech
//! is not heard, and once speech is heard keys are left for a later verb.

use serde_json::Value;

use crate::twiml::Gather;

/// What the caller said, as the simulated network hands it over: already
/// transcribed, with the recogniser's confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The words (`SpeechResult`).
    pub text: String,
    /// How sure the recogniser is, from 0 to 1 (`Confidence`).
    pub confidence: f64,
}

/// What a `Gather` has taken so far, and what it takes. The default takes nothing:
/// the program's state outside a `Gather`.
#[derive(Debug, Default)]
pub struct Listening {
    dtmf: bool,
    speech: bool,
    num_digits: Option<u32>,
    finish_on_key: Option<char>,
    digits: String,
    /// The finish key or `numDigits` ended the keys.
    keys_complete: bool,
    said: Option<Utterance>,
}

impl Listening {
    /// Listening as `gather` does, nothing taken yet.
    pub fn new(gather: &Gather) -> Listening {
        Listening {
            dtmf: gather.input.dtmf,
            speech: gather.input.speech,
            num_digits: gather.num_digits,
            finish_on_key: gather.finish_on_key,
            ..Listening::default()
        }
    }

    /// Takes keys from the front of `typed` until the keys are complete, leaving the
    /// rest for a later verb; takes none unless the `Gather` takes DTMF and the caller
    /// has not spoken. `w` (half a second of nothing) is skipped.
    pub fn take_keys(&mut self, typed: &mut String) {
        if !self.dtmf || self.said.is_some() {
            return;
        }
        while !self.keys_complete && !typed.is_empty() {
            match typed.remove(0) {
                'w' => {}
                key if Some(key) == self.finish_on_key => self.keys_complete = true,
                key => {
                    self.digits.push(key);
                    self.keys_complete = self
                        .num_digits
                        .is_some_and(|n| self.digits.len() as u32 >= n);
                }
            }
        }
    }

    /// Hears `speech` if the `Gather` takes speech and the caller has not answered
    /// yet; otherwise it is lost.
    pub fn hear(&mut self, speech: Utterance) {
        if self.speech && !self.answered() {
            self.said = Some(speech);
        }
    }

    /// Whether the caller has begun to answer, which stops the prompt (barge-in).
    pub fn answered(&self) -> bool {
        self.keys_complete || !self.digits.is_empty() || self.said.is_some()
    }

    /// Whether the finish key or `numDigits` ended the input.
    pub fn keys_complete(&self) -> bool {
        self.keys_complete
    }

    /// Whether the caller's speech was heard: the `Gather` ends `speechTimeout`
    /// after it.
    pub fn spoken(&self) -> bool {
        self.said.is_some()
    }

    /// What the `Gather` ends with.
    pub fn heard(self) -> Heard {
        match self.said {
            Some(speech) => Heard::Speech(speech),
            None if self.digits.is_empty() => Heard::Nothing,
            None => Heard::Digits(self.digits),
        }
    }
}

/// What a `Gather` ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// No key (but perhaps the finish key) and no speech.
    Nothing,
    /// Keys, without the finish key.
    Digits(String),
    /// Speech.
    Speech(Utterance),
}

impl Heard {
    /// `gather.end`'s data beside `verb`: `digits` (empty for nothing), or
    /// `speech_result` and `confidence`.
    pub fn event_data(&self) -> Vec<(&'static str, Value)> {
        match self {
            Heard::Nothing => vec![("digits", "".into())],
            Heard::Digits(digits) => vec![("digits", digits.as_str().into())],
            Heard::Speech(speech) => vec![
                ("speech_result", speech.text.as_str().into()),
                ("confidence", speech.confidence.into()),
            ],
        }
    }

    /// The parameters Twilio sends to the `Gather`'s `action`; `None` for nothing,
    /// when Twilio goes on with the next verb instead.
    pub fn into_params(self) -> Option<Vec<(String, String)>> {
        match self {
            Heard::Nothing => None,
            Heard::Digits(digits) => Some(vec![("Digits".into(), digits)]),
            Heard::Speech(speech) => Some(vec![
                ("SpeechResult".into(), speech.text),
                // Shortest form that reads back the same: 0.92 stays "0.92".
                ("Confidence".into(), speech.confidence.to_string()),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::twiml::GatherInput;

    fn listening(dtmf: bool, speech: bool) -> Listening {
        Listening::new(&Gather {
            input: GatherInput { dtmf, speech },
            ..Gather::default()
        })
    }

    fn said(text: &str) -> Utterance {
        Utterance {
            text: text.into(),
            confidence: 0.92,
        }
    }

    #[test]
    fn keys_end_at_the_finish_key_or_num_digits_and_leave_the_rest() {
        let mut typed = String::from("1w2#34");
        let mut gather = listening(true, false);
        gather.take_keys(&mut typed);
        assert!(gather.keys_complete());
        assert_eq!(
            typed, "34",
            "keys after the finish key wait for a later verb"
        );
        assert_eq!(gather.heard(), Heard::Digits("12".into()));

        let mut typed = String::from("1234");
        let mut gather = Listening::new(&Gather {
            num_digits: Some(3),
            ..Gather::default()
        });
        gather.take_keys(&mut typed);
        assert_eq!((gather.keys_complete(), typed.as_str()), (true, "4"));
        assert_eq!(gather.heard(), Heard::Digits("123".into()));

        let mut typed = String::from("12");
        let mut gather = listening(true, false);
        gather.take_keys(&mut typed);
        assert!(gather.answered() && !gather.keys_complete());
        typed.push('#');
        gather.take_keys(&mut typed);
        assert!(gather.keys_complete());
    }

    #[test]
    fn only_the_finish_key_is_an_answer_with_nothing_in_it() {
        let mut typed = String::from("#");
        let mut gather = listening(true, true);
        gather.take_keys(&mut typed);
        assert!(gather.answered() && gather.keys_complete());
        gather.hear(said("too late"));
        assert_eq!(gather.heard(), Heard::Nothing);
    }

    #[test]
    fn speech_is_heard_only_by_a_gather_that_takes_it() {
        let mut gather = listening(false, true);
        assert!(!gather.answered());
        gather.hear(said("billing please"));
        assert!(gather.answered() && gather.spoken() && !gather.keys_complete());
        assert_eq!(gather.heard(), Heard::Speech(said("billing please")));

        for mut deaf in [listening(true, false), Listening::default()] {
            deaf.hear(said("hello?"));
            assert!(!deaf.answered(), "{deaf:?}");
            assert_eq!(deaf.heard(), Heard::Nothing);
        }
    }

    #[test]
    fn keys_are_not_taken_without_dtmf() {
        for mut deaf in [listening(false, true), Listening::default()] {
            let mut typed = String::from("12#");
            deaf.take_keys(&mut typed);
            assert_eq!(typed, "12#", "kept for a later Gather");
            assert!(!deaf.answered());
        }
    }

    #[test]
    fn the_first_kind_of_input_wins() {
        let mut gather = listening(true, true);
        let mut typed = String::from("1");
        gather.take_keys(&mut typed);
        gather.hear(said("support"));
        assert!(!gather.spoken(), "a key came first");
        assert_eq!(gather.heard(), Heard::Digits("1".into()));

        let mut gather = listening(true, true);
        gather.hear(said("support"));
        gather.hear(said("billing"));
        let mut typed = String::from("1#");
        gather.take_keys(&mut typed);
        assert_eq!(typed, "1#", "keys after speech wait for a later verb");
        assert_eq!(gather.heard(), Heard::Speech(said("support")));
    }

    #[test]
    fn results_as_twilio_and_the_events_name_them() {
        let speech = Heard::Speech(Utterance {
            text: "billing please".into(),
            confidence: 0.92,
        });
        assert_eq!(
            speech.event_data(),
            [
                ("speech_result", json!("billing please")),
                ("confidence", json!(0.92))
            ]
        );
        assert_eq!(
            speech.into_params(),
            Some(vec![
                ("SpeechResult".into(), "billing please".into()),
                ("Confidence".into(), "0.92".into())
            ])
        );
        let digits = Heard::Digits("42".into());
        assert_eq!(digits.event_data(), [("digits", json!("42"))]);
        assert_eq!(
            digits.into_params(),
            Some(vec![("Digits".into(), "42".into())])
        );
        assert_eq!(Heard::Nothing.event_data(), [("digits", json!(""))]);
        assert_eq!(Heard::Nothing.into_params(), None);
    }
}
