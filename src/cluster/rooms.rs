//! The room directory and delivery of a node in cluster mode.
//!
//! Membership lives in Redis (see `lua/rooms_prelude.lua` for the keys); every change (join,
//! leave, detach, resume, close, purge, a dead node's members) is one Lua script, atomic across
//! nodes, whose answer is the room as it is after the change plus what changed. The node that
//! ran it applies that answer to its own sessions at once and publishes it on the room's channel
//! `sp:c:<room>`; every other node with members in the room is subscribed there and applies it
//! to its sessions. Each node keeps a *replica* of the rooms its own sessions are in (members,
//! where their sessions are, the room's version) and applies changes in version order, so all
//! nodes tell their members the same story in the same order.
//!
//! A relayed message is checked and routed against the sender's replica: local recipients get it
//! at once, and one message on the room's channel carries it to every other node, which hands it
//! to its own recipients (never the sender), so each recipient gets it exactly once and one
//! sender's messages in order (one publishing task per node, one channel per room). A detached
//! member's messages are kept in Redis for it.
//!
//! Redis unreachable: changes fail (`Unavailable`), relays between members on this node go on,
//! and a session that ends meanwhile still tells its local peers. When Redis is back the node
//! re-registers its members and forgets the ones that ended while it could not say so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Redis, RedisError};
use crate::ids::DeviceId;
use crate::signaling::queue;
use crate::signaling::rooms::local::CLOSE_NORMAL;
use crate::signaling::rooms::{
    Capacity, Delivery, Departure, Frame, JoinOutcome, JoinRequest, LeaveReason, LocalDelivery,
    Mailbox, MemberInfo, Outbound, PeerId, RelayError, Relayed, ResumeError, ResumeLimits,
    RoomCounts, RoomDirectory, RoomEvent, RoomKey, RoomOptions, RoomSummary, RoomsFuture,
    SessionId, SessionRooms, Target, Unavailable, new_resume_token, note_session_room,
};
use crate::telemetry::Metrics;
use crate::telemetry::story::RoomEnd;

/// Messages waiting for the publishing task; beyond it relays to other nodes are dropped (and
/// counted), never buffered without bound.
const OUTGOING_QUEUE: usize = 65_536;

/// How long a replica waits for a missing change before it reads the room from Redis.
const GAP_WAIT: Duration = Duration::from_millis(500);

/// The sender of a frame handed over from outside its room (no session has this id: node
/// numbers start at 1).
const NO_SENDER: SessionId = SessionId(0);

/// Most messages published to other nodes in one round trip.
const PUBLISH_BATCH: usize = 256;

/// Channels asked for in one `SUBSCRIBE` when a node subscribes its rooms' channels again
/// after a reconnect: a node with many rooms takes few round trips, none of them long.
const RESUBSCRIBE_BATCH: usize = 1_000;

/// How long a stopping node keeps publishing what is already queued for other nodes.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long a resume waits for this node's frames still on their way to the member's keep.
const KEEP_FLUSH_WAIT: Duration = Duration::from_millis(500);

/// How often the janitor looks for stalled replicas, unused subscriptions and expired
/// detachments.
const JANITOR_INTERVAL: Duration = Duration::from_millis(250);

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!(
        "{}\n{}",
        include_str!("lua/rooms_prelude.lua"),
        body
    ))
}

static JOIN: LazyLock<redis::Script> = LazyLock::new(|| script(include_str!("lua/room_join.lua")));
static LEAVE: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("lua/room_leave.lua")));
static DETACH: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("lua/room_detach.lua")));
static KEEP: LazyLock<redis::Script> = LazyLock::new(|| script(include_str!("lua/room_keep.lua")));
static RESUME: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("lua/room_resume.lua")));
static EXPIRE: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("lua/room_expire.lua")));
static CLOSE: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("lua/room_close.lua")));
static SWEEP_REFS: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("lua/room_sweep_refs.lua")));
static STATE: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("lua/room_state.lua")));

/// The channel of a room.
fn channel(key: &RoomKey) -> String {
    format!("sp:c:{}", key.as_str())
}

/// The channel every node listens on.
const ALL: &str = "sp:all";

/// A member as Redis keeps it.
#[derive(Debug, Clone, Deserialize)]
struct StoredMember {
    peer: String,
    info: String,
    session: Option<String>,
    node: u16,
    detached: Option<u64>,
}

/// A room as a script leaves it, and what the script changed.
#[derive(Debug, Clone, Deserialize)]
struct RoomState {
    key: String,
    v: u64,
    opts: Option<String>,
    members: Option<Vec<StoredMember>>,
    change: Change,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Change {
    Joined {
        peer: String,
        victim: Option<StoredMember>,
    },
    Rejoined {
        peer: String,
        announce: bool,
    },
    Left {
        peer: String,
        reason: String,
        member: StoredMember,
    },
    Detached {
        peer: String,
    },
    Reconnected {
        peer: String,
        session: String,
        kept: Option<Vec<String>>,
        token: String,
    },
    Closed {
        epoch: u64,
    },
    Sync,
}

/// What nodes tell each other on a room's channel or on [`ALL`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Bus {
    /// A room changed; `state` is a script's answer, as JSON.
    Change { o: u16, state: String },
    /// A message for the room's members on other nodes.
    Relay {
        o: u16,
        key: String,
        from: u64,
        to: Option<String>,
        kind: String,
        frame: String,
    },
    /// A device was purged: close its sessions.
    Device { o: u16, device: String },
    /// A room was closed: joins checked before this epoch are refused.
    Epoch { o: u16, epoch: u64 },
}

impl Bus {
    /// A relay, the bulk of the traffic, is a header line of numbers and then its fields as
    /// they are, one after the other (no escaping of the frame); everything else is JSON.
    fn encode(&self) -> String {
        match self {
            Bus::Relay {
                o,
                key,
                from,
                to,
                kind,
                frame,
            } => {
                let to = to.as_deref().unwrap_or("");
                let (k, t, n) = (key.len(), to.len(), kind.len());
                format!("R{o} {from} {k} {t} {n}\n{key}{to}{kind}{frame}")
            }
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }

    fn decode(payload: &[u8]) -> Result<Bus, String> {
        let Some(relay) = payload.strip_prefix(b"R") else {
            return serde_json::from_slice(payload).map_err(|e| e.to_string());
        };
        let text = std::str::from_utf8(relay).map_err(|e| e.to_string())?;
        let (header, body) = text.split_once('\n').ok_or("relay without a header")?;
        let numbers: Vec<u64> = header
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("relay header: {e}"))?;
        let [o, from, k, t, n] = numbers[..] else {
            return Err("relay header: five numbers expected".into());
        };
        let field = |at: usize, len: u64| {
            let end = at.checked_add(usize::try_from(len).ok()?)?;
            body.get(at..end).map(|f| (f, end))
        };
        let (key, at) = field(0, k).ok_or("relay: short key")?;
        let (to, at) = field(at, t).ok_or("relay: short target")?;
        let (kind, at) = field(at, n).ok_or("relay: short kind")?;
        Ok(Bus::Relay {
            o: u16::try_from(o).map_err(|e| e.to_string())?,
            key: key.to_owned(),
            from,
            to: (!to.is_empty()).then(|| to.to_owned()),
            kind: kind.to_owned(),
            frame: body[at..].to_owned(),
        })
    }
}

/// What the publishing task does, in order.
enum Outgoing {
    Publish {
        channel: String,
        message: String,
    },
    Keep {
        key: RoomKey,
        peer: PeerId,
        frame: String,
    },
}

/// A member as a replica knows it.
#[derive(Debug, Clone)]
struct Member {
    info: MemberInfo,
    session: Option<SessionId>,
    detached: bool,
}

#[derive(Debug, Clone)]
struct Replica {
    v: u64,
    options: RoomOptions,
    members: Vec<Member>,
    /// Changes that came ahead of one still missing. Boxed: most replicas never wait for one,
    /// and every replica would carry the map and the instant otherwise.
    gap: Option<Box<Gap>>,
}

/// Changes that came ahead of one still missing.
#[derive(Debug, Clone)]
struct Gap {
    /// By version. Boxed: a map node holds eleven entries, and many rooms may wait on a change
    /// at once (a burst of joins).
    pending: BTreeMap<u64, Box<RoomState>>,
    /// Since when a change has been missing.
    since: Instant,
}

#[derive(Default)]
struct State {
    /// Boxed: the map's table has room to grow (up to twice the entries it holds), and empty
    /// slots then cost a pointer each, not a whole replica.
    replicas: HashMap<RoomKey, Box<Replica>>,
    /// The rooms each local session is in, and as whom.
    sessions: SessionRooms,
    /// The device each local session last joined with.
    devices: HashMap<SessionId, DeviceId>,
    /// Room channels this node is subscribed to.
    subscribed: HashSet<RoomKey>,
    /// Joins and resumes in flight, by room: the janitor keeps these rooms' channels although
    /// they have no replica yet.
    joining: HashMap<RoomKey, usize>,
    /// Changes of a room this node has no replica of yet that came ahead of a local join's own
    /// answer (the channel and the command connection race): they follow that answer, so its
    /// member hears that it joined before anything that happened after.
    early: HashMap<RoomKey, Vec<RoomState>>,
    /// Frames for a member still on their way through the keep path: until they are through,
    /// later frames for it take the same path, so they cannot overtake them.
    keeping: HashMap<(RoomKey, PeerId), usize>,
}

/// A join or resume in flight (see [`State::joining`]).
struct Joining<'a> {
    inner: &'a Inner,
    key: RoomKey,
}

impl Drop for Joining<'_> {
    fn drop(&mut self) {
        let early = {
            let mut state = self.inner.state.lock().unwrap();
            let mut done = false;
            if let Some(n) = state.joining.get_mut(&self.key) {
                *n -= 1;
                done = *n == 0;
            }
            if done {
                state.joining.remove(&self.key);
                state.early.remove(&self.key)
            } else {
                None
            }
        };
        // The last join in flight is through: what came ahead of it follows, in order.
        let mut early = early.unwrap_or_default();
        early.sort_by_key(|state| state.v);
        for state in early {
            self.inner.apply(state);
        }
    }
}

/// The room directory and delivery of a node in cluster mode.
#[derive(Clone)]
pub struct ClusterRooms {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    node: u16,
    delivery: Arc<LocalDelivery>,
    metrics: Arc<Metrics>,
    resume: ResumeLimits,
    state: Mutex<State>,
    outgoing: mpsc::Sender<Outgoing>,
    epoch: AtomicU64,
    detachments: AtomicU64,
    shutting_down: AtomicBool,
    /// Set while Redis cannot be reached, or this node's members may not be in Redis as it has
    /// them (a change's answer did not come, the node was taken for dead); cleared by the
    /// resync that follows.
    degraded: AtomicBool,
    /// Since when the node has been in step with Redis: its start, or the last resync.
    settled_since: Mutex<Instant>,
    /// Serializes subscribing and unsubscribing, so that the janitor's unsubscribe of a room
    /// it found unused cannot land after a join's subscribe to it.
    subscriptions: tokio::sync::Mutex<()>,
}

fn member_of(stored: &StoredMember) -> Member {
    let info = serde_json::from_str::<MemberInfo>(&stored.info)
        .unwrap_or_else(|_| MemberInfo::peer(stored.peer.as_str().into()));
    Member {
        info,
        session: stored
            .session
            .as_deref()
            .and_then(|s| s.parse().ok())
            .map(SessionId),
        detached: stored.detached.is_some(),
    }
}

/// Makes a rebuilt replica's members share what they can instead of holding copies: an
/// unchanged member keeps the info it had (its strings are the ones the session and the room
/// list already hold), and members on one network share its group's string.
fn share_infos(members: &mut [Member], old: Option<&Replica>) {
    let old: HashMap<&str, &MemberInfo> = old
        .map(|r| r.members.iter().map(|m| (&*m.info.peer, &m.info)).collect())
        .unwrap_or_default();
    let mut networks: HashSet<Arc<str>> = HashSet::new();
    for member in members {
        if let Some(same) = old.get(&*member.info.peer).filter(|o| ***o == member.info) {
            member.info = MemberInfo::clone(same);
        }
        if let Some(network) = &mut member.info.network {
            match networks.get(network) {
                Some(shared) => *network = shared.clone(),
                None => {
                    networks.insert(network.clone());
                }
            }
        }
    }
}

fn options_of(json: Option<&str>) -> RoomOptions {
    json.and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or(RoomOptions::room(2))
}

/// The stored reason of a member taken out at someone else's request; it reads as `Left`.
const REMOVED: &str = "removed";

fn reason_of(reason: &str) -> LeaveReason {
    match reason {
        "left" | REMOVED => LeaveReason::Left,
        "timeout" => LeaveReason::Timeout,
        "replaced" => LeaveReason::Replaced,
        "purged" => LeaveReason::Purged,
        _ => LeaveReason::Disconnected,
    }
}

fn reason_str(reason: LeaveReason) -> &'static str {
    match reason {
        LeaveReason::Left => "left",
        LeaveReason::Timeout => "timeout",
        LeaveReason::Replaced => "replaced",
        LeaveReason::Purged => "purged",
        LeaveReason::Disconnected | LeaveReason::Detached => "disconnected",
    }
}

impl From<RedisError> for Unavailable {
    fn from(e: RedisError) -> Self {
        Unavailable(e.0)
    }
}

impl ClusterRooms {
    /// The directory of node `node`, delivering to its own sessions through `delivery`. Spawns
    /// its background tasks (the publisher, the bus listener, the janitor), which stop with
    /// `shutdown`; the publisher first sends what is already queued, and its handle is returned
    /// so the node can wait for that.
    pub async fn start(
        redis: Redis,
        node: u16,
        delivery: Arc<LocalDelivery>,
        metrics: Arc<Metrics>,
        resume: ResumeLimits,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        shutdown: CancellationToken,
    ) -> Result<(Self, JoinHandle<()>), RedisError> {
        let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
        let epoch = redis
            .query::<Option<u64>>(redis::cmd("GET").arg("sp:epoch"))
            .await?
            .unwrap_or(0);
        redis.subscribe(ALL).await?;
        let inner = Arc::new(Inner {
            redis,
            node,
            delivery,
            metrics,
            resume,
            state: Mutex::default(),
            outgoing,
            epoch: AtomicU64::new(epoch),
            detachments: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            settled_since: Mutex::new(Instant::now()),
            subscriptions: tokio::sync::Mutex::new(()),
        });
        let publisher = tokio::spawn(publish_all(inner.clone(), queue, shutdown.clone()));
        tokio::spawn(listen(inner.clone(), pushes, shutdown.clone()));
        tokio::spawn(janitor(inner.clone(), shutdown));
        Ok((Self { inner }, publisher))
    }

    /// Since when this node has been in step with Redis (its start, or its last recovery);
    /// `None` while it is not.
    pub fn settled_since(&self) -> Option<Instant> {
        if self.inner.degraded.load(Ordering::Acquire) {
            None
        } else {
            Some(*self.inner.settled_since.lock().unwrap())
        }
    }

    /// Registers this node's members in Redis again as soon as Redis answers (the node was
    /// taken for dead and its members taken out of their rooms).
    pub fn reconcile(&self) {
        self.inner.degraded.store(true, Ordering::Release);
    }

    /// Removes the members of a node that stopped renewing its heartbeat (called by the node
    /// registry's reaper, on one node only).
    pub async fn reap(&self, dead: u16) -> Result<usize, RedisError> {
        let refs: Vec<String> = self
            .inner
            .redis
            .query(redis::cmd("SMEMBERS").arg(format!("sp:node:{dead}:m")))
            .await?;
        let states = self
            .inner
            .sweep_refs(LeaveReason::Disconnected, &refs)
            .await?;
        self.inner
            .redis
            .query::<i64>(redis::cmd("DEL").arg(format!("sp:node:{dead}:m")))
            .await?;
        Ok(states)
    }

    /// Cluster-wide counts: rooms, rooms with two members or more, detached members.
    pub async fn cluster_counts(&self) -> Result<RoomCounts, RedisError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SCARD")
            .arg("sp:rooms")
            .cmd("SCARD")
            .arg("sp:rooms:ready")
            .cmd("ZCARD")
            .arg("sp:detached");
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(
            "return {redis.call('SCARD','sp:rooms'), redis.call('SCARD','sp:rooms:ready'), \
             redis.call('ZCARD','sp:detached')}",
        )
        .arg(0);
        drop(pipe);
        let (rooms, rooms_ready, detached): (usize, usize, usize) =
            self.inner.redis.query(&cmd).await?;
        Ok(RoomCounts {
            rooms,
            rooms_ready,
            detached,
        })
    }
}

impl Inner {
    fn send(&self, session: Option<SessionId>, event: RoomEvent) {
        if let Some(session) = session {
            self.delivery
                .deliver(session, Outbound::Event(Arc::new(event)));
        }
    }

    fn queue(&self, op: Outgoing) {
        if self.outgoing.try_send(op).is_err() {
            self.metrics.bus_dropped();
            log::warn!("cluster: outgoing queue full, a message to other nodes was dropped");
        }
    }

    fn publish(&self, channel: String, bus: &Bus) {
        self.queue(Outgoing::Publish {
            channel,
            message: bus.encode(),
        });
    }

    /// Applies a script's answer here and tells the other nodes.
    fn announce(&self, state_json: String) {
        let Ok(state) = serde_json::from_str::<RoomState>(&state_json) else {
            log::error!("cluster: unreadable room state from a script");
            return;
        };
        let key = RoomKey::new_raw(&state.key);
        self.publish(
            channel(&key),
            &Bus::Change {
                o: self.node,
                state: state_json,
            },
        );
        self.apply(state);
    }

    async fn subscribe(&self, key: &RoomKey) -> Result<(), RedisError> {
        // An async lock, held across the round trip on purpose: see `subscriptions`.
        let _serial = self.subscriptions.lock().await;
        if self.state.lock().unwrap().subscribed.contains(key) {
            return Ok(());
        }
        self.redis.subscribe(&channel(key)).await?;
        self.state.lock().unwrap().subscribed.insert(key.clone());
        Ok(())
    }

    /// Subscribes again, after the subscription connection was lost, to [`ALL`] and to every
    /// channel this node was subscribed to or has a replica for, [`RESUBSCRIBE_BATCH`] a round
    /// trip. A channel stays listed until it is confirmed, so a failed attempt is repeated whole.
    async fn resubscribe(&self) -> Result<(), RedisError> {
        let _serial = self.subscriptions.lock().await;
        let channels: Vec<String> = {
            let state = self.state.lock().unwrap();
            let keys: HashSet<&RoomKey> = state
                .subscribed
                .iter()
                .chain(state.replicas.keys())
                .collect();
            keys.into_iter().map(channel).collect()
        };
        self.redis.subscribe(ALL).await?;
        for batch in channels.chunks(RESUBSCRIBE_BATCH) {
            self.redis.subscribe(batch).await?;
        }
        let mut state = self.state.lock().unwrap();
        let s = &mut *state;
        s.subscribed.extend(s.replicas.keys().cloned());
        Ok(())
    }

    /// Unsubscribes from `key`'s channel unless a member or a join in flight needs it.
    async fn unsubscribe_if_unused(&self, key: &RoomKey) {
        let _serial = self.subscriptions.lock().await;
        let unused = {
            let mut state = self.state.lock().unwrap();
            let unused = !state.replicas.contains_key(key) && !state.joining.contains_key(key);
            unused && state.subscribed.remove(key)
        };
        if unused {
            let _ = self.redis.unsubscribe(&channel(key)).await;
        }
    }

    /// Marks a join or resume in `key` as in flight until the guard is dropped.
    fn joining(&self, key: &RoomKey) -> Joining<'_> {
        *self
            .state
            .lock()
            .unwrap()
            .joining
            .entry(key.clone())
            .or_default() += 1;
        Joining {
            inner: self,
            key: key.clone(),
        }
    }

    /// A membership change whose answer did not come may have happened in Redis all the
    /// same: the node then reconciles its members with Redis as soon as Redis answers.
    fn unsure<T>(&self, result: Result<T, RedisError>) -> Result<T, RedisError> {
        if result.is_err() {
            self.degraded.store(true, Ordering::Release);
        }
        result
    }

    /// Applies a room state in version order (buffering it if an earlier change is missing).
    fn apply(&self, state: RoomState) {
        let key = RoomKey::new_raw(&state.key);
        let mut guard = self.state.lock().unwrap();
        let s = &mut *guard;
        let Some(replica) = s.replicas.get_mut(&key) else {
            if s.joining.contains_key(&key) && self.ahead_of_own_join(s, &key, &state) {
                s.early.entry(key).or_default().push(state);
                return;
            }
            // No replica: this node has no member there, unless the change brings one.
            let local = state
                .members
                .iter()
                .flatten()
                .any(|m| m.node == self.node && m.session.is_some());
            let own_victim = matches!(&state.change, Change::Joined { victim: Some(v), .. } if v.node == self.node);
            let own_leaver =
                matches!(&state.change, Change::Left { member, .. } if member.node == self.node);
            let own_closed = matches!(&state.change, Change::Closed { .. });
            if local || own_victim || own_leaver || own_closed {
                self.apply_now(s, &key, state);
            }
            return;
        };
        if state.v <= replica.v {
            return;
        }
        if state.v > replica.v + 1 {
            let gap = replica.gap.get_or_insert_with(|| {
                Box::new(Gap {
                    pending: BTreeMap::new(),
                    since: Instant::now(),
                })
            });
            gap.pending.insert(state.v, Box::new(state));
            return;
        }
        self.apply_now(s, &key, state);
        // What was waiting for this one may follow now.
        while let Some(replica) = s.replicas.get_mut(&key) {
            let next = replica.v + 1;
            let Some(gap) = replica.gap.as_mut() else {
                break;
            };
            let Some(state) = gap.pending.remove(&next) else {
                if gap.pending.is_empty() {
                    replica.gap = None;
                }
                break;
            };
            self.apply_now(s, &key, *state);
        }
    }

    /// Whether `state` names a local member that has not heard it joined (its own join's
    /// answer is still on its way) and is not that join's own change.
    fn ahead_of_own_join(&self, s: &State, key: &RoomKey, state: &RoomState) -> bool {
        let changed = match &state.change {
            Change::Joined { peer, .. }
            | Change::Rejoined { peer, .. }
            | Change::Reconnected { peer, .. } => Some(peer.as_str()),
            _ => None,
        };
        state.members.iter().flatten().any(|m| {
            let session = m.session.as_deref().and_then(|id| id.parse().ok());
            m.node == self.node
                && changed != Some(m.peer.as_str())
                && session.is_some_and(|id| {
                    !s.sessions
                        .get(&SessionId(id))
                        .is_some_and(|rooms| rooms.iter().any(|(r, _)| r == key))
                })
        })
    }

    /// Tells local sessions what a change means for them and updates the replica.
    fn apply_now(&self, s: &mut State, key: &RoomKey, state: RoomState) {
        let options = options_of(state.opts.as_deref());
        // Exactly as many as there are: the replica keeps this vector while the room lives.
        let mut members = Vec::with_capacity(state.members.as_ref().map_or(0, Vec::len));
        members.extend(state.members.iter().flatten().map(member_of));
        share_infos(&mut members, s.replicas.get(key).map(|r| &**r));
        let local = |m: &Member| m.session.filter(|id| id.node() == self.node);
        let full_view = || {
            options
                .full_views
                .then(|| Arc::new(members.iter().map(|m| m.info.clone()).collect::<Vec<_>>()))
        };
        let forget = |s: &mut State, session: SessionId| {
            if let Some(rooms) = s.sessions.get_mut(&session) {
                rooms.retain(|(r, _)| r != key);
            }
        };
        match &state.change {
            Change::Joined { peer, victim } => {
                if let Some(victim) = victim {
                    let old = member_of(victim);
                    if let Some(session) = local(&old) {
                        forget(s, session);
                        self.send(Some(session), RoomEvent::Replaced { room: key.clone() });
                    }
                    let event = Arc::new(RoomEvent::PeerLeft {
                        room: key.clone(),
                        peer: old.info.peer.clone(),
                        count: members.len().saturating_sub(1),
                        reason: LeaveReason::Replaced,
                        options,
                        members: None,
                    });
                    for m in members.iter().filter(|m| &*m.info.peer != peer.as_str()) {
                        if let Some(session) = local(m) {
                            self.delivery
                                .deliver(session, Outbound::Event(event.clone()));
                        }
                    }
                }
                let index = members.iter().position(|m| &*m.info.peer == peer.as_str());
                if let Some(index) = index {
                    let joiner = &members[index];
                    if let Some(session) = local(joiner) {
                        note_session_room(
                            &mut s.sessions,
                            session,
                            key.clone(),
                            joiner.info.peer.clone(),
                        );
                        self.send(
                            Some(session),
                            RoomEvent::Joined {
                                room: key.clone(),
                                me: joiner.info.clone(),
                                options,
                                peers: members
                                    .iter()
                                    .filter(|m| m.info.peer != joiner.info.peer)
                                    .map(|m| m.info.clone())
                                    .collect(),
                                first: index == 0,
                                again: false,
                            },
                        );
                    }
                    self.announce_join(key, &members, index, options, full_view());
                }
            }
            Change::Rejoined { peer, announce } => {
                if let Some(index) = members.iter().position(|m| &*m.info.peer == peer.as_str()) {
                    let joiner = &members[index];
                    self.send(
                        local(joiner),
                        RoomEvent::Joined {
                            room: key.clone(),
                            me: joiner.info.clone(),
                            options,
                            peers: members
                                .iter()
                                .filter(|m| m.info.peer != joiner.info.peer)
                                .map(|m| m.info.clone())
                                .collect(),
                            first: index == 0,
                            again: true,
                        },
                    );
                    if *announce {
                        self.announce_join(key, &members, index, options, full_view());
                    }
                }
            }
            Change::Left {
                peer,
                reason: stored_reason,
                member,
            } => {
                let reason = reason_of(stored_reason);
                let gone = member_of(member);
                let left = RoomEvent::PeerLeft {
                    room: key.clone(),
                    peer: peer.as_str().into(),
                    count: members.len(),
                    reason,
                    options,
                    members: full_view(),
                };
                if let Some(session) = local(&gone) {
                    forget(s, session);
                    if reason == LeaveReason::Purged {
                        self.send(Some(session), RoomEvent::Closed { room: key.clone() });
                    }
                    // Taken out by someone else (RoomDirectory::remove_peer): told like the rest.
                    if stored_reason == REMOVED {
                        self.send(Some(session), left.clone());
                    }
                }
                self.tell_others(&members, None, left);
            }
            Change::Detached { peer } => {
                self.tell_others(
                    &members,
                    Some(peer),
                    RoomEvent::PeerLeft {
                        room: key.clone(),
                        peer: peer.as_str().into(),
                        count: members.len(),
                        reason: LeaveReason::Detached,
                        options,
                        members: full_view(),
                    },
                );
            }
            Change::Reconnected {
                peer,
                session,
                kept,
                token,
            } => {
                let session = session.parse().ok().map(SessionId);
                if let Some(session) = session.filter(|s| s.node() == self.node) {
                    note_session_room(&mut s.sessions, session, key.clone(), peer.as_str().into());
                    let kept = kept.clone().unwrap_or_default();
                    self.send(
                        Some(session),
                        RoomEvent::Resumed {
                            room: key.clone(),
                            peer: peer.as_str().into(),
                            count: members.len(),
                            peers: members
                                .iter()
                                .filter(|m| &*m.info.peer != peer.as_str())
                                .map(|m| m.info.clone())
                                .collect(),
                            missed: kept.len(),
                            token: token.as_str().into(),
                            capacity: options.capacity,
                        },
                    );
                    for frame in kept {
                        self.delivery
                            .deliver(session, Outbound::Frame(Frame::Owned(frame)));
                    }
                }
                self.tell_others(
                    &members,
                    Some(peer),
                    RoomEvent::PeerReconnected {
                        room: key.clone(),
                        peer: peer.as_str().into(),
                    },
                );
            }
            Change::Closed { epoch } => {
                self.epoch.fetch_max(*epoch, Ordering::AcqRel);
                for m in &members {
                    if let Some(session) = local(m) {
                        forget(s, session);
                        self.send(Some(session), RoomEvent::Closed { room: key.clone() });
                    }
                }
                s.replicas.remove(key);
                return;
            }
            Change::Sync => {}
        }
        let has_local = members.iter().any(|m| local(m).is_some());
        if has_local {
            let replica = s.replicas.entry(key.clone()).or_insert_with(|| {
                Box::new(Replica {
                    v: 0,
                    options,
                    members: Vec::new(),
                    gap: None,
                })
            });
            replica.v = state.v;
            replica.options = options;
            replica.members = members;
        } else {
            s.replicas.remove(key);
        }
    }

    /// Tells every member but the one at `index` that it joined.
    fn announce_join(
        &self,
        key: &RoomKey,
        members: &[Member],
        index: usize,
        options: RoomOptions,
        view: Option<Arc<Vec<MemberInfo>>>,
    ) {
        let joiner = &members[index];
        for (i, m) in members.iter().enumerate() {
            if i == index || m.session.is_none_or(|id| id.node() != self.node) {
                continue;
            }
            self.send(
                m.session,
                RoomEvent::PeerJoined {
                    room: key.clone(),
                    member: joiner.info.clone(),
                    count: members.len(),
                    options,
                    receiver_first: i == 0,
                    members: view.clone(),
                },
            );
        }
    }

    /// Sends an event to every local member but `except`.
    fn tell_others(&self, members: &[Member], except: Option<&str>, event: RoomEvent) {
        let event = Arc::new(event);
        for m in members {
            if except.is_some_and(|p| *m.info.peer == *p) {
                continue;
            }
            if let Some(session) = m.session.filter(|id| id.node() == self.node) {
                self.delivery
                    .deliver(session, Outbound::Event(event.clone()));
            }
        }
    }

    /// Delivers a relay from another node to this node's recipients.
    fn deliver_relay(
        &self,
        key: &RoomKey,
        from: SessionId,
        to: Option<&str>,
        kind: &str,
        frame: String,
    ) {
        let state = self.state.lock().unwrap();
        let Some(replica) = state.replicas.get(key) else {
            return;
        };
        let recipients: Vec<SessionId> = replica
            .members
            .iter()
            .filter(|m| to.is_none_or(|peer| &*m.info.peer == peer))
            .filter_map(|m| m.session)
            .filter(|s| s.node() == self.node && *s != from)
            .collect();
        drop(state);
        let frame = match recipients.len() {
            0 => return,
            1 => Frame::Owned(frame),
            _ => Frame::Shared(frame.into()),
        };
        let _ = kind;
        for session in recipients {
            self.delivery
                .deliver(session, Outbound::Frame(frame.clone()));
        }
    }

    /// Hands `frame` from `sender` (a member, or `None` from outside the room) to the
    /// `target` members of `room`, whose replica `state` holds: this node's at once, other
    /// nodes' with one message on the room's channel, detached ones' kept in Redis.
    fn hand_over(
        &self,
        state: std::sync::MutexGuard<'_, State>,
        room: &RoomKey,
        sender: Option<SessionId>,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError> {
        let inner = self;
        let replica = &state.replicas[room];
        let is_sender = |m: &Member| sender.is_some() && m.session == sender;
        let recipients: Vec<&Member> = match target {
            Target::Peer(peer) => match replica.members.iter().find(|m| &*m.info.peer == peer) {
                Some(m) if !is_sender(m) => vec![m],
                _ => return Err(RelayError::UnknownPeer),
            },
            Target::Others => {
                let others: Vec<&Member> =
                    replica.members.iter().filter(|m| !is_sender(m)).collect();
                if others.is_empty() {
                    return Err(RelayError::Alone {
                        capacity: replica.options.capacity,
                    });
                }
                others
            }
        };
        let bytes = frame.len();
        let text: Arc<str> = match &frame {
            Frame::Owned(t) => t.as_str().into(),
            Frame::Shared(t) => t.clone(),
        };
        let mut remote = false;
        let mut keep = Vec::new();
        for m in &recipients {
            let in_keep_path = state
                .keeping
                .contains_key(&(room.clone(), m.info.peer.clone()));
            if in_keep_path {
                keep.push(m.info.peer.clone());
                inner.metrics.relayed_in(room.space(), kind, bytes);
                continue;
            }
            match m.session {
                Some(to) if to.node() == inner.node => {
                    inner
                        .delivery
                        .deliver(to, Outbound::Frame(Frame::Shared(text.clone())));
                }
                Some(_) => remote = true,
                None if m.detached => keep.push(m.info.peer.clone()),
                None => {}
            }
            inner.metrics.relayed_in(room.space(), kind, bytes);
        }
        let count = recipients.len();
        drop(state);
        if !keep.is_empty() {
            let mut state = inner.state.lock().unwrap();
            for peer in &keep {
                *state
                    .keeping
                    .entry((room.clone(), peer.clone()))
                    .or_default() += 1;
            }
        }
        if remote {
            inner.publish(
                channel(room),
                &Bus::Relay {
                    o: inner.node,
                    key: room.as_str().to_owned(),
                    from: sender.unwrap_or(NO_SENDER).0,
                    to: match target {
                        Target::Peer(p) => Some(p.to_owned()),
                        Target::Others => None,
                    },
                    kind: kind.to_owned(),
                    frame: text.to_string(),
                },
            );
        }
        for peer in keep {
            inner.queue(Outgoing::Keep {
                key: room.clone(),
                peer,
                frame: text.to_string(),
            });
        }
        Ok(Relayed { recipients: count })
    }

    /// A frame that took the keep path reached a member that had resumed meanwhile: hand it to
    /// its new session, here or through its node.
    fn deliver_resumed(&self, key: &RoomKey, peer: &str, answer: &str, frame: String) {
        #[derive(Deserialize)]
        struct Deliver {
            deliver: String,
            node: u16,
        }
        let Ok(to) = serde_json::from_str::<Deliver>(answer) else {
            return;
        };
        if to.node == self.node {
            if let Ok(session) = to.deliver.parse() {
                self.delivery
                    .deliver(SessionId(session), Outbound::Frame(Frame::Owned(frame)));
            }
            return;
        }
        self.publish(
            channel(key),
            &Bus::Relay {
                o: self.node,
                key: key.as_str().to_owned(),
                from: 0,
                to: Some(peer.to_owned()),
                kind: String::new(),
                frame,
            },
        );
    }

    async fn sweep_refs(&self, reason: LeaveReason, refs: &[String]) -> Result<usize, RedisError> {
        if refs.is_empty() {
            return Ok(0);
        }
        let mut args: Vec<&str> = vec![reason_str(reason)];
        args.extend(refs.iter().map(String::as_str));
        let states: Vec<String> = self.redis.script(&SWEEP_REFS, &[], &args).await?;
        let n = states.len();
        for state in states {
            self.announce(state);
        }
        Ok(n)
    }

    async fn leave_one(
        &self,
        key: &RoomKey,
        peer: &str,
        session: SessionId,
        reason: LeaveReason,
    ) -> Result<bool, RedisError> {
        let answer: String = self
            .redis
            .script(
                &LEAVE,
                &[],
                &[
                    key.as_str(),
                    peer,
                    &session.0.to_string(),
                    reason_str(reason),
                ],
            )
            .await?;
        if answer.is_empty() {
            return Ok(false);
        }
        self.announce(answer);
        Ok(true)
    }

    /// Takes a local member out of the replica and tells the local peers, when Redis could not
    /// be told (it is reconciled when Redis is back).
    fn leave_locally(&self, key: &RoomKey, session: SessionId, reason: LeaveReason) {
        let mut state = self.state.lock().unwrap();
        if let Some(rooms) = state.sessions.get_mut(&session) {
            rooms.retain(|(r, _)| r != key);
        }
        let Some(replica) = state.replicas.get_mut(key) else {
            return;
        };
        let Some(index) = replica
            .members
            .iter()
            .position(|m| m.session == Some(session))
        else {
            return;
        };
        let gone = replica.members.remove(index);
        let members = replica.members.clone();
        let options = replica.options;
        drop(state);
        self.tell_others(
            &members,
            None,
            RoomEvent::PeerLeft {
                room: key.clone(),
                peer: gone.info.peer.clone(),
                count: members.len(),
                reason,
                options,
                members: None,
            },
        );
    }

    /// Re-registers this node's members after Redis came back, and forgets in Redis the ones
    /// that ended while it could not be told.
    async fn resync(&self) -> Result<(), RedisError> {
        let registered: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(format!("sp:node:{}:m", self.node)))
            .await?;
        let live: HashSet<String> = {
            let state = self.state.lock().unwrap();
            state
                .sessions
                .values()
                .flatten()
                .map(|(key, peer)| format!("{}\n{peer}", key.as_str()))
                .collect()
        };
        let gone: Vec<String> = registered
            .into_iter()
            .filter(|r| !live.contains(r))
            .collect();
        self.sweep_refs(LeaveReason::Disconnected, &gone).await?;
        // A replica keeps no member's device (most are other nodes'): a local member's is the
        // one its session joined with.
        type Local = (RoomKey, Member, Option<DeviceId>, RoomOptions);
        let members: Vec<Local> = {
            let state = self.state.lock().unwrap();
            let devices = &state.devices;
            state
                .replicas
                .iter()
                .flat_map(|(key, r)| {
                    r.members
                        .iter()
                        .filter(|m| m.session.is_some_and(|s| s.node() == self.node))
                        .map(move |m| {
                            let device = m.session.and_then(|s| devices.get(&s)).cloned();
                            (key.clone(), m.clone(), device, r.options)
                        })
                })
                .collect()
        };
        self.resubscribe().await?;
        for (key, member, device, options) in members {
            let Some(session) = member.session else {
                continue;
            };
            let info = serde_json::to_string(&member.info).unwrap_or_default();
            let opts = serde_json::to_string(&options).unwrap_or_default();
            let answer: String = self
                .redis
                .script(
                    &JOIN,
                    &[],
                    &[
                        key.as_str(),
                        &session.0.to_string(),
                        &self.node.to_string(),
                        &member.info.peer,
                        &info,
                        &opts,
                        device.as_ref().map_or("", DeviceId::as_str),
                        "0",
                        "1",
                        "quiet",
                        "",
                        "0",
                    ],
                )
                .await?;
            if let Ok(outcome) = serde_json::from_str::<JoinAnswer>(&answer)
                && outcome.outcome == "joined"
                && let Some(state) = outcome.state
            {
                // Others were told it had left (its node looked dead): tell them it is back.
                if let Ok(json) = serde_json::to_string(&state) {
                    self.publish(
                        channel(&key),
                        &Bus::Change {
                            o: self.node,
                            state: json,
                        },
                    );
                }
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct JoinAnswer {
    outcome: String,
    state: Option<serde_json::Value>,
    capacity: Option<Capacity>,
}

/// Sends what the node tells others, in order.
async fn publish_all(
    inner: Arc<Inner>,
    mut queue: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) {
    loop {
        // The stop first: a backlog (Redis slow or gone) must not hold the node up; what is
        // queued then gets DRAIN_WAIT below.
        let op = tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            op = queue.recv() => op,
        };
        let Some(op) = op else { break };
        send_out(&inner, op, &mut queue).await;
    }
    // Stopping: what the node's last sessions said on their way out still goes to the others,
    // for at most DRAIN_WAIT (Redis may be gone).
    let deadline = Instant::now() + DRAIN_WAIT;
    while Instant::now() < deadline
        && let Ok(op) = queue.try_recv()
    {
        tokio::select! {
            _ = send_out(&inner, op, &mut queue) => {}
            _ = tokio::time::sleep_until(deadline.into()) => break,
        }
    }
}

/// Sends `first` and the publishes queued right behind it (up to [`PUBLISH_BATCH`]) in one
/// round trip, in order; a frame to keep for a detached member is a script of its own, after
/// the publishes before it.
async fn send_out(inner: &Arc<Inner>, first: Outgoing, queue: &mut mpsc::Receiver<Outgoing>) {
    let mut publishes = Vec::new();
    let mut next = Some(first);
    while let Some(op) = next.take() {
        match op {
            Outgoing::Publish { channel, message } => {
                publishes.push((channel, message));
                if publishes.len() < PUBLISH_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            Outgoing::Keep { key, peer, frame } => {
                publish_batch(inner, &mut publishes).await;
                keep(inner, key, peer, frame).await;
            }
        }
    }
    publish_batch(inner, &mut publishes).await;
}

async fn publish_batch(inner: &Inner, publishes: &mut Vec<(String, String)>) {
    if publishes.is_empty() {
        return;
    }
    if let Err(e) = inner.redis.publish_many(publishes).await {
        log::debug!(
            "cluster: publishing {} message(s) failed: {e}",
            publishes.len()
        );
    }
    publishes.clear();
}

/// Keeps one frame for a detached member (or hands it over if the member is back).
async fn keep(inner: &Arc<Inner>, key: RoomKey, peer: PeerId, frame: String) {
    let limits = inner.resume;
    let answer = inner
        .redis
        .script::<String>(
            &KEEP,
            &[],
            &[
                key.as_str(),
                &peer,
                &frame,
                &limits.messages.to_string(),
                &limits.bytes.to_string(),
            ],
        )
        .await;
    match answer {
        Ok(answer) if answer.starts_with("{\"deliver\"") => {
            inner.deliver_resumed(&key, &peer, &answer, frame);
        }
        Ok(state) if !state.is_empty() => inner.announce(state),
        Ok(_) => {}
        Err(e) => log::debug!("cluster: a message for a detached member was lost: {e}"),
    }
    let mut state = inner.state.lock().unwrap();
    let slot = (key.clone(), peer.clone());
    if let Some(n) = state.keeping.get_mut(&slot) {
        *n -= 1;
        if *n == 0 {
            state.keeping.remove(&slot);
        }
    }
}

/// Reads what other nodes say.
async fn listen(
    inner: Arc<Inner>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    shutdown: CancellationToken,
) {
    loop {
        let push = tokio::select! {
            push = pushes.recv() => push,
            _ = shutdown.cancelled() => None,
        };
        let Some(push) = push else { break };
        match push.kind {
            PushKind::Message => {
                // [channel, payload]: the payload taken as it came, not copied.
                let Some(redis::Value::BulkString(payload)) = push.data.into_iter().nth(1) else {
                    continue;
                };
                inner.metrics.bus_message(false);
                match Bus::decode(&payload) {
                    Ok(Bus::Change { o, state }) if o != inner.node => {
                        if let Ok(state) = serde_json::from_str::<RoomState>(&state) {
                            inner.apply(state);
                        }
                    }
                    Ok(Bus::Relay {
                        o,
                        key,
                        from,
                        to,
                        kind,
                        frame,
                    }) if o != inner.node => {
                        inner.deliver_relay(
                            &RoomKey::new_raw(&key),
                            SessionId(from),
                            to.as_deref(),
                            &kind,
                            frame,
                        );
                    }
                    Ok(Bus::Device { device, .. }) => {
                        let sessions: Vec<SessionId> = {
                            let state = inner.state.lock().unwrap();
                            state
                                .devices
                                .iter()
                                .filter(|(_, d)| d.as_str() == device)
                                .map(|(s, _)| *s)
                                .collect()
                        };
                        for session in sessions {
                            inner
                                .delivery
                                .deliver(session, Outbound::Close(CLOSE_NORMAL, "device purged"));
                        }
                    }
                    Ok(Bus::Epoch { epoch, .. }) => {
                        inner.epoch.fetch_max(epoch, Ordering::AcqRel);
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("cluster: unreadable bus message: {e}"),
                }
            }
            PushKind::Disconnection if !inner.degraded.swap(true, Ordering::AcqRel) => {
                log::warn!("cluster: lost the connection to Redis; relaying on this node goes on");
            }
            _ => {}
        }
    }
}

/// Resyncs stalled replicas, recovers after an outage, ends expired detachments, drops
/// subscriptions of rooms without local members.
async fn janitor(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(JANITOR_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        if inner.degraded.load(Ordering::Acquire) {
            if inner.redis.ping().await.is_ok() {
                match inner.resync().await {
                    Ok(()) => {
                        *inner.settled_since.lock().unwrap() = Instant::now();
                        inner.degraded.store(false, Ordering::Release);
                        log::info!("cluster: Redis is back; members re-registered");
                    }
                    Err(e) => log::debug!("cluster: resync failed: {e}"),
                }
            }
            continue;
        }
        // Replicas waiting too long for a missing change read the room from Redis.
        let stalled: Vec<RoomKey> = {
            let state = inner.state.lock().unwrap();
            state
                .replicas
                .iter()
                .filter(|(_, r)| {
                    r.gap
                        .as_ref()
                        .is_some_and(|g| g.since.elapsed() >= GAP_WAIT)
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in stalled {
            if let Ok(answer) = inner
                .redis
                .script::<String>(&STATE, &[], &[key.as_str()])
                .await
                && let Ok(fresh) = serde_json::from_str::<RoomState>(&answer)
            {
                let pending = {
                    let mut state = inner.state.lock().unwrap();
                    state.replicas.get_mut(&key).and_then(|r| {
                        r.v = fresh.v.saturating_sub(1);
                        r.gap.take().map(|g| g.pending)
                    })
                };
                inner.apply(fresh.clone());
                for (_, state) in pending.into_iter().flatten() {
                    inner.apply(*state);
                }
            }
        }
        // Detachments whose grace ran out (any node may end them; the script is atomic).
        let now = crate::db::now_millis().to_string();
        if let Ok(states) = inner
            .redis
            .script::<Vec<String>>(&EXPIRE, &[], &[&now])
            .await
        {
            for state in states {
                inner.announce(state);
            }
        }
        // Channels of rooms this node has no member in any more, nor a join in flight.
        let unused: Vec<RoomKey> = {
            let state = inner.state.lock().unwrap();
            state
                .subscribed
                .iter()
                .filter(|k| !state.replicas.contains_key(*k) && !state.joining.contains_key(*k))
                .cloned()
                .collect()
        };
        for key in unused {
            inner.unsubscribe_if_unused(&key).await;
        }
    }
}

impl RoomDirectory for ClusterRooms {
    fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    fn join(&self, request: JoinRequest) -> RoomsFuture<'_, JoinOutcome> {
        Box::pin(async move {
            let inner = &self.inner;
            let key = request.room.clone();
            let _joining = inner.joining(&key);
            inner.subscribe(&key).await?;
            if request.exclusive {
                let others: Vec<(RoomKey, PeerId)> = {
                    let state = inner.state.lock().unwrap();
                    state
                        .sessions
                        .get(&request.session)
                        .map(|rooms| {
                            rooms
                                .iter()
                                .filter(|(r, _)| *r != key && r.space() == key.space())
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default()
                };
                for (other, peer) in others {
                    inner
                        .leave_one(&other, &peer, request.session, LeaveReason::Left)
                        .await?;
                }
            }
            if let Some(device) = &request.device {
                inner
                    .state
                    .lock()
                    .unwrap()
                    .devices
                    .insert(request.session, device.clone());
            }
            let info = serde_json::to_string(&request.member).unwrap_or_default();
            let opts = serde_json::to_string(&request.options).unwrap_or_default();
            let token = request.resume.as_ref().map_or("", |t| &*t.token);
            let answer: String = inner.unsure(
                inner
                    .redis
                    .script(
                        &JOIN,
                        &[],
                        &[
                            key.as_str(),
                            &request.session.0.to_string(),
                            &inner.node.to_string(),
                            &request.member.peer,
                            &info,
                            &opts,
                            request.device.as_ref().map_or("", DeviceId::as_str),
                            if request.replace_same_device {
                                "1"
                            } else {
                                "0"
                            },
                            if request.replace_same_peer { "1" } else { "0" },
                            match request.rejoin {
                                crate::signaling::rooms::Rejoin::Announce => "announce",
                                crate::signaling::rooms::Rejoin::Quiet => "quiet",
                            },
                            token,
                            &request.checked_at.to_string(),
                        ],
                    )
                    .await,
            )?;
            let answer: JoinAnswer = serde_json::from_str(&answer)
                .map_err(|e| Unavailable(format!("unreadable join answer: {e}")))?;
            let state_json = answer.state.map(|s| s.to_string());
            Ok(match answer.outcome.as_str() {
                "closed" => JoinOutcome::Closed,
                "full" => {
                    inner.metrics.refused(crate::telemetry::Refusal::RoomFull);
                    JoinOutcome::Full {
                        capacity: answer.capacity.unwrap_or(Capacity::Limited(2)),
                    }
                }
                "already" => {
                    if let Some(json) = state_json {
                        let state: RoomState = serde_json::from_str(&json)
                            .map_err(|e| Unavailable(format!("unreadable room: {e}")))?;
                        let announce =
                            matches!(state.change, Change::Rejoined { announce: true, .. });
                        if announce {
                            inner.announce(json);
                        } else {
                            // Only the joiner hears of it: apply without a new version.
                            let mut guard = inner.state.lock().unwrap();
                            inner.apply_now(&mut guard, &key, state);
                        }
                    }
                    JoinOutcome::AlreadyMember
                }
                _ => {
                    let count = state_json
                        .as_deref()
                        .and_then(|j| serde_json::from_str::<RoomState>(j).ok())
                        .map_or(1, |s| s.members.map_or(0, |m| m.len()));
                    if let Some(json) = state_json {
                        inner.announce(json);
                    }
                    JoinOutcome::Joined { count }
                }
            })
        })
    }

    fn leave(&self, session: SessionId, room: &RoomKey) -> RoomsFuture<'_, bool> {
        let room = room.clone();
        Box::pin(async move {
            let peer = {
                let state = self.inner.state.lock().unwrap();
                state
                    .sessions
                    .get(&session)
                    .and_then(|rooms| rooms.iter().find(|(r, _)| *r == room))
                    .map(|(_, p)| p.clone())
            };
            let Some(peer) = peer else { return Ok(false) };
            match self
                .inner
                .leave_one(&room, &peer, session, LeaveReason::Left)
                .await
            {
                Ok(left) => Ok(left),
                Err(e) => {
                    self.inner.leave_locally(&room, session, LeaveReason::Left);
                    self.inner.degraded.store(true, Ordering::Release);
                    Err(e.into())
                }
            }
        })
    }

    fn remove_peer<'a>(&'a self, room: &'a RoomKey, peer: &'a str) -> RoomsFuture<'a, bool> {
        Box::pin(async move {
            let answer: String = self
                .inner
                .redis
                .script(&LEAVE, &[], &[room.as_str(), peer, "", REMOVED])
                .await?;
            if answer.is_empty() {
                return Ok(false);
            }
            self.inner.announce(answer);
            Ok(true)
        })
    }

    fn disconnect(&self, session: SessionId, how: Departure) -> RoomsFuture<'_, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let rooms = {
                let mut state = inner.state.lock().unwrap();
                state.devices.remove(&session);
                state.sessions.get(&session).cloned().unwrap_or_default()
            };
            let resumable = how == Departure::Dropped
                && !inner.resume.grace.is_zero()
                && !inner.shutting_down.load(Ordering::Acquire);
            let mut failed = None;
            for (key, peer) in rooms {
                let detached = if resumable {
                    let number = inner.detachments.fetch_add(1, Ordering::Relaxed) + 1;
                    let deadline = crate::db::now_millis() + inner.resume.grace.as_millis() as i64;
                    match inner
                        .redis
                        .script::<String>(
                            &DETACH,
                            &[],
                            &[
                                key.as_str(),
                                &peer,
                                &session.0.to_string(),
                                &number.to_string(),
                                &deadline.to_string(),
                            ],
                        )
                        .await
                    {
                        Ok(answer) if !answer.is_empty() => {
                            inner.announce(answer);
                            Ok(true)
                        }
                        Ok(_) => Ok(false),
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(false)
                };
                let result = match detached {
                    Ok(true) => Ok(true),
                    Ok(false) => {
                        inner
                            .leave_one(&key, &peer, session, LeaveReason::Disconnected)
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    inner.leave_locally(&key, session, LeaveReason::Disconnected);
                    inner.degraded.store(true, Ordering::Release);
                    failed = Some(e);
                }
            }
            inner.state.lock().unwrap().sessions.remove(&session);
            match failed {
                Some(e) => Err(e.into()),
                None => Ok(()),
            }
        })
    }

    fn resume<'a>(
        &'a self,
        token: &'a str,
        session: SessionId,
    ) -> RoomsFuture<'a, Result<(), ResumeError>> {
        Box::pin(async move {
            // Frames this node is still keeping for the member go first, so that `missed`
            // counts them (frames on their way from other nodes follow the `resumed` answer).
            let mut _joining = None;
            if let Some(target) = self
                .inner
                .redis
                .query::<Option<String>>(redis::cmd("GET").arg(format!("sp:tok:{token}")))
                .await?
                && let Some((key, peer)) = target.split_once('\n')
            {
                let slot = (RoomKey::new_raw(key), PeerId::from(peer));
                _joining = Some(self.inner.joining(&slot.0));
                let deadline = Instant::now() + KEEP_FLUSH_WAIT;
                while Instant::now() < deadline
                    && self.inner.state.lock().unwrap().keeping.contains_key(&slot)
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let fresh = new_resume_token();
            let inner = &self.inner;
            let answer: String = inner.unsure(
                inner
                    .redis
                    .script(
                        &RESUME,
                        &[],
                        &[
                            token,
                            &session.0.to_string(),
                            &inner.node.to_string(),
                            &fresh,
                        ],
                    )
                    .await,
            )?;
            if answer.is_empty() {
                return Ok(Err(ResumeError::Unknown));
            }
            if let Ok(state) = serde_json::from_str::<RoomState>(&answer) {
                inner.unsure(inner.subscribe(&RoomKey::new_raw(&state.key)).await)?;
            }
            self.inner.announce(answer);
            Ok(Ok(()))
        })
    }

    fn relay(
        &self,
        session: SessionId,
        room: &RoomKey,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError> {
        let state = self.inner.state.lock().unwrap();
        let replica = state.replicas.get(room).ok_or(RelayError::NotInRoom)?;
        if !replica.members.iter().any(|m| m.session == Some(session)) {
            return Err(RelayError::NotInRoom);
        }
        self.inner
            .hand_over(state, room, Some(session), target, frame, kind)
    }

    fn send_to(
        &self,
        room: &RoomKey,
        target: Target<'_>,
        frame: Frame,
        kind: &'static str,
    ) -> Result<Relayed, RelayError> {
        let inner = &self.inner;
        let state = inner.state.lock().unwrap();
        if state.replicas.contains_key(room) {
            return inner
                .hand_over(state, room, None, target, frame, kind)
                .map_err(|_| RelayError::UnknownPeer);
        }
        drop(state);
        // No member here, so no replica to check against: the nodes that hold the room's
        // members hand it over (to nobody if the target is not there). How many got it is
        // not known here.
        let text = frame.into_string();
        inner.publish(
            channel(room),
            &Bus::Relay {
                o: inner.node,
                key: room.as_str().to_owned(),
                from: NO_SENDER.0,
                to: match target {
                    Target::Peer(p) => Some(p.to_owned()),
                    Target::Others => None,
                },
                kind: kind.to_owned(),
                frame: text,
            },
        );
        Ok(Relayed { recipients: 0 })
    }

    fn close_room(&self, room: &RoomKey, end: RoomEnd) -> RoomsFuture<'_, usize> {
        let room = room.clone();
        Box::pin(async move {
            let _ = end;
            let answer: String = self
                .inner
                .redis
                .script(&CLOSE, &[], &[room.as_str()])
                .await?;
            let state: RoomState = serde_json::from_str(&answer)
                .map_err(|e| Unavailable(format!("unreadable room: {e}")))?;
            let count = state.members.as_ref().map_or(0, Vec::len);
            if let Change::Closed { epoch } = state.change {
                self.inner.epoch.fetch_max(epoch, Ordering::AcqRel);
                self.inner.publish(
                    ALL.to_owned(),
                    &Bus::Epoch {
                        o: self.inner.node,
                        epoch,
                    },
                );
            }
            self.inner.announce(answer);
            Ok(count)
        })
    }

    fn close_device(&self, device: &DeviceId) -> RoomsFuture<'_, usize> {
        let device = device.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let refs: Vec<String> = inner
                .redis
                .query(redis::cmd("SMEMBERS").arg(format!("sp:dev:{device}")))
                .await?;
            inner.sweep_refs(LeaveReason::Purged, &refs).await?;
            inner.publish(
                ALL.to_owned(),
                &Bus::Device {
                    o: inner.node,
                    device: device.to_string(),
                },
            );
            let sessions: Vec<SessionId> = {
                let state = inner.state.lock().unwrap();
                state
                    .devices
                    .iter()
                    .filter(|(_, d)| **d == device)
                    .map(|(s, _)| *s)
                    .collect()
            };
            for session in &sessions {
                inner
                    .delivery
                    .deliver(*session, Outbound::Close(CLOSE_NORMAL, "device purged"));
            }
            Ok(sessions.len())
        })
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
        let room = room.clone();
        Box::pin(async move {
            let answer: String = self
                .inner
                .redis
                .script(&STATE, &[], &[room.as_str()])
                .await?;
            let state: RoomState = serde_json::from_str(&answer)
                .map_err(|e| Unavailable(format!("unreadable room: {e}")))?;
            let Some(members) = state.members else {
                return Ok(None);
            };
            let options = options_of(state.opts.as_deref());
            Ok(Some(RoomSummary {
                room,
                capacity: options.capacity,
                members: members.iter().map(|m| member_of(m).info).collect(),
            }))
        })
    }

    fn list(&self) -> Vec<RoomSummary> {
        let state = self.inner.state.lock().unwrap();
        let mut rooms: Vec<RoomSummary> = state
            .replicas
            .iter()
            .filter(|(_, r)| !r.options.lobby)
            .map(|(key, r)| RoomSummary {
                room: key.clone(),
                capacity: r.options.capacity,
                members: r.members.iter().map(|m| m.info.clone()).collect(),
            })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    fn counts(&self) -> RoomCounts {
        let state = self.inner.state.lock().unwrap();
        let rooms = state.replicas.values().filter(|r| !r.options.lobby);
        RoomCounts {
            rooms: rooms.clone().count(),
            rooms_ready: rooms.clone().filter(|r| r.members.len() >= 2).count(),
            detached: state
                .replicas
                .values()
                .flat_map(|r| &r.members)
                .filter(|m| m.detached)
                .count(),
        }
    }

    fn shut_down(&self) {
        // Sessions leave their rooms as they end (Departure::Closed), so peers on other nodes
        // are told; nothing is detached from now on.
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    fn cluster_counts(&self) -> RoomsFuture<'_, Option<RoomCounts>> {
        Box::pin(async move { Ok(Some(ClusterRooms::cluster_counts(self).await?)) })
    }
}

impl Delivery for ClusterRooms {
    fn register(&self, bounds: queue::Bounds) -> (SessionId, Mailbox) {
        self.inner.delivery.register(bounds)
    }

    fn unregister(&self, session: SessionId) {
        self.inner.delivery.unregister(session);
    }

    fn deliver(&self, to: SessionId, message: Outbound) -> bool {
        self.inner.delivery.deliver(to, message)
    }

    fn shut_down(&self) {
        self.inner.delivery.shut_down();
    }

    fn sessions(&self) -> usize {
        self.inner.delivery.sessions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(to: Option<&str>, frame: &str) -> Bus {
        Bus::Relay {
            o: 7,
            key: "oodaa:lobby\nwith a newline".into(),
            from: (7 << 48) | 42,
            to: to.map(str::to_owned),
            kind: "message".into(),
            frame: frame.into(),
        }
    }

    fn decoded(bus: &Bus) -> Bus {
        Bus::decode(bus.encode().as_bytes()).unwrap()
    }

    #[test]
    fn a_relay_reads_back_whatever_its_fields_hold() {
        for bus in [
            relay(None, r#"{"type":"message","data":"a\nb \" é"}"#),
            relay(Some("peer\nwith 1 2 3 4 5 spaces"), ""),
            relay(Some("p"), "R1 2 3 4 5\nnot a header"),
        ] {
            assert_eq!(format!("{:?}", decoded(&bus)), format!("{bus:?}"));
        }
    }

    #[test]
    fn other_bus_messages_are_json_and_read_back() {
        let bus = Bus::Epoch { o: 3, epoch: 99 };
        assert!(bus.encode().starts_with('{'));
        assert!(matches!(decoded(&bus), Bus::Epoch { o: 3, epoch: 99 }));
    }

    #[test]
    fn a_damaged_relay_is_an_error_never_a_panic() {
        let whole = relay(Some("peer"), "frame").encode();
        for end in 0..whole.len() {
            let _ = Bus::decode(&whole.as_bytes()[..end]);
        }
        for bad in [
            "R",
            "R1 2 3\nx",
            "R1 2 99 0 0\nshort",
            "R70000 1 0 0 0\n",
            "Rx y z\n",
        ] {
            assert!(Bus::decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
