//! The call router (docs/api.md §7): numbers, calls, messages and conference rooms of
//! every account, and the simulated telephone network that drives them.
//!
//! Each call is an actor (`actors::call`) running its [`program::Program`];
//! this registry is what the REST API, the simulator and client events look calls up
//! in, and how calls find each other (a `<Dial>` leg, a conference room). Events go
//! into the event router in-process through the [`Publisher`](crate::publisher::Publisher).

pub mod app;
pub mod call_limits;
pub mod hops;
pub mod listening;
pub mod live;
pub mod program;
pub mod queueing;
pub mod queues;
pub mod records;
pub mod sink;
pub mod steer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::account::{AccountIdx, Accounts};
use crate::config::SimConfig;
use crate::egress::Egress;
use crate::event::Draft;
use crate::limits::Quotas;
use crate::metrics::Metrics;
use crate::store::log::EventLog;
use crate::store::records::RecordWrite;
use crate::store::{Store, StoreError};
use crate::twiml::Method;
use app::AppClient;
use hops::Hop;
pub use listening::Utterance;
use live::{LiveCall, LiveCalls};
pub use program::{AppSource, CallInput, CallSetup};
use records::{
    is_e164, new_sid, CallRecord, CallStatus, Direction, KeptPerAccount, MessageRecord,
    NumberRecord, Resource,
};
use sink::EventSink;

/// A refusal, with Twilio's error code and the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RouterError {
    /// Twilio's error code.
    pub code: u32,
    /// HTTP status.
    pub status: u16,
    /// What is wrong, naming the parameter.
    pub message: String,
}

impl RouterError {
    /// A 400 with a Twilio code.
    pub fn invalid(code: u32, message: impl Into<String>) -> RouterError {
        RouterError {
            code,
            status: 400,
            message: message.into(),
        }
    }

    /// A 429 over a `[limits]` quota (Twilio's 20429, Too Many Requests), the
    /// message naming the config key.
    pub fn quota(error: crate::limits::QuotaError) -> RouterError {
        RouterError {
            code: 20429,
            status: 429,
            message: error.to_string(),
        }
    }

    /// A 503 (Twilio 20503, Service Unavailable): nothing was done.
    pub fn unavailable(message: impl Into<String>) -> RouterError {
        RouterError {
            code: 20503,
            status: 503,
            message: message.into(),
        }
    }

    /// A 404 (Twilio 20404).
    pub fn not_found(what: &str) -> RouterError {
        RouterError {
            code: 20404,
            status: 404,
            message: format!("The requested resource {what} was not found"),
        }
    }
}

/// How a call ended, told to whoever waits on it (a `<Dial>`ing parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    /// Final status.
    pub status: CallStatus,
    /// Simulated seconds it was up.
    pub duration: u64,
}

struct CallEntry {
    record: CallRecord,
    addr: Option<Recipient<CallInput>>,
    /// The `call.start` data while the call is live: what signed senders' grants are
    /// checked against (`steer.rs`).
    start: Option<Map<String, Value>>,
    watchers: Vec<oneshot::Sender<CallOutcome>>,
    /// Told when the call answers (a `<Dial>`ing parent waits for the first leg).
    answer_watcher: Option<oneshot::Sender<()>>,
}

/// Who learns of a call's answer and end.
#[derive(Default)]
struct Watchers {
    answered: Option<oneshot::Sender<()>>,
    ended: Option<oneshot::Sender<CallOutcome>>,
}

/// A `<Dial>` leg, ringing.
pub struct Leg {
    /// Its CallSid.
    pub sid: String,
    /// Resolves when it answers; dropped unresolved when it ends unanswered.
    pub answered: oneshot::Receiver<()>,
    /// Resolves with how it ended.
    pub ended: oneshot::Receiver<CallOutcome>,
}

struct Participant {
    call_sid: String,
    muted: bool,
    end_on_exit: bool,
}

#[derive(Default)]
struct Room {
    participants: Vec<Participant>,
    /// Whether a participant with `startConferenceOnEnter` has entered; until then
    /// every participant is held (hearing its `waitUrl`).
    started: bool,
}

impl Room {
    /// Adds `participant`. One that starts the conference (`starts`) starts a room
    /// that has not started: the participants held until then are returned, to be
    /// told.
    fn enter(&mut self, participant: Participant, starts: bool) -> Vec<String> {
        let released = if starts && !self.started {
            self.started = true;
            self.participants
                .iter()
                .map(|p| p.call_sid.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.participants.push(participant);
        released
    }
}

struct Registry {
    numbers: HashMap<String, NumberRecord>,
    calls: HashMap<String, CallEntry>,
    ended_calls: KeptPerAccount,
    messages: HashMap<String, MessageRecord>,
    message_order: KeptPerAccount,
    rooms: HashMap<(AccountIdx, String), Room>,
    queues: queues::QueueBook,
}

impl Registry {
    fn new(keep_ended: usize) -> Registry {
        Registry {
            numbers: HashMap::new(),
            calls: HashMap::new(),
            ended_calls: KeptPerAccount::new(keep_ended),
            messages: HashMap::new(),
            message_order: KeptPerAccount::new(keep_ended),
            rooms: HashMap::new(),
            queues: queues::QueueBook::default(),
        }
    }
}

/// A new number's settings, as the REST API takes them.
#[derive(Debug, Clone, Default)]
pub struct NewNumber {
    /// E.164.
    pub phone_number: String,
    /// Display name (defaults to the number).
    pub friendly_name: Option<String>,
    /// Voice application.
    pub voice_url: Option<String>,
    /// Its method.
    pub voice_method: Method,
    /// SMS application.
    pub sms_url: Option<String>,
    /// Its method.
    pub sms_method: Method,
    /// Called when a call to the number ends.
    pub status_callback: Option<String>,
}

/// The call router. Shared by `Arc`.
pub struct CallRouter {
    accounts: Arc<Accounts>,
    sink: EventSink,
    app: AppClient,
    sim: SimConfig,
    /// `call_router.max_call_secs`.
    max_call_secs: u64,
    base_url: String,
    metrics: Metrics,
    registry: Mutex<Registry>,
    quotas: Arc<Quotas>,
    /// Call programs still running (a drain waits for them).
    live: LiveCalls,
    /// Set by a drain: calls starting from now on end at once.
    stopping: AtomicBool,
    /// Starts a call's actor (`actors::call::start`).
    start: StartCall,
    /// With `data_dir`: where provisioned numbers are kept.
    store: Option<Arc<Store>>,
    /// With `data_dir` on a single node: where calls and messages are kept.
    log: Option<EventLog>,
}

/// How the router starts a call: the actor lives in `actors::call`, which depends on
/// this module, so it is handed in rather than named here.
pub type StartCall = fn(Arc<CallRouter>, CallSetup, LiveCall) -> Recipient<CallInput>;

/// The call router's settings, from the config.
pub struct RouterSettings {
    /// Simulated time and ring delay.
    pub sim: SimConfig,
    /// Prefixes recording URLs (this server's own address).
    pub base_url: String,
    /// Ended calls, and messages, each account keeps (`call_router.keep_ended`).
    pub keep_ended: usize,
    /// Longest a call may last, in simulated seconds (`call_router.max_call_secs`).
    pub max_call_secs: u64,
    /// Starts a call's actor.
    pub start: StartCall,
    /// With `data_dir`: where provisioned numbers are kept.
    pub store: Option<Arc<Store>>,
    /// With `data_dir` on a single node: where calls and messages are kept.
    pub log: Option<EventLog>,
}

impl CallRouter {
    /// A router with no numbers, publishing its events into `sink`; applications
    /// are requested under `egress`'s rules; `quotas` bounds each account's running
    /// calls.
    pub fn new(
        accounts: Arc<Accounts>,
        sink: EventSink,
        egress: Egress,
        metrics: Metrics,
        quotas: Arc<Quotas>,
        settings: RouterSettings,
    ) -> Arc<CallRouter> {
        let RouterSettings {
            sim,
            base_url,
            keep_ended,
            max_call_secs,
            start,
            store,
            log,
        } = settings;
        Arc::new(CallRouter {
            accounts,
            sink,
            app: AppClient::new(egress),
            sim,
            max_call_secs,
            base_url,
            metrics,
            registry: Mutex::new(Registry::new(keep_ended)),
            quotas,
            live: LiveCalls::new(),
            stopping: AtomicBool::new(false),
            start,
            store,
            log,
        })
    }

    /// Loads the numbers kept in the store (with `data_dir`), before the node
    /// serves. A number of an account the configuration no longer lists is left
    /// in the store, unrouted, and logged.
    pub fn restore_numbers(&self) -> Result<usize, StoreError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut registry = self.registry.lock();
        let mut restored = 0;
        for kept in store.numbers()? {
            let Some(account) = self.accounts.lookup(&kept.account_sid) else {
                tracing::warn!(number = %kept.sid, "a kept number's account is not configured: not routed");
                continue;
            };
            let record = NumberRecord::from_stored(account, kept);
            registry.numbers.insert(record.phone_number.clone(), record);
            restored += 1;
        }
        Ok(restored)
    }

    /// With `data_dir`: the kept calls and messages back, within
    /// `call_router.keep_ended` per account, before the node serves. A call that
    /// was live when the node stopped without a drain (a crash) is recorded
    /// `failed` and returned, so its `call.end` can be published
    /// ([`CallRouter::announce_interrupted`]).
    pub fn restore_records(&self) -> Result<Vec<CallRecord>, StoreError> {
        let Some(log) = &self.log else {
            return Ok(Vec::new());
        };
        let (calls, messages) = log.store().records()?;
        let mut records: Vec<CallRecord> = calls
            .into_iter()
            .filter_map(|kept| {
                let account = self.accounts.lookup(&kept.account_sid)?;
                CallRecord::from_kept(account, kept)
            })
            .collect();
        let now = Utc::now();
        let mut interrupted = Vec::new();
        for record in records.iter_mut().filter(|r| !r.status.is_final()) {
            record.status = CallStatus::Failed;
            record.updated = now;
            record.end = Some(now);
            record.duration = Some(0);
            self.keep_call(record);
            interrupted.push(record.clone());
        }
        // Oldest end first, so the newest are the ones kept.
        records.sort_by_key(|r| r.end);
        let mut messages: Vec<MessageRecord> = messages
            .into_iter()
            .filter_map(|kept| {
                let account = self.accounts.lookup(&kept.account_sid)?;
                MessageRecord::from_kept(account, kept)
            })
            .collect();
        messages.sort_by_key(|m| m.created);
        for record in records {
            let (account, sid) = (record.account, record.sid.clone());
            let mut registry = self.registry.lock();
            registry.calls.insert(
                sid.clone(),
                CallEntry {
                    record,
                    addr: None,
                    start: None,
                    watchers: Vec::new(),
                    answer_watcher: None,
                },
            );
            if let Some(old) = registry.ended_calls.push(account, sid) {
                registry.calls.remove(&old);
                drop(registry);
                self.keep_record(RecordWrite::DropCall(old));
            }
        }
        for record in messages {
            self.remember_message(record);
        }
        Ok(interrupted)
    }

    /// Publishes `call.end` for calls a crash interrupted (`data.status`
    /// `failed`, `data.interrupted` true). No status callback is requested: the
    /// application's call ended with the node, long before.
    pub async fn announce_interrupted(&self, calls: Vec<CallRecord>) {
        for call in calls {
            let mut data = Map::new();
            data.insert("status".into(), call.status.as_str().into());
            data.insert("duration".into(), 0.into());
            data.insert("direction".into(), call.direction.as_str().into());
            data.insert("interrupted".into(), true.into());
            self.emit(call.account, "call.end", Some(&call.sid), data)
                .await;
        }
    }

    /// Keeps a call's record as it is now (with `data_dir`).
    fn keep_call(&self, record: &CallRecord) {
        let sid = &self.accounts.get(record.account).sid;
        self.keep_record(RecordWrite::Call(record.kept(sid)));
    }

    fn keep_record(&self, write: RecordWrite) {
        if let Some(log) = &self.log {
            log.keep_record(write);
        }
    }

    /// Signed requests to applications.
    pub fn app(&self) -> &AppClient {
        &self.app
    }

    /// The account's auth token (signs requests to its applications).
    pub fn token(&self, account: AccountIdx) -> Arc<str> {
        self.accounts.get(account).auth_token.clone().into()
    }

    /// The account's sid.
    pub fn account_sid(&self, account: AccountIdx) -> &str {
        &self.accounts.get(account).sid
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Converts simulated seconds into real time with `sim.time_scale`.
    pub fn sim_time(&self, simulated_secs: f64) -> Duration {
        crate::clock::from_secs_f64(simulated_secs * self.sim.time_scale)
    }

    /// When a call answered at `answered` must end: its `TimeLimit` or
    /// `call_router.max_call_secs`, whichever is less, in scaled time. `None` when
    /// that lies beyond what the clock can represent (the call is unbounded in
    /// practice).
    pub fn call_deadline(
        &self,
        answered: tokio::time::Instant,
        requested: Option<u64>,
    ) -> Option<tokio::time::Instant> {
        let secs = call_limits::time_limit(requested, self.max_call_secs) as f64;
        let real = Duration::try_from_secs_f64(secs * self.sim.time_scale).ok()?;
        answered.checked_add(real)
    }

    /// Converts real time back into whole simulated seconds (rounded up).
    pub fn simulated_secs(&self, real: Duration) -> u64 {
        (real.as_secs_f64() / self.sim.time_scale).ceil() as u64
    }

    /// The simulated ring time.
    pub fn ring_secs(&self) -> f64 {
        self.sim.ring_secs
    }

    /// Where recordings are said to live.
    pub fn recording_url(&self, account: AccountIdx, recording_sid: &str) -> String {
        format!(
            "{}/{}/Accounts/{}/Recordings/{recording_sid}",
            self.base_url,
            records::API_VERSION,
            self.account_sid(account)
        )
    }

    /// Whether the server is draining: a call starting now ends at once.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Drains the router (docs/api.md §8): hangs up every live call — answered calls end
    /// `completed`, calls still ringing `canceled`, as when the far end hangs up —
    /// and waits, at most `within`, until each has published its `call.end` and
    /// requested its `StatusCallback`. Calls starting from now on end at once. Errs
    /// with the number of calls still running when `within` passed.
    pub async fn end_calls(&self, within: Duration) -> Result<(), usize> {
        self.stopping.store(true, Ordering::SeqCst);
        let live: Vec<Recipient<CallInput>> = self
            .registry
            .lock()
            .calls
            .values()
            .filter_map(|entry| entry.addr.clone())
            .collect();
        tracing::info!(calls = live.len(), "hanging up live calls");
        for call in live {
            // do_send: a hang-up must not be lost to a full mailbox.
            call.do_send(CallInput::Hangup);
        }
        self.live.ended(within).await
    }

    /// Publishes one event into the event router (see [`EventSink::publish`]). A
    /// refusal (a remote router overloaded past every retry, shutdown) is counted and
    /// logged: a call must not stop because its observers are slow.
    pub async fn emit(
        &self,
        account: AccountIdx,
        type_name: &str,
        call_sid: Option<&str>,
        data: Map<String, Value>,
    ) {
        let draft = Draft {
            type_name: type_name.to_owned(),
            call_sid: call_sid.map(str::to_owned),
            scope: None,
            data: data.into(),
        };
        if let Err(error) = self.sink.publish(account, draft).await {
            self.metrics.call_events_refused.inc();
            tracing::warn!(cause = %error, event = type_name, "a call event was not published");
        }
    }

    // ---- numbers ----

    /// Provisions a number for an account.
    pub fn provision(
        &self,
        account: AccountIdx,
        new: NewNumber,
    ) -> Result<NumberRecord, RouterError> {
        if !is_e164(&new.phone_number) {
            return Err(RouterError::invalid(
                21421,
                "PhoneNumber is not a valid E.164 number (+ and 8 to 15 digits)",
            ));
        }
        for (name, url) in [
            ("VoiceUrl", &new.voice_url),
            ("SmsUrl", &new.sms_url),
            ("StatusCallback", &new.status_callback),
        ] {
            if let Some(url) = url {
                self.app.check(name, url)?;
            }
        }
        let mut registry = self.registry.lock();
        if registry.numbers.contains_key(&new.phone_number) {
            return Err(RouterError::invalid(
                21452,
                format!("PhoneNumber {} is already provisioned", new.phone_number),
            ));
        }
        let record = NumberRecord {
            sid: new_sid("PN"),
            account,
            friendly_name: new
                .friendly_name
                .unwrap_or_else(|| new.phone_number.clone()),
            phone_number: new.phone_number,
            voice_url: new.voice_url,
            voice_method: new.voice_method,
            sms_url: new.sms_url,
            sms_method: new.sms_method,
            status_callback: new.status_callback,
            created: Utc::now(),
        };
        // Kept before it is routed or answered: a 201 means it survives a crash.
        // Provisioning is rare, so waiting for the commit under the lock is fine.
        if let Some(store) = &self.store {
            let account_sid = &self.accounts.get(account).sid;
            store
                .put_number(&record.stored(account_sid))
                .map_err(|error| {
                    tracing::error!(%error, "a number could not be kept");
                    RouterError::unavailable("the number could not be stored; retry shortly")
                })?;
        }
        registry
            .numbers
            .insert(record.phone_number.clone(), record.clone());
        Ok(record)
    }

    /// An account's numbers, oldest first.
    pub fn numbers(&self, account: AccountIdx) -> Vec<NumberRecord> {
        listed(self.registry.lock().numbers.values(), account, false)
    }

    /// One number of an account, by sid.
    pub fn number(&self, account: AccountIdx, sid: &str) -> Option<NumberRecord> {
        self.registry
            .lock()
            .numbers
            .values()
            .find(|n| n.account == account && n.sid == sid)
            .cloned()
    }

    fn own_number(&self, account: AccountIdx, phone: &str) -> Option<NumberRecord> {
        self.registry
            .lock()
            .numbers
            .get(phone)
            .filter(|n| n.account == account)
            .cloned()
    }

    // ---- calls ----

    /// Starts a call of its own (inbound or REST-placed), within the account's
    /// `limits.calls_per_account`; the slot is given back in [`CallRouter::finish`].
    /// The legs a call dials are not counted: their parent bounds them.
    fn start_call(self: &Arc<Self>, setup: CallSetup) -> Result<String, RouterError> {
        self.quotas
            .acquire_call(setup.account)
            .map_err(RouterError::quota)?;
        Ok(self.start_call_watched(setup, Watchers::default()))
    }

    /// Registers and starts a call; `watchers` learn when it answers and how it
    /// ends.
    fn start_call_watched(self: &Arc<Self>, setup: CallSetup, watchers: Watchers) -> String {
        let sid = setup.sid.clone();
        let now = Utc::now();
        let record = CallRecord {
            sid: sid.clone(),
            account: setup.account,
            parent: setup.parent.clone(),
            to: setup.to.clone(),
            from: setup.from.clone(),
            status: if setup.ring {
                CallStatus::Queued
            } else {
                CallStatus::Ringing
            },
            direction: setup.direction,
            created: now,
            updated: now,
            start: None,
            end: None,
            duration: None,
        };
        self.keep_call(&record);
        self.registry.lock().calls.insert(
            sid.clone(),
            CallEntry {
                record,
                addr: None,
                start: None,
                watchers: watchers.ended.into_iter().collect(),
                answer_watcher: watchers.answered,
            },
        );
        self.metrics
            .calls_started
            .with_label_values(&[setup.direction.as_str()])
            .inc();
        self.metrics.calls_active.inc();
        let addr = (self.start)(self.clone(), setup, self.live.enter());
        if let Some(entry) = self.registry.lock().calls.get_mut(&sid) {
            entry.addr = Some(addr);
        }
        sid
    }

    /// An inbound call from the simulated network to a number of the account.
    pub fn inbound_call(
        self: &Arc<Self>,
        account: AccountIdx,
        from: &str,
        to: &str,
    ) -> Result<String, RouterError> {
        let number = self
            .own_number(account, to)
            .ok_or_else(|| RouterError::not_found(&format!("number {to}")))?;
        let source = match &number.voice_url {
            Some(url) => AppSource::Url(url.clone(), number.voice_method),
            None => AppSource::Twiml("<Response><Hangup/></Response>".into()),
        };
        self.start_call(CallSetup {
            sid: new_sid("CA"),
            account,
            from: from.to_owned(),
            to: to.to_owned(),
            direction: Direction::Inbound,
            source,
            status_callback: number.status_callback.clone(),
            ring: false,
            parent: None,
            time_limit: None,
            answer_within: None,
        })
    }

    /// An outbound call placed through the REST API.
    pub fn place_call(
        self: &Arc<Self>,
        account: AccountIdx,
        to: &str,
        from: &str,
        source: AppSource,
        status_callback: Option<String>,
        time_limit: Option<u64>,
    ) -> Result<CallRecord, RouterError> {
        if let AppSource::Url(url, _) = &source {
            self.app.check("Url", url)?;
        }
        if let Some(url) = &status_callback {
            self.app.check("StatusCallback", url)?;
        }
        let sid = self.start_call(CallSetup {
            sid: new_sid("CA"),
            account,
            from: from.to_owned(),
            to: to.to_owned(),
            direction: Direction::OutboundApi,
            source,
            status_callback,
            ring: true,
            parent: None,
            time_limit,
            answer_within: None,
        })?;
        self.call(account, &sid)
            .ok_or_else(|| RouterError::not_found("call"))
    }

    /// Starts the far end of a `<Dial>` to `to`, ringing: the number's own
    /// application when the account owns it (the leg answers once the application
    /// has given its first document), otherwise a simulated party that answers
    /// after `sim.ring_secs` and stays on the line. Unanswered after `timeout`
    /// simulated seconds, it ends `no-answer`.
    pub fn dial_leg(
        self: &Arc<Self>,
        account: AccountIdx,
        parent: &str,
        from: &str,
        to: &str,
        timeout: u32,
    ) -> Leg {
        let (direction, source, status_callback) = match self.own_number(account, to) {
            Some(number) => (
                Direction::Inbound,
                number.voice_url.clone().map_or(AppSource::FarEnd, |url| {
                    AppSource::Url(url, number.voice_method)
                }),
                number.status_callback.clone(),
            ),
            None => (Direction::OutboundDial, AppSource::FarEnd, None),
        };
        let (ended_tx, ended) = oneshot::channel();
        let (answered_tx, answered) = oneshot::channel();
        let sid = self.start_call_watched(
            CallSetup {
                sid: new_sid("CA"),
                account,
                from: from.to_owned(),
                to: to.to_owned(),
                direction,
                source,
                status_callback,
                ring: true,
                parent: Some(parent.to_owned()),
                time_limit: None,
                answer_within: Some(timeout),
            },
            Watchers {
                ended: Some(ended_tx),
                answered: Some(answered_tx),
            },
        );
        Leg {
            sid,
            answered,
            ended,
        }
    }

    /// Updates a call's status (and its start time when it is answered).
    pub fn set_status(&self, sid: &str, status: CallStatus) {
        if let Some(entry) = self.registry.lock().calls.get_mut(sid) {
            let now = Utc::now();
            entry.record.status = status;
            entry.record.updated = now;
            if status == CallStatus::InProgress && entry.record.start.is_none() {
                entry.record.start = Some(now);
                if let Some(answered) = entry.answer_watcher.take() {
                    let _ = answered.send(());
                }
            }
            self.keep_call(&entry.record);
        }
    }

    /// Records a call's end and tells whoever waits on it.
    pub fn finish(&self, sid: &str, outcome: CallOutcome) {
        let mut registry = self.registry.lock();
        let Some(entry) = registry.calls.get_mut(sid) else {
            return;
        };
        // Once per call: a second report of its end must not free another call's slot.
        let first_end = entry.record.end.is_none();
        let now = Utc::now();
        entry.record.status = outcome.status;
        entry.record.updated = now;
        entry.record.end = Some(now);
        entry.record.duration = Some(outcome.duration);
        entry.addr = None;
        entry.start = None;
        if first_end && entry.record.parent.is_none() {
            self.quotas.release_call(entry.record.account);
        }
        // Unanswered: whoever waits for the answer learns it will not come.
        entry.answer_watcher = None;
        for watcher in entry.watchers.drain(..) {
            let _ = watcher.send(outcome);
        }
        self.metrics.calls_active.dec();
        self.metrics
            .calls_ended
            .with_label_values(&[outcome.status.as_str()])
            .inc();
        let account = entry.record.account;
        self.keep_call(&entry.record);
        if let Some(old) = registry.ended_calls.push(account, sid.to_owned()) {
            registry.calls.remove(&old);
            self.keep_record(RecordWrite::DropCall(old));
        }
    }

    /// One call of an account.
    pub fn call(&self, account: AccountIdx, sid: &str) -> Option<CallRecord> {
        self.registry
            .lock()
            .calls
            .get(sid)
            .filter(|e| e.record.account == account)
            .map(|e| e.record.clone())
    }

    /// An account's calls, newest first.
    pub fn calls(&self, account: AccountIdx) -> Vec<CallRecord> {
        let registry = self.registry.lock();
        listed(registry.calls.values().map(|e| &e.record), account, true)
    }

    /// Sends an input to a live call of the account.
    pub fn input(
        &self,
        account: AccountIdx,
        sid: &str,
        input: CallInput,
    ) -> Result<(), RouterError> {
        let addr = {
            let registry = self.registry.lock();
            let entry = registry
                .calls
                .get(sid)
                .filter(|e| e.record.account == account)
                .ok_or_else(|| RouterError::not_found(&format!("call {sid}")))?;
            entry.addr.clone()
        };
        let addr =
            addr.ok_or_else(|| RouterError::invalid(21220, "the call is not in progress"))?;
        // do_send: inputs are rare and small (a person's key presses), and a full
        // mailbox must not lose a hangup.
        addr.do_send(input);
        Ok(())
    }

    // ---- conferences ----

    /// Adds a call to a room; one with `startConferenceOnEnter` (`starts`) starts it
    /// and the held participants are told ([`CallInput::RoomStarted`]). Returns
    /// whether the room is started, i.e. whether the call is in the conference
    /// rather than held.
    pub fn join_room(
        &self,
        account: AccountIdx,
        room: &str,
        call_sid: &str,
        muted: bool,
        starts: bool,
        end_on_exit: bool,
    ) -> bool {
        let (started, released) = {
            let mut registry = self.registry.lock();
            let room = registry
                .rooms
                .entry((account, room.to_owned()))
                .or_default();
            let participant = Participant {
                call_sid: call_sid.to_owned(),
                muted,
                end_on_exit,
            };
            let released = room.enter(participant, starts);
            (room.started, released)
        };
        for held in released {
            let _ = self.input(account, &held, CallInput::RoomStarted);
        }
        started
    }

    /// Changes a participant's mute; returns whether it changed.
    pub fn set_muted(&self, account: AccountIdx, room: &str, call_sid: &str, muted: bool) -> bool {
        let mut registry = self.registry.lock();
        let Some(room) = registry.rooms.get_mut(&(account, room.to_owned())) else {
            return false;
        };
        match room
            .participants
            .iter_mut()
            .find(|p| p.call_sid == call_sid)
        {
            Some(p) if p.muted != muted => {
                p.muted = muted;
                true
            }
            _ => false,
        }
    }

    /// Removes a call from a room; with `endConferenceOnExit` the room ends and every
    /// other participant is told.
    pub fn leave_room(&self, account: AccountIdx, room: &str, call_sid: &str) {
        let others = {
            let mut registry = self.registry.lock();
            let key = (account, room.to_owned());
            let Some(entry) = registry.rooms.get_mut(&key) else {
                return;
            };
            let Some(position) = entry
                .participants
                .iter()
                .position(|p| p.call_sid == call_sid)
            else {
                return;
            };
            let leaving = entry.participants.remove(position);
            let others: Vec<String> = if leaving.end_on_exit {
                entry.participants.drain(..).map(|p| p.call_sid).collect()
            } else {
                Vec::new()
            };
            if entry.participants.is_empty() {
                registry.rooms.remove(&key);
            }
            others
        };
        for other in others {
            let _ = self.input(account, &other, CallInput::RoomEnded);
        }
    }

    // ---- messages ----

    fn store_message(&self, record: MessageRecord) {
        let sid = &self.accounts.get(record.account).sid;
        self.keep_record(RecordWrite::Message(record.kept(sid)));
        self.remember_message(record);
    }

    /// Lists a message, letting the account's oldest go past `keep_ended`.
    fn remember_message(&self, record: MessageRecord) {
        let mut registry = self.registry.lock();
        let pushed_out = registry
            .message_order
            .push(record.account, record.sid.clone());
        registry.messages.insert(record.sid.clone(), record);
        if let Some(old) = pushed_out {
            registry.messages.remove(&old);
            self.keep_record(RecordWrite::DropMessage(old));
        }
    }

    /// Sends an SMS (REST or `<Message>`): a `message.sent` event; to a number of the
    /// same account it also arrives there as an inbound SMS. `answering` is the hop of
    /// the message an SMS application replies to (`None` for REST and calls): a reply
    /// that would be the tenth hop between the account's numbers fails with 14107
    /// (`message.failed`) instead of running an application again.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_message(
        self: &Arc<Self>,
        account: AccountIdx,
        to: &str,
        from: &str,
        body: &str,
        direction: &'static str,
        call_sid: Option<&str>,
        answering: Option<Hop>,
    ) -> MessageRecord {
        let delivery = self
            .own_number(account, to)
            .map(|_| answering.map_or(Ok(Hop::FIRST), Hop::reply));
        let mut record = MessageRecord {
            sid: new_sid("SM"),
            account,
            to: to.to_owned(),
            from: from.to_owned(),
            body: body.to_owned(),
            status: "sent",
            direction,
            created: Utc::now(),
            error_code: None,
        };
        if let Some(Err(limit)) = delivery {
            record.status = "failed";
            record.error_code = Some(hops::LOOP_ERROR_CODE);
            self.store_message(record.clone());
            self.metrics
                .call_errors
                .with_label_values(&[&hops::LOOP_ERROR_CODE.to_string()])
                .inc();
            tracing::warn!(
                message_sid = %record.sid,
                hops = hops::MAX_HOPS,
                "an SMS reply loop between numbers of one account was stopped"
            );
            let mut data = message_data(&record);
            data.insert("message_sid".into(), record.sid.clone().into());
            data.insert("error_code".into(), hops::LOOP_ERROR_CODE.into());
            data.insert("error_message".into(), limit.to_string().into());
            self.emit(account, "message.failed", call_sid, data).await;
            return record;
        }
        self.store_message(record.clone());
        let mut data = message_data(&record);
        data.insert("message_sid".into(), record.sid.clone().into());
        self.emit(account, "message.sent", call_sid, data).await;
        if let Some(Ok(hop)) = delivery {
            let router = self.clone();
            let (to, from, body) = (to.to_owned(), from.to_owned(), body.to_owned());
            actix_web::rt::spawn(async move {
                let _ = router.deliver(account, &from, &to, &body, hop).await;
            });
        }
        record
    }

    /// An inbound SMS to a number of the account from outside (the simulator):
    /// `message.received`, then the number's SMS application, whose `<Message>`s are
    /// sent as replies.
    pub async fn inbound_message(
        self: &Arc<Self>,
        account: AccountIdx,
        from: &str,
        to: &str,
        body: &str,
    ) -> Result<MessageRecord, RouterError> {
        self.deliver(account, from, to, body, Hop::FIRST).await
    }

    /// Delivers an SMS that arrives as `hop` of a reply chain.
    async fn deliver(
        self: &Arc<Self>,
        account: AccountIdx,
        from: &str,
        to: &str,
        body: &str,
        hop: Hop,
    ) -> Result<MessageRecord, RouterError> {
        let number = self
            .own_number(account, to)
            .ok_or_else(|| RouterError::not_found(&format!("number {to}")))?;
        let record = MessageRecord {
            sid: new_sid("SM"),
            account,
            to: to.to_owned(),
            from: from.to_owned(),
            body: body.to_owned(),
            status: "received",
            direction: "inbound",
            created: Utc::now(),
            error_code: None,
        };
        self.store_message(record.clone());
        let mut data = message_data(&record);
        data.insert("message_sid".into(), record.sid.clone().into());
        self.emit(account, "message.received", None, data).await;
        if let Some(url) = number.sms_url.clone() {
            let router = self.clone();
            let received = record.clone();
            actix_web::rt::spawn(async move {
                router
                    .run_sms_app(account, &url, number.sms_method, &received, hop)
                    .await;
            });
        }
        Ok(record)
    }

    async fn run_sms_app(
        self: &Arc<Self>,
        account: AccountIdx,
        url: &str,
        method: Method,
        received: &MessageRecord,
        hop: Hop,
    ) {
        let params: Vec<(String, String)> = [
            ("AccountSid", self.account_sid(account)),
            ("MessageSid", &received.sid),
            ("SmsSid", &received.sid),
            ("SmsMessageSid", &received.sid),
            ("From", &received.from),
            ("To", &received.to),
            ("Body", &received.body),
            ("NumMedia", "0"),
            ("ApiVersion", records::API_VERSION),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let document = match reqwest::Url::parse(url) {
            Ok(url) => {
                self.app
                    .document(&self.token(account), &url, method, &params)
                    .await
            }
            Err(_) => Err(app::AppError::Fetch(app::FetchError::Refused(
                "not an absolute http(s) URL",
            ))),
        };
        match document {
            Ok(document) => {
                for verb in document.verbs {
                    if let crate::twiml::Verb::Message(message) = verb {
                        let to = message.to.unwrap_or_else(|| received.from.clone());
                        let from = message.from.unwrap_or_else(|| received.to.clone());
                        self.send_message(
                            account,
                            &to,
                            &from,
                            &message.body,
                            "outbound-reply",
                            None,
                            Some(hop),
                        )
                        .await;
                    }
                }
            }
            Err(error) => {
                self.metrics
                    .call_errors
                    .with_label_values(&[&error.code().to_string()])
                    .inc();
                let mut data = message_data(received);
                data.insert("error_code".into(), error.code().into());
                data.insert("error_message".into(), error.to_string().into());
                self.emit(account, "message.error", None, data).await;
            }
        }
    }

    /// One message of an account.
    pub fn message(&self, account: AccountIdx, sid: &str) -> Option<MessageRecord> {
        self.registry
            .lock()
            .messages
            .get(sid)
            .filter(|m| m.account == account)
            .cloned()
    }

    /// An account's messages, newest first.
    pub fn messages(&self, account: AccountIdx) -> Vec<MessageRecord> {
        listed(self.registry.lock().messages.values(), account, true)
    }
}

/// An account's resources from one registry map, by creation time (then sid).
fn listed<'a, T: Resource + Clone + 'a>(
    items: impl Iterator<Item = &'a T>,
    account: AccountIdx,
    newest_first: bool,
) -> Vec<T> {
    let mut owned: Vec<T> = items.filter(|r| r.account() == account).cloned().collect();
    owned.sort_by(|a, b| (a.created(), a.sid()).cmp(&(b.created(), b.sid())));
    if newest_first {
        owned.reverse();
    }
    owned
}

fn message_data(record: &MessageRecord) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("from".into(), record.from.clone().into());
    data.insert("to".into(), record.to.clone().into());
    data.insert("body".into(), record.body.clone().into());
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn participant(call_sid: &str) -> Participant {
        Participant {
            call_sid: call_sid.to_owned(),
            muted: false,
            end_on_exit: false,
        }
    }

    #[test]
    fn a_room_holds_its_participants_until_one_starts_it() {
        let mut room = Room::default();
        assert!(room.enter(participant("CA1"), false).is_empty());
        assert!(room.enter(participant("CA2"), false).is_empty());
        assert!(!room.started, "nobody has started the room");
        assert_eq!(room.enter(participant("CA3"), true), ["CA1", "CA2"]);
        assert!(room.started);
        // Once started, nobody is held: later entries release no one.
        assert!(room.enter(participant("CA4"), true).is_empty());
        assert!(room.enter(participant("CA5"), false).is_empty());
        assert_eq!(room.participants.len(), 5);
    }
}
