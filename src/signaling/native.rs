//! signalpost's own protocol (docs/protocol.md), spoken on the main port: `join_room`,
//! `leave_room`, relayed offers, answers and candidates, and `ping`.

use std::sync::Arc;

use super::Signaling;
use super::session::{Flow, Protocol, Replies};
use crate::db::StoreError;
use crate::ids::{ClientId, DeviceId, RoomId};
use crate::protocol::ws::{ClientMessage, ServerMessage, errors};

/// The error text of a message refused for rate.
pub const RATE_LIMITED: &str = "rate_limited";

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
    /// devices; with strict rooms, only paired rooms exist.
    async fn may_join(&self, room: &RoomId, device: Option<&DeviceId>) -> Result<bool, StoreError> {
        let strict = self.signaling.settings.strict_rooms;
        let Some(store) = &self.signaling.store else {
            return Ok(!strict);
        };
        if device.is_none() && !strict {
            return Ok(true);
        }
        let Some(device) = device else {
            return Ok(false);
        };
        Ok(match store.room(room.clone()).await? {
            Some(paired) => paired.client1 == *device || paired.client2 == *device,
            None => !strict,
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
                match self.may_join(&room_id, device_id.as_ref()).await {
                    Ok(true) => {
                        hub.join(self.client, room_id, device_id);
                        None
                    }
                    Ok(false) => Some(ServerMessage::error(errors::NOT_A_MEMBER)),
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
