//! The WebSocket signaling relay: upgrade, sessions, and the rooms they meet in.
//!
//! - [`rooms`]: the core: room membership and delivery, the interfaces every session and the
//!   REST API go through.
//! - [`session`]: one task per connection, whatever protocol it speaks.
//! - [`native`]: signalpost's own protocol.
//! - [`queue`]: the bounded per-session queue of outgoing messages.
//! - [`upgrade`]: the HTTP upgrade, done by hand so the WebSocket buffers can be sized.

pub mod native;
pub mod queue;
pub mod rooms;
pub mod session;
pub mod upgrade;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::db::Store;
use crate::limits::Limiters;
use crate::telemetry::Metrics;
use rooms::{Delivery, RoomDirectory};
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
            max_room_capacity: config.max_room_capacity,
        }
    }
}

/// Everything sessions share: a cheap handle; its parts are reached through narrow accessors.
pub struct Signaling {
    rooms: Arc<dyn RoomDirectory>,
    delivery: Arc<dyn Delivery>,
    store: Option<Store>,
    settings: SessionSettings,
    shutdown: CancellationToken,
    sessions: TaskTracker,
    limits: Arc<Limiters>,
    metrics: Arc<Metrics>,
}

/// What [`Signaling::new`] is made of.
pub struct SignalingParts {
    /// Room membership.
    pub rooms: Arc<dyn RoomDirectory>,
    /// Handing messages to sessions.
    pub delivery: Arc<dyn Delivery>,
    /// Paired rooms, for membership checks; `None` when the pairing API is off.
    pub store: Option<Store>,
    /// Session settings.
    pub settings: SessionSettings,
    /// Cancelled when the server stops.
    pub shutdown: CancellationToken,
    /// Connection slots and rates.
    pub limits: Arc<Limiters>,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
}

impl Signaling {
    /// Puts the parts together.
    pub fn new(parts: SignalingParts) -> Self {
        Self {
            rooms: parts.rooms,
            delivery: parts.delivery,
            store: parts.store,
            settings: parts.settings,
            shutdown: parts.shutdown,
            sessions: TaskTracker::new(),
            limits: parts.limits,
            metrics: parts.metrics,
        }
    }

    /// Room membership.
    pub fn rooms(&self) -> &dyn RoomDirectory {
        &*self.rooms
    }

    /// Handing messages to sessions.
    pub fn delivery(&self) -> &dyn Delivery {
        &*self.delivery
    }

    /// The pairing store, unless the pairing API is off.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Session settings.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Cancelled when the server stops.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Every session task, so shutdown can wait for them.
    pub fn sessions(&self) -> &TaskTracker {
        &self.sessions
    }

    /// Connection slots and rates.
    pub fn limits(&self) -> &Limiters {
        &self.limits
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Ends a session whose task stopped before it could leave (cancelled or panicked): out of
    /// its rooms and unregistered, on a task of its own, for a `Drop` that cannot wait.
    pub fn end_abandoned(self: &Arc<Self>, session: rooms::SessionId) {
        let signaling = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = signaling
                    .rooms()
                    .disconnect(session, rooms::Departure::Closed)
                    .await;
                signaling.delivery().unregister(session);
            });
        }
    }

    /// Tells every room and session the server is stopping.
    pub fn shut_down(&self) {
        // Rooms first, so the sessions' goodbyes are the last thing they hear.
        self.rooms.shut_down();
        self.delivery.shut_down();
    }
}
