//! The other apps' protocols, each a thin translation onto the rooms core.
//!
//! A dialect owns no rooms or maps of its own: its sessions join rooms of its space in the
//! [`RoomDirectory`](crate::signaling::rooms::RoomDirectory) and reach each other through it, so
//! whatever works for signalpost's own protocol (limits, metrics, cluster mode) works for it.
//! Each listens on a port of its own (`<DIALECT>_PORT`, unset: off) and logs
//! `<dialect> listening on <addr>` when it does.

pub mod privydrop;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::listener::{self, HttpService, ListenerContext};
use crate::state::AppState;

/// A dialect's listener, running.
pub struct Listening {
    /// The dialect.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its accept loop; it ends with the server's shutdown.
    pub task: JoinHandle<()>,
}

/// Binds and starts the listener of every dialect whose port is configured.
pub async fn start(state: &AppState, ctx: &ListenerContext) -> std::io::Result<Vec<Listening>> {
    let mut started = Vec::new();
    // Each dialect adds itself here: `if let Some(port) = config.<dialect>_port { ... }`.
    if let Some(port) = state.config().privydrop.port {
        started.push(privydrop::start(state, ctx, port).await?);
    }
    Ok(started)
}

/// What `/stats` on the main port shows of each running dialect, by name.
pub async fn stats(state: &AppState) -> serde_json::Map<String, serde_json::Value> {
    let mut stats = serde_json::Map::new();
    if state.config().privydrop.port.is_some()
        && let Some(store) = state.store()
    {
        stats.insert(privydrop::NAME.into(), privydrop::stats(store).await);
    }
    stats
}

/// Binds `port` on the server's host and serves `service` there, with the server's connection
/// cap, timeouts and shutdown. Logs `<name> listening on <addr>`.
pub async fn serve_on<S: HttpService>(
    name: &'static str,
    state: &AppState,
    port: u16,
    service: S,
    ctx: &ListenerContext,
) -> std::io::Result<Listening> {
    let listener = TcpListener::bind(SocketAddr::new(state.config().host, port)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(listener::serve(listener, service, ctx.clone()));
    log::info!("{name} listening on {addr}");
    Ok(Listening { name, addr, task })
}
