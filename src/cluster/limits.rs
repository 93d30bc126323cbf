//! The per-client limits every node must share, in Redis: REST and upgrade rates (token
//! buckets) and guess lock-outs (with the same reservations and escalation as the in-process
//! [`GuessGuard`](crate::limits::guess::GuessGuard)). An attacker spreading requests over N
//! nodes gets the budget of one.
//!
//! When Redis cannot be reached the limiters fail open for rates (the node's requests then fail
//! on the store anyway, with 503) and closed for guesses (a guess that cannot be counted is
//! refused), so an outage never becomes a window for guessing.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::Redis;
use crate::limits::client::ClientKey;
use crate::limits::guess::{GuessPolicy, MAX_BLOCK};
use crate::limits::rate::Rate;
use crate::limits::{GuessLimiter, RateLimiter};

/// The limits as Lua functions, which every script that counts a limit starts with.
pub(super) const PRELUDE: &str = include_str!("lua/limits_prelude.lua");

static RATE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}\n{}", include_str!("lua/rate.lua"))));
static GUESS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}\n{}", include_str!("lua/guess.lua"))));

/// How long a client's offences are remembered after its last lock-out, as in one node.
const OFFENCE_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

/// Reservations older than this are taken for those of a node that died before settling them.
const STALE_RESERVATION: Duration = Duration::from_secs(30);

/// Retry-After for a guess refused because Redis could not count it.
const UNCOUNTED_RETRY: Duration = Duration::from_secs(5);

/// How long a rate check may wait for Redis before the request goes ahead uncounted (rates
/// fail open): a request that then needs the store still answers within its bound when Redis
/// does not answer, and `/health` within a second.
const RATE_TIMEOUT: Duration = Duration::from_millis(250);

fn now_ms() -> String {
    crate::db::now_millis().to_string()
}

/// The bucket of `key` under the limit `name` (`rest`, `upgrades`).
pub(super) fn rate_key(name: &str, key: ClientKey) -> String {
    format!("sp:rate:{name}:{key}")
}

/// A rate as `rate_take` reads it: capacity, tokens per millisecond.
pub(super) fn rate_args(rate: Rate) -> [String; 2] {
    [
        rate.capacity.to_string(),
        (rate.per_second / 1000.0).to_string(),
    ]
}

/// The guess record of `key`.
pub(super) fn guess_key(key: ClientKey) -> String {
    format!("sp:guess:{key}")
}

/// A guess policy as `guess_policy` reads it: limit, window, first and longest lock-out,
/// offence memory and stale reservations, the times in milliseconds.
pub(super) fn guess_args(policy: GuessPolicy) -> [String; 6] {
    let ms = |d: Duration| (d.as_millis() as u64).to_string();
    [
        policy.limit.to_string(),
        ms(policy.window),
        ms(policy.first_block),
        ms(MAX_BLOCK),
        ms(OFFENCE_MEMORY),
        ms(STALE_RESERVATION),
    ]
}

/// A token bucket per client, shared by every node.
pub struct SharedRate {
    redis: Redis,
    /// Key prefix naming the limit (`rest`, `upgrades`).
    name: &'static str,
    rate: Rate,
}

impl SharedRate {
    /// A shared limiter of `rate` under `name`.
    pub fn new(redis: Redis, name: &'static str, rate: Rate) -> Self {
        Self { redis, name, rate }
    }
}

impl RateLimiter for SharedRate {
    fn check(&self, key: ClientKey) -> BoxFuture<'_, Result<(), Duration>> {
        Box::pin(async move {
            let bucket = rate_key(self.name, key);
            let [capacity, per_ms] = rate_args(self.rate);
            let now = now_ms();
            match self
                .redis
                .script_within::<u64>(RATE_TIMEOUT, &RATE, &[&bucket], &[&now, &capacity, &per_ms])
                .await
            {
                Ok(0) => Ok(()),
                Ok(wait) => Err(Duration::from_millis(wait)),
                Err(e) => {
                    log::warn!("rate limit not counted: {e}");
                    Ok(())
                }
            }
        })
    }
}

/// Failed guesses per client, shared by every node.
pub struct SharedGuesses {
    redis: Redis,
    policy: GuessPolicy,
}

impl SharedGuesses {
    /// A shared limiter with `policy`.
    pub fn new(redis: Redis, policy: GuessPolicy) -> Arc<Self> {
        Arc::new(Self { redis, policy })
    }

    async fn call(&self, key: ClientKey, op: &str, failed: bool) -> Result<u64, super::RedisError> {
        let record = guess_key(key);
        let now = now_ms();
        let policy = guess_args(self.policy);
        let mut args = vec![op, &now];
        args.extend(policy.iter().map(String::as_str));
        args.push(if failed { "1" } else { "0" });
        self.redis.script(&GUESS, &[&record], &args).await
    }
}

impl GuessLimiter for SharedGuesses {
    fn reserve(&self, key: ClientKey) -> BoxFuture<'_, Result<(), Duration>> {
        Box::pin(async move {
            match self.call(key, "reserve", false).await {
                Ok(0) => Ok(()),
                Ok(wait) => Err(Duration::from_millis(wait)),
                Err(e) => {
                    log::warn!("guess not counted, refused: {e}");
                    Err(UNCOUNTED_RETRY)
                }
            }
        })
    }

    fn settle(&self, key: ClientKey, failed: bool) -> BoxFuture<'_, Option<Duration>> {
        Box::pin(async move {
            match self.call(key, "settle", failed).await {
                Ok(0) => None,
                Ok(block) => Some(Duration::from_millis(block)),
                Err(e) => {
                    log::warn!("guess not settled: {e}");
                    None
                }
            }
        })
    }

    fn release(&self, key: ClientKey) {
        let (redis, policy) = (self.redis.clone(), self.policy);
        let limiter = Self { redis, policy };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = limiter.call(key, "settle", false).await;
            });
        }
    }
}
