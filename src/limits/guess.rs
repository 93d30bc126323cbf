//! Join-code guessing: failed accepts and checks per client, and escalating lock-outs.
//!
//! A code is six digits, so a client allowed unlimited 404s finds a live code by brute force.
//! Counting failures per client address (not per socket or device id, which an attacker changes
//! for free) bounds the guesses any one address gets; see docs/security.md for the odds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::ClientKey;
use super::rate::{MAX_TRACKED_CLIENTS, evict};

/// The longest lock-out, however often a client offends.
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);

/// How long a client's offence count is remembered after its last lock-out ends.
const OFFENCE_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

/// The guess policy.
#[derive(Debug, Clone, Copy)]
pub struct GuessPolicy {
    /// Failures allowed in the window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// The first lock-out; doubled per repeated offence up to [`MAX_BLOCK`].
    pub first_block: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    offences: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// Failed guesses of every client.
pub struct GuessGuard {
    policy: GuessPolicy,
    records: Mutex<HashMap<ClientKey, Record>>,
}

impl GuessGuard {
    /// A guard with this policy.
    pub fn new(policy: GuessPolicy) -> Self {
        Self {
            policy,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `key` is locked out.
    pub fn check(&self, key: ClientKey) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// [`Self::check`] at a given instant.
    pub fn check_at(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let records = self.records.lock().unwrap();
        match records.get(&key).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed guess; returns the lock-out it started, if any.
    pub fn record_failure(&self, key: ClientKey) -> Option<Duration> {
        self.record_failure_at(key, Instant::now())
    }

    /// [`Self::record_failure`] at a given instant.
    pub fn record_failure_at(&self, key: ClientKey, now: Instant) -> Option<Duration> {
        let policy = self.policy;
        let mut records = self.records.lock().unwrap();
        if !records.contains_key(&key) && records.len() >= MAX_TRACKED_CLIENTS {
            evict(&mut records, MAX_TRACKED_CLIENTS, |r| {
                is_stale(r, policy, now)
            });
        }
        let record = records.entry(key).or_insert(Record {
            window_start: now,
            failures: 0,
            offences: 0,
            blocked_until: None,
            last_seen: now,
        });
        record.last_seen = now;
        if now.saturating_duration_since(record.window_start) >= policy.window {
            record.window_start = now;
            record.failures = 0;
        }
        record.failures += 1;
        if record.failures < policy.limit {
            return None;
        }
        let doublings = record.offences.min(16);
        let block = policy
            .first_block
            .saturating_mul(1 << doublings)
            .min(MAX_BLOCK);
        record.offences += 1;
        record.failures = 0;
        record.window_start = now;
        record.blocked_until = Some(now + block);
        Some(block)
    }
}

fn is_stale(record: &Record, policy: GuessPolicy, now: Instant) -> bool {
    let quiet_since = record
        .blocked_until
        .unwrap_or(record.last_seen)
        .max(record.last_seen);
    let memory = if record.offences > 0 {
        OFFENCE_MEMORY
    } else {
        policy.window
    };
    now.saturating_duration_since(quiet_since) >= memory
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> GuessGuard {
        GuessGuard::new(GuessPolicy {
            limit: 3,
            window: Duration::from_secs(600),
            first_block: Duration::from_secs(60),
        })
    }

    fn key() -> ClientKey {
        ClientKey::of("198.51.100.1".parse().unwrap())
    }

    #[test]
    fn the_limit_th_failure_starts_a_lock_out() {
        let g = guard();
        let t0 = Instant::now();
        assert_eq!(g.record_failure_at(key(), t0), None);
        assert_eq!(g.record_failure_at(key(), t0), None);
        assert!(g.check_at(key(), t0).is_ok());
        assert_eq!(
            g.record_failure_at(key(), t0),
            Some(Duration::from_secs(60))
        );
        assert_eq!(g.check_at(key(), t0), Err(Duration::from_secs(60)));
        assert!(g.check_at(key(), t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn repeated_offences_double_the_lock_out_up_to_fifteen_minutes() {
        let g = guard();
        let mut t = Instant::now();
        let mut blocks = Vec::new();
        for _ in 0..6 {
            let mut block = None;
            for _ in 0..3 {
                block = g.record_failure_at(key(), t);
            }
            let block = block.unwrap();
            blocks.push(block.as_secs());
            t += block + Duration::from_secs(1);
        }
        assert_eq!(blocks, vec![60, 120, 240, 480, 900, 900]);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let g = guard();
        let t0 = Instant::now();
        g.record_failure_at(key(), t0);
        g.record_failure_at(key(), t0);
        let later = t0 + Duration::from_secs(601);
        assert_eq!(g.record_failure_at(key(), later), None);
    }
}
