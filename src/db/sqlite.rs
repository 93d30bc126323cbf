//! The pairing store in embedded SQLite.
//!
//! Every method is async and runs its SQLite work off the runtime (reads on tokio's blocking pool,
//! writes on one writer thread), so a slow disk never stalls it. Every write is atomic on its own
//! (a savepoint), and the writer commits the writes waiting for it together, in one `IMMEDIATE`
//! transaction, before it answers any of them: taking the write lock up front means two
//! concurrent accepts of one code serialise instead of both reading "not accepted yet", and one
//! commit for a batch means one set of WAL pages for what would have been many.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use tokio::sync::{mpsc, oneshot};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::dropsilk::{self, Changed, Fate, Joined, Removed};
use super::{
    Acceptance, Accepted, Checked, Created, Creator, Millis, OTHER_REFERRERS, PairingStore,
    Pending, Purged, ROOM_TOMBSTONE_TTL, ReferrerCounts, Room, RoomLookup, StoreError, StoreFuture,
    Swept, now_millis,
};
use crate::ids::{DeviceId, JoinCode, RoomId};

mod embedded {
    refinery::embed_migrations!("sql");
}

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pooled connections. WAL lets readers proceed beside the one writer; more connections than cores
/// mostly add lock contention.
const POOL_SIZE: u32 = 8;

/// Server-generated codes tried before giving up; with a million codes and a realistic number of
/// live ones, the first almost always succeeds.
const CODE_ATTEMPTS: usize = 32;

/// A failure of SQLite itself, as this module sees it; callers see it as a [`SqlError`].
#[derive(Debug, thiserror::Error)]
enum SqlError {
    /// No connection could be taken from the pool in time.
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// SQLite refused or failed a statement.
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Applying the migrations in `sql/` failed.
    #[error("migrations: {0}")]
    Migration(#[from] refinery::Error),
    /// Creating the database's directory failed.
    #[error("database directory: {0}")]
    Io(#[from] std::io::Error),
    /// The writer thread is gone (it panicked); no write can be made.
    #[error("the database writer thread has stopped")]
    WriterGone,
    /// The write succeeded, but the batch it was committed with was not.
    #[error("committing a batch of writes: {}", .0.0)]
    Batch(BatchFailed),
    /// The blocking task running the query panicked or was cancelled.
    #[error("blocking task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Whether SQLite failed for another connection's lock (a passing condition).
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl From<SqlError> for StoreError {
    fn from(e: SqlError) -> Self {
        let busy = match &e {
            SqlError::Sql(e) => is_busy(e),
            SqlError::Batch(BatchFailed(e)) => is_busy(e),
            SqlError::Pool(_) => true,
            _ => false,
        };
        if busy {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Internal(e.to_string())
        }
    }
}

/// Handle to the database; cheap to clone.
///
/// Reads go through a pool on tokio's blocking threads; every write goes to one dedicated writer
/// thread that owns the only writing connection and runs writes one after another. SQLite admits
/// one writer at a time anyway: when several connections race for the write lock, the losers
/// sleep in SQLite's busy handler (milliseconds each), and when blocking threads queue on a mutex
/// instead, every hand-over is a thread wake-up. A single thread fed by a queue does neither.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool<SqliteConnectionManager>,
    writes: mpsc::Sender<WriteJob>,
}

/// A write for the writer thread: runs on the batch's transaction, in a savepoint of its own,
/// and hands back how to answer its caller once the batch is committed (or is not). Given no
/// connection, it is not run: its batch has no transaction to run it in, and fails.
type WriteJob = Box<dyn FnOnce(Option<&mut Connection>) -> Answer + Send>;

/// Tells a write's caller how its write went, given whether its batch was committed.
type Answer = Box<dyn FnOnce(Result<(), BatchFailed>) + Send>;

/// Why the writes of a batch were not committed, for each of their callers.
#[derive(Debug, Clone)]
struct BatchFailed(std::sync::Arc<rusqlite::Error>);

/// Writes that may wait for the writer thread before callers wait to enqueue (backpressure).
const WRITE_QUEUE: usize = 1024;

/// Writes committed together at most. Each runs in tens of microseconds, so a full batch adds a
/// few milliseconds to its first write's answer at worst, and only under a load that would
/// otherwise queue it behind as many commits.
pub const MAX_WRITE_BATCH: usize = 64;

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || Self::open_blocking(&path)).await;
        Ok(opened.map_err(SqlError::from)??)
    }

    fn open_blocking(path: &Path) -> Result<Self, SqlError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // The writer first, alone: it switches the file to WAL (which needs the database to
        // itself) and migrates it before any pooled connection exists. Opening the pool first
        // made its connections race each other and the migrations for that lock ("database is
        // locked" errors at start, and retries).
        let mut writer = Connection::open(path)?;
        configure_connection(&mut writer)?;
        // 1 KiB pages, for a new file only (an existing one keeps its size): a pairing's rows
        // are small and land on random leaves of several b-trees, and every leaf it touches is
        // a whole page in the WAL. Smaller pages meant ~15% more pairings a second here.
        writer.execute_batch("PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;")?;
        // The writer never checkpoints on commit: copying the WAL back into the database (and
        // syncing it) would land on whichever request happened to commit the 1000th page. It
        // checkpoints between batches instead, at most every [`CHECKPOINT_INTERVAL`], and
        // [`Store::checkpoint`] copies what it can off the request path too.
        writer.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        embedded::migrations::runner().run(&mut writer)?;
        // WAL is a property of the file now; pooled connections only read it.
        let manager = SqliteConnectionManager::file(path).with_init(configure_connection);
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)?;
        let (writes, jobs) = mpsc::channel::<WriteJob>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer, jobs))?;
        Ok(Self { pool, writes })
    }

    /// Copies committed WAL frames into the database file without blocking readers or the
    /// writer (`PASSIVE`), so the WAL stays small. Run periodically by [`run_checkpoints`].
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .map_err(StoreError::from)
    }

    /// Runs `f` on the writer thread, atomically, and waits until it is committed.
    async fn with_writer<T, F>(&self, f: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, SqlError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            // A caller that gave up (a timed-out health check) is not waiting for this: skip
            // it rather than spend the writer's time on it ahead of real writes.
            if answer.is_closed() {
                return Box::new(|_| {});
            }
            let result = conn.map(|conn| atomically(conn, f));
            Box::new(move |committed| {
                let _ = answer.send(match (result, committed) {
                    (Some(result), Ok(())) => result,
                    // What it did was rolled back with the batch; a failure of its own says more.
                    (Some(result), Err(failed)) => result.and(Err(SqlError::Batch(failed))),
                    (None, Err(failed)) => Err(SqlError::Batch(failed)),
                    (None, Ok(())) => Err(SqlError::WriterGone),
                });
            })
        });
        self.writes
            .send(job)
            .await
            .map_err(|_| SqlError::WriterGone)?;
        answered.await.map_err(|_| SqlError::WriterGone)?
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqlError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }

    /// A trivial round trip through the database, for health checks: takes the write lock and
    /// reads the schema. Pairing writes, so a database that can be read but not written
    /// (another process holding a write transaction, a read-only file) is not healthy; `SELECT 1`
    /// alone would not even touch the file. Through the writer, so a writer stuck behind a lock
    /// shows up too: the probe runs in a batch, and so only once its batch holds the write lock.
    async fn probe(&self) -> Result<(), SqlError> {
        self.with_writer(|c| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Pending codes that have not expired (accepted ones included, until they expire).
    async fn live_pendings(&self) -> Result<u64, SqlError> {
        self.with_conn(|c| {
            let n: i64 = c
                .prepare_cached("SELECT count(*) FROM pendings WHERE exp > ?1")?
                .query_row(params![now_millis()], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or_default())
        })
        .await
    }

    /// Stores a pending code for the creator, replacing an expired row of the same code, unless
    /// the creator's client holds its maximum of live codes. With no `joinid`, picks a random
    /// six-digit code that is not live. One transaction: concurrent creates of one client cannot
    /// both pass the cap.
    async fn create(
        &self,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> Result<Created, SqlError> {
        self.with_writer(move |c| {
            let now = now_millis();
            if let Some(next_expiry) = over_pending_cap(c, &creator, now)? {
                return Ok(Created::TooManyPending { next_expiry });
            }
            let created = match joinid {
                None => {
                    let mut created = Created::Exhausted;
                    for _ in 0..CODE_ATTEMPTS {
                        let code = JoinCode::generate();
                        if insert_pending(c, &code, &creator, exp, now)? {
                            created = Created::Ok(Pending { joinid: code, exp });
                            break;
                        }
                    }
                    created
                }
                Some(joinid) => {
                    if insert_pending(c, &joinid, &creator, exp, now)? {
                        Created::Ok(Pending { joinid, exp })
                    } else {
                        Created::Conflict
                    }
                }
            };
            Ok(created)
        })
        .await
    }

    /// Accepts a live code for `device` (see [`PairingStore::accept`]), in one transaction.
    async fn accept_code(
        &self,
        joinid: JoinCode,
        device: DeviceId,
    ) -> Result<Acceptance, SqlError> {
        self.with_writer(move |c| {
            let now = now_millis();
            type Row = (String, Option<String>, Option<String>, Millis, u32);
            let row: Option<Row> = c
                .query_row(
                    "SELECT client1, client2, roomid, created_at, capacity FROM pendings
                     WHERE joinid = ?1 AND exp > ?2",
                    params![joinid.as_str(), now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((client1, client2, roomid, created_at, capacity)) = row else {
                return Ok(Acceptance {
                    outcome: Accepted::NotFound,
                    created_at: None,
                });
            };
            let mut fresh = None;
            let outcome = if client1 == device.as_str() {
                Accepted::Conflict
            } else {
                match (client2, roomid) {
                    (None, None) => {
                        let roomid = RoomId::generate();
                        c.execute(
                            "INSERT INTO rooms (roomid, client1, client2, created_at, capacity)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![roomid.as_str(), client1, device.as_str(), now, capacity],
                        )?;
                        for (position, member) in [client1.as_str(), device.as_str()].iter().enumerate() {
                            c.execute(
                                "INSERT INTO room_members (roomid, position, device) VALUES (?1, ?2, ?3)",
                                params![roomid.as_str(), position as i64, member],
                            )?;
                        }
                        c.execute(
                            "UPDATE pendings SET client2 = ?2, roomid = ?3 WHERE joinid = ?1",
                            params![joinid.as_str(), device.as_str(), roomid.as_str()],
                        )?;
                        fresh = Some(created_at);
                        Accepted::Room(roomid)
                    }
                    (Some(_), Some(roomid)) => {
                        let members = room_members(c, &roomid)?;
                        if members.iter().any(|m| m == device.as_str()) {
                            Accepted::Room(stored_room_id(roomid)?)
                        } else if members.len() < capacity as usize {
                            c.execute(
                                "INSERT INTO room_members (roomid, position, device) VALUES (?1, ?2, ?3)",
                                params![roomid, members.len() as i64, device.as_str()],
                            )?;
                            Accepted::Room(stored_room_id(roomid)?)
                        } else {
                            Accepted::Conflict
                        }
                    }
                    // A row half-accepted by hand: leave it alone.
                    _ => Accepted::Conflict,
                }
            };
            Ok(Acceptance {
                outcome,
                created_at: fresh,
            })
        })
        .await
    }

    /// client1's poll: has its live code been accepted, and into which room?
    async fn check_code(&self, joinid: JoinCode, client1: DeviceId) -> Result<Checked, SqlError> {
        self.with_conn(move |c| {
            let row: Option<Option<String>> = c
                .prepare_cached(
                    "SELECT roomid FROM pendings WHERE joinid = ?1 AND client1 = ?2 AND exp > ?3",
                )?
                .query_row(
                    params![joinid.as_str(), client1.as_str(), now_millis()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match row {
                None => Checked::NotFound,
                Some(None) => Checked::Waiting,
                Some(Some(roomid)) => Checked::Room(stored_room_id(roomid)?),
            })
        })
        .await
    }

    /// What a room id names: a paired room, a deleted one, or nothing.
    async fn lookup(&self, roomid: RoomId) -> Result<RoomLookup, SqlError> {
        self.with_conn(move |c| {
            // One read transaction: the room, its members and its tombstone from one snapshot,
            // so a delete between the statements cannot show a paired room without members.
            let c = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let row: Option<(String, String, u32)> = c
                .prepare_cached("SELECT client1, client2, capacity FROM rooms WHERE roomid = ?1")?
                .query_row(params![roomid.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((client1, client2, capacity)) = row {
                let members = room_members(&c, roomid.as_str())?
                    .into_iter()
                    .map(stored_device_id)
                    .collect::<Result<_, _>>()?;
                return Ok(RoomLookup::Paired(Room {
                    client1: stored_device_id(client1)?,
                    client2: stored_device_id(client2)?,
                    capacity,
                    members,
                    roomid,
                }));
            }
            let deleted = c
                .prepare_cached("SELECT 1 FROM room_tombstones WHERE roomid = ?1")?
                .exists(params![roomid.as_str()])?;
            Ok(if deleted {
                RoomLookup::Deleted
            } else {
                RoomLookup::Unknown
            })
        })
        .await
    }

    /// Deletes a paired room and the codes that led to it, and remembers that it is dead;
    /// returns how many rooms went (0 or 1).
    async fn delete(&self, roomid: RoomId) -> Result<usize, SqlError> {
        self.with_writer(move |c| {
            let deleted = bury_room(c, roomid.as_str(), now_millis())?;
            Ok(deleted)
        })
        .await
    }

    /// Deletes every pending code and room in which any of `devices` is a member.
    async fn purge(&self, devices: Vec<DeviceId>) -> Result<Purged, SqlError> {
        self.with_writer(move |c| {
            let mut rooms = BTreeSet::new();
            let mut pendings = 0;
            for device in &devices {
                let mut select =
                    c.prepare_cached("SELECT roomid FROM room_members WHERE device = ?1")?;
                let found =
                    select.query_map(params![device.as_str()], |r| r.get::<_, String>(0))?;
                for roomid in found {
                    rooms.insert(roomid?);
                }
                pendings += c.execute(
                    "DELETE FROM pendings WHERE client1 = ?1 OR client2 = ?1",
                    params![device.as_str()],
                )?;
            }
            let now = now_millis();
            for roomid in &rooms {
                bury_room(c, roomid, now)?;
            }
            let rooms = rooms
                .into_iter()
                .map(stored_room_id)
                .collect::<Result<_, _>>()?;
            Ok(Purged { rooms, pendings })
        })
        .await
    }

    /// Deletes pending codes that expired at or before `now`, in one transaction, telling how
    /// many of them had never been accepted.
    async fn sweep_expired(&self, now: Millis) -> Result<Swept, SqlError> {
        self.with_writer(move |c| {
            let unaccepted: i64 = c.query_row(
                "SELECT count(*) FROM pendings WHERE exp <= ?1 AND client2 IS NULL",
                params![now],
                |r| r.get(0),
            )?;
            let removed = c.execute("DELETE FROM pendings WHERE exp <= ?1", params![now])?;
            let forgotten = now - ROOM_TOMBSTONE_TTL.as_millis() as Millis;
            c.execute(
                "DELETE FROM room_tombstones WHERE deleted_at <= ?1",
                params![forgotten],
            )?;
            Ok(Swept {
                removed,
                unaccepted: usize::try_from(unaccepted).unwrap_or_default(),
            })
        })
        .await
    }
}

/// DropSilk's rooms: each operation loads the live room, applies the change written in
/// [`dropsilk`], and saves it, in one `IMMEDIATE` transaction on the writer.
impl SqliteStore {
    /// Runs `f` on the live room of `code` (its expiry already slid to `ttl` from now) in one
    /// transaction; `f` returns the answer and what becomes of the room.
    async fn with_dropsilk_room<T, F>(
        &self,
        code: String,
        ttl: Duration,
        f: F,
    ) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: dropsilk::Op<T>,
    {
        self.with_writer(move |c| {
            let now = now_millis();
            let room = load_dropsilk_room(c, &code, now)?.map(|mut room| {
                room.expires_at = expiry(now, ttl);
                room
            });
            let (answer, fate) = f(room);
            match fate {
                Fate::Keep => {}
                Fate::Save(room) => save_dropsilk_room(c, &room)?,
                Fate::Delete => {
                    c.execute("DELETE FROM dropsilk_rooms WHERE code = ?1", params![code])?;
                }
            }
            Ok(answer)
        })
        .await
    }

    async fn dropsilk_create_room(
        &self,
        code: String,
        host: dropsilk::NewParticipant,
        ttl: Duration,
    ) -> Result<Option<dropsilk::Room>, SqlError> {
        self.with_writer(move |c| {
            let now = now_millis();
            let room = dropsilk::Room::new(code, host, expiry(now, ttl));
            let inserted = c
                .prepare_cached(
                    "INSERT INTO dropsilk_rooms (code, host_id, host_name, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (code) DO UPDATE SET
                         host_id = excluded.host_id, host_name = excluded.host_name,
                         host_ready = 0, host_file_count = 0, host_total_bytes = 0,
                         host_screen_share = 0, host_chat = 0,
                         guest_id = NULL, guest_name = NULL, guest_ready = 0,
                         guest_file_count = 0, guest_total_bytes = 0,
                         guest_screen_share = 0, guest_chat = 0,
                         created_at = excluded.created_at, expires_at = excluded.expires_at
                     WHERE dropsilk_rooms.expires_at <= ?4",
                )?
                .execute(params![
                    room.code,
                    room.host.id,
                    room.host.name,
                    now,
                    room.expires_at
                ])?;
            Ok((inserted == 1).then_some(room))
        })
        .await
    }

    async fn dropsilk_sweep_rooms(&self, now: Millis) -> Result<usize, SqlError> {
        self.with_writer(move |c| {
            Ok(c.execute(
                "DELETE FROM dropsilk_rooms WHERE expires_at <= ?1",
                params![now],
            )?)
        })
        .await
    }
}

/// `ttl` from `now`, in store units.
fn expiry(now: Millis, ttl: Duration) -> Millis {
    now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// The live DropSilk room of `code`.
fn load_dropsilk_room(
    c: &Connection,
    code: &str,
    now: Millis,
) -> Result<Option<dropsilk::Room>, SqlError> {
    let participant =
        |r: &rusqlite::Row<'_>, at: usize| -> rusqlite::Result<Option<dropsilk::Participant>> {
            let id: Option<String> = r.get(at)?;
            let Some(id) = id else { return Ok(None) };
            let file_count: i64 = r.get(at + 3)?;
            Ok(Some(dropsilk::Participant {
                id,
                name: r.get::<_, Option<String>>(at + 1)?.unwrap_or_default(),
                ready: r.get(at + 2)?,
                file_count: u64::try_from(file_count).unwrap_or_default(),
                total_bytes: r.get(at + 4)?,
                screen_share: r.get(at + 5)?,
                chat: r.get(at + 6)?,
            }))
        };
    let row = c
        .prepare_cached(
            "SELECT host_id, host_name, host_ready, host_file_count, host_total_bytes,
                    host_screen_share, host_chat,
                    guest_id, guest_name, guest_ready, guest_file_count, guest_total_bytes,
                    guest_screen_share, guest_chat, expires_at
             FROM dropsilk_rooms WHERE code = ?1 AND expires_at > ?2",
        )?
        .query_row(params![code, now], |r| {
            Ok((
                participant(r, 0)?,
                participant(r, 7)?,
                r.get::<_, Millis>(14)?,
            ))
        })
        .optional()?;
    Ok(row.and_then(|(host, guest, expires_at)| {
        Some(dropsilk::Room {
            code: code.to_owned(),
            host: host?,
            guest,
            expires_at,
        })
    }))
}

/// Writes a DropSilk room's participants and expiry back.
fn save_dropsilk_room(c: &Connection, room: &dropsilk::Room) -> Result<(), SqlError> {
    let h = &room.host;
    let g = room.guest.as_ref();
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    c.prepare_cached(
        "UPDATE dropsilk_rooms SET
             host_id = ?2, host_name = ?3, host_ready = ?4, host_file_count = ?5,
             host_total_bytes = ?6, host_screen_share = ?7, host_chat = ?8,
             guest_id = ?9, guest_name = ?10, guest_ready = ?11, guest_file_count = ?12,
             guest_total_bytes = ?13, guest_screen_share = ?14, guest_chat = ?15,
             expires_at = ?16
         WHERE code = ?1",
    )?
    .execute(params![
        room.code,
        h.id,
        h.name,
        h.ready,
        count(h.file_count),
        h.total_bytes,
        h.screen_share,
        h.chat,
        g.map(|g| g.id.as_str()),
        g.map(|g| g.name.as_str()),
        g.is_some_and(|g| g.ready),
        g.map_or(0, |g| count(g.file_count)),
        g.map_or(0.0, |g| g.total_bytes),
        g.is_some_and(|g| g.screen_share),
        g.is_some_and(|g| g.chat),
        room.expires_at,
    ])?;
    Ok(())
}

impl SqliteStore {
    /// Creates the first free name of `candidates` (see [`PairingStore::create_named_room`]).
    async fn create_named(
        &self,
        space: &'static str,
        candidates: Vec<String>,
        exp: Millis,
    ) -> Result<Option<String>, SqlError> {
        self.with_writer(move |c| {
            let now = now_millis();
            let mut created = None;
            {
                let mut insert = c.prepare_cached(
                    "INSERT INTO named_rooms (space, id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (space, id) DO UPDATE SET
                         created_at = excluded.created_at, expires_at = excluded.expires_at
                     WHERE named_rooms.expires_at <= ?3",
                )?;
                for id in candidates {
                    if insert.execute(params![space, id, now, exp])? == 1 {
                        created = Some(id);
                        break;
                    }
                }
            }
            Ok(created)
        })
        .await
    }

    /// Whether `id` names a live room of `space`.
    async fn named_exists(&self, space: &'static str, id: String) -> Result<bool, SqlError> {
        self.with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT 1 FROM named_rooms WHERE space = ?1 AND id = ?2 AND expires_at > ?3",
            )?
            .exists(params![space, id, now_millis()])?)
        })
        .await
    }

    /// Moves a live named room's expiry; whether it was live.
    async fn set_named_expiry(
        &self,
        space: &'static str,
        id: String,
        exp: Millis,
    ) -> Result<bool, SqlError> {
        self.with_writer(move |c| {
            let changed = c
                .prepare_cached(
                    "UPDATE named_rooms SET expires_at = ?3
                     WHERE space = ?1 AND id = ?2 AND expires_at > ?4",
                )?
                .execute(params![space, id, exp, now_millis()])?;
            Ok(changed == 1)
        })
        .await
    }

    /// Deletes named rooms that expired at or before `now`.
    async fn sweep_named(&self, now: Millis) -> Result<usize, SqlError> {
        self.with_writer(move |c| {
            Ok(
                c.prepare_cached("DELETE FROM named_rooms WHERE expires_at <= ?1")?
                    .execute(params![now])?,
            )
        })
        .await
    }

    /// Counts a visit (see [`PairingStore::count_referrer`]), in one transaction so that
    /// concurrent visits cannot push a day past its maximum.
    async fn count_visit(
        &self,
        day: String,
        referrer: String,
        max_per_day: u32,
    ) -> Result<(), SqlError> {
        self.with_writer(move |c| {
            let counted = c
                .prepare_cached(
                    "UPDATE referrer_counts SET count = count + 1 WHERE day = ?1 AND referrer = ?2",
                )?
                .execute(params![day, referrer])?;
            if counted == 0 {
                let known: i64 = c
                    .prepare_cached("SELECT count(*) FROM referrer_counts WHERE day = ?1")?
                    .query_row(params![day], |r| r.get(0))?;
                // The day is full: the newcomer counts with the others beyond the maximum
                // (which take one more row of their own).
                let referrer = if known >= i64::from(max_per_day) {
                    OTHER_REFERRERS.to_owned()
                } else {
                    referrer
                };
                c.prepare_cached(
                    "INSERT INTO referrer_counts (day, referrer, count) VALUES (?1, ?2, 1)
                     ON CONFLICT (day, referrer) DO UPDATE SET count = count + 1",
                )?
                .execute(params![day, referrer])?;
            }
            Ok(())
        })
        .await
    }

    /// Referrer counts of `since` and later.
    async fn visits_since(&self, since: String) -> Result<ReferrerCounts, SqlError> {
        self.with_conn(move |c| {
            let mut select = c.prepare_cached(
                "SELECT day, referrer, count FROM referrer_counts WHERE day >= ?1",
            )?;
            let rows = select.query_map(params![since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut counts = ReferrerCounts::new();
            for row in rows {
                let (day, referrer, count) = row?;
                counts
                    .entry(day)
                    .or_default()
                    .insert(referrer, u64::try_from(count).unwrap_or_default());
            }
            Ok(counts)
        })
        .await
    }

    /// Deletes the referrer counts of days before `before`.
    async fn forget_visits(&self, before: String) -> Result<usize, SqlError> {
        self.with_writer(move |c| {
            Ok(
                c.prepare_cached("DELETE FROM referrer_counts WHERE day < ?1")?
                    .execute(params![before])?,
            )
        })
        .await
    }
}

/// Runs `f` in a savepoint: kept if it succeeds, undone if it fails.
fn atomically<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let savepoint = conn.savepoint()?;
    let result = f(&savepoint)?;
    savepoint.commit()?;
    Ok(result)
}

/// The writer thread: takes the writes waiting for it, up to [`MAX_WRITE_BATCH`], runs them in
/// arrival order in one transaction, commits it, then answers them; until every [`Store`] is
/// dropped.
fn run_writer(mut conn: Connection, mut jobs: mpsc::Receiver<WriteJob>) {
    let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
    let mut answers = Vec::with_capacity(MAX_WRITE_BATCH);
    let mut checkpointed = std::time::Instant::now();
    while jobs.blocking_recv_many(&mut batch, MAX_WRITE_BATCH) > 0 {
        // The pool's PASSIVE checkpoints alone were starved under load (a WAL of gigabytes in
        // seconds): between two batches nothing writes, so a RESTART here copies every frame
        // and the next batch writes the WAL from its start again. It waits for readers of old
        // frames, at most BUSY_TIMEOUT.
        if checkpointed.elapsed() >= CHECKPOINT_INTERVAL {
            checkpointed = std::time::Instant::now();
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                log::warn!("WAL checkpoint failed: {e}");
            }
        }
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        for job in batch.drain(..) {
            // Not on a transaction that never began, nor on one an error ended (SQLite rolls
            // back the whole transaction on some, such as a full disk): the write would be
            // committed on its own, and answered as failed with its batch.
            let runs = begun.is_ok() && !conn.is_autocommit();
            // A panicking write must not take every later write down with the thread. Its
            // savepoint was rolled back as the panic unwound through it; its caller, whose
            // answer went with the panic, is told the writer failed.
            let run = std::panic::AssertUnwindSafe(|| job(runs.then_some(&mut conn)));
            match std::panic::catch_unwind(run) {
                Ok(answer) => answers.push(answer),
                Err(_) => log::error!("a database write panicked; it was rolled back"),
            }
        }
        let committed = begun.and_then(|()| commit(&conn)).map_err(|e| {
            log::error!("a batch of database writes failed: {e}");
            BatchFailed(std::sync::Arc::new(e))
        });
        for answer in answers.drain(..) {
            answer(committed.clone());
        }
    }
    log::debug!("sqlite writer stopped");
}

/// Commits the batch's transaction; rolls it back if that fails (or if SQLite already did, on an
/// error that ends a transaction, such as a full disk: then the batch is not committed either).
fn commit(conn: &Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("the batch's transaction was rolled back by an error".into()),
        ));
    }
    conn.execute_batch("COMMIT").inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// How often the WAL is checkpointed. Frequent enough that the WAL stays a few MiB at thousands
/// of pairings a second, rare enough to cost nothing at rest.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Checkpoints every [`CHECKPOINT_INTERVAL`] until `shutdown`, then once more.
pub async fn run_checkpoints(store: SqliteStore, shutdown: tokio_util::sync::CancellationToken) {
    let mut ticker = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = store.checkpoint().await {
            log::warn!("WAL checkpoint failed: {e}");
        }
    }
    if let Err(e) = store.checkpoint().await {
        log::warn!("final WAL checkpoint failed: {e}");
    }
}

/// Per-connection settings, applied to the writer and to every pooled connection when it is
/// opened. (WAL, set once by the writer, means readers never block the writer.)
fn configure_connection(c: &mut Connection) -> Result<(), rusqlite::Error> {
    c.busy_timeout(BUSY_TIMEOUT)?;
    // synchronous=NORMAL: in WAL mode a commit is in the WAL file before it is acknowledged,
    // so a killed process loses nothing acknowledged (only power loss could).
    c.execute_batch("PRAGMA synchronous = NORMAL;")
}

/// When `creator`'s client already holds its cap of live codes: the earliest of their expiries
/// (when one is free again). The count stops at the cap, so it reads at most that many index
/// rows; a cap of 0 is no cap.
fn over_pending_cap(
    c: &Connection,
    creator: &Creator,
    now: Millis,
) -> rusqlite::Result<Option<Millis>> {
    if creator.max_pending == 0 {
        return Ok(None);
    }
    let live: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM pendings \
             WHERE client_key = ?1 AND exp > ?2 LIMIT ?3)",
        )?
        .query_row(params![creator.client_key, now, creator.max_pending], |r| {
            r.get(0)
        })?;
    if live < i64::from(creator.max_pending) {
        return Ok(None);
    }
    let next: Option<Millis> = c
        .prepare_cached("SELECT min(exp) FROM pendings WHERE client_key = ?1 AND exp > ?2")?
        .query_row(params![creator.client_key, now], |r| r.get(0))?;
    Ok(Some(next.unwrap_or(now)))
}

/// Inserts a pending code unless a live row holds it. One statement, so it is atomic on its own.
fn insert_pending(
    c: &Connection,
    joinid: &JoinCode,
    creator: &Creator,
    exp: Millis,
    now: Millis,
) -> Result<bool, SqlError> {
    let changed = c
        .prepare_cached(
            "INSERT INTO pendings (joinid, client1, exp, client2, roomid, created_at, client_key, capacity)
             VALUES (?1, ?2, ?3, NULL, NULL, ?4, ?5, ?6)
             ON CONFLICT (joinid) DO UPDATE SET
                 client1 = excluded.client1, exp = excluded.exp, client2 = NULL, roomid = NULL,
                 created_at = excluded.created_at, client_key = excluded.client_key,
                 capacity = excluded.capacity
             WHERE pendings.exp <= ?4",
        )?
        .execute(params![
            joinid.as_str(),
            creator.client1.as_str(),
            exp,
            now,
            creator.client_key,
            creator.capacity
        ])?;
    Ok(changed == 1)
}

/// Deletes a room and the codes that led to it, and leaves its tombstone (when it existed).
/// Returns how many rooms were deleted.
fn bury_room(c: &Connection, roomid: &str, now: Millis) -> Result<usize, SqlError> {
    let deleted = c.execute("DELETE FROM rooms WHERE roomid = ?1", params![roomid])?;
    c.execute(
        "DELETE FROM room_members WHERE roomid = ?1",
        params![roomid],
    )?;
    c.execute("DELETE FROM pendings WHERE roomid = ?1", params![roomid])?;
    if deleted > 0 {
        c.execute(
            "INSERT OR REPLACE INTO room_tombstones (roomid, deleted_at) VALUES (?1, ?2)",
            params![roomid, now],
        )?;
    }
    Ok(deleted)
}

/// A room's member devices in order.
fn room_members(c: &Connection, roomid: &str) -> Result<Vec<String>, SqlError> {
    let mut select =
        c.prepare_cached("SELECT device FROM room_members WHERE roomid = ?1 ORDER BY position")?;
    let members = select
        .query_map(params![roomid], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(members)
}

/// Ids read back from the database were valid when written; one that is not (edited by hand) is a
/// server-side fault, reported as such rather than trusted.
fn stored_room_id(s: String) -> Result<RoomId, SqlError> {
    RoomId::parse(&s).map_err(|e| invalid_stored("roomid", e))
}

fn stored_device_id(s: String) -> Result<DeviceId, SqlError> {
    DeviceId::parse(&s).map_err(|e| invalid_stored("client", e))
}

fn invalid_stored(column: &str, e: crate::ids::IdError) -> SqlError {
    SqlError::Sql(rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("stored {column} is not a valid id: {e}").into(),
    ))
}

impl PairingStore for SqliteStore {
    fn ping(&self) -> StoreFuture<()> {
        let store = self.clone();
        Box::pin(async move { Ok(store.probe().await?) })
    }

    fn count_live_pendings(&self) -> StoreFuture<u64> {
        let store = self.clone();
        Box::pin(async move { Ok(store.live_pendings().await?) })
    }

    fn create_pending(
        &self,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> StoreFuture<Created> {
        let store = self.clone();
        Box::pin(async move { Ok(store.create(joinid, creator, exp).await?) })
    }

    fn accept(&self, joinid: JoinCode, device: DeviceId) -> StoreFuture<Acceptance> {
        let store = self.clone();
        Box::pin(async move { Ok(store.accept_code(joinid, device).await?) })
    }

    fn check(&self, joinid: JoinCode, client1: DeviceId) -> StoreFuture<Checked> {
        let store = self.clone();
        Box::pin(async move { Ok(store.check_code(joinid, client1).await?) })
    }

    fn lookup_room(&self, roomid: RoomId) -> StoreFuture<RoomLookup> {
        let store = self.clone();
        Box::pin(async move { Ok(store.lookup(roomid).await?) })
    }

    fn delete_room(&self, roomid: RoomId) -> StoreFuture<usize> {
        let store = self.clone();
        Box::pin(async move { Ok(store.delete(roomid).await?) })
    }

    fn purge_devices(&self, devices: Vec<DeviceId>) -> StoreFuture<Purged> {
        let store = self.clone();
        Box::pin(async move { Ok(store.purge(devices).await?) })
    }

    fn sweep(&self, now: Millis) -> StoreFuture<Swept> {
        let store = self.clone();
        Box::pin(async move { Ok(store.sweep_expired(now).await?) })
    }

    fn dropsilk_create(
        &self,
        code: String,
        host: dropsilk::NewParticipant,
        ttl: Duration,
    ) -> StoreFuture<Option<dropsilk::Room>> {
        let store = self.clone();
        Box::pin(async move { Ok(store.dropsilk_create_room(code, host, ttl).await?) })
    }

    fn dropsilk_join(
        &self,
        code: String,
        guest: dropsilk::NewParticipant,
        ttl: Duration,
    ) -> StoreFuture<Joined> {
        let store = self.clone();
        let op = dropsilk::join_op(guest);
        Box::pin(async move { Ok(store.with_dropsilk_room(code, ttl, op).await?) })
    }

    fn dropsilk_room(
        &self,
        code: String,
        participant: String,
        ttl: Duration,
    ) -> StoreFuture<Option<dropsilk::Room>> {
        let store = self.clone();
        let op = dropsilk::read_op(participant);
        Box::pin(async move { Ok(store.with_dropsilk_room(code, ttl, op).await?) })
    }

    fn dropsilk_change(
        &self,
        code: String,
        participant: String,
        change: dropsilk::Change,
        ttl: Duration,
    ) -> StoreFuture<Changed> {
        let store = self.clone();
        let op = dropsilk::change_op(participant, change);
        Box::pin(async move { Ok(store.with_dropsilk_room(code, ttl, op).await?) })
    }

    fn dropsilk_remove(
        &self,
        code: String,
        participant: String,
        ttl: Duration,
    ) -> StoreFuture<Removed> {
        let store = self.clone();
        let op = dropsilk::remove_op(participant);
        Box::pin(async move { Ok(store.with_dropsilk_room(code, ttl, op).await?) })
    }

    fn dropsilk_sweep(&self, now: Millis) -> StoreFuture<usize> {
        let store = self.clone();
        Box::pin(async move { Ok(store.dropsilk_sweep_rooms(now).await?) })
    }

    fn create_named_room(
        &self,
        space: &'static str,
        candidates: Vec<String>,
        exp: Millis,
    ) -> StoreFuture<Option<String>> {
        let store = self.clone();
        Box::pin(async move { Ok(store.create_named(space, candidates, exp).await?) })
    }

    fn named_room_exists(&self, space: &'static str, id: String) -> StoreFuture<bool> {
        let store = self.clone();
        Box::pin(async move { Ok(store.named_exists(space, id).await?) })
    }

    fn set_named_room_expiry(
        &self,
        space: &'static str,
        id: String,
        exp: Millis,
    ) -> StoreFuture<bool> {
        let store = self.clone();
        Box::pin(async move { Ok(store.set_named_expiry(space, id, exp).await?) })
    }

    fn sweep_named_rooms(&self, now: Millis) -> StoreFuture<usize> {
        let store = self.clone();
        Box::pin(async move { Ok(store.sweep_named(now).await?) })
    }

    fn count_referrer(&self, day: String, referrer: String, max_per_day: u32) -> StoreFuture<()> {
        let store = self.clone();
        Box::pin(async move { Ok(store.count_visit(day, referrer, max_per_day).await?) })
    }

    fn referrers(&self, since: String) -> StoreFuture<ReferrerCounts> {
        let store = self.clone();
        Box::pin(async move { Ok(store.visits_since(since).await?) })
    }

    fn forget_referrers(&self, before: String) -> StoreFuture<usize> {
        let store = self.clone();
        Box::pin(async move { Ok(store.forget_visits(before).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::dropsilk::{Change, NewParticipant, Role};

    const TTL: Duration = Duration::from_secs(1800);

    fn person(id: &str) -> NewParticipant {
        NewParticipant {
            id: id.into(),
            name: format!("{id} name"),
        }
    }

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn a_dropsilk_room_is_created_joined_read_changed_and_left() {
        let (store, _dir) = store().await;
        let created = store
            .dropsilk_create("ABC234".into(), person("host"), TTL)
            .await
            .unwrap()
            .unwrap();
        assert!(created.expires_at > now_millis() + 1_700_000);
        assert_eq!(
            store
                .dropsilk_create("ABC234".into(), person("other"), TTL)
                .await
                .unwrap(),
            None,
            "a live code is not given twice"
        );
        let Joined::Room(joined) = store
            .dropsilk_join("ABC234".into(), person("guest"), TTL)
            .await
            .unwrap()
        else {
            panic!("not joined");
        };
        assert_eq!(joined.role_of("guest"), Some(Role::Guest));
        assert_eq!(
            store
                .dropsilk_join("ABC234".into(), person("third"), TTL)
                .await
                .unwrap(),
            Joined::Full
        );
        assert_eq!(
            store
                .dropsilk_join("ZZZ234".into(), person("x"), TTL)
                .await
                .unwrap(),
            Joined::NotFound
        );
        let change = Change::Ready {
            file_count: 2,
            total_bytes: 2048.5,
        };
        let Changed::Room(changed) = store
            .dropsilk_change("ABC234".into(), "guest".into(), change, TTL)
            .await
            .unwrap()
        else {
            panic!("not changed");
        };
        let read = store
            .dropsilk_room("ABC234".into(), "host".into(), TTL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.guest, changed.guest);
        assert_eq!(read.guest.as_ref().unwrap().total_bytes, 2048.5);
        assert_eq!(
            store
                .dropsilk_room("ABC234".into(), "stranger".into(), TTL)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .dropsilk_remove("ABC234".into(), "host".into(), TTL)
                .await
                .unwrap(),
            Removed::HostReplacedByGuest
        );
        let promoted = store
            .dropsilk_room("ABC234".into(), "guest".into(), TTL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(promoted.host.id, "guest");
        assert!(promoted.host.ready);
        assert_eq!(
            store
                .dropsilk_remove("ABC234".into(), "guest".into(), TTL)
                .await
                .unwrap(),
            Removed::Room
        );
        assert_eq!(
            store
                .dropsilk_room("ABC234".into(), "guest".into(), TTL)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_expired_dropsilk_room_is_gone_its_code_free_and_swept() {
        let (store, _dir) = store().await;
        let short = Duration::from_millis(1);
        store
            .dropsilk_create("EXP234".into(), person("host"), short)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store
                .dropsilk_room("EXP234".into(), "host".into(), TTL)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .dropsilk_join("EXP234".into(), person("guest"), TTL)
                .await
                .unwrap(),
            Joined::NotFound
        );
        assert_eq!(store.dropsilk_sweep(now_millis()).await.unwrap(), 1);
        store
            .dropsilk_create("OLD234".into(), person("host"), short)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reused = store
            .dropsilk_create("OLD234".into(), person("new host"), TTL)
            .await
            .unwrap()
            .expect("an expired room's code is free again");
        assert_eq!(reused.host.id, "new host");
        let read = store
            .dropsilk_room("OLD234".into(), "new host".into(), TTL)
            .await
            .unwrap()
            .unwrap();
        assert!(read.guest.is_none() && !read.host.ready);
    }

    // PrivyDrop: named rooms and referrer counts.

    fn names(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_named_room_takes_the_first_free_candidate_and_lives_until_its_expiry() {
        let (store, _dir) = store().await;
        let later = now_millis() + 60_000;
        let created = store.create_named_room("pd", names(&["1234"]), later).await;
        assert_eq!(created.unwrap().as_deref(), Some("1234"));
        let next = store.create_named_room("pd", names(&["1234", "5678"]), later);
        assert_eq!(next.await.unwrap().as_deref(), Some("5678"));
        let none = store.create_named_room("pd", names(&["1234", "5678"]), later);
        assert_eq!(none.await.unwrap(), None);
        let other_space = store.create_named_room("other", names(&["1234"]), later);
        assert_eq!(other_space.await.unwrap().as_deref(), Some("1234"));
        assert!(store.named_room_exists("pd", "1234".into()).await.unwrap());
        assert!(!store.named_room_exists("pd", "9999".into()).await.unwrap());

        // Expired: absent, and its name is free again.
        let past = now_millis() - 1;
        assert!(
            store
                .set_named_room_expiry("pd", "1234".into(), past)
                .await
                .unwrap()
        );
        assert!(!store.named_room_exists("pd", "1234".into()).await.unwrap());
        assert!(
            !store
                .set_named_room_expiry("pd", "1234".into(), later)
                .await
                .unwrap(),
            "an expired room cannot be revived"
        );
        let again = store.create_named_room("pd", names(&["1234"]), later);
        assert_eq!(again.await.unwrap().as_deref(), Some("1234"));
        assert!(store.named_room_exists("pd", "1234".into()).await.unwrap());
    }

    #[tokio::test]
    async fn a_write_that_fails_is_undone_alone_and_the_others_of_its_batch_are_committed() {
        let (store, _dir) = store().await;
        let later = now_millis() + 60_000;
        let writes = (0..32).map(|i| {
            store.with_writer(move |c| {
                c.execute(
                    "INSERT INTO named_rooms (space, id, created_at, expires_at)
                     VALUES ('t', ?1, 0, ?2)",
                    params![i.to_string(), later],
                )?;
                if i % 2 == 1 {
                    return Err(SqlError::WriterGone);
                }
                Ok(i)
            })
        });
        let answers = futures_util::future::join_all(writes).await;
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(answer.is_ok(), i % 2 == 0, "write {i}: {answer:?}");
        }
        for i in 0..32 {
            let exists = store.named_room_exists("t", i.to_string()).await.unwrap();
            assert_eq!(exists, i % 2 == 0, "room {i}");
        }
    }

    #[tokio::test]
    async fn the_sweep_deletes_expired_named_rooms_only() {
        let (store, _dir) = store().await;
        let now = now_millis();
        store
            .create_named_room("pd", names(&["a"]), now + 60_000)
            .await
            .unwrap();
        store
            .create_named_room("pd", names(&["b"]), now + 60_000)
            .await
            .unwrap();
        store
            .set_named_room_expiry("pd", "b".into(), now - 1)
            .await
            .unwrap();
        assert_eq!(store.sweep_named_rooms(now_millis()).await.unwrap(), 1);
        assert!(store.named_room_exists("pd", "a".into()).await.unwrap());
    }

    #[tokio::test]
    async fn referrers_are_counted_per_day_up_to_a_maximum_then_as_others() {
        let (store, _dir) = store().await;
        for referrer in ["a", "a", "b", "c", "d", "a"] {
            store
                .count_referrer("2026-01-02".into(), referrer.into(), 2)
                .await
                .unwrap();
        }
        store
            .count_referrer("2026-01-01".into(), "a".into(), 2)
            .await
            .unwrap();
        let counts = store.referrers("2026-01-02".into()).await.unwrap();
        assert_eq!(counts.len(), 1, "{counts:?}");
        let day = &counts["2026-01-02"];
        assert_eq!(day["a"], 3);
        assert_eq!(day["b"], 1);
        assert_eq!(day[OTHER_REFERRERS], 2);
        assert_eq!(day.len(), 3);

        assert_eq!(
            store.forget_referrers("2026-01-02".into()).await.unwrap(),
            1
        );
        let all = store.referrers("0000-00-00".into()).await.unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["2026-01-02"]);
    }
}
