//! Room stories: one log line per room when it ends, so that when someone reports "the call
//! never connected", an operator can see what happened in that room without the server having
//! kept any SDP or personal data.
//!
//! The hub keeps a [`RoomLog`] in each room: a few counters and a short list of joins, updated
//! under the hub's lock (the relay path adds two integers). When the room ends, the hub turns it
//! into a [`Story`] under the lock and the caller [`emit`](Story::emit)s it after the lock is
//! released, so no log I/O happens while the hub is locked.
//!
//! What a story may contain: clientIds (random per connection, meaningless outside this server),
//! short salted hashes of deviceIds (the salt is random per process, so a hash links joins within
//! one run but cannot be reversed or matched across restarts), the redacted room id, counts,
//! sizes and times. Never a raw device id, an address or a payload.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::ids::DeviceId;

/// The log target of stories, so operators can route or filter them
/// (`RUST_LOG=info,signalpost::story=off` turns them off).
pub const TARGET: &str = "signalpost::story";

/// The first word of every story line; the JSON object follows it.
pub const PREFIX: &str = "room_story";

/// Kinds of relayed message tallied per story; more kinds (a client inventing types is
/// refused before it gets here, but dialects have their own) are tallied as `other`.
const MAX_KINDS: usize = 12;

/// Joins listed per story. Two devices and a few reconnects fit; a client rejoining in a loop
/// is counted beyond it (`joinsNotListed`), never stored, so a room's memory stays bounded.
const MAX_JOINS_LISTED: usize = 16;

/// Bytes of salt mixed into device hashes.
const SALT_BYTES: usize = 16;

/// How a room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomEnd {
    /// The last member left with `leave_room` (or joined another room).
    Left,
    /// The last member's connection ended.
    Disconnected,
    /// The room was deleted over REST.
    Deleted,
    /// A member device was purged.
    Purged,
    /// The server stopped with the room open.
    Shutdown,
}

impl RoomEnd {
    /// The `ended` value of the story.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Disconnected => "disconnected",
            Self::Deleted => "deleted",
            Self::Purged => "purged",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The first 8 hex characters of SHA-1(salt ‖ deviceId), with this process's salt.
pub fn device_hash(device: &DeviceId) -> String {
    format!("{:08x}", device_hash_u32(device))
}

fn device_hash_u32(device: &DeviceId) -> u32 {
    static SALT: OnceLock<[u8; SALT_BYTES]> = OnceLock::new();
    let salt = SALT.get_or_init(rand::random);
    let digest = Sha1::new()
        .chain_update(salt)
        .chain_update(device.as_str().as_bytes())
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[derive(Debug, Clone)]
struct JoinEvent {
    /// Since the room opened, in milliseconds (u32: 49 days).
    at_ms: u32,
    /// The member's peer id in the room (a clientId for signalpost's own protocol, random per
    /// connection).
    peer: std::sync::Arc<str>,
    device: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    messages: u32,
    bytes: u64,
}

/// What a room remembers for its story.
#[derive(Debug, Clone)]
pub struct RoomLog {
    opened: Instant,
    joins: Vec<JoinEvent>,
    joins_not_listed: u32,
    reconnects: u32,
    relayed: Vec<(&'static str, Tally)>,
}

impl Default for RoomLog {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl RoomLog {
    /// A room opened at `opened`.
    pub fn new(opened: Instant) -> Self {
        Self {
            opened,
            // The usual story: two joins.
            joins: Vec::with_capacity(2),
            joins_not_listed: 0,
            reconnects: 0,
            relayed: Vec::new(),
        }
    }

    /// When the room opened.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Records a join. A peer or device that joined this room before is a reconnect.
    pub fn joined(&mut self, peer: &std::sync::Arc<str>, device: Option<&DeviceId>, now: Instant) {
        let device = device.map(device_hash_u32);
        let again = self
            .joins
            .iter()
            .any(|j| j.peer == *peer || (device.is_some() && j.device == device));
        if again {
            self.reconnects += 1;
        }
        if self.joins.len() < MAX_JOINS_LISTED {
            let at_ms = now.saturating_duration_since(self.opened).as_millis();
            self.joins.push(JoinEvent {
                at_ms: u32::try_from(at_ms).unwrap_or(u32::MAX),
                peer: peer.clone(),
                device,
            });
        } else {
            self.joins_not_listed += 1;
        }
    }

    /// Records a relayed message of `bytes` bytes.
    pub fn relayed(&mut self, kind: &'static str, bytes: usize) {
        let i = match self.relayed.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None if self.relayed.len() < MAX_KINDS => {
                self.relayed.push((kind, Tally::default()));
                self.relayed.len() - 1
            }
            None => match self.relayed.iter().position(|(k, _)| *k == "other") {
                Some(i) => i,
                None => {
                    self.relayed.push(("other", Tally::default()));
                    self.relayed.len() - 1
                }
            },
        };
        let t = &mut self.relayed[i].1;
        t.messages = t.messages.saturating_add(1);
        t.bytes = t.bytes.saturating_add(bytes as u64);
    }

    /// The story of this room (its id already redacted), ending now.
    pub fn finish(&self, room: String, end: RoomEnd, now: Instant) -> Story {
        Story {
            room,
            ended: end,
            age: now.saturating_duration_since(self.opened),
            joins: self.joins.clone(),
            joins_not_listed: self.joins_not_listed,
            reconnects: self.reconnects,
            relayed: self.relayed.clone(),
        }
    }
}

/// A finished room's summary, ready to be logged.
#[derive(Debug, Clone)]
pub struct Story {
    room: String,
    ended: RoomEnd,
    age: Duration,
    joins: Vec<JoinEvent>,
    joins_not_listed: u32,
    reconnects: u32,
    relayed: Vec<(&'static str, Tally)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoryJson<'a> {
    room: &'a str,
    ended: &'static str,
    age_ms: u64,
    joins: Vec<JoinJson>,
    joins_not_listed: u32,
    reconnects: u32,
    messages: serde_json::Map<String, serde_json::Value>,
    total_messages: u64,
    total_bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinJson {
    at_ms: u32,
    client_id: String,
    device: Option<String>,
}

impl Story {
    /// How long the room was open.
    pub fn age(&self) -> Duration {
        self.age
    }

    /// How it ended.
    pub fn ended(&self) -> RoomEnd {
        self.ended
    }

    /// The story's JSON object: `room` (redacted), `ended`, `ageMs`, `joins` (`atMs`, `clientId`,
    /// `device` hash or null), `joinsNotListed`, `reconnects`, `messages` by type (`count`,
    /// `bytes`; types never relayed are left out), `totalMessages`, `totalBytes`.
    pub fn to_json(&self) -> String {
        let mut messages = serde_json::Map::new();
        for (kind, tally) in &self.relayed {
            messages.insert(
                (*kind).to_owned(),
                serde_json::json!({"count": tally.messages, "bytes": tally.bytes}),
            );
        }
        let json = StoryJson {
            room: &self.room,
            ended: self.ended.as_str(),
            age_ms: u64::try_from(self.age.as_millis()).unwrap_or(u64::MAX),
            joins: self
                .joins
                .iter()
                .map(|j| JoinJson {
                    at_ms: j.at_ms,
                    client_id: j.peer.to_string(),
                    device: j.device.map(|h| format!("{h:08x}")),
                })
                .collect(),
            joins_not_listed: self.joins_not_listed,
            reconnects: self.reconnects,
            messages,
            total_messages: self
                .relayed
                .iter()
                .map(|(_, t)| u64::from(t.messages))
                .sum(),
            total_bytes: self.relayed.iter().map(|(_, t)| t.bytes).sum(),
        };
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// The log line's message: `room_story {json}`.
    pub fn message(&self) -> String {
        let mut line = String::with_capacity(256);
        let _ = write!(line, "{PREFIX} {}", self.to_json());
        line
    }

    /// Logs the story at info under [`TARGET`]. The line ends with the JSON object (no
    /// key-values after it), so `sed 's/.*room_story //'` gives JSON in either log format.
    pub fn emit(&self) {
        log::info!(target: TARGET, "{}", self.message());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, RoomId};
    use serde_json::Value;
    use std::sync::Arc;

    fn peer() -> Arc<str> {
        ClientId::generate().to_string().into()
    }

    fn device(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    #[test]
    fn device_hashes_are_short_stable_within_the_process_and_not_the_id() {
        let a = device_hash(&device("device-A"));
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, device_hash(&device("device-A")));
        assert_ne!(a, device_hash(&device("device-B")));
    }

    #[test]
    fn a_story_tells_joins_reconnects_and_traffic_without_raw_ids() {
        let t0 = Instant::now();
        let room = RoomId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let (a, b, b2) = (peer(), peer(), peer());
        let mut log = RoomLog::new(t0);
        log.joined(&a, Some(&device("device-A")), t0);
        log.joined(
            &b,
            Some(&device("device-B")),
            t0 + Duration::from_millis(1500),
        );
        log.relayed("webrtc_offer", 100);
        log.relayed("ice_candidate", 30);
        log.relayed("ice_candidate", 31);
        // device-B's connection drops and comes back as a new client.
        log.joined(&b2, Some(&device("device-B")), t0 + Duration::from_secs(3));
        let story = log.finish(
            room.redacted(),
            RoomEnd::Disconnected,
            t0 + Duration::from_secs(10),
        );
        let line = story.message();
        assert!(line.starts_with("room_story {"), "{line}");
        assert!(!line.contains("device-A") && !line.contains("0123456789abcdef0123"));
        let json: Value = serde_json::from_str(&line["room_story ".len()..]).unwrap();
        assert_eq!(json["room"], "01234567…");
        assert_eq!(json["ended"], "disconnected");
        assert_eq!(json["ageMs"], 10_000);
        assert_eq!(json["reconnects"], 1);
        assert_eq!(json["joins"][1]["atMs"], 1500);
        assert_eq!(json["joins"][1]["clientId"], b.to_string());
        assert_eq!(json["joins"][2]["device"], json["joins"][1]["device"]);
        assert_eq!(json["joins"][0]["device"], device_hash(&device("device-A")));
        assert_eq!(
            json["messages"],
            serde_json::json!({
                "webrtc_offer": {"count": 1, "bytes": 100},
                "ice_candidate": {"count": 2, "bytes": 61}
            })
        );
        assert_eq!(
            (json["totalMessages"].clone(), json["totalBytes"].clone()),
            (3.into(), 161.into())
        );
    }

    #[test]
    fn a_rejoin_loop_is_counted_not_stored() {
        let t0 = Instant::now();
        let mut log = RoomLog::new(t0);
        let a = peer();
        for _ in 0..100 {
            log.joined(&a, None, t0);
        }
        assert_eq!(log.joins.len(), MAX_JOINS_LISTED);
        assert_eq!(log.joins_not_listed, 100 - MAX_JOINS_LISTED as u32);
        assert_eq!(log.reconnects, 99);
    }
}
