//! Wire types: what crosses the network, apart from how it travels (no warp, no SQLite here).
//!
//! - [`rest`]: request and response bodies of the pairing API.
//! - [`ws`]: the WebSocket messages of the signaling relay.

pub mod rest;
pub mod ws;
