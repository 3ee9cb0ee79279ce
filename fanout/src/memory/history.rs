//! A room's bounded history: the last events by count and by age.

use std::collections::VecDeque;

use bytes::Bytes;

struct Entry {
    seq: u64,
    at_ms: u64,
    frame: Bytes,
}

/// The last `max_len` events not older than `max_age_ms`.
///
/// # Backpressure
/// Pushing beyond `max_len` forgets the oldest event; events older than `max_age_ms`
/// are forgotten on the next push or read. A resume from a forgotten seq is answered
/// with `recovered:false` and a snapshot.
pub(crate) struct HistoryRing {
    items: VecDeque<Entry>,
    max_len: usize,
    max_age_ms: u64,
}

impl HistoryRing {
    pub(crate) fn new(max_len: usize, max_age_ms: u64) -> Self {
        Self {
            items: VecDeque::new(),
            max_len: max_len.max(1),
            max_age_ms,
        }
    }

    /// Appends event `seq`. INVARIANT: seqs are pushed contiguously, ascending.
    pub(crate) fn push(&mut self, seq: u64, at_ms: u64, frame: Bytes) {
        if self.items.len() == self.max_len {
            self.items.pop_front();
        }
        self.items.push_back(Entry { seq, at_ms, frame });
        self.prune(at_ms);
    }

    /// Marks event `seq` retracted ([`danmaku_protocol::audience::retracted`]): replays
    /// and snapshots tell it as skipped. Returns whether history still held it.
    pub(crate) fn retract(&mut self, seq: u64) -> bool {
        let Some(first) = self.items.front().map(|e| e.seq) else {
            return false;
        };
        let Some(i) = seq.checked_sub(first).and_then(|i| usize::try_from(i).ok()) else {
            return false;
        };
        match self.items.get_mut(i) {
            Some(e) if e.seq == seq => {
                e.frame = danmaku_protocol::audience::retracted(&e.frame);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn prune(&mut self, now_ms: u64) {
        while let Some(front) = self.items.front() {
            if front.at_ms.saturating_add(self.max_age_ms) >= now_ms {
                break;
            }
            self.items.pop_front();
        }
    }

    /// Up to `limit` events after `since`, when history holds every one of them up to
    /// `head`; `None` when some were forgotten (or `since` is beyond `head`).
    pub(crate) fn after(&self, since: u64, head: u64, limit: usize) -> Option<Vec<Bytes>> {
        if since == head {
            return Some(Vec::new());
        }
        if since > head {
            return None;
        }
        let first = self.items.front()?.seq;
        if first > since + 1 {
            return None;
        }
        let skip = usize::try_from(since + 1 - first).ok()?;
        Some(
            self.items
                .iter()
                .skip(skip)
                .take(limit)
                .map(|e| e.frame.clone())
                .collect(),
        )
    }

    /// The last `n` events, oldest first.
    pub(crate) fn recent(&self, n: usize) -> Vec<Bytes> {
        let skip = self.items.len().saturating_sub(n);
        self.items
            .iter()
            .skip(skip)
            .map(|e| e.frame.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(n: u64, max_len: usize) -> HistoryRing {
        let mut h = HistoryRing::new(max_len, 1_000);
        for seq in 1..=n {
            h.push(seq, 100, Bytes::from(seq.to_string()));
        }
        h
    }

    fn seqs(v: &[Bytes]) -> Vec<u64> {
        v.iter()
            .map(|b| std::str::from_utf8(b).expect("utf8").parse().expect("num"))
            .collect()
    }

    #[test]
    fn replays_exactly_the_missed_events() {
        let h = ring_with(10, 5);
        assert_eq!(seqs(&h.after(7, 10, 100).expect("covered")), vec![8, 9, 10]);
        assert_eq!(
            seqs(&h.after(5, 10, 100).expect("covered")),
            vec![6, 7, 8, 9, 10]
        );
        assert_eq!(seqs(&h.after(5, 10, 2).expect("covered")), vec![6, 7]);
        assert!(
            h.after(4, 10, 100).is_none(),
            "6 is the oldest kept; 5 is lost"
        );
        assert_eq!(h.after(10, 10, 100), Some(vec![]));
        assert!(h.after(11, 10, 100).is_none());
        assert_eq!(seqs(&h.recent(2)), vec![9, 10]);
        assert_eq!(seqs(&h.recent(50)), vec![6, 7, 8, 9, 10]);
    }

    #[test]
    fn forgets_by_age() {
        let mut h = HistoryRing::new(100, 1_000);
        h.push(1, 0, Bytes::from_static(b"1"));
        h.push(2, 500, Bytes::from_static(b"2"));
        h.push(3, 1_200, Bytes::from_static(b"3"));
        assert!(h.after(0, 3, 10).is_none(), "event 1 aged out");
        assert_eq!(seqs(&h.after(1, 3, 10).expect("covered")), vec![2, 3]);
        h.prune(5_000);
        assert!(h.after(2, 3, 10).is_none());
        assert_eq!(h.after(3, 3, 10), Some(vec![]));
    }
}
