//! The WebSocket signaling relay: upgrade, sessions, and the rooms they meet in.
//!
//! - [`hub`]: room membership and relay, the interface every session and the REST API go through.
//! - [`session`]: one task per connection, whatever protocol it speaks.
//! - [`native`]: signalpost's own protocol.
//! - [`queue`]: the bounded per-session queue of outgoing messages.
//! - [`upgrade`]: the HTTP upgrade, done by hand so the WebSocket buffers can be sized.

pub mod hub;
pub mod native;
pub mod queue;
pub mod session;
pub mod upgrade;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::db::Store;
use crate::limits::Limiters;
use crate::telemetry::Metrics;
use hub::Hub;
pub use session::SessionSettings;

/// Largest text frame accepted. SDP with many candidates stays well under it; a larger frame
/// closes the connection with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

impl SessionSettings {
    /// The settings in `config`.
    pub fn from_config(config: &Config) -> Self {
        let l = &config.limits;
        Self {
            ping_interval: config.ws_ping_interval(),
            idle_timeout: config.ws_idle_timeout(),
            write_timeout: config.ws_write_timeout(),
            queue: queue::Bounds {
                messages: config.ws_send_queue as usize,
                bytes: config.ws_send_queue_bytes as usize,
            },
            messages: crate::limits::rate::Rate::per_second(l.ws_msg_rate_per_sec, l.ws_msg_burst),
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
