//! Moving a session from one proxy to another without dropping its stream or losing
//! or repeating an event, without the actors: what each side holds meanwhile and who
//! delivers what.
//!
//! The proxy supervisor moves sessions to merge and retire proxies. The client's
//! outbox (what its connection drains) and its session actor move by handle, so the
//! stream never notices. The events are the hard part: the old proxy `P` gets a
//! client's events through its own filters, the new proxy `Q` only once its filters
//! are registered with the shards. The cut is made by the shards' sequence numbers:
//!
//! 1. `P` marks the sessions leaving and sends them to `Q`. From then on `P` holds
//!    what it matches for them instead of pushing it.
//! 2. `Q` adds them arriving (it holds what it matches for them too), registers
//!    their filters with the shards, and asks every shard for its last sequence
//!    number after that registration: the [`Watermarks`]. From each shard, every
//!    event after its watermark that the sessions want reaches `Q`; every one up to
//!    it reached `P`, whose filters were registered all along.
//! 3. `P` gets the watermarks. Every delivery of an event up to them is already in
//!    its mailbox ahead of this message (a shard sends deliveries before it answers
//!    the watermark), so `P` pushes what it held up to the watermarks, hands the
//!    client to `Q` in the directory and forgets the session.
//! 4. `Q` pushes what it held after the watermarks and the sessions are live.
//!
//! Each shard's events, so each call's, reach the outbox in order, each once.
//! Requests about a moving client are answered "elsewhere" and retried, and a
//! session with a request still waiting on the shards is not moved.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::sessions::WebhookTargets;
use crate::cluster::order::Ticket;
use crate::event::SharedEvent;
use crate::outbox::MatchedSubs;

/// An event matched for a moving session, held until the cut.
pub struct Held {
    /// The shard that sent it.
    pub shard: u16,
    /// Its sequence number there.
    pub seq: u64,
    /// The event.
    pub event: SharedEvent,
    /// The session's stream subscriptions it matched.
    pub subs: MatchedSubs,
    /// The session's webhook subscriptions it matched.
    pub webhooks: WebhookTargets,
    /// The acknowledgement of the delivery it came in, sent once it is pushed.
    pub taken: Arc<Taken>,
}

/// A delivery's acknowledgement to its shard, sent when the last clone drops, and
/// its stream message's ticket (cluster mode): the events a moving session holds
/// carry one until they are pushed, so a batch is "taken", and its message may
/// have landed, only once every event of it is in an outbox.
pub struct Taken {
    ack: Option<oneshot::Sender<()>>,
    _ticket: Option<Arc<Ticket>>,
}

impl Taken {
    /// Wraps a delivery's acknowledgement and ticket.
    pub fn new(ack: oneshot::Sender<()>, ticket: Option<Arc<Ticket>>) -> Arc<Taken> {
        Arc::new(Taken {
            ack: Some(ack),
            _ticket: ticket,
        })
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(ack) = self.ack.take() {
            let _ = ack.send(());
        }
    }
}

/// What a session holds while it moves, on either side.
#[derive(Default)]
pub struct Moving {
    held: Vec<Held>,
    /// Subscriptions whose expiry came meanwhile (applied once it arrived).
    pub expired: Vec<Arc<str>>,
    /// The session's idle timer ended it meanwhile (closed once it arrived).
    pub closed: bool,
}

impl Moving {
    /// Holds a matched event.
    pub fn hold(&mut self, held: Held) {
        self.held.push(held);
    }

    /// The held events on this side of the cut, in the order they came: the old
    /// proxy keeps those up to the watermarks, the new one those after.
    pub fn take(&mut self, watermarks: &Watermarks, old_side: bool) -> Vec<Held> {
        std::mem::take(&mut self.held)
            .into_iter()
            .filter(|h| watermarks.before_cut(h.shard, h.seq) == old_side)
            .collect()
    }

    /// Adds what the other side recorded of expiries and closing.
    pub fn merge(&mut self, expired: Vec<Arc<str>>, closed: bool) {
        self.expired.extend(expired);
        self.closed |= closed;
    }
}

/// Each shard's last sequence number once the new proxy's filters were
/// registered with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks(FxHashMap<u16, u64>);

impl Watermarks {
    /// From each shard's answer.
    pub fn new(answers: impl IntoIterator<Item = (u16, u64)>) -> Watermarks {
        Watermarks(answers.into_iter().collect())
    }

    /// Whether `shard`'s event `seq` is the old proxy's to deliver. A shard that
    /// gave no watermark has no registration of the new proxy's, so all its
    /// events are the old proxy's.
    pub fn before_cut(&self, shard: u16, seq: u64) -> bool {
        !matches!(self.0.get(&shard), Some(&mark) if seq > mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountIdx;
    use crate::event::{Draft, Event};

    fn held(shard: u16, seq: u64) -> Held {
        let draft = Draft {
            type_name: format!("call.s{shard}n{seq}"),
            call_sid: None,
            scope: None,
            data: serde_json::Map::new().into(),
        };
        Held {
            shard,
            seq,
            event: Arc::new(Event::build(AccountIdx(0), "AC0", draft, "t")),
            subs: MatchedSubs::new(),
            webhooks: Vec::new(),
            taken: Taken::new(oneshot::channel().0, None),
        }
    }

    fn names(held: &[Held]) -> Vec<&str> {
        held.iter().map(|h| &*h.event.type_name).collect()
    }

    #[test]
    fn each_side_keeps_its_part_of_the_cut_in_order() {
        let marks = Watermarks::new([(0, 5), (1, 2)]);
        let events = [(0, 4), (1, 2), (0, 5), (1, 3), (0, 6), (2, 9), (1, 4)];
        let mut old = Moving::default();
        let mut new = Moving::default();
        for (shard, seq) in events {
            // Both sides matched the same events here; each keeps its own.
            old.hold(held(shard, seq));
            new.hold(held(shard, seq));
        }
        assert_eq!(
            names(&old.take(&marks, true)),
            ["call.s0n4", "call.s1n2", "call.s0n5", "call.s2n9"]
        );
        assert_eq!(
            names(&new.take(&marks, false)),
            ["call.s1n3", "call.s0n6", "call.s1n4"]
        );
        assert!(old.take(&marks, true).is_empty(), "taken once");
    }

    #[test]
    fn expiries_and_closing_from_both_sides_add_up() {
        let mut moving = Moving {
            expired: vec!["SUa".into()],
            ..Moving::default()
        };
        moving.merge(vec!["SUb".into()], false);
        assert!(!moving.closed);
        moving.merge(Vec::new(), true);
        assert!(moving.closed);
        assert_eq!(moving.expired.len(), 2);
    }
}
