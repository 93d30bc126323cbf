//! The other apps' protocols, each a thin translation onto the rooms core.
//!
//! A dialect owns no rooms or maps of its own: its sessions join rooms of its space in the
//! [`RoomDirectory`](crate::signaling::rooms::RoomDirectory) and reach each other through it, so
//! whatever works for signalpost's own protocol (limits, metrics, cluster mode) works for it.
//! Each listens on a port of its own (`<DIALECT>_PORT`, unset: off) and logs
//! `<dialect> listening on <addr>` when it does.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;

use crate::server::listener::{self, HttpService, ListenerContext};
use crate::signaling::Signaling;
use crate::signaling::rooms::{Departure, SessionId};
use crate::signaling::session::{self, End, Protocol};
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
    let started = Vec::new();
    // Each dialect adds itself here: `if let Some(port) = config.<dialect>_port { ... }`.
    let _ = (state, ctx);
    Ok(started)
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

/// Runs one session of a dialect's protocol on an upgraded connection: registered with the
/// delivery, counted among the dialect's open sessions, driven by the generic session loop, and
/// afterwards out of every room and the delivery (also when the task is cancelled). `protocol`
/// makes the session's protocol once its id is known.
pub async fn run_session<S, P>(
    name: &'static str,
    signaling: Arc<Signaling>,
    ws: WebSocketStream<S>,
    protocol: impl FnOnce(SessionId) -> P,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Protocol,
{
    let (session, mailbox) = signaling.delivery().register(signaling.settings().queue);
    let mut registered = Registered {
        signaling: signaling.clone(),
        session,
        finished: false,
    };
    let _open = signaling.metrics().dialect_session(name);
    let mut protocol = protocol(session);
    let end = session::run(
        ws,
        &mut protocol,
        &mailbox,
        signaling.settings(),
        signaling.shutdown_token(),
        signaling.metrics(),
    )
    .await;
    log::debug!("{name} session ended: {end:?}");
    registered.finish(end).await;
    end
}

/// A session's registration, undone once: by [`Registered::finish`], or on drop if the session
/// task was cancelled or panicked first.
struct Registered {
    signaling: Arc<Signaling>,
    session: SessionId,
    finished: bool,
}

impl Registered {
    /// Out of every room (the others are told), then out of the delivery.
    async fn finish(&mut self, end: End) {
        self.finished = true;
        let how = match end {
            End::ClientGone | End::Idle => Departure::Dropped,
            _ => Departure::Closed,
        };
        if let Err(e) = self.signaling.rooms().disconnect(self.session, how).await {
            log::warn!("leaving the rooms of a dialect session failed: {e}");
        }
        self.signaling.delivery().unregister(self.session);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let signaling = self.signaling.clone();
        let session = self.session;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = signaling
                    .rooms()
                    .disconnect(session, Departure::Closed)
                    .await;
                signaling.delivery().unregister(session);
            });
        }
    }
}
