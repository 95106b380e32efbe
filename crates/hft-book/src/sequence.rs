//! Gap detection for venue sequence numbers: an incremental feed is only correct if no
//! message was lost, so the feed handler checks every message here before applying it.

use thiserror::Error;

/// Why a sequence number was not the one expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SequenceGap {
    /// A duplicate or an old message (e.g. replayed by an A/B line arbiter); it was
    /// already applied or superseded, so the caller should drop it and carry on.
    #[error(
        "stale sequence number {got}, expected {expected}: the message is a duplicate or \
         older than the last applied one; drop it"
    )]
    Stale {
        /// The next sequence number the tracker would accept.
        expected: u64,
        /// The sequence number received.
        got: u64,
    },
    /// Messages `expected..got` were lost: the book can no longer be trusted, so the
    /// caller must clear it, recover from a snapshot and then call
    /// [`SequenceTracker::reset`].
    #[error(
        "sequence gap: expected {expected}, got {got} ({} message(s) lost); clear the book, \
         recover from a snapshot and reset the tracker",
        .got.saturating_sub(*.expected)
    )]
    Gap {
        /// The next sequence number the tracker would have accepted.
        expected: u64,
        /// The sequence number received.
        got: u64,
    },
}

/// Tracks the next expected venue sequence number.
///
/// The first number seen is accepted as is (the feed may join mid-stream); after that
/// each must be exactly the previous one plus one. A gap does not move the tracker
/// forward: every later message keeps being reported as a gap until the caller has
/// recovered and calls [`reset`](Self::reset), so a book that missed updates can never
/// be silently resumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequenceTracker {
    expected: Option<u64>,
}

impl SequenceTracker {
    /// A tracker that has seen nothing yet and will accept any first number.
    pub const fn new() -> Self {
        Self { expected: None }
    }

    /// Checks `seq` and, if it is the expected one (or the first), advances.
    ///
    /// On error the tracker is unchanged. After `u64::MAX` the expected number wraps to
    /// 0, which no real venue reaches.
    #[inline]
    pub fn check(&mut self, seq: u64) -> Result<(), SequenceGap> {
        match self.expected {
            Some(expected) if seq < expected => Err(SequenceGap::Stale { expected, got: seq }),
            Some(expected) if seq > expected => Err(SequenceGap::Gap { expected, got: seq }),
            _ => {
                self.expected = Some(seq.wrapping_add(1));
                Ok(())
            }
        }
    }

    /// Forgets the expected number so the next [`check`](Self::check) accepts any
    /// sequence number; call it after a snapshot recovery, which restarts the stream.
    pub fn reset(&mut self) {
        self.expected = None;
    }

    /// The next sequence number that would be accepted, or `None` before the first
    /// message (or after a reset), when any number is accepted.
    pub const fn expected(&self) -> Option<u64> {
        self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_number_is_accepted_then_consecutive() {
        let mut t = SequenceTracker::new();
        assert_eq!(t.expected(), None);
        assert_eq!(t.check(41), Ok(()));
        assert_eq!(t.expected(), Some(42));
        assert_eq!(t.check(42), Ok(()));
        assert_eq!(t.check(43), Ok(()));
        assert_eq!(t.expected(), Some(44));
    }

    #[test]
    fn duplicates_and_old_numbers_are_stale_and_do_not_move_the_tracker() {
        let mut t = SequenceTracker::new();
        t.check(10).unwrap();
        t.check(11).unwrap();
        assert_eq!(
            t.check(11),
            Err(SequenceGap::Stale {
                expected: 12,
                got: 11
            })
        );
        assert_eq!(
            t.check(3),
            Err(SequenceGap::Stale {
                expected: 12,
                got: 3
            })
        );
        assert_eq!(t.expected(), Some(12));
        assert_eq!(t.check(12), Ok(()));
    }

    #[test]
    fn gap_is_sticky_until_reset() {
        let mut t = SequenceTracker::new();
        t.check(1).unwrap();
        assert_eq!(
            t.check(5),
            Err(SequenceGap::Gap {
                expected: 2,
                got: 5
            })
        );
        // Does not re-sync on its own: the next message is still a gap.
        assert_eq!(
            t.check(6),
            Err(SequenceGap::Gap {
                expected: 2,
                got: 6
            })
        );
        assert_eq!(t.expected(), Some(2));
        t.reset();
        assert_eq!(t.expected(), None);
        assert_eq!(t.check(6), Ok(()));
        assert_eq!(t.expected(), Some(7));
    }

    #[test]
    fn default_equals_new_and_max_does_not_panic() {
        assert_eq!(SequenceTracker::default(), SequenceTracker::new());
        let mut t = SequenceTracker::new();
        assert_eq!(t.check(u64::MAX), Ok(()));
        assert_eq!(t.expected(), Some(0));
    }

    #[test]
    fn messages_say_what_to_do() {
        let gap = SequenceGap::Gap {
            expected: 2,
            got: 5,
        }
        .to_string();
        assert!(gap.contains("expected 2, got 5"), "{gap}");
        assert!(gap.contains("3 message(s) lost"), "{gap}");
        assert!(gap.contains("snapshot"), "{gap}");
        let stale = SequenceGap::Stale {
            expected: 2,
            got: 1,
        }
        .to_string();
        assert!(stale.contains("drop it"), "{stale}");
    }
}
