//! signalpost's own protocol (docs/protocol.md), spoken on the main port: `join_room`,
//! `leave_room`, relayed offers, answers, candidates and messages, `resume`, `ping`, and the
//! opt-in `discover`. A thin translation onto the rooms core: rooms live in space `s`, members
//! are known by their clientId (or, after a resume, by the clientId of the session they
//! resumed), and carry their network group, so `room_ready` and `peer_joined` can say whether
//! the peers share a network. `discover` puts the session in its network's lobby
//! ([`super::rooms::network`]), whose member list it receives as `peers_on_network`.

use std::net::IpAddr;
use std::sync::Arc;

use super::Signaling;
use super::rooms::{
    Capacity, Departure, JoinOutcome, JoinRequest, LeaveReason, MemberInfo, PeerId, Rejoin,
    RelayError, ResumeTicket, RoomEvent, RoomKey, RoomOptions, SessionId, Target, network,
    new_resume_token,
};
use super::session::{End, Flow, Protocol, Replies};
use crate::db::{RoomLookup, StoreError};
use crate::ids::{ClientId, DeviceId, RoomId};
use crate::protocol::rest::DEFAULT_CAPACITY;
use crate::protocol::ws::{
    self, Addressee, ClientMessage, NetworkPeer, ParseError, ServerMessage, errors,
};

/// The error text of a message refused for rate.
pub const RATE_LIMITED: &str = "rate_limited";

/// The rooms of this protocol.
pub const SPACE: &str = "s";

/// Close code of a session whose place a new session of its device took.
pub const CLOSE_REPLACED: u16 = 4001;

/// The room key of a room of this protocol.
pub fn room_key(room: &RoomId) -> RoomKey {
    RoomKey::new(SPACE, room.as_str())
}

/// What the store says of a join.
enum Admission {
    /// Any room: ad hoc, or paired and joined without a device.
    Open,
    /// A paired room, joined by one of its devices: its capacity is the pairing's.
    Paired {
        capacity: u32,
    },
    NotAMember,
    /// The room was deleted or purged.
    Closed,
}

/// The room a session is in, as the protocol needs it for relays.
#[derive(Debug, Clone)]
struct Current {
    id: RoomId,
    key: RoomKey,
    capacity: Capacity,
}

/// One session of the native protocol, registered with the delivery while it lives.
pub struct Native {
    signaling: Arc<Signaling>,
    session: SessionId,
    client: ClientId,
    /// How the others know this session in rooms: its clientId, or the one it resumed.
    peer: PeerId,
    /// What a new session presents to resume this one's place.
    resume_token: Arc<str>,
    room: Option<Current>,
    /// The network group of the client's address (compared, never shown).
    network: Arc<str>,
    /// Since `discover`: who this session is in its network's lobby. Boxed: few sessions
    /// discover, and every idle one would carry the space.
    discovered: Option<Box<MemberInfo>>,
    /// No message handled yet: `resume` is only accepted first.
    fresh: bool,
    /// Set once the session has left its rooms (see [`Native::finish`]).
    finished: bool,
}

impl Native {
    /// A session registered as `session`, of a client at address `ip`.
    pub fn new(signaling: Arc<Signaling>, session: SessionId, ip: IpAddr) -> Self {
        let client = ClientId::generate();
        Self {
            signaling,
            session,
            peer: client.to_string().into(),
            client,
            resume_token: new_resume_token(),
            room: None,
            network: network::network_group(ip),
            discovered: None,
            fresh: true,
            finished: false,
        }
    }

    /// The connection's clientId.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The session ended: out of its rooms (or detached, if it asked and the connection
    /// dropped), then out of the delivery.
    pub async fn finish(&mut self, end: End) {
        self.finished = true;
        let how = match end {
            End::ClientGone | End::Idle => Departure::Dropped,
            _ => Departure::Closed,
        };
        if let Err(e) = self.signaling.rooms().disconnect(self.session, how).await {
            log::warn!(
                "session {}: leaving its rooms failed: {e}",
                self.client.redacted()
            );
        }
        self.signaling.delivery().unregister(self.session);
    }

    /// Who this session is to the others of its rooms: its peer id and network group.
    fn member_info(&self) -> MemberInfo {
        MemberInfo {
            network: Some(self.network.clone()),
            ..MemberInfo::peer(self.peer.clone())
        }
    }

    /// Whether `member` is on this session's network.
    fn same_network(&self, member: &MemberInfo) -> bool {
        self.member_info().same_network(member)
    }

    /// `discover`: into the network's lobby under `name` (or again under a new name). The list
    /// comes as the lobby's `Joined` event; a repeat with the same name sends it again.
    async fn discover(&mut self, name: Option<String>) -> Option<ServerMessage> {
        let member = MemberInfo {
            name: name.map(Arc::from),
            ..self.member_info()
        };
        let rooms = self.signaling.rooms();
        let lobby = network::lobby(SPACE, &self.network);
        if let Some(before) = &self.discovered
            && **before != member
        {
            // A new name: the others see the session leave and come back under it.
            if let Err(e) = rooms.leave(self.session, &lobby).await {
                log::error!("leaving the network lobby failed: {e}");
                return Some(ServerMessage::error(errors::INTERNAL));
            }
            self.discovered = None;
        }
        let request = network::join_request(self.session, SPACE, member.clone(), rooms.epoch())?;
        match rooms.join(request).await {
            Ok(_) => {
                self.discovered = Some(Box::new(member));
                None
            }
            Err(e) => {
                log::error!("joining the network lobby failed: {e}");
                Some(ServerMessage::error(errors::INTERNAL))
            }
        }
    }

    /// `peers_on_network` from a lobby's member list.
    fn peers_on_network<'a>(&self, members: impl Iterator<Item = &'a MemberInfo>) -> String {
        let me = self.discovered.as_ref().map(|m| m.peer.clone());
        let peers = members
            .filter(|m| Some(&m.peer) != me.as_ref())
            .map(|m| NetworkPeer {
                peer_id: m.peer.to_string(),
                name: m.name.as_deref().map(str::to_owned),
            })
            .collect();
        ServerMessage::PeersOnNetwork { peers }.to_json()
    }

    /// What a network lobby's event means: the list of the others, when it changed.
    fn render_lobby(&self, event: &RoomEvent, frames: &mut Replies) {
        match event {
            RoomEvent::Joined { peers, .. } => frames.push(self.peers_on_network(peers.iter())),
            RoomEvent::PeerJoined {
                members: Some(members),
                ..
            }
            | RoomEvent::PeerLeft {
                members: Some(members),
                ..
            } => frames.push(self.peers_on_network(members.iter())),
            _ => {}
        }
    }

    /// Whether this device may join this room. Paired rooms (in the store) admit only their
    /// devices, deleted ones nobody; with strict rooms, only paired rooms exist.
    async fn admission(
        &self,
        room: &RoomId,
        device: Option<&DeviceId>,
    ) -> Result<Admission, StoreError> {
        let strict = self.signaling.settings().strict_rooms;
        let Some(store) = self.signaling.store() else {
            return Ok(if strict {
                Admission::NotAMember
            } else {
                Admission::Open
            });
        };
        Ok(match store.lookup_room(room.clone()).await? {
            RoomLookup::Paired(paired) => match device {
                Some(d) if paired.has_member(d) => Admission::Paired {
                    capacity: paired.capacity,
                },
                // Without a deviceId, an ad-hoc join of a paired room's id (the original
                // protocol's way) is still allowed unless rooms are strict.
                None if !strict => Admission::Open,
                _ => Admission::NotAMember,
            },
            RoomLookup::Deleted => Admission::Closed,
            RoomLookup::Unknown if strict => Admission::NotAMember,
            RoomLookup::Unknown => Admission::Open,
        })
    }

    async fn join(
        &mut self,
        room_id: RoomId,
        device: Option<DeviceId>,
        capacity: Option<u64>,
        resumable: bool,
    ) -> Option<ServerMessage> {
        let max = u64::from(self.signaling.settings().max_room_capacity);
        let asked = match capacity {
            None => DEFAULT_CAPACITY,
            Some(n) if (2..=max).contains(&n) => n as u32,
            Some(_) => return Some(ServerMessage::error(errors::INVALID_CAPACITY)),
        };
        let rooms = self.signaling.rooms();
        let checked_at = rooms.epoch();
        let (capacity, paired) = match self.admission(&room_id, device.as_ref()).await {
            Ok(Admission::Open) => (asked, false),
            Ok(Admission::Paired { capacity }) => (capacity, true),
            Ok(Admission::NotAMember) => return Some(ServerMessage::error(errors::NOT_A_MEMBER)),
            Ok(Admission::Closed) => return Some(ServerMessage::RoomClosed { room_id }),
            Err(e) => {
                log::error!("membership check failed: {e}");
                return Some(ServerMessage::error(errors::INTERNAL));
            }
        };
        let key = room_key(&room_id);
        let request = JoinRequest {
            session: self.session,
            room: key.clone(),
            member: self.member_info(),
            options: RoomOptions::room(capacity),
            // A device that comes back replaces its stale session, in its paired room.
            replace_same_device: paired,
            device,
            replace_same_peer: false,
            exclusive: true,
            rejoin: Rejoin::Quiet,
            resume: resumable.then(|| ResumeTicket {
                token: self.resume_token.clone(),
            }),
            checked_at,
        };
        match rooms.join(request).await {
            Ok(JoinOutcome::Joined { .. } | JoinOutcome::AlreadyMember) => {
                // Whatever the room's capacity is, the first join fixed it; the Joined event
                // tells it, and relays until then read it from here.
                self.room = Some(Current {
                    id: room_id,
                    key,
                    capacity: Capacity::Limited(capacity),
                });
                None
            }
            Ok(JoinOutcome::Full { capacity }) => {
                Some(ServerMessage::room_full(room_id, capacity.max()))
            }
            Ok(JoinOutcome::Closed) => Some(ServerMessage::RoomClosed { room_id }),
            Err(e) => {
                log::error!("join failed: {e}");
                Some(ServerMessage::error(errors::INTERNAL))
            }
        }
    }

    async fn leave(&mut self) -> ServerMessage {
        let Some(current) = self.room.take() else {
            return ServerMessage::LeftRoom { room_id: None };
        };
        if let Err(e) = self
            .signaling
            .rooms()
            .leave(self.session, &current.key)
            .await
        {
            log::error!("leave failed: {e}");
        }
        ServerMessage::LeftRoom {
            room_id: Some(current.id),
        }
    }

    async fn resume(&mut self, token: &str) -> Option<ServerMessage> {
        if !self.fresh {
            return Some(ServerMessage::error(errors::RESUME_FAILED));
        }
        match self.signaling.rooms().resume(token, self.session).await {
            // The `resumed` answer and the kept messages are in the queue already.
            Ok(Ok(())) => None,
            Ok(Err(_)) => Some(ServerMessage::error(errors::RESUME_FAILED)),
            Err(e) => {
                log::error!("resume failed: {e}");
                Some(ServerMessage::error(errors::RESUME_FAILED))
            }
        }
    }

    fn relay(&self, relay: &ws::Relay<'_>) -> Option<ServerMessage> {
        let Some(current) = &self.room else {
            return Some(ServerMessage::error(errors::NOT_IN_ROOM));
        };
        let addressee = relay.addressee();
        let to = match &addressee {
            Addressee::Others => None,
            Addressee::Peer(peer) => Some(peer.as_str()),
            Addressee::Invalid(raw) => return Some(unknown_peer(raw)),
        };
        let frame = match relay.to_peer_frame(&self.peer, &current.id, to) {
            Ok(frame) => frame,
            Err(text) => return Some(ServerMessage::error(text)),
        };
        let target = to.map_or(Target::Others, Target::Peer);
        let relayed = self.signaling.rooms().relay(
            self.session,
            &current.key,
            target,
            super::rooms::Frame::Owned(frame),
            relay.kind.as_str(),
        );
        match relayed {
            Ok(_) => None,
            Err(RelayError::NotInRoom) => Some(ServerMessage::error(errors::NOT_IN_ROOM)),
            Err(RelayError::UnknownPeer) => Some(unknown_peer(to.unwrap_or_default())),
            // A room of two behaves as it always did; a larger one says so.
            Err(RelayError::Alone {
                capacity: Capacity::Limited(2),
            }) => Some(ServerMessage::error(errors::ROOM_NOT_READY)),
            Err(RelayError::Alone { .. }) => Some(ServerMessage::error(errors::NO_OTHER_USERS)),
        }
    }

    /// Handles one message; returns the direct reply, if any (what rooms say goes via the
    /// queue).
    async fn handle(&mut self, text: &str) -> Option<ServerMessage> {
        let message = match ClientMessage::parse(text) {
            Ok(m) => m,
            Err(ParseError::InvalidToken) => {
                return Some(ServerMessage::error(errors::RESUME_FAILED));
            }
            Err(e) => return Some(ServerMessage::error(e.to_string())),
        };
        match message {
            ClientMessage::JoinRoom {
                room_id,
                device_id,
                capacity,
                resumable,
            } => self.join(room_id, device_id, capacity, resumable).await,
            ClientMessage::LeaveRoom => Some(self.leave().await),
            ClientMessage::Resume { token } => self.resume(&token).await,
            ClientMessage::Ping => Some(ServerMessage::Pong),
            ClientMessage::Discover { name } => self.discover(name).await,
            ClientMessage::Relay(relay) => self.relay(&relay),
        }
    }

    /// Whether an event is about the room this session is in.
    fn is_current(&self, room: &RoomKey) -> bool {
        self.room.as_ref().is_some_and(|c| c.key == *room)
    }
}

/// `Unknown peer` for a `to` that names no other member.
fn unknown_peer(to: &str) -> ServerMessage {
    ServerMessage::Error {
        error: errors::UNKNOWN_PEER.to_owned(),
        peer_id: Some(to.to_owned()),
    }
}

/// A room id of this protocol's space (events only ever carry those to a native session).
fn room_id(key: &RoomKey) -> Option<RoomId> {
    RoomId::parse(key.id()).ok()
}

impl Drop for Native {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The session task was cancelled or panicked before `finish`: leave anyway.
        self.signaling.end_abandoned(self.session);
    }
}

impl Protocol for Native {
    fn greeting(&mut self) -> Option<String> {
        let connected = ServerMessage::Connected {
            client_id: self.client.to_string(),
            server: "signalpost",
            resume_token: self.resume_token.to_string(),
        };
        Some(connected.to_json())
    }

    async fn on_text(&mut self, text: &str, replies: &mut Replies) -> Flow {
        let reply = self.handle(text).await;
        self.fresh = false;
        if let Some(reply) = reply {
            replies.push(reply.to_json());
        }
        Flow::Continue
    }

    fn on_binary(&mut self, replies: &mut Replies) -> Flow {
        self.fresh = false;
        replies.push(ServerMessage::error(errors::BINARY_UNSUPPORTED).to_json());
        Flow::Continue
    }

    fn render(&mut self, event: &RoomEvent, frames: &mut Replies) -> Flow {
        if network::is_lobby(event.room()) {
            self.render_lobby(event, frames);
            return Flow::Continue;
        }
        let Some(room) = room_id(event.room()) else {
            return Flow::Continue;
        };
        let mut say = |m: ServerMessage| frames.push(m.to_json());
        match event {
            RoomEvent::Joined {
                me,
                options,
                peers,
                again,
                first,
                ..
            } => {
                let count = peers.len() + 1;
                let capacity = options.capacity.max();
                if let Some(current) = &mut self.room
                    && current.key == *event.room()
                {
                    current.capacity = options.capacity;
                }
                say(ServerMessage::RoomJoined {
                    room_id: room.clone(),
                    user_count: count,
                    is_initiator: *first,
                    ready: count >= 2,
                    peer_id: me.peer.to_string(),
                    capacity,
                    peers: peers.iter().map(|p| p.peer.to_string()).collect(),
                });
                if capacity == 2 && count == 2 && !again {
                    say(ServerMessage::RoomReady {
                        room_id: room,
                        message: ws::ROOM_READY_MESSAGE,
                        user_count: count,
                        is_initiator: *first,
                        same_network: me.same_network(&peers[0]),
                    });
                }
            }
            RoomEvent::PeerJoined {
                member,
                count,
                options,
                receiver_first,
                ..
            } => {
                let same_network = self.same_network(member);
                if options.capacity == Capacity::Limited(2) {
                    if *count == 2 {
                        say(ServerMessage::RoomReady {
                            room_id: room,
                            message: ws::ROOM_READY_MESSAGE,
                            user_count: *count,
                            is_initiator: *receiver_first,
                            same_network,
                        });
                    }
                } else {
                    say(ServerMessage::PeerJoined {
                        room_id: room,
                        peer_id: member.peer.to_string(),
                        user_count: *count,
                        same_network,
                    });
                }
            }
            RoomEvent::PeerLeft { peer, reason, .. } => {
                let peer_id = peer.to_string();
                say(match reason {
                    LeaveReason::Left | LeaveReason::Purged => ServerMessage::PeerLeft {
                        message: ws::PEER_LEFT_MESSAGE,
                        peer_id,
                        reason: None,
                    },
                    LeaveReason::Timeout => ServerMessage::PeerLeft {
                        message: ws::PEER_LEFT_MESSAGE,
                        peer_id,
                        reason: Some("timeout"),
                    },
                    LeaveReason::Disconnected | LeaveReason::Replaced => {
                        ServerMessage::PeerDisconnected {
                            message: ws::PEER_DISCONNECTED_MESSAGE,
                            peer_id,
                            resumable: None,
                        }
                    }
                    LeaveReason::Detached => ServerMessage::PeerDisconnected {
                        message: ws::PEER_DISCONNECTED_MESSAGE,
                        peer_id,
                        resumable: Some(true),
                    },
                });
            }
            RoomEvent::PeerReconnected { peer, .. } => say(ServerMessage::PeerReconnected {
                room_id: room,
                peer_id: peer.to_string(),
            }),
            RoomEvent::Resumed {
                peer,
                count,
                peers,
                missed,
                token,
                capacity,
                ..
            } => {
                self.peer = peer.clone();
                self.resume_token = token.clone();
                self.room = Some(Current {
                    id: room.clone(),
                    key: event.room().clone(),
                    capacity: *capacity,
                });
                say(ServerMessage::Resumed {
                    room_id: room,
                    peer_id: peer.to_string(),
                    user_count: *count,
                    peers: peers.iter().map(|p| p.peer.to_string()).collect(),
                    missed: *missed,
                    resume_token: token.to_string(),
                });
            }
            RoomEvent::Closed { .. } => {
                if self.is_current(event.room()) {
                    self.room = None;
                }
                say(ServerMessage::RoomClosed { room_id: room });
            }
            RoomEvent::Replaced { .. } => {
                if self.is_current(event.room()) {
                    self.room = None;
                }
                say(ServerMessage::Replaced);
                return Flow::Close(CLOSE_REPLACED, "replaced");
            }
        }
        Flow::Continue
    }

    fn rate_limited(&self) -> Option<String> {
        Some(ServerMessage::error(RATE_LIMITED).to_json())
    }

    fn goodbye(&self) -> Option<String> {
        Some(ServerMessage::ServerShutdown.to_json())
    }
}
