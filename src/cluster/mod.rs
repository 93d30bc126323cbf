//! Cluster mode: many nodes, one service, on Redis.
//!
//! With `REDIS_URL` set, the roles that must be shared across nodes are taken over by Redis-backed
//! implementations of the same interfaces a single node uses:
//!
//! - [`store::RedisStore`]: the pairing store ([`PairingStore`](crate::db::PairingStore)): pending
//!   codes with native expiry, rooms, accepted codes; every change one Lua script, so it is
//!   atomic across nodes;
//! - [`rooms::ClusterRooms`]: the room directory and delivery: membership lives in Redis (one
//!   Lua script per change), each node keeps a replica of the rooms its own sessions are in, and
//!   what one node tells another (membership changes, relayed messages) goes over Redis pub/sub
//!   on one channel per room, in order;
//! - [`limits`]: the REST and upgrade rates and the guess lock-outs, as Lua scripts over shared
//!   keys, so N nodes do not multiply an attacker's budget.
//!
//! [`Redis`] is the connection every part shares: a command connection and a subscription
//! connection (RESP3 pushes; the room directory subscribes its channels again after a
//! reconnect), both re-established by themselves, every call bounded by [`COMMAND_TIMEOUT`] so that an unreachable Redis makes
//! requests fail fast (503) instead of hanging. Nodes announce themselves with a heartbeat key
//! that expires after `NODE_TTL_SECS`; a node that stops renewing it is reaped by the others.
//!
//! Keys are prefixed `sp:`; scripts name keys they compute, so the deployment is one Redis (a
//! primary, with replicas for failover), not Redis Cluster.

pub mod limits;
pub mod rooms;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ProtocolVersion, PushInfo};
use tokio::sync::mpsc;

use crate::telemetry::Metrics;

/// How long one Redis call may take before it counts as a failure: short enough that a request
/// answers 503 within two seconds when Redis is unreachable, long enough for a loaded Redis.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long connecting may take before a call gives up (reconnection goes on in the background).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Once a call found Redis unreachable, other calls fail at once instead of each waiting out
/// [`COMMAND_TIMEOUT`] in turn (a request that needs two round trips would take twice as long,
/// beyond the 2 s a REST answer may take); one call an interval this long still tries, and the
/// first that gets through ends it.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Why a Redis call failed, as callers see it: Redis could not be reached or did not answer in
/// time, or answered something unreadable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(pub String);

/// Shared Redis connections of one node.
#[derive(Clone)]
pub struct Redis {
    commands: ConnectionManager,
    subscriptions: ConnectionManager,
    metrics: Arc<Metrics>,
    reach: Arc<Reach>,
}

/// Whether Redis answered lately (see [`RETRY_INTERVAL`]).
#[derive(Default)]
struct Reach {
    /// Milliseconds since `epoch` before which calls fail at once; 0 while Redis answers.
    refuse_until: std::sync::atomic::AtomicU64,
    /// What `refuse_until` counts from.
    epoch: std::sync::OnceLock<Instant>,
}

impl Reach {
    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
    }

    /// Whether a call may go to Redis now: always while it answers; while it does not, one
    /// call a [`RETRY_INTERVAL`].
    fn may_try(&self) -> bool {
        use std::sync::atomic::Ordering;
        let until = self.refuse_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        let next = now + RETRY_INTERVAL.as_millis() as u64;
        now >= until
            && self
                .refuse_until
                .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn answered(&self) {
        self.refuse_until
            .store(0, std::sync::atomic::Ordering::Release);
    }

    fn unreachable(&self) {
        let next = self.now_ms() + RETRY_INTERVAL.as_millis() as u64;
        self.refuse_until
            .fetch_max(next, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Redis {
    /// Connects to `url` (`redis://` or `rediss://`). `pushes` receives what subscribed channels
    /// carry, and a disconnection notice when the subscription connection drops.
    pub async fn connect(
        url: &str,
        metrics: Arc<Metrics>,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Self, RedisError> {
        if url.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider; installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(|e| RedisError(e.to_string()))?;
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| RedisError(e.to_string()))?;
        let config = || {
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(COMMAND_TIMEOUT))
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(2))
        };
        let commands = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            client.get_connection_manager_with_config(config()),
        )
        .await
        .map_err(|_| RedisError("connecting timed out".into()))?
        .map_err(|e| RedisError(e.to_string()))?;
        let subscriptions = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            client.get_connection_manager_with_config(
                // No automatic resubscription: the client would keep a second copy of every
                // channel's name; the room directory knows its channels and subscribes them
                // again after a reconnect (`ClusterRooms`'s resync).
                config().set_push_sender(pushes),
            ),
        )
        .await
        .map_err(|_| RedisError("connecting timed out".into()))?
        .map_err(|e| RedisError(e.to_string()))?;
        Ok(Self {
            commands,
            subscriptions,
            metrics,
            reach: Arc::default(),
        })
    }

    /// Runs one command or script invocation, bounded in time, counting its latency and errors.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.commands.clone();
        self.bounded(cmd.query_async::<T>(&mut conn)).await
    }

    /// Awaits one round trip for at most [`COMMAND_TIMEOUT`], counting its latency and errors.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        self.bounded_by(COMMAND_TIMEOUT, call).await
    }

    /// Awaits one round trip for at most `limit`; fails at once while Redis is known to be
    /// unreachable (see [`RETRY_INTERVAL`]).
    async fn bounded_by<T>(
        &self,
        limit: Duration,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        if !self.reach.may_try() {
            self.metrics.redis_call(Duration::ZERO, false);
            return Err(RedisError("unreachable".into()));
        }
        let started = Instant::now();
        let result = tokio::time::timeout(limit, call).await;
        self.metrics
            .redis_call(started.elapsed(), result.as_ref().is_ok_and(|r| r.is_ok()));
        match result {
            Ok(Ok(value)) => {
                self.reach.answered();
                Ok(value)
            }
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.reach.unreachable();
                } else {
                    // Redis answered, if only with an error.
                    self.reach.answered();
                }
                Err(RedisError(e.to_string()))
            }
            Err(_) => {
                // A call given less than the full time (one that may fail softly) is no sign
                // that Redis is gone.
                if limit >= COMMAND_TIMEOUT {
                    self.reach.unreachable();
                }
                Err(RedisError("no answer in time".into()))
            }
        }
    }

    /// Runs a Lua script (by its digest, loading it when Redis does not know it yet).
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, RedisError> {
        self.script_within(COMMAND_TIMEOUT, script, keys, args)
            .await
    }

    /// [`Redis::script`] given at most `limit`, for a call whose caller does without its answer
    /// (a rate limit that fails open).
    pub async fn script_within<T: FromRedisValue>(
        &self,
        limit: Duration,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, RedisError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.commands.clone();
        self.bounded_by(limit, invocation.invoke_async::<T>(&mut conn))
            .await
    }

    /// Subscribes to a channel, or to several at once (a list); returns once Redis confirmed
    /// it.
    pub async fn subscribe(
        &self,
        channel: impl redis::ToRedisArgs + Send + Sync,
    ) -> Result<(), RedisError> {
        let mut conn = self.subscriptions.clone();
        self.bounded(conn.subscribe(channel)).await
    }

    /// Unsubscribes from a channel.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), RedisError> {
        let mut conn = self.subscriptions.clone();
        self.bounded(conn.unsubscribe(channel)).await
    }

    /// Publishes a message on a channel.
    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(message);
        self.metrics.bus_message(true);
        self.query::<i64>(&cmd).await.map(drop)
    }

    /// Publishes several messages in one round trip, in order.
    pub async fn publish_many(&self, messages: &[(String, String)]) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        for (channel, message) in messages {
            pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
        }
        for _ in messages {
            self.metrics.bus_message(true);
        }
        let mut conn = self.commands.clone();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// A trivial round trip.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

/// What a node in cluster mode is made of.
pub struct Cluster {
    /// The shared connections.
    pub redis: Redis,
    /// This node's number (the top bits of its session ids) and name.
    pub node: u16,
    /// This node's name in logs and metrics.
    pub name: String,
    /// The shared pairing store.
    pub store: store::RedisStore,
    /// The shared room directory and this node's delivery.
    pub rooms: rooms::ClusterRooms,
    /// Ends once the node has said goodbye after `stop` (see [`Cluster::start`]).
    pub stopped: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// Connects, takes a node number, starts the room directory and the heartbeat.
    ///
    /// Cancel `stop` once the node's sessions have ended: the node then takes any member it
    /// still has out of their rooms, leaves the node set, sends what is queued for the other
    /// nodes, and [`Cluster::stopped`] ends.
    pub async fn start(
        url: &str,
        name: Option<String>,
        ttl: Duration,
        metrics: Arc<Metrics>,
        resume: crate::signaling::rooms::ResumeLimits,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Self, RedisError> {
        let (pushes, received) = mpsc::unbounded_channel();
        let redis = Redis::connect(url, metrics.clone(), pushes).await?;
        let seq: u64 = redis.query(redis::cmd("INCR").arg("sp:node:seq")).await?;
        // 0 is a lone node's number; numbers come back after 65,535 starts.
        let node = ((seq - 1) % u64::from(u16::MAX)) as u16 + 1;
        let name = name.unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
        let delivery = Arc::new(crate::signaling::rooms::LocalDelivery::new(node));
        let tasks = tokio_util::sync::CancellationToken::new();
        let (rooms, publisher) = rooms::ClusterRooms::start(
            redis.clone(),
            node,
            delivery,
            metrics,
            resume,
            received,
            tasks.clone(),
        )
        .await?;
        let registry = Registry {
            redis: redis.clone(),
            node,
            name: name.clone(),
            ttl,
            rooms: rooms.clone(),
        };
        registry.beat().await?;
        let stopped = tokio::spawn(async move {
            registry.run(stop).await;
            tasks.cancel();
            let _ = publisher.await;
        });
        log::info!("cluster mode: node {name} (number {node})");
        Ok(Self {
            store: store::RedisStore::new(redis.clone()),
            redis,
            node,
            name,
            rooms,
            stopped,
        })
    }

    /// Nodes alive now.
    pub async fn nodes(&self) -> Result<usize, RedisError> {
        self.redis.query(redis::cmd("SCARD").arg("sp:nodes")).await
    }
}

/// Keeps this node's heartbeat, and reaps nodes whose heartbeat stopped.
struct Registry {
    redis: Redis,
    node: u16,
    name: String,
    ttl: Duration,
    rooms: rooms::ClusterRooms,
}

impl Registry {
    /// Renews this node's heartbeat; true when the node was not in the node set (its first
    /// beat, or the others took it for dead meanwhile).
    async fn beat(&self) -> Result<bool, RedisError> {
        let mut set = redis::cmd("SET");
        set.arg(format!("sp:node:{}:alive", self.node))
            .arg(&self.name)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64);
        self.redis.query::<()>(&set).await?;
        self.redis
            .query::<i64>(redis::cmd("SADD").arg("sp:nodes").arg(self.node))
            .await
            .map(|added| added == 1)
    }

    /// Beats every third of the TTL and reaps dead nodes, until shutdown; then leaves.
    ///
    /// A node reaps only once it has been in step with Redis for a whole TTL: after Redis was
    /// away (restarted, or out of reach), every heartbeat may have expired meanwhile, and the
    /// other nodes need a TTL to beat again before a missing heartbeat means a dead node. A
    /// node that finds itself taken for dead all the same registers its members again.
    async fn run(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut ticker = tokio::time::interval(self.ttl / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beating_since = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            match self.beat().await {
                Err(e) => {
                    log::warn!("cluster: heartbeat failed: {e}");
                    beating_since = Instant::now();
                    continue;
                }
                Ok(true) => {
                    log::warn!(
                        "cluster: this node was taken for dead; registering its members again"
                    );
                    self.rooms.reconcile();
                }
                Ok(false) => {}
            }
            let steady_since = self.rooms.settled_since().map(|s| s.max(beating_since));
            if steady_since.is_none_or(|since| since.elapsed() < self.ttl) {
                continue;
            }
            if let Err(e) = self.reap().await {
                log::warn!("cluster: reaping dead nodes failed: {e}");
            }
        }
        // A clean stop: the sessions have left their rooms (any left behind, e.g. by a session
        // still open after the grace period, are taken out now); say this node is gone.
        match self.rooms.reap(self.node).await {
            Ok(0) => {}
            Ok(n) => log::info!("cluster: {n} member(s) still here at the stop taken out"),
            Err(e) => {
                // Redis is gone: the others will reap this node after its TTL.
                log::warn!("cluster: taking this node's members out at the stop: {e}");
                return;
            }
        }
        let _ = self
            .redis
            .query::<i64>(redis::cmd("DEL").arg(format!("sp:node:{}:alive", self.node)))
            .await;
        let _ = self
            .redis
            .query::<i64>(redis::cmd("SREM").arg("sp:nodes").arg(self.node))
            .await;
    }

    /// Takes the members of every node whose heartbeat expired out of their rooms (one node
    /// does it, under a short lock).
    async fn reap(&self) -> Result<(), RedisError> {
        let nodes: Vec<u16> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg("sp:nodes"))
            .await?;
        for dead in nodes.into_iter().filter(|n| *n != self.node) {
            let alive: bool = self
                .redis
                .query(redis::cmd("EXISTS").arg(format!("sp:node:{dead}:alive")))
                .await?;
            if alive {
                continue;
            }
            let mut lock = redis::cmd("SET");
            lock.arg(format!("sp:reap:{dead}"))
                .arg(self.node)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl.as_millis() as u64);
            let locked: Option<String> = self.redis.query(&lock).await?;
            if locked.is_none() {
                continue;
            }
            let members = self.rooms.reap(dead).await?;
            self.redis
                .query::<i64>(redis::cmd("SREM").arg("sp:nodes").arg(dead))
                .await?;
            log::warn!("cluster: node {dead} stopped beating; {members} member(s) taken out");
        }
        Ok(())
    }
}
