//! One WebSocket session: a single task from upgrade to close.
//!
//! The task registers with the hub, then loops over four things at once (the client's frames, its
//! queue of outgoing messages, the heartbeat, and shutdown) and always unregisters at the end, on
//! every path, through a drop guard. It is the only writer of its socket, so frames never
//! interleave, and it awaits socket writes with no lock held.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::hub::{Mailbox, Outbound};
use super::queue::Event;
use super::{MAX_MESSAGE_BYTES, Signaling};
use crate::db::StoreError;
use crate::ids::{ClientId, DeviceId, RoomId};
use crate::limits::rate::Bucket;
use crate::protocol::ws::{ClientMessage, ServerMessage, errors};
use crate::telemetry::{Metrics, Refusal};

/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages refused for rate in a row before the connection is closed (1008): enough for a
/// client that briefly overshoots to see `rate_limited` and slow down, few enough that a flood
/// costs little.
pub const MAX_RATE_STRIKES: u32 = 20;

/// The error text of a message refused for rate.
pub const RATE_LIMITED: &str = "rate_limited";

/// Why a session ended, and what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed or the connection broke.
    ClientGone,
    /// A frame over the size limit (1009).
    TooBig,
    /// The queue filled up (1008).
    TooSlow,
    /// The client kept sending over its message rate (1008).
    RateLimited,
    /// No frame within the idle timeout.
    Idle,
    /// The server is stopping (1001, after `server_shutdown`).
    Shutdown,
    /// The hub asked for a close with this code (a purged device).
    Closed(u16, &'static str),
}

/// Unregisters the session from the hub however the task ends.
struct Registration {
    signaling: Arc<Signaling>,
    client: ClientId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.signaling.hub.disconnect(self.client);
    }
}

/// Runs a session to completion over an upgraded connection.
pub async fn run<S>(mut ws: WebSocketStream<S>, signaling: Arc<Signaling>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (client, mut mailbox) = signaling.hub.connect(signaling.settings.send_queue);
    let _registration = Registration {
        signaling: signaling.clone(),
        client,
    };
    log::debug!("session {client} connected");
    let mut session = Session {
        signaling: &signaling,
        client,
        bucket: Bucket::full(signaling.limits.messages, std::time::Instant::now()),
        strikes: 0,
    };
    let end = session.run(&mut ws, &mut mailbox).await;
    log::debug!("session {client} ended: {end:?}");
    let close = match end {
        End::ClientGone => None,
        End::TooBig => Some((CloseCode::Size, "message too big")),
        End::TooSlow => Some((CloseCode::Policy, "send queue full")),
        End::RateLimited => Some((CloseCode::Policy, "rate limited")),
        End::Idle => Some((CloseCode::Away, "ping timeout")),
        End::Shutdown => Some((CloseCode::Away, "server shutting down")),
        End::Closed(code, reason) => Some((CloseCode::from(code), reason)),
    };
    count_end(
        &signaling.metrics,
        client,
        end,
        close.map(|(code, _)| u16::from(code)),
    );
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // The closing handshake: send our close frame, then read (and discard) until the
        // client's close or end of stream. Dropping the socket with unread input would make the
        // kernel reset the connection, and the client might lose the close frame, code and all.
        // Bounded, since a client that does not read cannot take a close frame either. Boxed,
        // because the timer would otherwise sit in every idle session's state.
        let handshake = async {
            if ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        };
        let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, handshake)).await;
    }
}

/// Counts the session's end by close code, and the refusals that ended it.
fn count_end(metrics: &Metrics, client: ClientId, end: End, code: Option<u16>) {
    match end {
        End::TooBig => {
            metrics.refused(Refusal::Oversize);
            log::info!("session {client} closed: a frame over {MAX_MESSAGE_BYTES} bytes");
        }
        End::TooSlow => {
            metrics.refused(Refusal::QueueFull);
            log::info!("session {client} closed: too slow to take its messages");
        }
        _ => {}
    }
    metrics.ws_closed(code);
}

struct Session<'a> {
    signaling: &'a Signaling,
    client: ClientId,
    /// This connection's message rate.
    bucket: Bucket,
    /// Messages refused for rate since the last one accepted.
    strikes: u32,
}

impl Session<'_> {
    async fn run<S>(&mut self, ws: &mut WebSocketStream<S>, mailbox: &mut Mailbox) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let settings = &self.signaling.settings;
        let shutdown = self.signaling.shutdown.clone();
        let connected = ServerMessage::Connected {
            client_id: self.client.to_string(),
            server: "signalpost",
        };
        if let Err(end) = self.write(ws, mailbox, connected.to_json()).await {
            return end;
        }
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        // Shutdown arrives through the queue (see `Hub::shut_down`); a session that registered
        // after that was broadcast sees the token instead.
        if shutdown.is_cancelled() {
            return Self::say_goodbye(self, ws, mailbox).await;
        }
        loop {
            let step = tokio::select! {
                biased;
                event = mailbox.rx.next() => match event {
                    Event::Kicked => Err(End::TooSlow),
                    Event::Item(Outbound::Text(text)) => self.write(ws, mailbox, text).await,
                    Event::Item(Outbound::Close(code, reason)) => Err(End::Closed(code, reason)),
                    Event::Item(Outbound::Shutdown) => Err(self.say_goodbye(ws, mailbox).await),
                    // The hub holds the sender until this session unregisters.
                    Event::Closed => Err(End::ClientGone),
                },
                frame = ws.next() => {
                    last_seen = Instant::now();
                    match frame {
                        // Boxed: handling a message (a database lookup on join) needs far more state than
                        // waiting does, and only for a moment; inline, every idle session would carry it.
                        Some(Ok(message)) => Box::pin(self.on_frame(ws, mailbox, message)).await,
                        Some(Err(WsError::Capacity(_))) => Err(End::TooBig),
                        Some(Err(_)) | None => Err(End::ClientGone),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() >= settings.idle_timeout {
                        Err(End::Idle)
                    } else {
                        self.send_frame(ws, mailbox, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// `server_shutdown`, before the 1001 close.
    async fn say_goodbye<S>(&self, ws: &mut WebSocketStream<S>, mailbox: &Mailbox) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let bye = ServerMessage::ServerShutdown.to_json();
        let _ = self.write(ws, mailbox, bye).await;
        End::Shutdown
    }

    async fn on_frame<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        mailbox: &Mailbox,
        message: Message,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            let rate = self.signaling.limits.messages;
            if self.bucket.take(rate, std::time::Instant::now()).is_err() {
                self.signaling.metrics.refused(Refusal::Rate);
                self.strikes += 1;
                if self.strikes > MAX_RATE_STRIKES {
                    log::info!("session {} closed: over its message rate", self.client);
                    return Err(End::RateLimited);
                }
                let reply = ServerMessage::error(RATE_LIMITED);
                return self.write(ws, mailbox, reply.to_json()).await;
            }
            self.strikes = 0;
        }
        match message {
            Message::Text(text) => {
                let reply = self.on_text(text.as_str()).await;
                match reply {
                    Some(reply) => self.write(ws, mailbox, reply.to_json()).await,
                    None => Ok(()),
                }
            }
            Message::Binary(_) => {
                let reply = ServerMessage::error(errors::BINARY_UNSUPPORTED);
                self.write(ws, mailbox, reply.to_json()).await
            }
            Message::Close(_) => Err(End::ClientGone),
            // tungstenite answers pings itself; any frame counts as a sign of life.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    /// Handles one text frame; returns the direct reply, if any (hub messages go via the queue).
    async fn on_text(&mut self, text: &str) -> Option<ServerMessage> {
        let message = match ClientMessage::parse(text) {
            Ok(m) => m,
            Err(e) => return Some(ServerMessage::error(e.to_string())),
        };
        let hub = &self.signaling.hub;
        match message {
            ClientMessage::JoinRoom { room_id, device_id } => {
                match self.may_join(&room_id, device_id.as_ref()).await {
                    Ok(true) => {
                        hub.join(self.client, room_id, device_id);
                        None
                    }
                    Ok(false) => Some(ServerMessage::error(errors::NOT_A_MEMBER)),
                    Err(e) => {
                        log::error!("membership check failed: {e}");
                        Some(ServerMessage::error(errors::INTERNAL))
                    }
                }
            }
            ClientMessage::LeaveRoom => {
                hub.leave(self.client);
                None
            }
            ClientMessage::Ping => Some(ServerMessage::Pong),
            ClientMessage::Relay(relay) => match hub.relay(self.client, &relay) {
                Ok(_) => None,
                Err(e) => Some(ServerMessage::error(e.to_string())),
            },
        }
    }

    /// Whether this device may join this room. Paired rooms (in the database) admit only their two
    /// devices; with strict rooms, only paired rooms exist.
    async fn may_join(&self, room: &RoomId, device: Option<&DeviceId>) -> Result<bool, StoreError> {
        let strict = self.signaling.settings.strict_rooms;
        let Some(store) = &self.signaling.store else {
            return Ok(!strict);
        };
        if device.is_none() && !strict {
            return Ok(true);
        }
        let Some(device) = device else {
            return Ok(false);
        };
        Ok(match store.room(room.clone()).await? {
            Some(paired) => paired.client1 == *device || paired.client2 == *device,
            None => !strict,
        })
    }

    async fn write<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        mailbox: &Mailbox,
        text: String,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.send_frame(ws, mailbox, Message::text(text)).await
    }

    /// Writes one frame, giving up when the session is kicked: a client that stopped reading would
    /// otherwise hold this task in the write forever.
    async fn send_frame<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        mailbox: &Mailbox,
        frame: Message,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::select! {
            sent = ws.send(frame) => sent.map_err(|_| End::ClientGone),
            _ = mailbox.rx.kicked() => Err(End::TooSlow),
        }
    }
}
