//! What a viewer was not sent of one room, told as `skipped` markers.
//!
//! Seqs are skipped for a reason: `sampled` (an adaptive viewer's budget) or `targeted`
//! (an event for others). Consecutive skipped seqs with one reason make one range;
//! the ranges wait, in order, until the next event the viewer does receive, and are
//! written in front of it, in the same frame. With the events, the markers cover every
//! seq of the room once, in order.
//!
//! # Backpressure
//! At most [`MAX_RANGES`] ranges wait (reasons alternating without an event between
//! them); the next one writes the waiting markers at once, without an event.

use bytes::{BufMut, Bytes, BytesMut};
use danmaku_protocol::{RoomId, ServerFrame, SkipReason};

/// Ranges waiting for the next event at most.
pub(super) const MAX_RANGES: usize = 16;

/// The skipped ranges of one room not yet told.
#[derive(Debug, Default)]
pub(super) struct Skips {
    ranges: Vec<(u64, u64, SkipReason)>,
}

impl Skips {
    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Records that `seq` (the room's next) was not sent, for `reason`. Returns the
    /// markers to write now when [`MAX_RANGES`] were waiting.
    pub(super) fn add(&mut self, room: &RoomId, seq: u64, reason: SkipReason) -> Vec<Bytes> {
        if let Some(last) = self.ranges.last_mut()
            && last.2 == reason
            && last.1.checked_add(1) == Some(seq)
        {
            last.1 = seq;
            return Vec::new();
        }
        let told = if self.ranges.len() >= MAX_RANGES {
            self.take(room)
        } else {
            Vec::new()
        };
        self.ranges.push((seq, seq, reason));
        told
    }

    /// The waiting markers, in order; none wait afterwards.
    pub(super) fn take(&mut self, room: &RoomId) -> Vec<Bytes> {
        self.ranges
            .drain(..)
            .map(|(from, to, reason)| {
                ServerFrame::Skipped {
                    room: room.as_str(),
                    from,
                    to,
                    count: to - from + 1,
                    reason,
                }
                .encode()
            })
            .collect()
    }

    /// `event`, behind the waiting markers (one message per line).
    pub(super) fn before(&mut self, room: &RoomId, event: Bytes) -> Bytes {
        if self.ranges.is_empty() {
            return event;
        }
        let markers = self.take(room);
        let len = markers.iter().map(|m| m.len() + 1).sum::<usize>() + event.len();
        let mut out = BytesMut::with_capacity(len);
        for m in &markers {
            out.put_slice(m);
            out.put_u8(b'\n');
        }
        out.put_slice(&event);
        out.freeze()
    }

    /// Continuity restarted (a `reset`): what was skipped before is not told.
    pub(super) fn forget(&mut self) {
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::new("r").unwrap_or_else(|_| unreachable!())
    }

    fn lines(b: &Bytes) -> Vec<serde_json::Value> {
        b.split(|&c| c == b'\n')
            .map(|l| serde_json::from_slice(l).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    #[test]
    fn ranges_join_by_reason_and_go_in_front_of_the_next_event() {
        let mut s = Skips::default();
        for seq in 3..=5 {
            assert!(s.add(&room(), seq, SkipReason::Sampled).is_empty());
        }
        assert!(s.add(&room(), 6, SkipReason::Targeted).is_empty());
        assert!(s.add(&room(), 7, SkipReason::Sampled).is_empty());
        let out = s.before(&room(), Bytes::from_static(br#"{"seq":8}"#));
        let got = lines(&out);
        assert_eq!(got.len(), 4);
        assert_eq!(
            (got[0]["from"].as_u64(), got[0]["to"].as_u64()),
            (Some(3), Some(5))
        );
        assert_eq!(got[0]["count"], 3);
        assert_eq!(got[1]["reason"], "targeted");
        assert_eq!(
            (got[2]["from"].as_u64(), got[2]["reason"].as_str()),
            (Some(7), Some("sampled"))
        );
        assert_eq!(got[3]["seq"], 8);
        assert!(s.is_empty());
        let plain = Bytes::from_static(b"{}");
        assert_eq!(s.before(&room(), plain.clone()).as_ptr(), plain.as_ptr());
    }

    #[test]
    fn alternating_reasons_are_told_at_the_bound() {
        let mut s = Skips::default();
        let reasons = [SkipReason::Sampled, SkipReason::Targeted];
        let mut told = Vec::new();
        for seq in 1..=40u64 {
            told.extend(s.add(&room(), seq, reasons[(seq % 2) as usize]));
        }
        told.extend(s.take(&room()));
        assert_eq!(told.len(), 40, "one marker per seq, none lost");
        assert!(s.ranges.len() <= MAX_RANGES);
    }
}
