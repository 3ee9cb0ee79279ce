//! What the store counts for operators: plain atomics and fixed-bucket histograms,
//! read by whoever exports them (the gateway's `/metrics`). No metrics crate here: the
//! publisher library and the store stay free of any exporter.
//!
//! Every record is a relaxed `fetch_add` (a histogram: three), so counting costs no lock
//! and no allocation on any path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many buckets a [`Histogram`] has (the `+Inf` bucket not counted).
pub const BUCKETS: usize = 14;

/// Upper bounds of the latency buckets, in microseconds: 50 µs to 5 s.
pub const LATENCY_BUCKETS_US: [u64; BUCKETS] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// A histogram with fixed buckets, lock-free: an observation is three relaxed adds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64; BUCKETS],
    counts: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations in this bucket alone), the last bucket's
    /// bound infinite: as exposition encoders take them (they add up the counts).
    pub buckets: [(f64, u64); BUCKETS + 1],
    /// Observations in all.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::with_bounds(&LATENCY_BUCKETS_US)
    }
}

impl Histogram {
    /// A histogram with these upper bounds (µs, increasing).
    pub fn with_bounds(bounds: &'static [u64; BUCKETS]) -> Self {
        Self {
            bounds,
            counts: Default::default(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = self.bounds.iter().position(|&b| us <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The buckets, count and sum now. Read without a lock, so a scrape racing an
    /// observation may see it in `count` and not yet in its bucket: it is then in the
    /// infinite one until the next scrape.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [(f64::INFINITY, 0); BUCKETS + 1];
        let mut counted = 0;
        for (slot, (bound, n)) in buckets.iter_mut().zip(self.bounds.iter().zip(&self.counts)) {
            let n = n.load(Ordering::Relaxed);
            counted += n;
            *slot = (*bound as f64 / 1e6, n);
        }
        let count = self.count.load(Ordering::Relaxed).max(counted);
        buckets[BUCKETS].1 = count - counted;
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// What a store counted since start. The memory store counts nothing here (it has no
/// calls that fail or time out); the Redis store counts every call of its command
/// connections and its pub/sub connections' troubles.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Calls answered with an error (Redis unreachable, a connection dropped, an error
    /// reply), timeouts and the room script's refusals (`DM_*`: a sold-out coupon, a
    /// second vote) not counted.
    pub errors: AtomicU64,
    /// Calls without an answer within the call timeout (a publish among them is
    /// answered `outcome_unknown`).
    pub timeouts: AtomicU64,
    /// Pub/sub connections opened again after one was lost (closed, failed, stalled).
    pub reconnects: AtomicU64,
    /// Pub/sub connections found stalled by the liveness probe and replaced.
    pub pubsub_stalls: AtomicU64,
    /// Rooms moved to a new epoch because the store went back under their epoch.
    pub rollovers: AtomicU64,
    /// Time of each call that got an answer (an error reply included).
    pub latency: Histogram,
    /// From an event's sequencing (its `ts`, the sequencing gateway's clock) to this
    /// gateway's hub taking it from pub/sub.
    pub delivery_lag: Histogram,
}

impl StoreStats {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_in_seconds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(80));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (0.00005, 0));
        assert_eq!(s.buckets[1], (0.0001, 1));
        assert_eq!(s.buckets[6], (0.005, 1));
        assert_eq!(s.buckets[BUCKETS], (f64::INFINITY, 1));
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), s.count);
        assert_eq!(s.count, 3);
        assert!((s.sum - 60.00308).abs() < 1e-9);
    }
}
