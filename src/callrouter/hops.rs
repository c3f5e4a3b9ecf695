//! The SMS hop count (docs/api.md §7 "Bounds").
//!
//! Two numbers of one account whose SMS applications answer each other would bounce
//! messages forever: each reply arrives as a new inbound SMS that runs the other
//! application again. Every SMS delivered to a number of the account therefore carries
//! its position in such a chain, and the reply that would be the tenth hop fails
//! (Twilio 14107) instead of running an application again, so a loop costs at most
//! nine application requests.

/// Twilio's error code of the message that would have been the tenth hop.
pub const LOOP_ERROR_CODE: u16 = 14107;

/// Hops a chain may have; the hop that would reach this number fails.
pub const MAX_HOPS: u8 = 10;

/// The position of an SMS in a chain of application replies: 1 for a message that
/// started outside an SMS application (the simulator, the REST API, a call's
/// `<Message>`), one more for each reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop(u8);

/// The reply would be hop [`MAX_HOPS`]: a loop between applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message loop: this reply would be hop {MAX_HOPS} between numbers of the account")]
pub struct HopLimit;

impl Hop {
    /// A message that no SMS application sent in reply.
    pub const FIRST: Hop = Hop(1);

    /// The hop of a reply to a message that arrived as `self`, or [`HopLimit`] when
    /// that reply must fail instead of being delivered.
    pub fn reply(self) -> Result<Hop, HopLimit> {
        match self.0.checked_add(1) {
            Some(next) if next < MAX_HOPS => Ok(Hop(next)),
            _ => Err(HopLimit),
        }
    }

    /// The position in the chain (1-based), for logs.
    pub fn get(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenth_hop_is_refused() {
        let mut hop = Hop::FIRST;
        let mut delivered = 1;
        while let Ok(next) = hop.reply() {
            hop = next;
            delivered += 1;
        }
        assert_eq!(delivered, 9, "nine hops are delivered");
        assert_eq!(hop.get(), MAX_HOPS - 1);
        assert_eq!(hop.reply(), Err(HopLimit));
    }

    #[test]
    fn a_hop_past_the_limit_never_wraps() {
        assert_eq!(Hop(u8::MAX).reply(), Err(HopLimit));
        assert_eq!(Hop(MAX_HOPS).reply(), Err(HopLimit));
        assert!(HopLimit.to_string().contains("hop 10"));
    }
}
