//! DropSilk's protocol (medy17/DropSilk_Backend), on `DROPSILK_PORT`: a raw WebSocket on every
//! path and an HTTP room API on the same port, so the unchanged web client works against
//! signalpost.
//!
//! The translation onto signalpost's core:
//!
//! - A durable room (created, joined and polled over HTTP) is a row of the pairing store, with
//!   its sliding expiry; a transfer socket that closes takes its participant out of the row,
//!   promoting the guest when the host goes ([`crate::db::dropsilk`]).
//! - Each channel of a room (transfer, chat, screen share) is a room of the directory, id
//!   `<CODE>:<channel>`, of two members known by their participant id; a socket that attaches
//!   again replaces the stale one silently (`replace_same_peer`). Legacy `create-flight` /
//!   `join-flight` flights are rooms `flight:<CODE>`. Every socket also keeps a room
//!   `session:<id>` of its own, through which invitations reach it by its session id.
//! - Same-network discovery is the core's ([`crate::signaling::rooms::network`]): a socket that
//!   is neither on a chat or screen-share channel nor in a full flight sits in its network's
//!   lobby, and `users-on-network-update` is the lobby's member list without itself.
//! - Heartbeats, the 1 MiB frame cap, queues, rates and metrics are the session loop's.
//!
//! - [`wire`]: messages, bodies, validation, the room summary, ids.
//! - [`http`]: the HTTP routes and the WebSocket upgrade.
//! - [`session`]: one socket's [`Protocol`](crate::signaling::session::Protocol).

pub mod http;
pub mod session;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::db::{Store, now_millis};
use crate::dialects::{Listening, serve_on};
use crate::server::listener::ListenerContext;
use crate::signaling::rooms::RoomKey;
use crate::state::AppState;
use crate::turn::TurnSettings;
use wire::Channel;

/// The dialect's name: its listener's, its metrics label, and its rooms' space.
pub const NAME: &str = "dropsilk";

/// Largest WebSocket frame (the original's `MAX_PAYLOAD_BYTES`): SDP with many candidates is a
/// few KiB, and the original allowed this much. A larger frame closes the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Codes tried before a room creation gives up (the original's 10): with a billion codes, a
/// collision is already rare.
pub const CODE_ATTEMPTS: usize = 10;

/// Lifetime counters for `/stats` and `/api/status` (this node's).
#[derive(Debug, Default)]
pub struct Counters {
    open: AtomicUsize,
    connections: AtomicU64,
    disconnections: AtomicU64,
    flights_created: AtomicU64,
    flights_joined: AtomicU64,
}

impl Counters {
    fn connected(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn disconnected(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.disconnections.fetch_add(1, Ordering::Relaxed);
    }

    fn flight_created(&self) {
        self.flights_created.fetch_add(1, Ordering::Relaxed);
    }

    fn flight_joined(&self) {
        self.flights_joined.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the dialect's routes and sessions share.
pub struct DropSilk {
    state: AppState,
    store: Store,
    ttl: Duration,
    /// `http://localhost:N` and `http://127.0.0.1:N` of `DROPSILK_ALLOW_LOCAL_PORT`.
    local_origins: Vec<String>,
    turn: TurnSettings,
    counters: Counters,
}

impl DropSilk {
    /// The dialect on `state`, its rooms in `store`.
    pub fn new(state: AppState, store: Store) -> Self {
        let config = state.config();
        let local_origins = config
            .dropsilk_allow_local_port
            .map(|port| {
                vec![
                    format!("http://localhost:{port}"),
                    format!("http://127.0.0.1:{port}"),
                ]
            })
            .unwrap_or_default();
        Self {
            ttl: Duration::from_secs(config.dropsilk_room_ttl_secs),
            turn: TurnSettings::from_config(config),
            local_origins,
            store,
            state,
            counters: Counters::default(),
        }
    }

    /// Whether a browser on `origin` may use the dialect: any origin without `ALLOWED_ORIGINS`,
    /// else those and the local dev port's.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Some(allowed) = &self.state.config().allowed_origins else {
            return true;
        };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        allowed.allows(&origin) || self.local_origins.contains(&origin)
    }

    /// Server state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The rooms' store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How long a room lives after its last read or write.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The directory room of a durable room's channel.
pub fn channel_room(code: &str, channel: Channel) -> RoomKey {
    RoomKey::new(NAME, &format!("{code}:{}", channel.as_str()))
}

/// The directory room of a legacy flight.
pub fn flight_room(code: &str) -> RoomKey {
    RoomKey::new(NAME, &format!("flight:{code}"))
}

/// The directory room a socket keeps for messages to its session id.
pub fn session_room(id: &str) -> RoomKey {
    RoomKey::new(NAME, &format!("session:{id}"))
}

/// What a directory room of this dialect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// A socket's own room.
    Session,
    /// A flight: a legacy one, or a durable room's transfer channel.
    Flight,
    /// A durable room's chat or screen-share channel.
    Side,
}

/// What `key` is, if it is one of this dialect's rooms; and its code.
pub fn room_kind(key: &RoomKey) -> Option<(RoomKind, &str)> {
    if key.space() != NAME {
        return None;
    }
    let id = key.id();
    if let Some(session) = id.strip_prefix("session:") {
        return Some((RoomKind::Session, session));
    }
    if let Some(code) = id.strip_prefix("flight:") {
        return Some((RoomKind::Flight, code));
    }
    let (code, channel) = id.split_once(':')?;
    match channel {
        "transfer" => Some((RoomKind::Flight, code)),
        "chat" | "screen-share" => Some((RoomKind::Side, code)),
        _ => None,
    }
}

/// Starts the dialect's listener on `port`, and the sweep of its expired rooms.
pub async fn serve(
    state: &AppState,
    port: u16,
    ctx: &ListenerContext,
) -> std::io::Result<Listening> {
    let store = state.store().cloned().ok_or_else(|| {
        std::io::Error::other(
            "DROPSILK_PORT needs a pairing store (USE_SQLITE, or REDIS_URL): DropSilk's rooms are kept there",
        )
    })?;
    let dropsilk = Arc::new(DropSilk::new(state.clone(), store.clone()));
    tokio::spawn(sweep(
        store,
        state.config().sweep_interval(),
        state.signaling().shutdown_token().clone(),
    ));
    let routes = http::routes(dropsilk);
    serve_on(NAME, state, port, warp::service(routes), ctx).await
}

/// Deletes expired rooms every `interval` until shutdown (every query ignores them already;
/// this keeps the table small).
async fn sweep(store: Store, interval: Duration, shutdown: tokio_util::sync::CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => match store.dropsilk_sweep(now_millis()).await {
                Ok(0) => {}
                Ok(n) => log::info!("dropsilk: removed {n} expired room(s)"),
                Err(e) => log::error!("dropsilk: sweeping expired rooms failed: {e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_say_what_they_are() {
        assert_eq!(
            room_kind(&channel_room("ABC234", Channel::Transfer)),
            Some((RoomKind::Flight, "ABC234"))
        );
        assert_eq!(
            room_kind(&channel_room("ABC234", Channel::ScreenShare)),
            Some((RoomKind::Side, "ABC234"))
        );
        assert_eq!(
            room_kind(&channel_room("ABC234", Channel::Chat)),
            Some((RoomKind::Side, "ABC234"))
        );
        assert_eq!(
            room_kind(&flight_room("XYZ789")),
            Some((RoomKind::Flight, "XYZ789"))
        );
        assert_eq!(
            room_kind(&session_room("abc")),
            Some((RoomKind::Session, "abc"))
        );
        assert_eq!(room_kind(&RoomKey::new("s", "ABC234:transfer")), None);
    }
}
