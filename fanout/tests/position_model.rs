//! The position model test: random interleavings of deliveries, duplicates, gaps,
//! overflows, trims, hand-overs, catch-ups and epoch changes, followed with
//! [`Cursor`] the way the gateway does, against a reference room. What the receiver
//! passes on must keep the promise of protocol v1 §4: every seq of an epoch once, in
//! order, or an explicit reset saying exactly where continuity restarts.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use danmaku_fanout::RESET_SEQ;
use danmaku_fanout::position::{Behind, Cursor, Step};
use proptest::prelude::*;

/// The reference room: its epoch, head and the seqs its history still holds.
struct Room {
    epoch: Arc<str>,
    epochs: u32,
    head: u64,
    /// History holds `oldest..=head`.
    oldest: u64,
}

impl Room {
    fn history(&self, from: u64, to: u64) -> Option<Vec<u64>> {
        (from >= self.oldest && to <= self.head).then(|| (from..=to).collect())
    }
}

/// What the receiver passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Event(Arc<str>, u64),
    Reset(Arc<str>, u64),
}

#[derive(Debug, Clone)]
enum Op {
    /// The room sequences `n` events.
    Publish(u8),
    /// A delivery of `first..=first+len` counted back `back` from the head (so it may
    /// be a duplicate, overlap what was written, or leave a gap); `dropped` by a full
    /// mailbox or lane.
    Deliver { back: u8, len: u8, dropped: bool },
    /// The sender says continuity restarts.
    DeliverReset { dropped: bool },
    /// The owner takes the overflow mark and catches up to the head.
    Overflow,
    /// History forgets everything before `head - keep`.
    Trim(u8),
    /// The store lost the room: a new epoch, seq from 0, announced with a reset
    /// delivery (which a full mailbox may drop).
    NewEpoch { dropped: bool },
    /// The owner hands the room to direct writes, or takes it back.
    Direct(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..4).prop_map(Op::Publish),
        6 => (0u8..6, 0u8..4, proptest::bool::weighted(0.1))
            .prop_map(|(back, len, dropped)| Op::Deliver { back, len, dropped }),
        1 => proptest::bool::weighted(0.2).prop_map(|dropped| Op::DeliverReset { dropped }),
        1 => Just(Op::Overflow),
        1 => (0u8..6).prop_map(Op::Trim),
        1 => any::<bool>().prop_map(|dropped| Op::NewEpoch { dropped }),
        2 => any::<bool>().prop_map(Op::Direct),
    ]
}

/// The receiver: a cursor and what it passed on, stepping as the gateway does.
struct Receiver {
    cursor: Cursor,
    out: Vec<Out>,
    /// The mailbox dropped a delivery: it takes no more of the room until the owner
    /// took the mark (the rule that keeps a dropped reset from being overtaken).
    overflowed: bool,
}

impl Receiver {
    fn reset(&mut self, room: &Room) {
        self.cursor.reset(room.epoch.clone(), room.head);
        self.out.push(Out::Reset(room.epoch.clone(), room.head));
    }

    /// Fills `from..=to` from history, or resets when history no longer holds it.
    fn fill(&mut self, room: &Room, from: u64, to: u64) {
        if **self.cursor.epoch() != *room.epoch {
            return self.reset(room);
        }
        match room.history(from, to) {
            Some(seqs) => {
                for s in &seqs {
                    self.out.push(Out::Event(room.epoch.clone(), *s));
                }
                self.cursor.filled(seqs.len());
            }
            None => self.reset(room),
        }
    }

    /// A delivery reaching the mailbox.
    fn offer(&mut self, room: &Room, first: u64, seq: u64, dropped: bool) {
        if self.overflowed || dropped {
            self.overflowed = true;
            self.cursor.set_direct(false);
            return;
        }
        self.deliver(room, first, seq);
    }

    fn deliver(&mut self, room: &Room, first: u64, seq: u64) {
        // A direct writer only writes what follows at once; anything else goes to
        // the owner, which steps the same delivery again.
        if self.cursor.is_direct() && self.cursor.step(first, seq) != (Step::Write { skip: 0 }) {
            self.cursor.set_direct(false);
        }
        let mut step = self.cursor.step(first, seq);
        if let Step::Gap { from, to } = step {
            self.fill(room, from, to);
            step = self.cursor.step(first, seq);
        }
        match step {
            Step::Write { skip } => {
                for s in first + skip as u64..=seq {
                    self.out.push(Out::Event(room.epoch.clone(), s));
                }
                self.cursor.wrote(seq);
            }
            Step::Duplicate => {}
            Step::Gap { .. } | Step::Reset => self.reset(room),
        }
    }

    fn catch_up(&mut self, room: &Room) {
        match self.cursor.behind(&room.epoch, room.head) {
            Behind::No => {}
            Behind::By(_) => {
                let from = self.cursor.last() + 1;
                self.fill(room, from, room.head);
            }
            Behind::NewEpoch => self.reset(room),
        }
    }
}

/// The promise: after the start or a reset at `(e, s)`, events `e, s+1, s+2, …`.
fn check(start: &Out, out: &[Out]) -> Result<(), TestCaseError> {
    let (mut epoch, mut next) = match start {
        Out::Reset(e, s) | Out::Event(e, s) => (e.clone(), s + 1),
    };
    for item in out {
        match item {
            Out::Event(e, s) => {
                prop_assert_eq!(e, &epoch, "an event of another epoch without a reset");
                prop_assert_eq!(*s, next, "a silent gap or a duplicate");
                next += 1;
            }
            Out::Reset(e, s) => {
                epoch = e.clone();
                next = s + 1;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_seq_once_in_order_or_an_explicit_reset(ops in proptest::collection::vec(op(), 1..80)) {
        let mut room = Room { epoch: Arc::from("e0"), epochs: 0, head: 0, oldest: 1 };
        let mut rx = Receiver {
            cursor: Cursor::new(room.epoch.clone(), 0),
            out: Vec::new(),
            overflowed: false,
        };
        for op in ops {
            match op {
                Op::Publish(n) => room.head += u64::from(n),
                Op::Deliver { back, len, dropped } => {
                    let seq = room.head.saturating_sub(u64::from(back));
                    let first = seq.saturating_sub(u64::from(len)).max(1);
                    if seq >= 1 {
                        // Deliveries name no epoch: the sender announces a new epoch
                        // with a reset delivery before any of its events.
                        rx.offer(&room, first, seq, dropped);
                    }
                }
                Op::DeliverReset { dropped } => rx.offer(&room, 0, RESET_SEQ, dropped),
                Op::Overflow => {
                    if std::mem::take(&mut rx.overflowed) {
                        rx.catch_up(&room);
                    }
                }
                Op::Trim(keep) => room.oldest = room.head.saturating_sub(u64::from(keep)).max(room.oldest),
                Op::NewEpoch { dropped } => {
                    room.epochs += 1;
                    room.epoch = Arc::from(format!("e{}", room.epochs));
                    room.head = 0;
                    room.oldest = 1;
                    rx.offer(&room, 0, RESET_SEQ, dropped);
                }
                Op::Direct(on) => rx.cursor.set_direct(on),
            }
        }
        // Liveness: the owner takes the mark; a final catch-up reaches the head.
        rx.overflowed = false;
        rx.catch_up(&room);
        check(&Out::Reset(Arc::from("e0"), 0), &rx.out)?;
        prop_assert_eq!(rx.cursor.epoch(), &room.epoch);
        prop_assert_eq!(rx.cursor.last(), room.head);
    }
}

#[test]
fn the_model_catches_a_broken_rule() {
    // A receiver that writes past a gap (the rule broken) is caught by the check.
    let out = vec![
        Out::Event(Arc::from("e0"), 1),
        Out::Event(Arc::from("e0"), 3),
    ];
    assert!(check(&Out::Reset(Arc::from("e0"), 0), &out).is_err());
}
