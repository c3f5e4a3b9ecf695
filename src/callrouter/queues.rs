//! Call queues (docs/api.md §7): each account's named queues of waiting callers
//! (`<Enqueue>`), the agents whose `<Dial><Queue>` waits on an empty queue, and the
//! bridges between an agent and the caller it took.
//!
//! One plain structure, kept under the router's registry lock, so that the races of
//! a contact center — a caller hanging up while an agent takes it, two agents taking
//! the front caller, a caller joining while an agent gives up waiting — each have
//! exactly one winner. The call programs learn the outcome from what these methods
//! return and from the inputs the router sends on their behalf.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Url;

use super::records::new_sid;
use crate::account::AccountIdx;
use crate::twiml::Method;

/// A queue's `MaxSize` unless the REST API set another (Twilio's default).
pub const DEFAULT_MAX_SIZE: u32 = 1000;
/// The largest `MaxSize` (Twilio's).
pub const MAX_MAX_SIZE: u32 = 5000;
/// Most queues one account may have: queues are created by `<Enqueue>` with any
/// name an application writes, so the count is bounded like every other input.
pub const MAX_QUEUES_PER_ACCOUNT: usize = 1000;

/// The `<Queue url>` document a dequeued caller hears before it is connected.
pub type Announcement = Option<(Url, Method)>;

/// A caller waiting in a queue.
#[derive(Debug, Clone)]
pub struct Member {
    /// The waiting call.
    pub call_sid: String,
    /// When it joined (for its wait time).
    pub since: Instant,
    /// When it joined, as the REST API shows it (`date_enqueued`).
    pub enqueued: DateTime<Utc>,
}

/// An agent whose `<Dial><Queue>` found the queue empty and waits for a caller.
#[derive(Debug, Clone)]
struct Agent {
    call_sid: String,
    announcement: Announcement,
}

/// One named queue of an account.
#[derive(Debug, Clone)]
pub struct Queue {
    /// `QU` + 32 hex.
    pub sid: String,
    /// Owner.
    pub account: AccountIdx,
    /// Its name (`FriendlyName`, the `<Enqueue>` text).
    pub name: String,
    /// Most callers it holds; one more is refused (`QueueResult=queue-full`).
    pub max_size: u32,
    /// When it was created.
    pub created: DateTime<Utc>,
    members: VecDeque<Member>,
    agents: VecDeque<Agent>,
}

impl Queue {
    /// The callers waiting, longest-waiting first.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    /// How many callers wait.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// A caller's place, from 1 at the front.
    pub fn position(&self, call_sid: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.call_sid == call_sid)
            .map(|i| i + 1)
    }

    /// The average wait of the callers waiting now, as Twilio computes
    /// `average_wait_time` (zero for an empty queue).
    pub fn average_wait(&self, now: Instant) -> Duration {
        let Ok(count) = u32::try_from(self.members.len()) else {
            return Duration::ZERO;
        };
        if count == 0 {
            return Duration::ZERO;
        }
        let total: Duration = self
            .members
            .iter()
            .map(|m| now.saturating_duration_since(m.since))
            .sum();
        total / count
    }
}

/// Why a queue operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `max_size` callers.
    #[error("the queue is full")]
    Full,
    /// The account has [`MAX_QUEUES_PER_ACCOUNT`] queues.
    #[error("the account has {MAX_QUEUES_PER_ACCOUNT} queues")]
    TooMany,
    /// Another queue of the account has this name.
    #[error("a queue with this FriendlyName exists")]
    Exists,
    /// No such queue.
    #[error("no such queue")]
    NotFound,
    /// Callers or agents wait in it: it cannot be deleted.
    #[error("the queue is not empty: only an empty queue can be deleted")]
    NotEmpty,
}

/// A caller that joined a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The queue's sid.
    pub queue_sid: String,
    /// Its place, from 1.
    pub position: usize,
    /// Callers waiting, itself included.
    pub size: usize,
    /// An agent waited on the empty queue: the caller is bridged to it at once
    /// (and has left the queue again).
    pub agent: Option<(String, Announcement)>,
}

/// How a caller's leaving the queue went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// It left from `position`.
    Left {
        /// Its place, from 1, when it left.
        position: usize,
    },
    /// An agent took it first: it is bridged to this call.
    Bridged(String),
    /// It is in no queue.
    NotQueued,
}

/// Which caller to take from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// The one waiting longest.
    Front,
    /// This call.
    Call(String),
}

/// A caller taken from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The caller.
    pub call_sid: String,
    /// Its place when taken, from 1.
    pub position: usize,
    /// How long it waited.
    pub waited: Duration,
    /// When it joined.
    pub enqueued: DateTime<Utc>,
}

/// Every account's queues and the live agent–caller bridges.
#[derive(Debug, Default)]
pub struct QueueBook {
    /// By sid: what a waiting call and the REST API name a queue by, so a
    /// rename moves nobody.
    queues: HashMap<String, Queue>,
    /// (account, name) → sid: what `<Enqueue>` and `<Dial><Queue>` name it by.
    names: HashMap<(AccountIdx, String), String>,
    /// Each bridged call → its partner (both directions).
    bridges: HashMap<String, String>,
    /// Callers the REST API took out, their redirect on its way → the place they
    /// had, for their leaving to report. Each caller takes its own out again.
    taken_out: HashMap<String, usize>,
}

impl QueueBook {
    /// Creates a queue through the REST API.
    pub fn create(
        &mut self,
        account: AccountIdx,
        name: &str,
        max_size: u32,
    ) -> Result<&Queue, QueueError> {
        if self.named(account, name).is_some() {
            return Err(QueueError::Exists);
        }
        self.make(account, name, max_size)
    }

    fn make(
        &mut self,
        account: AccountIdx,
        name: &str,
        max_size: u32,
    ) -> Result<&Queue, QueueError> {
        let count = self.names.keys().filter(|(a, _)| *a == account).count();
        if count >= MAX_QUEUES_PER_ACCOUNT {
            return Err(QueueError::TooMany);
        }
        let queue = Queue {
            sid: new_sid("QU"),
            account,
            name: name.to_owned(),
            max_size,
            created: Utc::now(),
            members: VecDeque::new(),
            agents: VecDeque::new(),
        };
        let sid = queue.sid.clone();
        self.names.insert((account, name.to_owned()), sid.clone());
        Ok(self.queues.entry(sid).or_insert(queue))
    }

    /// Puts back a queue kept in the store (with `data_dir`), empty. A name taken
    /// meanwhile, or an account over its bound, leaves it out.
    pub fn restore(
        &mut self,
        account: AccountIdx,
        sid: &str,
        name: &str,
        max_size: u32,
        created: DateTime<Utc>,
    ) -> bool {
        let count = self.names.keys().filter(|(a, _)| *a == account).count();
        if count >= MAX_QUEUES_PER_ACCOUNT || self.named(account, name).is_some() {
            return false;
        }
        let queue = Queue {
            sid: sid.to_owned(),
            account,
            name: name.to_owned(),
            max_size,
            created,
            members: VecDeque::new(),
            agents: VecDeque::new(),
        };
        self.names
            .insert((account, name.to_owned()), sid.to_owned());
        self.queues.insert(sid.to_owned(), queue);
        true
    }

    /// Renames a queue or changes its `MaxSize` (REST update). A smaller size than
    /// it holds refuses callers until enough have left, as Twilio's.
    pub fn update(
        &mut self,
        account: AccountIdx,
        sid: &str,
        name: Option<&str>,
        max_size: Option<u32>,
    ) -> Result<&Queue, QueueError> {
        let old = self
            .by_sid(account, sid)
            .ok_or(QueueError::NotFound)?
            .name
            .clone();
        if let Some(name) = name.filter(|name| *name != old) {
            if self.named(account, name).is_some() {
                return Err(QueueError::Exists);
            }
            self.names.remove(&(account, old));
            self.names
                .insert((account, name.to_owned()), sid.to_owned());
        }
        let queue = self.queue_mut(account, sid).ok_or(QueueError::NotFound)?;
        if let Some(name) = name {
            queue.name = name.to_owned();
        }
        if let Some(max_size) = max_size {
            queue.max_size = max_size;
        }
        Ok(queue)
    }

    /// Whether the queue can be deleted: it exists and nobody waits in it.
    pub fn deletable(&self, account: AccountIdx, sid: &str) -> Result<&Queue, QueueError> {
        let queue = self.by_sid(account, sid).ok_or(QueueError::NotFound)?;
        if !queue.members.is_empty() || !queue.agents.is_empty() {
            return Err(QueueError::NotEmpty);
        }
        Ok(queue)
    }

    /// Deletes an empty queue (REST delete): one with callers or agents waiting
    /// is refused, as Twilio refuses it.
    pub fn delete(&mut self, account: AccountIdx, sid: &str) -> Result<(), QueueError> {
        let key = (account, self.deletable(account, sid)?.name.clone());
        self.names.remove(&key);
        self.queues.remove(sid);
        Ok(())
    }

    /// An account's queue by name.
    pub fn named(&self, account: AccountIdx, name: &str) -> Option<&Queue> {
        let sid = self.names.get(&(account, name.to_owned()))?;
        self.queues.get(sid)
    }

    /// An account's queue by sid.
    pub fn by_sid(&self, account: AccountIdx, sid: &str) -> Option<&Queue> {
        self.queues.get(sid).filter(|q| q.account == account)
    }

    fn queue_mut(&mut self, account: AccountIdx, sid: &str) -> Option<&mut Queue> {
        self.queues.get_mut(sid).filter(|q| q.account == account)
    }

    /// An account's queues, oldest first.
    pub fn of_account(&self, account: AccountIdx) -> Vec<&Queue> {
        let mut queues: Vec<&Queue> = self
            .queues
            .values()
            .filter(|q| q.account == account)
            .collect();
        queues.sort_by(|a, b| (a.created, &a.sid).cmp(&(b.created, &b.sid)));
        queues
    }

    /// Callers waiting in every queue (the `switchboard_queue_members` gauge).
    pub fn members_total(&self) -> usize {
        self.queues.values().map(Queue::size).sum()
    }

    /// Queues of every account (the `switchboard_queues` gauge).
    pub fn queues_total(&self) -> usize {
        self.queues.len()
    }

    /// Puts `call_sid` at the back of the account's queue `name`, creating the queue
    /// as Twilio does. An agent waiting on the queue takes the caller at once.
    pub fn enqueue(
        &mut self,
        account: AccountIdx,
        name: &str,
        call_sid: &str,
        now: Instant,
    ) -> Result<Joined, QueueError> {
        let sid = match self.named(account, name) {
            Some(queue) => queue.sid.clone(),
            None => self.make(account, name, DEFAULT_MAX_SIZE)?.sid.clone(),
        };
        let queue = self.queue_mut(account, &sid).ok_or(QueueError::NotFound)?;
        if queue.members.len() >= queue.max_size as usize {
            return Err(QueueError::Full);
        }
        queue.members.push_back(Member {
            call_sid: call_sid.to_owned(),
            since: now,
            enqueued: Utc::now(),
        });
        let joined = Joined {
            queue_sid: sid,
            position: queue.members.len(),
            size: queue.members.len(),
            agent: None,
        };
        // Agents wait only on an empty queue, so the caller is the front one.
        let Some(agent) = queue.agents.pop_front() else {
            return Ok(joined);
        };
        queue.members.pop_back();
        self.bridge(&agent.call_sid, call_sid);
        Ok(Joined {
            agent: Some((agent.call_sid, agent.announcement)),
            ..joined
        })
    }

    /// Takes `call_sid` out of the account's queue `sid` (it hung up, left or was
    /// redirected) — unless an agent took it first.
    pub fn leave(&mut self, account: AccountIdx, sid: &str, call_sid: &str) -> Left {
        if let Some(partner) = self.bridges.get(call_sid) {
            return Left::Bridged(partner.clone());
        }
        if let Some(position) = self.taken_out.remove(call_sid) {
            return Left::Left { position };
        }
        let Some(queue) = self.queue_mut(account, sid) else {
            return Left::NotQueued;
        };
        match queue.position(call_sid) {
            Some(position) => {
                queue.members.remove(position - 1);
                Left::Left { position }
            }
            None => Left::NotQueued,
        }
    }

    /// Takes a caller from the account's queue `sid`: for an agent (`agent`), the
    /// two are bridged; without one (the REST API's dequeue) the caller is only
    /// taken out, to be redirected. `Ok(None)`: no such caller is waiting.
    pub fn take(
        &mut self,
        account: AccountIdx,
        sid: &str,
        which: &Take,
        agent: Option<&str>,
        now: Instant,
    ) -> Result<Option<Taken>, QueueError> {
        let queue = self.queue_mut(account, sid).ok_or(QueueError::NotFound)?;
        let position = match which {
            Take::Front => (!queue.members.is_empty()).then_some(1),
            Take::Call(call) => queue.position(call),
        };
        let Some(member) = position.and_then(|p| queue.members.remove(p - 1)) else {
            return Ok(None);
        };
        match agent {
            Some(agent) => self.bridge(agent, &member.call_sid),
            None => {
                self.taken_out
                    .insert(member.call_sid.clone(), position.unwrap_or(1));
            }
        }
        Ok(Some(Taken {
            position: position.unwrap_or(1),
            waited: now.saturating_duration_since(member.since),
            enqueued: member.enqueued,
            call_sid: member.call_sid,
        }))
    }

    /// Lets `agent` wait on the account's empty queue `sid` for the next caller.
    pub fn wait(
        &mut self,
        account: AccountIdx,
        sid: &str,
        agent: &str,
        announcement: Announcement,
    ) -> Result<(), QueueError> {
        let queue = self.queue_mut(account, sid).ok_or(QueueError::NotFound)?;
        queue.agents.push_back(Agent {
            call_sid: agent.to_owned(),
            announcement,
        });
        Ok(())
    }

    /// Stops `agent` waiting on the queue `sid` (its `Dial` timed out or it hung
    /// up). `Some(caller)`: a caller joined first and is bridged to it.
    pub fn stop_waiting(&mut self, account: AccountIdx, sid: &str, agent: &str) -> Option<String> {
        if let Some(queue) = self.queue_mut(account, sid) {
            queue.agents.retain(|a| a.call_sid != agent);
        }
        self.bridges.get(agent).cloned()
    }

    fn bridge(&mut self, a: &str, b: &str) {
        self.bridges.insert(a.to_owned(), b.to_owned());
        self.bridges.insert(b.to_owned(), a.to_owned());
    }

    /// Ends the bridge `call_sid` is in; returns the partner to tell, once (the
    /// partner ending it at the same moment gets `None`).
    pub fn unbridge(&mut self, call_sid: &str) -> Option<String> {
        let partner = self.bridges.remove(call_sid)?;
        self.bridges.remove(&partner);
        Some(partner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AccountIdx = AccountIdx(0);
    const B: AccountIdx = AccountIdx(1);

    fn later(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[test]
    fn callers_wait_in_order_and_the_longest_waiting_is_taken_first() {
        let mut book = QueueBook::default();
        let t0 = Instant::now();
        let first = book.enqueue(A, "support", "CA1", t0).unwrap();
        assert_eq!((first.position, first.size, first.agent), (1, 1, None));
        let q = first.queue_sid;
        assert!(q.starts_with("QU"));
        book.enqueue(A, "support", "CA2", t0 + Duration::from_secs(10))
            .unwrap();
        let third = book
            .enqueue(A, "support", "CA3", t0 + Duration::from_secs(20))
            .unwrap();
        assert_eq!((third.position, third.size), (3, 3));
        assert_eq!(third.queue_sid, q, "one queue per name");

        let queue = book.named(A, "support").unwrap();
        let now = t0 + Duration::from_secs(30);
        assert_eq!(queue.average_wait(now), Duration::from_secs(20));
        assert_eq!(queue.position("CA2"), Some(2));

        let taken = book
            .take(A, &q, &Take::Front, Some("CAagent"), now)
            .unwrap()
            .unwrap();
        assert_eq!(taken.call_sid, "CA1");
        assert_eq!(taken.waited, Duration::from_secs(30));
        assert_eq!(book.by_sid(A, &q).unwrap().position("CA2"), Some(1));
        assert_eq!(book.members_total(), 2);
        // The agent and the caller are bridged: either ending it tells the other once.
        assert_eq!(book.unbridge("CA1").as_deref(), Some("CAagent"));
        assert_eq!(book.unbridge("CAagent"), None);
    }

    #[test]
    fn a_caller_taken_by_an_agent_cannot_also_leave() {
        let mut book = QueueBook::default();
        let q = book
            .enqueue(A, "q", "CA1", Instant::now())
            .unwrap()
            .queue_sid;
        book.take(A, &q, &Take::Front, Some("CAagent"), later(1))
            .unwrap();
        assert_eq!(book.leave(A, &q, "CA1"), Left::Bridged("CAagent".into()));
        // A caller the REST API dequeued is no longer queued.
        book.enqueue(A, "q", "CA2", Instant::now()).unwrap();
        let taken = book
            .take(A, &q, &Take::Call("CA2".into()), None, later(1))
            .unwrap();
        assert_eq!(taken.map(|t| t.position), Some(1));
        // Its leaving (the redirect reaching it) reports the place it had, once.
        assert_eq!(book.leave(A, &q, "CA2"), Left::Left { position: 1 });
        assert_eq!(book.leave(A, &q, "CA2"), Left::NotQueued);
    }

    #[test]
    fn a_caller_leaving_gives_its_place_to_those_behind() {
        let mut book = QueueBook::default();
        for sid in ["CA1", "CA2", "CA3"] {
            book.enqueue(A, "q", sid, Instant::now()).unwrap();
        }
        let q = book.named(A, "q").unwrap().sid.clone();
        assert_eq!(book.leave(A, &q, "CA2"), Left::Left { position: 2 });
        assert_eq!(book.by_sid(A, &q).unwrap().position("CA3"), Some(2));
        assert_eq!(book.leave(A, &q, "CA2"), Left::NotQueued);
        assert_eq!(
            book.take(A, &q, &Take::Call("CA9".into()), None, later(0)),
            Ok(None)
        );
    }

    #[test]
    fn an_agent_waiting_on_an_empty_queue_takes_the_next_caller_at_once() {
        let mut book = QueueBook::default();
        let q = book.create(A, "q", 10).unwrap().sid.clone();
        assert_eq!(
            book.take(A, &q, &Take::Front, Some("CAagent"), Instant::now()),
            Ok(None)
        );
        let announce = Url::parse("http://app.example/connecting").unwrap();
        book.wait(A, &q, "CAagent", Some((announce.clone(), Method::Get)))
            .unwrap();
        assert_eq!(
            book.delete(A, &q),
            Err(QueueError::NotEmpty),
            "an agent waits"
        );
        let joined = book.enqueue(A, "q", "CA1", Instant::now()).unwrap();
        assert_eq!(
            joined.agent,
            Some(("CAagent".to_owned(), Some((announce, Method::Get))))
        );
        assert_eq!(book.by_sid(A, &q).unwrap().size(), 0);
        // The agent's timeout racing the join: it learns it has a caller.
        assert_eq!(book.stop_waiting(A, &q, "CAagent").as_deref(), Some("CA1"));
        // An agent that gives up first is no longer waiting.
        book.wait(A, &q, "CAother", None).unwrap();
        assert_eq!(book.stop_waiting(A, &q, "CAother"), None);
        assert_eq!(
            book.enqueue(A, "q", "CA2", Instant::now()).unwrap().agent,
            None
        );
    }

    #[test]
    fn a_renamed_queue_keeps_its_callers_and_only_an_empty_one_is_deleted() {
        let mut book = QueueBook::default();
        let q = book
            .enqueue(A, "old", "CA1", Instant::now())
            .unwrap()
            .queue_sid;
        book.create(A, "taken", 5).unwrap();
        assert_eq!(
            book.update(A, &q, Some("taken"), None).err(),
            Some(QueueError::Exists)
        );
        let renamed = book.update(A, &q, Some("new"), Some(1)).unwrap();
        assert_eq!((renamed.name.as_str(), renamed.max_size), ("new", 1));
        assert!(book.named(A, "old").is_none());
        assert_eq!(book.named(A, "new").unwrap().position("CA1"), Some(1));
        assert_eq!(
            book.enqueue(A, "new", "CA2", Instant::now()),
            Err(QueueError::Full),
            "a MaxSize of 1 refuses the second caller"
        );
        // "old" is free again: a new queue.
        let other = book.enqueue(A, "old", "CA3", Instant::now()).unwrap();
        assert_ne!(other.queue_sid, q);

        assert_eq!(book.delete(A, &q), Err(QueueError::NotEmpty));
        assert_eq!(book.delete(B, &q), Err(QueueError::NotFound));
        assert_eq!(
            book.update(B, &q, Some("x"), None).err(),
            Some(QueueError::NotFound)
        );
        assert_eq!(book.leave(A, &q, "CA1"), Left::Left { position: 1 });
        assert_eq!(book.delete(A, &q), Ok(()));
        assert!(book.by_sid(A, &q).is_none());
        assert!(book.named(A, "new").is_none());
        assert_eq!(book.queues_total(), 2);
    }

    #[test]
    fn queues_are_bounded_and_belong_to_their_account() {
        let mut book = QueueBook::default();
        let q = book.create(A, "small", 2).unwrap().sid.clone();
        book.enqueue(A, "small", "CA1", Instant::now()).unwrap();
        book.enqueue(A, "small", "CA2", Instant::now()).unwrap();
        assert_eq!(
            book.enqueue(A, "small", "CA3", Instant::now()),
            Err(QueueError::Full)
        );
        assert_eq!(book.create(A, "small", 5).err(), Some(QueueError::Exists));

        // Another account's queue of the same name is another queue.
        assert!(book.by_sid(B, &q).is_none());
        assert!(book.named(B, "small").is_none());
        assert_eq!(
            book.take(B, &q, &Take::Front, None, Instant::now()),
            Err(QueueError::NotFound)
        );
        assert_eq!(book.leave(B, &q, "CA1"), Left::NotQueued);
        assert_eq!(book.wait(B, &q, "CAb", None), Err(QueueError::NotFound));
        assert_eq!(
            book.enqueue(B, "small", "CA9", Instant::now())
                .unwrap()
                .position,
            1
        );

        for n in 1..MAX_QUEUES_PER_ACCOUNT {
            book.create(A, &format!("q{n}"), 1).unwrap();
        }
        assert_eq!(
            book.create(A, "one-more", 1).err(),
            Some(QueueError::TooMany)
        );
        assert_eq!(
            book.enqueue(A, "one-more", "CAx", Instant::now()),
            Err(QueueError::TooMany)
        );
        assert_eq!(book.of_account(A).len(), MAX_QUEUES_PER_ACCOUNT);
        assert_eq!(book.of_account(B).len(), 1);
        // Deleting one makes room again.
        let spare = book.named(A, "q1").unwrap().sid.clone();
        book.delete(A, &spare).unwrap();
        book.create(A, "one-more", 1).unwrap();
    }
}
