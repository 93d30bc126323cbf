//! The pairing store: pending join codes and paired rooms, behind one interface.
//!
//! [`PairingStore`] is what the REST handlers, the sessions and the sweeper use; [`sqlite`] is its
//! embedded implementation (one node), and a shared implementation can take its place without
//! callers knowing which one they have. Its errors say what the caller can do about them
//! ([`StoreError::Unavailable`]: try again later) and never name a driver type.
//!
//! - [`desk`]: the pairing requests as a client makes them, each counted against the client's
//!   limits in the same step as the store work ([`PairingDesk`]).
//! - [`sqlite`]: embedded SQLite (read pool, one writer thread, migrations from `sql/`).
//! - [`dropsilk`]: DropSilk's durable rooms (the dropsilk dialect) and what each change does.

pub mod desk;
pub mod dropsilk;
pub mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::ids::{DeviceId, JoinCode, RoomId};

pub use desk::{Desk, Guard, Guarded, LocalDesk, PairingDesk};
pub use sqlite::SqliteStore;

/// The store every part of the server shares.
pub type Store = Arc<dyn PairingStore>;

/// A store answer that will come.
pub type StoreFuture<T> = BoxFuture<'static, Result<T, StoreError>>;

/// An instant as stored: Unix epoch milliseconds, UTC.
pub type Millis = i64;

/// The current instant in store units.
pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// How long a deleted room's id is remembered, so that clients holding it cannot revive it.
pub const ROOM_TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A store failure: never the client's input.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is locked by someone else right now; the same request
    /// may work later (HTTP 503 `store_unavailable`).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something it should not have (a corrupt row, a failed migration, a
    /// crashed worker); the details are for the log only.
    #[error("store failure: {0}")]
    Internal(String),
}

/// Pending codes and paired rooms. Every method's change is atomic: concurrent accepts of one
/// code, from any number of callers, see one winner.
pub trait PairingStore: Send + Sync + 'static {
    /// A trivial round trip that also takes the write lock, for health checks.
    fn ping(&self) -> StoreFuture<()>;

    /// Pending codes that have not expired (accepted ones included, until they expire).
    fn count_live_pendings(&self) -> StoreFuture<u64>;

    /// Stores a pending code for the creator, unless its client holds its maximum of live codes
    /// or (for a chosen `joinid`) the code is live. With no `joinid`, picks a random six-digit
    /// code that is not live.
    fn create_pending(
        &self,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> StoreFuture<Created>;

    /// Accepts a live code for `device`: creates the room on the first accept, adds later
    /// devices while the room has room, and repeats an earlier acceptance by the same device.
    fn accept(&self, joinid: JoinCode, device: DeviceId) -> StoreFuture<Acceptance>;

    /// client1's poll: has its live code been accepted, and into which room?
    fn check(&self, joinid: JoinCode, client1: DeviceId) -> StoreFuture<Checked>;

    /// What a room id names: a paired room, a deleted one, or nothing.
    fn lookup_room(&self, roomid: RoomId) -> StoreFuture<RoomLookup>;

    /// Deletes a paired room and the codes that led to it, and remembers that it is dead;
    /// returns how many rooms went (0 or 1).
    fn delete_room(&self, roomid: RoomId) -> StoreFuture<usize>;

    /// Deletes every code and room that any of `devices` is a member of.
    fn purge_devices(&self, devices: Vec<DeviceId>) -> StoreFuture<Purged>;

    /// Deletes codes that expired at or before `now` (and tombstones past their time).
    fn sweep(&self, now: Millis) -> StoreFuture<Swept>;

    /// DropSilk: creates a room with its host, expiring `ttl` from now, unless a live room has
    /// the code (`None`: the caller tries another). An expired room of that code is replaced.
    fn dropsilk_create(
        &self,
        code: String,
        host: dropsilk::NewParticipant,
        ttl: Duration,
    ) -> StoreFuture<Option<dropsilk::Room>>;

    /// DropSilk: takes a guest into the live room of `code` (see [`dropsilk::Room::join`]) and
    /// slides its expiry to `ttl` from now.
    fn dropsilk_join(
        &self,
        code: String,
        guest: dropsilk::NewParticipant,
        ttl: Duration,
    ) -> StoreFuture<dropsilk::Joined>;

    /// DropSilk: the live room of `code`, if `participant` is in it, with its expiry slid to
    /// `ttl` from now (every look at a room keeps it alive).
    fn dropsilk_room(
        &self,
        code: String,
        participant: String,
        ttl: Duration,
    ) -> StoreFuture<Option<dropsilk::Room>>;

    /// DropSilk: applies a participant's change (see [`dropsilk::Room::apply`]) and slides the
    /// expiry.
    fn dropsilk_change(
        &self,
        code: String,
        participant: String,
        change: dropsilk::Change,
        ttl: Duration,
    ) -> StoreFuture<dropsilk::Changed>;

    /// DropSilk: takes out a participant whose connection closed (see
    /// [`dropsilk::Room::remove`]): the room is deleted when its host leaves alone, else its
    /// expiry slides.
    fn dropsilk_remove(
        &self,
        code: String,
        participant: String,
        ttl: Duration,
    ) -> StoreFuture<dropsilk::Removed>;

    /// DropSilk: deletes rooms that expired at or before `now`; returns how many. Every other
    /// method treats them as absent already.
    fn dropsilk_sweep(&self, now: Millis) -> StoreFuture<usize>;

    /// Creates, as a named room of `space` living until `exp`, the first of `candidates` that
    /// names no live room there (an expired room of that name is replaced); one transaction, so
    /// concurrent creators never get the same name. Returns the name it took, if any. A named
    /// room is a dialect's room that exists apart from its members (PrivyDrop's `get_room`);
    /// who is in it is the room directory's business.
    fn create_named_room(
        &self,
        space: &'static str,
        candidates: Vec<String>,
        exp: Millis,
    ) -> StoreFuture<Option<String>>;

    /// Whether `id` names a live room of `space`.
    fn named_room_exists(&self, space: &'static str, id: String) -> StoreFuture<bool>;

    /// Moves a live named room's expiry to `exp`, sooner or later; returns whether it was live.
    fn set_named_room_expiry(
        &self,
        space: &'static str,
        id: String,
        exp: Millis,
    ) -> StoreFuture<bool>;

    /// Deletes named rooms that expired at or before `now`; returns how many.
    fn sweep_named_rooms(&self, now: Millis) -> StoreFuture<usize>;

    /// Counts one visit from `referrer` on `day` (`YYYY-MM-DD`, UTC). A day holds at most
    /// `max_per_day` referrers; visits from new ones beyond that count as [`OTHER_REFERRERS`].
    fn count_referrer(&self, day: String, referrer: String, max_per_day: u32) -> StoreFuture<()>;

    /// Referrer counts of day `since` and later, by day, then referrer.
    fn referrers(&self, since: String) -> StoreFuture<ReferrerCounts>;

    /// Deletes the referrer counts of days before `before`; returns how many rows went.
    fn forget_referrers(&self, before: String) -> StoreFuture<usize>;
}

/// What visits from referrers beyond a day's maximum are counted as.
pub const OTHER_REFERRERS: &str = "(other)";

/// Visits by day (`YYYY-MM-DD`), then referrer.
pub type ReferrerCounts = BTreeMap<String, BTreeMap<String, u64>>;

/// A pending code as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The code.
    pub joinid: JoinCode,
    /// When it stops being accepted.
    pub exp: Millis,
}

/// Outcome of creating a pending code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored.
    Ok(Pending),
    /// The requested code is live.
    Conflict,
    /// No free server-generated code was found.
    Exhausted,
    /// The client holds its maximum of live codes; the earliest of them expires then.
    TooManyPending {
        /// When the client's earliest live code expires.
        next_expiry: Millis,
    },
}

/// Who creates a code, and how many live codes such a creator may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creator {
    /// The device.
    pub client1: DeviceId,
    /// The client's key (IPv4 address or IPv6 /64), as the per-client limits count it.
    pub client_key: String,
    /// Live codes this client may hold at once (0: no cap).
    pub max_pending: u32,
    /// Devices the code's room admits, client1 included.
    pub capacity: u32,
}

/// What a room id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomLookup {
    /// A paired room.
    Paired(Room),
    /// A paired room that was deleted or purged: it stays dead.
    Deleted,
    /// Nothing the store knows of.
    Unknown,
}

/// Outcome of accepting a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The room of this pairing (new, or the one this device already accepted into).
    Room(RoomId),
    /// No live code by that id.
    NotFound,
    /// The room is full (accepted by other devices), or the device is client1.
    Conflict,
}

/// What an accept did, with what the metrics need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    /// The outcome.
    pub outcome: Accepted,
    /// When the code was created, if this accept created its room (not for a repeat, nor for
    /// a later device joining the room).
    pub created_at: Option<Millis>,
}

/// Outcome of client1 polling its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Accepted; the room it led to.
    Room(RoomId),
    /// Live, not accepted yet.
    Waiting,
    /// No live code by that id for that client1.
    NotFound,
}

/// A paired room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The room id.
    pub roomid: RoomId,
    /// The device that created the code.
    pub client1: DeviceId,
    /// The device that accepted it first.
    pub client2: DeviceId,
    /// Devices the room admits.
    pub capacity: u32,
    /// Every member device in the order it joined the pairing: client1, client2, then later
    /// accepters.
    pub members: Vec<DeviceId>,
}

impl Room {
    /// Whether `device` is one of the room's members.
    pub fn has_member(&self, device: &DeviceId) -> bool {
        self.members.contains(device)
    }
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// Rooms deleted, so live sessions in them can be closed.
    pub rooms: Vec<RoomId>,
    /// Pending rows deleted.
    pub pendings: usize,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired rows deleted.
    pub removed: usize,
    /// Of them, codes that expired without being accepted.
    pub unaccepted: usize,
}
