//! What one subscriber received, by sequence number: distinct, duplicated and
//! out-of-order deliveries, and from those the lost ones.
//!
//! Order is only promised per call (docs/api.md §2), so the publishers split the sequence
//! numbers into `streams` classes (publisher `p` sends `p`, `p + P`, `p + 2P`, … on
//! its own call sid, one request at a time) and a delivery is out of order when it is
//! below the highest number already seen *in its own class*.

/// The most sequence numbers one tracker follows: bounds its bitmap (16 MiB).
pub const MAX_SEQ: u64 = 1 << 27;

/// Per-subscriber delivery accounting.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    seen: Vec<u64>,
    last: Vec<Option<u64>>,
    distinct: u64,
    duplicated: u64,
    out_of_order: u64,
    out_of_range: u64,
}

/// What a delivery was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// First time this number arrived.
    New,
    /// Already received.
    Duplicate,
    /// Beyond [`MAX_SEQ`]: not tracked.
    OutOfRange,
}

impl SeqTracker {
    /// A tracker for `streams` ordering classes (at least one).
    pub fn new(streams: usize) -> SeqTracker {
        SeqTracker {
            seen: Vec::new(),
            last: vec![None; streams.max(1)],
            distinct: 0,
            duplicated: 0,
            out_of_order: 0,
            out_of_range: 0,
        }
    }

    /// Accounts one delivery of `seq`.
    pub fn record(&mut self, seq: u64) -> Delivery {
        if seq >= MAX_SEQ {
            self.out_of_range += 1;
            return Delivery::OutOfRange;
        }
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        let class = (seq % self.last.len() as u64) as usize;
        match self.last[class] {
            Some(last) if seq < last => self.out_of_order += 1,
            _ => self.last[class] = Some(seq),
        }
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return Delivery::Duplicate;
        }
        self.seen[word] |= bit;
        self.distinct += 1;
        Delivery::New
    }

    /// Distinct numbers received.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Deliveries of a number already received.
    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }

    /// Deliveries below the highest number already seen in their class.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Deliveries of numbers beyond [`MAX_SEQ`].
    pub fn out_of_range(&self) -> u64 {
        self.out_of_range
    }

    /// Whether `seq` arrived.
    pub fn contains(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// Of the numbers `sent` has, how many never arrived here (the publishers keep a
    /// tracker of the numbers the server accepted).
    pub fn missing_from(&self, sent: &SeqTracker) -> u64 {
        sent.seen
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let mine = self.seen.get(i).copied().unwrap_or(0);
                u64::from((word & !mine).count_ones())
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_upto(n: u64) -> SeqTracker {
        let mut sent = SeqTracker::new(1);
        for seq in 0..n {
            sent.record(seq);
        }
        sent
    }

    #[test]
    fn counts_lost_duplicated_and_out_of_order() {
        let mut t = SeqTracker::new(1);
        for seq in [0, 1, 3, 2, 3, 5] {
            t.record(seq);
        }
        assert_eq!(t.distinct(), 5);
        assert_eq!(t.duplicated(), 1);
        // 2 after 3, and the second 3 is not below 3: one out of order.
        assert_eq!(t.out_of_order(), 1);
        assert_eq!(t.missing_from(&sent_upto(6)), 1); // 4
        assert_eq!(t.missing_from(&sent_upto(8)), 3); // 4, 6, 7
        let mut sent = SeqTracker::new(1);
        for seq in [0, 2, 4, 70, 200] {
            sent.record(seq);
        }
        assert_eq!(t.missing_from(&sent), 3); // 4, 70, 200
        assert!(t.contains(5) && !t.contains(4) && !t.contains(1 << 40));
    }

    #[test]
    fn order_is_per_class() {
        // Two publishers: evens and odds interleave freely but each stays in order.
        let mut t = SeqTracker::new(2);
        for seq in [1, 0, 3, 2, 5, 4] {
            t.record(seq);
        }
        assert_eq!(t.out_of_order(), 0);
        t.record(0);
        assert_eq!(t.out_of_order(), 1);
        assert_eq!(t.duplicated(), 1);
        assert_eq!(t.missing_from(&sent_upto(6)), 0);
    }

    #[test]
    fn huge_numbers_are_not_tracked() {
        let mut t = SeqTracker::new(4);
        assert_eq!(t.record(u64::MAX), Delivery::OutOfRange);
        assert_eq!(t.out_of_range(), 1);
        assert_eq!(t.distinct(), 0);
        assert_eq!(t.record(7), Delivery::New);
        assert_eq!(t.record(7), Delivery::Duplicate);
    }
}
