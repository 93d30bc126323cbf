//! Join-code guessing: failed accepts and checks per client, and escalating lock-outs.
//!
//! A code is six digits, so a client allowed unlimited 404s finds a live code by brute force.
//! Counting failures per client address (not per socket or device id, which an attacker changes
//! for free) bounds the guesses any one address gets; see docs/security.md for the odds.
//!
//! Accounting is atomic: a request that may turn out to be a failed guess first takes a
//! [`GuessTicket`], which counts as a failure until it is settled. A client with `limit`
//! failures and tickets outstanding gets no more tickets, so a concurrent burst cannot get more
//! than `limit` failed guesses through before the lock-out, whatever the REST burst allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::GuessLimiter;
use super::client::ClientKey;
use super::rate::{MAX_TRACKED_CLIENTS, evict};

/// The longest lock-out, however often a client offends.
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);

/// How long a client's offence count is remembered after its last lock-out ends.
const OFFENCE_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

pub use crate::config::GuessPolicy;

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    /// Tickets taken and not yet settled.
    in_flight: u32,
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

    /// Reserves a guess for `key` at a given instant: `Err(retry_after)` while `key` is locked
    /// out, or while its failures and unsettled reservations already reach the limit.
    pub fn reserve_at(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let policy = self.policy;
        let mut records = self.records.lock().unwrap();
        let record = record_of(&mut records, key, policy, now);
        if let Some(until) = record.blocked_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        if record.failures + record.in_flight >= policy.limit {
            // Others of this client's guesses are being answered; one of them may lock it out.
            return Err(IN_FLIGHT_RETRY);
        }
        record.in_flight += 1;
        Ok(())
    }

    /// Settles a reservation made with [`Self::reserve_at`]: a failed guess counts (and returns
    /// the lock-out it started, if any), anything else is given back.
    pub fn settle_at(&self, key: ClientKey, failed: bool, now: Instant) -> Option<Duration> {
        let policy = self.policy;
        let mut records = self.records.lock().unwrap();
        let record = record_of(&mut records, key, policy, now);
        record.in_flight = record.in_flight.saturating_sub(1);
        if failed {
            count_failure(record, policy, now)
        } else {
            None
        }
    }

    /// Counts a failed guess that took no ticket; returns the lock-out it started, if any.
    pub fn record_failure(&self, key: ClientKey) -> Option<Duration> {
        self.record_failure_at(key, Instant::now())
    }

    /// [`Self::record_failure`] at a given instant.
    pub fn record_failure_at(&self, key: ClientKey, now: Instant) -> Option<Duration> {
        let policy = self.policy;
        let mut records = self.records.lock().unwrap();
        count_failure(record_of(&mut records, key, policy, now), policy, now)
    }
}

/// How long a client whose other guesses are still being answered is told to wait.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// A request that may be a failed guess, counted as one until settled. Dropped unsettled (the
/// request failed for another reason, or was cancelled), it is given back.
#[must_use = "settle the ticket with `failed` or `succeeded`"]
pub struct GuessTicket {
    limiter: Arc<dyn GuessLimiter>,
    key: ClientKey,
    settled: bool,
}

impl GuessTicket {
    /// A ticket reserved with `limiter` for `key`.
    pub fn new(limiter: Arc<dyn GuessLimiter>, key: ClientKey) -> Self {
        Self {
            limiter,
            key,
            settled: false,
        }
    }

    /// The request was a failed guess; returns the lock-out it started, if any.
    pub async fn failed(mut self) -> Option<Duration> {
        self.settled = true;
        self.limiter.settle(self.key, true).await
    }

    /// The request was no guess, or a right one.
    pub fn succeeded(self) {
        drop(self);
    }
}

impl Drop for GuessTicket {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.release(self.key);
        }
    }
}

/// `key`'s record, created if needed, with its window rolled over if it ended.
fn record_of(
    records: &mut HashMap<ClientKey, Record>,
    key: ClientKey,
    policy: GuessPolicy,
    now: Instant,
) -> &mut Record {
    if !records.contains_key(&key) && records.len() >= MAX_TRACKED_CLIENTS {
        evict(records, MAX_TRACKED_CLIENTS, |r| {
            r.in_flight == 0 && is_stale(r, policy, now)
        });
    }
    let record = records.entry(key).or_insert(Record {
        window_start: now,
        failures: 0,
        in_flight: 0,
        offences: 0,
        blocked_until: None,
        last_seen: now,
    });
    record.last_seen = now;
    if now.saturating_duration_since(record.window_start) >= policy.window {
        record.window_start = now;
        record.failures = 0;
    }
    record
}

/// Counts one failure on `record`; returns the lock-out it started, if any.
fn count_failure(record: &mut Record, policy: GuessPolicy, now: Instant) -> Option<Duration> {
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

    #[test]
    fn unsettled_tickets_count_so_a_burst_cannot_overshoot_the_limit() {
        let g = guard();
        let t0 = Instant::now();
        for _ in 0..3 {
            g.reserve_at(key(), t0).unwrap();
        }
        // Three guesses are out: a fourth must wait for them.
        assert_eq!(g.reserve_at(key(), t0), Err(IN_FLIGHT_RETRY));
        assert_eq!(g.settle_at(key(), true, t0), None);
        assert_eq!(g.settle_at(key(), true, t0), None);
        assert_eq!(g.settle_at(key(), true, t0), Some(Duration::from_secs(60)));
        assert_eq!(g.reserve_at(key(), t0), Err(Duration::from_secs(60)));
    }

    #[test]
    fn a_ticket_settled_as_a_success_is_given_back() {
        let g = guard();
        let t0 = Instant::now();
        for _ in 0..10 {
            g.reserve_at(key(), t0).unwrap();
            assert_eq!(g.settle_at(key(), false, t0), None);
        }
        assert!(g.check_at(key(), t0).is_ok());
    }
}
