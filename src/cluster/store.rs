//! The pairing store in Redis, shared by every node.
//!
//! - `sp:code:<joinid>`: a hash per pending code (client1, its client key, exp, created_at,
//!   capacity, and once accepted client2 and roomid), expiring natively at `exp`;
//!   `sp:codes` and `sp:unaccepted` index live codes by expiry, `sp:client:<key>` a client's
//!   live codes (for `MAX_PENDING_PER_CLIENT`).
//! - `sp:room:<roomid>`: a hash per paired room (client1, client2, capacity, created_at), with
//!   `:members` (a list, accept order) and `:codes`; `sp:device:<id>:rooms|codes` index a
//!   device's rooms and codes for purges; `sp:tomb:<roomid>` remembers a deleted room for
//!   [`ROOM_TOMBSTONE_TTL`].
//! - `sp:named:<space>:<id>`: a dialect's named room (PrivyDrop), expiring natively at its
//!   expiry; `sp:ref:<day>` a hash of referrer counts of one day, `sp:ref:days` the days kept.
//! - `sp:ds:<code>`: a DropSilk room as JSON, expiring natively `DROPSILK_ROOM_TTL_SECS` after
//!   its last use. Its operations are the ones [`dropsilk`] writes once for every store: read
//!   the room, apply the operation in Rust, write it back only if nobody changed it meanwhile
//!   (a compare-and-set script), else read again and retry.
//!
//! Every change is one Lua script, so it is atomic with respect to every other change from any
//! node: of concurrent accepts of one code, exactly one creates the room. Acknowledged means
//! durable as far as Redis's persistence is configured (docs/deployment.md): with AOF and
//! `appendfsync always`, a script's writes are on disk before the node answers.

use std::sync::LazyLock;
use std::time::Duration;

use super::{Redis, RedisError, limits};
use crate::db::dropsilk::{self, Fate};
use crate::db::{
    Acceptance, Accepted, Checked, Created, Creator, Guard, Guarded, Millis, OTHER_REFERRERS,
    PairingDesk, PairingStore, Pending, Purged, ROOM_TOMBSTONE_TTL, ReferrerCounts, Room,
    RoomLookup, StoreError, StoreFuture, Swept, now_millis,
};
use crate::ids::{DeviceId, JoinCode, RoomId};
use crate::limits::guess::GuessPolicy;
use crate::limits::rate::Rate;

/// Server-generated codes offered to one create: with a million codes and a realistic number of
/// live ones, the first almost always succeeds.
const CODE_CANDIDATES: usize = 32;

/// A pairing request's script: the shared limits, the guard that counts them, then the
/// operation (see `lua/guard_prelude.lua`).
fn guarded_script(operation: &str) -> redis::Script {
    redis::Script::new(&format!(
        "{}\n{}\n{operation}",
        limits::PRELUDE,
        include_str!("lua/guard_prelude.lua")
    ))
}

static CREATE: LazyLock<redis::Script> =
    LazyLock::new(|| guarded_script(include_str!("lua/create_code.lua")));
static ACCEPT: LazyLock<redis::Script> =
    LazyLock::new(|| guarded_script(include_str!("lua/accept_code.lua")));
static CHECK: LazyLock<redis::Script> =
    LazyLock::new(|| guarded_script(include_str!("lua/check_code.lua")));
static BURY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/bury_rooms.lua")));
static SWEEP: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/sweep.lua")));
/// KEYS[1] a key; ARGV[1] the value it must still have ('' if absent); ARGV[2] the new value
/// ('' deletes it); ARGV[3] its time to live in ms. 1 if written, 0 if it had changed.
static COMPARE_AND_SET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local now = redis.call('GET', KEYS[1]) or '' \
         if now ~= ARGV[1] then return 0 end \
         if ARGV[2] == '' then redis.call('DEL', KEYS[1]) \
         else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end \
         return 1",
    )
});

/// ARGV[1] the key prefix, ARGV[2] the expiry (Unix ms), ARGV[3..] candidate names: creates
/// the first that names no live room and returns it (nil if none).
static CREATE_NAMED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "for i = 3, #ARGV do \
           if redis.call('SET', ARGV[1] .. ARGV[i], '1', 'PXAT', ARGV[2], 'NX') then \
             return ARGV[i] \
           end \
         end \
         return false",
    )
});
/// ARGV[1] day, ARGV[2] referrer, ARGV[3] the day's maximum of referrers, ARGV[4] what the
/// others count as.
static COUNT_REFERRER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local key = 'sp:ref:' .. ARGV[1] \
         local referrer = ARGV[2] \
         if redis.call('HEXISTS', key, referrer) == 0 \
            and redis.call('HLEN', key) >= tonumber(ARGV[3]) then \
           referrer = ARGV[4] \
         end \
         redis.call('HINCRBY', key, referrer, 1) \
         redis.call('SADD', 'sp:ref:days', ARGV[1]) \
         return 1",
    )
});
/// ARGV[1] a day: deletes the counts of every day before it; returns how many counts went.
static FORGET_REFERRERS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local gone = 0 \
         for _, day in ipairs(redis.call('SMEMBERS', 'sp:ref:days')) do \
           if day < ARGV[1] then \
             gone = gone + redis.call('HLEN', 'sp:ref:' .. day) \
             redis.call('DEL', 'sp:ref:' .. day) \
             redis.call('SREM', 'sp:ref:days', day) \
           end \
         end \
         return gone",
    )
});

/// Attempts of one DropSilk operation against concurrent changes of the same room (two
/// participants at most, so a second attempt almost always does it).
const DROPSILK_ATTEMPTS: usize = 16;

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        StoreError::Unavailable(e.0)
    }
}

/// Pending codes and paired rooms in Redis.
#[derive(Clone)]
pub struct RedisStore {
    redis: Redis,
}

impl RedisStore {
    /// A store on these connections.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

impl RedisStore {
    /// Runs `op` on the live DropSilk room of `code` with its expiry slid to `ttl` from now, and
    /// stores what becomes of it unless the room changed meanwhile (then reads it again).
    async fn with_dropsilk_room<T>(
        &self,
        code: &str,
        ttl: Duration,
        op: impl dropsilk::Op<T>,
    ) -> Result<T, StoreError> {
        let key = dropsilk_key(code);
        let ttl_ms = ttl.as_millis().max(1).to_string();
        for _ in 0..DROPSILK_ATTEMPTS {
            let stored: Option<String> = self.redis.query(redis::cmd("GET").arg(&key)).await?;
            let room = match &stored {
                None => None,
                Some(json) => {
                    let mut room: dropsilk::Room = serde_json::from_str(json)
                        .map_err(|e| StoreError::Internal(format!("stored DropSilk room: {e}")))?;
                    room.expires_at = expiry(ttl);
                    Some(room)
                }
            };
            let (answer, fate) = op(room);
            let new = match fate {
                Fate::Keep => return Ok(answer),
                Fate::Save(room) => serde_json::to_string(&room)
                    .map_err(|e| StoreError::Internal(format!("DropSilk room: {e}")))?,
                Fate::Delete => String::new(),
            };
            let old = stored.unwrap_or_default();
            let written: i64 = self
                .redis
                .script(&COMPARE_AND_SET, &[&key], &[&old, &new, &ttl_ms])
                .await?;
            if written == 1 {
                return Ok(answer);
            }
        }
        Err(StoreError::Unavailable(format!(
            "a DropSilk room changed {DROPSILK_ATTEMPTS} times during one operation"
        )))
    }
}

fn named_prefix(space: &str) -> String {
    format!("sp:named:{space}:")
}

fn dropsilk_key(code: &str) -> String {
    format!("sp:ds:{code}")
}

/// `ttl` from now, in store units.
fn expiry(ttl: Duration) -> Millis {
    now_millis().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

fn stored_room_id(s: &str) -> Result<RoomId, StoreError> {
    RoomId::parse(s).map_err(|e| StoreError::Internal(format!("stored roomid: {e}")))
}

fn stored_device_id(s: &str) -> Result<DeviceId, StoreError> {
    DeviceId::parse(s).map_err(|e| StoreError::Internal(format!("stored device: {e}")))
}

impl PairingStore for RedisStore {
    fn ping(&self) -> StoreFuture<()> {
        let redis = self.redis.clone();
        Box::pin(async move { Ok(redis.ping().await?) })
    }

    fn count_live_pendings(&self) -> StoreFuture<u64> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let mut cmd = redis::cmd("ZCOUNT");
            cmd.arg("sp:codes")
                .arg(format!("({}", now_millis()))
                .arg("+inf");
            Ok(redis.query::<u64>(&cmd).await?)
        })
    }

    fn create_pending(
        &self,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> StoreFuture<Created> {
        let redis = self.redis.clone();
        Box::pin(async move { unguarded(create(&redis, None, joinid, creator, exp).await?) })
    }

    fn accept(&self, joinid: JoinCode, device: DeviceId) -> StoreFuture<Acceptance> {
        let redis = self.redis.clone();
        Box::pin(async move { unguarded(accept(&redis, None, joinid, device).await?) })
    }

    fn check(&self, joinid: JoinCode, client1: DeviceId) -> StoreFuture<Checked> {
        let redis = self.redis.clone();
        Box::pin(async move { unguarded(check(&redis, None, joinid, client1).await?) })
    }

    fn lookup_room(&self, roomid: RoomId) -> StoreFuture<RoomLookup> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let key = format!("sp:room:{roomid}");
            let mut cmd = redis::cmd("EVAL");
            // One round trip, atomic: the three reads as a script.
            cmd.arg(
                "return {redis.call('HMGET', KEYS[1], 'client1', 'client2', 'capacity'), \
                 redis.call('LRANGE', KEYS[2], 0, -1), redis.call('EXISTS', KEYS[3])}",
            )
            .arg(3)
            .arg(&key)
            .arg(format!("{key}:members"))
            .arg(format!("sp:tomb:{roomid}"));
            type Row = (
                (Option<String>, Option<String>, Option<u32>),
                Vec<String>,
                i64,
            );
            let ((client1, client2, capacity), members, tomb): Row = redis.query(&cmd).await?;
            Ok(match (client1, client2) {
                (Some(client1), Some(client2)) => RoomLookup::Paired(Room {
                    client1: stored_device_id(&client1)?,
                    client2: stored_device_id(&client2)?,
                    capacity: capacity.unwrap_or(2),
                    members: members
                        .iter()
                        .map(|m| stored_device_id(m))
                        .collect::<Result<_, _>>()?,
                    roomid,
                }),
                _ if tomb == 1 => RoomLookup::Deleted,
                _ => RoomLookup::Unknown,
            })
        })
    }

    fn delete_room(&self, roomid: RoomId) -> StoreFuture<usize> {
        let store = self.clone();
        Box::pin(async move {
            let (rooms, _) = store.bury(&[roomid.to_string()], &[]).await?;
            Ok(rooms.len())
        })
    }

    fn purge_devices(&self, devices: Vec<DeviceId>) -> StoreFuture<Purged> {
        let store = self.clone();
        Box::pin(async move {
            let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
            let (rooms, pendings) = store.bury(&[], &devices).await?;
            Ok(Purged {
                rooms: rooms
                    .iter()
                    .map(|r| stored_room_id(r))
                    .collect::<Result<_, _>>()?,
                pendings,
            })
        })
    }

    fn sweep(&self, now: Millis) -> StoreFuture<Swept> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let now = now.to_string();
            let (removed, unaccepted): (usize, usize) = redis.script(&SWEEP, &[], &[&now]).await?;
            Ok(Swept {
                removed,
                unaccepted,
            })
        })
    }

    fn dropsilk_create(
        &self,
        code: String,
        host: dropsilk::NewParticipant,
        ttl: Duration,
    ) -> StoreFuture<Option<dropsilk::Room>> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let room = dropsilk::Room::new(code, host, expiry(ttl));
            let json = serde_json::to_string(&room)
                .map_err(|e| StoreError::Internal(format!("DropSilk room: {e}")))?;
            // An expired room of that code is gone already (native expiry).
            let mut set = redis::cmd("SET");
            set.arg(dropsilk_key(&room.code))
                .arg(json)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .arg("NX");
            let stored: Option<String> = redis.query(&set).await?;
            Ok(stored.map(|_| room))
        })
    }

    fn dropsilk_join(
        &self,
        code: String,
        guest: dropsilk::NewParticipant,
        ttl: Duration,
    ) -> StoreFuture<dropsilk::Joined> {
        let store = self.clone();
        let op = dropsilk::join_op(guest);
        Box::pin(async move { store.with_dropsilk_room(&code, ttl, op).await })
    }

    fn dropsilk_room(
        &self,
        code: String,
        participant: String,
        ttl: Duration,
    ) -> StoreFuture<Option<dropsilk::Room>> {
        let store = self.clone();
        let op = dropsilk::read_op(participant);
        Box::pin(async move { store.with_dropsilk_room(&code, ttl, op).await })
    }

    fn dropsilk_change(
        &self,
        code: String,
        participant: String,
        change: dropsilk::Change,
        ttl: Duration,
    ) -> StoreFuture<dropsilk::Changed> {
        let store = self.clone();
        let op = dropsilk::change_op(participant, change);
        Box::pin(async move { store.with_dropsilk_room(&code, ttl, op).await })
    }

    fn dropsilk_remove(
        &self,
        code: String,
        participant: String,
        ttl: Duration,
    ) -> StoreFuture<dropsilk::Removed> {
        let store = self.clone();
        let op = dropsilk::remove_op(participant);
        Box::pin(async move { store.with_dropsilk_room(&code, ttl, op).await })
    }

    /// Redis expires DropSilk rooms itself: nothing to sweep.
    fn dropsilk_sweep(&self, _now: Millis) -> StoreFuture<usize> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn create_named_room(
        &self,
        space: &'static str,
        candidates: Vec<String>,
        exp: Millis,
    ) -> StoreFuture<Option<String>> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let mut args = vec![named_prefix(space), exp.to_string()];
            args.extend(candidates);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Ok(redis.script(&CREATE_NAMED, &[], &args).await?)
        })
    }

    fn named_room_exists(&self, space: &'static str, id: String) -> StoreFuture<bool> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let key = format!("{}{id}", named_prefix(space));
            Ok(redis.query(redis::cmd("EXISTS").arg(key)).await?)
        })
    }

    fn set_named_room_expiry(
        &self,
        space: &'static str,
        id: String,
        exp: Millis,
    ) -> StoreFuture<bool> {
        let redis = self.redis.clone();
        Box::pin(async move {
            // 1 when the key was live (an expiry in the past deletes it at once).
            let key = format!("{}{id}", named_prefix(space));
            Ok(redis
                .query(redis::cmd("PEXPIREAT").arg(key).arg(exp))
                .await?)
        })
    }

    /// Redis expires named rooms itself: nothing to sweep.
    fn sweep_named_rooms(&self, _now: Millis) -> StoreFuture<usize> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn count_referrer(&self, day: String, referrer: String, max_per_day: u32) -> StoreFuture<()> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let max = max_per_day.to_string();
            let args = [
                day.as_str(),
                referrer.as_str(),
                max.as_str(),
                OTHER_REFERRERS,
            ];
            redis
                .script::<i64>(&COUNT_REFERRER, &[], &args)
                .await
                .map(drop)
                .map_err(StoreError::from)
        })
    }

    fn referrers(&self, since: String) -> StoreFuture<ReferrerCounts> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let days: Vec<String> = redis
                .query(redis::cmd("SMEMBERS").arg("sp:ref:days"))
                .await?;
            let mut counts = ReferrerCounts::new();
            for day in days.into_iter().filter(|d| *d >= since) {
                let day_counts: std::collections::BTreeMap<String, u64> = redis
                    .query(redis::cmd("HGETALL").arg(format!("sp:ref:{day}")))
                    .await?;
                if !day_counts.is_empty() {
                    counts.insert(day, day_counts);
                }
            }
            Ok(counts)
        })
    }

    fn forget_referrers(&self, before: String) -> StoreFuture<usize> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let gone: i64 = redis.script(&FORGET_REFERRERS, &[], &[&before]).await?;
            Ok(usize::try_from(gone).unwrap_or_default())
        })
    }
}

/// The pairing desk on Redis: every request is one script that counts the client's REST
/// rate and, for a possible guess, its guess budget (the records [`SharedRate`] and
/// [`SharedGuesses`] keep, so every route of every node draws on one budget), then does the
/// store work, atomically: one round trip, where counting apart would take four.
///
/// [`SharedRate`]: super::limits::SharedRate
/// [`SharedGuesses`]: super::limits::SharedGuesses
#[derive(Clone)]
pub struct RedisDesk {
    redis: Redis,
    limits: Limits,
}

/// The limits a guarded request counts against.
#[derive(Debug, Clone, Copy)]
struct Limits {
    rest: Rate,
    guesses: GuessPolicy,
}

impl RedisDesk {
    /// A desk on these connections, with the REST rate and guess policy every node shares.
    pub fn new(redis: Redis, rest: Rate, guesses: GuessPolicy) -> Self {
        Self {
            redis,
            limits: Limits { rest, guesses },
        }
    }
}

impl PairingDesk for RedisDesk {
    fn create(
        &self,
        guard: Guard,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> StoreFuture<Guarded<Created>> {
        let (redis, limits) = (self.redis.clone(), self.limits);
        Box::pin(async move { create(&redis, Some((guard, limits)), joinid, creator, exp).await })
    }

    fn accept(
        &self,
        guard: Guard,
        joinid: JoinCode,
        device: DeviceId,
    ) -> StoreFuture<Guarded<Acceptance>> {
        let (redis, limits) = (self.redis.clone(), self.limits);
        Box::pin(async move { accept(&redis, Some((guard, limits)), joinid, device).await })
    }

    fn check(
        &self,
        guard: Guard,
        joinid: JoinCode,
        client1: DeviceId,
    ) -> StoreFuture<Guarded<Checked>> {
        let (redis, limits) = (self.redis.clone(), self.limits);
        Box::pin(async move { check(&redis, Some((guard, limits)), joinid, client1).await })
    }
}

/// The guard's arguments of a guarded script (`lua/guard_prelude.lua`): the instant, the REST
/// bucket and its rate, the guess record and its policy; empty names count nothing (a bare store
/// call).
fn guard_args(guarded: Option<(Guard, Limits)>) -> Vec<String> {
    let mut args = vec![now_millis().to_string()];
    match guarded {
        Some((guard, limits)) => {
            args.push(limits::rate_key("rest", guard.client));
            args.extend(limits::rate_args(limits.rest));
            args.push(if guard.guess {
                limits::guess_key(guard.client)
            } else {
                String::new()
            });
            args.extend(limits::guess_args(limits.guesses));
        }
        None => args.extend(std::iter::repeat_n(String::new(), 10)),
    }
    args
}

/// Runs a guarded script with the operation's own `args`: its refusal, or its answer (a status
/// word and its fields).
async fn run_guarded(
    redis: &Redis,
    script: &redis::Script,
    guarded: Option<(Guard, Limits)>,
    args: &[&str],
) -> Result<Result<Vec<String>, Refused>, StoreError> {
    let guard = guard_args(guarded);
    let mut all: Vec<&str> = guard.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    let answer: Vec<String> = redis.script(script, &[], &all).await?;
    let wait = || Duration::from_millis(field_u64(answer.get(1)));
    Ok(match answer.first().map(String::as_str) {
        Some("rate") => Err(Refused::Rate(wait())),
        Some("locked") => Err(Refused::Locked(wait())),
        _ => Ok(answer),
    })
}

/// A guarded script's refusal, before the store work ran.
enum Refused {
    Rate(Duration),
    Locked(Duration),
}

impl Refused {
    fn answer<T>(self) -> Guarded<T> {
        match self {
            Self::Rate(wait) => Guarded::RateLimited(wait),
            Self::Locked(wait) => Guarded::LockedOut(wait),
        }
    }
}

fn field_u64(field: Option<&String>) -> u64 {
    field.and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The lock-out a failed guess's answer names (its second field, 0 for none).
fn lockout(answer: &[String]) -> Option<Duration> {
    match field_u64(answer.get(1)) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// What a bare store call answers (it counts no limit, so nothing refuses it).
fn unguarded<T>(answer: Guarded<T>) -> Result<T, StoreError> {
    match answer {
        Guarded::Answered { outcome, .. } => Ok(outcome),
        _ => Err(StoreError::Internal(
            "a store call without limits was refused".into(),
        )),
    }
}

async fn create(
    redis: &Redis,
    guarded: Option<(Guard, Limits)>,
    joinid: Option<JoinCode>,
    creator: Creator,
    exp: Millis,
) -> Result<Guarded<Created>, StoreError> {
    let explicit = joinid.is_some();
    let candidates: Vec<String> = match joinid {
        Some(code) => vec![code.to_string()],
        None => (0..CODE_CANDIDATES)
            .map(|_| JoinCode::generate().to_string())
            .collect(),
    };
    let exp_s = exp.to_string();
    let capacity = creator.capacity.to_string();
    let max = creator.max_pending.to_string();
    let mut args: Vec<&str> = vec![
        &exp_s,
        creator.client1.as_str(),
        &creator.client_key,
        &capacity,
        &max,
        if explicit { "1" } else { "0" },
    ];
    args.extend(candidates.iter().map(String::as_str));
    let answer = match run_guarded(redis, &CREATE, guarded, &args).await? {
        Ok(answer) => answer,
        Err(refused) => return Ok(refused.answer()),
    };
    let (outcome, lockout) = match answer.first().map(String::as_str) {
        Some("ok") => {
            let code = answer.get(1).cloned().unwrap_or_default();
            let joinid = JoinCode::parse(&code)
                .map_err(|e| StoreError::Internal(format!("created code: {e}")))?;
            (Created::Ok(Pending { joinid, exp }), None)
        }
        Some("conflict") => (Created::Conflict, lockout(&answer)),
        Some("too_many") => (
            Created::TooManyPending {
                next_expiry: answer
                    .get(1)
                    .and_then(|s| s.parse::<f64>().ok())
                    .map_or(exp, |ms| ms as Millis),
            },
            None,
        ),
        _ => (Created::Exhausted, None),
    };
    Ok(Guarded::Answered { outcome, lockout })
}

async fn accept(
    redis: &Redis,
    guarded: Option<(Guard, Limits)>,
    joinid: JoinCode,
    device: DeviceId,
) -> Result<Guarded<Acceptance>, StoreError> {
    let new_room = RoomId::generate();
    let args = [joinid.as_str(), device.as_str(), new_room.as_str()];
    let answer = match run_guarded(redis, &ACCEPT, guarded, &args).await? {
        Ok(answer) => answer,
        Err(refused) => return Ok(refused.answer()),
    };
    let (outcome, created_at, lockout) = match answer.first().map(String::as_str) {
        Some("room") => (
            Accepted::Room(stored_room_id(answer.get(1).map_or("", String::as_str))?),
            answer.get(2).and_then(|s| s.parse().ok()),
            None,
        ),
        Some("conflict") => (Accepted::Conflict, None, None),
        _ => (Accepted::NotFound, None, lockout(&answer)),
    };
    Ok(Guarded::Answered {
        outcome: Acceptance {
            outcome,
            created_at,
        },
        lockout,
    })
}

async fn check(
    redis: &Redis,
    guarded: Option<(Guard, Limits)>,
    joinid: JoinCode,
    client1: DeviceId,
) -> Result<Guarded<Checked>, StoreError> {
    let args = [joinid.as_str(), client1.as_str()];
    let answer = match run_guarded(redis, &CHECK, guarded, &args).await? {
        Ok(answer) => answer,
        Err(refused) => return Ok(refused.answer()),
    };
    let (outcome, lockout) = match answer.first().map(String::as_str) {
        Some("room") => (
            Checked::Room(stored_room_id(answer.get(1).map_or("", String::as_str))?),
            None,
        ),
        Some("waiting") => (Checked::Waiting, None),
        _ => (Checked::NotFound, lockout(&answer)),
    };
    Ok(Guarded::Answered { outcome, lockout })
}

impl RedisStore {
    /// Buries rooms (and, with devices, every code and room of those devices); returns the rooms
    /// deleted and how many live codes went.
    async fn bury(
        &self,
        rooms: &[String],
        devices: &[String],
    ) -> Result<(Vec<String>, usize), StoreError> {
        let now = now_millis().to_string();
        let ttl = (ROOM_TOMBSTONE_TTL.as_millis() as u64).to_string();
        let n = rooms.len().to_string();
        let mut args: Vec<&str> = vec![&now, &ttl, &n];
        args.extend(rooms.iter().map(String::as_str));
        args.extend(devices.iter().map(String::as_str));
        let mut answer: Vec<String> = self.redis.script(&BURY, &[], &args).await?;
        let pendings = answer.pop().and_then(|p| p.parse().ok()).unwrap_or(0);
        answer.pop(); // the "|" separator
        Ok((answer, pendings))
    }
}
