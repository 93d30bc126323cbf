//! One Socket.IO connection of PrivyDrop's namespace `/`, as a session of the rooms core.
//!
//! socketioxide does the Engine.IO and Socket.IO framing, both transports, pings and the
//! upgrade from polling. Each connection becomes one session of the delivery, known in rooms by
//! its socket id, and one task (`run`) that handles the client's events in the order they
//! came and writes what its mailbox holds (room events, rendered here into PrivyDrop events, and
//! frames other sessions relayed to it).
//!
//! socketioxide hands each event to its handler on a task of its own, so two events could be
//! handled out of order; an offer and the candidates after it must not be. So the socket's one
//! handler (`Queue`) does nothing but queue each event, synchronously and in arrival order, for
//! the session task. [`Connect`] admits a connection and registers that handler in its connect
//! middleware, which socketioxide runs before the client is told it is connected: a handler
//! registered later (by a connect handler, which runs after) could miss the client's first event.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use serde::Serialize;
use socketioxide::adapter::LocalAdapter;
use socketioxide::handler::{ConnectHandler, MessageHandler, Value};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError};
use tokio::sync::mpsc;

use super::wire::{self, ClientEvent, JoinResponse, PeerIdPayload, Signal, events};
use super::{NAME, PrivyDrop, SPACE};
use crate::limits::client::ClientKey;
use crate::limits::rate::Bucket;
use crate::limits::slots::{Slot, SlotRefused};
use crate::server::listener::PeerAddr;
use crate::signaling::queue::Event;
use crate::signaling::rooms::{
    Departure, Frame, JoinOutcome, JoinRequest, Mailbox, MemberInfo, Outbound, PeerId, Rejoin,
    RoomDirectory, RoomEvent, RoomKey, RoomOptions, SessionId, Target,
};
use crate::signaling::session::MAX_RATE_STRIKES;
use crate::telemetry::Refusal;

type SocketRef = Arc<Socket<LocalAdapter>>;

/// Events of one socket waiting for its session task. The task takes them as fast as the rooms
/// answer; a client that gets this far ahead (past its message rate's burst, or while the store
/// is slow) is disconnected rather than buffered.
pub const INBOUND_QUEUE: usize = 256;

/// What the socket's handlers queue for its session.
enum Inbound {
    /// A client event, as socketioxide parsed it (`["name", ...args]`).
    Event(Value),
    /// The socket is gone.
    Gone(DisconnectReason),
}

/// The connect handler of namespace `/`.
#[derive(Clone)]
pub struct Connect {
    dialect: Arc<PrivyDrop>,
}

impl Connect {
    /// Sessions of `dialect`.
    pub fn new(dialect: Arc<PrivyDrop>) -> Self {
        Self { dialect }
    }
}

/// The type parameter of our handlers (socketioxide's own handlers use tuples of extractors).
pub struct Direct;

/// A refusal of a connection, sent to the client as `connect_error {message}`.
type Refused = Box<dyn std::fmt::Display + Send>;

impl ConnectHandler<LocalAdapter, Direct> for Connect {
    fn call(&self, _socket: SocketRef, _auth: Option<Value>) {
        // Everything happened in `call_middleware`, before the client could send an event.
    }

    /// Admits the connection and starts its session. socketioxide runs this before the socket
    /// joins the namespace and the client is told it is connected, so the socket's handler is
    /// in place before any event of it can arrive (its connect handler runs only after the
    /// client has been told).
    fn call_middleware<'a>(
        &'a self,
        socket: SocketRef,
        _auth: &'a Option<Value>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Refused>> + Send + 'a>> {
        Box::pin(async move {
            let dialect = &self.dialect;
            let admitted = admit(dialect, &socket).await?;
            let (events, inbound) = mpsc::channel(INBOUND_QUEUE);
            let settings = dialect.signaling.settings();
            socket.on_fallback(Queue {
                events: events.clone(),
                rate: Mutex::new(Rate {
                    bucket: Bucket::full(settings.messages, Instant::now()),
                    strikes: 0,
                }),
                dialect: dialect.clone(),
            });
            socket.on_disconnect(move |reason: DisconnectReason| async move {
                // Waits for room: the session must learn that its socket is gone.
                let _ = events.send(Inbound::Gone(reason)).await;
            });
            dialect.signaling.sessions().spawn(run(
                dialect.clone(),
                Arc::downgrade(&socket),
                inbound,
                admitted,
            ));
            Ok(())
        })
    }
}

/// The socket's one message handler: queues every event for the session, in order.
struct Queue {
    events: mpsc::Sender<Inbound>,
    rate: Mutex<Rate>,
    dialect: Arc<PrivyDrop>,
}

/// The connection's message rate, as for every WebSocket session.
struct Rate {
    bucket: Bucket,
    /// Events dropped for rate since the last one taken.
    strikes: u32,
}

impl MessageHandler<LocalAdapter, Direct> for Queue {
    fn call(&self, socket: SocketRef, value: Value, _ack: Option<i64>) {
        let settings = self.dialect.signaling.settings();
        let over = {
            let mut rate = self.rate.lock().unwrap();
            match rate.bucket.take(settings.messages, Instant::now()) {
                Ok(()) => {
                    rate.strikes = 0;
                    None
                }
                Err(_) => {
                    rate.strikes += 1;
                    Some(rate.strikes)
                }
            }
        };
        if let Some(strikes) = over {
            self.dialect.signaling.metrics().refused(Refusal::Rate);
            log::debug!(
                "privydrop: event of {} dropped: over the message rate",
                redact(&socket.id.to_string())
            );
            if strikes >= MAX_RATE_STRIKES {
                log::info!(
                    "privydrop: {} disconnected: over the message rate",
                    redact(&socket.id.to_string())
                );
                disconnect(socket);
            }
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(Inbound::Event(value))
        {
            self.dialect.signaling.metrics().refused(Refusal::QueueFull);
            log::info!(
                "privydrop: {} disconnected: {INBOUND_QUEUE} events waiting",
                redact(&socket.id.to_string())
            );
            disconnect(socket);
        }
    }
}

/// A socket id cut to its first 4 characters, for logs.
fn redact(id: &str) -> String {
    let head: String = id.chars().take(4).collect();
    format!("{head}…")
}

/// Disconnects the socket from outside socketioxide's own call stack.
fn disconnect(socket: SocketRef) {
    tokio::spawn(async move {
        let _ = socket.disconnect();
    });
}

/// The key of the client behind the socket (its handshake request), as every per-client limit
/// counts it.
fn client_key(dialect: &PrivyDrop, socket: &Socket<LocalAdapter>) -> ClientKey {
    let request = socket.req_parts();
    let peer = request.extensions.get::<PeerAddr>().map(|p| p.0);
    let forwarded: Vec<&str> = request
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    dialect
        .signaling
        .limits()
        .client_key(peer, forwarded.as_deref())
}

/// What an admitted connection holds for as long as it lives.
struct Admitted {
    key: ClientKey,
    _slot: Slot,
}

/// A Socket.IO connection counts as a WebSocket upgrade does on the main port, whichever
/// transport it uses: against the client's upgrade rate and connection slots.
async fn admit(dialect: &PrivyDrop, socket: &Socket<LocalAdapter>) -> Result<Admitted, Refused> {
    let signaling = &dialect.signaling;
    let key = client_key(dialect, socket);
    if signaling.limits().upgrades().check(key).await.is_err() {
        signaling.metrics().refused(Refusal::Rate);
        log::info!("privydrop: connection refused: rate limited ({key})");
        return Err(Box::new("rate_limited"));
    }
    match signaling.limits().connections().acquire(key) {
        Ok(slot) => Ok(Admitted { key, _slot: slot }),
        Err(refused) => {
            signaling.metrics().refused(Refusal::Rate);
            log::info!("privydrop: connection refused: {refused:?} connection limit ({key})");
            Err(Box::new(match refused {
                SlotRefused::PerClient => "too_many_connections",
                SlotRefused::Global => "server_full",
            }))
        }
    }
}

/// A socket's session, until the socket is gone. It holds the socket weakly: the namespace
/// owns it, and once socketioxide drops it (its handlers with it), the session's queue closes.
async fn run(
    dialect: Arc<PrivyDrop>,
    socket: Weak<Socket<LocalAdapter>>,
    mut inbound: mpsc::Receiver<Inbound>,
    admitted: Admitted,
) {
    let signaling = dialect.signaling.clone();
    let Some(id) = socket.upgrade().map(|s| s.id.to_string()) else {
        return;
    };
    let (session, mailbox) = signaling.delivery().register(signaling.settings().queue);
    let _open = (signaling.metrics().dialect_session(NAME), dialect.opened());
    let mut session = Session {
        label: redact(&id),
        peer: id.into(),
        dialect,
        socket,
        session,
        key: admitted.key,
        finished: false,
    };
    log::debug!("privydrop: {} connected", session.label);
    let end = session.run(&mut inbound, &mailbox).await;
    log::debug!("privydrop: {} ended: {end:?}", session.label);
    session.finish().await;
    drop(admitted);
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The socket is gone (the client left, the transport failed, or it was disconnected).
    Gone,
    /// The client did not take its messages fast enough.
    TooSlow,
    /// The server is stopping, or the rooms closed the session.
    Closed,
}

/// One socket's session.
struct Session {
    dialect: Arc<PrivyDrop>,
    socket: Weak<Socket<LocalAdapter>>,
    session: SessionId,
    /// How the others know it: its socket id.
    peer: PeerId,
    /// The socket id cut short, for logs (a full one lets anyone `leave_room` it).
    label: String,
    /// Its client, for the join limit.
    key: ClientKey,
    /// Set once it has left its rooms.
    finished: bool,
}

impl Session {
    fn rooms(&self) -> &dyn RoomDirectory {
        self.dialect.signaling.rooms()
    }

    async fn run(&mut self, inbound: &mut mpsc::Receiver<Inbound>, mailbox: &Mailbox) -> End {
        // Shutdown reaches registered sessions through their queue; one that registered after
        // it was broadcast sees the token.
        if self.dialect.signaling.shutdown_token().is_cancelled() {
            self.disconnect();
            return End::Closed;
        }
        loop {
            let step = tokio::select! {
                biased;
                event = inbound.recv() => match event {
                    Some(Inbound::Event(value)) => {
                        // Boxed: a join needs far more state than waiting does, and only for a
                        // moment.
                        Box::pin(self.on_event(value)).await;
                        Ok(())
                    }
                    Some(Inbound::Gone(reason)) => {
                        log::debug!("privydrop: {} gone: {reason:?}", self.label);
                        Err(End::Gone)
                    }
                    None => Err(End::Gone),
                },
                out = mailbox.rx.next() => match out {
                    Event::Item(Outbound::Frame(frame)) => self.write_frame(&frame),
                    Event::Item(Outbound::Event(event)) => self.render(&event),
                    Event::Item(Outbound::Close(..) | Outbound::Shutdown) => Err(End::Closed),
                    Event::Kicked => Err(End::TooSlow),
                    Event::Closed => Err(End::Gone),
                },
            };
            match step {
                Ok(()) => {}
                Err(End::Gone) => return End::Gone,
                Err(end) => {
                    if end == End::TooSlow {
                        self.dialect.signaling.metrics().refused(Refusal::QueueFull);
                        log::info!(
                            "privydrop: {} disconnected: too slow to take its messages",
                            self.label
                        );
                    }
                    self.disconnect();
                    return end;
                }
            }
        }
    }

    /// Out of its room (the others are told), the room's lifetime set if it is empty now, and
    /// out of the delivery.
    async fn finish(&mut self) {
        self.finished = true;
        let room = self.current_room();
        let signaling = &self.dialect.signaling;
        if let Err(e) = self
            .rooms()
            .disconnect(self.session, Departure::Closed)
            .await
        {
            log::warn!("privydrop: {} leaving its room failed: {e}", self.label);
        }
        if let Some(room) = room {
            self.dialect.registry.left(self.rooms(), room.id()).await;
        }
        signaling.delivery().unregister(self.session);
    }

    /// The PrivyDrop room the socket is in, as the directory knows it (so a `leave_room` over
    /// HTTP is seen at once).
    fn current_room(&self) -> Option<RoomKey> {
        self.rooms()
            .rooms_of(self.session)
            .into_iter()
            .find(|room| room.space() == SPACE)
    }

    async fn on_event(&mut self, value: Value) {
        let Value::Str(text, None) = &value else {
            log::debug!("privydrop: {}: binary event ignored", self.label);
            return;
        };
        let event = match ClientEvent::parse(text) {
            Ok(event) => event,
            Err(e) => {
                log::debug!("privydrop: {}: event ignored: {e}", self.label);
                return;
            }
        };
        match event {
            ClientEvent::Join { room_id } => {
                let answer = self.join(&room_id).await;
                let _ = self.emit(events::JOIN_RESPONSE, &answer);
            }
            ClientEvent::Signal(signal) => self.signal(&signal),
            ClientEvent::InitiatorOnline { room_id } => {
                let frame = wire::initiator_online_frame(&room_id);
                self.broadcast(&room_id, frame, events::INITIATOR_ONLINE);
            }
            ClientEvent::RecipientReady { room_id, peer_id } => {
                let frame = wire::recipient_ready_frame(peer_id);
                self.broadcast(&room_id, frame, events::RECIPIENT_READY);
            }
        }
    }

    /// `join`: the original's checks in the original's order (bound elsewhere, the join limit,
    /// the room's existence), then the directory's join, which tells the others (`ready`), also
    /// on a rejoin of the same room.
    async fn join<'a>(&self, room_id: &'a str) -> JoinResponse<'a> {
        let refused = |message: Cow<'a, str>| JoinResponse::new(false, message, room_id);
        let key = RoomKey::new(SPACE, room_id);
        let current = self.current_room();
        if current.as_ref().is_some_and(|c| *c != key) {
            return refused(wire::ALREADY_BOUND.into());
        }
        if current.is_none()
            && let Err(wait) = self.dialect.joins.check(self.key).await
        {
            self.dialect.signaling.metrics().refused(Refusal::Rate);
            log::info!("privydrop: join refused: rate limited ({})", self.key);
            return refused(wire::rate_limited(wait).into());
        }
        if room_id.chars().count() > wire::MAX_ROOM_ID_CHARS {
            return refused(wire::NO_SUCH_ROOM.into());
        }
        let rooms = self.rooms();
        let checked_at = rooms.epoch();
        match self.dialect.registry.exists(room_id).await {
            Ok(true) => {}
            Ok(false) => return refused(wire::NO_SUCH_ROOM.into()),
            Err(e) => {
                log::error!("privydrop: looking up room {} failed: {e}", key.redacted());
                return JoinResponse::server_error();
            }
        }
        let request = JoinRequest {
            session: self.session,
            room: key.clone(),
            member: MemberInfo::peer(self.peer.clone()),
            options: RoomOptions::room(self.dialect.max_room_capacity),
            device: None,
            replace_same_device: false,
            replace_same_peer: false,
            exclusive: true,
            rejoin: Rejoin::Announce,
            resume: None,
            checked_at,
        };
        match rooms.join(request).await {
            Ok(JoinOutcome::Joined { .. } | JoinOutcome::AlreadyMember) => {}
            Ok(JoinOutcome::Full { .. }) => return refused(wire::ROOM_FULL.into()),
            Ok(JoinOutcome::Closed) => return refused(wire::NO_SUCH_ROOM.into()),
            Err(e) => {
                log::error!("privydrop: join of {} failed: {e}", key.redacted());
                return JoinResponse::server_error();
            }
        }
        // After the join, so that a last member leaving meanwhile cannot cut the lifetime of a
        // room that has a member again (see `Registry::left`).
        if let Err(e) = self.dialect.registry.refresh(room_id).await {
            log::warn!("privydrop: refreshing room {} failed: {e}", key.redacted());
        }
        JoinResponse::new(true, wire::JOINED, room_id)
    }

    /// `offer`, `answer`, `ice-candidate`: to the addressed socket, if it is in the sender's
    /// room.
    fn signal(&self, signal: &Signal<'_>) {
        let Some(room) = self.current_room() else {
            log::debug!(
                "privydrop: {}: {} outside a room dropped",
                self.label,
                signal.kind.event()
            );
            return;
        };
        let frame = wire::signal_frame(signal, &self.peer);
        let relayed = self.rooms().relay(
            self.session,
            &room,
            Target::Peer(&signal.peer_id),
            Frame::Owned(frame),
            signal.kind.metric(),
        );
        if let Err(e) = relayed {
            log::debug!(
                "privydrop: {}: {} dropped: {e}",
                self.label,
                signal.kind.event()
            );
        }
    }

    /// `initiator-online`, `recipient-ready`: to the others of the named room, if the sender is
    /// one of its members.
    fn broadcast(&self, room_id: &str, frame: String, event: &'static str) {
        let key = RoomKey::new(SPACE, room_id);
        let relayed = self.rooms().relay(
            self.session,
            &key,
            Target::Others,
            Frame::Owned(frame),
            event,
        );
        if let Err(e) = relayed {
            log::debug!("privydrop: {}: {event} dropped: {e}", self.label);
        }
    }

    /// A frame another session relayed: the event it carries.
    fn write_frame(&self, frame: &Frame) -> Result<(), End> {
        match wire::read_frame(frame.as_str()) {
            Some((event, payload)) => self.emit(&event, payload),
            None => {
                log::warn!(
                    "privydrop: {}: unreadable relayed frame dropped",
                    self.label
                );
                Ok(())
            }
        }
    }

    /// What happened in the room, as PrivyDrop says it: a join (or rejoin) is `ready` to the
    /// others; a member gone, for whatever reason, is `peer-disconnected`, which a member removed
    /// by `leave_room` gets about itself too.
    fn render(&self, event: &RoomEvent) -> Result<(), End> {
        match event {
            RoomEvent::PeerJoined { member, .. } => self.emit(
                events::READY,
                &PeerIdPayload {
                    peer_id: &member.peer,
                },
            ),
            RoomEvent::PeerLeft { peer, .. } => {
                self.emit(events::PEER_DISCONNECTED, &PeerIdPayload { peer_id: peer })
            }
            _ => Ok(()),
        }
    }

    /// Closes the socket (its `Gone` follows, if it was not gone already).
    fn disconnect(&self) {
        if let Some(socket) = self.socket.upgrade() {
            let _ = socket.disconnect();
        }
    }

    /// Hands an event to the socket; a socket whose buffer is full is too slow.
    fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), End> {
        let Some(socket) = self.socket.upgrade() else {
            return Err(End::Gone);
        };
        match socket.emit(event, data) {
            Ok(()) => Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(End::TooSlow),
            // The socket is closing: its `Gone` follows.
            Err(SendError::Socket(SocketError::Closed)) => Ok(()),
            Err(e) => {
                log::warn!("privydrop: {}: {event} not sent: {e}", self.label);
                Ok(())
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The task was cancelled or panicked before `finish`: leave anyway.
        self.dialect.signaling.end_abandoned(self.session);
    }
}
