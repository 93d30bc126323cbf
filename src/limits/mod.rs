//! Abuse limits: who a client is, and how much it may do.
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

use crate::config::Config;
use client::{Cidr, ClientKey};
use guess::{GuessGuard, GuessPolicy};
use rate::{KeyedLimiter, Rate};
use slots::ConnectionSlots;

/// Every limit of one server, built from its configuration.
pub struct Limiters {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// REST requests per client.
    pub rest: KeyedLimiter,
    /// WebSocket upgrades per client.
    pub upgrades: KeyedLimiter,
    /// Failed join-code guesses per client.
    pub guesses: Arc<GuessGuard>,
    /// Open WebSocket connections.
    pub connections: ConnectionSlots,
    /// Messages per connection (each session keeps its own bucket of this shape).
    pub messages: Rate,
}

impl Limiters {
    /// The limits in `config`.
    pub fn from_config(config: &Config) -> Self {
        let l = &config.limits;
        Self {
            trusted_proxies: l.trusted_proxies.clone(),
            rest: KeyedLimiter::new(Rate::per_minute(l.rest_rate_per_min, l.rest_burst)),
            upgrades: KeyedLimiter::new(Rate::per_minute(
                l.ws_upgrade_rate_per_min,
                l.ws_upgrade_rate_per_min,
            )),
            guesses: Arc::new(GuessGuard::new(GuessPolicy {
                limit: l.guess_limit,
                window: Duration::from_secs(l.guess_window_secs),
                first_block: Duration::from_secs(l.guess_block_secs),
            })),
            connections: ConnectionSlots::new(
                l.ws_max_connections_per_client,
                l.ws_max_connections as usize,
            ),
            messages: Rate::per_second(l.ws_msg_rate_per_sec, l.ws_msg_burst),
        }
    }

    /// The key of the client behind a request.
    pub fn client_key(
        &self,
        peer: Option<std::net::SocketAddr>,
        forwarded_for: Option<&str>,
    ) -> ClientKey {
        ClientKey::of(client::client_ip(
            peer,
            forwarded_for,
            &self.trusted_proxies,
        ))
    }
}
