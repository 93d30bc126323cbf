//! OctateCode's lean protocol (§L of its contract): JSON text frames
//! `{type, roomId, from, to?, data?, timestamp?}`. No transport here.

use serde::Serialize;
use serde_json::{Map, Value};

/// The reply to a frame that is not JSON, is `null`, or has ids that are not strings.
pub const INVALID_FORMAT: &str = "Invalid message format";
/// The reply to a message whose `roomId` or `from` is missing or empty, whatever its type.
pub const MISSING_ROOM_OR_FROM: &str = "Missing roomId or from";
/// The reply to a message from a socket that has not authed into the room under that `from`.
pub const NOT_A_MEMBER: &str = "Not a member of this room";
/// The reply to an `auth` without a valid token, when tokens are required.
pub const INVALID_TOKEN: &str = "Invalid token";
/// The reply to an `auth` into a room that holds `MAX_ROOM_CAPACITY` peers.
pub const ROOM_FULL: &str = "Room is full";
/// The reply to an `auth` into a room that was just closed.
pub const ROOM_CLOSED: &str = "Room closed";
/// The reply to an `auth` into more rooms than one socket may be in.
pub const TOO_MANY_ROOMS: &str = "Too many rooms";
/// The reply to a message over the connection's message rate.
pub const RATE_LIMITED: &str = "Rate limit exceeded";
/// The reply when the rooms cannot be reached.
pub const UNAVAILABLE: &str = "Server unavailable";

/// Longest room or peer id, in bytes. Clients use UUIDs (36 bytes) or short codes; ids are held
/// for the room's life and sent in every peer list.
pub const MAX_ID_BYTES: usize = 128;

/// Longest peer or room name, in characters; longer names are cut there (names are only shown).
pub const MAX_NAME_CHARS: usize = 128;

/// Characters of the peer id in the name of a peer that gave none (`peer-` and these).
const DEFAULT_NAME_ID_CHARS: usize = 8;

/// A message from a client: every type names a room and the sender.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMessage {
    /// `roomId`.
    pub room_id: String,
    /// `from`: the sender's peer id, which it chose.
    pub from: String,
    /// What it asks.
    pub kind: Kind,
}

/// What a message asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Join the room (creating it) as `from`.
    Auth {
        /// `data.name`, else `peer-` and the id's first eight characters.
        name: String,
        /// `data.roomName`, for a room this creates.
        room_name: Option<String>,
        /// `data.token`.
        token: Option<String>,
    },
    /// An offer, answer or candidate for one peer.
    Signal {
        /// Which.
        kind: SignalKind,
        /// `to`; none (or not a usable id): dropped.
        to: Option<String>,
        /// `data`, relayed as it is.
        data: Option<Value>,
    },
    /// A chat or sync message for the whole room, the sender included.
    Broadcast {
        /// Which.
        kind: BroadcastKind,
        /// The whole message, as every member receives it.
        frame: String,
    },
    /// Another type: ignored.
    Other,
}

/// Messages for one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
    /// `ice`.
    Ice,
}

impl SignalKind {
    /// The type on the wire (and the metrics' `type` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Ice => "ice",
        }
    }
}

/// Messages for the whole room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastKind {
    /// `chat`.
    Chat,
    /// `sync`.
    Sync,
}

impl BroadcastKind {
    /// The type on the wire (and the metrics' `type` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Sync => "sync",
        }
    }
}

/// Why a frame is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, `null`, or ids that are not strings (or too long).
    #[error("Invalid message format")]
    InvalidFormat,
    /// `roomId` or `from` missing or empty.
    #[error("Missing roomId or from")]
    Missing,
}

impl ParseError {
    /// The error frame it is answered with.
    pub fn reply(self) -> String {
        error(match self {
            Self::InvalidFormat => INVALID_FORMAT,
            Self::Missing => MISSING_ROOM_OR_FROM,
        })
    }
}

/// Whether JavaScript would take the value for false (an absent field is too).
fn falsy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => false,
    }
}

/// A usable id: a string of at most [`MAX_ID_BYTES`].
fn id(value: Option<&Value>) -> Result<String, ParseError> {
    match value {
        Some(Value::String(s)) if s.len() <= MAX_ID_BYTES => Ok(s.clone()),
        _ => Err(ParseError::InvalidFormat),
    }
}

/// A non-empty string field of `data`, cut to [`MAX_NAME_CHARS`].
fn name_in(data: Option<&Value>, field: &str) -> Option<String> {
    match data?.get(field)? {
        Value::String(s) if !s.is_empty() => Some(s.chars().take(MAX_NAME_CHARS).collect()),
        _ => None,
    }
}

/// The name of a peer that gave none: `peer-` and the first eight characters of its id.
pub fn default_name(peer: &str) -> String {
    format!(
        "peer-{}",
        peer.chars().take(DEFAULT_NAME_ID_CHARS).collect::<String>()
    )
}

impl ClientMessage {
    /// Parses one text frame, checking what the original checked in its order: JSON, then
    /// `roomId` and `from` for every type, then the type.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let message = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(message)) => message,
            // `null.roomId` threw in the original; `(42).roomId` is just undefined.
            Ok(Value::Null) | Err(_) => return Err(ParseError::InvalidFormat),
            Ok(_) => return Err(ParseError::Missing),
        };
        if falsy(message.get("roomId")) || falsy(message.get("from")) {
            return Err(ParseError::Missing);
        }
        let room_id = id(message.get("roomId"))?;
        let from = id(message.get("from"))?;
        let kind = match message.get("type").and_then(Value::as_str) {
            Some("auth") => {
                let data = message.get("data");
                Kind::Auth {
                    name: name_in(data, "name").unwrap_or_else(|| default_name(&from)),
                    room_name: name_in(data, "roomName"),
                    token: match data.and_then(|d| d.get("token")) {
                        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
                        _ => None,
                    },
                }
            }
            Some(signal @ ("offer" | "answer" | "ice")) => Kind::Signal {
                kind: match signal {
                    "offer" => SignalKind::Offer,
                    "answer" => SignalKind::Answer,
                    _ => SignalKind::Ice,
                },
                to: match message.get("to") {
                    Some(Value::String(to)) if !to.is_empty() && to.len() <= MAX_ID_BYTES => {
                        Some(to.clone())
                    }
                    _ => None,
                },
                data: message.get("data").cloned(),
            },
            Some(broadcast @ ("chat" | "sync")) => Kind::Broadcast {
                kind: if broadcast == "chat" {
                    BroadcastKind::Chat
                } else {
                    BroadcastKind::Sync
                },
                frame: Value::Object(message.clone()).to_string(),
            },
            _ => Kind::Other,
        };
        Ok(Self {
            room_id,
            from,
            kind,
        })
    }
}

/// The frame a signal's target receives: the type, the room, the data as sent, and the sender
/// as `peerId` and `from` (the original left the sender out, which its documented client needs).
pub fn signal_frame(kind: SignalKind, room_id: &str, from: &str, data: Option<&Value>) -> String {
    let mut frame = Map::with_capacity(5);
    frame.insert("type".into(), kind.as_str().into());
    frame.insert("roomId".into(), room_id.into());
    if let Some(data) = data {
        frame.insert("data".into(), data.clone());
    }
    frame.insert("peerId".into(), from.into());
    frame.insert("from".into(), from.into());
    Value::Object(frame).to_string()
}

/// A peer in a peer list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peer<'a> {
    /// Its peer id.
    pub id: &'a str,
    /// Its name.
    pub name: &'a str,
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage<'a> {
    /// To a peer that authed: the others in the room.
    #[serde(rename_all = "camelCase")]
    PeerList {
        /// The room.
        room_id: &'a str,
        /// The others, in join order.
        peers: Vec<Peer<'a>>,
    },
    /// To the others: a peer joined.
    #[serde(rename_all = "camelCase")]
    PeerJoined {
        /// The room.
        room_id: &'a str,
        /// Its id.
        peer_id: &'a str,
        /// Its name.
        peer_name: &'a str,
    },
    /// To the others: a peer left.
    #[serde(rename_all = "camelCase")]
    PeerLeft {
        /// The room.
        room_id: &'a str,
        /// Its id.
        peer_id: &'a str,
    },
}

impl ServerMessage<'_> {
    /// As a text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages serialize")
    }
}

/// `{"type":"error","data":{"error":...}}`, the only shape errors have.
pub fn error(text: &str) -> String {
    serde_json::json!({"type": "error", "data": {"error": text}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ClientMessage, ParseError> {
        ClientMessage::parse(&value.to_string())
    }

    #[test]
    fn bad_json_null_and_non_string_ids_are_invalid_format() {
        for text in ["not json", "{\"type\":\"auth\",", "null"] {
            assert_eq!(ClientMessage::parse(text), Err(ParseError::InvalidFormat));
        }
        let long = "x".repeat(MAX_ID_BYTES + 1);
        for message in [
            json!({"type": "auth", "roomId": "r", "from": 42}),
            json!({"type": "chat", "roomId": ["r"], "from": "a"}),
            json!({"type": "auth", "roomId": long, "from": "a"}),
        ] {
            assert_eq!(parse(message), Err(ParseError::InvalidFormat));
        }
    }

    #[test]
    fn a_missing_or_empty_room_or_sender_is_missing_whatever_the_type() {
        for message in [
            json!({"type": "auth", "from": "alice"}),
            json!({"type": "auth", "roomId": "r"}),
            json!({"type": "offer", "roomId": "", "from": "alice"}),
            json!({"type": "sync", "roomId": "r", "from": ""}),
            json!({"type": "chat", "roomId": "r", "from": 0}),
            json!({"type": "no-such-type"}),
            json!({}),
            json!(42),
            json!([1]),
        ] {
            assert_eq!(
                parse(message.clone()),
                Err(ParseError::Missing),
                "{message}"
            );
        }
    }

    #[test]
    fn auth_names_default_to_peer_and_the_ids_first_eight_characters() {
        let message =
            parse(json!({"type": "auth", "roomId": "r", "from": "9f86d081-884c"})).unwrap();
        assert_eq!(
            message.kind,
            Kind::Auth {
                name: "peer-9f86d081".into(),
                room_name: None,
                token: None
            }
        );
        let message = parse(json!({"type": "auth", "roomId": "r", "from": "bob",
            "data": {"name": "", "roomName": "Pairing", "token": "t"}}))
        .unwrap();
        assert_eq!(
            message.kind,
            Kind::Auth {
                name: "peer-bob".into(),
                room_name: Some("Pairing".into()),
                token: Some("t".into())
            }
        );
        let long = "n".repeat(MAX_NAME_CHARS + 10);
        let message =
            parse(json!({"type": "auth", "roomId": "r", "from": "b", "data": {"name": long}}))
                .unwrap();
        assert!(
            matches!(message.kind, Kind::Auth { name, .. } if name.chars().count() == MAX_NAME_CHARS)
        );
    }

    #[test]
    fn signals_name_their_sender_and_broadcasts_keep_every_field() {
        let message = parse(json!({"type": "ice", "roomId": "r", "from": "a", "to": "b",
            "data": {"candidate": "c"}, "timestamp": 1}))
        .unwrap();
        let Kind::Signal { kind, to, data } = message.kind else {
            panic!("a signal");
        };
        assert_eq!((kind, to.as_deref()), (SignalKind::Ice, Some("b")));
        let frame: Value =
            serde_json::from_str(&signal_frame(kind, "r", "a", data.as_ref())).unwrap();
        assert_eq!(
            frame,
            json!({"type": "ice", "roomId": "r", "data": {"candidate": "c"}, "peerId": "a", "from": "a"})
        );
        let chat =
            json!({"type": "chat", "roomId": "r", "from": "a", "data": {"t": 1}, "extra": [true]});
        let Kind::Broadcast { frame, .. } = parse(chat.clone()).unwrap().kind else {
            panic!("a broadcast");
        };
        assert_eq!(serde_json::from_str::<Value>(&frame).unwrap(), chat);
    }

    #[test]
    fn an_unknown_type_with_room_and_sender_is_other() {
        let message = parse(json!({"type": "cursor", "roomId": "r", "from": "a"})).unwrap();
        assert_eq!(message.kind, Kind::Other);
    }

    #[test]
    fn server_messages_have_the_originals_shape() {
        assert_eq!(
            ServerMessage::PeerJoined {
                room_id: "r",
                peer_id: "b",
                peer_name: "Bob"
            }
            .to_json(),
            r#"{"type":"peerJoined","roomId":"r","peerId":"b","peerName":"Bob"}"#
        );
        assert_eq!(
            ServerMessage::PeerList {
                room_id: "r",
                peers: vec![]
            }
            .to_json(),
            r#"{"type":"peerList","roomId":"r","peers":[]}"#
        );
        assert_eq!(
            serde_json::from_str::<Value>(&error(NOT_A_MEMBER)).unwrap(),
            json!({"type": "error", "data": {"error": "Not a member of this room"}})
        );
    }

    proptest::proptest! {
        #[test]
        fn no_frame_panics_the_parser(text in crate::dialects::testing::arbitrary_frames(&["type", "roomId", "from", "to", "data", "timestamp"])) {
            let _ = ClientMessage::parse(&text);
        }

        #[test]
        fn no_message_of_a_known_type_panics_the_parser(
            kind in proptest::sample::select(&["auth", "offer", "ice", "chat", "sync", "cursor"][..]),
            rest in crate::dialects::testing::arbitrary_frames(&["type", "roomId", "from", "to", "data", "timestamp"]),
        ) {
            if let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(&rest) {
                message.insert("type".into(), kind.into());
                let _ = ClientMessage::parse(&Value::Object(message).to_string());
            }
        }
    }
}
