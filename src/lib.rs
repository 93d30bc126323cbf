//! signalpost: a self-hosted WebRTC signaling server.
//!
//! Two devices pair with a short join code over REST (create, accept, poll), the pairing is kept in
//! embedded SQLite, and then both open a WebSocket in which the server relays their SDP offers,
//! answers and ICE candidates. Media never touches the server.
//!
//! # Layout
//! - [`config`]: every option, as environment variable and flag.
//! - [`ids`]: identifiers parsed once at the edge (`JoinCode`, `RoomId`, `DeviceId`, `ClientId`).
//! - [`protocol`]: wire types of the REST API and the WebSocket messages; no transport here.
//! - [`db`]: the pairing store behind one interface; SQLite its first implementation (read pool,
//!   one writer, migrations from `sql/`, transactions).
//! - [`api`]: HTTP routes, bounded bodies, and the single error-to-status mapping.
//! - [`dialects`]: the other apps' protocols, each on a listener of its own, translated onto
//!   the rooms core.
//! - [`signaling`]: the WebSocket upgrade, one generic session loop per connection, signalpost's
//!   own protocol, and the rooms core (a room directory and a delivery, each behind an
//!   interface) that every protocol translates onto.
//! - [`limits`]: client addresses behind proxies, rate limits and guess lock-outs (behind
//!   interfaces a shared implementation can take over), connection slots.
//! - [`turn`]: short-lived TURN credentials (the TURN REST API scheme).
//! - [`state`]: what request handlers share.
//! - [`sweeper`]: periodic removal of expired codes.
//! - [`telemetry`]: Prometheus metrics, logging (text, JSON, the `/logs` ring), room stories.
//! - [`server`]: start on a bound listener (our own accept loop with the connection cap and HTTP
//!   timeouts), graceful shutdown; [`shutdown`]: process signals.
#![warn(missing_docs)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod db;
pub mod dialects;
pub mod ids;
pub mod limits;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod signaling;
pub mod state;
pub mod sweeper;
pub mod telemetry;
pub mod turn;

pub use config::Config;
pub use server::{Server, StartError};
