//! One DropSilk socket: its [`Protocol`] on signalpost's session loop.
//!
//! Per socket the session keeps only its own ids, name, and the room its signals go to; who is
//! in which room and on which network is the directory's. Whether the socket is listed on its
//! network (in the lobby) follows from where it stands, and is brought up to date after every
//! change that may move it: its own messages, and the events of its flight (the peer arriving or
//! leaving).

use std::net::IpAddr;
use std::sync::Arc;

use crate::db::dropsilk::Role;
use crate::signaling::rooms::{
    Departure, Frame, JoinOutcome, JoinRequest, LeaveReason, MemberInfo, Outbound, Rejoin,
    RoomEvent, RoomKey, RoomOptions, SessionId, Target, network,
};
use crate::signaling::session::{self, Flow, Protocol, Replies};
use crate::signaling::upgrade::Upgraded;
use crate::signaling::{Signaling, queue};

use super::wire::{
    self, ANONYMOUS, Channel, ClientMessage, ParticipantSummary, Peer, Refusal, ServerMessage,
    errors,
};
use super::{DropSilk, NAME, RoomKind, channel_room, flight_room, room_kind, session_room};

/// Codes tried by `create-flight` before it gives up (a code in use by another flight is
/// skipped).
const FLIGHT_CODE_ATTEMPTS: usize = 10;

/// Runs one socket from registration to unregistration.
pub async fn run(dropsilk: Arc<DropSilk>, ws: Upgraded, ip: IpAddr) {
    let signaling = dropsilk.state().signaling().clone();
    let _open = signaling.metrics().dialect_session(NAME);
    let settings = signaling.settings();
    // A frame may be up to 1 MiB: the queue must hold a full one and then some, whatever the
    // main port's bound is.
    let bounds = queue::Bounds {
        messages: settings.queue.messages,
        bytes: settings.queue.bytes.max(3 * super::MAX_FRAME_BYTES),
    };
    let (session, mailbox) = signaling.delivery().register(bounds);
    dropsilk.counters.connected();
    let shared = Arc::new(Shared {
        session,
        id: wire::new_session_id().into(),
        network: network::network_group(ip),
        lobby: tokio::sync::Mutex::new(Lobby {
            name: ANONYMOUS.into(),
            listed_as: None,
            emptied: false,
            finished: false,
        }),
        dropsilk,
    });
    let mut socket = Socket {
        shared: shared.clone(),
        flight_code: None,
        current: None,
        finished: false,
    };
    socket.start().await;
    let end = session::run(
        ws,
        &mut socket,
        &mailbox,
        signaling.settings(),
        signaling.shutdown_token(),
        signaling.metrics(),
    )
    .await;
    log::debug!("dropsilk session ended: {end:?}");
    socket.finish().await;
}

/// What a socket's lobby changes share with the tasks that make them.
struct Shared {
    dropsilk: Arc<DropSilk>,
    session: SessionId,
    /// The session id clients know it by.
    id: Arc<str>,
    /// The network group of its address (compared, never shown).
    network: Arc<str>,
    /// Its listing. An async mutex on purpose: a change is a leave and a join (each awaited),
    /// and two changes of one socket must not interleave, or the last could be undone.
    lobby: tokio::sync::Mutex<Lobby>,
}

struct Lobby {
    /// The name it goes by (`register-details`, or its name in the room it attached to).
    name: Arc<str>,
    /// Listed on its network under this name.
    listed_as: Option<Arc<str>>,
    /// Told `users: []` since it stopped being listed for a full flight.
    emptied: bool,
    /// The socket ended: it is listed nowhere any more.
    finished: bool,
}

/// Where a socket stands, for its listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Listed.
    Free,
    /// In a flight with its peer: not listed, and told its list is empty.
    InFullFlight,
    /// On a chat or screen-share channel: never listed.
    OnSideChannel,
}

impl Shared {
    fn signaling(&self) -> &Signaling {
        self.dropsilk.state().signaling()
    }

    fn deliver(&self, message: &ServerMessage) {
        self.signaling().delivery().deliver(
            self.session,
            Outbound::Frame(Frame::Owned(message.to_json())),
        );
    }

    fn lobby_key(&self) -> RoomKey {
        network::lobby(NAME, &self.network)
    }

    /// Where the socket stands now, as the directory says.
    async fn standing(&self) -> Standing {
        let rooms = self.signaling().rooms();
        let mut standing = Standing::Free;
        for key in rooms.rooms_of(self.session) {
            match room_kind(&key) {
                Some((RoomKind::Side, _)) => return Standing::OnSideChannel,
                Some((RoomKind::Flight, _)) => match rooms.members(&key).await {
                    Ok(Some(room)) if room.members.len() >= 2 => {
                        standing = Standing::InFullFlight;
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("dropsilk: reading a flight failed: {e}"),
                },
                _ => {}
            }
        }
        standing
    }

    /// Lists the socket on its network, or not, as it now stands (renaming it if its name
    /// changed). Safe to call any time, as often as one likes.
    async fn sync_lobby(&self) {
        let mut lobby = self.lobby.lock().await;
        if lobby.finished {
            return;
        }
        let standing = self.standing().await;
        let wanted = (standing == Standing::Free).then(|| lobby.name.clone());
        if wanted != lobby.listed_as {
            let rooms = self.signaling().rooms();
            if lobby.listed_as.is_some() {
                if let Err(e) = rooms.leave(self.session, &self.lobby_key()).await {
                    log::warn!("dropsilk: leaving the network lobby failed: {e}");
                    return;
                }
                lobby.listed_as = None;
            }
            if let Some(name) = wanted {
                let member = MemberInfo {
                    name: Some(name.clone()),
                    network: Some(self.network.clone()),
                    ..MemberInfo::peer(self.id.clone())
                };
                let Some(request) =
                    network::join_request(self.session, NAME, member, rooms.epoch())
                else {
                    return;
                };
                if let Err(e) = rooms.join(request).await {
                    log::warn!("dropsilk: joining the network lobby failed: {e}");
                    return;
                }
                lobby.listed_as = Some(name);
                lobby.emptied = false;
            }
        }
        if standing == Standing::InFullFlight && !lobby.emptied {
            self.deliver(&ServerMessage::UsersOnNetworkUpdate { users: vec![] });
            lobby.emptied = true;
        }
    }

    /// Brings the listing up to date in the background (from `render`, which cannot wait).
    fn resync(self: &Arc<Self>) {
        let shared = self.clone();
        tokio::spawn(async move { shared.sync_lobby().await });
    }
}

/// The room this socket's signals go to.
#[derive(Debug, Clone)]
struct Current {
    key: RoomKey,
    channel: Channel,
    /// For a durable room: its code and this socket's participant.
    participant: Option<(String, String)>,
}

/// One DropSilk socket.
struct Socket {
    shared: Arc<Shared>,
    /// Set by `create-flight`, `join-flight` and `attach-room`, never cleared (as in the
    /// original: a socket whose flight emptied is still "in a flight").
    flight_code: Option<String>,
    current: Option<Current>,
    finished: bool,
}

impl Socket {
    fn dropsilk(&self) -> &DropSilk {
        &self.shared.dropsilk
    }

    fn signaling(&self) -> &Signaling {
        self.shared.signaling()
    }

    /// The greeting, the socket's own room, and its first listing.
    async fn start(&mut self) {
        let shared = &self.shared;
        shared.deliver(&ServerMessage::Registered {
            id: shared.id.to_string(),
        });
        let rooms = self.signaling().rooms();
        let request = JoinRequest {
            session: shared.session,
            room: session_room(&shared.id),
            member: MemberInfo::peer(shared.id.clone()),
            // A lobby: not counted among rooms, no story.
            options: RoomOptions::lobby(false),
            device: None,
            replace_same_device: false,
            replace_same_peer: false,
            exclusive: false,
            rejoin: Rejoin::Quiet,
            resume: None,
            checked_at: rooms.epoch(),
        };
        if let Err(e) = rooms.join(request).await {
            log::warn!("dropsilk: joining the session's own room failed: {e}");
        }
        shared.sync_lobby().await;
    }

    /// The socket ended: a transfer socket still attached takes its participant out of the
    /// room (first, so the peer's next poll sees it), then the socket leaves every room.
    async fn finish(&mut self) {
        self.finished = true;
        let shared = self.shared.clone();
        let mut lobby = shared.lobby.lock().await;
        lobby.finished = true;
        let rooms = self.signaling().rooms();
        if let Some(Current {
            key,
            channel: Channel::Transfer,
            participant: Some((code, participant)),
        }) = &self.current
            // A socket that was replaced by a newer one of its participant removes nobody.
            && rooms.rooms_of(shared.session).contains(key)
        {
            let ds = self.dropsilk();
            if let Err(e) = ds
                .store
                .dropsilk_remove(code.clone(), participant.clone(), ds.ttl)
                .await
            {
                log::error!("dropsilk: removing a participant failed: {e}");
            }
        }
        if let Err(e) = rooms.disconnect(shared.session, Departure::Closed).await {
            log::warn!("dropsilk: leaving the rooms failed: {e}");
        }
        self.signaling().delivery().unregister(shared.session);
        drop(lobby);
        self.dropsilk().counters.disconnected();
    }

    async fn handle(&mut self, message: ClientMessage<'_>) -> Option<String> {
        match message {
            ClientMessage::RegisterDetails { name } => {
                self.shared.lobby.lock().await.name = name.into();
                self.shared.sync_lobby().await;
                None
            }
            ClientMessage::CreateFlight => self.create_flight().await,
            ClientMessage::JoinFlight { code } => self.join_flight(code).await,
            ClientMessage::AttachRoom {
                code,
                participant,
                channel,
            } => self.attach(code, participant, channel).await,
            ClientMessage::Invite { invitee, code } => {
                self.invite(&invitee, code).await;
                None
            }
            ClientMessage::Signal { data } => {
                if let Some(current) = &self.current {
                    // Dropped silently when the socket is alone (as in the original).
                    let _ = self.signaling().rooms().relay(
                        self.shared.session,
                        &current.key,
                        Target::Others,
                        Frame::Owned(wire::signal_frame(data)),
                        "signal",
                    );
                }
                None
            }
        }
    }

    /// Who this socket is in a flight or channel: its participant id (or session id), its
    /// name, its network, and its session id for `peer-joined`.
    fn member(&self, peer: &str, name: Arc<str>) -> MemberInfo {
        MemberInfo {
            name: Some(name),
            network: Some(self.shared.network.clone()),
            data: Some(Arc::new(serde_json::json!({ "id": &*self.shared.id }))),
            ..MemberInfo::peer(peer.into())
        }
    }

    /// Joins a flight or channel room of two.
    async fn join_room(
        &self,
        key: &RoomKey,
        member: MemberInfo,
        replace: bool,
    ) -> Result<JoinOutcome, ()> {
        let rooms = self.signaling().rooms();
        let request = JoinRequest {
            session: self.shared.session,
            room: key.clone(),
            member,
            options: RoomOptions::room(2),
            device: None,
            replace_same_device: false,
            // A participant's new socket takes the place of its stale one.
            replace_same_peer: replace,
            exclusive: false,
            // Attaching again when both are there says peer-joined to both again.
            rejoin: Rejoin::Announce,
            resume: None,
            checked_at: rooms.epoch(),
        };
        rooms.join(request).await.map_err(|e| {
            log::error!("dropsilk: joining a room failed: {e}");
        })
    }

    /// Leaves the room the socket's signals went to, if it is another than `next`.
    async fn leave_current(&mut self, next: &RoomKey) {
        if let Some(current) = self.current.take_if(|c| c.key != *next)
            && let Err(e) = self
                .signaling()
                .rooms()
                .leave(self.shared.session, &current.key)
                .await
        {
            log::warn!("dropsilk: leaving a room failed: {e}");
        }
    }

    async fn create_flight(&mut self) -> Option<String> {
        if self.flight_code.is_some() {
            return Some(ServerMessage::error(errors::ALREADY_IN_FLIGHT));
        }
        let rooms = self.signaling().rooms();
        let name = self.shared.lobby.lock().await.name.clone();
        for _ in 0..FLIGHT_CODE_ATTEMPTS {
            let code = wire::new_code();
            let key = flight_room(&code);
            match rooms.members(&key).await {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(e) => {
                    log::error!("dropsilk: reading a flight failed: {e}");
                    return Some(ServerMessage::error(errors::SERVER_ERROR));
                }
            }
            let member = self.member(&self.shared.id, name.clone());
            match self.join_room(&key, member, false).await {
                Ok(JoinOutcome::Joined { count: 1 }) => {
                    self.leave_current(&key).await;
                    self.current = Some(Current {
                        key,
                        channel: Channel::Transfer,
                        participant: None,
                    });
                    self.flight_code = Some(code.clone());
                    self.dropsilk().counters.flight_created();
                    self.shared
                        .deliver(&ServerMessage::FlightCreated { flight_code: code });
                    self.shared.sync_lobby().await;
                    return None;
                }
                // Someone took the code meanwhile: out again, and another code.
                Ok(JoinOutcome::Joined { .. }) => {
                    let _ = rooms.leave(self.shared.session, &key).await;
                }
                Ok(_) => {}
                Err(()) => return Some(ServerMessage::error(errors::SERVER_ERROR)),
            }
        }
        Some(ServerMessage::error(errors::SERVER_ERROR))
    }

    async fn join_flight(&mut self, code: String) -> Option<String> {
        if self.flight_code.is_some() {
            return Some(ServerMessage::error(errors::ALREADY_IN_FLIGHT));
        }
        let rooms = self.signaling().rooms();
        let key = flight_room(&code);
        match rooms.members(&key).await {
            Ok(Some(flight)) if flight.members.len() < 2 => {}
            Ok(_) => return Some(ServerMessage::error(errors::FLIGHT_NOT_FOUND)),
            Err(e) => {
                log::error!("dropsilk: reading a flight failed: {e}");
                return Some(ServerMessage::error(errors::SERVER_ERROR));
            }
        }
        let name = self.shared.lobby.lock().await.name.clone();
        let member = self.member(&self.shared.id, name);
        match self.join_room(&key, member, false).await {
            Ok(JoinOutcome::Joined { count: 2 }) => {}
            // The creator left between the look and the join: this socket made a new flight.
            Ok(JoinOutcome::Joined { .. }) => {
                let _ = rooms.leave(self.shared.session, &key).await;
                return Some(ServerMessage::error(errors::CREATOR_DISCONNECTED));
            }
            Ok(_) => return Some(ServerMessage::error(errors::FLIGHT_NOT_FOUND)),
            Err(()) => return Some(ServerMessage::error(errors::SERVER_ERROR)),
        }
        self.leave_current(&key).await;
        self.current = Some(Current {
            key,
            channel: Channel::Transfer,
            participant: None,
        });
        self.flight_code = Some(code);
        self.dropsilk().counters.flight_joined();
        self.shared.sync_lobby().await;
        None
    }

    async fn attach(
        &mut self,
        code: String,
        participant: String,
        channel: Channel,
    ) -> Option<String> {
        let ds = self.dropsilk();
        let room = match ds
            .store
            .dropsilk_room(code.clone(), participant.clone(), ds.ttl)
            .await
        {
            Ok(Some(room)) => room,
            Ok(None) => return Some(ServerMessage::error(errors::ROOM_NOT_FOUND)),
            Err(e) => {
                log::error!("dropsilk: reading a room failed: {e}");
                return Some(ServerMessage::error(errors::SERVER_ERROR));
            }
        };
        let Some((role, (me, peer))) = room
            .role_of(&participant)
            .zip(room.me_and_peer(&participant))
        else {
            return Some(ServerMessage::error(errors::ROOM_NOT_FOUND));
        };
        let peer_role = match role {
            Role::Host => Role::Guest,
            Role::Guest => Role::Host,
        };
        let name: Arc<str> = me.name.as_str().into();
        // Before the join, so it precedes the peer-joined the join may bring.
        self.shared.deliver(&ServerMessage::RoomAttached {
            flight_code: code.clone(),
            role: wire::role_name(role),
            peer: peer.map(|p| ParticipantSummary::of(p, peer_role)),
        });
        let key = channel_room(&code, channel);
        self.leave_current(&key).await;
        let member = self.member(&participant, name.clone());
        self.shared.lobby.lock().await.name = name;
        let reply = match self.join_room(&key, member, true).await {
            Ok(JoinOutcome::Joined { .. } | JoinOutcome::AlreadyMember) => {
                self.current = Some(Current {
                    key,
                    channel,
                    participant: Some((code.clone(), participant)),
                });
                self.flight_code = Some(code);
                None
            }
            // Two other participants' sockets hold the channel (one of them left the room
            // without closing it).
            Ok(JoinOutcome::Full { .. } | JoinOutcome::Closed) => {
                Some(ServerMessage::error(errors::FLIGHT_NOT_FOUND))
            }
            Err(()) => Some(ServerMessage::error(errors::SERVER_ERROR)),
        };
        self.shared.sync_lobby().await;
        reply
    }

    async fn invite(&self, invitee: &str, code: String) {
        let from_name = self.shared.lobby.lock().await.name.to_string();
        let frame = ServerMessage::FlightInvitation {
            flight_code: code,
            from_name,
        }
        .to_json();
        // Nobody by that id: nothing happens, and the sender is told nothing (as the original).
        let _ = self.signaling().rooms().send_to(
            &session_room(invitee),
            Target::Peer(invitee),
            Frame::Owned(frame),
            "flight-invitation",
        );
    }

    /// `users-on-network-update` from a lobby's member list.
    fn users<'a>(&self, members: impl Iterator<Item = &'a MemberInfo>) -> String {
        let users = members
            .filter(|m| m.peer != self.shared.id)
            .map(|m| Peer {
                id: m.peer.to_string(),
                name: m.name.as_deref().unwrap_or(ANONYMOUS).to_owned(),
            })
            .collect();
        ServerMessage::UsersOnNetworkUpdate { users }.to_json()
    }

    /// `peer-joined` about `member`.
    fn peer_joined(&self, code: &str, member: &MemberInfo) -> String {
        let id = member
            .data
            .as_ref()
            .and_then(|d| d.get("id"))
            .and_then(|id| id.as_str())
            .unwrap_or(&member.peer);
        let same = member.network.as_deref() == Some(&*self.shared.network);
        ServerMessage::PeerJoined {
            flight_code: code.to_owned(),
            peer: Peer {
                id: id.to_owned(),
                name: member.name.as_deref().unwrap_or(ANONYMOUS).to_owned(),
            },
            connection_type: wire::connection_type(same),
        }
        .to_json()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The task was cancelled or panicked before `finish`: leave anyway.
        let shared = self.shared.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                shared.lobby.lock().await.finished = true;
                let signaling = shared.signaling();
                let _ = signaling
                    .rooms()
                    .disconnect(shared.session, Departure::Closed)
                    .await;
                signaling.delivery().unregister(shared.session);
                shared.dropsilk.counters.disconnected();
            });
        }
    }
}

impl Protocol for Socket {
    fn greeting(&mut self) -> Option<String> {
        // Delivered by `start`, ahead of the first network list.
        None
    }

    async fn on_text(&mut self, text: &str, replies: &mut Replies) -> Flow {
        match ClientMessage::parse(text) {
            Err(Refusal(message)) => {
                log::debug!("dropsilk: refused a message: {message}");
                replies.push(ServerMessage::error(message));
            }
            Ok(message) => {
                if let Some(reply) = self.handle(message).await {
                    replies.push(reply);
                }
            }
        }
        Flow::Continue
    }

    fn on_binary(&mut self, replies: &mut Replies) -> Flow {
        replies.push(ServerMessage::error(errors::INVALID_FORMAT));
        Flow::Continue
    }

    fn render(&mut self, event: &RoomEvent, frames: &mut Replies) -> Flow {
        let key = event.room();
        if network::is_lobby(key) {
            match event {
                RoomEvent::Joined { peers, .. } => frames.push(self.users(peers.iter())),
                RoomEvent::PeerJoined {
                    members: Some(members),
                    ..
                }
                | RoomEvent::PeerLeft {
                    members: Some(members),
                    ..
                } => frames.push(self.users(members.iter())),
                _ => {}
            }
            return Flow::Continue;
        }
        let Some((kind, code)) = room_kind(key) else {
            return Flow::Continue;
        };
        if kind == RoomKind::Session {
            return Flow::Continue;
        }
        match event {
            RoomEvent::Joined { peers, .. } => {
                if let [peer] = peers.as_slice() {
                    frames.push(self.peer_joined(code, peer));
                }
            }
            RoomEvent::PeerJoined { member, count, .. } => {
                if *count == 2 {
                    frames.push(self.peer_joined(code, member));
                }
                self.shared.resync();
            }
            // A stale socket replaced by its participant's new one: the peer is still there.
            RoomEvent::PeerLeft {
                reason: LeaveReason::Replaced,
                ..
            } => {}
            RoomEvent::PeerLeft { .. } => {
                frames.push(ServerMessage::PeerLeft.to_json());
                self.shared.resync();
            }
            RoomEvent::Replaced { .. } | RoomEvent::Closed { .. } => {
                self.current.take_if(|c| c.key == *key);
                self.shared.resync();
            }
            RoomEvent::PeerReconnected { .. } | RoomEvent::Resumed { .. } => {}
        }
        Flow::Continue
    }

    fn rate_limited(&self) -> Option<String> {
        Some(ServerMessage::error(errors::RATE_LIMITED))
    }

    fn goodbye(&self) -> Option<String> {
        Some(
            ServerMessage::ServerShutdown {
                message: wire::SHUTDOWN_MESSAGE,
            }
            .to_json(),
        )
    }
}
