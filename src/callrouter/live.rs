//! The count of call programs still running, so a drain can wait until every call
//! has ended *completely* — its `call.end` published and its `StatusCallback`
//! requested — before streams are closed (docs/api.md §8 "SIGTERM drains").
//!
//! The registry's record of a call ends earlier (a `<Dial>`ing parent must learn the
//! outcome at once), so it cannot tell the drain when a call is really done.

use std::time::Duration;

use tokio::sync::watch;

/// Running call programs. One per router.
#[derive(Debug)]
pub struct LiveCalls {
    count: watch::Sender<usize>,
}

/// One running call; dropping it (when the program has finished) counts it out.
#[derive(Debug)]
pub struct LiveCall {
    count: watch::Sender<usize>,
}

impl LiveCalls {
    /// No call running.
    pub fn new() -> LiveCalls {
        LiveCalls {
            count: watch::Sender::new(0),
        }
    }

    /// Counts a call in until the returned guard is dropped.
    pub fn enter(&self) -> LiveCall {
        self.count.send_modify(|n| *n = n.saturating_add(1));
        LiveCall {
            count: self.count.clone(),
        }
    }

    /// Calls running now.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until no call runs, at most `within`; on time-out, errs with how many
    /// still do.
    pub async fn ended(&self, within: Duration) -> Result<(), usize> {
        let mut count = self.count.subscribe();
        let idle = tokio::time::timeout(within, count.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if idle {
            Ok(())
        } else {
            Err(self.count())
        }
    }
}

impl Default for LiveCalls {
    fn default() -> Self {
        LiveCalls::new()
    }
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        self.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ended_waits_for_the_last_guard() {
        let live = LiveCalls::new();
        assert_eq!(live.ended(Duration::ZERO).await, Ok(()));
        let first = live.enter();
        let second = live.enter();
        assert_eq!(live.count(), 2);
        drop(first);
        assert_eq!(live.ended(Duration::from_millis(1)).await, Err(1));
        let waiter = live.ended(Duration::from_secs(10));
        drop(second);
        assert_eq!(waiter.await, Ok(()));
        assert_eq!(live.count(), 0);
    }
}
