//! The router's side of call queues: what `<Enqueue>`, `<Dial><Queue>` and the
//! Queues REST resource (docs/api.md §7) ask of the [`QueueBook`](super::queues::QueueBook),
//! with wait times in simulated seconds, the inputs that tell the calls involved,
//! and the queue metrics.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::queues::{Announcement, Joined, Left, Queue, QueueError, Take, Taken};
use super::records::{rfc2822, API_VERSION};
use super::{CallInput, CallRouter, Registry, RouterError};
use crate::account::AccountIdx;
use crate::store::{StoreError, StoredQueue};
use crate::twiml::Method;

/// A queue as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    /// `QU…`.
    pub sid: String,
    /// `friendly_name`.
    pub name: String,
    /// `max_size`.
    pub max_size: u32,
    /// `current_size`.
    pub current_size: usize,
    /// `average_wait_time`, simulated seconds.
    pub average_wait: u64,
    /// `date_created`.
    pub created: DateTime<Utc>,
}

impl QueueView {
    /// Twilio's JSON for the queue.
    pub fn json(&self, account_sid: &str) -> Value {
        let uri = format!("/{API_VERSION}/Accounts/{account_sid}/Queues/{}", self.sid);
        json!({
            "sid": self.sid,
            "account_sid": account_sid,
            "friendly_name": self.name,
            "max_size": self.max_size,
            "current_size": self.current_size,
            "average_wait_time": self.average_wait,
            "date_created": rfc2822(&self.created),
            "date_updated": rfc2822(&self.created),
            "uri": format!("{uri}.json"),
            "subresource_uris": {"members": format!("{uri}/Members.json")},
        })
    }
}

/// A waiting caller as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// `call_sid`.
    pub call_sid: String,
    /// `queue_sid`.
    pub queue_sid: String,
    /// `position`, from 1.
    pub position: usize,
    /// `wait_time`, simulated seconds.
    pub wait_time: u64,
    /// `date_enqueued`.
    pub enqueued: DateTime<Utc>,
}

impl MemberView {
    /// Twilio's JSON for the member.
    pub fn json(&self, account_sid: &str) -> Value {
        json!({
            "call_sid": self.call_sid,
            "queue_sid": self.queue_sid,
            "position": self.position,
            "wait_time": self.wait_time,
            "date_enqueued": rfc2822(&self.enqueued),
            "uri": format!(
                "/{API_VERSION}/Accounts/{account_sid}/Queues/{}/Members/{}.json",
                self.queue_sid, self.call_sid
            ),
        })
    }
}

/// What a waiting caller's `waitUrl` request tells the application: Twilio's
/// `QueuePosition`, `QueueSid`, `QueueTime`, `AvgQueueTime`, `CurrentQueueSize`,
/// `MaxQueueSize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The caller's place, from 1.
    pub position: usize,
    /// The queue's view.
    pub queue: QueueView,
}

impl Standing {
    /// The request parameters, the caller's own wait being `waited`.
    pub fn params(&self, waited: u64) -> Vec<(String, String)> {
        vec![
            ("QueueSid".into(), self.queue.sid.clone()),
            ("QueuePosition".into(), self.position.to_string()),
            ("QueueTime".into(), waited.to_string()),
            ("AvgQueueTime".into(), self.queue.average_wait.to_string()),
            (
                "CurrentQueueSize".into(),
                self.queue.current_size.to_string(),
            ),
            ("MaxQueueSize".into(), self.queue.max_size.to_string()),
        ]
    }
}

impl From<QueueError> for RouterError {
    fn from(error: QueueError) -> RouterError {
        match error {
            QueueError::NotFound => RouterError::not_found("queue"),
            // Twilio's 22003 ("Queue already exists"), 21218 (invalid value),
            // 22001 (queue full).
            QueueError::Exists => {
                RouterError::invalid(22003, "FriendlyName: a queue with this name already exists")
            }
            QueueError::TooMany => RouterError::invalid(
                21218,
                format!(
                    "the account already has {} queues",
                    super::queues::MAX_QUEUES_PER_ACCOUNT
                ),
            ),
            QueueError::Full => RouterError::invalid(22001, "the queue is full"),
            QueueError::NotEmpty => RouterError::invalid(
                20001,
                "the queue is not empty: only a queue nobody waits in can be deleted",
            ),
        }
    }
}

impl CallRouter {
    fn view(&self, queue: &Queue, now: Instant) -> QueueView {
        QueueView {
            sid: queue.sid.clone(),
            name: queue.name.clone(),
            max_size: queue.max_size,
            current_size: queue.size(),
            average_wait: self.simulated_secs(queue.average_wait(now)),
            created: queue.created,
        }
    }

    /// Refreshes the queue gauges after a change, under the registry lock.
    fn count_queues(&self, registry: &Registry) {
        let book = &registry.queues;
        self.metrics.queues.set(book.queues_total() as i64);
        self.metrics.queue_members.set(book.members_total() as i64);
    }

    /// Counts a caller's leaving a queue after waiting `waited`, by `result`.
    pub fn count_queue_wait(&self, result: &str, waited: Duration) {
        self.metrics
            .queue_waits
            .with_label_values(&[result])
            .observe(self.simulated_secs(waited) as f64);
    }

    /// With `data_dir`: keeps a queue as it is now. Queues change rarely (REST,
    /// a first `<Enqueue>` into a name), so the commit is waited for under the
    /// registry lock, as a number's.
    fn keep_queue(&self, queue: &Queue) -> Result<(), RouterError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let kept = StoredQueue {
            sid: queue.sid.clone(),
            account_sid: self.account_sid(queue.account).to_owned(),
            name: queue.name.clone(),
            max_size: queue.max_size,
            created_ms: queue.created.timestamp_millis(),
        };
        store.put_queue(&kept).map_err(|error| {
            tracing::error!(%error, queue = %queue.sid, "a queue could not be kept");
            RouterError::unavailable("the queue could not be stored; retry shortly")
        })
    }

    /// Loads the queues kept in the store (with `data_dir`), empty, before the
    /// node serves. One of an account the configuration no longer lists is left
    /// in the store and logged.
    pub fn restore_queues(&self) -> Result<usize, StoreError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut registry = self.registry.lock();
        let mut restored = 0;
        for kept in store.queues()? {
            let Some(account) = self.accounts.lookup(&kept.account_sid) else {
                tracing::warn!(queue = %kept.sid, "a kept queue's account is not configured: not restored");
                continue;
            };
            let created = DateTime::from_timestamp_millis(kept.created_ms).unwrap_or_default();
            if registry
                .queues
                .restore(account, &kept.sid, &kept.name, kept.max_size, created)
            {
                restored += 1;
            }
        }
        self.count_queues(&registry);
        Ok(restored)
    }

    /// Creates a queue through the REST API; with `data_dir`, a `201` means it is
    /// kept.
    pub fn create_queue(
        &self,
        account: AccountIdx,
        name: &str,
        max_size: u32,
    ) -> Result<QueueView, RouterError> {
        let mut registry = self.registry.lock();
        let queue = registry.queues.create(account, name, max_size)?.clone();
        if let Err(error) = self.keep_queue(&queue) {
            let _ = registry.queues.delete(account, &queue.sid);
            return Err(error);
        }
        self.count_queues(&registry);
        Ok(self.view(&queue, Instant::now()))
    }

    /// An account's queues, oldest first.
    pub fn queues(&self, account: AccountIdx) -> Vec<QueueView> {
        let registry = self.registry.lock();
        let now = Instant::now();
        registry
            .queues
            .of_account(account)
            .into_iter()
            .map(|queue| self.view(queue, now))
            .collect()
    }

    /// One queue of an account.
    pub fn queue(&self, account: AccountIdx, sid: &str) -> Option<QueueView> {
        let registry = self.registry.lock();
        let queue = registry.queues.by_sid(account, sid)?;
        Some(self.view(queue, Instant::now()))
    }

    /// The callers waiting in an account's queue, longest-waiting first.
    pub fn queue_members(&self, account: AccountIdx, sid: &str) -> Option<Vec<MemberView>> {
        let registry = self.registry.lock();
        let queue = registry.queues.by_sid(account, sid)?;
        let now = Instant::now();
        Some(
            queue
                .members()
                .enumerate()
                .map(|(i, member)| MemberView {
                    call_sid: member.call_sid.clone(),
                    queue_sid: queue.sid.clone(),
                    position: i + 1,
                    wait_time: self.simulated_secs(now.saturating_duration_since(member.since)),
                    enqueued: member.enqueued,
                })
                .collect(),
        )
    }

    /// Renames a queue or changes its `MaxSize` (REST update).
    pub fn update_queue(
        &self,
        account: AccountIdx,
        sid: &str,
        name: Option<&str>,
        max_size: Option<u32>,
    ) -> Result<QueueView, RouterError> {
        let mut registry = self.registry.lock();
        let before = registry
            .queues
            .by_sid(account, sid)
            .map(|q| (q.name.clone(), q.max_size))
            .ok_or_else(|| RouterError::not_found(sid))?;
        let queue = registry
            .queues
            .update(account, sid, name, max_size)
            .map_err(|error| not_found_as(error, sid))?
            .clone();
        if let Err(error) = self.keep_queue(&queue) {
            let _ = registry
                .queues
                .update(account, sid, Some(&before.0), Some(before.1));
            return Err(error);
        }
        Ok(self.view(&queue, Instant::now()))
    }

    /// Deletes a queue nobody waits in (REST delete).
    pub fn delete_queue(&self, account: AccountIdx, sid: &str) -> Result<(), RouterError> {
        let mut registry = self.registry.lock();
        registry
            .queues
            .deletable(account, sid)
            .map_err(|error| not_found_as(error, sid))?;
        if let Some(store) = &self.store {
            store.drop_queue(sid).map_err(|error| {
                tracing::error!(%error, queue = %sid, "a deleted queue could not be forgotten");
                RouterError::unavailable("the queue could not be deleted; retry shortly")
            })?;
        }
        registry
            .queues
            .delete(account, sid)
            .map_err(|error| not_found_as(error, sid))?;
        self.count_queues(&registry);
        Ok(())
    }

    /// Takes a caller out of an account's queue through the REST API: it leaves the
    /// queue and runs `url`. Errs 404 for an unknown queue or a caller not waiting.
    pub fn dequeue_member(
        &self,
        account: AccountIdx,
        sid: &str,
        which: &Take,
        url: String,
        method: Method,
    ) -> Result<MemberView, RouterError> {
        let taken = {
            let mut registry = self.registry.lock();
            let taken = registry
                .queues
                .take(account, sid, which, None, Instant::now())
                .map_err(|error| not_found_as(error, sid))?
                .ok_or_else(|| RouterError::not_found("queue member"))?;
            self.count_queues(&registry);
            taken
        };
        // The caller's program says it left (`queue.leave`, `redirected`) when
        // the redirect reaches it.
        self.input(account, &taken.call_sid, CallInput::Redirect(url, method))?;
        Ok(MemberView {
            call_sid: taken.call_sid,
            queue_sid: sid.to_owned(),
            position: taken.position,
            wait_time: self.simulated_secs(taken.waited),
            enqueued: taken.enqueued,
        })
    }

    /// Puts a caller in the account's queue `name` (`<Enqueue>`); an agent waiting
    /// on it is told at once ([`CallInput::Bridged`]).
    pub fn enqueue(
        &self,
        account: AccountIdx,
        name: &str,
        call_sid: &str,
    ) -> Result<Joined, QueueError> {
        let joined = {
            let mut registry = self.registry.lock();
            let new = registry.queues.named(account, name).is_none();
            let joined = registry
                .queues
                .enqueue(account, name, call_sid, Instant::now());
            if let (true, Ok(joined)) = (new, &joined) {
                // A queue `<Enqueue>` made is kept as one the REST API made; if
                // that fails the call goes on (it is logged).
                if let Some(queue) = registry.queues.by_sid(account, &joined.queue_sid) {
                    let _ = self.keep_queue(queue);
                }
            }
            self.count_queues(&registry);
            joined?
        };
        if let Some((agent, _)) = &joined.agent {
            let _ = self.input(
                account,
                agent,
                CallInput::Bridged {
                    partner: call_sid.to_owned(),
                    position: 1,
                    announcement: None,
                },
            );
        }
        Ok(joined)
    }

    /// Where a waiting caller stands in the queue `sid`, for its `waitUrl`
    /// request.
    pub fn standing(&self, account: AccountIdx, sid: &str, call_sid: &str) -> Option<Standing> {
        let registry = self.registry.lock();
        let queue = registry.queues.by_sid(account, sid)?;
        Some(Standing {
            position: queue.position(call_sid)?,
            queue: self.view(queue, Instant::now()),
        })
    }

    /// Takes a caller out of its queue `sid` (it hung up, left, was redirected).
    pub fn leave_queue(&self, account: AccountIdx, sid: &str, call_sid: &str) -> Left {
        let mut registry = self.registry.lock();
        let left = registry.queues.leave(account, sid, call_sid);
        self.count_queues(&registry);
        left
    }

    /// An agent's `<Dial><Queue>`: takes the caller waiting longest in the
    /// account's queue `name` and bridges the two (the caller is told), or, on an
    /// empty queue, lets the agent wait for the next caller. Returns the queue's
    /// sid and the caller taken (`None`: the agent waits).
    pub fn take_caller(
        &self,
        account: AccountIdx,
        name: &str,
        agent: &str,
        announcement: Announcement,
    ) -> Result<(String, Option<Taken>), QueueError> {
        let (sid, taken) = {
            let mut registry = self.registry.lock();
            let book = &mut registry.queues;
            let sid = book
                .named(account, name)
                .map(|q| q.sid.clone())
                .ok_or(QueueError::NotFound)?;
            let taken = book.take(account, &sid, &Take::Front, Some(agent), Instant::now())?;
            if taken.is_none() {
                book.wait(account, &sid, agent, announcement.clone())?;
            }
            self.count_queues(&registry);
            (sid, taken)
        };
        if let Some(taken) = &taken {
            let _ = self.input(
                account,
                &taken.call_sid,
                CallInput::Bridged {
                    partner: agent.to_owned(),
                    position: taken.position,
                    announcement,
                },
            );
        }
        Ok((sid, taken))
    }

    /// The agent stops waiting on the empty queue `sid`; `Some(caller)` if one
    /// was bridged to it first.
    pub fn stop_waiting(&self, account: AccountIdx, sid: &str, agent: &str) -> Option<String> {
        self.registry
            .lock()
            .queues
            .stop_waiting(account, sid, agent)
    }

    /// Ends the bridge `call_sid` is in, telling its partner
    /// ([`CallInput::BridgeEnded`]).
    pub fn unbridge(&self, account: AccountIdx, call_sid: &str) {
        let partner = self.registry.lock().queues.unbridge(call_sid);
        if let Some(partner) = partner {
            let _ = self.input(account, &partner, CallInput::BridgeEnded);
        }
    }
}

/// A REST request's error: an unknown queue is a 404 naming the sid asked for.
fn not_found_as(error: QueueError, sid: &str) -> RouterError {
    match error {
        QueueError::NotFound => RouterError::not_found(sid),
        other => other.into(),
    }
}
