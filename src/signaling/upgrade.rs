//! The WebSocket upgrade (RFC 6455 §4.2), done here rather than with `warp::ws()` so that the
//! connection's buffers are sized deliberately: tungstenite's defaults reserve 128 KiB per socket,
//! which at tens of thousands of idle connections is most of the server's memory.

use std::net::IpAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::Either;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::native::Native;
use super::{MAX_MESSAGE_BYTES, Signaling, session};
use crate::limits::slots::Slot;
use tokio_util::task::TaskTracker;

/// Bytes read from the socket at a time. Signaling frames are small; a larger frame takes a few
/// reads instead of a larger buffer held by every idle connection.
const READ_BUFFER_BYTES: usize = 512;

/// Bytes gathered before a write is flushed; every message is flushed on its own anyway.
const WRITE_BUFFER_BYTES: usize = 0;

/// Bytes that may wait in the socket's write buffer when the client reads slowly: one full-size
/// message and some. Beyond it the session's queue holds messages, and a full queue disconnects.
const MAX_WRITE_BUFFER_BYTES: usize = 2 * MAX_MESSAGE_BYTES;

/// The WebSocket configuration of every session of signalpost's own protocol.
pub fn websocket_config() -> WebSocketConfig {
    websocket_config_for(MAX_MESSAGE_BYTES)
}

/// The WebSocket configuration of a session whose frames may be up to `max_message` bytes (a
/// dialect's own cap); buffers are sized as for every session.
pub fn websocket_config_for(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES.max(2 * max_message))
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// An upgraded connection, as a session gets it. Boxed: a session's future passes it down a few
/// `async fn`s, and each keeps its own copy of an argument it was given (328 bytes here), so
/// inline it would cost every idle session about a kilobyte.
pub type Upgraded = Box<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>;

/// Whether the request asks for a WebSocket (`Upgrade: websocket`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    /// Missing `Connection: upgrade` or `Sec-WebSocket-Key`.
    BadHandshake,
    /// A `Sec-WebSocket-Version` other than 13.
    UnsupportedVersion,
    /// The connection cannot be upgraded (HTTP/2, or already taken).
    NotUpgradable,
}

/// Answers an upgrade request with 101 and starts a session of signalpost's own protocol once
/// the connection is handed over. `client` is the client's address (through trusted proxies),
/// for same-network discovery.
pub fn accept(
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    signaling: Arc<Signaling>,
    slot: Slot,
    client: IpAddr,
) -> Result<Response, UpgradeError> {
    let sessions = signaling.sessions().clone();
    accept_with(
        headers,
        on_upgrade,
        &sessions,
        websocket_config(),
        move |ws| async move {
            // The connection holds its slot until the session ends.
            let _slot = slot;
            run_native(ws, signaling, client).await;
        },
    )
}

/// Answers an upgrade request with 101 and, once the connection is handed over, runs `session`
/// on it as a task of `sessions` (so shutdown can wait for it). Any protocol's listener upgrades
/// through here.
pub fn accept_with<F, Fut>(
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    sessions: &TaskTracker,
    config: WebSocketConfig,
    session: F,
) -> Result<Response, UpgradeError>
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let (true, Some(key)) = (connection_upgrade, key) else {
        return Err(UpgradeError::BadHandshake);
    };
    if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return Err(UpgradeError::UnsupportedVersion);
    }
    let on_upgrade = on_upgrade.ok_or(UpgradeError::NotUpgradable)?;
    let accept_key = derive_accept_key(key.as_bytes());

    // Two stages whose states take turns in one place: written as one `async` block, the task
    // would keep the hand-over's upvars (the pending upgrade, the configuration) and the unboxed
    // stream beside the session for the session's whole life.
    let task = take_over(on_upgrade, config).then(|ws| match ws {
        Some(ws) => Either::Left(session(ws)),
        None => Either::Right(std::future::ready(())),
    });
    sessions.spawn(task);

    let mut response = Response::default();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(response)
}

/// The connection once hyper hands it over, as a WebSocket.
async fn take_over(on_upgrade: OnUpgrade, config: WebSocketConfig) -> Option<Upgraded> {
    match on_upgrade.await {
        Ok(upgraded) => {
            let io = TokioIo::new(upgraded);
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            Some(Box::new(ws))
        }
        Err(e) => {
            log::debug!("websocket upgrade failed: {e}");
            None
        }
    }
}

/// A session of signalpost's own protocol, from registration to unregistration.
async fn run_native<S>(ws: Box<WebSocketStream<S>>, signaling: Arc<Signaling>, client: IpAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let (session, mailbox) = signaling.delivery().register(signaling.settings().queue);
    let mut native = Native::new(signaling.clone(), session, client);
    let client = native.client();
    log::debug!("session {} connected", client.redacted());
    let end = session::run(
        ws,
        &mut native,
        &mailbox,
        signaling.settings(),
        signaling.shutdown_token(),
        signaling.metrics(),
    )
    .await;
    log::debug!("session {} ended: {end:?}", client.redacted());
    native.finish(end).await;
}
