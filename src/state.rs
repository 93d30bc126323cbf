//! What request handlers share: a cheap handle over one allocation.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::db::{Desk, Store};
use crate::limits::Limiters;
use crate::signaling::Signaling;

/// Shared server state. Cloning copies a pointer.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// What a node in cluster mode shares with its handlers.
#[derive(Clone)]
pub struct ClusterInfo {
    /// This node's name.
    pub name: String,
    /// This node's number.
    pub node: u16,
    /// The shared connections.
    pub redis: crate::cluster::Redis,
    /// The shared room directory.
    pub rooms: crate::cluster::rooms::ClusterRooms,
}

struct Inner {
    config: Config,
    cluster: Option<ClusterInfo>,
    store: Option<Store>,
    desk: Option<Desk>,
    signaling: Arc<Signaling>,
    limits: Arc<Limiters>,
    started: Instant,
}

impl AppState {
    /// Bundles the parts built at start: `desk` takes the pairing requests, `store` is
    /// everything else that is stored (both `None` when the pairing API is off).
    pub fn new(
        config: Config,
        store: Option<(Store, Desk)>,
        signaling: Arc<Signaling>,
        limits: Arc<Limiters>,
        cluster: Option<ClusterInfo>,
    ) -> Self {
        let (store, desk) = store.unzip();
        Self {
            inner: Arc::new(Inner {
                config,
                cluster,
                store,
                desk,
                signaling,
                limits,
                started: Instant::now(),
            }),
        }
    }

    /// The configuration the server started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The node's cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&ClusterInfo> {
        self.inner.cluster.as_ref()
    }

    /// The pairing store, unless the pairing API is off.
    pub fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
    }

    /// The pairing requests (the store and the limits, in one step), unless the pairing API is
    /// off.
    pub fn desk(&self) -> Option<&Desk> {
        self.inner.desk.as_ref()
    }

    /// Sessions and rooms.
    pub fn signaling(&self) -> &Arc<Signaling> {
        &self.inner.signaling
    }

    /// Abuse limits.
    pub fn limits(&self) -> &Arc<Limiters> {
        &self.inner.limits
    }

    /// The server's metrics (held by [`Signaling`], which sessions and the hub reach them by).
    pub fn metrics(&self) -> &Arc<crate::telemetry::Metrics> {
        self.inner.signaling.metrics()
    }

    /// When the server started.
    pub fn started(&self) -> Instant {
        self.inner.started
    }
}
