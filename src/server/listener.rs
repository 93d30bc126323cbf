//! Accepting TCP connections and serving HTTP/1.1 on them, with the limits hyper leaves to its
//! caller.
//!
//! warp 0.4 serves through hyper without a timer, which silently turns hyper's header-read
//! timeout off: a client that sends one header byte a second would hold its connection (and a
//! file descriptor) forever. This loop owns the connections instead:
//!
//! - every connection holds a [`ConnectionPermit`] of one [`ConnectionCap`] shared by all of a
//!   server's listeners, for as long as its socket is open, upgraded WebSockets included; beyond
//!   the cap a new connection is closed at once and counted;
//! - a connection that has not sent complete request headers within the header timeout of its
//!   first byte (or of being accepted) is closed;
//! - a keep-alive connection idle between requests for the keep-alive time is closed;
//! - on shutdown, connections finish their request in flight and close.
//!
//! The timeouts are kept by one small watchdog per connection, driven by a `Clock` that the
//! socket wrapper and the service wrapper update; an upgraded connection leaves the watchdog
//! (its WebSocket session has heartbeats of its own) and costs one atomic load per read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http::{Request, Response, StatusCode};

use crate::telemetry::Metrics;

/// Timeouts of one listener's HTTP connections.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    /// From a connection's accept (or the first byte of a later request) to complete headers.
    pub header: Duration,
    /// From the end of one request to the first byte of the next.
    pub keepalive: Duration,
}

/// Open TCP connections of a server, across all its listeners, up to a maximum.
#[derive(Debug)]
pub struct ConnectionCap {
    open: AtomicUsize,
    max: usize,
}

/// One open connection's place under the cap; given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionCap>);

impl ConnectionCap {
    /// A cap of `max` open connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes a place, unless `max` are open.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionPermit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionPermit(self.clone()))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client's socket address, in every request's extensions (warp's own is private to its
/// server loop, which this one replaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Where a connection is in its life, and since when: the two high bits are the phase, the rest
/// milliseconds since the connection was accepted.
struct Clock {
    start: Instant,
    state: AtomicU64,
    /// Wakes the watchdog when the phase changes, so it can move its deadline.
    changed: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request's headers.
    Headers,
    /// A request is being handled.
    Busy,
    /// Between requests.
    Idle,
    /// Handed over to a WebSocket session.
    Upgraded,
}

const PHASE_SHIFT: u32 = 62;
const SINCE_MASK: u64 = (1 << PHASE_SHIFT) - 1;

impl Clock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            state: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn encode(&self, phase: Phase) -> u64 {
        let since = self.start.elapsed().as_millis() as u64 & SINCE_MASK;
        let tag = match phase {
            Phase::Headers => 0,
            Phase::Busy => 1,
            Phase::Idle => 2,
            Phase::Upgraded => 3,
        };
        (tag << PHASE_SHIFT) | since
    }

    fn decode(&self, state: u64) -> (Phase, Instant) {
        let phase = match state >> PHASE_SHIFT {
            0 => Phase::Headers,
            1 => Phase::Busy,
            2 => Phase::Idle,
            _ => Phase::Upgraded,
        };
        (
            phase,
            self.start + Duration::from_millis(state & SINCE_MASK),
        )
    }

    fn set(&self, phase: Phase) {
        self.state.store(self.encode(phase), Ordering::Release);
        self.changed.notify_one();
    }

    fn get(&self) -> (u64, Phase, Instant) {
        let state = self.state.load(Ordering::Acquire);
        let (phase, since) = self.decode(state);
        (state, phase, since)
    }

    /// Bytes arrived: an idle connection starts a request (and its header timeout).
    fn bytes_read(&self) {
        let state = self.state.load(Ordering::Acquire);
        if state >> PHASE_SHIFT == 2 {
            let next = self.encode(Phase::Headers);
            // Lost only to a concurrent phase change, which is newer news.
            if self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.changed.notify_one();
            }
        }
    }
}

/// Resolves when the connection has outlived its current phase's timeout; never for an
/// upgraded connection.
async fn watchdog(clock: &Clock, timeouts: HttpTimeouts) {
    loop {
        let (state, phase, since) = clock.get();
        let deadline = match phase {
            Phase::Headers => since + timeouts.header,
            Phase::Idle => since + timeouts.keepalive,
            // Handlers bound their own work; look again later.
            Phase::Busy => Instant::now() + timeouts.header,
            Phase::Upgraded => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if phase != Phase::Busy && clock.state.load(Ordering::Acquire) == state {
                    return;
                }
            }
            // The phase changed: look again with its deadline.
            _ = clock.changed.notified() => {}
        }
    }
}

/// The socket, reporting reads to its connection's clock and holding the connection's permit.
struct Tracked {
    stream: TcpStream,
    /// Until the connection is upgraded: a WebSocket session keeps this socket for hours, and
    /// has no use for the HTTP deadlines.
    clock: Option<Arc<Clock>>,
    _permit: ConnectionPermit,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Some(clock) = &self.clock {
            if clock.get().1 == Phase::Upgraded {
                // The session reads now; the clock goes with the connection's HTTP task.
                self.clock = None;
            } else if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                clock.bytes_read();
            }
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
}

/// What one listener serves: an HTTP service that is cheap to clone per connection.
pub trait HttpService:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type Body: hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;
}

impl<S, B> HttpService for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Body = B;
}

/// Everything a listener needs besides its socket and service.
#[derive(Clone)]
pub struct ListenerContext {
    /// Connection timeouts.
    pub timeouts: HttpTimeouts,
    /// The server's connection cap.
    pub cap: Arc<ConnectionCap>,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server stops: stop accepting, finish requests in flight, close.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub connections: TaskTracker,
}

/// Accepts connections on `listener` until shutdown, serving `service` on each.
pub async fn serve<S: HttpService>(listener: TcpListener, service: S, cx: ListenerContext) {
    loop {
        let accepted = tokio::select! {
            _ = cx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Most likely out of file descriptors: wait for some to be given back rather
                // than spin.
                log::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = cx.cap.try_acquire() else {
            cx.metrics.connection_refused();
            log::debug!("connection refused: {} open", cx.cap.open());
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        cx.connections.spawn(serve_connection(
            stream,
            peer,
            permit,
            service.clone(),
            cx.timeouts,
            cx.shutdown.clone(),
        ));
    }
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn serve_connection<S: HttpService>(
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnectionPermit,
    service: S,
    timeouts: HttpTimeouts,
    shutdown: CancellationToken,
) {
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Tracked {
        stream,
        clock: Some(clock.clone()),
        _permit: permit,
    });
    let service_clock = clock.clone();
    let hyper_service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        service_clock.set(Phase::Busy);
        let clock = service_clock.clone();
        let mut service = service.clone();
        let answer = tower_service::Service::call(&mut service, request);
        async move {
            let response = answer.await?;
            clock.set(if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                Phase::Upgraded
            } else {
                Phase::Idle
            });
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // HTTP/1.1 only: WebSockets need it, and every client and proxy speaks it.
    builder.http1().keep_alive(true);
    let builder = builder.http1_only();
    let connection = builder.serve_connection_with_upgrades(io, hyper_service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_connection_end(result),
        _ = watchdog(&clock, timeouts) => {
            log::debug!("connection from {peer} closed: timed out ({:?})", clock.get().1);
        }
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            // The request in flight finishes; the server bounds the whole wait.
            log_connection_end(connection.await);
        }
    }
}

fn log_connection_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        log::debug!("connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_admits_up_to_its_maximum_and_takes_places_back() {
        let cap = ConnectionCap::new(2);
        let a = cap.try_acquire().unwrap();
        let _b = cap.try_acquire().unwrap();
        assert!(cap.try_acquire().is_none());
        drop(a);
        assert!(cap.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_after_keepalive_and_a_slow_request_after_header() {
        let timeouts = HttpTimeouts {
            header: Duration::from_secs(10),
            keepalive: Duration::from_secs(75),
        };
        let clock = Clock::new();
        let t0 = Instant::now();
        watchdog(&clock, timeouts).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(10));

        clock.set(Phase::Idle);
        let t1 = Instant::now();
        watchdog(&clock, timeouts).await;
        assert_eq!(Instant::now() - t1, Duration::from_secs(75));

        // A request ends early in a long header timeout: the keep-alive time runs from then.
        let clock = Arc::new(Clock::new());
        let watched = tokio::spawn({
            let clock = clock.clone();
            async move {
                let t = Instant::now();
                watchdog(&clock, timeouts).await;
                Instant::now() - t
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        clock.set(Phase::Busy);
        clock.set(Phase::Idle);
        assert_eq!(watched.await.unwrap(), Duration::from_secs(76));

        // A byte arrives on an idle connection: the header timeout runs from then.
        clock.set(Phase::Idle);
        clock.bytes_read();
        assert_eq!(clock.get().1, Phase::Headers);
        clock.bytes_read();
        assert_eq!(
            clock.get().1,
            Phase::Headers,
            "more bytes do not restart it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_never_times_out() {
        let clock = Clock::new();
        clock.set(Phase::Upgraded);
        let timeouts = HttpTimeouts {
            header: Duration::from_secs(1),
            keepalive: Duration::from_secs(1),
        };
        let waited = tokio::time::timeout(Duration::from_secs(3600), watchdog(&clock, timeouts));
        assert!(waited.await.is_err());
    }
}
