//! Adaptive delivery: what one viewer of one room receives when it asked for less than
//! everything (`"mode":"adaptive"`).
//!
//! Every `high` event is delivered. A `normal` one is delivered while the viewer's
//! budget (`max_rate` events per second, a bucket as deep as one second of it) has a
//! token and less than [`NORMAL_BACKLOG`] bytes wait for its socket; a `low` one only
//! while half the budget is left and less than [`LOW_BACKLOG`] bytes wait. So under
//! pressure low events go first, then normal ones. The seqs not delivered are told in
//! one `skipped` marker, put in front of the next event that is, in the same frame:
//! with the events, the markers cover every seq of the room once, in order. The cursor
//! (the room's one position) moves past skipped seqs as past written ones.

use std::time::Instant;

use danmaku_protocol::Priority;

use crate::config::Rate;
use crate::limits::TokenBucket;

/// Bytes waiting for the socket beyond which a viewer gets no `normal` events.
pub(super) const NORMAL_BACKLOG: usize = 64 * 1024;
/// Bytes waiting for the socket beyond which a viewer gets no `low` events.
pub(super) const LOW_BACKLOG: usize = 16 * 1024;

/// One adaptive viewer's state in one room.
#[derive(Debug)]
pub(super) struct Adaptive {
    budget: TokenBucket,
    /// The reserve a `low` event leaves in the budget: half of it.
    low_reserve: f64,
}

impl Adaptive {
    pub(super) fn new(max_rate: u32, now: Instant) -> Self {
        let rate = f64::from(max_rate.max(1));
        Self {
            budget: TokenBucket::new(
                Rate {
                    per_s: rate,
                    burst: rate,
                },
                now,
            ),
            low_reserve: rate / 2.0,
        }
    }

    /// Whether the encoded `event` is delivered, with `backlog` bytes waiting for the
    /// viewer's socket; `Err` says the priority of the event it skips.
    pub(super) fn admit(
        &mut self,
        event: &[u8],
        backlog: usize,
        now: Instant,
    ) -> Result<(), Priority> {
        let priority = Priority::of_frame(event);
        if self.take(priority, backlog, now) {
            Ok(())
        } else {
            Err(priority)
        }
    }

    fn take(&mut self, priority: Priority, backlog: usize, now: Instant) -> bool {
        match priority {
            Priority::High => {
                self.budget.take_any(now);
                true
            }
            Priority::Normal => backlog < NORMAL_BACKLOG && self.budget.take_above(now, 0.0),
            Priority::Low => backlog < LOW_BACKLOG && self.budget.take_above(now, self.low_reserve),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use danmaku_protocol::{EventFrame, EventKind};
    use proptest::prelude::*;

    use super::*;
    use crate::ws::skips::Skips;
    use bytes::Bytes;
    use danmaku_protocol::{RoomId, SkipReason};

    /// One decision, with the markers as the connection writes them.
    fn pass(
        a: &mut Adaptive,
        s: &mut Skips,
        seq: u64,
        event: &Bytes,
        backlog: usize,
        now: Instant,
    ) -> Result<Bytes, Priority> {
        match a.admit(event, backlog, now) {
            Ok(()) => Ok(s.before(&room(), event.clone())),
            Err(p) => {
                assert!(s.add(&room(), seq, SkipReason::Sampled).is_empty());
                Err(p)
            }
        }
    }

    fn room() -> RoomId {
        RoomId::new("r").unwrap_or_else(|_| unreachable!())
    }

    fn event(seq: u64, p: Priority) -> Bytes {
        EventFrame::encode(&room(), "e", seq, &EventKind::comment(), p, 1, "{}").bytes
    }

    fn priority(i: u8) -> Priority {
        [Priority::High, Priority::Normal, Priority::Low][usize::from(i % 3)]
    }

    /// (seq, priority) of each event, (from, to) of each marker, and every seq either
    /// covers, in the order read.
    type Read = (Vec<(u64, Priority)>, Vec<(u64, u64)>, Vec<u64>);

    /// Reads what one adaptive viewer was given.
    fn read(written: &[Bytes]) -> Read {
        let (mut events, mut markers, mut order) = (Vec::new(), Vec::new(), Vec::new());
        for frame in written {
            for line in frame.split(|&b| b == b'\n') {
                let v: serde_json::Value =
                    serde_json::from_slice(line).unwrap_or(serde_json::Value::Null);
                if v["type"] == "skipped" {
                    let (from, to) = (v["from"].as_u64(), v["to"].as_u64());
                    let (from, to) = (from.unwrap_or(0), to.unwrap_or(0));
                    assert_eq!(v["count"].as_u64(), Some(to - from + 1));
                    markers.push((from, to));
                    order.extend(from..=to);
                } else {
                    let seq = v["seq"].as_u64().unwrap_or(0);
                    events.push((seq, Priority::of_frame(line)));
                    order.push(seq);
                }
            }
        }
        (events, markers, order)
    }

    #[test]
    fn a_budget_of_ten_a_second_keeps_every_high_event_and_tells_the_rest() {
        let start = Instant::now();
        let mut a = Adaptive::new(10, start);
        let mut s = Skips::default();
        let mut written = Vec::new();
        // 50 events a second for two seconds, every tenth high.
        for seq in 1..=100u64 {
            let p = if seq % 10 == 0 {
                Priority::High
            } else {
                Priority::Normal
            };
            let now = start + Duration::from_millis(seq * 20);
            written.extend(pass(&mut a, &mut s, seq, &event(seq, p), 0, now).ok());
        }
        let (events, markers, _) = read(&written);
        let high: Vec<u64> = events
            .iter()
            .filter(|e| e.1 == Priority::High)
            .map(|e| e.0)
            .collect();
        assert_eq!(
            high,
            (1..=10).map(|i| i * 10).collect::<Vec<_>>(),
            "every high event"
        );
        // The budget, high events included: 10 at once (a full bucket) and 10 a second
        // after, of which the high events take 5.
        let normal = events.len() - high.len();
        assert!((8..=22).contains(&normal), "{normal} normal events");
        assert!(!markers.is_empty());
    }

    #[test]
    fn a_backed_up_socket_loses_low_events_first() {
        let now = Instant::now();
        let mut a = Adaptive::new(1_000, now);
        let mut s = Skips::default();
        let low = event(1, Priority::Low);
        let normal = event(2, Priority::Normal);
        assert_eq!(
            pass(&mut a, &mut s, 1, &low, LOW_BACKLOG, now),
            Err(Priority::Low)
        );
        let out = pass(&mut a, &mut s, 2, &normal, LOW_BACKLOG, now).unwrap_or_default();
        let (events, markers, _) = read(&[out]);
        assert_eq!(
            (events, markers),
            (vec![(2, Priority::Normal)], vec![(1, 1)])
        );
        assert_eq!(
            pass(&mut a, &mut s, 3, &normal, NORMAL_BACKLOG, now),
            Err(Priority::Normal)
        );
        assert!(
            pass(
                &mut a,
                &mut s,
                4,
                &event(4, Priority::High),
                usize::MAX,
                now
            )
            .is_ok()
        );
    }

    proptest! {
        /// Whatever the priorities, arrival times and backlogs: the events and markers
        /// cover every seq once, in order, and every high event is delivered.
        #[test]
        fn events_and_markers_cover_every_seq_once(
            steps in prop::collection::vec((any::<u8>(), 0u64..200, 0usize..100_000), 1..300),
            max_rate in 1u32..50,
        ) {
            let start = Instant::now();
            let mut a = Adaptive::new(max_rate, start);
        let mut s = Skips::default();
            let (mut written, mut at, mut highs) = (Vec::new(), start, Vec::new());
            for (i, (p, gap_ms, backlog)) in steps.iter().enumerate() {
                let seq = i as u64 + 1;
                at += Duration::from_millis(*gap_ms);
                if priority(*p) == Priority::High {
                    highs.push(seq);
                }
                written.extend(pass(&mut a, &mut s, seq, &event(seq, priority(*p)), *backlog, at).ok());
            }
            // What is still skipped at the end is told before the next event: make one.
            let last = steps.len() as u64 + 1;
            written.extend(pass(&mut a, &mut s, last, &event(last, Priority::High), 0, at).ok());
            highs.push(last);
            let (events, _, order) = read(&written);
            prop_assert_eq!(order, (1..=last).collect::<Vec<_>>());
            let got: Vec<u64> = events.iter().filter(|e| e.1 == Priority::High).map(|e| e.0).collect();
            prop_assert_eq!(got, highs);
        }
    }
}
