//! How hot a stream of events is: the arrival times of the last `N` (a ring).

use std::time::{Duration, Instant};

/// The arrival times of the last `N` events. Used by the hub (is a room hot?) and by
/// the gateway (is a viewer hot?) to decide when coalescing writes pays.
#[derive(Debug, Clone, Copy)]
pub struct Heat<const N: usize> {
    arrivals: [Option<Instant>; N],
    next: usize,
}

impl<const N: usize> Default for Heat<N> {
    fn default() -> Self {
        Self {
            arrivals: [None; N],
            next: 0,
        }
    }
}

impl<const N: usize> Heat<N> {
    /// Records an event arriving at `now`.
    pub fn arrive(&mut self, now: Instant) {
        self.arrivals[self.next] = Some(now);
        self.next = (self.next + 1) % N;
    }

    /// Whether the last `N` events all arrived within `window` before `now` (never
    /// for a zero window).
    pub fn within(&self, window: Duration, now: Instant) -> bool {
        // The oldest of the ring is the next to be overwritten.
        self.arrivals[self.next].is_some_and(|oldest| now.duration_since(oldest) < window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_needs_several_events_within_a_linger() {
        let linger = Duration::from_millis(80);
        let t0 = Instant::now();
        let mut s = Heat::<3>::default();
        s.arrive(t0);
        s.arrive(t0 + Duration::from_millis(10));
        assert!(!s.within(linger, t0 + Duration::from_millis(10)));
        s.arrive(t0 + Duration::from_millis(20));
        assert!(s.within(linger, t0 + Duration::from_millis(20)));
        assert!(!s.within(linger, t0 + Duration::from_millis(90)));
        assert!(!s.within(Duration::ZERO, t0 + Duration::from_millis(20)));
    }
}
