//! Abuse limits: who a client is, and how much it may do.
//!
//! The per-client limits that must hold across every node of a cluster (REST and upgrade rates,
//! guess lock-outs) sit behind two role-named interfaces, [`RateLimiter`] and [`GuessLimiter`];
//! the in-process tables here are their one-node implementations, and a shared implementation
//! can take their place so that N nodes do not multiply an attacker's budget. Connection slots
//! count this node's own sockets and stay local.
//!
//! - [`client`]: the client address behind trusted proxies, and the per-client key.
//! - [`rate`]: bounded per-client token buckets (REST requests, WebSocket upgrades).
//! - [`guess`]: failed join-code guesses and escalating lock-outs.
//! - [`slots`]: concurrent WebSocket connections, per client and in all.

pub mod client;
pub mod guess;
pub mod rate;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::Config;
use client::{Cidr, ClientKey};
use guess::{GuessGuard, GuessTicket};
use rate::{KeyedLimiter, Rate};
use slots::ConnectionSlots;

/// A per-client rate: `Err(retry_after)` when the client is over it.
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request of `key`.
    fn check(&self, key: ClientKey) -> BoxFuture<'_, Result<(), Duration>>;
}

/// Failed guesses per client and the lock-outs they earn (join codes, operator tokens).
pub trait GuessLimiter: Send + Sync + 'static {
    /// Reserves a guess for `key`, counted as a failure until settled: `Err(retry_after)` while
    /// the client is locked out or has its limit of guesses in flight.
    fn reserve(&self, key: ClientKey) -> BoxFuture<'_, Result<(), Duration>>;

    /// Settles a reserved guess: a failure counts (and returns the lock-out it started, if
    /// any); anything else is given back.
    fn settle(&self, key: ClientKey, failed: bool) -> BoxFuture<'_, Option<Duration>>;

    /// Gives a reserved guess back without waiting (a request that ended otherwise); a shared
    /// limiter finishes this in the background.
    fn release(&self, key: ClientKey);
}

impl RateLimiter for KeyedLimiter {
    fn check(&self, key: ClientKey) -> BoxFuture<'_, Result<(), Duration>> {
        Box::pin(std::future::ready(KeyedLimiter::check(self, key)))
    }
}

impl GuessLimiter for GuessGuard {
    fn reserve(&self, key: ClientKey) -> BoxFuture<'_, Result<(), Duration>> {
        Box::pin(std::future::ready(
            self.reserve_at(key, std::time::Instant::now()),
        ))
    }

    fn settle(&self, key: ClientKey, failed: bool) -> BoxFuture<'_, Option<Duration>> {
        Box::pin(std::future::ready(self.settle_at(
            key,
            failed,
            std::time::Instant::now(),
        )))
    }

    fn release(&self, key: ClientKey) {
        self.settle_at(key, false, std::time::Instant::now());
    }
}

/// Every limit of one server, built from its configuration.
pub struct Limiters {
    trusted_proxies: Vec<Cidr>,
    rest: Arc<dyn RateLimiter>,
    upgrades: Arc<dyn RateLimiter>,
    guesses: Arc<dyn GuessLimiter>,
    connections: ConnectionSlots,
}

impl Limiters {
    /// The limits in `config`, kept in this process.
    pub fn from_config(config: &Config) -> Self {
        let l = &config.limits;
        Self {
            trusted_proxies: l.trusted_proxies.clone(),
            rest: Arc::new(KeyedLimiter::new(Rate::per_minute(
                l.rest_rate_per_min,
                l.rest_burst,
            ))),
            upgrades: Arc::new(KeyedLimiter::new(Rate::per_minute(
                l.ws_upgrade_rate_per_min,
                l.ws_upgrade_rate_per_min,
            ))),
            guesses: Arc::new(GuessGuard::new(config.guess_policy())),
            connections: ConnectionSlots::new(
                l.ws_max_connections_per_client,
                l.ws_max_connections as usize,
            ),
        }
    }

    /// The same limits with the shared ones replaced (cluster mode).
    pub fn with_shared(
        mut self,
        rest: Arc<dyn RateLimiter>,
        upgrades: Arc<dyn RateLimiter>,
        guesses: Arc<dyn GuessLimiter>,
    ) -> Self {
        self.rest = rest;
        self.upgrades = upgrades;
        self.guesses = guesses;
        self
    }

    /// The key of the client behind a request.
    pub fn client_key(
        &self,
        peer: Option<std::net::SocketAddr>,
        forwarded_for: Option<&str>,
    ) -> ClientKey {
        ClientKey::of(self.client_ip(peer, forwarded_for))
    }

    /// The address of the client behind a request: the socket peer, or what trusted proxies
    /// say it is (see [`client::client_ip`]).
    pub fn client_ip(
        &self,
        peer: Option<std::net::SocketAddr>,
        forwarded_for: Option<&str>,
    ) -> std::net::IpAddr {
        client::client_ip(peer, forwarded_for, &self.trusted_proxies)
    }

    /// The REST (and operator endpoint) rate per client.
    pub fn rest(&self) -> &dyn RateLimiter {
        &*self.rest
    }

    /// The WebSocket upgrade rate per client.
    pub fn upgrades(&self) -> &dyn RateLimiter {
        &*self.upgrades
    }

    /// Open WebSocket connections of this node.
    pub fn connections(&self) -> &ConnectionSlots {
        &self.connections
    }

    /// Takes a ticket for a request that may be a failed guess (see [`GuessTicket`]).
    pub async fn reserve_guess(&self, key: ClientKey) -> Result<GuessTicket, Duration> {
        self.guesses.reserve(key).await?;
        Ok(GuessTicket::new(self.guesses.clone(), key))
    }
}
