//! OctateCode's collaboration protocol (`OCTATECODE_PORT`): its lean backend's WebSocket
//! protocol on any path (`auth` into a room by id, `peerList`/`peerJoined`/`peerLeft`, offers,
//! answers and candidates to one peer, chat and sync to the room) and its HTTP API on the same
//! port (the original needed two). With `OCTATECODE_AUTH_SECRET`, `auth` needs a token from
//! `POST /api/auth/token`, as the backend's README promises.
//!
//! Rooms are the core's, in space `octatecode`: capacity, limits and cluster mode come with them.
//!
//! - [`wire`]: the messages.
//! - [`session`]: one connection's translation onto the rooms.
//! - [`http`]: the HTTP routes.
//! - [`token`]: the signed room tokens.

pub mod http;
pub mod session;
pub mod token;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::server::listener::HttpService;
use crate::signaling::rooms::{MemberInfo, RoomKey};
use crate::state::AppState;
use token::Tokens;

/// The listener's name in logs and metrics.
pub const NAME: &str = "octatecode";

/// The space of this protocol's rooms.
pub const SPACE: &str = "octatecode";

/// The room key of room `id`.
pub fn room_key(id: &str) -> RoomKey {
    RoomKey::new(SPACE, id)
}

/// What every connection of the listener shares.
#[derive(Debug)]
pub struct Shared {
    /// Token issuing and checking, when `OCTATECODE_AUTH_SECRET` is set.
    pub tokens: Option<Tokens>,
    /// Peers a room takes (`MAX_ROOM_CAPACITY`).
    pub capacity: u32,
}

/// Shortest secret that does not draw a warning at start: 128 bits as hex.
const WEAK_SECRET_BYTES: usize = 32;

impl Shared {
    /// The settings in the server's configuration.
    pub fn from_state(state: &AppState) -> Self {
        let config = state.config();
        let tokens = config.octatecode_auth_secret.as_ref().map(|secret| {
            if secret.expose().len() < WEAK_SECRET_BYTES {
                log::warn!(
                    "OCTATECODE_AUTH_SECRET is short: use at least {WEAK_SECRET_BYTES} random characters (openssl rand -hex 32)"
                );
            }
            Tokens::new(
                secret,
                Duration::from_secs(config.octatecode_token_ttl_secs),
            )
        });
        Self {
            tokens,
            capacity: config.max_room_capacity,
        }
    }
}

/// What a member carries besides its id and name: when it joined, and its room's name and
/// creation time. Every member carries the room's, copied from the members already there, so
/// they outlive whoever created the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberData {
    /// Milliseconds since the Unix epoch.
    pub joined_at: i64,
    /// The `roomName` the room was created with.
    pub room_name: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub room_created_at: i64,
}

impl MemberData {
    /// A member's, if it carries one.
    pub fn of(member: &MemberInfo) -> Option<Self> {
        serde_json::from_value(member.data.as_deref()?.clone()).ok()
    }

    /// As a member's data.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("member data serializes")
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The listener's HTTP service: the WebSocket on any path, and the HTTP API.
pub fn service(state: &AppState) -> impl HttpService {
    let shared = Arc::new(Shared::from_state(state));
    warp::service(http::routes(state.clone(), shared))
}
