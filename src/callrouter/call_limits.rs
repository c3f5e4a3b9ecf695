//! How long a call may run and how many documents it may fetch without anything
//! happening (docs/api.md §7 "Bounds").
//!
//! A call holds an actor, a registry entry and, while it fetches, an HTTP request to
//! a tenant's application: a call nobody hangs up, or a `<Redirect>` to itself that
//! never lets simulated time pass, would hold them (and hammer the application)
//! forever. So a call ends at its `TimeLimit` or `call_router.max_call_secs`, and the
//! hundredth document in a row that let no simulated time pass ends it with
//! `call.error` 14106 (Twilio's "document retrieval limit reached", which names
//! self-referencing `Redirect`s as its cause).

/// Twilio's error code of a call that fetched too many documents in a row without
/// any simulated time passing.
pub const LOOP_ERROR_CODE: u16 = 14106;

/// Documents in a row that may run without simulated time passing.
pub const MAX_IDLE_DOCUMENTS: u32 = 100;

/// The simulated seconds a call may last: its own `TimeLimit` when it asks for less
/// than the server's `call_router.max_call_secs`, otherwise the server's bound.
pub fn time_limit(requested: Option<u64>, max_call_secs: u64) -> u64 {
    requested.map_or(max_call_secs, |secs| secs.min(max_call_secs))
}

/// Counts the documents a call ran in a row during which no simulated time passed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdleDocuments {
    run: u32,
}

/// The call ran [`MAX_IDLE_DOCUMENTS`] documents in a row without time passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "document retrieval limit reached: {MAX_IDLE_DOCUMENTS} documents in a row let no time pass (a Redirect loop?)"
)]
pub struct DocumentLoop;

impl IdleDocuments {
    /// Records one finished document, and whether simulated time passed while it ran.
    /// Errs when it makes the run of idle documents reach the bound: the call must not
    /// fetch another.
    pub fn finished(&mut self, time_passed: bool) -> Result<(), DocumentLoop> {
        if time_passed {
            self.run = 0;
            return Ok(());
        }
        self.run = self.run.saturating_add(1);
        if self.run >= MAX_IDLE_DOCUMENTS {
            Err(DocumentLoop)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hundredth_idle_document_in_a_row_is_a_loop() {
        let mut idle = IdleDocuments::default();
        for _ in 1..MAX_IDLE_DOCUMENTS {
            assert_eq!(idle.finished(false), Ok(()));
        }
        assert_eq!(idle.finished(false), Err(DocumentLoop));
        assert!(DocumentLoop.to_string().contains("100 documents"));
    }

    #[test]
    fn a_document_that_lets_time_pass_restarts_the_count() {
        let mut idle = IdleDocuments::default();
        for _ in 1..MAX_IDLE_DOCUMENTS {
            idle.finished(false).unwrap();
        }
        idle.finished(true).unwrap();
        for _ in 1..MAX_IDLE_DOCUMENTS {
            assert_eq!(idle.finished(false), Ok(()));
        }
    }

    #[test]
    fn time_limit_takes_the_smaller_bound() {
        assert_eq!(time_limit(None, 14_400), 14_400);
        assert_eq!(time_limit(Some(60), 14_400), 60);
        assert_eq!(time_limit(Some(u64::MAX), 14_400), 14_400);
    }
}
