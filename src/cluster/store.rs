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
//!
//! Every change is one Lua script, so it is atomic with respect to every other change from any
//! node: of concurrent accepts of one code, exactly one creates the room. Acknowledged means
//! durable as far as Redis's persistence is configured (docs/deployment.md): with AOF and
//! `appendfsync always`, a script's writes are on disk before the node answers.

use std::sync::LazyLock;

use super::{Redis, RedisError};
use crate::db::{
    Acceptance, Accepted, Checked, Created, Creator, Millis, PairingStore, Pending, Purged,
    ROOM_TOMBSTONE_TTL, Room, RoomLookup, StoreError, StoreFuture, Swept, now_millis,
};
use crate::ids::{DeviceId, JoinCode, RoomId};

/// Server-generated codes offered to one create: with a million codes and a realistic number of
/// live ones, the first almost always succeeds.
const CODE_CANDIDATES: usize = 32;

static CREATE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/create_code.lua")));
static ACCEPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/accept_code.lua")));
static BURY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/bury_rooms.lua")));
static SWEEP: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/sweep.lua")));

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
        Box::pin(async move {
            let explicit = joinid.is_some();
            let candidates: Vec<String> = match joinid {
                Some(code) => vec![code.to_string()],
                None => (0..CODE_CANDIDATES)
                    .map(|_| JoinCode::generate().to_string())
                    .collect(),
            };
            let now = now_millis().to_string();
            let exp_s = exp.to_string();
            let capacity = creator.capacity.to_string();
            let max = creator.max_pending.to_string();
            let mut args: Vec<&str> = vec![
                &now,
                &exp_s,
                creator.client1.as_str(),
                &creator.client_key,
                &capacity,
                &max,
                if explicit { "1" } else { "0" },
            ];
            args.extend(candidates.iter().map(String::as_str));
            let answer: Vec<String> = redis.script(&CREATE, &[], &args).await?;
            Ok(match answer.first().map(String::as_str) {
                Some("ok") => {
                    let code = answer.get(1).cloned().unwrap_or_default();
                    let joinid = JoinCode::parse(&code)
                        .map_err(|e| StoreError::Internal(format!("created code: {e}")))?;
                    Created::Ok(Pending { joinid, exp })
                }
                Some("conflict") => Created::Conflict,
                Some("too_many") => Created::TooManyPending {
                    next_expiry: answer
                        .get(1)
                        .and_then(|s| s.parse::<f64>().ok())
                        .map_or(exp, |ms| ms as Millis),
                },
                _ => Created::Exhausted,
            })
        })
    }

    fn accept(&self, joinid: JoinCode, device: DeviceId) -> StoreFuture<Acceptance> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let now = now_millis().to_string();
            let new_room = RoomId::generate();
            let answer: Vec<String> = redis
                .script(
                    &ACCEPT,
                    &[],
                    &[joinid.as_str(), device.as_str(), &now, new_room.as_str()],
                )
                .await?;
            Ok(match answer.first().map(String::as_str) {
                Some("room") => Acceptance {
                    outcome: Accepted::Room(stored_room_id(
                        answer.get(1).map_or("", String::as_str),
                    )?),
                    created_at: answer.get(2).and_then(|s| s.parse().ok()),
                },
                Some("conflict") => Acceptance {
                    outcome: Accepted::Conflict,
                    created_at: None,
                },
                _ => Acceptance {
                    outcome: Accepted::NotFound,
                    created_at: None,
                },
            })
        })
    }

    fn check(&self, joinid: JoinCode, client1: DeviceId) -> StoreFuture<Checked> {
        let redis = self.redis.clone();
        Box::pin(async move {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(format!("sp:code:{joinid}"))
                .arg("client1")
                .arg("exp")
                .arg("roomid");
            let row: (Option<String>, Option<Millis>, Option<String>) = redis.query(&cmd).await?;
            Ok(match row {
                (Some(owner), Some(exp), roomid)
                    if owner == client1.as_str() && exp > now_millis() =>
                {
                    match roomid {
                        Some(roomid) => Checked::Room(stored_room_id(&roomid)?),
                        None => Checked::Waiting,
                    }
                }
                _ => Checked::NotFound,
            })
        })
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
