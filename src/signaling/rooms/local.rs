//! Rooms and delivery for one node, in memory.
//!
//! [`LocalRooms`] keeps every room behind one short `std::sync::Mutex`, so a join, a leave, a
//! resume and a relay are atomic with respect to each other: two clients racing for the last
//! place cannot both get it, and a message goes to the members of the room at that instant.
//! Events about a change are handed to the members' queues under the same lock, before the
//! change can be seen by a relay. Nothing under the lock awaits: [`LocalDelivery`] only ever
//! hands messages to bounded queues, and a session whose queue is full is told to go.
//!
//! Each room (lobbies aside) keeps a [`RoomLog`] for the story logged when it ends; stories are
//! built under the lock and logged after it is released.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{
    Capacity, Delivery, Departure, Frame, JoinOutcome, JoinRequest, LeaveReason, Mailbox,
    MemberInfo, Outbound, PeerId, Rejoin, RelayError, Relayed, ResumeError, ResumeLimits,
    RoomCounts, RoomDirectory, RoomEvent, RoomKey, RoomOptions, RoomSummary, RoomsFuture,
    SessionId, SessionRooms, Target, new_resume_token, note_session_room,
};
use crate::ids::DeviceId;
use crate::signaling::queue;
use crate::telemetry::story::{RoomEnd, RoomLog, Story};
use crate::telemetry::{Metrics, Refusal};

/// How long a closed room is remembered: far longer than a membership check takes (a store
/// read, bounded by the store's own timeouts), so a join checked before a close cannot land
/// after it unnoticed.
const CLOSED_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);

/// Close code for an orderly close the server chose (RFC 6455 §7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;

/// Sessions of one node, each with its bounded queue.
pub struct LocalDelivery {
    node: u16,
    next: AtomicU64,
    sessions: Mutex<HashMap<SessionId, queue::Sender<Outbound>>>,
}

impl LocalDelivery {
    /// Delivery for node `node` (0 when the server runs alone).
    pub fn new(node: u16) -> Self {
        Self {
            node,
            next: AtomicU64::new(1),
            sessions: Mutex::default(),
        }
    }
}

/// Queues a message, or marks the session to go when its queue is full.
fn hand_over(outbox: &queue::Sender<Outbound>, message: Outbound) {
    match outbox.try_send(message) {
        Ok(()) => {}
        Err(queue::TrySendError::Full) => outbox.kick(),
        // The session is ending and will unregister itself.
        Err(queue::TrySendError::Closed) => {}
    }
}

impl Delivery for LocalDelivery {
    fn register(&self, bounds: queue::Bounds) -> (SessionId, Mailbox) {
        let (tx, rx) = queue::channel(bounds);
        let id = SessionId::new(self.node, self.next.fetch_add(1, Ordering::Relaxed));
        self.sessions.lock().unwrap().insert(id, tx);
        (id, Mailbox { rx })
    }

    fn unregister(&self, session: SessionId) {
        self.sessions.lock().unwrap().remove(&session);
    }

    fn deliver(&self, to: SessionId, message: Outbound) -> bool {
        let sessions = self.sessions.lock().unwrap();
        match sessions.get(&to) {
            Some(outbox) => {
                hand_over(outbox, message);
                true
            }
            None => false,
        }
    }

    fn shut_down(&self) {
        for outbox in self.sessions.lock().unwrap().values() {
            hand_over(outbox, Outbound::Shutdown);
        }
    }

    fn sessions(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }
}

/// Every room of this node.
#[derive(Clone)]
pub struct LocalRooms {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    delivery: Arc<dyn Delivery>,
    metrics: Arc<Metrics>,
    resume: ResumeLimits,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomKey, Room>,
    /// The rooms each session is in, and as whom.
    sessions: SessionRooms,
    /// The device each session last joined with, so purging the device closes it.
    devices: HashMap<SessionId, DeviceId>,
    /// Resume tokens of detached members.
    detached: HashMap<Arc<str>, (RoomKey, PeerId)>,
    /// Stories of rooms that ended under the current lock, logged once it is released.
    ended: Vec<Story>,
    /// Every room that ends from now on ended by shutdown.
    shutting_down: bool,
    /// Counts closes of rooms; see [`RoomDirectory::epoch`].
    epoch: u64,
    /// Rooms closed lately, with the epoch of their close and when it was.
    closed: HashMap<RoomKey, (u64, Instant)>,
    counts: RoomCounts,
    /// Numbers detachments, so a grace timer only ends the detachment it was started for.
    detachments: u64,
}

struct Room {
    options: RoomOptions,
    /// In join order.
    members: Vec<Member>,
    /// What the room's story will tell (lobbies tell none).
    log: Option<RoomLog>,
}

struct Member {
    info: MemberInfo,
    /// `None` while detached.
    session: Option<SessionId>,
    device: Option<DeviceId>,
    /// The token a new session presents to resume this member, if it asked to be resumable.
    resume: Option<Arc<str>>,
    /// Boxed: a member is detached for seconds at most, and connected the rest of its life.
    detached: Option<Box<Detached>>,
}

/// A member whose connection dropped, waiting for its session to resume.
struct Detached {
    /// Which detachment this is.
    number: u64,
    /// Messages kept for it, in order.
    kept: VecDeque<Frame>,
    kept_bytes: usize,
}

impl Room {
    fn position(&self, session: SessionId) -> Option<usize> {
        self.members.iter().position(|m| m.session == Some(session))
    }

    fn position_of_peer(&self, peer: &str) -> Option<usize> {
        self.members.iter().position(|m| &*m.info.peer == peer)
    }

    fn infos(&self) -> Vec<MemberInfo> {
        self.members.iter().map(|m| m.info.clone()).collect()
    }

    /// With full views, the member list that goes with every event.
    fn lobby_view(&self) -> Option<Arc<Vec<MemberInfo>>> {
        self.options.full_views.then(|| Arc::new(self.infos()))
    }
}

impl LocalRooms {
    /// Rooms that hand their messages to `delivery`, count into `metrics`, and keep dropped
    /// members' places as `resume` says.
    pub fn new(delivery: Arc<dyn Delivery>, metrics: Arc<Metrics>, resume: ResumeLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                delivery,
                metrics,
                resume,
            }),
        }
    }
}

impl Inner {
    fn send(&self, session: Option<SessionId>, event: RoomEvent) {
        if let Some(session) = session {
            self.delivery
                .deliver(session, Outbound::Event(Arc::new(event)));
        }
    }

    /// Logs the stories of rooms that ended and records their lifetimes. Called with the lock
    /// released, so log output never holds up the rooms.
    fn rooms_ended(&self, stories: Vec<Story>) {
        for story in stories {
            self.metrics.room_ended(story.age());
            story.emit();
        }
    }

    /// Runs `f` under the lock, then logs the stories of the rooms it ended.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap();
        let result = f(&mut state);
        let ended = std::mem::take(&mut state.ended);
        drop(state);
        self.rooms_ended(ended);
        result
    }

    /// Takes the member at `index` out of `room`, tells the others, and forgets the room once it
    /// is empty. Returns the member's session and what the others were told.
    fn remove_member(
        &self,
        state: &mut State,
        key: &RoomKey,
        index: usize,
        reason: LeaveReason,
    ) -> Option<(Option<SessionId>, Arc<RoomEvent>)> {
        let room = state.rooms.get_mut(key)?;
        let was_ready = room.members.len() >= 2;
        let member = room.members.remove(index);
        if let Some(session) = member.session
            && let Some(rooms) = state.sessions.get_mut(&session)
        {
            rooms.retain(|(r, _)| r != key);
        }
        if member.detached.is_some() {
            state.counts.detached -= 1;
            if let Some(token) = &member.resume {
                state.detached.remove(token);
            }
        }
        if !room.options.lobby && was_ready && room.members.len() < 2 {
            state.counts.rooms_ready -= 1;
        }
        let members = room.lobby_view();
        let event = Arc::new(RoomEvent::PeerLeft {
            room: key.clone(),
            peer: member.info.peer.clone(),
            count: room.members.len(),
            reason,
            options: room.options,
            members,
        });
        for other in &room.members {
            if let Some(session) = other.session {
                self.delivery
                    .deliver(session, Outbound::Event(event.clone()));
            }
        }
        let removed = Some((member.session, event));
        if room.members.is_empty()
            && let Some(room) = state.rooms.remove(key)
        {
            if !room.options.lobby {
                state.counts.rooms -= 1;
            }
            if let Some(log) = room.log {
                let end = if state.shutting_down {
                    RoomEnd::Shutdown
                } else {
                    match reason {
                        LeaveReason::Left | LeaveReason::Replaced => RoomEnd::Left,
                        LeaveReason::Purged => RoomEnd::Purged,
                        LeaveReason::Disconnected
                        | LeaveReason::Detached
                        | LeaveReason::Timeout => RoomEnd::Disconnected,
                    }
                };
                state
                    .ended
                    .push(log.finish(key.redacted(), end, Instant::now()));
            }
        }
        removed
    }

    /// Takes the member known as `peer` out of `room`; it is told too (see
    /// [`RoomDirectory::remove_peer`]).
    fn remove_peer(&self, state: &mut State, key: &RoomKey, peer: &str) -> bool {
        let Some(index) = state.rooms.get(key).and_then(|r| r.position_of_peer(peer)) else {
            return false;
        };
        if let Some((session, event)) = self.remove_member(state, key, index, LeaveReason::Left) {
            self.send_shared(session, event);
        }
        true
    }

    fn send_shared(&self, session: Option<SessionId>, event: Arc<RoomEvent>) {
        if let Some(session) = session {
            self.delivery.deliver(session, Outbound::Event(event));
        }
    }

    /// Detaches the member at `index`: its place and messages are kept for the grace.
    fn detach(self: &Arc<Self>, state: &mut State, key: &RoomKey, index: usize) {
        state.detachments += 1;
        let number = state.detachments;
        let Some(room) = state.rooms.get_mut(key) else {
            return;
        };
        let member = &mut room.members[index];
        let (Some(token), Some(session)) = (member.resume.clone(), member.session.take()) else {
            return;
        };
        if let Some(rooms) = state.sessions.get_mut(&session) {
            rooms.retain(|(r, _)| r != key);
        }
        member.detached = Some(Box::new(Detached {
            number,
            kept: VecDeque::new(),
            kept_bytes: 0,
        }));
        let peer = member.info.peer.clone();
        state.counts.detached += 1;
        state.detached.insert(token, (key.clone(), peer.clone()));
        let event = Arc::new(RoomEvent::PeerLeft {
            room: key.clone(),
            peer: peer.clone(),
            count: room.members.len(),
            reason: LeaveReason::Detached,
            options: room.options,
            members: room.lobby_view(),
        });
        for other in &room.members {
            if let Some(session) = other.session {
                self.delivery
                    .deliver(session, Outbound::Event(event.clone()));
            }
        }
        let inner = self.clone();
        let key = key.clone();
        let grace = self.resume.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            inner.with_state(|state| inner.expire(state, &key, &peer, number));
        });
    }

    /// Ends a detachment whose grace ran out (unless the member came back or left meanwhile).
    fn expire(&self, state: &mut State, key: &RoomKey, peer: &str, number: u64) {
        let Some(index) = state.rooms.get(key).and_then(|room| {
            room.members.iter().position(|m| {
                &*m.info.peer == peer && m.detached.as_ref().is_some_and(|d| d.number == number)
            })
        }) else {
            return;
        };
        log::debug!("detached member of {} did not come back", key.redacted());
        self.remove_member(state, key, index, LeaveReason::Timeout);
    }

    /// Ends a room for all its members; returns how many it had.
    fn end_room(&self, state: &mut State, key: &RoomKey, end: RoomEnd) -> usize {
        let now = Instant::now();
        state.epoch += 1;
        let epoch = state.epoch;
        state
            .closed
            .retain(|_, (_, at)| now.duration_since(*at) < CLOSED_MEMORY);
        state.closed.insert(key.clone(), (epoch, now));
        let Some(room) = state.rooms.remove(key) else {
            return 0;
        };
        if !room.options.lobby {
            state.counts.rooms -= 1;
            if room.members.len() >= 2 {
                state.counts.rooms_ready -= 1;
            }
        }
        for member in &room.members {
            match member.session {
                Some(session) => {
                    if let Some(rooms) = state.sessions.get_mut(&session) {
                        rooms.retain(|(r, _)| r != key);
                    }
                    self.send(Some(session), RoomEvent::Closed { room: key.clone() });
                }
                None => {
                    state.counts.detached -= 1;
                    if let Some(token) = &member.resume {
                        state.detached.remove(token);
                    }
                }
            }
        }
        if let Some(log) = room.log {
            state.ended.push(log.finish(key.redacted(), end, now));
        }
        room.members.len()
    }

    fn join(&self, state: &mut State, request: JoinRequest) -> JoinOutcome {
        let key = request.room.clone();
        let session = request.session;
        if state
            .closed
            .get(&key)
            .is_some_and(|(epoch, _)| *epoch > request.checked_at)
        {
            log::debug!("join refused: room {} was just closed", key.redacted());
            return JoinOutcome::Closed;
        }
        if let Some(device) = &request.device {
            state.devices.insert(session, device.clone());
        }
        // A member already: tell it again (and, if asked, the others).
        if let Some(room) = state.rooms.get(&key)
            && let Some(index) = room.position(session)
        {
            let me = room.members[index].info.clone();
            let peers = room
                .members
                .iter()
                .filter(|m| m.session != Some(session))
                .map(|m| m.info.clone())
                .collect();
            self.send(
                Some(session),
                RoomEvent::Joined {
                    room: key.clone(),
                    me: me.clone(),
                    options: room.options,
                    peers,
                    first: index == 0,
                    again: true,
                },
            );
            if request.rejoin == Rejoin::Announce {
                self.announce(room, &key, index, &me);
            }
            return JoinOutcome::AlreadyMember;
        }
        // Whom the joiner replaces: a member of its device, or of its peer id.
        let victim = state.rooms.get(&key).and_then(|room| {
            room.members
                .iter()
                .position(|m| match (&request.device, &m.device) {
                    (Some(d), Some(theirs)) if request.replace_same_device && d == theirs => true,
                    _ => request.replace_same_peer && m.info.peer == request.member.peer,
                })
        });
        if let Some(room) = state.rooms.get(&key) {
            let staying = room.members.len() - usize::from(victim.is_some());
            if room.options.capacity.is_full(staying) {
                log::debug!("join refused: room {} is full", key.redacted());
                self.metrics.refused(Refusal::RoomFull);
                return JoinOutcome::Full {
                    capacity: room.options.capacity,
                };
            }
        }
        if request.exclusive {
            let others: Vec<(RoomKey, PeerId)> = state
                .sessions
                .get(&session)
                .map(|rooms| {
                    rooms
                        .iter()
                        .filter(|(r, _)| *r != key && r.space() == key.space())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for (other, _) in others {
                if let Some(index) = state.rooms.get(&other).and_then(|r| r.position(session)) {
                    self.remove_member(state, &other, index, LeaveReason::Left);
                }
            }
        }
        if let Some(index) = victim {
            let replaced = state.rooms.get(&key).map(|r| r.members[index].session);
            if let Some(old) = replaced.flatten() {
                self.send(Some(old), RoomEvent::Replaced { room: key.clone() });
            }
            self.remove_member(state, &key, index, LeaveReason::Replaced);
        }
        let created = !state.rooms.contains_key(&key);
        let room = state.rooms.entry(key.clone()).or_insert_with(|| Room {
            options: request.options,
            members: Vec::with_capacity(2),
            log: (!request.options.lobby).then(|| RoomLog::new(Instant::now())),
        });
        if created && !room.options.lobby {
            state.counts.rooms += 1;
        }
        if let Some(log) = &mut room.log {
            log.joined(
                &request.member.peer,
                request.device.as_ref(),
                Instant::now(),
            );
        }
        let peers = room.infos();
        let first = peers.is_empty();
        room.members.push(Member {
            info: request.member.clone(),
            session: Some(session),
            device: request.device,
            resume: request.resume.map(|ticket| ticket.token),
            detached: None,
        });
        let count = room.members.len();
        if !room.options.lobby && count == 2 {
            state.counts.rooms_ready += 1;
        }
        note_session_room(
            &mut state.sessions,
            session,
            key.clone(),
            request.member.peer.clone(),
        );
        self.send(
            Some(session),
            RoomEvent::Joined {
                room: key.clone(),
                me: request.member.clone(),
                options: room.options,
                peers,
                first,
                again: false,
            },
        );
        self.announce(room, &key, count - 1, &request.member);
        JoinOutcome::Joined { count }
    }

    /// Tells every member but the one at `index` that it joined.
    fn announce(&self, room: &Room, key: &RoomKey, index: usize, member: &MemberInfo) {
        let members = room.lobby_view();
        for (i, other) in room.members.iter().enumerate() {
            if i == index {
                continue;
            }
            self.send(
                other.session,
                RoomEvent::PeerJoined {
                    room: key.clone(),
                    member: member.clone(),
                    count: room.members.len(),
                    options: room.options,
                    receiver_first: i == 0,
                    members: members.clone(),
                },
            );
        }
    }

    fn disconnect(self: &Arc<Self>, state: &mut State, session: SessionId, how: Departure) {
        state.devices.remove(&session);
        let rooms = state.sessions.get(&session).cloned().unwrap_or_default();
        let resumable = how == Departure::Dropped && !self.resume.grace.is_zero();
        for (key, _) in rooms {
            let Some((index, keep)) = state.rooms.get(&key).and_then(|room| {
                let index = room.position(session)?;
                Some((index, resumable && room.members[index].resume.is_some()))
            }) else {
                continue;
            };
            if keep && !state.shutting_down {
                self.detach(state, &key, index);
            } else {
                self.remove_member(state, &key, index, LeaveReason::Disconnected);
            }
        }
        state.sessions.remove(&session);
    }

    fn resume(
        &self,
        state: &mut State,
        token: &str,
        session: SessionId,
    ) -> Result<(), ResumeError> {
        let (key, peer) = state.detached.remove(token).ok_or(ResumeError::Unknown)?;
        let Some(room) = state.rooms.get_mut(&key) else {
            return Err(ResumeError::Unknown);
        };
        let Some(index) = room.position_of_peer(&peer) else {
            return Err(ResumeError::Unknown);
        };
        let member = &mut room.members[index];
        let Some(detached) = member.detached.take() else {
            return Err(ResumeError::Unknown);
        };
        let fresh = new_resume_token();
        member.resume = Some(fresh.clone());
        member.session = Some(session);
        state.counts.detached -= 1;
        let peers = room
            .members
            .iter()
            .filter(|m| m.info.peer != peer)
            .map(|m| m.info.clone())
            .collect();
        self.send(
            Some(session),
            RoomEvent::Resumed {
                room: key.clone(),
                peer: peer.clone(),
                count: room.members.len(),
                peers,
                missed: detached.kept.len(),
                token: fresh,
                capacity: room.options.capacity,
            },
        );
        for frame in detached.kept {
            self.delivery.deliver(session, Outbound::Frame(frame));
        }
        for other in &room.members {
            if other.info.peer != peer {
                self.send(
                    other.session,
                    RoomEvent::PeerReconnected {
                        room: key.clone(),
                        peer: peer.clone(),
                    },
                );
            }
        }
        note_session_room(&mut state.sessions, session, key, peer);
        Ok(())
    }

    fn relay(
        &self,
        state: &mut State,
        session: SessionId,
        key: &RoomKey,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError> {
        let room = state.rooms.get(key).ok_or(RelayError::NotInRoom)?;
        let sender = room.position(session).ok_or(RelayError::NotInRoom)?;
        self.hand_to_members(state, key, Some(sender), target, frame, kind)
    }

    /// Hands `frame` to the target members of `key` (queued for detached ones), the member at
    /// `sender` excepted. A detached member that cannot keep more loses its place.
    fn hand_to_members(
        &self,
        state: &mut State,
        key: &RoomKey,
        sender: Option<usize>,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError> {
        let room = state.rooms.get_mut(key).ok_or(RelayError::UnknownPeer)?;
        let recipients: Vec<usize> = match target {
            Target::Peer(peer) => match room.position_of_peer(peer) {
                Some(i) if Some(i) != sender => vec![i],
                _ => return Err(RelayError::UnknownPeer),
            },
            Target::Others => {
                let others: Vec<usize> = (0..room.members.len())
                    .filter(|i| Some(*i) != sender)
                    .collect();
                if others.is_empty() {
                    return Err(RelayError::Alone {
                        capacity: room.options.capacity,
                    });
                }
                others
            }
        };
        let bytes = frame.len();
        // One recipient takes the frame as it is; several share one copy.
        let frame = match (recipients.len(), frame) {
            (1, frame) => frame,
            (_, Frame::Owned(text)) => Frame::Shared(text.into()),
            (_, shared) => shared,
        };
        let mut overflowed = Vec::new();
        for &i in &recipients {
            let member = &mut room.members[i];
            match (member.session, &mut member.detached) {
                (Some(to), _) => {
                    self.delivery.deliver(to, Outbound::Frame(frame.clone()));
                }
                (None, Some(detached)) => {
                    let limits = self.resume;
                    if detached.kept.len() >= limits.messages
                        || detached.kept_bytes + bytes > limits.bytes
                    {
                        overflowed.push(member.info.peer.clone());
                    } else {
                        detached.kept_bytes += bytes;
                        detached.kept.push_back(frame.clone());
                    }
                }
                (None, None) => {}
            }
            if let Some(log) = &mut room.log {
                log.relayed(kind, bytes);
            }
            self.metrics.relayed_in(key.space(), kind, bytes);
        }
        // Too much for a detached member to keep: its grace ends at once.
        for peer in overflowed {
            if let Some(i) = state.rooms.get(key).and_then(|r| r.position_of_peer(&peer)) {
                log::debug!(
                    "detached member of {} lost its place: too much kept",
                    key.redacted()
                );
                self.remove_member(state, key, i, LeaveReason::Timeout);
            }
        }
        Ok(Relayed {
            recipients: recipients.len(),
        })
    }

    fn close_device(&self, state: &mut State, device: &DeviceId) -> usize {
        let sessions: Vec<SessionId> = state
            .devices
            .iter()
            .filter(|(_, d)| *d == device)
            .map(|(s, _)| *s)
            .collect();
        // Detached members of the device are dropped too: no resume into a purged device.
        let detached: Vec<(RoomKey, usize)> = state
            .rooms
            .iter()
            .flat_map(|(key, room)| {
                room.members
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.session.is_none() && m.device.as_ref() == Some(device))
                    .map(move |(i, _)| (key.clone(), i))
            })
            .collect();
        for (key, index) in detached.into_iter().rev() {
            self.remove_member(state, &key, index, LeaveReason::Purged);
        }
        for session in &sessions {
            let rooms = state.sessions.get(session).cloned().unwrap_or_default();
            for (key, _) in rooms {
                if let Some(index) = state.rooms.get(&key).and_then(|r| r.position(*session)) {
                    self.send(Some(*session), RoomEvent::Closed { room: key.clone() });
                    self.remove_member(state, &key, index, LeaveReason::Purged);
                }
            }
            self.delivery
                .deliver(*session, Outbound::Close(CLOSE_NORMAL, "device purged"));
        }
        sessions.len()
    }
}

impl RoomDirectory for LocalRooms {
    fn epoch(&self) -> u64 {
        self.inner.state.lock().unwrap().epoch
    }

    fn join(&self, request: JoinRequest) -> RoomsFuture<'_, JoinOutcome> {
        let outcome = self
            .inner
            .with_state(|state| self.inner.join(state, request));
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn leave(&self, session: SessionId, room: &RoomKey) -> RoomsFuture<'_, bool> {
        let left = self.inner.with_state(|state| {
            let Some(index) = state.rooms.get(room).and_then(|r| r.position(session)) else {
                return false;
            };
            self.inner
                .remove_member(state, room, index, LeaveReason::Left);
            true
        });
        Box::pin(std::future::ready(Ok(left)))
    }

    fn remove_peer<'a>(&'a self, room: &'a RoomKey, peer: &'a str) -> RoomsFuture<'a, bool> {
        let removed = self
            .inner
            .with_state(|state| self.inner.remove_peer(state, room, peer));
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn disconnect(&self, session: SessionId, how: Departure) -> RoomsFuture<'_, ()> {
        self.inner
            .with_state(|state| self.inner.disconnect(state, session, how));
        Box::pin(std::future::ready(Ok(())))
    }

    fn resume<'a>(
        &'a self,
        token: &'a str,
        session: SessionId,
    ) -> RoomsFuture<'a, Result<(), ResumeError>> {
        let resumed = self
            .inner
            .with_state(|state| self.inner.resume(state, token, session));
        Box::pin(std::future::ready(Ok(resumed)))
    }

    fn relay(
        &self,
        session: SessionId,
        room: &RoomKey,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError> {
        self.inner
            .with_state(|state| self.inner.relay(state, session, room, target, frame, kind))
    }

    fn send_to(
        &self,
        room: &RoomKey,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError> {
        self.inner
            .with_state(|state| {
                self.inner
                    .hand_to_members(state, room, None, target, frame, kind)
            })
            .map_err(|_| RelayError::UnknownPeer)
    }

    fn close_room(&self, room: &RoomKey, end: RoomEnd) -> RoomsFuture<'_, usize> {
        let closed = self
            .inner
            .with_state(|state| self.inner.end_room(state, room, end));
        Box::pin(std::future::ready(Ok(closed)))
    }

    fn close_device(&self, device: &DeviceId) -> RoomsFuture<'_, usize> {
        let closed = self
            .inner
            .with_state(|state| self.inner.close_device(state, device));
        Box::pin(std::future::ready(Ok(closed)))
    }

    fn rooms_of(&self, session: SessionId) -> Vec<RoomKey> {
        let state = self.inner.state.lock().unwrap();
        state
            .sessions
            .get(&session)
            .map(|rooms| rooms.iter().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    fn members(&self, room: &RoomKey) -> RoomsFuture<'_, Option<RoomSummary>> {
        let state = self.inner.state.lock().unwrap();
        let summary = state.rooms.get(room).map(|r| RoomSummary {
            room: room.clone(),
            capacity: r.options.capacity,
            members: r.infos(),
        });
        drop(state);
        Box::pin(std::future::ready(Ok(summary)))
    }

    fn list(&self) -> Vec<RoomSummary> {
        let state = self.inner.state.lock().unwrap();
        let mut rooms: Vec<RoomSummary> = state
            .rooms
            .iter()
            .filter(|(_, r)| !r.options.lobby)
            .map(|(key, r)| RoomSummary {
                room: key.clone(),
                capacity: r.options.capacity,
                members: r.infos(),
            })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    fn counts(&self) -> RoomCounts {
        self.inner.state.lock().unwrap().counts
    }

    fn shut_down(&self) {
        self.inner.with_state(|state| {
            state.shutting_down = true;
            let keys: Vec<RoomKey> = state.rooms.keys().cloned().collect();
            for key in keys {
                // Members are not told about their rooms: the shutdown says it all.
                if let Some(room) = state.rooms.remove(&key)
                    && let Some(log) = room.log
                {
                    state
                        .ended
                        .push(log.finish(key.redacted(), RoomEnd::Shutdown, Instant::now()));
                }
            }
            state.sessions.clear();
            state.detached.clear();
            state.counts = RoomCounts::default();
        });
    }
}

impl Capacity {
    /// The capacity text of `room_full` ("max N users"); unlimited rooms are never full.
    pub fn max(self) -> u32 {
        self.limit().unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::rooms::ResumeTicket;
    use futures_util::FutureExt;
    use std::time::Duration;

    fn bounds(messages: usize) -> queue::Bounds {
        queue::Bounds {
            messages,
            bytes: usize::MAX,
        }
    }

    struct Fixture {
        rooms: LocalRooms,
        delivery: Arc<LocalDelivery>,
        metrics: Arc<Metrics>,
    }

    fn fixture() -> Fixture {
        let delivery = Arc::new(LocalDelivery::new(0));
        let metrics = Arc::new(Metrics::new());
        let rooms = LocalRooms::new(
            delivery.clone(),
            metrics.clone(),
            ResumeLimits {
                grace: Duration::from_secs(20),
                messages: 4,
                bytes: 1024,
            },
        );
        Fixture {
            rooms,
            delivery,
            metrics,
        }
    }

    fn key(id: &str) -> RoomKey {
        RoomKey::new("s", id)
    }

    fn request(session: SessionId, room: &str, capacity: u32) -> JoinRequest {
        JoinRequest {
            session,
            room: key(room),
            member: MemberInfo::peer(format!("p{}", session.0).into()),
            options: RoomOptions::room(capacity),
            device: None,
            replace_same_device: false,
            replace_same_peer: false,
            exclusive: true,
            rejoin: Rejoin::Quiet,
            resume: None,
            checked_at: 0,
        }
    }

    fn join(f: &Fixture, session: SessionId, room: &str, capacity: u32) -> JoinOutcome {
        f.rooms
            .inner
            .with_state(|s| f.rooms.inner.join(s, request(session, room, capacity)))
    }

    fn next(mailbox: &Mailbox) -> Outbound {
        mailbox.rx.try_recv().expect("a message")
    }

    fn next_event(mailbox: &Mailbox) -> RoomEvent {
        match next(mailbox) {
            Outbound::Event(e) => (*e).clone(),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn the_second_member_is_told_it_joined_and_the_first_that_it_came() {
        let f = fixture();
        let (a, ma) = f.delivery.register(bounds(8));
        let (b, mb) = f.delivery.register(bounds(8));
        assert_eq!(join(&f, a, "r", 2), JoinOutcome::Joined { count: 1 });
        assert!(matches!(
            next_event(&ma),
            RoomEvent::Joined { first: true, .. }
        ));
        assert_eq!(join(&f, b, "r", 2), JoinOutcome::Joined { count: 2 });
        match next_event(&mb) {
            RoomEvent::Joined { peers, first, .. } => {
                assert_eq!((peers.len(), first), (1, false));
            }
            other => panic!("{other:?}"),
        }
        match next_event(&ma) {
            RoomEvent::PeerJoined {
                count,
                receiver_first,
                ..
            } => assert_eq!((count, receiver_first), (2, true)),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.rooms.counts().rooms_ready, 1);
    }

    #[test]
    fn a_joiner_of_a_full_room_is_refused_without_leaving_its_room() {
        let f = fixture();
        let sessions: Vec<_> = (0..3).map(|_| f.delivery.register(bounds(8))).collect();
        join(&f, sessions[0].0, "r", 2);
        join(&f, sessions[1].0, "r", 2);
        join(&f, sessions[2].0, "mine", 2);
        assert_eq!(
            join(&f, sessions[2].0, "r", 2),
            JoinOutcome::Full {
                capacity: Capacity::Limited(2)
            }
        );
        assert_eq!(f.rooms.rooms_of(sessions[2].0), vec![key("mine")]);
        assert_eq!(f.rooms.counts().rooms, 2);
    }

    #[test]
    fn a_full_queue_kicks_the_slow_member_only() {
        let f = fixture();
        let (a, ma) = f.delivery.register(bounds(64));
        let (b, mb) = f.delivery.register(bounds(2));
        join(&f, a, "r", 2);
        join(&f, b, "r", 2);
        for _ in 0..4 {
            f.rooms
                .relay(
                    a,
                    &key("r"),
                    Target::Others,
                    Frame::Owned("x".into()),
                    "message",
                )
                .unwrap();
        }
        assert!(mb.rx.is_kicked());
        assert!(!ma.rx.is_kicked());
    }

    #[test]
    fn a_disconnect_tells_the_others_and_frees_the_place() {
        let f = fixture();
        let (a, ma) = f.delivery.register(bounds(8));
        let (b, _mb) = f.delivery.register(bounds(8));
        join(&f, a, "r", 2);
        join(&f, b, "r", 2);
        while ma.rx.try_recv().is_ok() {}
        f.rooms
            .inner
            .with_state(|s| f.rooms.inner.disconnect(s, b, Departure::Dropped));
        match next_event(&ma) {
            RoomEvent::PeerLeft { reason, count, .. } => {
                assert_eq!((reason, count), (LeaveReason::Disconnected, 1));
            }
            other => panic!("{other:?}"),
        }
        assert!(ma.rx.try_recv().is_err());
        assert_eq!(
            f.rooms.counts(),
            RoomCounts {
                rooms: 1,
                rooms_ready: 0,
                detached: 0
            }
        );
    }

    #[test]
    fn a_member_removed_by_peer_id_is_told_with_the_others_and_is_out() {
        let f = fixture();
        let sessions: Vec<_> = (0..3).map(|_| f.delivery.register(bounds(8))).collect();
        for (session, _) in &sessions {
            join(&f, *session, "r", 3);
        }
        for (_, mailbox) in &sessions {
            while mailbox.rx.try_recv().is_ok() {}
        }
        let removed: PeerId = format!("p{}", sessions[1].0.0).into();
        let removes = |room: &str, peer: &str| {
            f.rooms
                .remove_peer(&key(room), peer)
                .now_or_never()
                .expect("local rooms answer at once")
                .unwrap()
        };
        assert!(removes("r", &removed));
        for (_, mailbox) in &sessions {
            match next_event(mailbox) {
                RoomEvent::PeerLeft {
                    peer,
                    reason,
                    count,
                    ..
                } => assert_eq!(
                    (peer, reason, count),
                    (removed.clone(), LeaveReason::Left, 2)
                ),
                other => panic!("{other:?}"),
            }
            assert!(mailbox.rx.try_recv().is_err(), "told once");
        }
        assert!(f.rooms.rooms_of(sessions[1].0).is_empty());
        let relayed = f.rooms.relay(
            sessions[0].0,
            &key("r"),
            Target::Peer(&removed),
            Frame::Owned("x".into()),
            "message",
        );
        assert_eq!(relayed, Err(RelayError::UnknownPeer));
        assert!(!removes("r", &removed), "out already");
        assert!(!removes("nowhere", "p1"));
    }

    #[tokio::test]
    async fn a_detached_member_keeps_its_place_and_its_messages_until_it_resumes() {
        let f = fixture();
        let (a, _ma) = f.delivery.register(bounds(8));
        let (b, mb) = f.delivery.register(bounds(8));
        let mut resumable = request(a, "r", 2);
        resumable.resume = Some(ResumeTicket {
            token: "tok".into(),
        });
        f.rooms.join(resumable).await.unwrap();
        join(&f, b, "r", 2);
        f.rooms.disconnect(a, Departure::Dropped).await.unwrap();
        f.delivery.unregister(a);
        while mb.rx.try_recv().is_ok() {}
        f.rooms
            .relay(
                b,
                &key("r"),
                Target::Others,
                Frame::Owned("kept".into()),
                "message",
            )
            .unwrap();
        assert_eq!(f.rooms.counts().detached, 1);
        let (a2, ma2) = f.delivery.register(bounds(8));
        assert_eq!(f.rooms.resume("tok", a2).await.unwrap(), Ok(()));
        assert!(matches!(
            next_event(&ma2),
            RoomEvent::Resumed { missed: 1, .. }
        ));
        assert!(matches!(next(&ma2), Outbound::Frame(Frame::Owned(t)) if t == "kept"));
        assert!(matches!(next_event(&mb), RoomEvent::PeerReconnected { .. }));
        assert_eq!(
            f.rooms.resume("tok", a2).await.unwrap(),
            Err(ResumeError::Unknown),
            "a token is spent once used"
        );
        assert_eq!(f.rooms.counts().detached, 0);
    }

    #[test]
    fn send_to_reaches_a_member_from_outside_the_room() {
        let f = fixture();
        let (a, ma) = f.delivery.register(bounds(8));
        let (outsider, mo) = f.delivery.register(bounds(8));
        join(&f, a, "inbox", 2);
        while ma.rx.try_recv().is_ok() {}
        let peer = format!("p{}", a.0);
        let sent = f.rooms.send_to(
            &key("inbox"),
            Target::Peer(&peer),
            Frame::Owned("hi".into()),
            "invitation",
        );
        assert_eq!(sent, Ok(Relayed { recipients: 1 }));
        assert!(matches!(next(&ma), Outbound::Frame(Frame::Owned(t)) if t == "hi"));
        assert!(
            mo.rx.try_recv().is_err(),
            "the sender is no member and hears nothing"
        );
        assert_eq!(
            f.rooms.send_to(
                &key("inbox"),
                Target::Peer("nobody"),
                Frame::Owned("x".into()),
                "invitation"
            ),
            Err(RelayError::UnknownPeer)
        );
        assert_eq!(
            f.rooms.send_to(
                &key("no-such-room"),
                Target::Others,
                Frame::Owned("x".into()),
                "invitation"
            ),
            Err(RelayError::UnknownPeer)
        );
        assert_eq!(f.rooms.rooms_of(outsider), vec![]);
    }

    #[test]
    fn every_ended_room_is_recorded_once_whatever_ended_it() {
        let f = fixture();
        let sessions: Vec<_> = (0..6).map(|_| f.delivery.register(bounds(8))).collect();
        let id = |i: usize| sessions[i].0;
        let device = DeviceId::parse("purged-device").unwrap();
        join(&f, id(0), "left", 2);
        join(&f, id(1), "dropped", 2);
        join(&f, id(2), "deleted", 2);
        let mut purged = request(id(3), "purged", 2);
        purged.device = Some(device.clone());
        f.rooms.inner.with_state(|s| f.rooms.inner.join(s, purged));
        join(&f, id(4), "open", 2);
        join(&f, id(5), "open", 2);
        f.rooms.inner.with_state(|s| {
            f.rooms
                .inner
                .remove_member(s, &key("left"), 0, LeaveReason::Left)
        });
        f.rooms
            .inner
            .with_state(|s| f.rooms.inner.disconnect(s, id(1), Departure::Closed));
        f.rooms
            .inner
            .with_state(|s| f.rooms.inner.end_room(s, &key("deleted"), RoomEnd::Deleted));
        assert_eq!(
            f.rooms
                .inner
                .with_state(|s| f.rooms.inner.close_device(s, &device)),
            1
        );
        f.rooms.shut_down();
        // A session ending after shutdown began ends no second story.
        f.rooms
            .inner
            .with_state(|s| f.rooms.inner.disconnect(s, id(4), Departure::Closed));
        let text = f.metrics.render(&Default::default());
        assert!(
            text.contains("signalpost_room_lifetime_seconds_count 5"),
            "{text}"
        );
        assert_eq!(f.rooms.counts().rooms, 0);
    }

    #[test]
    fn the_counts_follow_every_change_without_a_scan() {
        let f = fixture();
        let scan = |f: &Fixture| {
            let state = f.rooms.inner.state.lock().unwrap();
            let rooms = state.rooms.values().filter(|r| !r.options.lobby);
            let ready = rooms.clone().filter(|r| r.members.len() >= 2).count();
            (rooms.count(), ready)
        };
        let sessions: Vec<_> = (0..8).map(|_| f.delivery.register(bounds(64))).collect();
        let id = |i: usize| sessions[i].0;
        let check = |f: &Fixture| {
            let counts = f.rooms.counts();
            assert_eq!((counts.rooms, counts.rooms_ready), scan(f));
        };
        for i in 0..8 {
            join(&f, id(i), &format!("r{}", i / 3), 3);
            check(&f);
        }
        f.rooms
            .inner
            .with_state(|s| f.rooms.inner.disconnect(s, id(0), Departure::Closed));
        check(&f);
        join(&f, id(1), "r2", 3);
        check(&f);
        f.rooms
            .inner
            .with_state(|s| f.rooms.inner.end_room(s, &key("r1"), RoomEnd::Deleted));
        check(&f);
        f.rooms.shut_down();
        check(&f);
    }
}
