//! PrivyDrop (david-bai00/PrivyDrop): Socket.IO signaling and its HTTP room API, on
//! `PRIVYDROP_PORT`, for its web client unchanged (docs/dialects.md).
//!
//! The listener serves Socket.IO (Engine.IO v4, Socket.IO v5, namespace `/`, path `/socket.io/`,
//! WebSocket and long-polling) through socketioxide, and every other path through the API's warp
//! routes, both behind one origin guard with CORS. A PrivyDrop room is a room of space
//! [`SPACE`] in the room directory, of `MAX_ROOM_CAPACITY` members known by their socket ids;
//! `offer`/`answer`/`ice-candidate` are relays to one member, `initiator-online` and
//! `recipient-ready` relays to the others. Whether a room exists (the HTTP API's rooms, with
//! their lifetimes) is kept apart from who is in it, in the pairing store's named rooms, so both
//! hold with any number of nodes.
//!
//! - [`wire`]: the events and answers, and the frames relays carry.
//! - [`session`]: one Socket.IO connection as a session of the rooms core.
//! - [`http`]: the room API, health, and the guard around the listener.
//! - [`registry`]: the named rooms and their lifetimes.

pub mod http;
pub mod registry;
pub mod session;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use socketioxide::SocketIo;
use tokio_util::sync::CancellationToken;

use super::{Listening, serve_on};
use crate::db::{Store, now_millis};
use crate::limits::rate::{KeyedLimiter, Rate};
use crate::limits::{Limiters, RateLimiter};
use crate::server::listener::ListenerContext;
use crate::signaling::{MAX_MESSAGE_BYTES, Signaling};
use crate::state::AppState;
use registry::{Lifetimes, Registry};

/// The listener's name (its log line, its metrics label).
pub const NAME: &str = "privydrop";

/// The rooms of this dialect.
pub const SPACE: &str = "privydrop";

/// The original server's Engine.IO heartbeat (Socket.IO's defaults, which its client expects).
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a connection may take to join namespace `/` (Socket.IO's default, as the original).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// What the dialect's parts share.
pub struct PrivyDrop {
    signaling: Arc<Signaling>,
    limits: Arc<Limiters>,
    store: Store,
    registry: Registry,
    /// Joins of a new room per client.
    joins: Arc<dyn RateLimiter>,
    max_room_capacity: u32,
    started: Instant,
    /// Sockets open now.
    open: AtomicUsize,
}

/// The join limit in `config`: `join_limit` joins per window, refilled steadily; in cluster
/// mode shared by every node, like the main port's limits.
pub fn join_limiter(state: &AppState) -> Arc<dyn RateLimiter> {
    let options = &state.config().privydrop;
    let rate = Rate {
        capacity: f64::from(options.join_limit),
        per_second: f64::from(options.join_limit) / options.join_window_secs as f64,
    };
    match state.cluster() {
        Some(cluster) => Arc::new(crate::cluster::limits::SharedRate::new(
            cluster.redis.clone(),
            "privydrop-joins",
            rate,
        )),
        None => Arc::new(KeyedLimiter::new(rate)),
    }
}

impl PrivyDrop {
    /// The dialect of `state`, whose rooms live in `store`.
    pub fn new(state: &AppState, store: Store) -> Self {
        let config = state.config();
        let lifetimes = Lifetimes {
            room: Duration::from_secs(config.privydrop.room_ttl_secs),
            empty: Duration::from_secs(config.privydrop.empty_room_ttl_secs),
        };
        Self {
            signaling: state.signaling().clone(),
            limits: state.limits().clone(),
            registry: Registry::new(store.clone(), lifetimes),
            store,
            joins: join_limiter(state),
            max_room_capacity: config.max_room_capacity,
            started: state.started(),
            open: AtomicUsize::new(0),
        }
    }

    /// Counts a socket open until the guard is dropped.
    fn opened(self: &Arc<Self>) -> OpenSocket {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenSocket(self.clone())
    }
}

/// An open socket, counted in `/health/detailed`.
struct OpenSocket(Arc<PrivyDrop>);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the PrivyDrop listener on `port`.
pub async fn start(
    state: &AppState,
    ctx: &ListenerContext,
    port: u16,
) -> std::io::Result<Listening> {
    // The server refuses PRIVYDROP_PORT without USE_SQLITE before it gets here.
    let store = state
        .store()
        .cloned()
        .ok_or_else(|| std::io::Error::other("PRIVYDROP_PORT needs USE_SQLITE or REDIS_URL"))?;
    let dialect = Arc::new(PrivyDrop::new(state, store));
    let api = warp::service(http::routes(dialect.clone()));
    let settings = state.signaling().settings();
    let (service, io) = SocketIo::builder()
        .req_path("/socket.io")
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        // A client's messages: as large as on the main port, polling batches included (the
        // client splits its batches at this size, which the handshake tells it).
        .max_payload(MAX_MESSAGE_BYTES as u64)
        .ws_max_message_size(MAX_MESSAGE_BYTES)
        .ws_max_frame_size(MAX_MESSAGE_BYTES)
        // Packets waiting for a slow client, as many as a WebSocket session's queue holds;
        // beyond that the session is disconnected as too slow.
        .max_buffer_size(settings.queue.messages)
        .build_with_inner_svc(api);
    io.ns("/", session::Connect::new(dialect.clone()));
    let origins = state.config().allowed_origins.clone();
    let guarded = http::Guarded::new(service, origins, state.metrics().clone());
    let listening = serve_on(NAME, state, port, guarded, ctx).await?;
    tokio::spawn(sweep(
        dialect,
        state.config().sweep_interval(),
        ctx.shutdown.clone(),
    ));
    Ok(listening)
}

/// Deletes expired rooms and referrer counts past their days, every `interval` until shutdown.
async fn sweep(dialect: Arc<PrivyDrop>, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match dialect.store.sweep_named_rooms(now_millis()).await {
            Ok(0) => {}
            Ok(n) => log::debug!("privydrop: removed {n} expired room(s)"),
            Err(e) => log::error!("privydrop: sweeping rooms failed: {e}"),
        }
        let first = http::first_referrer_day();
        if let Err(e) = dialect.store.forget_referrers(first).await {
            log::error!("privydrop: forgetting old referrer counts failed: {e}");
        }
    }
}

/// What `/stats` on the main port shows of the dialect: referrer counts per day of the last
/// [`http::REFERRER_DAYS`] days.
/// Null when the database did not answer in time, as `/stats` shows pending codes.
pub async fn stats(store: &Store) -> serde_json::Value {
    let read = store.referrers(http::first_referrer_day());
    let referrers = match tokio::time::timeout(crate::api::ops::HEALTH_DB_TIMEOUT, read).await {
        Ok(Ok(counts)) => serde_json::to_value(counts).unwrap_or_default(),
        Ok(Err(e)) => {
            log::error!("privydrop: reading referrer counts failed: {e}");
            serde_json::Value::Null
        }
        Err(_) => {
            log::error!("privydrop: reading referrer counts: no answer in time");
            serde_json::Value::Null
        }
    };
    serde_json::json!({ "referrers": referrers })
}
