//! DropSilk's wire: the WebSocket messages, the HTTP bodies and their validation, the room
//! summary, and the ids. No transport and no storage here.
//!
//! Validation follows the original's zod schemas: strings are trimmed, names are 1 to 50
//! characters, codes exactly 6 (upper-cased, alphabet not checked), ids 1 to 64; unknown fields
//! are ignored. A failed HTTP validation lists its issues as `"<field>: <message>"`.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::db::Millis;
use crate::db::dropsilk::{Participant, Role, Room};

/// Characters of a room code: no `I`, `O`, `0` or `1`, which read alike.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Characters of a room code.
pub const CODE_LEN: usize = 6;
/// Characters of a participant id (`[0-9a-z]`).
pub const PARTICIPANT_ID_LEN: usize = 12;
/// Characters of a session id (`[0-9a-z]`).
pub const SESSION_ID_LEN: usize = 10;
/// Longest display name, in characters (the original's limit).
pub const MAX_NAME_CHARS: usize = 50;
/// Longest participant or session id a client may name, in characters (the original's limit).
pub const MAX_ID_CHARS: usize = 64;
/// The name of a socket that has not registered one.
pub const ANONYMOUS: &str = "Anonymous";

/// `error.message` strings: a contract (the client matches `"Flight not found"`).
pub mod errors {
    /// Not JSON, or not an object with a string `type`.
    pub const INVALID_FORMAT: &str = "Invalid message format";
    /// A `type` the protocol does not have.
    pub const UNKNOWN_TYPE: &str = "Unknown message type";
    /// A known type whose fields fail validation.
    pub const INVALID_PAYLOAD: &str = "Invalid message payload";
    /// `create-flight` or `join-flight` from a socket in a flight.
    pub const ALREADY_IN_FLIGHT: &str = "Already in a flight";
    /// `join-flight` of a flight that does not exist or has two members.
    pub const FLIGHT_NOT_FOUND: &str = "Flight not found or full";
    /// `join-flight` of a flight whose creator went away meanwhile.
    pub const CREATOR_DISCONNECTED: &str = "Flight creator disconnected";
    /// `attach-room` of a room that does not exist, or by someone not in it.
    pub const ROOM_NOT_FOUND: &str = "Room not found or expired";
    /// A failure of the server's (the store).
    pub const SERVER_ERROR: &str = "Server error processing your request";
    /// Messages over the per-connection rate (signalpost's limit; the original had none).
    pub const RATE_LIMITED: &str = "Too many messages; slow down";
}

/// HTTP `error` strings of the rooms API.
pub mod http_errors {
    /// Poll or participant action on a room that is gone or that the participant is not in.
    pub const NOT_IN_ROOM: &str = "Room not found or participant is not part of it.";
    /// Join of a room that is gone.
    pub const ROOM_GONE: &str = "Room not found or expired";
    /// Join of a room that has its guest.
    pub const ROOM_FULL: &str = "Room already has two participants";
    /// Screen share asked for while the peer shares.
    pub const PEER_SHARING: &str = "Peer is already screen sharing";
    /// Any other path under `/api/rooms`.
    pub const NO_ENDPOINT: &str = "Room endpoint not found.";
    /// No free code after the attempts.
    pub const NO_CODE: &str = "Failed to allocate unique room code";
    /// The validation error.
    pub const INVALID_REQUEST: &str = "Invalid request";
    /// `/api/turn-credentials` with neither TURN nor STUN configured.
    pub const TURN_NOT_CONFIGURED: &str = "TURN service is not configured on the server.";
}

/// A fresh room code: six characters of [`CODE_ALPHABET`] from the thread's CSPRNG.
pub fn new_code() -> String {
    random_string(CODE_ALPHABET, CODE_LEN)
}

/// A fresh participant id.
pub fn new_participant_id() -> String {
    random_string(b"0123456789abcdefghijklmnopqrstuvwxyz", PARTICIPANT_ID_LEN)
}

/// A fresh session id.
pub fn new_session_id() -> String {
    random_string(b"0123456789abcdefghijklmnopqrstuvwxyz", SESSION_ID_LEN)
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    // `rand::rng()` is a CSPRNG seeded from the operating system; `random_range` is unbiased.
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// One of a room's three channels; each pairs its own sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Files (the main socket).
    Transfer,
    /// Chat.
    Chat,
    /// Screen sharing.
    ScreenShare,
}

impl Channel {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Transfer => "transfer",
            Channel::Chat => "chat",
            Channel::ScreenShare => "screen-share",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "transfer" => Some(Channel::Transfer),
            "chat" => Some(Channel::Chat),
            "screen-share" => Some(Channel::ScreenShare),
            _ => None,
        }
    }
}

/// A message from a client.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    /// `register-details`: the socket's display name.
    RegisterDetails {
        /// Trimmed.
        name: String,
    },
    /// `create-flight` (legacy).
    CreateFlight,
    /// `join-flight` (legacy).
    JoinFlight {
        /// Upper-cased.
        code: String,
    },
    /// `attach-room`: bind this socket to a channel of a durable room.
    AttachRoom {
        /// Upper-cased.
        code: String,
        /// Trimmed.
        participant: String,
        /// Transfer unless named.
        channel: Channel,
    },
    /// `invite-to-flight`.
    Invite {
        /// The invitee's session id.
        invitee: String,
        /// Upper-cased.
        code: String,
    },
    /// `signal`: for the peer on this socket's channel.
    Signal {
        /// As sent, if present.
        data: Option<&'a RawValue>,
    },
}

/// Why a frame is not a message: its `error.message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "type")]
    kind: &'a RawValue,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow, rename = "flightCode")]
    flight_code: Option<&'a RawValue>,
    #[serde(borrow, rename = "roomCode")]
    room_code: Option<&'a RawValue>,
    #[serde(borrow, rename = "participantId")]
    participant_id: Option<&'a RawValue>,
    /// Optional, but not nullable (`null` is refused, as by the original's schema).
    #[serde(borrow, default, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(borrow, rename = "inviteeId")]
    invitee_id: Option<&'a RawValue>,
    /// `null` is data too (relayed as `null`); only an absent field is none.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

/// A field that is present, whatever its value, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn raw_string(raw: Option<&RawValue>) -> Option<String> {
    serde_json::from_str(raw?.get()).ok()
}

/// A string trimmed to 1..=`max` characters.
fn trimmed(raw: Option<&RawValue>, max: usize) -> Option<String> {
    let s = raw_string(raw)?;
    let s = s.trim();
    (!s.is_empty() && s.chars().count() <= max).then(|| s.to_owned())
}

/// A code: trimmed, exactly six characters, upper-cased.
fn code(raw: Option<&RawValue>) -> Option<String> {
    parse_code(&raw_string(raw)?)
}

/// A code from any string: trimmed, exactly six characters, upper-cased.
pub fn parse_code(s: &str) -> Option<String> {
    let s = s.trim();
    (s.chars().count() == CODE_LEN).then(|| s.to_uppercase())
}

impl<'a> ClientMessage<'a> {
    /// Parses one text frame, or says what to answer.
    pub fn parse(text: &'a str) -> Result<Self, Refusal> {
        let envelope: Envelope<'a> =
            serde_json::from_str(text).map_err(|_| Refusal(errors::INVALID_FORMAT))?;
        let kind: String = serde_json::from_str(envelope.kind.get())
            .map_err(|_| Refusal(errors::INVALID_FORMAT))?;
        let invalid = Refusal(errors::INVALID_PAYLOAD);
        Ok(match kind.as_str() {
            "register-details" => ClientMessage::RegisterDetails {
                name: trimmed(envelope.name, MAX_NAME_CHARS).ok_or(invalid)?,
            },
            "create-flight" => ClientMessage::CreateFlight,
            "join-flight" => ClientMessage::JoinFlight {
                code: code(envelope.flight_code).ok_or(invalid)?,
            },
            "attach-room" => ClientMessage::AttachRoom {
                code: code(envelope.room_code).ok_or(invalid)?,
                participant: trimmed(envelope.participant_id, MAX_ID_CHARS).ok_or(invalid)?,
                channel: match envelope.channel {
                    None => Channel::Transfer,
                    Some(raw) => raw_string(Some(raw))
                        .and_then(|c| Channel::parse(&c))
                        .ok_or(invalid)?,
                },
            },
            "invite-to-flight" => ClientMessage::Invite {
                invitee: trimmed(envelope.invitee_id, MAX_ID_CHARS).ok_or(invalid)?,
                code: code(envelope.flight_code).ok_or(invalid)?,
            },
            "signal" => ClientMessage::Signal {
                data: envelope.data,
            },
            _ => return Err(Refusal(errors::UNKNOWN_TYPE)),
        })
    }
}

/// A peer as `peer-joined` and `users-on-network-update` name it: its session id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// Session id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A message from the server.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    /// First message on every socket.
    Registered {
        /// The session id.
        id: String,
    },
    /// The others on the socket's network (empty while it is in a full flight).
    UsersOnNetworkUpdate {
        /// Session ids and names.
        users: Vec<Peer>,
    },
    /// Answer to `create-flight`.
    #[serde(rename_all = "camelCase")]
    FlightCreated {
        /// The code.
        flight_code: String,
    },
    /// Answer to `attach-room`.
    #[serde(rename_all = "camelCase")]
    RoomAttached {
        /// The room's code.
        flight_code: String,
        /// `host` or `guest`.
        role: &'static str,
        /// The other participant as stored, or null.
        peer: Option<ParticipantSummary>,
    },
    /// To both sockets of a channel once both are there.
    #[serde(rename_all = "camelCase")]
    PeerJoined {
        /// The room's or flight's code.
        flight_code: String,
        /// The other socket.
        peer: Peer,
        /// `lan` when both are on one network, else `wan`.
        connection_type: &'static str,
    },
    /// The other socket of the channel closed.
    PeerLeft,
    /// An invitation from `invite-to-flight`.
    #[serde(rename_all = "camelCase")]
    FlightInvitation {
        /// The code to join.
        flight_code: String,
        /// The inviter's name.
        from_name: String,
    },
    /// A refusal.
    Error {
        /// One of [`errors`].
        message: &'static str,
    },
    /// The server is stopping; a close (1001) follows.
    ServerShutdown {
        /// Human-readable.
        message: &'static str,
    },
}

/// `server-shutdown`'s message.
pub const SHUTDOWN_MESSAGE: &str = "Server is shutting down for maintenance.";

impl ServerMessage {
    /// The JSON text frame.
    pub fn to_json(&self) -> String {
        // Every field is a string, bool, number or a list of those: this cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An `error` frame.
    pub fn error(message: &'static str) -> String {
        ServerMessage::Error { message }.to_json()
    }
}

/// The `signal` frame a peer receives: `data` byte for byte as sent, or no `data` at all.
pub fn signal_frame(data: Option<&RawValue>) -> String {
    match data {
        Some(raw) => {
            let mut frame = String::with_capacity(raw.get().len() + 26);
            frame.push_str(r#"{"type":"signal","data":"#);
            frame.push_str(raw.get());
            frame.push('}');
            frame
        }
        None => r#"{"type":"signal"}"#.to_owned(),
    }
}

/// `lan` or `wan`.
pub fn connection_type(same_network: bool) -> &'static str {
    if same_network { "lan" } else { "wan" }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A participant as the room summary shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantSummary {
    /// Its id.
    pub participant_id: String,
    /// `host` or `guest`.
    pub role: &'static str,
    /// Its name.
    pub name: String,
    /// It picked files.
    pub ready: bool,
    /// How many.
    pub file_count: u64,
    /// How many bytes (an integer when it is one).
    pub total_bytes: serde_json::Number,
}

impl ParticipantSummary {
    /// `p` in `role`.
    pub fn of(p: &Participant, role: Role) -> Self {
        Self {
            participant_id: p.id.clone(),
            role: role_name(role),
            name: p.name.clone(),
            ready: p.ready,
            file_count: p.file_count,
            total_bytes: number(p.total_bytes),
        }
    }
}

/// `host` or `guest`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Guest => "guest",
    }
}

/// Whole numbers as integers (`2048`, not `2048.0`), as JavaScript prints them.
fn number(n: f64) -> serde_json::Number {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&n) {
        serde_json::Number::from(n as u64)
    } else {
        serde_json::Number::from_f64(n).unwrap_or_else(|| serde_json::Number::from(0))
    }
}

/// A room as one participant sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The code.
    pub room_code: String,
    /// `waiting` (no guest), `paired`, or `ready` (someone is ready).
    pub status: &'static str,
    /// Both are here and someone is ready: attach the sockets.
    pub should_connect: bool,
    /// ISO-8601 UTC, milliseconds.
    pub expires_at: String,
    /// The asking participant.
    #[serde(rename = "self")]
    pub me: ParticipantSummary,
    /// The other, or null.
    pub peer: Option<ParticipantSummary>,
    /// Screen sharing.
    pub screen_share: ScreenShareSummary,
    /// Chat.
    pub chat: ChatSummary,
}

/// Screen sharing in a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScreenShareSummary {
    /// The host if it asked, else the guest if it asked, else null.
    pub active_participant_id: Option<String>,
    /// The asking participant asked.
    pub requested_by_self: bool,
    /// The other asked.
    pub requested_by_peer: bool,
    /// Someone asked.
    pub is_active: bool,
}

/// Chat in a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSummary {
    /// The asking participant asked.
    pub requested_by_self: bool,
    /// The other asked.
    pub requested_by_peer: bool,
    /// Someone asked.
    pub is_active: bool,
}

/// An instant as ISO-8601 UTC with milliseconds (`2026-06-06T12:34:56.000Z`).
pub fn iso(millis: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl RoomSummary {
    /// `room` as `participant` sees it, if it is in it.
    pub fn of(room: &Room, participant: &str) -> Option<Self> {
        let role = room.role_of(participant)?;
        let (me, peer) = room.me_and_peer(participant)?;
        let peer_role = match role {
            Role::Host => Role::Guest,
            Role::Guest => Role::Host,
        };
        let has_peer = room.guest.is_some();
        let should_connect =
            has_peer && (room.host.ready || room.guest.as_ref().is_some_and(|g| g.ready));
        let status = match (has_peer, should_connect) {
            (false, _) => "waiting",
            (true, true) => "ready",
            (true, false) => "paired",
        };
        let guest = room.guest.as_ref();
        let active_participant_id = if room.host.screen_share {
            Some(room.host.id.clone())
        } else {
            guest.filter(|g| g.screen_share).map(|g| g.id.clone())
        };
        let peer_shares = peer.is_some_and(|p| p.screen_share);
        let peer_chats = peer.is_some_and(|p| p.chat);
        Some(Self {
            room_code: room.code.clone(),
            status,
            should_connect,
            expires_at: iso(room.expires_at),
            me: ParticipantSummary::of(me, role),
            peer: peer.map(|p| ParticipantSummary::of(p, peer_role)),
            screen_share: ScreenShareSummary {
                active_participant_id,
                requested_by_self: me.screen_share,
                requested_by_peer: peer_shares,
                is_active: me.screen_share || peer_shares,
            },
            chat: ChatSummary {
                requested_by_self: me.chat,
                requested_by_peer: peer_chats,
                is_active: me.chat || peer_chats,
            },
        })
    }
}

/// Validation issues, as `"<field>: <message>"`.
pub type Issues = Vec<String>;

/// A request body: a JSON object (an empty body is an empty object), or the issue that it is
/// not one.
pub fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, Issues> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(vec![format!(
            "body: Expected object, received {}",
            type_name(&other)
        )]),
        Err(_) => Err(vec!["body: Malformed JSON in request body".to_owned()]),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A required trimmed string of `min..=max` characters (`field` names it in issues).
pub fn string_field(
    value: Option<&Value>,
    field: &str,
    min: usize,
    max: usize,
    issues: &mut Issues,
) -> Option<String> {
    let s = match value {
        None => {
            issues.push(format!("{field}: Required"));
            return None;
        }
        Some(Value::String(s)) => s.trim(),
        Some(other) => {
            issues.push(format!(
                "{field}: Expected string, received {}",
                type_name(other)
            ));
            return None;
        }
    };
    let chars = s.chars().count();
    if chars < min {
        issues.push(format!(
            "{field}: String must contain at least {min} character(s)"
        ));
        None
    } else if chars > max {
        issues.push(format!(
            "{field}: String must contain at most {max} character(s)"
        ));
        None
    } else {
        Some(s.to_owned())
    }
}

/// A room code from a path segment (percent-decoded): trimmed, exactly six, upper-cased.
pub fn code_param(raw: &str, issues: &mut Issues) -> Option<String> {
    let decoded = percent_decode(raw);
    let code = parse_code(&decoded);
    if code.is_none() {
        issues.push(format!(
            "roomCode: String must contain exactly {CODE_LEN} character(s)"
        ));
    }
    code
}

/// A participant id from a path segment or the query: trimmed, 1 to 64 characters.
pub fn participant_param(raw: Option<&str>, issues: &mut Issues) -> Option<String> {
    let value = raw.map(|r| Value::String(percent_decode(r)));
    string_field(value.as_ref(), "participantId", 1, MAX_ID_CHARS, issues)
}

/// `%XX` escapes decoded (as a URL path segment); invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Largest file count or byte total taken: JavaScript's largest exact integer.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A number the original coerces (`z.coerce.number()`): a number, a numeric string, or null
/// (0); absent is 0. `integer` refuses fractions.
pub fn coerced_number(
    value: Option<&Value>,
    field: &str,
    integer: bool,
    issues: &mut Issues,
) -> Option<f64> {
    let n = match value {
        None | Some(Value::Null) => 0.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) if s.trim().is_empty() => 0.0,
        Some(Value::String(s)) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(_) => f64::NAN,
    };
    if !n.is_finite() {
        issues.push(format!("{field}: Expected number, received nan"));
        None
    } else if integer && n.fract() != 0.0 {
        issues.push(format!("{field}: Expected integer, received float"));
        None
    } else if n < 0.0 {
        issues.push(format!(
            "{field}: Number must be greater than or equal to 0"
        ));
        None
    } else if n > MAX_SAFE_INTEGER {
        issues.push(format!(
            "{field}: Number must be less than or equal to {MAX_SAFE_INTEGER}"
        ));
        None
    } else {
        Some(n)
    }
}

/// A strict boolean.
pub fn bool_field(value: Option<&Value>, field: &str, issues: &mut Issues) -> Option<bool> {
    match value {
        Some(Value::Bool(b)) => Some(*b),
        None => {
            issues.push(format!("{field}: Required"));
            None
        }
        Some(other) => {
            issues.push(format!(
                "{field}: Expected boolean, received {}",
                type_name(other)
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::dropsilk::{Change, NewParticipant};
    use serde_json::json;

    fn parse(text: &str) -> Result<ClientMessage<'_>, &'static str> {
        ClientMessage::parse(text).map_err(|r| r.0)
    }

    #[test]
    fn ids_have_their_alphabets_and_lengths() {
        for _ in 0..50 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
            let p = new_participant_id();
            assert_eq!(p.len(), 12);
            assert!(
                p.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            );
            assert_eq!(new_session_id().len(), 10);
        }
        assert_ne!(new_session_id(), new_session_id());
    }

    #[test]
    fn frames_without_an_object_and_a_string_type_are_invalid_format() {
        for frame in [
            "not json",
            "{\"type\":",
            "null",
            "42",
            "\"signal\"",
            "[1]",
            "{}",
            "{\"type\":5}",
            "{\"type\":null}",
        ] {
            assert_eq!(parse(frame).unwrap_err(), errors::INVALID_FORMAT, "{frame}");
        }
        assert_eq!(
            parse(r#"{"type":"hello"}"#).unwrap_err(),
            errors::UNKNOWN_TYPE
        );
    }

    #[test]
    fn payloads_are_validated_and_normalised() {
        match parse(r#"{"type":"attach-room","roomCode":" abc234 ","participantId":" p1 "}"#) {
            Ok(ClientMessage::AttachRoom {
                code,
                participant,
                channel,
            }) => assert_eq!(
                (code.as_str(), participant.as_str(), channel),
                ("ABC234", "p1", Channel::Transfer)
            ),
            other => panic!("{other:?}"),
        }
        for bad in [
            r#"{"type":"register-details","name":"   "}"#,
            r#"{"type":"join-flight","flightCode":"ABCDEFG"}"#,
            r#"{"type":"attach-room","roomCode":"ABC234","participantId":"p","channel":"video"}"#,
            r#"{"type":"attach-room","roomCode":"ABC234","participantId":"p","channel":null}"#,
            r#"{"type":"invite-to-flight","inviteeId":"abc","flightCode":"ABCD"}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err(), errors::INVALID_PAYLOAD, "{bad}");
        }
    }

    #[test]
    fn a_signal_keeps_its_data_byte_for_byte() {
        let Ok(ClientMessage::Signal { data }) =
            parse(r#"{"type":"signal","data":{"b": 1,  "a":"\u00e9"},"x":1}"#)
        else {
            panic!()
        };
        assert_eq!(
            signal_frame(data),
            r#"{"type":"signal","data":{"b": 1,  "a":"\u00e9"}}"#
        );
        assert_eq!(signal_frame(None), r#"{"type":"signal"}"#);
        let Ok(ClientMessage::Signal { data }) = parse(r#"{"type":"signal","data":null}"#) else {
            panic!()
        };
        assert_eq!(signal_frame(data), r#"{"type":"signal","data":null}"#);
        let Ok(ClientMessage::Signal { data }) = parse(r#"{"type":"signal"}"#) else {
            panic!()
        };
        assert!(data.is_none());
    }

    #[test]
    fn server_messages_use_the_wire_names() {
        let v: Value = serde_json::from_str(
            &ServerMessage::PeerJoined {
                flight_code: "ABC234".into(),
                peer: Peer {
                    id: "s".into(),
                    name: "n".into(),
                },
                connection_type: "lan",
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"peer-joined","flightCode":"ABC234","peer":{"id":"s","name":"n"},"connectionType":"lan"})
        );
        assert_eq!(ServerMessage::PeerLeft.to_json(), r#"{"type":"peer-left"}"#);
        assert_eq!(
            ServerMessage::UsersOnNetworkUpdate { users: vec![] }.to_json(),
            r#"{"type":"users-on-network-update","users":[]}"#
        );
    }

    #[test]
    fn the_summary_derives_status_and_requests() {
        let person = |id: &str| NewParticipant {
            id: id.into(),
            name: id.into(),
        };
        let mut room = Room::new("ABC234".into(), person("h"), 0);
        let alone = RoomSummary::of(&room, "h").unwrap();
        assert_eq!((alone.status, alone.should_connect), ("waiting", false));
        assert_eq!(alone.expires_at, "1970-01-01T00:00:00.000Z");
        room.join(person("g")).unwrap();
        assert_eq!(RoomSummary::of(&room, "g").unwrap().status, "paired");
        room.apply(
            "g",
            Change::Ready {
                file_count: 1,
                total_bytes: 2048.0,
            },
        )
        .unwrap();
        room.apply("g", Change::ScreenShare(true)).unwrap();
        room.apply("h", Change::Chat(true)).unwrap();
        let host = RoomSummary::of(&room, "h").unwrap();
        assert_eq!((host.status, host.should_connect), ("ready", true));
        let v = serde_json::to_value(&host).unwrap();
        assert_eq!(v["peer"]["totalBytes"], json!(2048));
        assert_eq!(
            v["screenShare"],
            json!({"activeParticipantId":"g","requestedBySelf":false,"requestedByPeer":true,"isActive":true})
        );
        assert_eq!(
            v["chat"],
            json!({"requestedBySelf":true,"requestedByPeer":false,"isActive":true})
        );
        assert!(RoomSummary::of(&room, "x").is_none());
    }

    #[test]
    fn numbers_are_coerced_as_the_original_does() {
        let mut issues = Issues::new();
        let n =
            |v: Value, integer, issues: &mut Issues| coerced_number(Some(&v), "f", integer, issues);
        assert_eq!(n(json!("4"), true, &mut issues), Some(4.0));
        assert_eq!(n(json!(5000), false, &mut issues), Some(5000.0));
        assert_eq!(n(json!(null), true, &mut issues), Some(0.0));
        assert_eq!(coerced_number(None, "f", true, &mut issues), Some(0.0));
        assert!(issues.is_empty());
        for bad in [json!(-1), json!(1.5), json!("many"), json!([1])] {
            assert_eq!(n(bad.clone(), true, &mut issues), None, "{bad}");
        }
        assert_eq!(issues.len(), 4);
    }

    proptest::proptest! {
        #[test]
        fn no_frame_panics_the_parser(text in "\\PC{0,200}") {
            let _ = ClientMessage::parse(&text);
        }

        #[test]
        fn no_message_of_a_known_type_panics_the_parser(
            kind in proptest::sample::select(vec![
                "register-details", "create-flight", "join-flight", "attach-room",
                "invite-to-flight", "signal",
            ]),
            field in proptest::sample::select(vec![
                "name", "flightCode", "roomCode", "participantId", "channel", "inviteeId", "data",
            ]),
            value in proptest::prop_oneof![
                proptest::strategy::Just("null".to_owned()),
                "-?[0-9]{1,20}(\\.[0-9]{1,5})?",
                "\"\\PC{0,80}\"",
                proptest::strategy::Just("[1,{}]".to_owned()),
            ],
        ) {
            let text = format!(r#"{{"type":"{kind}","{field}":{value}}}"#);
            let _ = ClientMessage::parse(&text);
        }

        #[test]
        fn no_body_panics_validation(body in "\\PC{0,200}") {
            if let Ok(object) = parse_body(body.as_bytes()) {
                let mut issues = Issues::new();
                let _ = string_field(object.get("name"), "name", 1, MAX_NAME_CHARS, &mut issues);
                let _ = coerced_number(object.get("fileCount"), "fileCount", true, &mut issues);
                let _ = bool_field(object.get("active"), "active", &mut issues);
            }
            let _ = code_param(&body, &mut Issues::new());
            let _ = percent_decode(&body);
        }
    }

    #[test]
    fn bodies_are_objects() {
        assert_eq!(parse_body(b"").unwrap(), Map::new());
        assert!(parse_body(br#"{"name": "Broken"#).is_err());
        assert!(parse_body(b"[1]").is_err());
        assert_eq!(percent_decode("a%20b%zz"), "a b%zz");
    }
}
