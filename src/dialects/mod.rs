//! The other apps' protocols, each a thin translation onto the rooms core.
//!
//! A dialect owns no rooms or maps of its own: its sessions join rooms of its space in the
//! [`RoomDirectory`](crate::signaling::rooms::RoomDirectory) and reach each other through it, so
//! whatever works for signalpost's own protocol (limits, metrics, cluster mode) works for it.
//! Each listens on a port of its own (`<DIALECT>_PORT`, unset: off) and logs
//! `<dialect> listening on <addr>` when it does.
//!
//! - [`dropsilk`]: DropSilk (raw WebSocket and an HTTP room API, same-network discovery).
//! - [`oodaa`]: the Oodaa messenger (presence by user id, relays by user id).
//! - [`octatecode`]: OctateCode (rooms of peers, an HTTP API, optional signed room tokens).
//! - [`privydrop`]: PrivyDrop (Socket.IO, named rooms with an expiry, an HTTP room API).

pub mod dropsilk;
pub mod octatecode;
pub mod oodaa;
pub mod privydrop;

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
    let mut started = Vec::new();
    // Each dialect adds itself here: `if let Some(port) = config.<dialect>_port { ... }`.
    let config = state.config();
    if let Some(port) = config.oodaa_port {
        started.push(serve_on(oodaa::NAME, state, port, oodaa::service(state), ctx).await?);
    }
    if let Some(port) = config.octatecode_port {
        let service = octatecode::service(state);
        started.push(serve_on(octatecode::NAME, state, port, service, ctx).await?);
    }
    if let Some(port) = config.dropsilk_port {
        started.push(dropsilk::serve(state, port, ctx).await?);
    }
    if let Some(port) = config.privydrop.port {
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

/// Runs one session of a dialect's protocol on an upgraded connection: registered with the
/// delivery, counted among the dialect's open sessions, driven by the generic session loop, and
/// afterwards out of every room and the delivery (also when the task is cancelled). `protocol`
/// makes the session's protocol once its id is known.
pub async fn run_session<S, P>(
    name: &'static str,
    signaling: Arc<Signaling>,
    ws: Box<WebSocketStream<S>>,
    protocol: impl FnOnce(SessionId) -> P,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
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
        self.signaling.end_abandoned(self.session);
    }
}

/// What the dialects' unit tests share: the rooms core of one node, and a session's view of it.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use serde_json::Value;
    use tokio_util::sync::CancellationToken;

    use crate::config::Config;
    use crate::limits::Limiters;
    use crate::signaling::rooms::{
        Delivery, LocalDelivery, LocalRooms, Mailbox, Outbound, ResumeLimits, RoomDirectory,
        SessionId,
    };
    use crate::signaling::session::{Protocol, Replies};
    use crate::signaling::{SessionSettings, Signaling, SignalingParts};
    use crate::telemetry::Metrics;

    /// Rooms and delivery of one node, with every default.
    pub fn signaling() -> Arc<Signaling> {
        let config = Config::defaults();
        let metrics = Arc::new(Metrics::new());
        let delivery: Arc<dyn Delivery> = Arc::new(LocalDelivery::new(0));
        let rooms: Arc<dyn RoomDirectory> = Arc::new(LocalRooms::new(
            delivery.clone(),
            metrics.clone(),
            ResumeLimits::from_config(&config),
        ));
        Arc::new(Signaling::new(SignalingParts {
            rooms,
            delivery,
            store: None,
            settings: SessionSettings::from_config(&config),
            shutdown: CancellationToken::new(),
            limits: Arc::new(Limiters::from_config(&config)),
            metrics,
        }))
    }

    /// A session registered with the delivery.
    pub fn connect(signaling: &Signaling) -> (SessionId, Mailbox) {
        signaling.delivery().register(signaling.settings().queue)
    }

    /// Sends `message` as the client would; the direct replies, as JSON.
    pub async fn send<P: Protocol>(protocol: &mut P, message: Value) -> Vec<Value> {
        let mut replies = Replies::new();
        protocol.on_text(&message.to_string(), &mut replies).await;
        replies.iter().map(|r| parse(r)).collect()
    }

    /// Everything waiting in the session's queue, as its socket would receive it (events
    /// rendered by its protocol), as JSON.
    pub fn drain<P: Protocol>(protocol: &mut P, mailbox: &Mailbox) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(item) = mailbox.rx.try_recv() {
            match item {
                Outbound::Frame(frame) => out.push(parse(frame.as_str())),
                Outbound::Event(event) => {
                    let mut frames = Replies::new();
                    protocol.render(&event, &mut frames);
                    out.extend(frames.iter().map(|f| parse(f)));
                }
                Outbound::Close(..) | Outbound::Shutdown => {}
            }
        }
        out
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("frames are JSON")
    }

    /// Messages a property test throws at a dialect's parser: objects of the given fields, with
    /// values of every JSON kind, and text that is not JSON at all.
    pub fn arbitrary_frames(
        fields: &'static [&'static str],
    ) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9 é-]{0,12}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,5}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        let object =
            prop::collection::vec((prop::sample::select(fields), value), 0..6).prop_map(|pairs| {
                let map: serde_json::Map<String, Value> =
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                Value::Object(map).to_string()
            });
        prop_oneof![object, ".{0,64}"]
    }
}
