//! DropSilk's durable rooms, as the pairing store keeps them (the dropsilk dialect).
//!
//! A room is a six-character code, a host, at most one guest, and an expiry that every read and
//! write slides forward. What each operation does to a room is written here once, as plain
//! functions on [`Room`], and each store operation once, as an [`Op`] from the room as loaded to
//! the answer and the room's [`Fate`], so every store implementation loads a room, applies the
//! same operation and saves it, in one transaction.

use serde::{Deserialize, Serialize};

use super::Millis;

/// A participant as it enters a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewParticipant {
    /// Its id (twelve characters of `[0-9a-z]`, made by the dialect).
    pub id: String,
    /// Its display name (1 to 50 characters, trimmed).
    pub name: String,
}

/// A participant of a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// It has picked files to send.
    pub ready: bool,
    /// How many files.
    pub file_count: u64,
    /// How many bytes in all.
    pub total_bytes: f64,
    /// It asked to share its screen.
    pub screen_share: bool,
    /// It asked to chat.
    pub chat: bool,
}

impl Participant {
    /// A participant that has done nothing yet.
    pub fn new(p: NewParticipant) -> Self {
        Self {
            id: p.id,
            name: p.name,
            ready: false,
            file_count: 0,
            total_bytes: 0.0,
            screen_share: false,
            chat: false,
        }
    }
}

/// A participant's place in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Created the room (or was promoted when the host left).
    Host,
    /// Joined it.
    Guest,
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    /// The code (six characters of the DropSilk alphabet, upper case).
    pub code: String,
    /// The host.
    pub host: Participant,
    /// The guest, if one joined.
    pub guest: Option<Participant>,
    /// When it expires unless read or written before.
    pub expires_at: Millis,
}

/// What a participant asks to change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// It picked files: ready, with their count and size.
    Ready {
        /// Files.
        file_count: u64,
        /// Bytes.
        total_bytes: f64,
    },
    /// It asks to chat, or stops asking.
    Chat(bool),
    /// It asks to share its screen, or stops.
    ScreenShare(bool),
}

/// Outcome of joining a room.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined {
    /// The guest is in; the room as it is now.
    Room(Room),
    /// No live room has this code.
    NotFound,
    /// The room has its guest.
    Full,
}

/// Outcome of a participant's change.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    /// Done; the room as it is now.
    Room(Room),
    /// No live room has this code, or the participant is not in it.
    NotFound,
    /// Screen sharing was asked for while the peer shares.
    PeerSharing,
}

/// Why a room refused a join or a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The participant is not in the room.
    NotInRoom,
    /// The room has its guest.
    Full,
    /// Screen sharing was asked for while the peer shares.
    PeerSharing,
}

impl From<Refused> for Joined {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Full => Joined::Full,
            Refused::NotInRoom | Refused::PeerSharing => Joined::NotFound,
        }
    }
}

impl From<Refused> for Changed {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::PeerSharing => Changed::PeerSharing,
            Refused::NotInRoom | Refused::Full => Changed::NotFound,
        }
    }
}

/// Outcome of removing a participant whose connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// The guest left: its place and every chat and share request are cleared.
    Guest,
    /// The host left: the guest took its place, and the requests are cleared.
    HostReplacedByGuest,
    /// The host left alone: the room is deleted.
    Room,
    /// No live room has this code, or the participant is not in it.
    NotFound,
}

impl Room {
    /// A new room with its host.
    pub fn new(code: String, host: NewParticipant, expires_at: Millis) -> Self {
        Self {
            code,
            host: Participant::new(host),
            guest: None,
            expires_at,
        }
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at <= now
    }

    /// The participant's role, if it is in the room.
    pub fn role_of(&self, participant: &str) -> Option<Role> {
        if self.host.id == participant {
            Some(Role::Host)
        } else if self.guest.as_ref().is_some_and(|g| g.id == participant) {
            Some(Role::Guest)
        } else {
            None
        }
    }

    /// The participant and the other one, if it is in the room.
    pub fn me_and_peer(&self, participant: &str) -> Option<(&Participant, Option<&Participant>)> {
        match self.role_of(participant)? {
            Role::Host => Some((&self.host, self.guest.as_ref())),
            Role::Guest => Some((self.guest.as_ref()?, Some(&self.host))),
        }
    }

    /// Takes `guest` in, unless the room has one.
    pub fn join(&mut self, guest: NewParticipant) -> Result<(), Refused> {
        if self.guest.is_some() {
            return Err(Refused::Full);
        }
        self.guest = Some(Participant::new(guest));
        Ok(())
    }

    /// Applies a participant's change.
    pub fn apply(&mut self, participant: &str, change: Change) -> Result<(), Refused> {
        let role = self.role_of(participant).ok_or(Refused::NotInRoom)?;
        let peer_shares = match role {
            Role::Host => self.guest.as_ref().is_some_and(|g| g.screen_share),
            Role::Guest => self.host.screen_share,
        };
        let me = match role {
            Role::Host => &mut self.host,
            Role::Guest => self.guest.as_mut().ok_or(Refused::NotInRoom)?,
        };
        match change {
            Change::Ready {
                file_count,
                total_bytes,
            } => {
                me.ready = true;
                me.file_count = file_count;
                me.total_bytes = total_bytes;
            }
            Change::Chat(active) => me.chat = active,
            Change::ScreenShare(true) if peer_shares => return Err(Refused::PeerSharing),
            Change::ScreenShare(active) => me.screen_share = active,
        }
        Ok(())
    }

    /// Takes a participant out: the guest's place is cleared; a host with a guest is replaced
    /// by it; either way chat and share requests end. `Removed::Room` means the room is to be
    /// deleted.
    pub fn remove(&mut self, participant: &str) -> Removed {
        let removed = match self.role_of(participant) {
            None => return Removed::NotFound,
            Some(Role::Guest) => {
                self.guest = None;
                Removed::Guest
            }
            Some(Role::Host) => match self.guest.take() {
                Some(guest) => {
                    self.host = guest;
                    Removed::HostReplacedByGuest
                }
                None => return Removed::Room,
            },
        };
        self.host.chat = false;
        self.host.screen_share = false;
        removed
    }
}

/// What becomes of a room after an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Unchanged (its expiry not slid either: nobody who may see it looked).
    Keep,
    /// Saved as given (with the slid expiry).
    Save(Room),
    /// Deleted.
    Delete,
}

/// One store operation on the live room of a code (`None`: no live room), with its expiry
/// already slid: the answer, and what becomes of the room. A store may run it more than once
/// (an optimistic store retries after a concurrent change), so it only reads what it captured.
pub trait Op<T>: Fn(Option<Room>) -> (T, Fate) + Send + Sync + 'static {}

impl<T, F: Fn(Option<Room>) -> (T, Fate) + Send + Sync + 'static> Op<T> for F {}

/// Joining as `guest`.
pub fn join_op(guest: NewParticipant) -> impl Op<Joined> {
    move |room| match room {
        None => (Joined::NotFound, Fate::Keep),
        Some(mut room) => match room.join(guest.clone()) {
            Ok(()) => (Joined::Room(room.clone()), Fate::Save(room)),
            Err(refused) => (refused.into(), Fate::Keep),
        },
    }
}

/// `participant` reading its room (which slides the expiry).
pub fn read_op(participant: String) -> impl Op<Option<Room>> {
    move |room| match room {
        Some(room) if room.role_of(&participant).is_some() => {
            (Some(room.clone()), Fate::Save(room))
        }
        _ => (None, Fate::Keep),
    }
}

/// `participant`'s change.
pub fn change_op(participant: String, change: Change) -> impl Op<Changed> {
    move |room| match room {
        None => (Changed::NotFound, Fate::Keep),
        Some(mut room) => match room.apply(&participant, change) {
            Ok(()) => (Changed::Room(room.clone()), Fate::Save(room)),
            Err(refused) => (refused.into(), Fate::Keep),
        },
    }
}

/// Taking `participant` out after its connection closed.
pub fn remove_op(participant: String) -> impl Op<Removed> {
    move |room| match room {
        None => (Removed::NotFound, Fate::Keep),
        Some(mut room) => match room.remove(&participant) {
            Removed::NotFound => (Removed::NotFound, Fate::Keep),
            Removed::Room => (Removed::Room, Fate::Delete),
            removed => (removed, Fate::Save(room)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str) -> NewParticipant {
        NewParticipant {
            id: id.into(),
            name: format!("{id}-name"),
        }
    }

    fn room() -> Room {
        let mut room = Room::new("ABC234".into(), person("host"), 1000);
        room.join(person("guest")).unwrap();
        room
    }

    #[test]
    fn a_room_takes_one_guest() {
        let mut room = room();
        assert_eq!(room.join(person("third")), Err(Refused::Full));
        assert_eq!(room.role_of("host"), Some(Role::Host));
        assert_eq!(room.role_of("guest"), Some(Role::Guest));
        assert_eq!(room.role_of("third"), None);
        let (me, peer) = room.me_and_peer("guest").unwrap();
        assert_eq!(
            (me.id.as_str(), peer.unwrap().id.as_str()),
            ("guest", "host")
        );
    }

    #[test]
    fn only_one_side_shares_its_screen_at_a_time() {
        let mut room = room();
        room.apply("guest", Change::ScreenShare(true)).unwrap();
        assert_eq!(
            room.apply("host", Change::ScreenShare(true)),
            Err(Refused::PeerSharing)
        );
        room.apply("host", Change::ScreenShare(false)).unwrap();
        room.apply("guest", Change::ScreenShare(false)).unwrap();
        room.apply("host", Change::ScreenShare(true)).unwrap();
        assert!(room.host.screen_share);
        assert_eq!(
            room.apply("nobody", Change::Chat(true)),
            Err(Refused::NotInRoom)
        );
    }

    #[test]
    fn ready_records_the_files() {
        let mut room = room();
        room.apply(
            "guest",
            Change::Ready {
                file_count: 3,
                total_bytes: 300.0,
            },
        )
        .unwrap();
        let guest = room.guest.as_ref().unwrap();
        assert_eq!(
            (guest.ready, guest.file_count, guest.total_bytes),
            (true, 3, 300.0)
        );
        assert!(!room.host.ready);
    }

    #[test]
    fn the_guest_leaving_clears_its_place_and_every_request() {
        let mut room = room();
        room.apply("host", Change::Chat(true)).unwrap();
        room.apply("guest", Change::ScreenShare(true)).unwrap();
        assert_eq!(room.remove("guest"), Removed::Guest);
        assert!(room.guest.is_none());
        assert!(!room.host.chat && !room.host.screen_share);
    }

    #[test]
    fn the_host_leaving_promotes_the_guest_or_ends_the_room() {
        let mut room = room();
        room.apply(
            "guest",
            Change::Ready {
                file_count: 1,
                total_bytes: 5.0,
            },
        )
        .unwrap();
        room.apply("guest", Change::Chat(true)).unwrap();
        assert_eq!(room.remove("host"), Removed::HostReplacedByGuest);
        assert_eq!(room.host.id, "guest");
        assert!(room.host.ready && !room.host.chat);
        assert!(room.guest.is_none());
        assert_eq!(room.remove("guest"), Removed::Room);
        assert_eq!(room.remove("stranger"), Removed::NotFound);
    }
}
