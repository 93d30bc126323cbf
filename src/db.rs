//! The pairing store: pending join codes and paired rooms in embedded SQLite.
//!
//! Every method is async and runs its SQLite work on tokio's blocking pool, so a slow disk never
//! stalls the runtime. Every change that touches more than one row is one `IMMEDIATE` transaction:
//! taking the write lock up front means two concurrent accepts of one code serialise instead of both
//! reading "not accepted yet" (and SQLite never has to fail a read-to-write lock upgrade).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use tokio::sync::{mpsc, oneshot};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::ids::{DeviceId, JoinCode, RoomId};

mod embedded {
    refinery::embed_migrations!("sql");
}

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a health probe waits for another connection's write lock: less than the health
/// check's own deadline, so a probe never outlasts the request that asked for it.
const PING_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// Pooled connections. WAL lets readers proceed beside the one writer; more connections than cores
/// mostly add lock contention.
const POOL_SIZE: u32 = 8;

/// Server-generated codes tried before giving up; with a million codes and a realistic number of
/// live ones, the first almost always succeeds.
const CODE_ATTEMPTS: usize = 32;

/// A store failure: the database itself, never the client's input.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// The blocking task running the query panicked or was cancelled.
    #[error("blocking task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An instant as stored: Unix epoch milliseconds, UTC.
pub type Millis = i64;

/// The current instant in store units.
pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

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
    /// Live codes this client may hold at once.
    pub max_pending: u32,
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
    /// The room of this pairing (new, or the one this same client2 already accepted into).
    Room(RoomId),
    /// No live code by that id.
    NotFound,
    /// Accepted by another device, or client2 is client1.
    Conflict,
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
    /// The device that accepted it.
    pub client2: DeviceId,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// Rooms deleted, so live sessions in them can be closed.
    pub rooms: Vec<RoomId>,
    /// Pending rows deleted.
    pub pendings: usize,
}

/// How long a deleted room's id is remembered, so that clients holding it cannot revive it.
pub const ROOM_TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired rows deleted.
    pub removed: usize,
    /// Of them, codes that expired without being accepted.
    pub unaccepted: usize,
}

/// Handle to the database; cheap to clone.
///
/// Reads go through a pool on tokio's blocking threads; every write goes to one dedicated writer
/// thread that owns the only writing connection and runs writes one after another. SQLite admits
/// one writer at a time anyway: when several connections race for the write lock, the losers
/// sleep in SQLite's busy handler (milliseconds each), and when blocking threads queue on a mutex
/// instead, every hand-over is a thread wake-up. A single thread fed by a queue does neither.
#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    writes: mpsc::Sender<WriteJob>,
}

/// A write for the writer thread: runs with its connection, answers through its own channel.
type WriteJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// Writes that may wait for the writer thread before callers wait to enqueue (backpressure).
const WRITE_QUEUE: usize = 1024;

impl Store {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path)).await?
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // The writer first, alone: it switches the file to WAL (which needs the database to
        // itself) and migrates it before any pooled connection exists. Opening the pool first
        // made its connections race each other and the migrations for that lock ("database is
        // locked" errors at start, and retries).
        let mut writer = Connection::open(path)?;
        configure_connection(&mut writer)?;
        writer.execute_batch("PRAGMA journal_mode = WAL;")?;
        // The writer never checkpoints on commit: copying the WAL back into the database (and
        // syncing it) would land on whichever request happened to commit the 1000th page.
        // [`Store::checkpoint`] does it off the request path instead.
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
    }

    /// Runs `f` on the writer thread and waits for its answer.
    async fn with_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            // A caller that gave up (a timed-out health check) is not waiting for this: skip
            // it rather than spend the writer's time on it ahead of real writes.
            if answer.is_closed() {
                return;
            }
            let _ = answer.send(f(conn));
        });
        self.writes
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answered.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }

    /// A trivial round trip through the database, for health checks: takes the write lock and
    /// reads the schema, then rolls back. Pairing writes, so a database that can be read but
    /// not written (another process holding a write transaction, a read-only file) is not
    /// healthy; `SELECT 1` alone would not even touch the file.
    pub async fn ping(&self) -> Result<(), StoreError> {
        // Through the writer, so a writer stuck behind a lock shows up too; with a short busy
        // timeout, so a probe of a locked database holds the writer only briefly.
        self.with_writer(|c| {
            c.busy_timeout(PING_BUSY_TIMEOUT)?;
            let probe = (|| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
                tx.rollback()
            })();
            c.busy_timeout(BUSY_TIMEOUT)?;
            Ok(probe?)
        })
        .await
    }

    /// Pending codes that have not expired (accepted ones included, until they expire).
    pub async fn count_live_pendings(&self) -> Result<u64, StoreError> {
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
    pub async fn create_pending(
        &self,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> Result<Created, StoreError> {
        self.with_writer(move |c| {
            let now = now_millis();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (live, next_expiry): (i64, Option<Millis>) = tx
                .prepare_cached(
                    "SELECT count(*), min(exp) FROM pendings WHERE client_key = ?1 AND exp > ?2",
                )?
                .query_row(params![creator.client_key, now], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if live >= i64::from(creator.max_pending) {
                return Ok(Created::TooManyPending {
                    next_expiry: next_expiry.unwrap_or(now),
                });
            }
            let created = match joinid {
                None => {
                    let mut created = Created::Exhausted;
                    for _ in 0..CODE_ATTEMPTS {
                        let code = JoinCode::generate();
                        if insert_pending(&tx, &code, &creator, exp, now)? {
                            created = Created::Ok(Pending { joinid: code, exp });
                            break;
                        }
                    }
                    created
                }
                Some(joinid) => {
                    if insert_pending(&tx, &joinid, &creator, exp, now)? {
                        Created::Ok(Pending { joinid, exp })
                    } else {
                        Created::Conflict
                    }
                }
            };
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    /// Accepts a live code for `client2`, creating the room, or repeats an earlier acceptance by the
    /// same device. Never changes a row accepted by another device.
    pub async fn accept(
        &self,
        joinid: JoinCode,
        client2: DeviceId,
    ) -> Result<Accepted, StoreError> {
        Ok(self.accept_timed(joinid, client2).await?.0)
    }

    /// [`Store::accept`], with the code's creation instant when this call created the room (not
    /// when it repeated an earlier acceptance), to measure how long pairing took.
    pub async fn accept_timed(
        &self,
        joinid: JoinCode,
        client2: DeviceId,
    ) -> Result<(Accepted, Option<Millis>), StoreError> {
        self.with_writer(move |c| {
            let now = now_millis();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(String, Option<String>, Option<String>, Millis)> = tx
                .query_row(
                    "SELECT client1, client2, roomid, created_at FROM pendings
                     WHERE joinid = ?1 AND exp > ?2",
                    params![joinid.as_str(), now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let created_at = row.as_ref().map(|r| r.3);
            let row = row.map(|(client1, client2, roomid, _)| (client1, client2, roomid));
            let mut fresh = false;
            let outcome = match row {
                None => Accepted::NotFound,
                Some((_, Some(accepted_by), Some(roomid))) => {
                    if accepted_by == client2.as_str() {
                        Accepted::Room(stored_room_id(roomid)?)
                    } else {
                        Accepted::Conflict
                    }
                }
                Some((_, Some(_), None)) | Some((_, None, Some(_))) => Accepted::Conflict,
                Some((client1, None, None)) => {
                    if client1 == client2.as_str() {
                        Accepted::Conflict
                    } else {
                        let roomid = RoomId::generate();
                        tx.execute(
                            "INSERT INTO rooms (roomid, client1, client2, created_at) VALUES (?1, ?2, ?3, ?4)",
                            params![roomid.as_str(), client1, client2.as_str(), now],
                        )?;
                        tx.execute(
                            "UPDATE pendings SET client2 = ?2, roomid = ?3 WHERE joinid = ?1",
                            params![joinid.as_str(), client2.as_str(), roomid.as_str()],
                        )?;
                        fresh = true;
                        Accepted::Room(roomid)
                    }
                }
            };
            tx.commit()?;
            Ok((outcome, created_at.filter(|_| fresh)))
        })
        .await
    }

    /// client1's poll: has its live code been accepted, and into which room?
    pub async fn check(&self, joinid: JoinCode, client1: DeviceId) -> Result<Checked, StoreError> {
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

    /// A paired room by id.
    pub async fn room(&self, roomid: RoomId) -> Result<Option<Room>, StoreError> {
        Ok(match self.lookup_room(roomid).await? {
            RoomLookup::Paired(room) => Some(room),
            RoomLookup::Deleted | RoomLookup::Unknown => None,
        })
    }

    /// What a room id names: a paired room, a deleted one, or nothing.
    pub async fn lookup_room(&self, roomid: RoomId) -> Result<RoomLookup, StoreError> {
        self.with_conn(move |c| {
            let row: Option<(String, String)> = c
                .prepare_cached("SELECT client1, client2 FROM rooms WHERE roomid = ?1")?
                .query_row(params![roomid.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((client1, client2)) = row {
                return Ok(RoomLookup::Paired(Room {
                    client1: stored_device_id(client1)?,
                    client2: stored_device_id(client2)?,
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
    pub async fn delete_room(&self, roomid: RoomId) -> Result<usize, StoreError> {
        self.with_writer(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = bury_room(&tx, roomid.as_str(), now_millis())?;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    /// Deletes every pending code and room in which any of `devices` is client1 or client2.
    pub async fn purge_devices(&self, devices: Vec<DeviceId>) -> Result<Purged, StoreError> {
        self.with_writer(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut rooms = BTreeSet::new();
            let mut pendings = 0;
            for device in &devices {
                let mut select = tx.prepare_cached(
                    "SELECT roomid FROM rooms WHERE client1 = ?1 OR client2 = ?1",
                )?;
                let found =
                    select.query_map(params![device.as_str()], |r| r.get::<_, String>(0))?;
                for roomid in found {
                    rooms.insert(roomid?);
                }
                pendings += tx.execute(
                    "DELETE FROM pendings WHERE client1 = ?1 OR client2 = ?1",
                    params![device.as_str()],
                )?;
            }
            let now = now_millis();
            for roomid in &rooms {
                bury_room(&tx, roomid, now)?;
            }
            tx.commit()?;
            let rooms = rooms
                .into_iter()
                .map(stored_room_id)
                .collect::<Result<_, _>>()?;
            Ok(Purged { rooms, pendings })
        })
        .await
    }

    /// Deletes pending codes that expired at or before `now`; returns how many.
    pub async fn sweep_expired(&self, now: Millis) -> Result<usize, StoreError> {
        Ok(self.sweep(now).await?.removed)
    }

    /// Deletes pending codes that expired at or before `now`, in one transaction, telling how
    /// many of them had never been accepted.
    pub async fn sweep(&self, now: Millis) -> Result<Swept, StoreError> {
        self.with_writer(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let unaccepted: i64 = tx.query_row(
                "SELECT count(*) FROM pendings WHERE exp <= ?1 AND client2 IS NULL",
                params![now],
                |r| r.get(0),
            )?;
            let removed = tx.execute("DELETE FROM pendings WHERE exp <= ?1", params![now])?;
            let forgotten = now - ROOM_TOMBSTONE_TTL.as_millis() as Millis;
            tx.execute(
                "DELETE FROM room_tombstones WHERE deleted_at <= ?1",
                params![forgotten],
            )?;
            tx.commit()?;
            Ok(Swept {
                removed,
                unaccepted: usize::try_from(unaccepted).unwrap_or_default(),
            })
        })
        .await
    }
}

/// The writer thread: runs write jobs in arrival order until every [`Store`] is dropped.
fn run_writer(mut conn: Connection, mut jobs: mpsc::Receiver<WriteJob>) {
    while let Some(job) = jobs.blocking_recv() {
        // A panicking write must not take every later write down with the thread. Its open
        // transaction, if any, was rolled back as the panic unwound through it.
        let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
        if std::panic::catch_unwind(run).is_err() {
            log::error!("a database write panicked; it was rolled back");
        }
    }
    log::debug!("sqlite writer stopped");
}

/// How often the WAL is checkpointed. Frequent enough that the WAL stays a few MiB at thousands
/// of pairings a second, rare enough to cost nothing at rest.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Checkpoints every [`CHECKPOINT_INTERVAL`] until `shutdown`, then once more.
pub async fn run_checkpoints(store: Store, shutdown: tokio_util::sync::CancellationToken) {
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

/// Inserts a pending code unless a live row holds it. One statement, so it is atomic on its own.
fn insert_pending(
    c: &Connection,
    joinid: &JoinCode,
    creator: &Creator,
    exp: Millis,
    now: Millis,
) -> Result<bool, StoreError> {
    let changed = c
        .prepare_cached(
            "INSERT INTO pendings (joinid, client1, exp, client2, roomid, created_at, client_key)
             VALUES (?1, ?2, ?3, NULL, NULL, ?4, ?5)
             ON CONFLICT (joinid) DO UPDATE SET
                 client1 = excluded.client1, exp = excluded.exp, client2 = NULL, roomid = NULL,
                 created_at = excluded.created_at, client_key = excluded.client_key
             WHERE pendings.exp <= ?4",
        )?
        .execute(params![
            joinid.as_str(),
            creator.client1.as_str(),
            exp,
            now,
            creator.client_key
        ])?;
    Ok(changed == 1)
}

/// Deletes a room and the codes that led to it, and leaves its tombstone (when it existed).
/// Returns how many rooms were deleted.
fn bury_room(c: &Connection, roomid: &str, now: Millis) -> Result<usize, StoreError> {
    let deleted = c.execute("DELETE FROM rooms WHERE roomid = ?1", params![roomid])?;
    c.execute("DELETE FROM pendings WHERE roomid = ?1", params![roomid])?;
    if deleted > 0 {
        c.execute(
            "INSERT OR REPLACE INTO room_tombstones (roomid, deleted_at) VALUES (?1, ?2)",
            params![roomid, now],
        )?;
    }
    Ok(deleted)
}

/// Ids read back from the database were valid when written; one that is not (edited by hand) is a
/// server-side fault, reported as such rather than trusted.
fn stored_room_id(s: String) -> Result<RoomId, StoreError> {
    RoomId::parse(&s).map_err(|e| invalid_stored("roomid", e))
}

fn stored_device_id(s: String) -> Result<DeviceId, StoreError> {
    DeviceId::parse(&s).map_err(|e| invalid_stored("client", e))
}

fn invalid_stored(column: &str, e: crate::ids::IdError) -> StoreError {
    StoreError::Sql(rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("stored {column} is not a valid id: {e}").into(),
    ))
}
