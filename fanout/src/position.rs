//! A position in one room, and the one decision about every delivery.
//!
//! Whoever follows a room's sequence — a viewer's connection (its direct-write outlet
//! and its task) or a gateway's Redis subscriber — keeps a [`Cursor`]: the room's epoch,
//! the last seq it passed on, and who may write the room's events right now. For each
//! delivery of events `first..=seq` the cursor says one [`Step`]: write it (without the
//! part already written), drop it as a duplicate, fill a gap from history first, or
//! reset. No other code compares seqs.
//!
//! # The promise (protocol v1 §4)
//! Following the steps, a receiver passes on every seq of an epoch once, in order, or
//! an explicit reset that says where continuity restarts. `tests/position_model.rs`
//! drives random interleavings of deliveries, duplicates, gaps, trims, hand-overs and
//! epoch changes against a reference model and checks exactly that.
//!
//! # Skips
//! A seq a viewer is not to receive (a targeted event, a sampled low-priority one) is
//! one more step of the same decision: the cursor moves past it and records the range,
//! which is told as a `skipped` marker before the next event written. The cursor then
//! still accounts for every seq exactly once.

use std::sync::Arc;

use crate::RESET_SEQ;

/// What to do with a delivery of the events `first..=seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write it, without its first `skip` events (written already).
    Write {
        /// Events at the start of the delivery that were written already.
        skip: usize,
    },
    /// Every event in it was written already.
    Duplicate,
    /// Events `from..=to` are missing before it: fill them from history first.
    Gap {
        /// The first missing seq.
        from: u64,
        /// The last missing seq.
        to: u64,
    },
    /// Continuity restarts: the room's epoch changed, or a gap cannot be filled.
    Reset,
}

/// Where a cursor stands against the room's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// At the head (or ahead of a head read a moment ago).
    No,
    /// This many events behind.
    By(u64),
    /// The room has another epoch: continuity restarts.
    NewEpoch,
}

/// Whether `seq` is the event right after `last`.
pub fn follows(last: u64, seq: u64) -> bool {
    last.checked_add(1) == Some(seq)
}

/// A position in one room's sequence.
#[derive(Debug, Clone)]
pub struct Cursor {
    /// The epoch the position is in; empty until the room has one.
    epoch: Arc<str>,
    /// INVARIANT: every event of `epoch` up to `last` was passed on (or replaced by a
    /// reset that moved the cursor here).
    last: u64,
    /// The hub's delivering task may write this room's events itself (the viewer's
    /// outlet); otherwise the owner (the connection task) writes them.
    direct: bool,
}

impl Cursor {
    /// A cursor at `last` in `epoch`, written by its owner.
    pub fn new(epoch: Arc<str>, last: u64) -> Self {
        Self {
            epoch,
            last,
            direct: false,
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// The last seq passed on.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The decision for a delivery of `first..=seq` of this cursor's epoch
    /// (`seq` = [`RESET_SEQ`]: the sender says continuity restarts).
    pub fn step(&self, first: u64, seq: u64) -> Step {
        if seq == RESET_SEQ {
            Step::Reset
        } else if seq <= self.last {
            Step::Duplicate
        } else if first > self.last + 1 {
            Step::Gap {
                from: self.last + 1,
                to: first - 1,
            }
        } else {
            Step::Write {
                skip: usize::try_from(self.last + 1 - first.max(1)).unwrap_or(usize::MAX),
            }
        }
    }

    /// The decision for one event `seq` that names its epoch (a store's message). An
    /// unknown epoch (the cursor was made before the room had one) is adopted.
    pub fn step_in(&mut self, epoch: &str, seq: u64) -> Step {
        if self.epoch.is_empty() {
            self.epoch = Arc::from(epoch);
        } else if *self.epoch != *epoch {
            return Step::Reset;
        }
        self.step(seq, seq)
    }

    /// Where the cursor stands against the room's head `(epoch, head)`.
    pub fn behind(&self, epoch: &str, head: u64) -> Behind {
        if !self.epoch.is_empty() && *self.epoch != *epoch {
            Behind::NewEpoch
        } else if head > self.last {
            Behind::By(head - self.last)
        } else {
            Behind::No
        }
    }

    /// How many events of the cursor's own epoch are missing up to `upto`.
    pub fn missing(&self, upto: u64) -> u64 {
        upto.saturating_sub(self.last)
    }

    /// Records that the events up to `seq` were passed on.
    pub fn wrote(&mut self, seq: u64) {
        // INVARIANT: never backwards; a step said Write for this delivery.
        self.last = self.last.max(seq);
    }

    /// Records that the next `n` events were passed on (a history fill).
    pub fn filled(&mut self, n: usize) {
        self.last = self.last.saturating_add(n as u64);
    }

    /// Continuity restarts at `seq` of `epoch`.
    pub fn reset(&mut self, epoch: Arc<str>, seq: u64) {
        self.epoch = epoch;
        self.last = seq;
    }

    /// Adopts the room's epoch when the cursor has none yet.
    pub fn know_epoch(&mut self, epoch: &str) {
        if self.epoch.is_empty() {
            self.epoch = Arc::from(epoch);
        }
    }

    /// Whether the hub may write this room's events directly.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Lets the hub write directly (`true`) or gives the room back to its owner.
    pub fn set_direct(&mut self, direct: bool) {
        self.direct = direct;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decision_per_delivery() {
        let c = Cursor::new(Arc::from("e"), 5);
        assert_eq!(c.step(6, 6), Step::Write { skip: 0 });
        assert_eq!(c.step(3, 8), Step::Write { skip: 3 });
        assert_eq!(c.step(5, 5), Step::Duplicate);
        assert_eq!(c.step(2, 4), Step::Duplicate);
        assert_eq!(c.step(9, 9), Step::Gap { from: 6, to: 8 });
        assert_eq!(c.step(9, RESET_SEQ), Step::Reset);
        let mut c = Cursor::new(Arc::from(""), 0);
        assert_eq!(c.step_in("e1", 1), Step::Write { skip: 0 });
        assert_eq!(c.epoch().as_ref(), "e1");
        assert_eq!(c.step_in("e2", 1), Step::Reset);
        assert_eq!(c.behind("e1", 3), Behind::By(3));
        assert_eq!(c.behind("e2", 0), Behind::NewEpoch);
        assert!(follows(4, 5) && !follows(4, 6) && !follows(u64::MAX, 0));
        assert_eq!((c.missing(3), c.missing(0)), (3, 0));
    }
}
