//! A shard's side of receiving slots from another, without the actor.
//!
//! The supervisor moves a slot in three steps, and only the first and the last reach
//! the new owner: it tells the new owner to expect the slot, swaps the shard map
//! (from then on publishers send the slot's events to the new owner), and tells the
//! old owner to release the slot, which it does once everything published to it
//! before the swap is routed, handing over the slot's retained events and call-pinned
//! filters. Until that hand-over arrives the new owner must not route anything of
//! the slot, or a call's newer events would overtake its older ones still queued at
//! the old owner. [`Incoming`] holds back every publish while any slot is expected
//! (a hand-off lasts as long as the old owner's queue, a few milliseconds), in
//! order, and gives them back once nothing more is expected.

use std::collections::VecDeque;

use rustc_hash::FxHashSet;

/// Slots on their way to this shard and the publishes waiting for them (see the
/// module docs). `P` is a publish batch.
#[derive(Debug)]
pub struct Incoming<P> {
    expected: FxHashSet<u16>,
    held: VecDeque<P>,
}

impl<P> Default for Incoming<P> {
    fn default() -> Self {
        Incoming {
            expected: FxHashSet::default(),
            held: VecDeque::new(),
        }
    }
}

impl<P> Incoming<P> {
    /// These slots are coming: hold publishes from now on.
    pub fn expect(&mut self, slots: &[u16]) {
        self.expected.extend(slots.iter().copied());
    }

    /// Whether a hand-off is awaited (a replay must wait for it too, or it would
    /// miss the slot's history).
    pub fn awaiting(&self) -> bool {
        !self.expected.is_empty()
    }

    /// A publish arrived: `Some` to route it now, `None` when it was held.
    pub fn admit(&mut self, publish: P) -> Option<P> {
        if self.awaiting() {
            self.held.push_back(publish);
            None
        } else {
            Some(publish)
        }
    }

    /// The hand-off of `slots` arrived: the held publishes to route now, oldest
    /// first, once no other slot is still expected (else none yet).
    pub fn arrived(&mut self, slots: &[u16]) -> Vec<P> {
        for slot in slots {
            self.expected.remove(slot);
        }
        if self.awaiting() {
            Vec::new()
        } else {
            self.held.drain(..).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_wait_in_order_until_every_expected_slot_arrives() {
        let mut incoming = Incoming::default();
        assert_eq!(
            incoming.admit(1),
            Some(1),
            "nothing expected: routed at once"
        );
        incoming.expect(&[4, 9]);
        assert!(incoming.awaiting());
        assert_eq!(incoming.admit(2), None);
        assert_eq!(incoming.admit(3), None);
        assert!(incoming.arrived(&[4]).is_empty(), "slot 9 is still coming");
        assert_eq!(incoming.admit(4), None);
        assert_eq!(incoming.arrived(&[9]), [2, 3, 4]);
        assert!(!incoming.awaiting());
        assert_eq!(incoming.admit(5), Some(5));
        assert!(incoming.arrived(&[7]).is_empty(), "nothing was held");
    }
}
