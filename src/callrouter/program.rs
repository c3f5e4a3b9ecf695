//! A call's program, without the actor: it requests TwiML from the application, runs
//! the verbs in order with simulated media time, takes the call's inputs as they come
//! (digits, speech, hang-ups, redirects, mutes) and emits the events of docs/api.md
//! §2. The [`Call`](crate::actors::call::Call) actor runs one and feeds it; the router
//! starts calls through the function it was given, so this module and the router
//! never name the actor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Message;
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::app::AppError;
use super::call_limits::{IdleDocuments, LOOP_ERROR_CODE};
use super::listening::{Listening, Utterance};
use super::live::LiveCall;
use super::queues::{Announcement, Left, QueueError};
use super::records::{new_sid, CallStatus, Direction, API_VERSION};
use super::{CallOutcome, CallRouter, RouterError};
use crate::account::AccountIdx;
use crate::twiml::{
    self, fill_template, Conference, Dial, DialTarget, Enqueue, Gather, GatherChild, Method, Play,
    QueueNoun, Record, Reject, RejectReason, Response, Say, Verb,
};

/// Inputs waiting for the program beyond this are dropped (a flood of key presses).
pub const INPUT_QUEUE: usize = 64;

/// Simulated seconds one spoken word takes.
const SAY_SECS_PER_WORD: f64 = 0.5;
/// Simulated seconds one `Play` loop takes.
const PLAY_SECS: f64 = 2.0;

/// Where a call's first document comes from.
#[derive(Debug, Clone)]
pub enum AppSource {
    /// Requested from an application URL.
    Url(String, Method),
    /// Given inline (`Twiml=` on the REST API).
    Twiml(String),
    /// No application: a simulated party that answers and stays on the line.
    FarEnd,
}

/// Everything a call needs to start.
#[derive(Debug, Clone)]
pub struct CallSetup {
    /// `CA` + 32 hex.
    pub sid: String,
    /// Owner.
    pub account: AccountIdx,
    /// Caller.
    pub from: String,
    /// Called.
    pub to: String,
    /// Where it came from.
    pub direction: Direction,
    /// Its application.
    pub source: AppSource,
    /// Told when the call ends.
    pub status_callback: Option<String>,
    /// Outbound: ring the far end for `sim.ring_secs` before answering.
    pub ring: bool,
    /// The dialling call of a `<Dial>` leg.
    pub parent: Option<String>,
    /// `TimeLimit` (REST): the most simulated seconds the call may last once
    /// answered; `call_router.max_call_secs` applies either way.
    pub time_limit: Option<u64>,
    /// A `<Dial>` leg: the Dial's `timeout`, the simulated seconds it may ring
    /// (and its application take to answer) before it ends `no-answer`.
    pub answer_within: Option<u32>,
}

/// Something that happens to a live call.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub enum CallInput {
    /// The caller pressed keys (`0-9*#`; `w` is half a second of nothing).
    Digits(String),
    /// The caller spoke; only a `Gather` listening for speech hears it.
    Speech(Utterance),
    /// Either side, the REST API or a client hung up.
    Hangup,
    /// Continue with another document.
    Redirect(String, Method),
    /// Mute or unmute the call in its conference.
    Mute(bool),
    /// The call's conference room ended (a participant with `endConferenceOnExit` left).
    RoomEnded,
    /// The call's conference room started (a participant with
    /// `startConferenceOnEnter` entered) while the call was held in it.
    RoomStarted,
    /// The call is bridged to `partner`: a waiting caller taken by an agent's
    /// `<Dial><Queue>` (from `position`, hearing `announcement` first), or an
    /// agent waiting on an empty queue that a caller joined.
    Bridged {
        /// The other call.
        partner: String,
        /// The caller's place in the queue when taken.
        position: usize,
        /// The `<Queue url>` document the caller hears before it is connected.
        announcement: Announcement,
    },
    /// The other side of the call's bridge left it.
    BridgeEnded,
}

impl CallInput {
    /// Whether the input must reach the program even when its queue is full: what
    /// the router or another call tells it, which nothing would repeat, and a
    /// hang-up. Keys, speech and mutes, which a person or a page can flood, may
    /// be dropped.
    pub fn must_arrive(&self) -> bool {
        !matches!(
            self,
            CallInput::Digits(_) | CallInput::Speech(_) | CallInput::Mute(_)
        )
    }
}

/// Why the program stopped what it was doing.
enum Interrupt {
    Hangup,
    Redirect(String, Method),
    /// Only while held in a room ([`Program::conference`] takes it).
    RoomStarted,
    /// Only while in a room ([`Program::conference`] takes it).
    RoomEnded,
    /// Only while queued or waiting for a caller: an agent took the caller, or a
    /// caller came to the waiting agent.
    Bridged {
        partner: String,
        position: usize,
        announcement: Announcement,
    },
    /// Only while bridged: the other side left.
    BridgeEnded,
    /// Only while queued: the wait document's `<Leave>`.
    Leave,
}

/// The queue a call waits in.
#[derive(Debug, Clone)]
struct InQueue {
    name: String,
    sid: String,
    since: Instant,
}

/// How a `<Dial>` went, for its `action`.
struct Dialled {
    /// `DialCallStatus`.
    status: &'static str,
    /// `DialCallSid`: the leg (or caller) that answered.
    leg: Option<String>,
    /// `DialCallDuration`, simulated seconds.
    duration: u64,
    /// More parameters (`QueueSid` …).
    extra: Vec<(String, String)>,
}

impl Dialled {
    fn unanswered(status: &'static str) -> Dialled {
        Dialled {
            status,
            leg: None,
            duration: 0,
            extra: Vec::new(),
        }
    }
}

/// The conference room a call is in.
struct InRoom {
    name: String,
    muted: bool,
    /// Waiting for a participant with `startConferenceOnEnter`, hearing `waitUrl`.
    held: bool,
}

/// What to do after a document.
enum Flow {
    /// Request another document (an `action`, a `Redirect`).
    Fetch(Url, Method, Vec<(String, String)>),
    /// The call is over.
    End(CallStatus),
}

/// The running program of one call.
pub struct Program {
    router: Arc<CallRouter>,
    setup: CallSetup,
    token: Arc<str>,
    inputs: mpsc::Receiver<CallInput>,
    /// Keys pressed but not yet taken by a `Gather` or `Record`.
    typed: String,
    /// The running `Gather`'s input; the default, which takes nothing, outside one.
    listening: Listening,
    answered: Option<Instant>,
    status: CallStatus,
    /// The parameters of the request that fetched the current document (`Digits`
    /// after a `Gather` …): what `Play` URI templates are filled from.
    request: Vec<(String, String)>,
    /// When the call must end (its time limit), set once it is answered.
    deadline: Option<tokio::time::Instant>,
    /// Whether simulated time passed (or the call waited for someone) since the
    /// last document was fetched: documents that never let it pass are a loop.
    time_passed: bool,
    idle_documents: IdleDocuments,
    /// The conference room the call is in (inside a `<Dial><Conference>`).
    room: Option<InRoom>,
    /// The queue the call waits in (inside an `<Enqueue>`).
    queue: Option<InQueue>,
    /// The call this one is bridged to through a queue (agent or caller).
    bridge: Option<String>,
    /// An agent's `<Dial><Queue>` waits on an empty queue for a caller.
    awaiting_caller: bool,
    /// Counts the call as running until the program is dropped, after `call.end`
    /// and the status callback.
    _live: LiveCall,
}

impl Program {
    /// A program for `setup`, fed by `inputs`, counted in `live` until dropped.
    pub fn new(
        router: Arc<CallRouter>,
        setup: CallSetup,
        inputs: mpsc::Receiver<CallInput>,
        live: LiveCall,
    ) -> Program {
        let token = router.token(setup.account);
        Program {
            router,
            setup,
            token,
            inputs,
            typed: String::new(),
            listening: Listening::default(),
            answered: None,
            status: CallStatus::Ringing,
            request: Vec::new(),
            deadline: None,
            time_passed: false,
            idle_documents: IdleDocuments::default(),
            room: None,
            queue: None,
            bridge: None,
            awaiting_caller: false,
            _live: live,
        }
    }

    async fn emit(&self, type_name: &str, data: Map<String, Value>) {
        self.router
            .emit(self.setup.account, type_name, Some(&self.setup.sid), data)
            .await;
    }

    async fn emit_verb(&self, type_name: &str, verb: &str, extra: &[(&str, Value)]) {
        let mut data = Map::new();
        data.insert("verb".into(), verb.into());
        for (key, value) in extra {
            data.insert((*key).into(), value.clone());
        }
        self.emit(type_name, data).await;
    }

    async fn problem(&self, type_name: &str, code: u16, message: &str) {
        self.router
            .metrics()
            .call_errors
            .with_label_values(&[&code.to_string()])
            .inc();
        let mut data = Map::new();
        data.insert("error_code".into(), code.into());
        data.insert("error_message".into(), message.into());
        self.emit(type_name, data).await;
    }

    /// Twilio's webhook parameters for this call, plus `extra`.
    fn params(&self, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let status = self.status.as_str();
        let mut params: Vec<(String, String)> = [
            ("AccountSid", self.router.account_sid(self.setup.account)),
            ("CallSid", &self.setup.sid),
            ("From", &self.setup.from),
            ("To", &self.setup.to),
            ("Caller", &self.setup.from),
            ("Called", &self.setup.to),
            ("CallStatus", status),
            ("Direction", self.setup.direction.as_str()),
            ("ApiVersion", API_VERSION),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(parent) = &self.setup.parent {
            params.push(("ParentCallSid".into(), parent.clone()));
        }
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        params
    }

    fn duration(&self) -> u64 {
        self.answered
            .map_or(0, |at| self.router.simulated_secs(at.elapsed()))
    }

    /// Runs the call to its end.
    pub async fn run(mut self) {
        if self.router.is_stopping() {
            // The server drains: a call it has just accepted ends at once.
            self.finish(CallStatus::Canceled).await;
            return;
        }
        let status = match self.connect().await {
            Err(unanswered) => unanswered,
            Ok(first) => {
                self.answer().await;
                self.program(first).await
            }
        };
        self.finish(status).await;
    }

    /// Until the call answers: an outbound call or a `<Dial>` leg rings for
    /// `sim.ring_secs`; a leg to a number of the account answers once its
    /// application has given its first document (returned, to run), as a phone
    /// answers when someone picks it up. Errs with the status of a call that ends
    /// unanswered: `canceled` (hung up while ringing), `no-answer` (the Dial's
    /// `timeout` passed, or the application's first verb is `<Reject>`),
    /// `busy` (`<Reject reason="busy">`), `failed` (the application failed).
    async fn connect(&mut self) -> Result<Option<(Response, Url)>, CallStatus> {
        let deadline = self.setup.answer_within.and_then(|secs| {
            tokio::time::Instant::now().checked_add(self.router.sim_time(f64::from(secs)))
        });
        if self.setup.ring {
            self.router.set_status(&self.setup.sid, CallStatus::Ringing);
            let ring = self.router.sim_time(self.router.ring_secs());
            tokio::select! {
                rung = self.wait(ring) => if rung.is_err() {
                    return Err(CallStatus::Canceled);
                },
                () = until(deadline) => return Err(CallStatus::NoAnswer),
            }
        }
        let (Some(_), AppSource::Url(url, method)) = (&self.setup.parent, &self.setup.source)
        else {
            return Ok(None);
        };
        let Ok(url) = Url::parse(url) else {
            self.problem("call.error", 11200, "the application URL is not valid")
                .await;
            return Err(CallStatus::Failed);
        };
        let params = self.params(&[]);
        let (router, token, method) = (self.router.clone(), self.token.clone(), *method);
        let (fetch_url, fetch_params) = (url.clone(), params.clone());
        let fetched = async move {
            router
                .app()
                .document(&token, &fetch_url, method, &fetch_params)
                .await
        };
        tokio::pin!(fetched);
        let document = loop {
            tokio::select! {
                document = &mut fetched => break document,
                () = until(deadline) => return Err(CallStatus::NoAnswer),
                input = self.next_input() => if input.is_err() {
                    return Err(CallStatus::Canceled);
                },
            }
        };
        match document {
            Ok(document) => match document.verbs.first() {
                Some(Verb::Reject(Reject { reason })) => Err(rejected(*reason)),
                _ => {
                    self.request = params;
                    Ok(Some((document, url)))
                }
            },
            Err(error) => {
                self.problem("call.error", error.code(), &error.to_string())
                    .await;
                Err(CallStatus::Failed)
            }
        }
    }

    /// Runs the answered call's application (starting with `first`, the document
    /// it answered with, if any) to the call's end.
    async fn program(&mut self, first: Option<(Response, Url)>) -> CallStatus {
        match (first, self.setup.source.clone()) {
            (Some(first), _) => {
                self.drive(Flow::End(CallStatus::Completed), Some(first))
                    .await
            }
            // A simulated party: on the line until someone hangs up.
            (None, AppSource::FarEnd) => {
                while self.next_input().await.is_ok() {}
                CallStatus::Completed
            }
            (None, AppSource::Twiml(text)) => match twiml::parse(&text) {
                Ok(document) => {
                    self.drive(
                        Flow::End(CallStatus::Completed),
                        Some((document, inline_base())),
                    )
                    .await
                }
                Err(error) => {
                    self.problem("call.error", error.code(), &error.summary())
                        .await;
                    CallStatus::Failed
                }
            },
            (None, AppSource::Url(url, method)) => match Url::parse(&url) {
                Ok(url) => self.drive(Flow::Fetch(url, method, Vec::new()), None).await,
                Err(_) => {
                    self.problem("call.error", 11200, "the application URL is not valid")
                        .await;
                    CallStatus::Failed
                }
            },
        }
    }

    /// Runs documents until the call ends: each document's flow either ends the call
    /// or names the next document to request.
    async fn drive(&mut self, mut flow: Flow, mut document: Option<(Response, Url)>) -> CallStatus {
        loop {
            if let Some((parsed, base)) = document.take() {
                flow = self.execute(parsed, base).await;
                let time_passed = std::mem::take(&mut self.time_passed);
                if let (Flow::Fetch(..), Err(error)) =
                    (&flow, self.idle_documents.finished(time_passed))
                {
                    self.problem("call.error", LOOP_ERROR_CODE, &error.to_string())
                        .await;
                    return CallStatus::Failed;
                }
            }
            let (mut url, mut method, mut extra) = match flow {
                Flow::End(status) => return status,
                Flow::Fetch(url, method, extra) => (url, method, extra),
            };
            // Documents that never wait would otherwise not see a hang-up (the
            // REST API, a drain) or a redirect until they do.
            match self.pending_interrupt() {
                None => {}
                Some(Interrupt::Hangup) => return CallStatus::Completed,
                Some(Interrupt::Redirect(next, next_method)) => match url.join(&next) {
                    Ok(next) => {
                        self.emit_verb("redirect", "Redirect", &[("url", next.as_str().into())])
                            .await;
                        (url, method, extra) = (next, next_method, Vec::new());
                    }
                    Err(_) => return CallStatus::Completed,
                },
                // Never: between documents the call is in no room or queue, and
                // `pending_interrupt` drops their changes.
                Some(_) => {}
            }
            let extra: Vec<(&str, String)> =
                extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let mut params = self.params(&extra);
            if self.request.is_empty() && self.setup.direction == Direction::Inbound {
                // Twilio asks for an inbound call's first document while it rings.
                for (name, value) in &mut params {
                    if name == "CallStatus" {
                        *value = CallStatus::Ringing.as_str().to_owned();
                    }
                }
            }
            match self.fetch(&url, method, &params).await {
                Ok(parsed) => {
                    self.request = params;
                    document = Some((parsed, url));
                    flow = Flow::End(CallStatus::Completed);
                }
                Err(error) => {
                    self.problem("call.error", error.code(), &error.to_string())
                        .await;
                    return CallStatus::Failed;
                }
            }
        }
    }

    /// Requests a document from the application, timing the request.
    async fn fetch(
        &self,
        url: &Url,
        method: Method,
        params: &[(String, String)],
    ) -> Result<Response, AppError> {
        let started = Instant::now();
        let fetched = self
            .router
            .app()
            .document(&self.token, url, method, params)
            .await;
        self.router
            .metrics()
            .app_latency
            .observe(started.elapsed().as_secs_f64());
        fetched
    }

    async fn answer(&mut self) {
        self.answered = Some(Instant::now());
        self.deadline = self
            .router
            .call_deadline(tokio::time::Instant::now(), self.setup.time_limit);
        self.status = CallStatus::InProgress;
        self.router
            .set_status(&self.setup.sid, CallStatus::InProgress);
        let mut data = Map::new();
        data.insert("from".into(), self.setup.from.clone().into());
        data.insert("to".into(), self.setup.to.clone().into());
        data.insert("direction".into(), self.setup.direction.as_str().into());
        data.insert("status".into(), "in-progress".into());
        self.router.started(&self.setup.sid, &data);
        self.emit("call.start", data).await;
    }

    async fn finish(&mut self, status: CallStatus) {
        let duration = self.duration();
        self.router
            .finish(&self.setup.sid, CallOutcome { status, duration });
        let mut data = Map::new();
        data.insert("status".into(), status.as_str().into());
        data.insert("duration".into(), duration.into());
        data.insert("direction".into(), self.setup.direction.as_str().into());
        self.emit("call.end", data).await;
        if let Some(callback) = self.setup.status_callback.clone() {
            self.status = status;
            let params = self.params(&[("CallDuration", duration.to_string())]);
            if let Ok(url) = Url::parse(&callback) {
                if let Err(error) = self
                    .router
                    .app()
                    .request(&self.token, &url, Method::Post, &params)
                    .await
                {
                    tracing::info!(cause = %error, "status callback failed");
                }
            }
        }
    }

    /// The next input; `None` when the call is over: every input sender is gone or
    /// the call's time limit has come (Twilio ends it `completed`).
    async fn recv(&mut self) -> Option<CallInput> {
        let deadline = self.deadline;
        tokio::select! {
            input = self.inputs.recv() => input,
            () = until(deadline) => {
                tracing::info!(call_sid = %self.setup.sid, "the call reached its time limit");
                None
            }
        }
    }

    /// An interrupt already waiting (a hang-up, a redirect, the time limit), taken
    /// without waiting; keys are kept for the next `Gather`, speech is lost (no
    /// `Gather` listens between documents).
    fn pending_interrupt(&mut self) -> Option<Interrupt> {
        if self
            .deadline
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            return Some(Interrupt::Hangup);
        }
        loop {
            match self.inputs.try_recv() {
                Ok(CallInput::Hangup) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Some(Interrupt::Hangup)
                }
                Ok(CallInput::Redirect(url, method)) => {
                    return Some(Interrupt::Redirect(url, method))
                }
                Ok(CallInput::Digits(digits)) => self.typed.push_str(&digits),
                Ok(
                    CallInput::Speech(_)
                    | CallInput::Mute(_)
                    | CallInput::RoomEnded
                    | CallInput::RoomStarted
                    | CallInput::Bridged { .. }
                    | CallInput::BridgeEnded,
                ) => {}
                Err(mpsc::error::TryRecvError::Empty) => return None,
            }
        }
    }

    /// Waits for the next input that matters outside a verb: keys go to the
    /// listening `Gather` or are kept for the next one (in a room, the room hears
    /// them), speech is heard only by a `Gather` listening for it, mute and the
    /// room's changes only matter in a room.
    async fn next_input(&mut self) -> Result<(), Interrupt> {
        match self.recv().await {
            None | Some(CallInput::Hangup) => Err(Interrupt::Hangup),
            Some(CallInput::Redirect(url, method)) => Err(Interrupt::Redirect(url, method)),
            Some(CallInput::Mute(want)) => {
                self.mute(want).await;
                Ok(())
            }
            Some(CallInput::RoomStarted) => match &mut self.room {
                Some(room) if room.held => {
                    room.held = false;
                    Err(Interrupt::RoomStarted)
                }
                _ => Ok(()),
            },
            Some(CallInput::RoomEnded) if self.room.is_some() => Err(Interrupt::RoomEnded),
            // Otherwise the bridge is already known (from leaving the queue or
            // giving up waiting, which lost a race to it) or long over.
            Some(CallInput::Bridged {
                partner,
                position,
                announcement,
            }) if self.queue.is_some() || self.awaiting_caller => Err(Interrupt::Bridged {
                partner,
                position,
                announcement,
            }),
            Some(CallInput::Bridged { .. }) => Ok(()),
            Some(CallInput::BridgeEnded) if self.bridge.is_some() => Err(Interrupt::BridgeEnded),
            Some(CallInput::BridgeEnded) => Ok(()),
            Some(CallInput::Digits(_)) if self.room.is_some() => Ok(()),
            Some(CallInput::RoomEnded) => Ok(()),
            Some(CallInput::Digits(digits)) => {
                self.typed.push_str(&digits);
                self.listening.take_keys(&mut self.typed);
                Ok(())
            }
            Some(CallInput::Speech(speech)) => {
                self.listening.hear(speech);
                Ok(())
            }
        }
    }

    /// Lets simulated time pass, unless the call is hung up or redirected.
    async fn wait(&mut self, duration: Duration) -> Result<(), Interrupt> {
        self.time_passed |= !duration.is_zero();
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return Ok(()),
                input = self.next_input() => input?,
            }
        }
    }

    /// Like [`wait`](Self::wait), but the caller answering the listening `Gather`
    /// ends it early (barge-in).
    async fn wait_or_answer(&mut self, duration: Duration) -> Result<(), Interrupt> {
        self.time_passed |= !duration.is_zero();
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        while !self.listening.answered() {
            tokio::select! {
                _ = &mut deadline => return Ok(()),
                input = self.next_input() => input?,
            }
        }
        Ok(())
    }

    /// Runs a document's verbs in order.
    async fn execute(&mut self, document: Response, base: Url) -> Flow {
        for verb in document.verbs {
            self.count(&verb);
            let step = match verb {
                Verb::Say(say) => self.say(&say, false).await.map(|()| None),
                Verb::Play(play) => self.play(&play, &base, false).await.map(|()| None),
                Verb::Pause(pause) => self
                    .wait(self.router.sim_time(f64::from(pause.length)))
                    .await
                    .map(|()| None),
                Verb::Gather(gather) => self.gather(gather, &base).await,
                Verb::Record(record) => self.record(record, &base).await,
                Verb::Dial(dial) => self.dial(dial, &base).await,
                Verb::Enqueue(enqueue) => self.enqueue(enqueue, &base).await,
                // Only a queue's wait document leaves it; elsewhere Twilio ignores it.
                Verb::Leave => Ok(None),
                Verb::Message(message) => {
                    let to = message.to.unwrap_or_else(|| self.setup.from.clone());
                    let from = message.from.unwrap_or_else(|| self.setup.to.clone());
                    self.router
                        .send_message(
                            self.setup.account,
                            &to,
                            &from,
                            &message.body,
                            "outbound-reply",
                            Some(&self.setup.sid),
                            None,
                        )
                        .await;
                    Ok(None)
                }
                Verb::Redirect(redirect) => match base.join(&redirect.url) {
                    Ok(url) => {
                        self.emit_verb("redirect", "Redirect", &[("url", url.as_str().into())])
                            .await;
                        return Flow::Fetch(url, redirect.method, Vec::new());
                    }
                    Err(_) => {
                        self.problem("call.error", 12100, "Redirect: not a valid URL")
                            .await;
                        return Flow::End(CallStatus::Failed);
                    }
                },
                Verb::Hangup => return Flow::End(CallStatus::Completed),
                Verb::Reject(Reject { reason }) => return Flow::End(rejected(reason)),
                Verb::Unknown { .. } => {
                    // The name is the document's, so it stays out of the message:
                    // warnings reach every subscriber (docs/api.md §6).
                    self.problem("call.warning", 12200, "an unknown verb was skipped")
                        .await;
                    Ok(None)
                }
            };
            match step {
                Ok(None) => {}
                Ok(Some(flow)) => return flow,
                Err(Interrupt::Hangup) => return Flow::End(CallStatus::Completed),
                Err(Interrupt::Redirect(url, method)) => {
                    return match base.join(&url) {
                        Ok(url) => {
                            self.emit_verb("redirect", "Redirect", &[("url", url.as_str().into())])
                                .await;
                            Flow::Fetch(url, method, Vec::new())
                        }
                        Err(_) => Flow::End(CallStatus::Completed),
                    }
                }
                // A room's or a queue's changes: the verb waiting there
                // (`conference`, `enqueue`, `dial`) takes them, none reach here.
                Err(_) => {}
            }
        }
        Flow::End(CallStatus::Completed)
    }

    /// Counts a verb run, for `switchboard_twiml_verbs_total`.
    fn count(&self, verb: &Verb) {
        self.router
            .metrics()
            .verbs
            .with_label_values(&[verb_label(verb)])
            .inc();
    }

    async fn say(&mut self, say: &Say, barge_in: bool) -> Result<(), Interrupt> {
        self.emit_verb("say.start", "Say", &[("text", say.text.clone().into())])
            .await;
        let words = say.text.split_whitespace().count() as f64;
        let secs = (words * SAY_SECS_PER_WORD).max(1.0) * f64::from(say.loop_count.max(1));
        let duration = self.router.sim_time(secs);
        if barge_in {
            self.wait_or_answer(duration).await?;
        } else {
            self.wait(duration).await?;
        }
        self.emit_verb("say.end", "Say", &[]).await;
        Ok(())
    }

    async fn play(&mut self, play: &Play, base: &Url, barge_in: bool) -> Result<(), Interrupt> {
        if play.url.is_empty() {
            // `<Play digits="…"/>`: tones, nothing to fetch.
            let digits = play.digits.clone().unwrap_or_default();
            self.emit_verb("play.start", "Play", &[("digits", digits.into())])
                .await;
            self.wait(self.router.sim_time(PLAY_SECS)).await?;
            self.emit_verb("play.end", "Play", &[]).await;
            return Ok(());
        }
        let request = &self.request;
        let filled = fill_template(&play.url, &|name| {
            request
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        });
        let url = match base.join(&filled) {
            Ok(url) => url,
            Err(_) => {
                self.problem("call.warning", 11200, "Play: not a valid URL")
                    .await;
                return Ok(());
            }
        };
        self.emit_verb("play.start", "Play", &[("url", url.as_str().into())])
            .await;
        if let Err(error) = self.router.app().media(&url).await {
            self.problem("call.warning", error.code(), &error.to_string())
                .await;
        }
        let duration = self
            .router
            .sim_time(PLAY_SECS * f64::from(play.loop_count.max(1)));
        if barge_in {
            self.wait_or_answer(duration).await?;
        } else {
            self.wait(duration).await?;
        }
        self.emit_verb("play.end", "Play", &[("url", url.as_str().into())])
            .await;
        Ok(())
    }

    async fn gather(&mut self, gather: Gather, base: &Url) -> Result<Option<Flow>, Interrupt> {
        self.emit_verb("gather.start", "Gather", &[]).await;
        self.listening = Listening::new(&gather);
        self.listening.take_keys(&mut self.typed);
        let listened = self.listen(&gather, base).await;
        let heard = std::mem::take(&mut self.listening).heard();
        listened?;
        self.emit_verb("gather.end", "Gather", &heard.event_data())
            .await;
        // No input: Twilio goes on with the next verb.
        let Some(params) = heard.into_params() else {
            return Ok(None);
        };
        Ok(action(
            base,
            gather.action.as_deref(),
            gather.method,
            params,
        ))
    }

    /// Runs the `Gather`'s prompts until the caller answers (barge-in), then listens
    /// until the finish key or `numDigits`, `timeout` simulated seconds without
    /// input, or `speechTimeout` after the caller spoke.
    async fn listen(&mut self, gather: &Gather, base: &Url) -> Result<(), Interrupt> {
        for child in &gather.children {
            if self.listening.answered() {
                break;
            }
            match child {
                GatherChild::Say(say) => self.say(say, true).await?,
                GatherChild::Play(play) => self.play(play, base, true).await?,
                GatherChild::Pause(pause) => {
                    self.wait_or_answer(self.router.sim_time(f64::from(pause.length)))
                        .await?
                }
            }
        }
        loop {
            if self.listening.keys_complete() {
                return Ok(());
            }
            if self.listening.spoken() {
                let secs = gather.speech_timeout_secs();
                return self.wait(self.router.sim_time(f64::from(secs))).await;
            }
            let wait = self.router.sim_time(f64::from(gather.timeout));
            self.time_passed |= !wait.is_zero();
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            tokio::select! {
                _ = &mut deadline => return Ok(()),
                input = self.next_input() => input?,
            }
        }
    }

    async fn record(&mut self, record: Record, base: &Url) -> Result<Option<Flow>, Interrupt> {
        self.emit_verb("record.start", "Record", &[]).await;
        self.time_passed = true;
        let started = Instant::now();
        let max = self.router.sim_time(f64::from(record.max_length));
        let silence = self.router.sim_time(f64::from(record.timeout));
        let limit = tokio::time::sleep(max);
        tokio::pin!(limit);
        let mut hung_up = false;
        loop {
            if let Some(position) = self.typed.find(|c| record.finish_on_key.contains(c)) {
                self.typed.drain(..=position);
                break;
            }
            let quiet = tokio::time::sleep(silence);
            tokio::select! {
                _ = &mut limit => break,
                _ = quiet => break,
                input = self.next_input() => match input {
                    Ok(()) => {}
                    Err(Interrupt::Hangup) => { hung_up = true; break }
                    Err(other) => return Err(other),
                },
            }
        }
        let recording_sid = new_sid("RE");
        let recording_url = self
            .router
            .recording_url(self.setup.account, &recording_sid);
        let duration = self.router.simulated_secs(started.elapsed());
        self.emit_verb(
            "record.end",
            "Record",
            &[
                ("recording_url", recording_url.clone().into()),
                ("recording_duration", duration.into()),
            ],
        )
        .await;
        if hung_up {
            return Err(Interrupt::Hangup);
        }
        Ok(action(
            base,
            record.action.as_deref(),
            record.method,
            vec![
                ("RecordingUrl".into(), recording_url),
                ("RecordingDuration".into(), duration.to_string()),
                ("RecordingSid".into(), recording_sid),
            ],
        ))
    }

    async fn dial(&mut self, dial: Dial, base: &Url) -> Result<Option<Flow>, Interrupt> {
        let dialled = match dial.targets.first() {
            None => return Ok(None),
            Some(DialTarget::Conference(room)) => {
                let joined = Instant::now();
                self.conference(room, base).await?;
                Dialled {
                    status: "completed",
                    leg: None,
                    duration: self.router.simulated_secs(joined.elapsed()),
                    extra: Vec::new(),
                }
            }
            Some(DialTarget::Queue(noun)) => self.dial_queue(&dial, noun, base).await?,
            Some(DialTarget::Number(_) | DialTarget::Client(_)) => {
                let numbers: Vec<String> = dial
                    .targets
                    .iter()
                    .filter_map(|target| match target {
                        DialTarget::Number(to) | DialTarget::Client(to) => Some(to.clone()),
                        DialTarget::Conference(_) | DialTarget::Queue(_) => None,
                    })
                    .collect();
                self.dial_numbers(&dial, &numbers).await?
            }
        };
        let mut extra = vec![
            ("DialCallStatus".into(), dialled.status.to_string()),
            ("DialCallDuration".into(), dialled.duration.to_string()),
        ];
        if let Some(leg) = dialled.leg {
            extra.push(("DialCallSid".into(), leg));
        }
        extra.extend(dialled.extra);
        Ok(action(base, dial.action.as_deref(), dial.method, extra))
    }

    /// Rings every number at once; the first leg to answer wins and the others
    /// are cancelled (they end `canceled`; legs still ringing at the Dial's
    /// `timeout` end `no-answer`). Bridges the winner until either side hangs up
    /// or the Dial's `timeLimit` passes.
    async fn dial_numbers(
        &mut self,
        dial: &Dial,
        numbers: &[String],
    ) -> Result<Dialled, Interrupt> {
        let account = self.setup.account;
        let mut start = vec![("to", numbers.first().cloned().unwrap_or_default().into())];
        if numbers.len() > 1 {
            start.push(("numbers", numbers.to_vec().into()));
        }
        self.emit_verb("dial.start", "Dial", &start).await;
        let from = dial
            .caller_id
            .clone()
            .unwrap_or_else(|| self.setup.from.clone());
        let (tell, mut news) = mpsc::unbounded_channel();
        let mut legs = Vec::new();
        for to in numbers {
            let leg = self
                .router
                .dial_leg(account, &self.setup.sid, &from, to, dial.timeout);
            legs.push(leg.sid.clone());
            actix_web::rt::spawn(forward_leg_news(leg, tell.clone()));
        }
        drop(tell);
        // The legs ring before they answer or refuse: simulated time passes
        // (unless nothing rings at all: a Dial repeated then is a loop).
        self.time_passed |= self.router.ring_secs() > 0.0 && dial.timeout > 0;
        let mut unanswered = Vec::new();
        let winner = loop {
            tokio::select! {
                news = news.recv() => match news {
                    Some(LegNews::Answered(leg)) => break Some(leg),
                    Some(LegNews::Ended(_, outcome)) => {
                        unanswered.push(outcome.map_or(CallStatus::Failed, |o| o.status));
                        if unanswered.len() == legs.len() {
                            break None;
                        }
                    }
                    None => break None,
                },
                input = self.next_input() => if let Err(interrupt) = input {
                    self.hang_up(&legs);
                    self.emit_dial_end("canceled", 0, None, &[]).await;
                    return Err(interrupt);
                },
            }
        };
        let Some(winner) = winner else {
            let status = unanswered_status(&unanswered);
            self.emit_dial_end(status, 0, None, &[]).await;
            return Ok(Dialled::unanswered(status));
        };
        self.hang_up(legs.iter().filter(|leg| **leg != winner));
        let bridged = Instant::now();
        let limit = tokio::time::sleep(self.router.sim_time(f64::from(dial.time_limit)));
        tokio::pin!(limit);
        let mut limited = false;
        let outcome = loop {
            tokio::select! {
                news = news.recv() => match news {
                    Some(LegNews::Ended(leg, outcome)) if leg == winner => break outcome,
                    Some(_) => {}
                    None => break None,
                },
                _ = &mut limit, if !limited => {
                    limited = true;
                    self.hang_up([&winner]);
                }
                input = self.next_input() => if let Err(interrupt) = input {
                    self.hang_up([&winner]);
                    let duration = self.router.simulated_secs(bridged.elapsed());
                    self.emit_dial_end("completed", duration, Some(&winner), &[]).await;
                    return Err(interrupt);
                },
            }
        };
        let duration = outcome.map_or(0, |o| o.duration);
        let status = match outcome.map(|o| o.status) {
            Some(CallStatus::Busy) => "busy",
            Some(CallStatus::NoAnswer) => "no-answer",
            Some(CallStatus::Failed) => "failed",
            _ => "completed",
        };
        let mut end = Vec::new();
        let mut extra = Vec::new();
        if dial.record {
            // The bridged call's recording, as `<Record>`'s: said to exist, never
            // fetched (the simulated network carries no audio).
            let recording_sid = new_sid("RE");
            let url = self.router.recording_url(account, &recording_sid);
            end.push(("recording_url", url.clone().into()));
            extra = vec![
                ("RecordingUrl".to_owned(), url),
                ("RecordingSid".to_owned(), recording_sid),
                ("RecordingDuration".to_owned(), duration.to_string()),
            ];
        }
        self.emit_dial_end(status, duration, Some(&winner), &end)
            .await;
        Ok(Dialled {
            status,
            leg: Some(winner),
            duration,
            extra,
        })
    }

    // ---- queues ----

    /// `<Enqueue>`: waits in the queue, hearing `waitUrl`, until an agent takes
    /// the call (it is bridged until one side hangs up), the wait document's
    /// `<Leave>`, a hang-up or a redirect. The `action` then gets `QueueResult`.
    async fn enqueue(&mut self, enqueue: Enqueue, base: &Url) -> Result<Option<Flow>, Interrupt> {
        let account = self.setup.account;
        let joined = match self.router.enqueue(account, &enqueue.name, &self.setup.sid) {
            Ok(joined) => joined,
            Err(error) => {
                let result = if error == QueueError::Full {
                    "queue-full"
                } else {
                    let code = u16::try_from(RouterError::from(error).code).unwrap_or(0);
                    self.problem("call.warning", code, &error.to_string()).await;
                    "error"
                };
                self.router.count_queue_wait(result, Duration::ZERO);
                return Ok(queue_action(&enqueue, base, result, None, 0));
            }
        };
        let queue = InQueue {
            name: enqueue.name.clone(),
            sid: joined.queue_sid.clone(),
            since: Instant::now(),
        };
        self.queue = Some(queue.clone());
        self.emit_queue(
            "queue.join",
            &queue,
            joined.position,
            &[("size", joined.size.into())],
        )
        .await;
        let waited_out = match joined.agent {
            Some((partner, announcement)) => Interrupt::Bridged {
                partner,
                position: 1,
                announcement,
            },
            None => {
                self.hold(enqueue.wait_url.as_deref(), enqueue.wait_url_method, base)
                    .await
            }
        };
        let (interrupt, position) = self.out_of_queue(&queue, waited_out);
        self.queue = None;
        let waited = queue.since.elapsed();
        let waited_secs = self.router.simulated_secs(waited);
        let result = match &interrupt {
            Interrupt::Bridged { .. } => "bridged",
            Interrupt::Leave => "leave",
            Interrupt::Redirect(..) => "redirected",
            _ => "hangup",
        };
        self.router.count_queue_wait(result, waited);
        let mut data = vec![("wait_time", waited_secs.into()), ("result", result.into())];
        if let Interrupt::Bridged { partner, .. } = &interrupt {
            data.push(("participant", partner.clone().into()));
        }
        self.emit_queue("queue.leave", &queue, position, &data)
            .await;
        match interrupt {
            Interrupt::Bridged {
                partner,
                announcement,
                ..
            } => {
                self.bridge = Some(partner.clone());
                let bridged = self
                    .stay_bridged(&queue, &partner, waited_secs, announcement)
                    .await;
                self.bridge = None;
                bridged?;
            }
            Interrupt::Leave => {}
            other => return Err(other),
        }
        Ok(queue_action(
            &enqueue,
            base,
            result,
            Some(&queue.sid),
            waited_secs,
        ))
    }

    /// Takes the call out of its queue once `interrupt` ended its wait. Returns
    /// what happens to it and the place it left from: an agent may have taken it
    /// as it left, and then a `<Leave>` comes too late (it is bridged), while a
    /// hang-up or a redirect ends the new bridge at once (the agent is told).
    fn out_of_queue(&self, queue: &InQueue, interrupt: Interrupt) -> (Interrupt, usize) {
        if let Interrupt::Bridged { position, .. } = interrupt {
            return (interrupt, position);
        }
        let (account, sid) = (self.setup.account, &self.setup.sid);
        match self.router.leave_queue(account, &queue.sid, sid) {
            Left::Left { position } => (interrupt, position),
            Left::NotQueued => (interrupt, 0),
            Left::Bridged(partner) if matches!(interrupt, Interrupt::Leave) => (
                Interrupt::Bridged {
                    partner,
                    position: 1,
                    announcement: None,
                },
                1,
            ),
            Left::Bridged(_) => {
                self.router.unbridge(account, sid);
                (interrupt, 1)
            }
        }
    }

    /// A taken caller: hears the agent's `<Queue url>` document, then stays
    /// bridged until the agent leaves (`Ok`) or the caller hangs up or is
    /// redirected (the agent is told).
    async fn stay_bridged(
        &mut self,
        queue: &InQueue,
        agent: &str,
        waited: u64,
        announcement: Announcement,
    ) -> Result<(), Interrupt> {
        // Connected, the caller waits on the agent, not on itself.
        self.time_passed = true;
        let mut heard = Ok(());
        if let Some((url, method)) = announcement {
            let params = self.params(&[
                ("QueueSid", queue.sid.clone()),
                ("QueueTime", waited.to_string()),
                ("DequeingCallSid", agent.to_owned()),
            ]);
            match self.fetch(&url, method, &params).await {
                // A `Redirect` in it ends the announcement: the caller is connected.
                Ok(document) => heard = self.run_wait_document(document, &url).await.map(drop),
                Err(error) => {
                    self.problem("call.warning", error.code(), &error.to_string())
                        .await
                }
            }
        }
        let ended = match heard {
            Ok(()) => loop {
                if let Err(interrupt) = self.next_input().await {
                    break interrupt;
                }
            },
            Err(interrupt) => interrupt,
        };
        match ended {
            Interrupt::BridgeEnded => Ok(()),
            other => {
                self.router.unbridge(self.setup.account, &self.setup.sid);
                Err(other)
            }
        }
    }

    /// An agent's `<Dial><Queue>`: takes the caller waiting longest (or waits up
    /// to the Dial's `timeout` for one on an empty queue) and stays bridged until
    /// either hangs up or the Dial's `timeLimit`. A queue that does not exist is
    /// `failed`, as in Twilio.
    async fn dial_queue(
        &mut self,
        dial: &Dial,
        noun: &QueueNoun,
        base: &Url,
    ) -> Result<Dialled, Interrupt> {
        let account = self.setup.account;
        let name: Value = noun.name.clone().into();
        self.emit_verb("dial.start", "Dial", &[("queue", name.clone())])
            .await;
        let announcement = noun
            .url
            .as_deref()
            .and_then(|url| base.join(url).ok())
            .map(|url| (url, noun.method));
        let taken = self
            .router
            .take_caller(account, &noun.name, &self.setup.sid, announcement);
        let (queue_sid, caller) = match taken {
            Ok((sid, Some(taken))) => (sid, Some(taken.call_sid)),
            Ok((sid, None)) => {
                let caller = self.await_caller(dial, &sid).await?;
                (sid, caller)
            }
            Err(_) => {
                self.emit_dial_end("failed", 0, None, &[("queue", name)])
                    .await;
                return Ok(Dialled::unanswered("failed"));
            }
        };
        let Some(caller) = caller else {
            self.emit_dial_end("no-answer", 0, None, &[("queue", name)])
                .await;
            return Ok(Dialled::unanswered("no-answer"));
        };
        self.bridge = Some(caller.clone());
        self.time_passed = true;
        let bridged = Instant::now();
        let limit = tokio::time::sleep(self.router.sim_time(f64::from(dial.time_limit)));
        tokio::pin!(limit);
        let interrupted = loop {
            tokio::select! {
                _ = &mut limit => {
                    self.router.unbridge(account, &self.setup.sid);
                    break None;
                }
                input = self.next_input() => match input {
                    Ok(()) => {}
                    Err(Interrupt::BridgeEnded) => break None,
                    Err(other) => {
                        self.router.unbridge(account, &self.setup.sid);
                        break Some(other);
                    }
                },
            }
        };
        self.bridge = None;
        let duration = self.router.simulated_secs(bridged.elapsed());
        self.emit_dial_end("completed", duration, Some(&caller), &[("queue", name)])
            .await;
        if let Some(interrupt) = interrupted {
            return Err(interrupt);
        }
        Ok(Dialled {
            status: "completed",
            leg: Some(caller),
            duration,
            extra: vec![("QueueSid".into(), queue_sid)],
        })
    }

    /// An agent on the empty queue `queue` (its sid) waits up to the Dial's
    /// `timeout` for a caller; `None` when none came.
    async fn await_caller(
        &mut self,
        dial: &Dial,
        queue: &str,
    ) -> Result<Option<String>, Interrupt> {
        let account = self.setup.account;
        self.awaiting_caller = true;
        let wait = self.router.sim_time(f64::from(dial.timeout));
        self.time_passed |= !wait.is_zero();
        let timeout = tokio::time::sleep(wait);
        tokio::pin!(timeout);
        let outcome = loop {
            tokio::select! {
                _ = &mut timeout => break Ok(None),
                input = self.next_input() => match input {
                    Ok(()) => {}
                    Err(Interrupt::Bridged { partner, .. }) => break Ok(Some(partner)),
                    Err(other) => break Err(other),
                },
            }
        };
        self.awaiting_caller = false;
        match outcome {
            Ok(Some(caller)) => Ok(Some(caller)),
            // A caller may have come as the wait ended: then it is this agent's.
            Ok(None) => Ok(self.router.stop_waiting(account, queue, &self.setup.sid)),
            Err(interrupt) => {
                if self
                    .router
                    .stop_waiting(account, queue, &self.setup.sid)
                    .is_some()
                {
                    self.router.unbridge(account, &self.setup.sid);
                }
                Err(interrupt)
            }
        }
    }

    /// `dial.end`: how the Dial went, the leg (or queued caller) it connected
    /// to, and `extra` (`queue`, `recording_url`).
    async fn emit_dial_end(
        &self,
        status: &str,
        duration: u64,
        leg: Option<&str>,
        extra: &[(&str, Value)],
    ) {
        let mut data = vec![
            ("dial_call_status", status.into()),
            ("duration", duration.into()),
        ];
        if let Some(leg) = leg {
            data.push(("dial_call_sid", leg.into()));
        }
        data.extend_from_slice(extra);
        self.emit_verb("dial.end", "Dial", &data).await;
    }

    /// Hangs up `calls` (dialled legs), as the dialling call's side does.
    fn hang_up<'a>(&self, calls: impl IntoIterator<Item = &'a String>) {
        for call in calls {
            let _ = self
                .router
                .input(self.setup.account, call, CallInput::Hangup);
        }
    }

    /// Emits a `queue.*` event of `queue`: `data.queue`, `queue_sid`, `position`
    /// and `extra`.
    async fn emit_queue(
        &self,
        type_name: &str,
        queue: &InQueue,
        position: usize,
        extra: &[(&str, Value)],
    ) {
        let mut data = vec![
            ("queue", queue.name.clone().into()),
            ("queue_sid", queue.sid.clone().into()),
            ("position", position.into()),
        ];
        data.extend_from_slice(extra);
        self.emit_verb(type_name, "Enqueue", &data).await;
    }

    /// The parameters of a wait document's request: the call's, and while it
    /// waits in a queue Twilio's `QueuePosition`, `QueueTime`, `AvgQueueTime`,
    /// `CurrentQueueSize`, `MaxQueueSize` and `QueueSid`.
    fn wait_params(&self) -> Vec<(String, String)> {
        let mut params = self.params(&[]);
        if let Some(queue) = &self.queue {
            let waited = self.router.simulated_secs(queue.since.elapsed());
            if let Some(standing) =
                self.router
                    .standing(self.setup.account, &queue.sid, &self.setup.sid)
            {
                params.extend(standing.params(waited));
            }
        }
        params
    }

    /// Joins a conference room until the call hangs up, is redirected or the room
    /// ends. Until a participant with `startConferenceOnEnter` enters, the call is
    /// held, hearing the room's `waitUrl`.
    async fn conference(&mut self, room: &Conference, base: &Url) -> Result<(), Interrupt> {
        let started = self.router.join_room(
            self.setup.account,
            &room.name,
            &self.setup.sid,
            room.muted,
            room.start_conference_on_enter,
            room.end_conference_on_exit,
        );
        self.room = Some(InRoom {
            name: room.name.clone(),
            muted: room.muted,
            held: !started,
        });
        let status = if started { "started" } else { "held" };
        self.emit_room(
            "conference.join",
            &[
                ("status", status.into()),
                ("beep", room.beeps_on_enter().into()),
            ],
        )
        .await;
        if !started {
            match self
                .hold(room.wait_url.as_deref(), room.wait_method, base)
                .await
            {
                Interrupt::RoomStarted => {}
                other => return self.leave(room, other).await,
            }
        }
        let interrupt = loop {
            if let Err(interrupt) = self.next_input().await {
                break interrupt;
            }
        };
        self.leave(room, interrupt).await
    }

    /// Leaves the call's room because of `interrupt`: the room ending goes on with
    /// the document, anything else interrupts it.
    async fn leave(&mut self, room: &Conference, interrupt: Interrupt) -> Result<(), Interrupt> {
        // In a room the call waits on others, not on itself.
        self.time_passed = true;
        self.router
            .leave_room(self.setup.account, &room.name, &self.setup.sid);
        self.emit_room("conference.leave", &[("beep", room.beeps_on_exit().into())])
            .await;
        self.room = None;
        match interrupt {
            Interrupt::RoomEnded => Ok(()),
            other => Err(other),
        }
    }

    /// Mutes or unmutes the call in its room, held or not (outside one, nothing).
    async fn mute(&mut self, want: bool) {
        let Some(room) = &mut self.room else {
            return;
        };
        if self
            .router
            .set_muted(self.setup.account, &room.name, &self.setup.sid, want)
        {
            room.muted = want;
            let type_name = if want {
                "conference.mute"
            } else {
                "conference.unmute"
            };
            self.emit_room(type_name, &[]).await;
        }
    }

    /// Emits a `conference.*` event of the call's room, with `extra` data.
    async fn emit_room(&self, type_name: &str, extra: &[(&str, Value)]) {
        let Some(room) = &self.room else {
            return;
        };
        let mut data = vec![
            ("conference", room.name.clone().into()),
            ("participant", self.setup.sid.clone().into()),
            ("muted", room.muted.into()),
        ];
        data.extend_from_slice(extra);
        self.emit_verb(type_name, "Dial", &data).await;
    }

    /// Holds the call (in a conference not started, in a queue) until an
    /// interrupt: it hears `wait_url` until that fails or stops letting simulated
    /// time pass, then waits in silence, as without one (Twilio's default hold
    /// music is not simulated).
    async fn hold(&mut self, wait_url: Option<&str>, method: Method, base: &Url) -> Interrupt {
        if let Some(wait_url) = wait_url {
            let waited = match base.join(wait_url) {
                Ok(url) => self.wait_documents(url, method).await,
                Err(_) => {
                    self.problem("call.warning", 11200, "waitUrl: not a valid URL")
                        .await;
                    Ok(())
                }
            };
            if let Err(interrupt) = waited {
                return interrupt;
            }
        }
        // Waiting in silence is waiting on others, not a loop of documents.
        self.time_passed = true;
        loop {
            if let Err(interrupt) = self.next_input().await {
                return interrupt;
            }
        }
    }

    /// Plays the wait documents of `wait_url` over and over, as Twilio does: each
    /// is requested with the call's parameters and run (following its `Redirect`),
    /// then `wait_url` is requested again. An audio URL (`.mp3`, `.wav`) is played
    /// instead of requested. Returns when the participant should wait in silence:
    /// a request failed, or the documents ran
    /// [`MAX_IDLE_DOCUMENTS`](super::call_limits::MAX_IDLE_DOCUMENTS) times in a
    /// row without simulated time passing (a `call.warning` says which).
    async fn wait_documents(
        &mut self,
        wait_url: Url,
        wait_method: Method,
    ) -> Result<(), Interrupt> {
        let (mut url, mut method) = (wait_url.clone(), wait_method);
        loop {
            self.time_passed = false;
            let next = if is_audio(&url) {
                let play = Play {
                    url: url.to_string(),
                    ..Play::default()
                };
                self.play(&play, &url, false).await?;
                None
            } else {
                match self.fetch(&url, method, &self.wait_params()).await {
                    Ok(document) => self.run_wait_document(document, &url).await?,
                    Err(error) => {
                        self.problem("call.warning", error.code(), &error.to_string())
                            .await;
                        return Ok(());
                    }
                }
            };
            let time_passed = std::mem::take(&mut self.time_passed);
            if let Err(error) = self.idle_documents.finished(time_passed) {
                self.problem("call.warning", LOOP_ERROR_CODE, &error.to_string())
                    .await;
                return Ok(());
            }
            (url, method) = next.unwrap_or_else(|| (wait_url.clone(), wait_method));
        }
    }

    /// Runs a wait document, whose verbs Twilio limits to `Say`, `Play`, `Pause`
    /// and `Redirect`, and for a queue's also `Leave` and `Hangup` (any other is
    /// skipped with a `call.warning`). Returns the `Redirect`'s target, if it has
    /// one.
    async fn run_wait_document(
        &mut self,
        document: Response,
        base: &Url,
    ) -> Result<Option<(Url, Method)>, Interrupt> {
        for verb in document.verbs {
            self.count(&verb);
            match verb {
                Verb::Say(say) => self.say(&say, false).await?,
                Verb::Play(play) => self.play(&play, base, false).await?,
                Verb::Pause(pause) => {
                    self.wait(self.router.sim_time(f64::from(pause.length)))
                        .await?
                }
                Verb::Redirect(redirect) => {
                    let Ok(url) = base.join(&redirect.url) else {
                        self.problem("call.warning", 12100, "Redirect: not a valid URL")
                            .await;
                        return Ok(None);
                    };
                    self.emit_verb("redirect", "Redirect", &[("url", url.as_str().into())])
                        .await;
                    return Ok(Some((url, redirect.method)));
                }
                Verb::Leave if self.queue.is_some() => return Err(Interrupt::Leave),
                Verb::Hangup if self.queue.is_some() => return Err(Interrupt::Hangup),
                _ => {
                    self.problem(
                        "call.warning",
                        12200,
                        "a verb a wait document may not hold was skipped",
                    )
                    .await
                }
            }
        }
        Ok(None)
    }
}

/// Whether a `waitUrl` names audio to play rather than a document to run.
fn is_audio(url: &Url) -> bool {
    let path = url.path().to_ascii_lowercase();
    path.ends_with(".mp3") || path.ends_with(".wav")
}

/// Resolves at `deadline`; never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The request an `action` URL asks for, if the verb has one.
fn action(
    base: &Url,
    action: Option<&str>,
    method: Method,
    extra: Vec<(String, String)>,
) -> Option<Flow> {
    let url = base.join(action?).ok()?;
    Some(Flow::Fetch(url, method, extra))
}

/// An `<Enqueue>`'s `action` request, with Twilio's `QueueResult`, `QueueSid` and
/// `QueueTime`.
fn queue_action(
    enqueue: &Enqueue,
    base: &Url,
    result: &str,
    queue_sid: Option<&str>,
    waited: u64,
) -> Option<Flow> {
    let mut extra = vec![
        ("QueueResult".to_owned(), result.to_owned()),
        ("QueueTime".to_owned(), waited.to_string()),
    ];
    if let Some(sid) = queue_sid {
        extra.push(("QueueSid".to_owned(), sid.to_owned()));
    }
    action(base, enqueue.action.as_deref(), enqueue.method, extra)
}

/// What a `<Dial>`ing call hears of one of its legs.
enum LegNews {
    Answered(String),
    Ended(String, Option<CallOutcome>),
}

/// Tells the dialling call when `leg` answers (if it does) and how it ends.
async fn forward_leg_news(leg: super::Leg, tell: mpsc::UnboundedSender<LegNews>) {
    if leg.answered.await.is_ok() {
        let _ = tell.send(LegNews::Answered(leg.sid.clone()));
    }
    let _ = tell.send(LegNews::Ended(leg.sid, leg.ended.await.ok()));
}

/// The `DialCallStatus` of a Dial no leg answered: what every leg ended as
/// when they agree (all `busy`, all `failed`), `no-answer` otherwise.
fn unanswered_status(statuses: &[CallStatus]) -> &'static str {
    let status = |s: &CallStatus| match s {
        CallStatus::Busy => "busy",
        CallStatus::Failed => "failed",
        _ => "no-answer",
    };
    match statuses.split_first() {
        Some((first, rest)) if rest.iter().all(|s| status(s) == status(first)) => status(first),
        _ => "no-answer",
    }
}

/// How a call its application `<Reject>`s ends.
fn rejected(reason: RejectReason) -> CallStatus {
    match reason {
        RejectReason::Busy => CallStatus::Busy,
        RejectReason::Rejected => CallStatus::NoAnswer,
    }
}

/// The base URL of an inline document: relative URLs in it cannot resolve.
fn inline_base() -> Url {
    Url::parse("http://inline.invalid/").expect("a valid constant URL")
}

/// The metric label of a verb: its name from the fixed list of
/// [`VERBS`](crate::metrics::VERBS) (`<Sms>` counts as `Message`, anything unknown as
/// `unknown`, so applications cannot mint label values).
fn verb_label(verb: &Verb) -> &str {
    match verb {
        Verb::Unknown { .. } => "unknown",
        Verb::Message(_) => "Message",
        known => known.verb_name(),
    }
}
