//! Fair use of the broker shards' queues: one account may hold at most half of a
//! shard's `publish.shard_queue` slots, so a publisher that aims every event at one
//! shard (by choosing its `call_sid`s) is refused once it holds its half, while
//! other accounts still find the other half free.
//!
//! Half is the simple rule that always works: it needs no knowledge of how many
//! accounts are active (a `queue / active accounts` rule shrinks everyone's share
//! as soon as idle accounts publish one event), and it is generous to a single
//! busy tenant. Several abusive accounts together can still fill a shard; that is
//! the global `publish.shard_queue` bound (503) doing its job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::account::AccountIdx;

/// The slots one account may hold in a shard queue of `queue` slots: half, and at
/// least one (a queue of one cannot be shared).
pub fn share_of(queue: i64) -> i64 {
    (queue / 2).max(1)
}

/// Slots held per (shard, account). The table grows with shards × accounts that
/// published; the distributor forgets a shard's entries when the shard leaves the
/// map ([`ShardShares::retain`]), so shards the supervisor retires leave nothing.
#[derive(Debug, Default)]
pub struct ShardShares {
    held: Mutex<HashMap<(usize, AccountIdx), Arc<AtomicI64>>>,
}

/// One slot of an account's share of a shard queue, released when dropped: it
/// travels with the publish batch, so it is given back exactly when the shard's own
/// queue slot is.
#[derive(Debug)]
pub struct ShareSlot(Arc<AtomicI64>);

impl Drop for ShareSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ShardShares {
    /// Takes a slot of `account`'s share of `shard`'s queue of `queue` slots, or
    /// `None` when the account already holds its share.
    pub fn take(&self, shard: usize, account: AccountIdx, queue: i64) -> Option<ShareSlot> {
        let counter = self
            .held
            .lock()
            .entry((shard, account))
            .or_default()
            .clone();
        let share = share_of(queue);
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < share).then_some(held + 1)
            })
            .ok()
            .map(|_| ShareSlot(counter))
    }

    /// Forgets the shards `keep` does not keep (slots still held count on in their
    /// batches and are given back to nothing).
    pub fn retain(&self, keep: impl Fn(usize) -> bool) {
        self.held.lock().retain(|(shard, _), _| keep(*shard));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_half_with_a_floor_of_one() {
        assert_eq!(share_of(1024), 512);
        assert_eq!(share_of(5), 2);
        assert_eq!(share_of(2), 1);
        assert_eq!(share_of(1), 1);
        assert_eq!(share_of(0), 1);
    }

    #[test]
    fn an_account_holds_at_most_its_share_and_others_keep_theirs() {
        let shares = ShardShares::default();
        let (a, b) = (AccountIdx(0), AccountIdx(1));
        let held: Vec<ShareSlot> = (0..2).map(|_| shares.take(0, a, 4).unwrap()).collect();
        assert!(
            shares.take(0, a, 4).is_none(),
            "a holds its half of shard 0"
        );
        assert!(shares.take(1, a, 4).is_some(), "shards are counted apart");
        let b_slots: Vec<ShareSlot> = (0..2).map(|_| shares.take(0, b, 4).unwrap()).collect();
        drop(held);
        assert!(
            shares.take(0, a, 4).is_some(),
            "dropping slots gives them back"
        );
        drop(b_slots);
    }

    #[test]
    fn a_forgotten_shard_keeps_no_entries() {
        let shares = ShardShares::default();
        let a = AccountIdx(0);
        let _held = [shares.take(0, a, 4), shares.take(7, a, 4)];
        shares.retain(|shard| shard != 7);
        let held = shares.held.lock();
        assert!(held.contains_key(&(0, a)) && !held.contains_key(&(7, a)));
    }
}
