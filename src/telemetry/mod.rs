//! What operators see of a running server: metrics, logs and room stories.
//!
//! - [`metrics`]: every Prometheus metric, per server, behind a typed API
//!   (`metrics.pairing(PairingOutcome::Accepted)`, `metrics.refused(Refusal::QueueFull)`, ...).
//! - [`logging`]: `RUST_LOG` filtering, text or JSON lines, and the ring behind `GET /logs`.
//! - [`story`]: the one-line summary of each room when it ends.
//! - [`process`]: resident memory and open file descriptors from `/proc`.
//!
//! The HTTP side (`/health`, `/stats`, `/metrics`, `/logs`) is [`crate::api::ops`].

pub mod logging;
pub mod metrics;
pub mod process;
pub mod story;

pub use metrics::{Metrics, PairingOutcome, Refusal};
