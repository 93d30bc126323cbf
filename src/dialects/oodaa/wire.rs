//! The Oodaa messenger's wire messages (protocol B of its contract): JSON text frames, each an
//! object with a string `type`. No transport here.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

/// The reply to a frame that is not a JSON object (the original's answer to anything that threw).
pub const INVALID_FORMAT: &str = "Invalid message format";
/// The reply to a relay from a socket that has not registered (the original stamped it
/// `fromUserId: null` and relayed it).
pub const NOT_REGISTERED: &str = "Not registered";
/// The reply to a `register` whose `userInfo` is over the cap; nothing is registered.
pub const USERINFO_TOO_LARGE: &str = "userInfo too large";
/// The reply to a `register` without a usable `userId` (protocol A's wording).
pub const INVALID_USER_ID: &str = "Invalid user ID";
/// The reply to a `register` the directory could not take (it cannot be reached).
pub const REGISTRATION_FAILED: &str = "Registration failed";
/// The reply to a message over the connection's message rate.
pub const RATE_LIMITED: &str = "Rate limit exceeded";
/// The `message` of the `connected` greeting, which the app waits for.
pub const CONNECTED_MESSAGE: &str = "Connected to Oodaa signaling server";

/// Longest user id, in bytes. The app's ids are a lowercased name and three digits
/// (`alice417`); ids are held for as long as the user is online and sent in every presence push.
pub const MAX_USER_ID_BYTES: usize = 128;

/// A message from the app.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `register {userId, userInfo}`: be known as `user_id`.
    Register {
        /// The id the app chose.
        user_id: String,
        /// The profile shown to others (`{name, timestamp}` from the app); `null` is none.
        user_info: Option<Value>,
    },
    /// A message for one user.
    Relay(Relay),
    /// `get-online-users`.
    GetOnlineUsers,
    /// `ping`.
    Ping,
    /// An unknown type, or none: ignored, as the original does.
    Ignored,
}

/// Why a frame is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not an object.
    #[error("Invalid message format")]
    InvalidFormat,
    /// A `register` whose `userId` is missing, not a string, empty or too long.
    #[error("Invalid user ID")]
    InvalidUserId,
}

/// The types relayed to `targetUserId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// A chat message (`messageData`).
    Message,
    /// A contact request (`requestData`), with the sender's profile added.
    ContactRequest,
    /// A contact acceptance (`accepterInfo`), with the sender's profile added.
    ContactAccepted,
    /// WebRTC signaling the server also relays, though the current app sends none.
    Offer,
    /// See [`RelayKind::Offer`].
    Answer,
    /// See [`RelayKind::Offer`].
    IceCandidate,
}

impl RelayKind {
    fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "message" => Self::Message,
            "contact-request" => Self::ContactRequest,
            "contact-accepted" => Self::ContactAccepted,
            "offer" => Self::Offer,
            "answer" => Self::Answer,
            "ice-candidate" => Self::IceCandidate,
            _ => return None,
        })
    }

    /// The type on the wire (and the metrics' `type` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::ContactRequest => "contact-request",
            Self::ContactAccepted => "contact-accepted",
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::IceCandidate => "ice-candidate",
        }
    }

    /// The fields of the sender's message that the relayed one carries; the original copied
    /// all three signaling fields whatever the signaling type.
    fn payload_fields(self) -> &'static [&'static str] {
        match self {
            Self::Message => &["messageData"],
            Self::ContactRequest => &["requestData"],
            Self::ContactAccepted => &["accepterInfo"],
            Self::Offer | Self::Answer | Self::IceCandidate => &["offer", "answer", "candidate"],
        }
    }

    /// Whether the relayed message carries the sender's registered profile as `fromUserInfo`.
    fn carries_sender_info(self) -> bool {
        matches!(self, Self::ContactRequest | Self::ContactAccepted)
    }
}

/// Who a relay is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressee {
    /// A user id.
    User(String),
    /// No usable `targetUserId`; the text is what the original's error would have named.
    Invalid(String),
}

impl Addressee {
    /// The id to name in `User <id> is not online`.
    pub fn shown(&self) -> &str {
        match self {
            Self::User(id) | Self::Invalid(id) => id,
        }
    }
}

/// A message for one user, as the sender sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relay {
    /// Its type.
    pub kind: RelayKind,
    /// Its `targetUserId`.
    pub target: Addressee,
    /// The payload fields present in the sender's message.
    payload: Map<String, Value>,
}

impl Relay {
    /// The frame the target receives: the type, the sender's registered id as `fromUserId`
    /// (whatever the sender claimed), its registered profile as `fromUserInfo` for contact
    /// requests and acceptances, and the payload.
    pub fn to_target_frame(&self, from: &str, from_info: Option<&Value>) -> String {
        let mut frame = Map::with_capacity(self.payload.len() + 3);
        frame.insert("type".into(), self.kind.as_str().into());
        frame.insert("fromUserId".into(), from.into());
        if self.kind.carries_sender_info()
            && let Some(info) = from_info
        {
            frame.insert("fromUserInfo".into(), info.clone());
        }
        frame.extend(self.payload.iter().map(|(k, v)| (k.clone(), v.clone())));
        Value::Object(frame).to_string()
    }
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return Err(ParseError::InvalidFormat);
        };
        let Some(Value::String(kind)) = message.get("type") else {
            return Ok(Self::Ignored);
        };
        Ok(match kind.as_str() {
            "register" => {
                let user_id = match message.remove("userId") {
                    Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_USER_ID_BYTES => {
                        id
                    }
                    _ => return Err(ParseError::InvalidUserId),
                };
                let user_info = message.remove("userInfo").filter(|info| !info.is_null());
                Self::Register { user_id, user_info }
            }
            "get-online-users" => Self::GetOnlineUsers,
            "ping" => Self::Ping,
            other => match RelayKind::parse(other) {
                Some(kind) => {
                    let target = match message.get("targetUserId") {
                        Some(Value::String(id)) => Addressee::User(id.clone()),
                        None => Addressee::Invalid("undefined".into()),
                        Some(other) => Addressee::Invalid(other.to_string()),
                    };
                    let payload = kind
                        .payload_fields()
                        .iter()
                        .filter_map(|field| message.remove_entry(*field))
                        .collect();
                    Self::Relay(Relay {
                        kind,
                        target,
                        payload,
                    })
                }
                None => Self::Ignored,
            },
        })
    }
}

/// An online user, as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUser<'a> {
    /// The user's id.
    pub user_id: &'a str,
    /// The profile it registered with (`null` if none).
    pub user_info: Option<&'a Value>,
}

/// A message to the app.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage<'a> {
    /// The greeting the app waits for before it registers.
    #[serde(rename_all = "camelCase")]
    Connected {
        /// A fresh UUID for the connection.
        client_id: String,
        /// [`CONNECTED_MESSAGE`].
        message: &'static str,
    },
    /// The answer to `register`: the users online, the registrant included.
    #[serde(rename_all = "camelCase")]
    Registered {
        /// The registered id.
        user_id: &'a str,
        /// Every user online, each once.
        online_users: Vec<OnlineUser<'a>>,
    },
    /// Someone came online (with their profile) or went offline (`userInfo: null`).
    #[serde(rename_all = "camelCase")]
    UserStatus {
        /// Whose status.
        user_id: &'a str,
        /// Online or not.
        is_online: bool,
        /// The profile, when online.
        user_info: Option<&'a Value>,
    },
    /// The answer to `get-online-users`.
    OnlineUsers {
        /// Every user online, each once.
        users: Vec<OnlineUser<'a>>,
    },
    /// The answer to `ping`.
    Pong {
        /// Milliseconds since the Unix epoch.
        timestamp: i64,
    },
    /// Something went wrong; the app only logs it.
    Error {
        /// What.
        message: Cow<'a, str>,
    },
}

impl ServerMessage<'_> {
    /// As a text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages serialize")
    }

    /// An error with a fixed text.
    pub fn error(message: &'static str) -> ServerMessage<'static> {
        ServerMessage::Error {
            message: Cow::Borrowed(message),
        }
    }

    /// `User <id> is not online`.
    pub fn not_online(id: &str) -> ServerMessage<'static> {
        ServerMessage::Error {
            message: Cow::Owned(format!("User {id} is not online")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_that_are_not_objects_are_invalid() {
        for bad in [
            "not json",
            "{\"type\":",
            "null",
            "42",
            "\"register\"",
            "true",
            "[1,2]",
        ] {
            assert_eq!(
                ClientMessage::parse(bad),
                Err(ParseError::InvalidFormat),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_and_missing_types_are_ignored() {
        for text in [
            r#"{"type":"typing"}"#,
            r#"{"targetUserId":"bob"}"#,
            r#"{"type":7}"#,
        ] {
            assert_eq!(
                ClientMessage::parse(text),
                Ok(ClientMessage::Ignored),
                "{text}"
            );
        }
    }

    #[test]
    fn a_register_needs_a_usable_user_id_and_treats_null_info_as_none() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"register","userId":"alice417","userInfo":null}"#),
            Ok(ClientMessage::Register {
                user_id: "alice417".into(),
                user_info: None
            })
        );
        let long = "x".repeat(MAX_USER_ID_BYTES + 1);
        for user_id in [json!(null), json!(""), json!(42), json!(long)] {
            let text = json!({"type": "register", "userId": user_id}).to_string();
            assert_eq!(ClientMessage::parse(&text), Err(ParseError::InvalidUserId));
        }
        let text = r#"{"type":"register"}"#;
        assert_eq!(ClientMessage::parse(text), Err(ParseError::InvalidUserId));
    }

    fn relay(text: &str) -> Relay {
        match ClientMessage::parse(text) {
            Ok(ClientMessage::Relay(relay)) => relay,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_relayed_message_is_stamped_with_the_registered_sender_only() {
        let r = relay(
            r#"{"type":"message","targetUserId":"bob","fromUserId":"carol","messageData":{"id":"1"},"extra":1}"#,
        );
        assert_eq!(r.target, Addressee::User("bob".into()));
        let frame: Value = serde_json::from_str(&r.to_target_frame("alice", None)).unwrap();
        assert_eq!(
            frame,
            json!({"type": "message", "fromUserId": "alice", "messageData": {"id": "1"}})
        );
    }

    #[test]
    fn contact_requests_carry_the_senders_registered_profile() {
        let r = relay(
            r#"{"type":"contact-request","targetUserId":"bob","fromUserInfo":{"name":"Mallory"},"requestData":{"name":"A"}}"#,
        );
        let info = json!({"name": "Alice"});
        let frame: Value = serde_json::from_str(&r.to_target_frame("alice", Some(&info))).unwrap();
        assert_eq!(
            frame,
            json!({"type": "contact-request", "fromUserId": "alice",
                   "fromUserInfo": {"name": "Alice"}, "requestData": {"name": "A"}})
        );
        // A message carries no profile, even if there is one.
        let r = relay(r#"{"type":"message","targetUserId":"bob"}"#);
        let frame: Value = serde_json::from_str(&r.to_target_frame("alice", Some(&info))).unwrap();
        assert_eq!(frame, json!({"type": "message", "fromUserId": "alice"}));
    }

    #[test]
    fn a_target_that_is_not_a_string_is_named_as_the_original_would() {
        let r = relay(r#"{"type":"offer","offer":{"sdp":"x"}}"#);
        assert_eq!(r.target, Addressee::Invalid("undefined".into()));
        let r = relay(r#"{"type":"answer","targetUserId":42}"#);
        assert_eq!(r.target.shown(), "42");
    }

    #[test]
    fn server_messages_have_the_originals_shape() {
        let info = json!({"name": "Bob"});
        assert_eq!(
            ServerMessage::UserStatus {
                user_id: "bob",
                is_online: true,
                user_info: Some(&info)
            }
            .to_json(),
            r#"{"type":"user-status","userId":"bob","isOnline":true,"userInfo":{"name":"Bob"}}"#
        );
        assert_eq!(
            ServerMessage::UserStatus {
                user_id: "bob",
                is_online: false,
                user_info: None
            }
            .to_json(),
            r#"{"type":"user-status","userId":"bob","isOnline":false,"userInfo":null}"#
        );
        assert_eq!(
            ServerMessage::not_online("nobody").to_json(),
            r#"{"type":"error","message":"User nobody is not online"}"#
        );
        assert_eq!(
            ServerMessage::OnlineUsers { users: vec![] }.to_json(),
            r#"{"type":"online-users","users":[]}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn no_frame_panics_the_parser(text in crate::dialects::testing::arbitrary_frames(&["type", "userId", "userInfo", "targetUserId", "messageData", "requestData", "offer", "candidate"])) {
            let _ = ClientMessage::parse(&text);
        }

        #[test]
        fn no_message_of_a_known_type_panics_the_parser(
            kind in proptest::sample::select(&["register", "message", "contact-request", "offer", "ping", "get-online-users"][..]),
            rest in crate::dialects::testing::arbitrary_frames(&["type", "userId", "userInfo", "targetUserId", "messageData", "requestData", "offer", "candidate"]),
        ) {
            if let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(&rest) {
                message.insert("type".into(), kind.into());
                let _ = ClientMessage::parse(&Value::Object(message).to_string());
            }
        }
    }
}
