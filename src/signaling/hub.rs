//! Room membership and relay: the one interface sessions and the REST API use to reach each other.
//!
//! Every operation takes one short `std::sync::Mutex` over all rooms and sessions, so a join, a
//! leave and a relay are atomic with respect to each other: two clients racing for the last place
//! in a room cannot both get it, and a message is relayed to the peer that is in the room at that
//! instant. Nothing under the lock awaits: messages are handed to each session's bounded queue
//! with `try_send`, and a session whose queue is full is told to disconnect instead of slowing
//! the sender down. A multi-node implementation can sit behind these same five operations
//! ([`Hub::join`], [`Hub::leave`], [`Hub::relay`], [`Hub::close_room`], [`Hub::close_device`]).
//!
//! Each room also keeps a [`RoomLog`] (a few counters and its joins) for the story logged when
//! it ends. Stories are built under the lock but logged after it is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::queue;

use crate::ids::{ClientId, DeviceId, RoomId};
use crate::protocol::ws::{self, Relay, ServerMessage};
use crate::telemetry::story::{RoomEnd, RoomLog, Story};
use crate::telemetry::{Metrics, Refusal};

/// Members a room holds: WebRTC signaling here is one-to-one.
pub const ROOM_CAPACITY: usize = 2;

/// Something for a session to write to its socket.
#[derive(Debug)]
pub enum Outbound {
    /// A JSON text frame.
    Text(String),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
    /// The server is stopping: send `server_shutdown` and close with 1001.
    Shutdown,
}

impl queue::Weigh for Outbound {
    fn weight(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Close(..) | Self::Shutdown => 0,
        }
    }
}

/// A session's end of the hub: its queue, and the signal that it must go.
pub struct Mailbox {
    /// Messages for this session, in order; kicked when the session could not keep up and must
    /// disconnect (close 1008).
    pub rx: queue::Receiver<Outbound>,
}

/// What `join` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Now a member, with this many members in the room.
    Member(usize),
    /// Was a member already; `room_joined` was sent again.
    AlreadyMember,
    /// Two others are in it; `room_full` was sent.
    Full,
    /// The room was deleted or purged after the joiner's membership was checked;
    /// `room_closed` was sent.
    Closed,
}

/// Why a relay was refused; `Display` is the error text for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The sender is in no room.
    #[error("{}", ws::errors::NOT_IN_ROOM)]
    NotInRoom,
    /// The sender is alone in its room.
    #[error("{}", ws::errors::ROOM_NOT_READY)]
    NotReady,
    /// The payload is not what the message type needs.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Counts for stats and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubCounts {
    /// Open sessions.
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Rooms with two members.
    pub rooms_ready: usize,
}

struct Member {
    outbox: queue::Sender<Outbound>,
    room: Option<RoomId>,
    device: Option<DeviceId>,
}

impl Member {
    /// Queues a message, or marks the member for disconnection when its queue is full.
    fn deliver(&self, message: Outbound) {
        match self.outbox.try_send(message) {
            Ok(()) => {}
            Err(queue::TrySendError::Full) => self.outbox.kick(),
            // The session is ending and will unregister itself.
            Err(queue::TrySendError::Closed) => {}
        }
    }

    fn send(&self, message: &ServerMessage) {
        self.deliver(Outbound::Text(message.to_json()));
    }
}

/// Members in join order: the first is the initiator.
#[derive(Default)]
struct Room {
    members: Vec<ClientId>,
    /// What the room's story will tell.
    log: RoomLog,
}

#[derive(Default)]
struct State {
    members: HashMap<ClientId, Member>,
    rooms: HashMap<RoomId, Room>,
    /// Stories of rooms that ended under the current lock, logged once it is released.
    ended: Vec<Story>,
    /// Set by [`Hub::shut_down_rooms`]: every room that ends from then on ended by shutdown.
    shutting_down: bool,
    /// Counts room deletions and purges; see [`Hub::epoch`].
    epoch: u64,
    /// Rooms with both members, kept up to date so that stats never scan the rooms.
    ready: usize,
    /// Rooms deleted or purged lately, with the epoch of their end and when it was.
    closed: HashMap<RoomId, (u64, Instant)>,
}

/// How long a deleted room is remembered by the hub: far longer than a membership check takes
/// (a database read, bounded by the store's busy timeout), so a join checked before the
/// deletion cannot land after it unnoticed.
const CLOSED_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);

/// All live sessions and rooms of this node.
#[derive(Default)]
pub struct Hub {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// An empty hub that counts into metrics of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty hub that counts into `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::default(),
            metrics,
        }
    }

    /// Logs the stories of rooms that ended and records their lifetimes. Called with the lock
    /// released, so log output never holds up the hub.
    fn rooms_ended(&self, stories: Vec<Story>) {
        for story in stories {
            self.metrics.room_ended(story.age());
            story.emit();
        }
    }

    /// Registers a new session with a queue within `bounds`.
    pub fn connect(&self, bounds: queue::Bounds) -> (ClientId, Mailbox) {
        let (tx, rx) = queue::channel(bounds);
        let member = Member {
            outbox: tx,
            room: None,
            device: None,
        };
        let mut state = self.state.lock().unwrap();
        let mut id = ClientId::generate();
        while state.members.contains_key(&id) {
            id = ClientId::generate();
        }
        state.members.insert(id, member);
        (id, Mailbox { rx })
    }

    /// Where the count of room deletions and purges stands. A session reads it before it
    /// checks a joiner's membership in the store and hands it to [`Hub::join`], so that a
    /// deletion landing between the check and the join still ends that membership.
    pub fn epoch(&self) -> u64 {
        self.state.lock().unwrap().epoch
    }

    /// Puts `client` in `room`, leaving its previous room first, and tells everyone concerned.
    /// `checked_at` is the [`Hub::epoch`] read before the joiner's membership was checked: a
    /// room deleted since is refused with `room_closed`.
    pub fn join(
        &self,
        client: ClientId,
        room: RoomId,
        device: Option<DeviceId>,
        checked_at: u64,
    ) -> Joined {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        let Some(member) = state.members.get_mut(&client) else {
            return Joined::Full;
        };
        if state
            .closed
            .get(&room)
            .is_some_and(|(epoch, _)| *epoch > checked_at)
        {
            log::debug!("join refused: room {} was just closed", room.redacted());
            member.send(&ServerMessage::RoomClosed { room_id: room });
            return Joined::Closed;
        }
        if device.is_some() {
            member.device = device;
        }
        let device = member.device.clone();
        if member.room.as_ref() == Some(&room) {
            if let Some(r) = state.rooms.get(&room) {
                let message = room_joined(r, client, room.clone());
                member.send(&message);
            }
            return Joined::AlreadyMember;
        }
        if state
            .rooms
            .get(&room)
            .is_some_and(|r| r.members.len() >= ROOM_CAPACITY)
        {
            log::debug!("join refused: room {} is full", room.redacted());
            self.metrics.refused(Refusal::RoomFull);
            member.send(&ServerMessage::RoomFull {
                error: ws::errors::ROOM_FULL,
                room_id: room,
            });
            return Joined::Full;
        }
        if let Some(old) = member.room.take() {
            remove_from_room(state, client, &old, Departure::Left);
        }
        let r = state.rooms.entry(room.clone()).or_default();
        r.members.push(client);
        if r.members.len() == ROOM_CAPACITY {
            state.ready += 1;
        }
        r.log.joined(client, device.as_ref(), Instant::now());
        let count = r.members.len();
        let joined = room_joined(r, client, room.clone());
        if let Some(member) = state.members.get_mut(&client) {
            member.room = Some(room.clone());
            member.send(&joined);
        }
        if count == ROOM_CAPACITY {
            for (i, id) in r.members.iter().enumerate() {
                if let Some(m) = state.members.get(id) {
                    m.send(&ServerMessage::RoomReady {
                        room_id: room.clone(),
                        message: ws::ROOM_READY_MESSAGE,
                        user_count: count,
                        is_initiator: i == 0,
                    });
                }
            }
        }
        let ended = std::mem::take(&mut state.ended);
        drop(guard);
        self.rooms_ended(ended);
        Joined::Member(count)
    }

    /// Takes `client` out of its room (the peer gets `peer_left`) and confirms with `left_room`.
    pub fn leave(&self, client: ClientId) -> Option<RoomId> {
        let mut state = self.state.lock().unwrap();
        let room = state.members.get_mut(&client)?.room.take();
        if let Some(room) = &room {
            remove_from_room(&mut state, client, room, Departure::Left);
        }
        if let Some(member) = state.members.get(&client) {
            member.send(&ServerMessage::LeftRoom {
                room_id: room.clone(),
            });
        }
        let ended = std::mem::take(&mut state.ended);
        drop(state);
        self.rooms_ended(ended);
        room
    }

    /// Sends `relay` to the other member of `client`'s room. Returns the room on success.
    pub fn relay(&self, client: ClientId, relay: &Relay<'_>) -> Result<RoomId, RelayError> {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        let room_id = state
            .members
            .get(&client)
            .and_then(|m| m.room.clone())
            .ok_or(RelayError::NotInRoom)?;
        let room = state.rooms.get_mut(&room_id).ok_or(RelayError::NotInRoom)?;
        if room.members.len() != ROOM_CAPACITY {
            return Err(RelayError::NotReady);
        }
        let frame = relay
            .to_peer_frame(client, &room_id)
            .map_err(RelayError::Invalid)?;
        let peer = room.members.iter().find(|id| **id != client);
        if let Some(peer) = peer.and_then(|id| state.members.get(id)) {
            room.log.relayed(relay.kind, frame.len());
            self.metrics.relayed(relay.kind, frame.len());
            peer.deliver(Outbound::Text(frame));
        }
        Ok(room_id)
    }

    /// Unregisters a session whose connection ended; its peer gets `peer_disconnected`.
    pub fn disconnect(&self, client: ClientId) {
        let mut state = self.state.lock().unwrap();
        if let Some(member) = state.members.remove(&client)
            && let Some(room) = member.room
        {
            remove_from_room(&mut state, client, &room, Departure::Disconnected);
        }
        let ended = std::mem::take(&mut state.ended);
        drop(state);
        self.rooms_ended(ended);
    }

    /// Ends a deleted room: members get `room_closed` and are in no room.
    /// Returns how many members it had.
    pub fn close_room(&self, room: &RoomId) -> usize {
        self.end_room(room, RoomEnd::Deleted)
    }

    /// Ends a room one of whose devices was purged, like [`Hub::close_room`].
    pub fn purge_room(&self, room: &RoomId) -> usize {
        self.end_room(room, RoomEnd::Purged)
    }

    fn end_room(&self, room: &RoomId, end: RoomEnd) -> usize {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        state.epoch += 1;
        let epoch = state.epoch;
        state
            .closed
            .retain(|_, (_, at)| now.duration_since(*at) < CLOSED_MEMORY);
        state.closed.insert(room.clone(), (epoch, now));
        let Some(r) = state.rooms.remove(room) else {
            return 0;
        };
        if r.members.len() == ROOM_CAPACITY {
            state.ready -= 1;
        }
        for id in &r.members {
            if let Some(m) = state.members.get_mut(id) {
                m.room = None;
                m.send(&ServerMessage::RoomClosed {
                    room_id: room.clone(),
                });
            }
        }
        let story = r.log.finish(room, end, Instant::now());
        drop(state);
        self.rooms_ended(vec![story]);
        r.members.len()
    }

    /// Ends every open room with the story `shutdown` (and every room that ends from now on
    /// too), and tells every session to say `server_shutdown` and close. Members are not told
    /// about their rooms: the shutdown says it all.
    pub fn shut_down(&self) {
        let mut state = self.state.lock().unwrap();
        state.shutting_down = true;
        for member in state.members.values() {
            member.deliver(Outbound::Shutdown);
        }
        let now = Instant::now();
        let rooms: Vec<(RoomId, Room)> = state.rooms.drain().collect();
        state.ready = 0;
        let mut stories = std::mem::take(&mut state.ended);
        for (id, room) in rooms {
            for member in &room.members {
                if let Some(m) = state.members.get_mut(member) {
                    m.room = None;
                }
            }
            stories.push(room.log.finish(&id, RoomEnd::Shutdown, now));
        }
        drop(state);
        self.rooms_ended(stories);
    }

    /// Closes every connection that joined as `device` (purged): first out of its room, as if
    /// the room were closed for it, then the socket. Returns how many connections.
    pub fn close_device(&self, device: &DeviceId) -> usize {
        let mut state = self.state.lock().unwrap();
        let clients: Vec<ClientId> = state
            .members
            .iter()
            .filter(|(_, m)| m.device.as_ref() == Some(device))
            .map(|(id, _)| *id)
            .collect();
        for client in &clients {
            let Some(member) = state.members.get_mut(client) else {
                continue;
            };
            if let Some(room) = member.room.take() {
                member.send(&ServerMessage::RoomClosed {
                    room_id: room.clone(),
                });
                remove_from_room(&mut state, *client, &room, Departure::Purged);
            }
            if let Some(member) = state.members.get(client) {
                member.deliver(Outbound::Close(CLOSE_NORMAL, "device purged"));
            }
        }
        let ended = std::mem::take(&mut state.ended);
        drop(state);
        self.rooms_ended(ended);
        clients.len()
    }

    /// Live counts, kept up to date as rooms change: no scan under the lock.
    pub fn counts(&self) -> HubCounts {
        let state = self.state.lock().unwrap();
        HubCounts {
            connections: state.members.len(),
            rooms: state.rooms.len(),
            rooms_ready: state.ready,
        }
    }

    /// Rooms with their member counts, for the operator's room list.
    pub fn room_list(&self) -> Vec<(RoomId, usize)> {
        let state = self.state.lock().unwrap();
        let mut rooms: Vec<_> = state
            .rooms
            .iter()
            .map(|(id, r)| (id.clone(), r.members.len()))
            .collect();
        rooms.sort();
        rooms
    }
}

/// Close code for an orderly close the server chose (RFC 6455 §7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;

#[derive(Clone, Copy)]
enum Departure {
    Left,
    Disconnected,
    /// The member's device was purged: the peer hears `peer_left`, the story says `purged`.
    Purged,
}

impl Departure {
    fn room_end(self) -> RoomEnd {
        match self {
            Self::Left => RoomEnd::Left,
            Self::Disconnected => RoomEnd::Disconnected,
            Self::Purged => RoomEnd::Purged,
        }
    }
}

fn room_joined(room: &Room, client: ClientId, room_id: RoomId) -> ServerMessage {
    let count = room.members.len();
    ServerMessage::RoomJoined {
        room_id,
        user_count: count,
        is_initiator: room.members.first() == Some(&client),
        ready: count == ROOM_CAPACITY,
    }
}

/// Removes `client` from `room` (its own `room` field is the caller's business), tells the peer,
/// and forgets the room once it is empty, leaving its story in `state.ended`.
fn remove_from_room(state: &mut State, client: ClientId, room: &RoomId, how: Departure) {
    let Some(r) = state.rooms.get_mut(room) else {
        return;
    };
    let was_ready = r.members.len() == ROOM_CAPACITY;
    r.members.retain(|id| *id != client);
    if was_ready && r.members.len() < ROOM_CAPACITY {
        state.ready -= 1;
    }
    let peer_id = client.to_string();
    let notice = match how {
        Departure::Left | Departure::Purged => ServerMessage::PeerLeft {
            message: ws::PEER_LEFT_MESSAGE,
            peer_id,
        },
        Departure::Disconnected => ServerMessage::PeerDisconnected {
            message: ws::PEER_DISCONNECTED_MESSAGE,
            peer_id,
        },
    };
    for id in &r.members {
        if let Some(m) = state.members.get(id) {
            m.send(&notice);
        }
    }
    if r.members.is_empty()
        && let Some(r) = state.rooms.remove(room)
    {
        let end = if state.shutting_down {
            RoomEnd::Shutdown
        } else {
            how.room_end()
        };
        state.ended.push(r.log.finish(room, end, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ws::ClientMessage;
    use serde_json::Value;

    fn room(s: &str) -> RoomId {
        RoomId::parse(s).unwrap()
    }

    fn bounds(messages: usize) -> queue::Bounds {
        queue::Bounds {
            messages,
            bytes: usize::MAX,
        }
    }

    fn next(mailbox: &mut Mailbox) -> Value {
        match mailbox.rx.try_recv().expect("a message") {
            Outbound::Text(t) => serde_json::from_str(&t).unwrap(),
            Outbound::Close(code, _) => serde_json::json!({ "close": code }),
            Outbound::Shutdown => serde_json::json!({ "shutdown": true }),
        }
    }

    fn nothing_for(mailbox: &mut Mailbox) {
        assert!(mailbox.rx.try_recv().is_err());
    }

    #[test]
    fn second_member_makes_the_room_ready_for_both() {
        let hub = Hub::new();
        let (a, mut ma) = hub.connect(bounds(8));
        let (b, mut mb) = hub.connect(bounds(8));
        assert_eq!(hub.join(a, room("r"), None, 0), Joined::Member(1));
        assert_eq!(next(&mut ma)["isInitiator"], true);
        assert_eq!(hub.join(b, room("r"), None, 0), Joined::Member(2));
        assert_eq!(next(&mut mb)["type"], "room_joined");
        assert_eq!(next(&mut mb)["isInitiator"], false);
        let ready = next(&mut ma);
        assert_eq!(
            (ready["type"].as_str(), ready["isInitiator"].as_bool()),
            (Some("room_ready"), Some(true))
        );
    }

    #[test]
    fn third_joiner_is_refused_without_leaving_its_room() {
        let hub = Hub::new();
        let (a, _ma) = hub.connect(bounds(8));
        let (b, _mb) = hub.connect(bounds(8));
        let (c, mut mc) = hub.connect(bounds(8));
        hub.join(a, room("r"), None, 0);
        hub.join(b, room("r"), None, 0);
        hub.join(c, room("mine"), None, 0);
        next(&mut mc);
        assert_eq!(hub.join(c, room("r"), None, 0), Joined::Full);
        assert_eq!(next(&mut mc)["type"], "room_full");
        assert_eq!(hub.counts().rooms, 2);
    }

    #[test]
    fn a_full_queue_kicks_the_slow_member_only() {
        let hub = Hub::new();
        let (a, _ma) = hub.connect(bounds(64));
        let (b, mb) = hub.connect(bounds(2));
        hub.join(a, room("r"), None, 0);
        hub.join(b, room("r"), None, 0);
        let text = r#"{"type":"webrtc_offer","sdp":"x"}"#;
        let ClientMessage::Relay(relay) = ClientMessage::parse(text).unwrap() else {
            panic!()
        };
        assert!(!mb.rx.is_kicked());
        for _ in 0..4 {
            hub.relay(a, &relay).unwrap();
        }
        assert!(mb.rx.is_kicked());
    }

    #[test]
    fn disconnect_tells_the_peer_and_frees_the_place() {
        let hub = Hub::new();
        let (a, mut ma) = hub.connect(bounds(8));
        let (b, _mb) = hub.connect(bounds(8));
        hub.join(a, room("r"), None, 0);
        hub.join(b, room("r"), None, 0);
        while ma.rx.try_recv().is_ok() {}
        hub.disconnect(b);
        let notice = next(&mut ma);
        assert_eq!(notice["type"], "peer_disconnected");
        assert_eq!(notice["peerId"], b.to_string());
        nothing_for(&mut ma);
        assert_eq!(
            hub.counts(),
            HubCounts {
                connections: 1,
                rooms: 1,
                rooms_ready: 0
            }
        );
    }

    #[test]
    fn every_ended_room_is_recorded_once_whatever_ended_it() {
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::with_metrics(metrics.clone());
        let clients: Vec<_> = (0..6).map(|_| hub.connect(bounds(8))).collect();
        let id = |i: usize| clients[i].0;
        let device = DeviceId::parse("purged-device").unwrap();
        hub.join(id(0), room("left"), None, 0);
        hub.join(id(1), room("dropped"), None, 0);
        hub.join(id(2), room("deleted"), None, 0);
        hub.join(id(3), room("purged"), Some(device.clone()), 0);
        hub.join(id(4), room("open"), None, 0);
        hub.join(id(5), room("open"), None, 0);
        hub.leave(id(0));
        hub.disconnect(id(1));
        assert_eq!(hub.close_room(&room("deleted")), 1);
        assert_eq!(hub.close_device(&device), 1);
        hub.shut_down();
        // A session ending after shutdown began ends no second story.
        hub.disconnect(id(4));
        let text = metrics.render(&Default::default());
        assert!(
            text.contains("signalpost_room_lifetime_seconds_count 5"),
            "{text}"
        );
        assert_eq!(hub.counts().rooms, 0);
    }

    #[test]
    fn an_empty_room_is_forgotten() {
        let hub = Hub::new();
        let (a, _ma) = hub.connect(bounds(8));
        hub.join(a, room("r"), None, 0);
        assert_eq!(hub.leave(a), Some(room("r")));
        assert_eq!(hub.counts().rooms, 0);
    }

    #[test]
    fn the_ready_count_follows_every_change_without_a_scan() {
        let hub = Hub::new();
        let scan = |hub: &Hub| {
            let state = hub.state.lock().unwrap();
            state
                .rooms
                .values()
                .filter(|r| r.members.len() == ROOM_CAPACITY)
                .count()
        };
        let clients: Vec<_> = (0..8).map(|_| hub.connect(bounds(64))).collect();
        let id = |i: usize| clients[i].0;
        let check = |hub: &Hub| assert_eq!(hub.counts().rooms_ready, scan(hub));
        for i in 0..8 {
            hub.join(id(i), room(&format!("r{}", i / 2)), None, 0);
            check(&hub);
        }
        hub.leave(id(0));
        check(&hub);
        hub.disconnect(id(2));
        check(&hub);
        hub.join(id(1), room("r1"), None, 0);
        check(&hub);
        hub.close_room(&room("r2"));
        check(&hub);
        hub.join(id(4), room("r3"), None, 0);
        check(&hub);
        hub.shut_down();
        check(&hub);
    }
}
