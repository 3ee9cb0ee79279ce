//! Rate limits and connection limits.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;

use crate::config::Rate;

/// A token bucket owned by one connection (no sharing, no lock).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            last: now,
        }
    }

    /// Takes one token if more than `reserve` tokens would be left above zero after
    /// it (a bucket kept for better uses); says whether it did.
    pub fn take_above(&mut self, now: Instant, reserve: f64) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 + reserve {
            self.tokens -= 1.0;
            return true;
        }
        false
    }

    /// Takes a token if there is one; never refuses (the bucket only runs dry).
    pub fn take_any(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate.per_s).min(self.rate.burst);
    }

    /// Takes one token, or says how long until one is available.
    ///
    /// # Errors
    /// The wait in milliseconds when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> Result<(), u64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.rate.per_s <= 0.0 {
            return Err(60_000);
        }
        let wait = ((1.0 - self.tokens) / self.rate.per_s * 1_000.0).ceil();
        Err(wait.max(1.0) as u64)
    }
}

/// One token bucket per configured API key: the HTTP API's quota.
///
/// # Backpressure
/// A request beyond its key's bucket is answered 429 with `Retry-After`; the set of
/// buckets is the configured keys, so it is bounded by the configuration.
#[derive(Debug)]
pub struct ApiQuota {
    buckets: Vec<Mutex<TokenBucket>>,
}

impl ApiQuota {
    /// Full buckets for `keys` keys.
    pub fn new(keys: usize, rate: Rate) -> Self {
        let now = Instant::now();
        Self {
            buckets: (0..keys)
                .map(|_| Mutex::new(TokenBucket::new(rate, now)))
                .collect(),
        }
    }

    /// Takes one request of key `index`.
    ///
    /// # Errors
    /// The wait in milliseconds when its bucket is empty.
    pub fn take(&self, index: usize) -> Result<(), u64> {
        let Some(bucket) = self.buckets.get(index) else {
            return Ok(());
        };
        // A poisoned lock only means a panic elsewhere mid-update of two numbers.
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bucket.take(Instant::now())
    }
}

/// Open connections per client IP and in all.
///
/// # Backpressure
/// At a bound, the handshake is refused (429 per IP, 503 in all). The map holds one
/// entry per IP with open connections and forgets it when the last one closes.
#[derive(Debug)]
pub struct ConnLimiter {
    per_ip: DashMap<IpAddr, usize>,
    total: AtomicUsize,
    max_per_ip: usize,
    max_total: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitError {
    /// This IP has too many connections.
    PerIp,
    /// The gateway has too many connections.
    Total,
}

/// Holds one connection slot; frees it on drop.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    /// A limiter with the given bounds.
    pub fn new(max_per_ip: usize, max_total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip: DashMap::new(),
            total: AtomicUsize::new(0),
            max_per_ip,
            max_total,
        })
    }

    /// Takes a slot for `ip`.
    ///
    /// # Errors
    /// [`LimitError`] at a bound.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, LimitError> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitError::Total);
        }
        let mut n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(n);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitError::PerIp);
        }
        *n += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(mut n) = self.limiter.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
        }
        self.limiter.per_ip.remove_if(&self.ip, |_, n| *n == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Rate {
                per_s: 5.0,
                burst: 10.0,
            },
            t0,
        );
        for _ in 0..10 {
            assert!(b.take(t0).is_ok());
        }
        assert_eq!(b.take(t0), Err(200));
        assert!(b.take(t0 + Duration::from_millis(200)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(200)).is_err());
    }

    #[test]
    fn each_api_key_has_its_own_quota() {
        let q = ApiQuota::new(
            2,
            Rate {
                per_s: 1.0,
                burst: 2.0,
            },
        );
        assert!(q.take(0).is_ok() && q.take(0).is_ok());
        assert!(q.take(0).is_err_and(|ms| ms > 0 && ms <= 1000));
        assert!(q.take(1).is_ok(), "another key's bucket is full");
    }

    #[test]
    fn limiter_counts_per_ip_and_frees() {
        let l = ConnLimiter::new(2, 3);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let p1 = l.acquire(a).expect("1");
        let _p2 = l.acquire(a).expect("2");
        assert_eq!(l.acquire(a).err(), Some(LimitError::PerIp));
        let _p3 = l.acquire(b).expect("3");
        assert_eq!(l.acquire(b).err(), Some(LimitError::Total));
        drop(p1);
        assert!(l.acquire(a).is_ok());
    }
}
