//! A webhook's delivered cursor (`data_dir`): how far its callback has
//! acknowledged the event log, kept by the writer ([`super::writer`]) so a
//! restarted node queues what the webhook had not delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cluster::order::Landed;

/// How far a webhook's callback has acknowledged the event log, so a restarted
/// node queues what it had not (docs/durability.md, "Sessions and webhooks").
///
/// The webhook keeps `head`, the lowest position it still holds (or owes); the
/// log's writer keeps, with each commit, every position below it and at or
/// below the landed watermark: an event below the watermark that the webhook
/// wanted has already been pushed into its queue (that is what landing means),
/// so it is either delivered or counted in `head`. The writer reads the
/// watermark before `head`, so an event landing in between is counted.
pub struct DeliveredCursor {
    sid: String,
    landed: Arc<Landed>,
    /// The lowest position queued or owed; `u64::MAX` when nothing is.
    head: AtomicU64,
}

impl std::fmt::Debug for DeliveredCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveredCursor")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

impl DeliveredCursor {
    /// The cursor of webhook `sid`; `from`: its callback had acknowledged
    /// everything up to there (it is owed what comes after; 0 for a new one).
    pub(super) fn new(sid: &str, landed: Arc<Landed>, from: u64) -> DeliveredCursor {
        DeliveredCursor {
            sid: sid.to_owned(),
            landed,
            head: AtomicU64::new(from.saturating_add(1)),
        }
    }

    /// The webhook subscription's sid.
    pub(super) fn sid(&self) -> &str {
        &self.sid
    }

    /// The webhook's lowest queued (or owed) position is now `head`
    /// (`None`: nothing).
    pub fn set_head(&self, head: Option<u64>) {
        self.head.store(head.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// An event at `position` was queued.
    pub fn lower_head(&self, position: u64) {
        self.head.fetch_min(position, Ordering::AcqRel);
    }

    /// Every position up to here has been delivered, or was not wanted.
    pub(super) fn safe(&self) -> u64 {
        let upto = self.landed.upto();
        let head = self.head.load(Ordering::Acquire);
        head.saturating_sub(1).min(upto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::order::{self, PER_MESSAGE};

    #[test]
    fn a_webhook_cursor_stays_below_what_is_queued_and_what_has_not_landed() {
        let landed = Landed::new();
        landed.start_after(4, 2);
        let cursor = DeliveredCursor {
            sid: "SU1".into(),
            landed: landed.clone(),
            head: AtomicU64::new(u64::MAX),
        };
        let last_of = |seq| order::position(seq, (PER_MESSAGE - 1) as usize);
        assert_eq!(cursor.safe(), last_of(4), "nothing queued: what has landed");
        let six = landed.read(6);
        cursor.lower_head(order::position(6, 2));
        assert_eq!(cursor.safe(), last_of(4), "6 has not landed yet");
        drop(six);
        assert_eq!(
            cursor.safe(),
            order::position(6, 2) - 1,
            "6 landed, but its event is still queued"
        );
        cursor.set_head(None);
        assert_eq!(cursor.safe(), last_of(6), "delivered");
    }
}
