//! Deletes expired pending codes on a timer. Every query already treats them as absent; the sweep
//! only keeps the table from growing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::{Store, now_millis};
use crate::telemetry::Metrics;

/// Sweeps every `interval` until `shutdown` is cancelled.
pub async fn run(
    store: Store,
    interval: Duration,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => sweep_once(&store, &metrics).await,
        }
    }
    log::debug!("sweeper stopped");
}

/// One sweep; failures are logged and retried at the next tick. Codes that expired without
/// being accepted count as `expired` pairings.
pub async fn sweep_once(store: &Store, metrics: &Metrics) {
    match store.sweep(now_millis()).await {
        Ok(swept) => {
            metrics.swept(swept.unaccepted as u64);
            match swept.removed {
                0 => log::debug!("sweeper: no expired pending codes"),
                n => log::info!(
                    "sweeper: removed {n} expired pending code(s), {} never accepted",
                    swept.unaccepted
                ),
            }
        }
        Err(e) => {
            metrics.sweep_failed();
            log::error!("sweeper failed: {e}");
        }
    }
}
