//! What request handlers share: a cheap handle over one allocation.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::db::Store;
use crate::limits::Limiters;
use crate::signaling::Signaling;

/// Shared server state. Cloning copies a pointer.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Option<Store>,
    signaling: Arc<Signaling>,
    limits: Arc<Limiters>,
    started: Instant,
}

impl AppState {
    /// Bundles the parts built at start.
    pub fn new(
        config: Config,
        store: Option<Store>,
        signaling: Arc<Signaling>,
        limits: Arc<Limiters>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                store,
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

    /// The pairing store, unless SQLite is turned off.
    pub fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
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
