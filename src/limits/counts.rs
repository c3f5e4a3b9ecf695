//! Per-account counters of things held (sessions, webhooks, running calls), taken
//! and released atomically so two concurrent requests cannot both squeeze past the
//! last slot, whichever proxy or thread serves them.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::account::AccountIdx;

/// One counter per account; accounts are fixed at start-up.
#[derive(Debug)]
pub struct AccountCounts {
    counts: Box<[AtomicUsize]>,
}

impl AccountCounts {
    /// Zeroed counters for `accounts` accounts.
    pub fn new(accounts: usize) -> AccountCounts {
        AccountCounts {
            counts: (0..accounts).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Takes one unit if the account holds fewer than `limit`; an unknown account
    /// gets nothing (fail closed).
    pub fn acquire(&self, account: AccountIdx, limit: usize) -> bool {
        self.counts.get(account.0 as usize).is_some_and(|count| {
            count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    (held < limit).then_some(held + 1)
                })
                .is_ok()
        })
    }

    /// Gives one unit back (never below zero).
    pub fn release(&self, account: AccountIdx) {
        if let Some(count) = self.counts.get(account.0 as usize) {
            let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_sub(1)
            });
        }
    }

    /// What the account holds now.
    pub fn held(&self, account: AccountIdx) -> usize {
        self.counts
            .get(account.0 as usize)
            .map_or(0, |count| count.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_up_to_the_limit_per_account() {
        let counts = AccountCounts::new(2);
        let (a, b) = (AccountIdx(0), AccountIdx(1));
        assert!(counts.acquire(a, 2));
        assert!(counts.acquire(a, 2));
        assert!(!counts.acquire(a, 2), "a third is over the quota");
        assert!(counts.acquire(b, 2), "accounts are counted apart");
        counts.release(a);
        assert!(counts.acquire(a, 2));
        assert_eq!(counts.held(a), 2);
    }

    #[test]
    fn release_never_goes_below_zero_and_unknown_accounts_get_nothing() {
        let counts = AccountCounts::new(1);
        counts.release(AccountIdx(0));
        assert_eq!(counts.held(AccountIdx(0)), 0);
        assert!(!counts.acquire(AccountIdx(7), 10));
        counts.release(AccountIdx(7));
    }

    #[test]
    fn concurrent_acquires_never_pass_the_limit() {
        let counts = std::sync::Arc::new(AccountCounts::new(1));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| counts.acquire(AccountIdx(0), 100))
                        .count()
                })
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 100);
        assert_eq!(counts.held(AccountIdx(0)), 100);
    }
}
