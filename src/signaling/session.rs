//! One WebSocket session: a single task from upgrade to close, whatever protocol it speaks.
//!
//! The loop is the same for every protocol (ours and the other apps' dialects): it reads the
//! client's frames, writes the session's queue of outgoing messages one frame at a time, sends
//! heartbeats, drops idle and over-rate clients, and follows shutdown. What the frames mean is
//! the [`Protocol`]'s business.
//!
//! Writes never block the loop. A frame is handed to the socket and flushed as the socket takes
//! it; while a write is pending the loop keeps reading, keeps the heartbeat and idle checks
//! running, and takes nothing more from the queue. A write that has not completed within the
//! write timeout (the client stopped reading) ends the session with 1008, as does a queue that
//! outgrows its bounds in messages or bytes; the senders never wait either way. The task is the
//! only writer of its socket, so frames never interleave, and it holds no lock while it awaits.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::queue::Event;
use super::rooms::{Frame, Mailbox, Outbound, RoomEvent};
use crate::limits::rate::{Bucket, Rate};
use crate::telemetry::{Metrics, Refusal};

/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages refused for rate in a row before the connection is closed (1008): enough for a
/// client that briefly overshoots to see its refusal and slow down, few enough that a flood
/// costs little.
pub const MAX_RATE_STRIKES: u32 = 20;

/// What the loop does after a protocol handled something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// Frames a protocol answers with directly; they join the session's queue, in order.
pub type Replies = Vec<String>;

/// What a session's protocol does with its traffic.
pub trait Protocol: Send {
    /// The frame the server speaks first, if any.
    fn greeting(&mut self) -> Option<String>;

    /// One text frame from the client; direct answers go to `replies`.
    fn on_text(&mut self, text: &str, replies: &mut Replies) -> impl Future<Output = Flow> + Send;

    /// One binary frame from the client.
    fn on_binary(&mut self, replies: &mut Replies) -> Flow;

    /// Something happened to one of the session's rooms: the frames it means in this protocol
    /// go to `frames`, in order.
    fn render(&mut self, event: &RoomEvent, frames: &mut Replies) -> Flow;

    /// The answer to a message refused for rate, if the protocol has one.
    fn rate_limited(&self) -> Option<String>;

    /// The last frame before a close for shutdown (1001), if the protocol has one.
    fn goodbye(&self) -> Option<String>;
}

/// Session settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Interval of server pings.
    pub ping_interval: Duration,
    /// Silence after which a connection is dropped.
    pub idle_timeout: Duration,
    /// How long one write may take.
    pub write_timeout: Duration,
    /// The outbound queue's bounds.
    pub queue: super::queue::Bounds,
    /// Messages per connection.
    pub messages: Rate,
    /// Whether every join must name a paired room and a member device.
    pub strict_rooms: bool,
    /// The largest capacity a room may be given.
    pub max_room_capacity: u32,
}

/// Why a session ended, and what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client said goodbye with a close frame.
    ClientClosed,
    /// The connection broke (or ended without a close frame).
    ClientGone,
    /// A frame over the size limit (1009).
    TooBig,
    /// The queue outgrew its bounds, or a write outlived its deadline (1008).
    TooSlow,
    /// The client kept sending over its message rate (1008).
    RateLimited,
    /// No frame within the idle timeout.
    Idle,
    /// The server is stopping (1001, after the protocol's goodbye).
    Shutdown,
    /// Closed with this code for a reason of the protocol's or the hub's (a purged device).
    Closed(u16, &'static str),
}

impl End {
    /// The close frame the client is sent, if any.
    fn close_frame(self) -> Option<(CloseCode, &'static str)> {
        match self {
            End::ClientClosed | End::ClientGone => None,
            End::TooBig => Some((CloseCode::Size, "message too big")),
            End::TooSlow => Some((CloseCode::Policy, "send queue full")),
            End::RateLimited => Some((CloseCode::Policy, "rate limited")),
            End::Idle => Some((CloseCode::Away, "ping timeout")),
            End::Shutdown => Some((CloseCode::Away, "server shutting down")),
            End::Closed(code, reason) => Some((CloseCode::from(code), reason)),
        }
    }
}

/// The next thing to write: a frame an event rendered into, else the queue's next item.
async fn next_out(
    rendered: &mut std::collections::VecDeque<String>,
    mailbox: &Mailbox,
) -> Event<Out> {
    if let Some(text) = rendered.pop_front() {
        if rendered.is_empty() {
            // Events are rare (joins, leaves); an idle session keeps no buffer for them.
            *rendered = std::collections::VecDeque::new();
        }
        return Event::Item(Out::Text(text));
    }
    match mailbox.rx.next().await {
        Event::Item(message) => Event::Item(Out::Message(message)),
        Event::Kicked => Event::Kicked,
        Event::Closed => Event::Closed,
    }
}

/// What the loop writes next.
enum Out {
    /// A frame an event rendered into.
    Text(String),
    /// An item of the queue.
    Message(Outbound),
}

/// The socket, with at most one frame being written.
struct Conn<S> {
    ws: Box<WebSocketStream<S>>,
    /// A frame was handed to the socket and is not flushed yet.
    writing: bool,
}

/// What the socket did.
enum Io {
    /// A frame arrived (or the stream ended or failed).
    Frame(Option<Result<Message, WsError>>),
    /// The frame being written is out (or writing failed).
    Written(Result<(), WsError>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Progress on the pending write first, then the next frame: one future for both, since
    /// both need the socket.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Io> {
        if self.writing
            && let Poll::Ready(result) = Pin::new(&mut self.ws).poll_flush(cx)
        {
            self.writing = false;
            return Poll::Ready(Io::Written(result));
        }
        Pin::new(&mut self.ws).poll_next(cx).map(Io::Frame)
    }

    /// Hands a frame to the socket and flushes what it can at once. Returns whether the write
    /// is still pending (the socket's buffer is full: the client reads slowly or not at all).
    fn start_write(&mut self, frame: Message) -> Result<bool, WsError> {
        Pin::new(&mut self.ws).start_send(frame)?;
        match poll_fn(|cx| Pin::new(&mut self.ws).poll_flush(cx)).now_or_never() {
            Some(result) => result.map(|()| false),
            None => {
                self.writing = true;
                Ok(true)
            }
        }
    }
}

/// Runs a session to completion over an upgraded connection.
pub async fn run<S, P>(
    ws: Box<WebSocketStream<S>>,
    protocol: &mut P,
    mailbox: &Mailbox,
    settings: &SessionSettings,
    shutdown: &CancellationToken,
    metrics: &Metrics,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    P: Protocol,
{
    let mut conn = Conn { ws, writing: false };
    let mut session = Loop {
        settings,
        metrics,
        mailbox,
        bucket: Bucket::full(settings.messages, std::time::Instant::now()),
        strikes: 0,
        replies: Vec::new(),
        deadline: None,
        rendered: std::collections::VecDeque::new(),
    };
    let end = session.run(&mut conn, protocol, shutdown).await;
    count_end(metrics, end);
    if let Some((code, reason)) = end.close_frame() {
        close_handshake(&mut conn.ws, code, reason).await;
    }
    end
}

/// The closing handshake: send our close frame, then read (and discard) until the client's close
/// or end of stream. Dropping the socket with unread input would make the kernel reset the
/// connection, and the client might lose the close frame, code and all. Bounded, since a client
/// that does not read cannot take a close frame either.
///
/// Built on the heap by a plain function: written inline in [`run`], its timer, frame and
/// futures would take room in every idle session's state, since an `async fn` keeps space for
/// every local it has, used yet or not.
fn close_handshake<'a, S: AsyncRead + AsyncWrite + Unpin + Send>(
    ws: &'a mut WebSocketStream<S>,
    code: CloseCode,
    reason: &'static str,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    Box::pin(async move {
        let handshake = async {
            if ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, handshake).await;
    })
}

/// Counts the session's end by close code, and the refusals that ended it.
fn count_end(metrics: &Metrics, end: End) {
    match end {
        End::TooBig => metrics.refused(Refusal::Oversize),
        End::TooSlow => metrics.refused(Refusal::QueueFull),
        _ => {}
    }
    metrics.ws_closed(end.close_frame().map(|(code, _)| u16::from(code)));
}

struct Loop<'a> {
    settings: &'a SessionSettings,
    metrics: &'a Metrics,
    mailbox: &'a Mailbox,
    /// This connection's message rate.
    bucket: Bucket,
    /// Messages refused for rate since the last one accepted.
    strikes: u32,
    /// Direct answers of the message being handled; kept to reuse its allocation.
    replies: Replies,
    /// When the pending write must have completed; armed only for a write that did not
    /// complete at once, so an idle session holds no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Frames an event rendered into, waiting for the socket (an event renders into a few at
    /// most).
    rendered: std::collections::VecDeque<String>,
}

impl Loop<'_> {
    async fn run<S, P>(
        &mut self,
        conn: &mut Conn<S>,
        protocol: &mut P,
        shutdown: &CancellationToken,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
        P: Protocol,
    {
        let settings = self.settings;
        if let Some(greeting) = protocol.greeting()
            && let Err(end) = self.queue(greeting)
        {
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
            return self.say_goodbye(conn, protocol);
        }
        loop {
            let step = tokio::select! {
                biased;
                io = poll_fn(|cx| conn.poll_io(cx)) => match io {
                    Io::Written(Ok(())) => {
                        self.deadline = None;
                        Ok(())
                    }
                    Io::Written(Err(_)) => Err(End::ClientGone),
                    Io::Frame(frame) => {
                        last_seen = Instant::now();
                        match frame {
                            // Boxed: handling a message (a database lookup on join) needs far
                            // more state than waiting does, and only for a moment; inline, every
                            // idle session would carry it.
                            Some(Ok(message)) => Box::pin(self.on_frame(protocol, message)).await,
                            Some(Err(WsError::Capacity(_))) => Err(End::TooBig),
                            Some(Err(_)) | None => Err(End::ClientGone),
                        }
                    }
                },
                _ = async { self.deadline.as_mut().expect("armed").await }, if self.deadline.is_some() => {
                    log::info!("session closed: a write took over {:?}", settings.write_timeout);
                    Err(End::TooSlow)
                }
                event = next_out(&mut self.rendered, self.mailbox), if !conn.writing => match event {
                    Event::Kicked => Err(End::TooSlow),
                    Event::Item(Out::Text(text)) => self.write(conn, Message::text(text)),
                    Event::Item(Out::Message(Outbound::Frame(frame))) => {
                        self.write(conn, Message::text(frame.into_string()))
                    }
                    Event::Item(Out::Message(Outbound::Event(event))) => {
                        // A vector of its own, dropped after: events are rare, and an idle
                        // session keeps no capacity for them.
                        let mut frames = Replies::new();
                        let flow = protocol.render(&event, &mut frames);
                        self.rendered.extend(frames);
                        match flow {
                            Flow::Continue => Ok(()),
                            // Whatever the event rendered goes out before the close.
                            Flow::Close(code, reason) => {
                                self.flush_rendered(conn);
                                Err(End::Closed(code, reason))
                            }
                        }
                    }
                    Event::Item(Out::Message(Outbound::Close(code, reason))) => {
                        Err(End::Closed(code, reason))
                    }
                    Event::Item(Out::Message(Outbound::Shutdown)) => {
                        Err(self.say_goodbye(conn, protocol))
                    }
                    // The delivery holds the sender until this session unregisters.
                    Event::Closed => Err(End::ClientGone),
                },
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() >= settings.idle_timeout {
                        Err(End::Idle)
                    } else if conn.writing {
                        // The socket is busy; the write deadline watches it.
                        Ok(())
                    } else {
                        self.write(conn, Message::Ping(Default::default()))
                    }
                }
            };
            if let Err(end) = step {
                match end {
                    End::TooSlow => log::info!("session closed: too slow to take its messages"),
                    End::RateLimited | End::Closed(..) => self.flush_waiting(conn),
                    _ => {}
                }
                return end;
            }
        }
    }

    /// Hands what an event rendered to the socket before a close, as far as it takes it at once.
    fn flush_rendered<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) {
        while !conn.writing
            && let Some(text) = self.rendered.pop_front()
        {
            if conn.start_write(Message::text(text)).is_err() {
                return;
            }
        }
    }

    /// Before a close the client's rate or the protocol caused: hands the socket what already
    /// waits for it (rendered frames, then queued ones: answers to the messages it took, rate
    /// refusals), as far as it takes them at once, so they reach the client ahead of the close
    /// frame. A burst read in one go is answered before its last frame ends the session.
    fn flush_waiting<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) {
        self.flush_rendered(conn);
        while !conn.writing && self.rendered.is_empty() {
            let Ok(Outbound::Frame(frame)) = self.mailbox.rx.try_recv() else {
                return;
            };
            if conn
                .start_write(Message::text(frame.into_string()))
                .is_err()
            {
                return;
            }
        }
    }

    /// Starts writing a frame; arms the deadline if it could not be written at once.
    fn write<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        frame: Message,
    ) -> Result<(), End> {
        match conn.start_write(frame) {
            Ok(false) => Ok(()),
            Ok(true) => {
                let deadline = Instant::now() + self.settings.write_timeout;
                self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
                Ok(())
            }
            Err(_) => Err(End::ClientGone),
        }
    }

    /// Queues a direct answer behind what is waiting.
    fn queue(&self, text: String) -> Result<(), End> {
        self.mailbox
            .rx
            .push(Outbound::Frame(Frame::Owned(text)))
            .map_err(|_| End::TooSlow)
    }

    /// The protocol's goodbye (best effort, the socket may be busy), before the 1001 close.
    fn say_goodbye<S, P>(&mut self, conn: &mut Conn<S>, protocol: &P) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
        P: Protocol,
    {
        if let Some(bye) = protocol.goodbye()
            && !conn.writing
        {
            let _ = conn.start_write(Message::text(bye));
        }
        End::Shutdown
    }

    async fn on_frame<P: Protocol>(
        &mut self,
        protocol: &mut P,
        message: Message,
    ) -> Result<(), End> {
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            let rate = self.settings.messages;
            if self.bucket.take(rate, std::time::Instant::now()).is_err() {
                self.metrics.refused(Refusal::Rate);
                self.strikes += 1;
                if self.strikes > MAX_RATE_STRIKES {
                    log::info!("session closed: over its message rate");
                    return Err(End::RateLimited);
                }
                return match protocol.rate_limited() {
                    Some(reply) => self.queue(reply),
                    None => Ok(()),
                };
            }
            self.strikes = 0;
        }
        let mut replies = std::mem::take(&mut self.replies);
        let flow = match message {
            Message::Text(text) => protocol.on_text(text.as_str(), &mut replies).await,
            Message::Binary(_) => protocol.on_binary(&mut replies),
            Message::Close(_) => return Err(End::ClientClosed),
            // tungstenite answers pings itself; any frame counts as a sign of life.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
        };
        let mut queued = Ok(());
        for reply in replies.drain(..) {
            if queued.is_ok() {
                queued = self.queue(reply);
            }
        }
        self.replies = replies;
        queued?;
        match flow {
            Flow::Continue => Ok(()),
            Flow::Close(code, reason) => Err(End::Closed(code, reason)),
        }
    }
}
