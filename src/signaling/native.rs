//! signalpost's own protocol (docs/protocol.md), spoken on the main port: `join_room`,
//! `leave_room`, relayed offers, answers and candidates, and `ping`.

use std::sync::Arc;

use super::Signaling;
use super::session::{Flow, Protocol, Replies};
use crate::db::{RoomLookup, StoreError};
use crate::ids::{ClientId, DeviceId, RoomId};
use crate::protocol::ws::{ClientMessage, ServerMessage, errors};

/// The error text of a message refused for rate.
pub const RATE_LIMITED: &str = "rate_limited";

/// What the store says of a join.
enum Admission {
    Allowed,
    NotAMember,
    /// The room was deleted or purged.
    Closed,
}

/// One session of the native protocol. Registered with the hub while it lives; dropping it
/// unregisters it, however the session ended.
pub struct Native {
    signaling: Arc<Signaling>,
    client: ClientId,
}

impl Native {
    /// A session registered as `client`.
    pub fn new(signaling: Arc<Signaling>, client: ClientId) -> Self {
        Self { signaling, client }
    }

    /// Whether this device may join this room. Paired rooms (in the database) admit only their
    /// devices, deleted ones nobody; with strict rooms, only paired rooms exist.
    async fn admission(
        &self,
        room: &RoomId,
        device: Option<&DeviceId>,
    ) -> Result<Admission, StoreError> {
        let strict = self.signaling.settings.strict_rooms;
        let Some(store) = &self.signaling.store else {
            return Ok(if strict {
                Admission::NotAMember
            } else {
                Admission::Allowed
            });
        };
        Ok(match store.lookup_room(room.clone()).await? {
            RoomLookup::Paired(paired) => match device {
                Some(d) if paired.has_member(d) => Admission::Allowed,
                // Without a deviceId, an ad-hoc join of a paired room's id (the original
                // protocol's way) is still allowed unless rooms are strict.
                None if !strict => Admission::Allowed,
                _ => Admission::NotAMember,
            },
            RoomLookup::Deleted => Admission::Closed,
            RoomLookup::Unknown if strict => Admission::NotAMember,
            RoomLookup::Unknown => Admission::Allowed,
        })
    }

    /// Handles one message; returns the direct reply, if any (hub messages go via the queue).
    async fn handle(&mut self, text: &str) -> Option<ServerMessage> {
        let message = match ClientMessage::parse(text) {
            Ok(m) => m,
            Err(e) => return Some(ServerMessage::error(e.to_string())),
        };
        let hub = &self.signaling.hub;
        match message {
            ClientMessage::JoinRoom { room_id, device_id } => {
                let checked_at = hub.epoch();
                match self.admission(&room_id, device_id.as_ref()).await {
                    Ok(Admission::Allowed) => {
                        hub.join(self.client, room_id, device_id, checked_at);
                        None
                    }
                    Ok(Admission::NotAMember) => Some(ServerMessage::error(errors::NOT_A_MEMBER)),
                    Ok(Admission::Closed) => Some(ServerMessage::RoomClosed { room_id }),
                    Err(e) => {
                        log::error!("membership check failed: {e}");
                        Some(ServerMessage::error(errors::INTERNAL))
                    }
                }
            }
            ClientMessage::LeaveRoom => {
                hub.leave(self.client);
                None
            }
            ClientMessage::Ping => Some(ServerMessage::Pong),
            ClientMessage::Relay(relay) => match hub.relay(self.client, &relay) {
                Ok(_) => None,
                Err(e) => Some(ServerMessage::error(e.to_string())),
            },
        }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        self.signaling.hub.disconnect(self.client);
    }
}

impl Protocol for Native {
    fn greeting(&mut self) -> Option<String> {
        let connected = ServerMessage::Connected {
            client_id: self.client.to_string(),
            server: "signalpost",
        };
        Some(connected.to_json())
    }

    async fn on_text(&mut self, text: &str, replies: &mut Replies) -> Flow {
        if let Some(reply) = self.handle(text).await {
            replies.push(reply.to_json());
        }
        Flow::Continue
    }

    fn on_binary(&mut self, replies: &mut Replies) -> Flow {
        replies.push(ServerMessage::error(errors::BINARY_UNSUPPORTED).to_json());
        Flow::Continue
    }

    fn rate_limited(&self) -> Option<String> {
        Some(ServerMessage::error(RATE_LIMITED).to_json())
    }

    fn goodbye(&self) -> Option<String> {
        Some(ServerMessage::ServerShutdown.to_json())
    }
}
