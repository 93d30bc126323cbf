//! Starting and stopping the server on a listener the caller bound.
//!
//! - [`listener`]: the accept loop, with the connection cap and HTTP timeouts.

pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api;
use crate::cluster::Cluster;
use crate::cluster::limits::{SharedGuesses, SharedRate};
use crate::cluster::store::RedisDesk;
use crate::config::Config;
use crate::db::{Desk, LocalDesk, SqliteStore, Store, StoreError};
use crate::limits::Limiters;
use crate::limits::rate::Rate;
use crate::signaling::rooms::{Delivery, LocalDelivery, LocalRooms, ResumeLimits, RoomDirectory};
use crate::signaling::{SessionSettings, Signaling, SignalingParts};
use crate::state::AppState;
use crate::state::ClusterInfo;
use crate::sweeper;
use crate::telemetry::Metrics;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database {path}: {source}")]
    Database {
        /// The configured path.
        path: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// Options that cannot work together.
    #[error("configuration: {0}")]
    Config(&'static str),
    /// Redis could not be reached at start (cluster mode).
    #[error("redis: {0}")]
    Redis(crate::cluster::RedisError),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// The backends a server runs on: one node's own, or a cluster's shared ones.
struct Backends {
    store: Option<Store>,
    /// A desk that counts the limits in the store's own step (cluster mode); otherwise the
    /// store and the limiters are composed into one once the limiters are built.
    desk: Option<Desk>,
    rooms: Arc<dyn RoomDirectory>,
    delivery: Arc<dyn Delivery>,
    cluster: Option<ClusterInfo>,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
    http: JoinHandle<()>,
    /// The dialects' listeners.
    dialects: Vec<crate::dialects::Listening>,
    /// Every listener's connections, for the graceful shutdown.
    listening: listener::ListenerContext,
    /// The sweeper and the WAL checkpointer, which stop with the server.
    background: Vec<JoinHandle<()>>,
    /// Stops the backends' own tasks (cluster mode: the heartbeat and the publisher to other
    /// nodes) once every session has ended, so the last departures still reach other nodes.
    backends_stop: CancellationToken,
}

impl Server {
    /// Opens the database (applying migrations) and starts serving on `listener`.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Self, StartError> {
        let clustered = config.redis_url.is_some();
        if config.strict_rooms && !config.use_sqlite && !clustered {
            return Err(StartError::Config(
                "STRICT_ROOMS needs USE_SQLITE: strict rooms are the paired rooms in the database",
            ));
        }
        if config.privydrop.port.is_some() && !config.use_sqlite && !clustered {
            return Err(StartError::Config(
                "PRIVYDROP_PORT needs USE_SQLITE or REDIS_URL: PrivyDrop's rooms are named rooms in the pairing store",
            ));
        }
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let backends_stop = CancellationToken::new();
        let mut background = Vec::new();
        let metrics = Arc::new(Metrics::new());
        let resume = ResumeLimits::from_config(&config);
        let mut limits = Limiters::from_config(&config);
        let mut sqlite = None;
        let Backends {
            store,
            desk,
            rooms,
            delivery,
            cluster,
        } = match &config.redis_url {
            Some(url) => {
                let cluster = Cluster::start(
                    url.expose(),
                    config.node_id.clone(),
                    Duration::from_secs(config.node_ttl_secs),
                    metrics.clone(),
                    resume,
                    backends_stop.clone(),
                )
                .await
                .map_err(StartError::Redis)?;
                let l = &config.limits;
                let rest = Rate::per_minute(l.rest_rate_per_min, l.rest_burst);
                limits = limits.with_shared(
                    Arc::new(SharedRate::new(cluster.redis.clone(), "rest", rest)),
                    Arc::new(SharedRate::new(
                        cluster.redis.clone(),
                        "upgrades",
                        Rate::per_minute(l.ws_upgrade_rate_per_min, l.ws_upgrade_rate_per_min),
                    )),
                    SharedGuesses::new(cluster.redis.clone(), config.guess_policy()),
                );
                let info = ClusterInfo {
                    name: cluster.name.clone(),
                    node: cluster.node,
                    redis: cluster.redis.clone(),
                    rooms: cluster.rooms.clone(),
                };
                background.push(cluster.stopped);
                let desk = RedisDesk::new(cluster.redis.clone(), rest, config.guess_policy());
                Backends {
                    store: Some(Arc::new(cluster.store) as Store),
                    desk: Some(Arc::new(desk) as Desk),
                    rooms: Arc::new(cluster.rooms.clone()),
                    delivery: Arc::new(cluster.rooms),
                    cluster: Some(info),
                }
            }
            None => {
                if config.use_sqlite {
                    let store =
                        SqliteStore::open(&config.sqlite_db_path)
                            .await
                            .map_err(|source| StartError::Database {
                                path: config.sqlite_db_path.display().to_string(),
                                source,
                            })?;
                    sqlite = Some(store);
                }
                let delivery: Arc<dyn Delivery> = Arc::new(LocalDelivery::new(0));
                let rooms: Arc<dyn RoomDirectory> =
                    Arc::new(LocalRooms::new(delivery.clone(), metrics.clone(), resume));
                Backends {
                    store: sqlite.clone().map(|s| Arc::new(s) as Store),
                    desk: None,
                    rooms,
                    delivery,
                    cluster: None,
                }
            }
        };
        let limits = Arc::new(limits);
        let signaling = Arc::new(Signaling::new(SignalingParts {
            rooms,
            delivery,
            store: store.clone(),
            settings: SessionSettings::from_config(&config),
            shutdown: shutdown.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
        }));
        if let Some(store) = &store {
            background.push(tokio::spawn(sweeper::run(
                store.clone(),
                config.sweep_interval(),
                shutdown.clone(),
                metrics.clone(),
            )));
        }
        if let Some(sqlite) = sqlite {
            background.push(tokio::spawn(crate::db::sqlite::run_checkpoints(
                sqlite,
                shutdown.clone(),
            )));
        }
        let (header, keepalive) = config.http_timeouts();
        let listening = listener::ListenerContext {
            timeouts: listener::HttpTimeouts { header, keepalive },
            cap: listener::ConnectionCap::new(config.max_connections as usize),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            connections: TaskTracker::new(),
        };
        let pairing = store.map(|store| {
            let desk =
                desk.unwrap_or_else(|| Arc::new(LocalDesk::new(store.clone(), limits.clone())));
            (store, desk)
        });
        let state = AppState::new(config, pairing, signaling, limits, cluster);
        let routes = api::routes(state.clone());
        let dialects = crate::dialects::start(&state, &listening).await?;
        let http = tokio::spawn(listener::serve(
            listener,
            warp::service(routes),
            listening.clone(),
        ));
        log::info!("signalpost listening on {addr}");
        Ok(Self {
            addr,
            state,
            shutdown,
            http,
            dialects,
            listening,
            background,
            backends_stop,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where each dialect listens, by name.
    pub fn dialect_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.dialects.iter().map(|d| (d.name, d.addr)).collect()
    }

    /// Shared state, for tests and embedding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, tells every WebSocket session (`server_shutdown`, close 1001), finishes
    /// in-flight requests, and waits up to the configured grace period for sessions to end.
    pub async fn shutdown(self) {
        log::info!("shutting down");
        // Cancelled first, so a session that registers from now on sees it at once; then every
        // registered session is told through its queue (rooms' stories say `shutdown`).
        self.shutdown.cancel();
        self.state.signaling().shut_down();
        let sessions = self.state.signaling().sessions();
        sessions.close();
        let grace = self.state.config().shutdown_grace();
        if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
            log::warn!(
                "{} session(s) still open after {grace:?}; exiting anyway",
                sessions.len()
            );
        }
        let _ = self.http.await;
        for dialect in self.dialects {
            let _ = dialect.task.await;
        }
        let connections = &self.listening.connections;
        connections.close();
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            log::warn!("in-flight requests still running after {grace:?}; exiting anyway");
        }
        self.backends_stop.cancel();
        for task in self.background {
            let _ = task.await;
        }
        log::info!("stopped");
    }
}
