//! WebSocket messages: what clients send, what the server sends.
//!
//! Relayed payloads (`sdp`, `candidate`, key-exchange fields) are kept as raw JSON text and copied
//! into the peer's frame byte for byte, so the server never re-encodes what a client wrote.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{ClientId, DeviceId, MAX_ID_CHARS, RoomId};

/// Error strings of the deployed wire format (a contract: clients match on them).
pub mod errors {
    /// `join_room` with a bad `roomId`.
    pub const INVALID_ROOM_ID: &str = "Invalid roomId";
    /// `join_room` with a `deviceId` that is not an id.
    pub const INVALID_DEVICE_ID: &str = "Invalid deviceId";
    /// A paired room joined by a device that is not one of its two.
    pub const NOT_A_MEMBER: &str = "Not a member of this room";
    /// Relay while in no room.
    pub const NOT_IN_ROOM: &str = "Not in a valid room for WebRTC signaling";
    /// Relay while the room has one member.
    pub const ROOM_NOT_READY: &str = "Room must have exactly 2 users for WebRTC";
    /// `room_full`'s error text.
    pub const ROOM_FULL: &str = "Room is full (max 2 users)";
    /// A frame that is not JSON.
    pub const INVALID_JSON: &str = "Invalid JSON format";
    /// A binary frame.
    pub const BINARY_UNSUPPORTED: &str = "Binary frames are not supported";
    /// An offer or answer whose `sdp` is not a string.
    pub const INVALID_SDP: &str = "Invalid sdp";
    /// A candidate message without `candidate`.
    pub const INVALID_CANDIDATE: &str = "Invalid candidate";
    /// A database failure while checking membership.
    pub const INTERNAL: &str = "Internal error";
}

/// Kinds of message relayed between the two members of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayKind {
    /// `webrtc_offer`.
    Offer,
    /// `webrtc_answer`.
    Answer,
    /// `ice_candidate`.
    Candidate,
    /// `key_exchange` (new).
    KeyExchange,
    /// `key_exchange_complete` (new).
    KeyExchangeComplete,
}

impl RelayKind {
    /// Every kind, for metrics and stories.
    pub const ALL: [RelayKind; 5] = [
        Self::Offer,
        Self::Answer,
        Self::Candidate,
        Self::KeyExchange,
        Self::KeyExchangeComplete,
    ];

    /// The `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "webrtc_offer",
            Self::Answer => "webrtc_answer",
            Self::Candidate => "ice_candidate",
            Self::KeyExchange => "key_exchange",
            Self::KeyExchangeComplete => "key_exchange_complete",
        }
    }

    /// The payload fields carried over for this kind.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Offer | Self::Answer => &["sdp"],
            Self::Candidate => &["candidate"],
            Self::KeyExchange | Self::KeyExchangeComplete => {
                &["publicKey", "sessionId", "timestamp"]
            }
        }
    }
}

/// A message from a client.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    /// `join_room`.
    JoinRoom {
        /// The room to join.
        room_id: RoomId,
        /// The device, to check membership of paired rooms.
        device_id: Option<DeviceId>,
    },
    /// `leave_room`.
    LeaveRoom,
    /// `ping` (application level; WebSocket pings are separate).
    Ping,
    /// A message for the peer.
    Relay(Relay<'a>),
}

/// A relayable message, borrowed from the frame it came in.
#[derive(Debug)]
pub struct Relay<'a> {
    /// What it is.
    pub kind: RelayKind,
    fields: Envelope<'a>,
}

/// Why a frame was not a message. `Display` is the error text sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON.
    #[error("Invalid JSON format")]
    InvalidJson,
    /// No `type`, or one the server does not know. Holds the type as JavaScript would print it.
    #[error("Unknown message type: {0}")]
    UnknownType(String),
    /// `join_room` with a bad `roomId`.
    #[error("Invalid roomId")]
    InvalidRoomId,
    /// `join_room` with a bad `deviceId`.
    #[error("Invalid deviceId")]
    InvalidDeviceId,
}

/// Every field any message may have, as raw JSON, so one pass over the frame suffices and the
/// relayed ones keep their bytes.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, rename = "roomId")]
    room_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "deviceId")]
    device_id: Option<&'a RawValue>,
    #[serde(borrow)]
    sdp: Option<&'a RawValue>,
    #[serde(borrow)]
    candidate: Option<&'a RawValue>,
    #[serde(borrow, rename = "publicKey")]
    public_key: Option<&'a RawValue>,
    #[serde(borrow, rename = "sessionId")]
    session_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    fn get(&self, field: &str) -> Option<&'a RawValue> {
        match field {
            "sdp" => self.sdp,
            "candidate" => self.candidate,
            "publicKey" => self.public_key,
            "sessionId" => self.session_id,
            "timestamp" => self.timestamp,
            _ => None,
        }
    }
}

/// A raw JSON value as a string, if it is one (escapes decoded).
fn raw_str(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

fn is_json_but_not_an_object(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok_and(|v| !v.get().starts_with('{'))
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

impl<'a> ClientMessage<'a> {
    /// Parses one text frame.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        // One pass for the usual case, an object. Valid JSON that is not an object has no type,
        // like a JavaScript server reading `.type`; anything else is not JSON.
        let envelope: Envelope<'a> = match serde_json::from_str(text) {
            Ok(envelope) => envelope,
            Err(_) if is_json_but_not_an_object(text) => Envelope::default(),
            Err(_) => return Err(ParseError::InvalidJson),
        };
        let kind = match envelope.kind {
            None => return Err(ParseError::UnknownType("undefined".into())),
            Some(raw) => match raw_str(raw) {
                Some(s) => s,
                None => return Err(ParseError::UnknownType(raw.get().into())),
            },
        };
        let relay = |kind| {
            Ok(ClientMessage::Relay(Relay {
                kind,
                fields: envelope,
            }))
        };
        match kind.as_str() {
            "join_room" => {
                let room_id = envelope
                    .room_id
                    .and_then(raw_str)
                    .filter(|s| !s.is_empty() && s.chars().count() <= MAX_ID_CHARS)
                    .ok_or(ParseError::InvalidRoomId)?;
                let room_id = RoomId::parse(&room_id).map_err(|_| ParseError::InvalidRoomId)?;
                let device_id = match envelope.device_id.filter(|r| !is_null(r)) {
                    None => None,
                    Some(raw) => Some(
                        raw_str(raw)
                            .and_then(|s| DeviceId::parse(&s).ok())
                            .ok_or(ParseError::InvalidDeviceId)?,
                    ),
                };
                Ok(ClientMessage::JoinRoom { room_id, device_id })
            }
            "leave_room" => Ok(ClientMessage::LeaveRoom),
            "ping" => Ok(ClientMessage::Ping),
            "webrtc_offer" => relay(RelayKind::Offer),
            "webrtc_answer" => relay(RelayKind::Answer),
            "ice_candidate" => relay(RelayKind::Candidate),
            "key_exchange" => relay(RelayKind::KeyExchange),
            "key_exchange_complete" => relay(RelayKind::KeyExchangeComplete),
            _ => Err(ParseError::UnknownType(kind)),
        }
    }
}

impl Relay<'_> {
    /// The frame the peer receives: `type`, `from`, `roomId`, then the payload fields as sent.
    /// Fails with the error text for the sender when the payload is not what the kind needs.
    pub fn to_peer_frame(&self, from: ClientId, room: &RoomId) -> Result<String, &'static str> {
        match self.kind {
            RelayKind::Offer | RelayKind::Answer => {
                if !self.fields.sdp.is_some_and(|s| s.get().starts_with('"')) {
                    return Err(errors::INVALID_SDP);
                }
            }
            RelayKind::Candidate => {
                if self.fields.candidate.is_none() {
                    return Err(errors::INVALID_CANDIDATE);
                }
            }
            RelayKind::KeyExchange | RelayKind::KeyExchangeComplete => {}
        }
        let room_json = serde_json::to_string(room.as_str()).unwrap_or_default();
        let payload_len: usize = self
            .kind
            .fields()
            .iter()
            .filter_map(|f| self.fields.get(f))
            .map(|r| r.get().len() + 16)
            .sum();
        let mut frame = String::with_capacity(96 + room_json.len() + payload_len);
        frame.push_str(r#"{"type":""#);
        frame.push_str(self.kind.as_str());
        frame.push_str(r#"","from":""#);
        frame.push_str(&from.to_string());
        frame.push_str(r#"","roomId":"#);
        frame.push_str(&room_json);
        for field in self.kind.fields() {
            if let Some(raw) = self.fields.get(field) {
                frame.push_str(",\"");
                frame.push_str(field);
                frame.push_str("\":");
                frame.push_str(raw.get());
            }
        }
        frame.push('}');
        Ok(frame)
    }

    /// Bytes of payload carried (for stats).
    pub fn payload_len(&self) -> usize {
        self.kind
            .fields()
            .iter()
            .filter_map(|f| self.fields.get(f))
            .map(|r| r.get().len())
            .sum()
    }
}

/// A message from the server. Field names are the deployed wire format.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on every connection.
    Connected {
        /// This connection's id.
        #[serde(rename = "clientId")]
        client_id: String,
        /// Always `signalpost`.
        server: &'static str,
    },
    /// Answer to `join_room`.
    #[serde(rename_all = "camelCase")]
    RoomJoined {
        /// The room.
        room_id: RoomId,
        /// Members now, this one included.
        user_count: usize,
        /// Whether this member was first in and so makes the offer.
        is_initiator: bool,
        /// `user_count == 2`.
        ready: bool,
    },
    /// To both members when the room reaches two.
    #[serde(rename_all = "camelCase")]
    RoomReady {
        /// The room.
        room_id: RoomId,
        /// Human-readable.
        message: &'static str,
        /// Always 2.
        user_count: usize,
        /// Whether the receiver makes the offer.
        is_initiator: bool,
    },
    /// Answer to a join of a room that has two other members.
    #[serde(rename_all = "camelCase")]
    RoomFull {
        /// Human-readable.
        error: &'static str,
        /// The room.
        room_id: RoomId,
    },
    /// Answer to `leave_room`.
    #[serde(rename_all = "camelCase")]
    LeftRoom {
        /// The room left, or null.
        room_id: Option<RoomId>,
    },
    /// The peer left the room on purpose.
    #[serde(rename_all = "camelCase")]
    PeerLeft {
        /// Human-readable.
        message: &'static str,
        /// The peer's clientId.
        peer_id: String,
    },
    /// The peer's connection ended.
    #[serde(rename_all = "camelCase")]
    PeerDisconnected {
        /// Human-readable.
        message: &'static str,
        /// The peer's clientId.
        peer_id: String,
    },
    /// The room was deleted or a member purged; the receiver is no longer in it.
    #[serde(rename_all = "camelCase")]
    RoomClosed {
        /// The room.
        room_id: RoomId,
    },
    /// A refused or unreadable message; the connection stays open.
    Error {
        /// Human-readable, part of the contract.
        error: String,
    },
    /// Answer to `ping`.
    Pong,
    /// The server is stopping; a close frame (1001) follows.
    ServerShutdown,
}

impl Serialize for RoomId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `room_ready`'s message text.
pub const ROOM_READY_MESSAGE: &str = "Both users connected. Ready for WebRTC handshake.";
/// `peer_left`'s message text.
pub const PEER_LEFT_MESSAGE: &str = "Other user left the room";
/// `peer_disconnected`'s message text.
pub const PEER_DISCONNECTED_MESSAGE: &str = "Other user disconnected";

impl ServerMessage {
    /// An `error` message.
    pub fn error(text: impl Into<String>) -> Self {
        Self::Error { error: text.into() }
    }

    /// The JSON text frame.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every field is a string, number or bool.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn room(s: &str) -> RoomId {
        RoomId::parse(s).unwrap()
    }

    #[test]
    fn join_room_parses_room_and_optional_device() {
        match ClientMessage::parse(r#"{"type":"join_room","roomId":"r1","deviceId":"d"}"#) {
            Ok(ClientMessage::JoinRoom { room_id, device_id }) => {
                assert_eq!(room_id.as_str(), "r1");
                assert_eq!(device_id.unwrap().as_str(), "d");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_room_ids_are_refused() {
        let long = format!(r#"{{"type":"join_room","roomId":"{}"}}"#, "x".repeat(129));
        for text in [
            r#"{"type":"join_room"}"#,
            r#"{"type":"join_room","roomId":""}"#,
            r#"{"type":"join_room","roomId":5}"#,
            long.as_str(),
        ] {
            assert_eq!(
                ClientMessage::parse(text).unwrap_err(),
                ParseError::InvalidRoomId
            );
        }
    }

    #[test]
    fn unknown_and_missing_types_are_named_like_javascript_would() {
        let err = |t| ClientMessage::parse(t).unwrap_err().to_string();
        assert_eq!(err(r#"{"type":"dance"}"#), "Unknown message type: dance");
        assert_eq!(err(r#"{}"#), "Unknown message type: undefined");
        assert_eq!(err(r#"[1,2]"#), "Unknown message type: undefined");
        assert_eq!(err(r#"{"type":7}"#), "Unknown message type: 7");
        assert_eq!(err("{nope"), "Invalid JSON format");
    }

    #[test]
    fn relayed_payloads_keep_their_bytes() {
        let text = r#"{"type":"ice_candidate","candidate":{"b": 1,  "a":"\u00e9"},"extra":1}"#;
        let Ok(ClientMessage::Relay(relay)) = ClientMessage::parse(text) else {
            panic!()
        };
        let from = ClientId::generate();
        let frame = relay.to_peer_frame(from, &room("r")).unwrap();
        assert!(frame.contains(r#""candidate":{"b": 1,  "a":"\u00e9"}"#));
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "ice_candidate");
        assert_eq!(v["from"], from.to_string());
        assert_eq!(v["roomId"], "r");
        assert!(v.get("extra").is_none());
    }

    #[test]
    fn an_sdp_must_be_a_string() {
        let Ok(ClientMessage::Relay(r)) =
            ClientMessage::parse(r#"{"type":"webrtc_offer","sdp":{}}"#)
        else {
            panic!()
        };
        assert_eq!(
            r.to_peer_frame(ClientId::generate(), &room("r")),
            Err(errors::INVALID_SDP)
        );
    }

    #[test]
    fn server_messages_use_the_wire_names() {
        let m = ServerMessage::RoomJoined {
            room_id: room("r"),
            user_count: 1,
            is_initiator: true,
            ready: false,
        };
        let v: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"room_joined","roomId":"r","userCount":1,"isInitiator":true,"ready":false})
        );
        let v: Value =
            serde_json::from_str(&ServerMessage::LeftRoom { room_id: None }.to_json()).unwrap();
        assert_eq!(v, json!({"type":"left_room","roomId":null}));
        let v: Value = serde_json::from_str(&ServerMessage::ServerShutdown.to_json()).unwrap();
        assert_eq!(v, json!({"type":"server_shutdown"}));
    }
}
