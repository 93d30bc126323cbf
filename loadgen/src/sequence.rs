//! What a reader makes of the sequence numbers one sender's messages carry: a first receipt, in
//! order or not, or a duplicate of one already received.
//!
//! Messages are expected in order, so the reader keeps the next number it expects and the gaps it
//! skipped: a number inside a gap arrived late; any other number below the next is a duplicate.
//! Memory grows with the gaps only, never with the messages received.

use std::collections::BTreeMap;

/// How one receipt relates to those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First receipt of this number, and no higher number came before it.
    New,
    /// First receipt of this number, after a higher one (reordered).
    Late,
    /// This number was received before.
    Duplicate,
}

/// The sequence numbers received from one sender.
#[derive(Debug, Default)]
pub struct Receipts {
    /// Every number below this was received, or is in a gap.
    next: u64,
    /// Numbers skipped and not received yet, as ranges `start..end` keyed by `start`.
    gaps: BTreeMap<u64, u64>,
}

impl Receipts {
    /// Records the receipt of `seq` and says what it was.
    pub fn record(&mut self, seq: u64) -> Receipt {
        if seq >= self.next {
            if seq > self.next {
                self.gaps.insert(self.next, seq);
            }
            self.next = seq.saturating_add(1);
            return Receipt::New;
        }
        let Some((&start, &end)) = self.gaps.range(..=seq).next_back() else {
            return Receipt::Duplicate;
        };
        if seq >= end {
            return Receipt::Duplicate;
        }
        self.gaps.remove(&start);
        if start < seq {
            self.gaps.insert(start, seq);
        }
        if seq + 1 < end {
            self.gaps.insert(seq + 1, end);
        }
        Receipt::Late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_all(seqs: &[u64]) -> Vec<Receipt> {
        let mut receipts = Receipts::default();
        seqs.iter().map(|seq| receipts.record(*seq)).collect()
    }

    #[test]
    fn in_order_receipts_are_all_new() {
        assert!(record_all(&[0, 1, 2, 3]).iter().all(|r| *r == Receipt::New));
    }

    #[test]
    fn a_repeated_number_is_a_duplicate() {
        use Receipt::*;
        assert_eq!(
            record_all(&[0, 1, 1, 2, 0]),
            [New, New, Duplicate, New, Duplicate]
        );
    }

    #[test]
    fn a_skipped_number_arriving_later_is_late_once_then_a_duplicate() {
        use Receipt::*;
        assert_eq!(
            record_all(&[0, 3, 1, 2, 2, 1, 4]),
            [New, New, Late, Late, Duplicate, Duplicate, New]
        );
        // A number in the middle of a gap splits it; both halves stay open.
        assert_eq!(
            record_all(&[10, 5, 4, 6, 0, 9, 9]),
            [New, Late, Late, Late, Late, Late, Duplicate]
        );
    }
}
