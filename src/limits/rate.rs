//! Token buckets, one per client, in a map that cannot grow without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::ClientKey;

/// Most clients one limiter tracks. A flood of distinct addresses beyond it evicts idle entries
/// first, then arbitrary ones: an evicted client starts again with a full bucket, which is the
/// cost of a bounded table (at a few dozen bytes an entry, this caps each limiter near 10 MiB).
pub const MAX_TRACKED_CLIENTS: usize = 200_000;

/// A token bucket: `capacity` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests that may come at once.
    pub capacity: f64,
    /// Sustained requests per second.
    pub per_second: f64,
}

impl Rate {
    /// `per_minute` sustained, `burst` at once.
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Self {
            capacity: f64::from(burst.max(1)),
            per_second: f64::from(per_minute.max(1)) / 60.0,
        }
    }

    /// `per_second` sustained, `burst` at once.
    pub fn per_second(per_second: u32, burst: u32) -> Self {
        Self {
            capacity: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
        }
    }
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.capacity,
            last: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second,
            ))
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.capacity);
        self.last = now;
    }

    /// Whether the bucket would be full by now, i.e. the entry carries no information.
    fn is_at_rest(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate.per_second >= rate.capacity
    }
}

/// Per-client token buckets of one shape.
pub struct KeyedLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
    max_keys: usize,
}

impl KeyedLimiter {
    /// A limiter of this rate.
    pub fn new(rate: Rate) -> Self {
        Self::with_capacity(rate, MAX_TRACKED_CLIENTS)
    }

    /// A limiter tracking at most `max_keys` clients.
    pub fn with_capacity(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Counts one request of `key`; `Err(retry_after)` when it is over the rate.
    pub fn check(&self, key: ClientKey) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// [`Self::check`] at a given instant.
    pub fn check_at(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap();
        if !buckets.contains_key(&key) && buckets.len() >= self.max_keys {
            evict(&mut buckets, self.max_keys, |b| {
                b.is_at_rest(self.rate, now)
            });
        }
        buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(self.rate, now))
            .take(self.rate, now)
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

/// Makes room in a full table: first every entry `is_stale` says carries nothing, then, if the
/// table is still full, arbitrary entries down to 90% (so a flood pays for eviction rarely).
pub fn evict<V>(map: &mut HashMap<ClientKey, V>, max_keys: usize, is_stale: impl Fn(&V) -> bool) {
    map.retain(|_, v| !is_stale(v));
    if map.len() >= max_keys {
        let target = max_keys - max_keys / 10 - 1;
        let excess: Vec<ClientKey> = map
            .keys()
            .take(map.len().saturating_sub(target))
            .copied()
            .collect();
        for key in excess {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> ClientKey {
        ClientKey::of(std::net::IpAddr::from(n.to_be_bytes()))
    }

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies() {
        let limiter = KeyedLimiter::new(Rate::per_minute(60, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(key(1), t0).is_ok());
        }
        let wait = limiter.check_at(key(1), t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(
            limiter.check_at(key(2), t0).is_ok(),
            "other clients are unaffected"
        );
        assert!(
            limiter
                .check_at(key(1), t0 + Duration::from_secs(1))
                .is_ok()
        );
    }

    #[test]
    fn a_flood_of_distinct_clients_stays_bounded() {
        let limiter = KeyedLimiter::with_capacity(Rate::per_minute(60, 5), 1000);
        let t0 = Instant::now();
        for n in 0..50_000 {
            let _ = limiter.check_at(key(n), t0);
            let _ = limiter.check_at(key(n), t0);
        }
        assert!(limiter.tracked() <= 1000);
    }
}
