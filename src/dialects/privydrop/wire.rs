//! PrivyDrop's messages as they travel: the Socket.IO events a client sends and the ones it is
//! sent, the exact answer strings of the original server, and the frames a relay carries between
//! sessions. No transport here: what arrives is the text of a Socket.IO event, `[name, payload]`.
//!
//! The original server destructures payloads without looking at them, so a missing or `null`
//! payload crashes it. Here an event whose payload is not an object with the fields the event
//! needs, typed as it needs them, is [`Unusable`]: the session ignores it (and logs it at debug).
//! Fields the server only passes on (`from`, the SDP, the candidate, `recipient-ready`'s
//! `peerId`) are passed on exactly as sent, whatever their type, and left out when absent, as
//! the original's `undefined` is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;

/// Event names, both ways.
pub mod events {
    /// Client → server: join a room.
    pub const JOIN: &str = "join";
    /// Server → client: the answer to `join`.
    pub const JOIN_RESPONSE: &str = "joinResponse";
    /// Server → client: another socket joined (or rejoined) the room.
    pub const READY: &str = "ready";
    /// Both ways, relayed to the addressed socket: an SDP offer.
    pub const OFFER: &str = "offer";
    /// Both ways, relayed to the addressed socket: an SDP answer.
    pub const ANSWER: &str = "answer";
    /// Both ways, relayed to the addressed socket: an ICE candidate.
    pub const ICE_CANDIDATE: &str = "ice-candidate";
    /// Both ways, relayed to the rest of the room: the sender (re)connected.
    pub const INITIATOR_ONLINE: &str = "initiator-online";
    /// Both ways, relayed to the rest of the room: a receiver is ready for an offer.
    pub const RECIPIENT_READY: &str = "recipient-ready";
    /// Server → client: a socket left the room or disconnected.
    pub const PEER_DISCONNECTED: &str = "peer-disconnected";
}

/// `joinResponse.message` of a successful join.
pub const JOINED: &str = "Successfully joined room";
/// `joinResponse.message` of a socket that is in another room.
pub const ALREADY_BOUND: &str = "Socket is already bound to another room";
/// `joinResponse.message` of a room that does not exist (or expired).
pub const NO_SUCH_ROOM: &str = "Room does not exist";
/// `joinResponse.message` when the server failed.
pub const SERVER_ERROR: &str = "Server error while joining room";
/// `joinResponse.error` when the server failed: the original put the exception's text there;
/// ours stays in the log.
pub const SERVER_ERROR_DETAIL: &str = "unavailable";
/// `joinResponse.message` of a room holding `MAX_ROOM_CAPACITY` members. The original has no
/// limit and so no such answer.
pub const ROOM_FULL: &str = "Room is full";

/// Longest room id, in characters: the ids signalpost takes everywhere (`ids::MAX_ID_CHARS`).
/// PrivyDrop's own are 4 characters, and custom ones are typed by people.
pub const MAX_ROOM_ID_CHARS: usize = crate::ids::MAX_ID_CHARS;

/// `joinResponse.message` of a join over the client's join limit: the original's words, with
/// the seconds until a join is allowed again (whole seconds, rounded up, at least 1).
pub fn rate_limited(wait: Duration) -> String {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    format!(
        "Rate limit exceeded. Try again in {}s. Attempts left: 0.",
        secs.max(1)
    )
}

/// The answer to `join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinResponse<'a> {
    /// Whether the socket is in the room now.
    pub success: bool,
    /// One of the exact strings above.
    pub message: Cow<'a, str>,
    /// The room asked for (absent on a server error, as in the original).
    #[serde(rename = "roomId", skip_serializing_if = "Option::is_none")]
    pub room_id: Option<&'a str>,
    /// On a server error only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

impl<'a> JoinResponse<'a> {
    /// A success or refusal about `room_id`.
    pub fn new(success: bool, message: impl Into<Cow<'a, str>>, room_id: &'a str) -> Self {
        Self {
            success,
            message: message.into(),
            room_id: Some(room_id),
            error: None,
        }
    }

    /// The server failed.
    pub fn server_error() -> Self {
        Self {
            success: false,
            message: SERVER_ERROR.into(),
            room_id: None,
            error: Some(SERVER_ERROR_DETAIL),
        }
    }
}

/// `{peerId}`: the payload of `ready` and `peer-disconnected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerIdPayload<'a> {
    /// The socket it is about.
    #[serde(rename = "peerId")]
    pub peer_id: &'a str,
}

/// Which relayed message: the three that go to one addressed socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// `offer {offer, from, peerId}`.
    Offer,
    /// `answer {answer, from, peerId}`.
    Answer,
    /// `ice-candidate {candidate, from, peerId}`.
    IceCandidate,
}

impl SignalKind {
    /// The event name.
    pub fn event(self) -> &'static str {
        match self {
            SignalKind::Offer => events::OFFER,
            SignalKind::Answer => events::ANSWER,
            SignalKind::IceCandidate => events::ICE_CANDIDATE,
        }
    }

    /// The payload's field that carries the SDP or the candidate.
    pub fn body_field(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::IceCandidate => "candidate",
        }
    }

    /// The relay's kind, for metrics.
    pub fn metric(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::IceCandidate => "candidate",
        }
    }
}

/// An offer, answer or candidate for one socket, as the client sent it.
#[derive(Debug, Clone)]
pub struct Signal<'a> {
    /// Which one.
    pub kind: SignalKind,
    /// The addressed socket.
    pub peer_id: Cow<'a, str>,
    /// The SDP or candidate, passed on as sent.
    pub body: Option<&'a RawValue>,
    /// The sender's own idea of its id, passed on as sent (the clients key their connections by
    /// it).
    pub from: Option<&'a RawValue>,
}

/// What a client sent.
#[derive(Debug, Clone)]
pub enum ClientEvent<'a> {
    /// `join {roomId}`.
    Join {
        /// The room.
        room_id: Cow<'a, str>,
    },
    /// `offer`, `answer` or `ice-candidate`.
    Signal(Signal<'a>),
    /// `initiator-online {roomId}`.
    InitiatorOnline {
        /// The room whose other members are told.
        room_id: Cow<'a, str>,
    },
    /// `recipient-ready {roomId, peerId}`.
    RecipientReady {
        /// The room whose other members are told.
        room_id: Cow<'a, str>,
        /// Passed on as sent.
        peer_id: Option<&'a RawValue>,
    },
}

/// Why an event is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Not a JSON array starting with an event name (socketioxide hands over only such text, so
    /// this is a server-side surprise rather than a client's).
    #[error("not an event")]
    NotAnEvent,
    /// An event PrivyDrop's server does not handle.
    #[error("unknown event")]
    UnknownEvent,
    /// The payload is missing, not an object, or lacks a field the event needs.
    #[error("{0}: no usable payload")]
    Payload(&'static str),
}

/// A payload object: its fields, each as the JSON text it was sent as (`null` included).
type Fields<'a> = HashMap<Cow<'a, str>, &'a RawValue>;

impl<'a> ClientEvent<'a> {
    /// Reads the text of a Socket.IO event, `["name", payload, ...]` (extra arguments ignored).
    pub fn parse(text: &'a str) -> Result<Self, Unusable> {
        let args: Vec<&'a RawValue> =
            serde_json::from_str(text).map_err(|_| Unusable::NotAnEvent)?;
        let (name, payload) = match args.as_slice() {
            [name, rest @ ..] => (*name, rest.first().copied()),
            [] => return Err(Unusable::NotAnEvent),
        };
        let name: Cow<'a, str> =
            serde_json::from_str(name.get()).map_err(|_| Unusable::NotAnEvent)?;
        let event = match &*name {
            events::JOIN => events::JOIN,
            events::OFFER => events::OFFER,
            events::ANSWER => events::ANSWER,
            events::ICE_CANDIDATE => events::ICE_CANDIDATE,
            events::INITIATOR_ONLINE => events::INITIATOR_ONLINE,
            events::RECIPIENT_READY => events::RECIPIENT_READY,
            _ => return Err(Unusable::UnknownEvent),
        };
        let unusable = || Unusable::Payload(event);
        let fields: Fields<'a> = payload
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .ok_or_else(unusable)?;
        let string = |name: &str| -> Result<Cow<'a, str>, Unusable> {
            let raw = fields.get(name).ok_or_else(unusable)?;
            serde_json::from_str::<Cow<'a, str>>(raw.get()).map_err(|_| unusable())
        };
        let signal = |kind: SignalKind| -> Result<Self, Unusable> {
            Ok(ClientEvent::Signal(Signal {
                kind,
                peer_id: string("peerId")?,
                body: fields.get(kind.body_field()).copied(),
                from: fields.get("from").copied(),
            }))
        };
        match event {
            events::JOIN => Ok(ClientEvent::Join {
                room_id: string("roomId")?,
            }),
            events::OFFER => signal(SignalKind::Offer),
            events::ANSWER => signal(SignalKind::Answer),
            events::ICE_CANDIDATE => signal(SignalKind::IceCandidate),
            events::INITIATOR_ONLINE => Ok(ClientEvent::InitiatorOnline {
                room_id: string("roomId")?,
            }),
            _ => Ok(ClientEvent::RecipientReady {
                room_id: string("roomId")?,
                peer_id: fields.get("peerId").copied(),
            }),
        }
    }
}

/// A payload of present fields only, in order: what the original builds with object literals
/// whose `undefined` members JSON leaves out.
struct Present<'a>(&'a [(&'a str, Option<&'a RawValue>)]);

impl Serialize for Present<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let present = self.0.iter().filter(|(_, v)| v.is_some());
        let mut map = serializer.serialize_map(Some(present.clone().count()))?;
        for (key, value) in present {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The frame a relay carries: the event as the receiving socket is to get it, `["name",
/// payload]`, rendered once by the sender's session whatever node the receiver is on.
fn frame(event: &str, fields: &[(&str, Option<&RawValue>)]) -> String {
    serde_json::to_string(&(event, Present(fields))).unwrap_or_default()
}

/// The JSON text of a string.
fn json_string(s: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(s).unwrap_or_default()
}

/// `offer`/`answer`/`ice-candidate` for the addressed socket: the body and `from` as sent,
/// `peerId` the sender's socket id.
pub fn signal_frame(signal: &Signal<'_>, sender: &str) -> String {
    let sender = json_string(sender);
    frame(
        signal.kind.event(),
        &[
            (signal.kind.body_field(), signal.body),
            ("from", signal.from),
            ("peerId", Some(&sender)),
        ],
    )
}

/// `initiator-online {roomId}` for the rest of the room.
pub fn initiator_online_frame(room_id: &str) -> String {
    let room_id = json_string(room_id);
    frame(events::INITIATOR_ONLINE, &[("roomId", Some(&room_id))])
}

/// `recipient-ready {peerId}` for the rest of the room, `peerId` as the client sent it.
pub fn recipient_ready_frame(peer_id: Option<&RawValue>) -> String {
    frame(events::RECIPIENT_READY, &[("peerId", peer_id)])
}

/// A relayed frame read back by the receiving session: the event name and its payload's text.
pub fn read_frame(frame: &str) -> Option<(Cow<'_, str>, &RawValue)> {
    serde_json::from_str(frame).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<ClientEvent<'static>, Unusable> {
        let text: &'static str = Box::leak(v.to_string().into_boxed_str());
        ClientEvent::parse(text)
    }

    fn value(raw: Option<&RawValue>) -> Option<Value> {
        raw.map(|r| serde_json::from_str(r.get()).unwrap())
    }

    #[test]
    fn a_join_names_its_room() {
        let room = |event| match parse(event) {
            Ok(ClientEvent::Join { room_id }) => room_id.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            room(json!(["join", {"roomId": "4821", "extra": 1}])),
            "4821"
        );
        assert_eq!(
            room(json!(["join", {"roomId": "a\"b"}])),
            "a\"b",
            "escaped ids are read whole"
        );
    }

    #[test]
    fn events_without_a_usable_payload_are_unusable_and_never_panic() {
        let bad = [
            json!(["join"]),
            json!(["join", null]),
            json!(["join", 5]),
            json!(["join", "1234"]),
            json!(["join", ["1234"]]),
            json!(["join", {}]),
            json!(["join", {"roomId": 5}]),
            json!(["join", {"roomId": null}]),
            json!(["offer", {"offer": {}}]),
            json!(["offer", {"peerId": 7}]),
            json!(["answer", {"peerId": null}]),
            json!(["ice-candidate", {"peerId": ["x"]}]),
            json!(["ice-candidate", {"peerId": {"id": "x"}}]),
            json!(["initiator-online", {"roomId": {}}]),
            json!(["recipient-ready", {"peerId": "x"}]),
        ];
        for event in bad {
            assert!(
                matches!(parse(event.clone()), Err(Unusable::Payload(_))),
                "{event}"
            );
        }
        assert_eq!(
            parse(json!(["bogus", {}])).unwrap_err(),
            Unusable::UnknownEvent
        );
        for text in ["", "[]", "{}", "[5]", "[null]", "not json", "[\"join\""] {
            assert!(ClientEvent::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_signal_keeps_what_it_passes_on_exactly_as_sent() {
        let sdp = json!({"type": "offer", "sdp": "v=0\r\n"});
        let ClientEvent::Signal(signal) = parse(json!(["offer", {
            "roomId": "1", "peerId": "B", "offer": sdp, "from": 42
        }]))
        .unwrap() else {
            panic!("a signal")
        };
        assert_eq!(signal.kind, SignalKind::Offer);
        assert_eq!(signal.peer_id, "B");
        assert_eq!(value(signal.body), Some(sdp.clone()));
        assert_eq!(value(signal.from), Some(json!(42)));

        let relayed: Value = serde_json::from_str(&signal_frame(&signal, "A")).unwrap();
        assert_eq!(
            relayed,
            json!(["offer", {"offer": sdp, "from": 42, "peerId": "A"}])
        );
    }

    #[test]
    fn absent_fields_stay_absent_and_null_ones_stay_null() {
        let ClientEvent::Signal(signal) =
            parse(json!(["ice-candidate", {"peerId": "B", "candidate": null}])).unwrap()
        else {
            panic!("a signal")
        };
        let relayed: Value = serde_json::from_str(&signal_frame(&signal, "A")).unwrap();
        assert_eq!(
            relayed,
            json!(["ice-candidate", {"candidate": null, "peerId": "A"}])
        );

        let ClientEvent::RecipientReady { room_id, peer_id } =
            parse(json!(["recipient-ready", {"roomId": "r"}])).unwrap()
        else {
            panic!("recipient-ready")
        };
        assert_eq!(room_id, "r");
        let relayed: Value = serde_json::from_str(&recipient_ready_frame(peer_id)).unwrap();
        assert_eq!(relayed, json!(["recipient-ready", {}]));
    }

    #[test]
    fn frames_read_back_into_their_event_and_payload() {
        let frame = initiator_online_frame("x\"y");
        let (event, payload) = read_frame(&frame).unwrap();
        assert_eq!(event, "initiator-online");
        assert_eq!(
            serde_json::from_str::<Value>(payload.get()).unwrap(),
            json!({"roomId": "x\"y"})
        );
        assert!(read_frame("garbage").is_none());
    }

    /// Any JSON value, a few levels deep, with the field names the events read.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            let key = prop_oneof![
                Just("roomId".to_owned()),
                Just("peerId".to_owned()),
                Just("from".to_owned()),
                Just("offer".to_owned()),
                Just("candidate".to_owned()),
                ".{0,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(key, inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn no_text_panics_the_parser(text in ".{0,64}") {
            let _ = ClientEvent::parse(&text);
        }

        #[test]
        fn every_payload_is_read_or_refused_and_relays_read_back(
            event in proptest::sample::select(vec![
                "join", "offer", "answer", "ice-candidate", "initiator-online",
                "recipient-ready", "other",
            ]),
            payload in json_value(),
        ) {
            let text = json!([event, payload]).to_string();
            let frame = match ClientEvent::parse(&text) {
                Ok(ClientEvent::Signal(signal)) => signal_frame(&signal, "sender"),
                Ok(ClientEvent::InitiatorOnline { room_id }) => initiator_online_frame(&room_id),
                Ok(ClientEvent::RecipientReady { peer_id, .. }) => recipient_ready_frame(peer_id),
                Ok(ClientEvent::Join { .. }) | Err(_) => return Ok(()),
            };
            let (name, _) = read_frame(&frame).expect("a relayed frame reads back");
            proptest::prop_assert_eq!(name, event);
        }
    }

    #[test]
    fn answers_have_the_original_shapes() {
        let ok = serde_json::to_value(JoinResponse::new(true, JOINED, "1234")).unwrap();
        assert_eq!(
            ok,
            json!({"success": true, "message": "Successfully joined room", "roomId": "1234"})
        );
        let error = serde_json::to_value(JoinResponse::server_error()).unwrap();
        assert_eq!(
            error,
            json!({"success": false, "message": SERVER_ERROR, "error": SERVER_ERROR_DETAIL})
        );
        assert_eq!(
            rate_limited(Duration::from_millis(2_500)),
            "Rate limit exceeded. Try again in 3s. Attempts left: 0."
        );
        assert_eq!(
            rate_limited(Duration::ZERO),
            "Rate limit exceeded. Try again in 1s. Attempts left: 0."
        );
    }
}
