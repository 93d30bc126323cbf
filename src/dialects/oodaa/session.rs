//! One Oodaa connection, translated onto the rooms core.
//!
//! The online users are the members of one lobby ([`super::lobby`]), known by their user id:
//! registering joins it (replacing the member of the same id, so a second registration takes
//! over silently), a relay is a relay to the member of the target's id, and presence pushes are
//! the lobby's join and leave events. The session keeps only whom its socket is registered as.

use std::sync::Arc;

use serde_json::Value;

use super::wire::{self, Addressee, ClientMessage, OnlineUser, ParseError, Relay, ServerMessage};
use super::{Settings, lobby};
use crate::signaling::Signaling;
use crate::signaling::rooms::{
    Frame, JoinOutcome, JoinRequest, LeaveReason, MemberInfo, PeerId, Rejoin, RelayError,
    RoomEvent, RoomKey, RoomOptions, SessionId, Target,
};
use crate::signaling::session::{Flow, Protocol, Replies};

/// Whom the socket is registered as.
#[derive(Debug, Clone)]
struct User {
    id: PeerId,
    info: Option<Arc<Value>>,
}

/// One connection of the Oodaa protocol.
pub struct Oodaa {
    signaling: Arc<Signaling>,
    session: SessionId,
    settings: Arc<Settings>,
    lobby: RoomKey,
    /// The user this socket registered as, while it is that user's current socket (as far as
    /// the session knows: relays ask the directory).
    user: Option<User>,
}

impl Oodaa {
    /// A connection registered with the delivery as `session`.
    pub fn new(signaling: Arc<Signaling>, session: SessionId, settings: Arc<Settings>) -> Self {
        Self {
            signaling,
            session,
            settings,
            lobby: lobby(),
            user: None,
        }
    }

    async fn register(&mut self, user_id: String, user_info: Option<Value>) -> Option<String> {
        let size = user_info.as_ref().map_or(0, |info| {
            serde_json::to_vec(info).map_or(usize::MAX, |v| v.len())
        });
        if size > self.settings.max_user_info_bytes {
            log::debug!("oodaa register refused: userInfo of {size} bytes");
            return Some(ServerMessage::error(wire::USERINFO_TOO_LARGE).to_json());
        }
        let rooms = self.signaling.rooms();
        // A socket is one user: registering again (as another id, or with a new profile) leaves
        // first, so the others see the old registration go and the new one come.
        if self.user.take().is_some()
            && let Err(e) = rooms.leave(self.session, &self.lobby).await
        {
            log::error!("oodaa: leaving the online users failed: {e}");
        }
        let user = User {
            id: user_id.into(),
            info: user_info.map(Arc::new),
        };
        let request = JoinRequest {
            session: self.session,
            room: self.lobby.clone(),
            member: MemberInfo {
                data: user.info.clone(),
                ..MemberInfo::peer(user.id.clone())
            },
            // The lobby can be large: events carry the one who came or went, not everyone.
            options: RoomOptions::lobby(false),
            device: None,
            replace_same_device: false,
            // A user id registered again (the app reconnecting) replaces the old socket.
            replace_same_peer: true,
            exclusive: false,
            rejoin: Rejoin::Quiet,
            resume: None,
            checked_at: rooms.epoch(),
        };
        match rooms.join(request).await {
            // `registered` is rendered from the `Joined` event, already in the queue.
            Ok(JoinOutcome::Joined { .. } | JoinOutcome::AlreadyMember) => {
                self.user = Some(user);
                None
            }
            Ok(outcome) => {
                log::warn!("oodaa: the online users refused a registration: {outcome:?}");
                Some(ServerMessage::error(wire::REGISTRATION_FAILED).to_json())
            }
            Err(e) => {
                log::error!("oodaa: registration failed: {e}");
                Some(ServerMessage::error(wire::REGISTRATION_FAILED).to_json())
            }
        }
    }

    fn relay(&mut self, relay: &Relay) -> Option<String> {
        let Some(user) = &self.user else {
            return Some(ServerMessage::error(wire::NOT_REGISTERED).to_json());
        };
        let Addressee::User(target) = &relay.target else {
            return Some(ServerMessage::not_online(relay.target.shown()).to_json());
        };
        let frame = relay.to_target_frame(&user.id, user.info.as_deref());
        let relayed = self.signaling.rooms().relay(
            self.session,
            &self.lobby,
            Target::Peer(target),
            Frame::Owned(frame),
            relay.kind.as_str(),
        );
        match relayed {
            Ok(_) => None,
            // The sender is online (the directory checked it first): a message to oneself comes
            // back, as it did from the original.
            Err(RelayError::UnknownPeer) if *target == *user.id => {
                Some(relay.to_target_frame(&user.id, user.info.as_deref()))
            }
            Err(RelayError::UnknownPeer | RelayError::Alone { .. }) => {
                Some(ServerMessage::not_online(target).to_json())
            }
            // Another socket registered the id since.
            Err(RelayError::NotInRoom) => {
                self.user = None;
                Some(ServerMessage::error(wire::NOT_REGISTERED).to_json())
            }
        }
    }

    async fn online_users(&self) -> String {
        match self.signaling.rooms().members(&self.lobby).await {
            Ok(summary) => {
                let members = summary.map(|s| s.members).unwrap_or_default();
                ServerMessage::OnlineUsers {
                    users: members.iter().map(online_user).collect(),
                }
                .to_json()
            }
            Err(e) => {
                log::error!("oodaa: listing the online users failed: {e}");
                ServerMessage::OnlineUsers { users: Vec::new() }.to_json()
            }
        }
    }

    /// Forgets the registration if the socket is no longer in the lobby (it was replaced, and
    /// has not registered again since the event was queued).
    fn check_still_registered(&mut self) {
        if !self
            .signaling
            .rooms()
            .rooms_of(self.session)
            .contains(&self.lobby)
        {
            self.user = None;
        }
    }
}

/// A lobby member as lists show it.
fn online_user(member: &MemberInfo) -> OnlineUser<'_> {
    OnlineUser {
        user_id: &member.peer,
        user_info: member.data.as_deref(),
    }
}

/// Milliseconds since the Unix epoch.
fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Protocol for Oodaa {
    fn greeting(&mut self) -> Option<String> {
        Some(
            ServerMessage::Connected {
                client_id: uuid::Uuid::new_v4().to_string(),
                message: wire::CONNECTED_MESSAGE,
            }
            .to_json(),
        )
    }

    async fn on_text(&mut self, text: &str, replies: &mut Replies) -> Flow {
        let reply = match ClientMessage::parse(text) {
            Ok(ClientMessage::Register { user_id, user_info }) => {
                self.register(user_id, user_info).await
            }
            Ok(ClientMessage::Relay(relay)) => self.relay(&relay),
            Ok(ClientMessage::GetOnlineUsers) => Some(self.online_users().await),
            Ok(ClientMessage::Ping) => Some(
                ServerMessage::Pong {
                    timestamp: now_millis(),
                }
                .to_json(),
            ),
            Ok(ClientMessage::Ignored) => {
                log::debug!("oodaa: message of an unknown type ignored");
                None
            }
            Err(ParseError::InvalidFormat) => {
                Some(ServerMessage::error(wire::INVALID_FORMAT).to_json())
            }
            Err(ParseError::InvalidUserId) => {
                Some(ServerMessage::error(wire::INVALID_USER_ID).to_json())
            }
        };
        replies.extend(reply);
        Flow::Continue
    }

    fn on_binary(&mut self, replies: &mut Replies) -> Flow {
        replies.push(ServerMessage::error(wire::INVALID_FORMAT).to_json());
        Flow::Continue
    }

    fn render(&mut self, event: &RoomEvent, frames: &mut Replies) -> Flow {
        if *event.room() != self.lobby {
            return Flow::Continue;
        }
        match event {
            RoomEvent::Joined { me, peers, .. } => {
                let online_users = peers.iter().chain([me]).map(online_user).collect();
                frames.push(
                    ServerMessage::Registered {
                        user_id: &me.peer,
                        online_users,
                    }
                    .to_json(),
                );
            }
            RoomEvent::PeerJoined { member, .. } => frames.push(
                ServerMessage::UserStatus {
                    user_id: &member.peer,
                    is_online: true,
                    user_info: member.data.as_deref(),
                }
                .to_json(),
            ),
            // Replaced by a new socket of the same user: still online, nothing to tell.
            RoomEvent::PeerLeft {
                reason: LeaveReason::Replaced,
                ..
            } => {}
            RoomEvent::PeerLeft { peer, .. } => frames.push(
                ServerMessage::UserStatus {
                    user_id: peer,
                    is_online: false,
                    user_info: None,
                }
                .to_json(),
            ),
            // The socket stays open, as the original left it; it is just no longer the user's.
            RoomEvent::Replaced { .. } | RoomEvent::Closed { .. } => self.check_still_registered(),
            RoomEvent::PeerReconnected { .. } | RoomEvent::Resumed { .. } => {}
        }
        Flow::Continue
    }

    fn rate_limited(&self) -> Option<String> {
        Some(ServerMessage::error(wire::RATE_LIMITED).to_json())
    }

    fn goodbye(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::testing::{connect, drain, send, signaling};
    use crate::signaling::rooms::{Departure, Mailbox};
    use serde_json::json;

    fn settings() -> Arc<Settings> {
        Arc::new(Settings {
            max_user_info_bytes: 4096,
        })
    }

    fn user(signaling: &Arc<Signaling>) -> (Oodaa, Mailbox) {
        let (id, mailbox) = connect(signaling);
        (Oodaa::new(signaling.clone(), id, settings()), mailbox)
    }

    async fn register(session: &mut Oodaa, id: &str, name: &str) {
        let replies = send(
            session,
            json!({"type": "register", "userId": id, "userInfo": {"name": name}}),
        )
        .await;
        assert!(replies.is_empty(), "{replies:?}");
    }

    #[tokio::test]
    async fn registering_answers_the_online_users_and_tells_the_others() {
        let s = signaling();
        let (mut alice, alice_box) = user(&s);
        let (mut bob, bob_box) = user(&s);
        register(&mut alice, "alice", "Alice").await;
        register(&mut bob, "bob", "Bob").await;
        assert_eq!(
            drain(&mut bob, &bob_box),
            [
                json!({"type": "registered", "userId": "bob", "onlineUsers": [
                    {"userId": "alice", "userInfo": {"name": "Alice"}},
                    {"userId": "bob", "userInfo": {"name": "Bob"}},
                ]})
            ]
        );
        assert_eq!(
            drain(&mut alice, &alice_box)[1],
            json!({"type": "user-status", "userId": "bob", "isOnline": true, "userInfo": {"name": "Bob"}})
        );
    }

    #[tokio::test]
    async fn a_relay_goes_by_user_id_and_a_stranger_is_refused() {
        let s = signaling();
        let (mut alice, alice_box) = user(&s);
        let (mut bob, bob_box) = user(&s);
        let (mut stranger, _) = user(&s);
        register(&mut alice, "alice", "Alice").await;
        register(&mut bob, "bob", "Bob").await;
        drain(&mut alice, &alice_box);
        drain(&mut bob, &bob_box);
        let request =
            json!({"type": "contact-request", "targetUserId": "alice", "requestData": {"n": 1}});
        assert!(send(&mut bob, request.clone()).await.is_empty());
        assert_eq!(
            drain(&mut alice, &alice_box),
            [json!({"type": "contact-request", "fromUserId": "bob",
                    "fromUserInfo": {"name": "Bob"}, "requestData": {"n": 1}})]
        );
        assert_eq!(
            send(&mut stranger, request).await,
            [json!({"type": "error", "message": "Not registered"})]
        );
        assert_eq!(
            send(
                &mut bob,
                json!({"type": "message", "targetUserId": "carol"})
            )
            .await,
            [json!({"type": "error", "message": "User carol is not online"})]
        );
    }

    #[tokio::test]
    async fn a_second_registration_replaces_the_first_without_an_offline_push() {
        let s = signaling();
        let (mut old, old_box) = user(&s);
        let (mut bob, bob_box) = user(&s);
        let (mut current, _current_box) = user(&s);
        register(&mut old, "alice", "Alice").await;
        register(&mut bob, "bob", "Bob").await;
        drain(&mut bob, &bob_box);
        register(&mut current, "alice", "Alice again").await;
        assert_eq!(
            drain(&mut bob, &bob_box),
            [
                json!({"type": "user-status", "userId": "alice", "isOnline": true,
                    "userInfo": {"name": "Alice again"}})
            ]
        );
        drain(&mut old, &old_box);
        assert!(
            old.user.is_none(),
            "the replaced socket is no longer alice's"
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
            [
                json!({"type": "user-status", "userId": "alice", "isOnline": false, "userInfo": null})
            ]
        );
    }

    #[tokio::test]
    async fn a_user_info_over_the_cap_registers_nothing() {
        let s = signaling();
        let (mut alice, alice_box) = user(&s);
        let big = "x".repeat(5000);
        assert_eq!(
            send(
                &mut alice,
                json!({"type": "register", "userId": "alice", "userInfo": {"name": big}})
            )
            .await,
            [json!({"type": "error", "message": "userInfo too large"})]
        );
        assert!(drain(&mut alice, &alice_box).is_empty());
        assert_eq!(s.rooms().members(&lobby()).await.unwrap(), None);
    }
}
