//! WebSocket messages: what clients send, what the server sends.
//!
//! Relayed payloads (`sdp`, `candidate`, key-exchange fields) are kept as raw JSON text and copied
//! into the peer's frame byte for byte, so the server never re-encodes what a client wrote.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{DeviceId, MAX_ID_CHARS, RoomId};

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
    /// `room_full`'s error text in a room of two; larger rooms say their own capacity.
    pub const ROOM_FULL: &str = "Room is full (max 2 users)";
    /// A relay without `to` while alone in a room of more than two.
    pub const NO_OTHER_USERS: &str = "No other users in the room";
    /// A relay whose `to` names no other member of the room.
    pub const UNKNOWN_PEER: &str = "Unknown peer";
    /// A `capacity` that is not an integer from 2 to the server's maximum.
    pub const INVALID_CAPACITY: &str = "Invalid capacity";
    /// A `resume` with an unknown, spent or expired token, or not as the first message.
    pub const RESUME_FAILED: &str = "Resume failed";
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
    /// `discover` with a `name` that is not a string of 1 to [`MAX_NAME_CHARS`](super::MAX_NAME_CHARS)
    /// characters.
    pub const INVALID_NAME: &str = "Invalid name";
}

/// Longest display name `discover` takes, in characters: a device or user name, not a text.
pub const MAX_NAME_CHARS: usize = 64;

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
    /// `message`: an application message (chat, cursors, presence), any JSON as `data`.
    Message,
}

impl RelayKind {
    /// Every kind, for metrics and stories.
    pub const ALL: [RelayKind; 6] = [
        Self::Offer,
        Self::Answer,
        Self::Candidate,
        Self::KeyExchange,
        Self::KeyExchangeComplete,
        Self::Message,
    ];

    /// The `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "webrtc_offer",
            Self::Answer => "webrtc_answer",
            Self::Candidate => "ice_candidate",
            Self::KeyExchange => "key_exchange",
            Self::KeyExchangeComplete => "key_exchange_complete",
            Self::Message => "message",
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
            Self::Message => &["data"],
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
        /// The capacity asked for, if this join creates the room (checked by the caller
        /// against the server's maximum).
        capacity: Option<u64>,
        /// Keep this member's place for a while if its connection drops.
        resumable: bool,
    },
    /// `resume`: become the detached member this token names (first message only).
    Resume {
        /// The token from an earlier session's `connected` or `resumed`.
        token: String,
    },
    /// `leave_room`.
    LeaveRoom,
    /// `ping` (application level; WebSocket pings are separate).
    Ping,
    /// `discover`: be listed to, and list, the other discovering sessions on this network.
    Discover {
        /// The name the others see (trimmed), if any.
        name: Option<String>,
    },
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
    /// `join_room` with a `capacity` that is not a positive integer.
    #[error("Invalid capacity")]
    InvalidCapacity,
    /// `resume` without a string `token`.
    #[error("Resume failed")]
    InvalidToken,
    /// `discover` with a bad `name`.
    #[error("Invalid name")]
    InvalidName,
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
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    capacity: Option<&'a RawValue>,
    #[serde(borrow)]
    resumable: Option<&'a RawValue>,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    fn get(&self, field: &str) -> Option<&'a RawValue> {
        match field {
            "sdp" => self.sdp,
            "candidate" => self.candidate,
            "publicKey" => self.public_key,
            "sessionId" => self.session_id,
            "timestamp" => self.timestamp,
            "data" => self.data,
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
                let capacity = match envelope.capacity.filter(|r| !is_null(r)) {
                    None => None,
                    Some(raw) => Some(
                        serde_json::from_str::<u64>(raw.get())
                            .map_err(|_| ParseError::InvalidCapacity)?,
                    ),
                };
                let resumable = envelope.resumable.is_some_and(|r| r.get() == "true");
                Ok(ClientMessage::JoinRoom {
                    room_id,
                    device_id,
                    capacity,
                    resumable,
                })
            }
            "resume" => {
                let token = envelope
                    .token
                    .and_then(raw_str)
                    .ok_or(ParseError::InvalidToken)?;
                Ok(ClientMessage::Resume { token })
            }
            "leave_room" => Ok(ClientMessage::LeaveRoom),
            "discover" => {
                let name = match envelope.name.filter(|r| !is_null(r)) {
                    None => None,
                    Some(raw) => {
                        let name = raw_str(raw).ok_or(ParseError::InvalidName)?;
                        let name = name.trim();
                        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                            return Err(ParseError::InvalidName);
                        }
                        Some(name.to_owned())
                    }
                };
                Ok(ClientMessage::Discover { name })
            }
            "ping" => Ok(ClientMessage::Ping),
            "webrtc_offer" => relay(RelayKind::Offer),
            "webrtc_answer" => relay(RelayKind::Answer),
            "ice_candidate" => relay(RelayKind::Candidate),
            "key_exchange" => relay(RelayKind::KeyExchange),
            "key_exchange_complete" => relay(RelayKind::KeyExchangeComplete),
            "message" => relay(RelayKind::Message),
            _ => Err(ParseError::UnknownType(kind)),
        }
    }
}

/// Who a relay is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressee {
    /// Every other member (no `to`).
    Others,
    /// The member with this peer id.
    Peer(String),
    /// A `to` that is not a string: no member can have it. Holds the value as sent.
    Invalid(String),
}

impl Relay<'_> {
    /// Whom the message is for.
    pub fn addressee(&self) -> Addressee {
        match self.fields.to.filter(|r| !is_null(r)) {
            None => Addressee::Others,
            Some(raw) => match raw_str(raw) {
                Some(peer) => Addressee::Peer(peer),
                None => Addressee::Invalid(raw.get().to_owned()),
            },
        }
    }

    /// Checks the payload is what the kind needs; the error is the text for the sender.
    pub fn validate(&self) -> Result<(), &'static str> {
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
            RelayKind::KeyExchange | RelayKind::KeyExchangeComplete | RelayKind::Message => {}
        }
        Ok(())
    }

    /// The frame the recipients receive: `type`, `from`, `roomId`, `to` when addressed, then the
    /// payload fields of the kind as sent (a `message` without `data` carries `"data":null`).
    /// Fails with the error text for the sender when the payload is not what the kind needs.
    pub fn to_peer_frame(
        &self,
        from: &str,
        room: &RoomId,
        to: Option<&str>,
    ) -> Result<String, &'static str> {
        self.validate()?;
        let room_json = serde_json::to_string(room.as_str()).unwrap_or_default();
        let from_json = serde_json::to_string(from).unwrap_or_default();
        let to_json = to.map(|to| serde_json::to_string(to).unwrap_or_default());
        let payload_len: usize = self
            .kind
            .fields()
            .iter()
            .filter_map(|f| self.fields.get(f))
            .map(|r| r.get().len() + 16)
            .sum();
        let mut frame = String::with_capacity(
            64 + from_json.len()
                + room_json.len()
                + to_json.as_ref().map_or(0, |t| t.len() + 6)
                + payload_len,
        );
        frame.push_str(r#"{"type":""#);
        frame.push_str(self.kind.as_str());
        frame.push_str(r#"","from":"#);
        frame.push_str(&from_json);
        frame.push_str(r#","roomId":"#);
        frame.push_str(&room_json);
        if let Some(to) = &to_json {
            frame.push_str(r#","to":"#);
            frame.push_str(to);
        }
        for field in self.kind.fields() {
            match self.fields.get(field) {
                Some(raw) => {
                    frame.push_str(",\"");
                    frame.push_str(field);
                    frame.push_str("\":");
                    frame.push_str(raw.get());
                }
                None if self.kind == RelayKind::Message => frame.push_str(r#","data":null"#),
                None => {}
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
    #[serde(rename_all = "camelCase")]
    Connected {
        /// This connection's id.
        client_id: String,
        /// Always `signalpost`.
        server: &'static str,
        /// What a new connection presents to resume this one's place in a room (new).
        resume_token: String,
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
        /// `user_count >= 2`.
        ready: bool,
        /// The joiner's own id, as the others see it (new).
        peer_id: String,
        /// The room's capacity (new).
        capacity: u32,
        /// The other members' ids, in join order (new).
        peers: Vec<String>,
    },
    /// To both members when a room of two fills.
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
        /// Whether the two are on the same network (same public address, or same private
        /// subnet), so a direct connection is likely (new).
        same_network: bool,
    },
    /// To the other members of a room of more than two when someone joins (new).
    #[serde(rename_all = "camelCase")]
    PeerJoined {
        /// The room.
        room_id: RoomId,
        /// Who joined.
        peer_id: String,
        /// Members now.
        user_count: usize,
        /// Whether the joiner is on the receiver's network (new).
        same_network: bool,
    },
    /// To a session that sent `discover`: the other discovering sessions on its network, sent
    /// again whenever the list changes (new).
    PeersOnNetwork {
        /// Everyone else on the network who asked to be discoverable, in arrival order.
        peers: Vec<NetworkPeer>,
    },
    /// Answer to a join of a full room.
    #[serde(rename_all = "camelCase")]
    RoomFull {
        /// Human-readable: `Room is full (max N users)`.
        error: String,
        /// The room.
        room_id: RoomId,
    },
    /// Answer to `leave_room`.
    #[serde(rename_all = "camelCase")]
    LeftRoom {
        /// The room left, or null.
        room_id: Option<RoomId>,
    },
    /// A member left the room on purpose (or did not come back in time).
    #[serde(rename_all = "camelCase")]
    PeerLeft {
        /// Human-readable.
        message: &'static str,
        /// The member's id.
        peer_id: String,
        /// `timeout` when a detached member's grace ran out (new).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    /// A member's connection ended.
    #[serde(rename_all = "camelCase")]
    PeerDisconnected {
        /// Human-readable.
        message: &'static str,
        /// The member's id.
        peer_id: String,
        /// `true` when its place is kept and it may resume (new).
        #[serde(skip_serializing_if = "Option::is_none")]
        resumable: Option<bool>,
    },
    /// A detached member is back (new).
    #[serde(rename_all = "camelCase")]
    PeerReconnected {
        /// The room.
        room_id: RoomId,
        /// Who.
        peer_id: String,
    },
    /// Answer to a successful `resume` (new); the kept messages follow.
    #[serde(rename_all = "camelCase")]
    Resumed {
        /// The room.
        room_id: RoomId,
        /// The member this connection now is.
        peer_id: String,
        /// Members now.
        user_count: usize,
        /// The other members' ids, in join order.
        peers: Vec<String>,
        /// Kept messages that follow.
        missed: usize,
        /// The next resume token (the one used is spent).
        resume_token: String,
    },
    /// A new connection of this device took this one's place; a close (4001) follows (new).
    Replaced,
    /// The room was deleted or a member purged; the receiver is no longer in it.
    #[serde(rename_all = "camelCase")]
    RoomClosed {
        /// The room.
        room_id: RoomId,
    },
    /// A refused or unreadable message; the connection stays open.
    #[serde(rename_all = "camelCase")]
    Error {
        /// Human-readable, part of the contract.
        error: String,
        /// The `to` of a relay that named no member (new).
        #[serde(skip_serializing_if = "Option::is_none")]
        peer_id: Option<String>,
    },
    /// Answer to `ping`.
    Pong,
    /// The server is stopping; a close frame (1001) follows.
    ServerShutdown,
}

/// A session on the same network, as `peers_on_network` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPeer {
    /// Its id (what `to` addresses once both are in a room).
    pub peer_id: String,
    /// The name it gave `discover`, or null.
    pub name: Option<String>,
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
        Self::Error {
            error: text.into(),
            peer_id: None,
        }
    }

    /// `room_full` for a room of `capacity`.
    pub fn room_full(room_id: RoomId, capacity: u32) -> Self {
        Self::RoomFull {
            error: format!("Room is full (max {capacity} users)"),
            room_id,
        }
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
            Ok(ClientMessage::JoinRoom {
                room_id, device_id, ..
            }) => {
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
        let from = crate::ids::ClientId::generate().to_string();
        let frame = relay.to_peer_frame(&from, &room("r"), None).unwrap();
        assert!(frame.contains(r#""candidate":{"b": 1,  "a":"\u00e9"}"#));
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "ice_candidate");
        assert_eq!(v["from"], from);
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
            r.to_peer_frame("a", &room("r"), None),
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
            peer_id: "p".into(),
            capacity: 2,
            peers: vec![],
        };
        let v: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"room_joined","roomId":"r","userCount":1,"isInitiator":true,"ready":false,
                   "peerId":"p","capacity":2,"peers":[]})
        );
        let v: Value = serde_json::from_str(&ServerMessage::error("x").to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","error":"x"}),
            "no peerId unless it is about one"
        );
        let v: Value =
            serde_json::from_str(&ServerMessage::LeftRoom { room_id: None }.to_json()).unwrap();
        assert_eq!(v, json!({"type":"left_room","roomId":null}));
        let v: Value = serde_json::from_str(&ServerMessage::ServerShutdown.to_json()).unwrap();
        assert_eq!(v, json!({"type":"server_shutdown"}));
    }

    #[test]
    fn an_addressed_relay_carries_to_and_a_message_carries_its_data() {
        let Ok(ClientMessage::Relay(r)) =
            ClientMessage::parse(r#"{"type":"message","data":{"x":[1, 2]},"to":"b"}"#)
        else {
            panic!()
        };
        assert_eq!(r.addressee(), Addressee::Peer("b".into()));
        let frame = r.to_peer_frame("a", &room("r"), Some("b")).unwrap();
        assert_eq!(
            frame,
            r#"{"type":"message","from":"a","roomId":"r","to":"b","data":{"x":[1, 2]}}"#
        );
        let Ok(ClientMessage::Relay(bare)) = ClientMessage::parse(r#"{"type":"message"}"#) else {
            panic!()
        };
        assert_eq!(bare.addressee(), Addressee::Others);
        let frame = bare.to_peer_frame("a", &room("r"), None).unwrap();
        assert_eq!(
            frame,
            r#"{"type":"message","from":"a","roomId":"r","data":null}"#
        );
        let Ok(ClientMessage::Relay(odd)) =
            ClientMessage::parse(r#"{"type":"webrtc_offer","sdp":"x","to":7}"#)
        else {
            panic!()
        };
        assert_eq!(odd.addressee(), Addressee::Invalid("7".into()));
    }

    #[test]
    fn discover_takes_an_optional_trimmed_name() {
        match ClientMessage::parse(r#"{"type":"discover","name":"  Kitchen laptop "}"#) {
            Ok(ClientMessage::Discover { name }) => {
                assert_eq!(name.as_deref(), Some("Kitchen laptop"));
            }
            other => panic!("{other:?}"),
        }
        for text in [
            r#"{"type":"discover"}"#,
            r#"{"type":"discover","name":null}"#,
        ] {
            assert!(matches!(
                ClientMessage::parse(text),
                Ok(ClientMessage::Discover { name: None })
            ));
        }
        let long = format!(r#"{{"type":"discover","name":"{}"}}"#, "n".repeat(65));
        for bad in [
            r#"{"type":"discover","name":""}"#,
            r#"{"type":"discover","name":"   "}"#,
            r#"{"type":"discover","name":7}"#,
            long.as_str(),
        ] {
            assert_eq!(
                ClientMessage::parse(bad).unwrap_err(),
                ParseError::InvalidName,
                "{bad}"
            );
        }
        let v: Value = serde_json::from_str(
            &ServerMessage::PeersOnNetwork {
                peers: vec![NetworkPeer {
                    peer_id: "p".into(),
                    name: None,
                }],
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"peers_on_network","peers":[{"peerId":"p","name":null}]})
        );
    }

    #[test]
    fn join_room_reads_capacity_and_resumable() {
        match ClientMessage::parse(
            r#"{"type":"join_room","roomId":"r","capacity":8,"resumable":true}"#,
        ) {
            Ok(ClientMessage::JoinRoom {
                capacity,
                resumable,
                ..
            }) => assert_eq!((capacity, resumable), (Some(8), true)),
            other => panic!("{other:?}"),
        }
        for bad in [r#""3""#, "2.5", "-1", "true"] {
            let text = format!(r#"{{"type":"join_room","roomId":"r","capacity":{bad}}}"#);
            assert_eq!(
                ClientMessage::parse(&text).unwrap_err(),
                ParseError::InvalidCapacity,
                "{bad}"
            );
        }
    }
}
