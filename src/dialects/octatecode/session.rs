//! One OctateCode connection, translated onto the rooms core.
//!
//! A room of the lean protocol is a room of space `octatecode`; a socket joins it (`auth`) as
//! the peer id it chose, replacing a member of the same id, and may be in several rooms at once.
//! Signals go to the member of the `to` id, chat and sync to every other member plus the sender's
//! own copy. The session keeps only the rooms it authed into and as whom, to check that a
//! sender speaks as itself; every relay asks the directory whether it is still a member.

use std::collections::HashMap;
use std::sync::Arc;

use super::wire::{self, BroadcastKind, ClientMessage, Kind, Peer, ServerMessage, SignalKind};
use super::{MemberData, Shared, now_millis, room_key};
use crate::signaling::Signaling;
use crate::signaling::rooms::{
    Frame, JoinOutcome, JoinRequest, LeaveReason, MemberInfo, PeerId, Rejoin, RelayError,
    RoomEvent, RoomOptions, SessionId, Target,
};
use crate::signaling::session::{Flow, Protocol, Replies};

/// Rooms one socket may be in at once: a client joins one room per open document, and a socket
/// in thousands of rooms would be a cheap way to hold the server's memory.
pub const MAX_ROOMS_PER_SOCKET: usize = 16;

/// One connection of the lean protocol.
pub struct OctateCode {
    signaling: Arc<Signaling>,
    session: SessionId,
    shared: Arc<Shared>,
    /// The rooms this socket authed into, by room id, and its peer id in each.
    joined: HashMap<String, PeerId>,
}

impl OctateCode {
    /// A connection registered with the delivery as `session`.
    pub fn new(signaling: Arc<Signaling>, session: SessionId, shared: Arc<Shared>) -> Self {
        Self {
            signaling,
            session,
            shared,
            joined: HashMap::new(),
        }
    }

    /// Whether this socket is in `room` as `from`, as far as it knows.
    fn speaks_as(&self, room: &str, from: &str) -> bool {
        self.joined.get(room).is_some_and(|peer| **peer == *from)
    }

    async fn auth(
        &mut self,
        room_id: &str,
        from: &str,
        name: String,
        room_name: Option<String>,
        token: Option<&str>,
    ) -> Option<String> {
        let now = now_millis();
        if let Some(tokens) = &self.shared.tokens {
            let verified = token
                .ok_or(super::token::TokenError::Malformed)
                .and_then(|token| tokens.verify(token, from, room_id, now));
            if let Err(e) = verified {
                log::debug!("octatecode auth refused: token {e}");
                return Some(wire::error(wire::INVALID_TOKEN));
            }
        }
        let rooms = self.signaling.rooms();
        let key = room_key(room_id);
        match self.joined.get(room_id) {
            // Authing again as itself: told again, and the others too, as the original did.
            Some(peer) if **peer == *from => {}
            // As another id: the old one leaves first (the original kept both, one a ghost).
            Some(_) => {
                self.joined.remove(room_id);
                if let Err(e) = rooms.leave(self.session, &key).await {
                    log::error!("octatecode: leaving a room failed: {e}");
                }
            }
            None if self.joined.len() >= MAX_ROOMS_PER_SOCKET => {
                return Some(wire::error(wire::TOO_MANY_ROOMS));
            }
            None => {}
        }
        // Every member carries the room's name and birth, taken from the members already there,
        // so they outlive whoever created the room.
        let (room_name, room_created_at) = match rooms.members(&key).await {
            Ok(Some(summary)) => match summary.members.first().and_then(MemberData::of) {
                Some(first) => (first.room_name, first.room_created_at),
                None => (room_name, now),
            },
            Ok(None) => (room_name, now),
            Err(e) => {
                log::error!("octatecode: reading a room failed: {e}");
                return Some(wire::error(wire::UNAVAILABLE));
            }
        };
        let data = MemberData {
            joined_at: now,
            room_name,
            room_created_at,
        };
        let peer: PeerId = from.into();
        let request = JoinRequest {
            session: self.session,
            room: key,
            member: MemberInfo {
                name: Some(name.into()),
                data: Some(Arc::new(data.to_value())),
                ..MemberInfo::peer(peer.clone())
            },
            options: RoomOptions::room(self.shared.capacity),
            device: None,
            replace_same_device: false,
            // The same peer id on a new socket (a reconnect) takes the old entry's place.
            replace_same_peer: true,
            exclusive: false,
            rejoin: Rejoin::Announce,
            resume: None,
            checked_at: rooms.epoch(),
        };
        match rooms.join(request).await {
            // `peerList` is rendered from the `Joined` event, already in the queue.
            Ok(JoinOutcome::Joined { .. } | JoinOutcome::AlreadyMember) => {
                self.joined.insert(room_id.to_owned(), peer);
                None
            }
            Ok(JoinOutcome::Full { .. }) => Some(wire::error(wire::ROOM_FULL)),
            Ok(JoinOutcome::Closed) => Some(wire::error(wire::ROOM_CLOSED)),
            Err(e) => {
                log::error!("octatecode: join failed: {e}");
                Some(wire::error(wire::UNAVAILABLE))
            }
        }
    }

    fn signal(
        &mut self,
        message: &ClientMessage,
        kind: SignalKind,
        to: Option<&str>,
        data: Option<&serde_json::Value>,
    ) -> Option<String> {
        if !self.speaks_as(&message.room_id, &message.from) {
            return Some(wire::error(wire::NOT_A_MEMBER));
        }
        let Some(to) = to else {
            log::debug!("octatecode: a {} without a target dropped", kind.as_str());
            return None;
        };
        let frame = wire::signal_frame(kind, &message.room_id, &message.from, data);
        let relayed = self.signaling.rooms().relay(
            self.session,
            &room_key(&message.room_id),
            Target::Peer(to),
            Frame::Owned(frame),
            kind.as_str(),
        );
        match relayed {
            Ok(_) => None,
            // Dropped silently, as the original does.
            Err(RelayError::UnknownPeer | RelayError::Alone { .. }) => {
                log::debug!("octatecode: a {} for no member dropped", kind.as_str());
                None
            }
            Err(RelayError::NotInRoom) => self.not_a_member(&message.room_id),
        }
    }

    fn broadcast(
        &mut self,
        message: &ClientMessage,
        kind: BroadcastKind,
        frame: &str,
    ) -> Option<String> {
        if !self.speaks_as(&message.room_id, &message.from) {
            return Some(wire::error(wire::NOT_A_MEMBER));
        }
        let relayed = self.signaling.rooms().relay(
            self.session,
            &room_key(&message.room_id),
            Target::Others,
            Frame::Owned(frame.to_owned()),
            kind.as_str(),
        );
        match relayed {
            // The sender gets its own copy, as from the original.
            Ok(_) | Err(RelayError::Alone { .. } | RelayError::UnknownPeer) => {
                Some(frame.to_owned())
            }
            Err(RelayError::NotInRoom) => self.not_a_member(&message.room_id),
        }
    }

    /// The directory says the socket is not in the room (another socket took its id).
    fn not_a_member(&mut self, room: &str) -> Option<String> {
        self.joined.remove(room);
        Some(wire::error(wire::NOT_A_MEMBER))
    }

    async fn handle(&mut self, text: &str) -> Option<String> {
        let message = match ClientMessage::parse(text) {
            Ok(message) => message,
            Err(e) => return Some(e.reply()),
        };
        match &message.kind {
            Kind::Auth {
                name,
                room_name,
                token,
            } => {
                let (name, room_name, token) = (name.clone(), room_name.clone(), token.clone());
                self.auth(
                    &message.room_id,
                    &message.from,
                    name,
                    room_name,
                    token.as_deref(),
                )
                .await
            }
            Kind::Signal { kind, to, data } => {
                self.signal(&message, *kind, to.as_deref(), data.as_ref())
            }
            Kind::Broadcast { kind, frame } => self.broadcast(&message, *kind, frame),
            Kind::Other => {
                log::debug!("octatecode: message of an unknown type ignored");
                None
            }
        }
    }
}

impl Protocol for OctateCode {
    fn greeting(&mut self) -> Option<String> {
        // The lean server speaks only when spoken to.
        None
    }

    async fn on_text(&mut self, text: &str, replies: &mut Replies) -> Flow {
        replies.extend(self.handle(text).await);
        Flow::Continue
    }

    fn on_binary(&mut self, replies: &mut Replies) -> Flow {
        replies.push(wire::error(wire::INVALID_FORMAT));
        Flow::Continue
    }

    fn render(&mut self, event: &RoomEvent, frames: &mut Replies) -> Flow {
        let room = event.room();
        if room.space() != super::SPACE {
            return Flow::Continue;
        }
        let room_id = room.id();
        match event {
            RoomEvent::Joined { peers, .. } => frames.push(
                ServerMessage::PeerList {
                    room_id,
                    peers: peers.iter().map(peer).collect(),
                }
                .to_json(),
            ),
            RoomEvent::PeerJoined { member, .. } => {
                let Peer { id, name } = peer(member);
                frames.push(
                    ServerMessage::PeerJoined {
                        room_id,
                        peer_id: id,
                        peer_name: name,
                    }
                    .to_json(),
                );
            }
            // Its id authed on a new socket: the peer is still there, nothing to tell.
            RoomEvent::PeerLeft {
                reason: LeaveReason::Replaced,
                ..
            } => {}
            RoomEvent::PeerLeft { peer, .. } => frames.push(
                ServerMessage::PeerLeft {
                    room_id,
                    peer_id: peer,
                }
                .to_json(),
            ),
            // The socket stays open, as the original left it, but is in the room no more
            // (unless it authed again since the event was queued).
            RoomEvent::Replaced { .. } | RoomEvent::Closed { .. } => {
                if !self.signaling.rooms().rooms_of(self.session).contains(room) {
                    self.joined.remove(room_id);
                }
            }
            RoomEvent::PeerReconnected { .. } | RoomEvent::Resumed { .. } => {}
        }
        Flow::Continue
    }

    fn rate_limited(&self) -> Option<String> {
        Some(wire::error(wire::RATE_LIMITED))
    }

    fn goodbye(&self) -> Option<String> {
        None
    }
}

/// A member as peer lists show it.
fn peer(member: &MemberInfo) -> Peer<'_> {
    Peer {
        id: &member.peer,
        name: member.name.as_deref().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::testing::{connect, drain, send, signaling};
    use crate::signaling::rooms::{Departure, Mailbox};
    use serde_json::json;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            tokens: None,
            capacity: 32,
        })
    }

    fn socket(signaling: &Arc<Signaling>) -> (OctateCode, Mailbox) {
        let (id, mailbox) = connect(signaling);
        (OctateCode::new(signaling.clone(), id, shared()), mailbox)
    }

    async fn auth(socket: &mut OctateCode, room: &str, from: &str) {
        let replies = send(
            socket,
            json!({"type": "auth", "roomId": room, "from": from}),
        )
        .await;
        assert!(replies.is_empty(), "{replies:?}");
    }

    #[tokio::test]
    async fn auth_lists_the_others_and_announces_the_joiner() {
        let s = signaling();
        let (mut alice, alice_box) = socket(&s);
        let (mut bob, bob_box) = socket(&s);
        auth(&mut alice, "r", "alice").await;
        auth(&mut bob, "r", "bob").await;
        assert_eq!(
            drain(&mut alice, &alice_box),
            [
                json!({"type": "peerList", "roomId": "r", "peers": []}),
                json!({"type": "peerJoined", "roomId": "r", "peerId": "bob", "peerName": "peer-bob"}),
            ]
        );
        assert_eq!(
            drain(&mut bob, &bob_box),
            [
                json!({"type": "peerList", "roomId": "r", "peers": [{"id": "alice", "name": "peer-alice"}]})
            ]
        );
    }

    #[tokio::test]
    async fn signals_carry_the_sender_and_chat_reaches_the_sender_too() {
        let s = signaling();
        let (mut alice, alice_box) = socket(&s);
        let (mut bob, bob_box) = socket(&s);
        auth(&mut alice, "r", "alice").await;
        auth(&mut bob, "r", "bob").await;
        drain(&mut alice, &alice_box);
        drain(&mut bob, &bob_box);
        let offer = json!({"type": "offer", "roomId": "r", "from": "bob", "to": "alice", "data": {"sdp": "v=0"}});
        assert!(send(&mut bob, offer).await.is_empty());
        assert_eq!(
            drain(&mut alice, &alice_box),
            [
                json!({"type": "offer", "roomId": "r", "data": {"sdp": "v=0"}, "peerId": "bob", "from": "bob"})
            ]
        );
        let chat =
            json!({"type": "chat", "roomId": "r", "from": "alice", "data": {"text": "hi"}, "x": 1});
        assert_eq!(
            send(&mut alice, chat.clone()).await,
            std::slice::from_ref(&chat)
        );
        assert_eq!(drain(&mut bob, &bob_box), [chat]);
    }

    #[tokio::test]
    async fn speaking_as_another_peer_or_outside_the_room_is_refused() {
        let s = signaling();
        let (mut alice, _) = socket(&s);
        let (mut bob, _) = socket(&s);
        auth(&mut alice, "r", "alice").await;
        let refused = [json!({"type": "error", "data": {"error": "Not a member of this room"}})];
        let chat = json!({"type": "chat", "roomId": "r", "from": "alice", "data": {}});
        assert_eq!(send(&mut bob, chat).await, refused);
        let spoof = json!({"type": "sync", "roomId": "r", "from": "carol", "data": {}});
        assert_eq!(send(&mut alice, spoof).await, refused);
    }

    #[tokio::test]
    async fn the_same_peer_id_on_a_new_socket_replaces_the_old_without_a_peer_left() {
        let s = signaling();
        let (mut old, old_box) = socket(&s);
        let (mut bob, bob_box) = socket(&s);
        let (mut current, _current_box) = socket(&s);
        auth(&mut old, "r", "alice").await;
        auth(&mut bob, "r", "bob").await;
        drain(&mut bob, &bob_box);
        auth(&mut current, "r", "alice").await;
        assert_eq!(
            drain(&mut bob, &bob_box),
            [
                json!({"type": "peerJoined", "roomId": "r", "peerId": "alice", "peerName": "peer-alice"})
            ]
        );
        drain(&mut old, &old_box);
        assert!(
            old.joined.is_empty(),
            "the old socket is in the room no more"
        );
        s.rooms()
            .disconnect(old.session, Departure::Closed)
            .await
            .unwrap();
        assert!(drain(&mut bob, &bob_box).is_empty());
        s.rooms()
            .disconnect(current.session, Departure::Closed)
            .await
            .unwrap();
        assert_eq!(
            drain(&mut bob, &bob_box),
            [json!({"type": "peerLeft", "roomId": "r", "peerId": "alice"})]
        );
    }
}
