//! Deletes expired pending codes on a timer. Every query already treats them as absent; the sweep
//! only keeps the table from growing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::{Store, now_millis};

/// Sweeps every `interval` until `shutdown` is cancelled.
pub async fn run(store: Store, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => sweep_once(&store).await,
        }
    }
    log::debug!("sweeper stopped");
}

/// One sweep; failures are logged and retried at the next tick.
pub async fn sweep_once(store: &Store) {
    match store.sweep_expired(now_millis()).await {
        Ok(0) => log::debug!("sweeper: no expired pending codes"),
        Ok(n) => log::info!("sweeper: removed {n} expired pending code(s)"),
        Err(e) => log::error!("sweeper failed: {e}"),
    }
}
