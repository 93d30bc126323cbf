//! Rooms: the core every protocol translates onto, ours and the other apps' dialects.
//!
//! Two roles, each behind an interface a multi-node implementation can take over:
//!
//! - a [`RoomDirectory`] knows who is in which room: membership, capacity, atomic join and
//!   leave, members replaced by a new session of the same device, and detached members waiting
//!   for their session to resume. It tells members what happens to their rooms as
//!   [`RoomEvent`]s, and relays messages between members;
//! - a [`Delivery`] hands a message to a session's queue, wherever that session is.
//!
//! Sessions and REST handlers reach rooms only through these. A room lives in a *space* of its
//! protocol ([`RoomKey`]), so one app's room "1234" never meets another's. Members know each
//! other by a [`PeerId`]; the directory knows where each one's session is ([`SessionId`]).
//! Primitives the dialects need, presence by user id and same-network discovery, are rooms too
//! (a room per user id, a lobby per network), so they work wherever rooms work.
//!
//! - [`local`]: both roles for one node, in memory.
//! - [`network`]: network groups of client addresses, and their lobbies (same-network
//!   discovery).

pub mod local;
pub mod network;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::queue;
use crate::ids::DeviceId;
use crate::telemetry::story::RoomEnd;

pub use local::{LocalDelivery, LocalRooms};

/// A session: its node (the top 16 bits, 0 when the server runs alone) and its number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl SessionId {
    /// Sessions a node can number: 48 bits, enough for a node's whole life.
    pub const LOCAL_BITS: u32 = 48;

    /// The `n`th session of node `node`.
    pub fn new(node: u16, n: u64) -> Self {
        Self((u64::from(node) << Self::LOCAL_BITS) | (n & ((1 << Self::LOCAL_BITS) - 1)))
    }

    /// The node the session is on.
    pub fn node(self) -> u16 {
        (self.0 >> Self::LOCAL_BITS) as u16
    }
}

/// How members of a room know each other: a clientId in signalpost's own protocol, a socket or
/// user id in the dialects.
pub type PeerId = Arc<str>;

/// The rooms each local session is in, and as whom: what a directory needs to take a session out
/// of its rooms when it ends.
pub type SessionRooms = HashMap<SessionId, Vec<(RoomKey, PeerId)>>;

/// Notes that `session` is in room `key` as `peer`. Most sessions are in one room: the list starts
/// with room for one, not the four a first push would make (it lives as long as the session).
pub fn note_session_room(
    sessions: &mut SessionRooms,
    session: SessionId,
    key: RoomKey,
    peer: PeerId,
) {
    sessions
        .entry(session)
        .or_insert_with(|| Vec::with_capacity(1))
        .push((key, peer));
}

/// A room's name: the space of the protocol that uses it, and its id there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoomKey(Arc<str>);

impl RoomKey {
    /// Room `id` of `space` (`s` is signalpost's own protocol; each dialect has its own).
    pub fn new(space: &str, id: &str) -> Self {
        Self(format!("{space}:{id}").into())
    }

    /// A key as [`RoomKey::as_str`] wrote it (read back from a shared backend).
    pub fn new_raw(key: &str) -> Self {
        Self(key.into())
    }

    /// The protocol's space.
    pub fn space(&self) -> &str {
        self.0.split_once(':').map_or("", |(space, _)| space)
    }

    /// The id within the space, as clients know it.
    pub fn id(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(_, id)| id)
    }

    /// The whole key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id cut to its first 8 characters, for logs.
    pub fn redacted(&self) -> String {
        let id = self.id();
        match id.char_indices().nth(8) {
            Some((end, _)) => format!("{}…", &id[..end]),
            None => id.to_owned(),
        }
    }
}

/// What members are told about each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// How the others address it.
    pub peer: PeerId,
    /// A display name, where the protocol has one.
    pub name: Option<Arc<str>>,
    /// The network group of its client address (never the address itself is shown to peers):
    /// members in the same group are on the same network.
    pub network: Option<Arc<str>>,
    /// Whatever else the protocol shows peers (a user's profile), as JSON.
    pub data: Option<Arc<serde_json::Value>>,
}

impl MemberInfo {
    /// A member known only by its peer id.
    pub fn peer(peer: PeerId) -> Self {
        Self {
            peer,
            name: None,
            network: None,
            data: None,
        }
    }

    /// Whether two members are on the same network (both known, same group).
    pub fn same_network(&self, other: &MemberInfo) -> bool {
        matches!((&self.network, &other.network), (Some(a), Some(b)) if a == b)
    }
}

/// How many members a room takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Capacity {
    /// At most this many.
    Limited(u32),
    /// No limit of the room's own (a lobby: presence, a network group). The directory's own
    /// bounds still hold.
    Unlimited,
}

impl Capacity {
    /// Whether `count` members fill it.
    pub fn is_full(self, count: usize) -> bool {
        matches!(self, Capacity::Limited(n) if count >= n as usize)
    }

    /// The number, if limited.
    pub fn limit(self) -> Option<u32> {
        match self {
            Capacity::Limited(n) => Some(n),
            Capacity::Unlimited => None,
        }
    }
}

/// What a room is for, fixed by the join that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomOptions {
    /// Members it takes.
    pub capacity: Capacity,
    /// A lobby (presence, a network group) rather than a room people meet in: it is not
    /// counted among rooms and tells no story.
    pub lobby: bool,
    /// Events about the room carry its whole member list (for small lobbies whose members show
    /// the list, such as a network group; not for large ones).
    pub full_views: bool,
}

impl RoomOptions {
    /// A room of `capacity` people.
    pub fn room(capacity: u32) -> Self {
        Self {
            capacity: Capacity::Limited(capacity),
            lobby: false,
            full_views: false,
        }
    }

    /// A lobby without a limit of its own; `full_views` puts the member list in its events.
    pub fn lobby(full_views: bool) -> Self {
        Self {
            capacity: Capacity::Unlimited,
            lobby: true,
            full_views,
        }
    }
}

/// What joining a room one is already in does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejoin {
    /// Nothing but telling the joiner again (`Joined`).
    Quiet,
    /// Tell the joiner, and tell the others again as if it had just joined.
    Announce,
}

/// A join.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The joining session.
    pub session: SessionId,
    /// The room.
    pub room: RoomKey,
    /// Who the joiner is to the others.
    pub member: MemberInfo,
    /// The room's options, if this join creates it.
    pub options: RoomOptions,
    /// The joiner's device, if it named one: purging the device ends the membership.
    pub device: Option<DeviceId>,
    /// A current member that joined with the same device is replaced (signalpost's paired
    /// rooms: a device that comes back replaces its stale session).
    pub replace_same_device: bool,
    /// A member with the same peer id is replaced (the dialects whose clients choose their
    /// ids: a user id, a participant id).
    pub replace_same_peer: bool,
    /// Leave the session's other rooms of the same space first (a session is in one room).
    pub exclusive: bool,
    /// What a join of a room the session is in already does.
    pub rejoin: Rejoin,
    /// Keep the place for this long, under this token, if the session drops (resume).
    pub resume: Option<ResumeTicket>,
    /// The directory's epoch when the joiner's membership was checked (see
    /// [`RoomDirectory::epoch`]): a room closed since is refused.
    pub checked_at: u64,
}

/// What a resumable member needs to come back: the secret its new session will present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeTicket {
    /// The token (opaque, URL-safe, at least 128 random bits).
    pub token: Arc<str>,
}

/// What a join did. Everything the members are told was queued before the answer returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// A member now, one of `count`.
    Joined {
        /// Members now, the joiner included.
        count: usize,
    },
    /// A member already; told again.
    AlreadyMember,
    /// The room holds its capacity.
    Full {
        /// Its capacity.
        capacity: Capacity,
    },
    /// The room was closed after the joiner's membership was checked.
    Closed,
}

/// Why a member is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// It left on purpose (or joined another room).
    Left,
    /// Its connection ended.
    Disconnected,
    /// Its connection ended and its place is kept for a while: it may resume.
    Detached,
    /// It was detached and did not come back in time.
    Timeout,
    /// A new session of the same device took its place.
    Replaced,
    /// Its device was purged.
    Purged,
}

/// What happened to a room, for one of its members' sessions to render in its protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomEvent {
    /// To the joiner: it is in. `peers` are the others, in join order.
    Joined {
        /// The room.
        room: RoomKey,
        /// The joiner, as the others see it.
        me: MemberInfo,
        /// The room's options.
        options: RoomOptions,
        /// The other members, in join order.
        peers: Vec<MemberInfo>,
        /// The joiner is first in join order (it makes the offer in a room of two).
        first: bool,
        /// The joiner was a member already.
        again: bool,
    },
    /// To the others: someone joined.
    PeerJoined {
        /// The room.
        room: RoomKey,
        /// Who.
        member: MemberInfo,
        /// Members now.
        count: usize,
        /// The room's options.
        options: RoomOptions,
        /// The receiver was first in the room (it makes the offer in a room of two).
        receiver_first: bool,
        /// With full views: every member now, in join order.
        members: Option<Arc<Vec<MemberInfo>>>,
    },
    /// To the others: someone is gone (or detached).
    PeerLeft {
        /// The room.
        room: RoomKey,
        /// Who.
        peer: PeerId,
        /// Members now (a detached member still counts: its place is kept).
        count: usize,
        /// Why.
        reason: LeaveReason,
        /// The room's options.
        options: RoomOptions,
        /// With full views: every member now, in join order.
        members: Option<Arc<Vec<MemberInfo>>>,
    },
    /// To the others: a detached member is back.
    PeerReconnected {
        /// The room.
        room: RoomKey,
        /// Who.
        peer: PeerId,
    },
    /// To a session that resumed a detached member: what it is now. The messages kept for it
    /// follow in its queue.
    Resumed {
        /// The room.
        room: RoomKey,
        /// The member it now is.
        peer: PeerId,
        /// Members now.
        count: usize,
        /// The other members, in join order.
        peers: Vec<MemberInfo>,
        /// Messages kept for it, which follow.
        missed: usize,
        /// Its next resume token (the one it used is spent).
        token: Arc<str>,
        /// The room's capacity.
        capacity: Capacity,
    },
    /// The room was deleted or purged; the receiver is in it no more.
    Closed {
        /// The room.
        room: RoomKey,
    },
    /// A new session of the receiver's device took its place in the room.
    Replaced {
        /// The room.
        room: RoomKey,
    },
}

impl RoomEvent {
    /// The room it is about.
    pub fn room(&self) -> &RoomKey {
        match self {
            RoomEvent::Joined { room, .. }
            | RoomEvent::PeerJoined { room, .. }
            | RoomEvent::PeerLeft { room, .. }
            | RoomEvent::PeerReconnected { room, .. }
            | RoomEvent::Resumed { room, .. }
            | RoomEvent::Closed { room }
            | RoomEvent::Replaced { room } => room,
        }
    }

    /// Roughly the bytes it holds, for the queue's byte bound.
    fn weight(&self) -> usize {
        let members = match self {
            RoomEvent::Joined { peers, .. } | RoomEvent::Resumed { peers, .. } => peers.len(),
            RoomEvent::PeerJoined { members, .. } | RoomEvent::PeerLeft { members, .. } => {
                members.as_ref().map_or(1, |m| m.len())
            }
            _ => 0,
        };
        128 + members * 96
    }
}

/// A text frame a sender's protocol rendered, for one recipient or shared by many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// For one.
    Owned(String),
    /// For several.
    Shared(Arc<str>),
}

impl Frame {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            Frame::Owned(s) => s,
            Frame::Shared(s) => s,
        }
    }

    /// The text, owned (a shared one is copied).
    pub fn into_string(self) -> String {
        match self {
            Frame::Owned(s) => s,
            Frame::Shared(s) => s.to_string(),
        }
    }

    /// Bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Something for a session to write to its socket.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A frame in the session's own protocol (a relay: all members of a room speak one).
    Frame(Frame),
    /// What happened to a room, for the session's protocol to render.
    Event(Arc<RoomEvent>),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
    /// The server is stopping: say goodbye and close with 1001.
    Shutdown,
}

impl queue::Weigh for Outbound {
    fn weight(&self) -> usize {
        match self {
            Outbound::Frame(f) => f.len(),
            Outbound::Event(e) => e.weight(),
            Outbound::Close(..) | Outbound::Shutdown => 0,
        }
    }
}

/// A session's end of the delivery: its queue.
pub struct Mailbox {
    /// Messages for the session, in order; kicked when the session could not keep up.
    pub rx: queue::Receiver<Outbound>,
}

/// Who a relayed message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The member with this peer id.
    Peer(&'a str),
    /// Every other member.
    Others,
}

/// Why a relay went nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The sender is not a member of the room.
    #[error("not in the room")]
    NotInRoom,
    /// The sender is the only member.
    #[error("no other member")]
    Alone {
        /// The room's capacity.
        capacity: Capacity,
    },
    /// No member has the target's peer id (or it is the sender).
    #[error("unknown peer")]
    UnknownPeer,
}

/// What a relay reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Members the frame was handed to (or kept for, when detached).
    pub recipients: usize,
}

/// Why a resume failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The token is unknown, spent or expired.
    #[error("no member to resume")]
    Unknown,
}

/// A directory or delivery that cannot answer (a shared backend unreachable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rooms unavailable: {0}")]
pub struct Unavailable(pub String);

/// Counts for stats and metrics, kept up to date as rooms change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomCounts {
    /// Rooms with at least one member (lobbies not counted).
    pub rooms: usize,
    /// Rooms with at least two members.
    pub rooms_ready: usize,
    /// Members detached and waiting to resume.
    pub detached: usize,
}

/// How a session ended, as membership sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// The client said goodbye (a close frame): its rooms are left.
    Closed,
    /// The connection dropped: members that asked for it are detached, the others leave.
    Dropped,
}

/// A room's members, for a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room.
    pub room: RoomKey,
    /// Its capacity.
    pub capacity: Capacity,
    /// Its members, in join order.
    pub members: Vec<MemberInfo>,
}

/// A future of the directory.
pub type RoomsFuture<'a, T> = BoxFuture<'a, Result<T, Unavailable>>;

/// Who is in which room. Every change is atomic with respect to every other, and what the
/// members are told about a change is queued before the change is visible to relays, so a
/// member never receives a message from a peer before the event that made them peers.
pub trait RoomDirectory: Send + Sync + 'static {
    /// Counts closes of rooms; a join carries the epoch read before its membership check, and a
    /// room closed since is refused (see [`JoinRequest::checked_at`]).
    fn epoch(&self) -> u64;

    /// Puts a session in a room (see [`JoinRequest`]).
    fn join(&self, request: JoinRequest) -> RoomsFuture<'_, JoinOutcome>;

    /// Takes a session out of a room; the others are told. Returns whether it was a member.
    fn leave(&self, session: SessionId, room: &RoomKey) -> RoomsFuture<'_, bool>;

    /// Takes the member known as `peer` out of `room` at someone else's request (an HTTP call
    /// naming it, as PrivyDrop's `leave_room` does). Every member, the removed one included,
    /// gets `PeerLeft` (reason `Left`): that is how the removed member's session learns it is
    /// out. Returns whether there was such a member.
    fn remove_peer<'a>(&'a self, room: &'a RoomKey, peer: &'a str) -> RoomsFuture<'a, bool>;

    /// A session ended: out of every room, or detached where it asked to be resumable.
    fn disconnect(&self, session: SessionId, how: Departure) -> RoomsFuture<'_, ()>;

    /// Makes `session` the detached member the token names: it gets `Resumed` and the kept
    /// messages, the others `PeerReconnected`.
    fn resume<'a>(
        &'a self,
        token: &'a str,
        session: SessionId,
    ) -> RoomsFuture<'a, Result<(), ResumeError>>;

    /// Hands `frame` to the target members of the sender's room (queued for detached ones).
    fn relay(
        &self,
        session: SessionId,
        room: &RoomKey,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError>;

    /// Hands `frame` to the target members of `room` from outside it: like
    /// [`relay`](Self::relay), but the caller need not be a member (a message to a session known
    /// by its id, such as an invitation, through the room that session keeps for it).
    /// `Target::Others` is every member. A room that does not exist, or a target that is not in
    /// it, is [`RelayError::UnknownPeer`].
    fn send_to(
        &self,
        room: &RoomKey,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError>;

    /// Ends a room: members get `Closed` and are in it no more; detached ones are dropped.
    /// Returns how many members it had.
    fn close_room(&self, room: &RoomKey, end: RoomEnd) -> RoomsFuture<'_, usize>;

    /// Ends every membership joined with `device` (purged), then closes its sessions (1000).
    /// Returns how many sessions.
    fn close_device(&self, device: &DeviceId) -> RoomsFuture<'_, usize>;

    /// The rooms a session is in.
    fn rooms_of(&self, session: SessionId) -> Vec<RoomKey>;

    /// A room's members, if it exists.
    fn members(&self, room: &RoomKey) -> RoomsFuture<'_, Option<RoomSummary>>;

    /// Every room with a member (lobbies left out), for the operator's list.
    fn list(&self) -> Vec<RoomSummary>;

    /// Live counts.
    fn counts(&self) -> RoomCounts;

    /// The server is stopping: every room ends (story `shutdown`), detached members too.
    fn shut_down(&self);

    /// Counts over every node of a cluster (`None` for a directory of one node, whose
    /// [`RoomDirectory::counts`] are all there is).
    fn cluster_counts(&self) -> RoomsFuture<'_, Option<RoomCounts>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Handing messages to sessions, wherever they are.
pub trait Delivery: Send + Sync + 'static {
    /// Registers a new session with a queue within `bounds`.
    fn register(&self, bounds: queue::Bounds) -> (SessionId, Mailbox);

    /// Forgets a session that ended.
    fn unregister(&self, session: SessionId);

    /// Queues a message for a session; a session whose queue is full is told to go. Returns
    /// false when there is no such session (it ended).
    fn deliver(&self, to: SessionId, message: Outbound) -> bool;

    /// Tells every session the server is stopping.
    fn shut_down(&self);

    /// Sessions open now.
    fn sessions(&self) -> usize;
}

/// A fresh resume token: 144 random bits from the operating system's CSPRNG, URL-safe base64.
pub fn new_resume_token() -> Arc<str> {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

/// The grace a detached member gets by default.
pub const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(20);

impl ResumeLimits {
    /// The limits in `config`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            grace: Duration::from_secs(config.resume_grace_secs),
            messages: config.resume_buffer_messages as usize,
            bytes: config.resume_buffer_bytes as usize,
        }
    }
}

/// Limits of what a detached member's place keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeLimits {
    /// How long the place is kept (zero: resume is off).
    pub grace: Duration,
    /// Messages kept for it at most.
    pub messages: usize,
    /// Bytes kept for it at most.
    pub bytes: usize,
}
