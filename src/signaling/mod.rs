//! The WebSocket signaling relay: upgrade, sessions, and the rooms they meet in.
//!
//! - [`hub`]: room membership and relay, the interface every session and the REST API go through.
//! - [`session`]: one task per connection.
//! - [`queue`]: the bounded per-session queue of outgoing messages.
//! - [`upgrade`]: the HTTP upgrade, done by hand so the WebSocket buffers can be sized.

pub mod hub;
pub mod queue;
pub mod session;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::db::Store;
use crate::limits::Limiters;
use crate::telemetry::Metrics;
use hub::Hub;

/// Largest text frame accepted. SDP with many candidates stays well under it; a larger frame
/// closes the connection with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Session settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Interval of server pings.
    pub ping_interval: Duration,
    /// Silence after which a connection is dropped.
    pub idle_timeout: Duration,
    /// Outbound queue bound per connection.
    pub send_queue: usize,
    /// Whether every join must name a paired room and a member device.
    pub strict_rooms: bool,
}

impl SessionSettings {
    /// The settings in `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            ping_interval: config.ws_ping_interval(),
            idle_timeout: config.ws_idle_timeout(),
            send_queue: config.ws_send_queue as usize,
            strict_rooms: config.strict_rooms,
        }
    }
}

/// Everything sessions share.
pub struct Signaling {
    /// Rooms and sessions.
    pub hub: Hub,
    /// Paired rooms, for membership checks; `None` when SQLite is off.
    pub store: Option<Store>,
    /// Session settings.
    pub settings: SessionSettings,
    /// Cancelled when the server stops.
    pub shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Connection slots and the per-connection message rate.
    pub limits: Arc<Limiters>,
    /// The server's metrics (the hub counts into the same).
    pub metrics: Arc<Metrics>,
}
