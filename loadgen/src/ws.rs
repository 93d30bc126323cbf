//! WebSocket clients: connecting from spread source addresses, and the join handshakes that put
//! two clients in a ready room, or several in a full room of a larger capacity. Member i of a room
//! connects to the service's node i mod n ([`Service::member_node`]).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::target::{Service, Target};

/// A client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// How long connecting, greeting and joining may take before the client counts as failed. Generous,
/// because thousands of clients connect at once on a 2-core machine shared with the server.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Source addresses cycle over 127.0.0.1..=127.0.0.250: each one has its own ~28,000 ephemeral
/// ports, so tens of thousands of connections (and their TIME_WAIT leftovers) never run out.
const SOURCE_HOSTS: u32 = 250;

/// Why a client could not get into a ready room.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    #[error("server error: {0}")]
    Refused(String),
    #[error("connection closed during setup")]
    Closed,
    #[error("timed out during setup")]
    Timeout,
    #[error("unparseable message during setup")]
    Unparseable,
}

impl SetupError {
    /// A short stable name, for counting failures by kind.
    pub fn kind(&self) -> String {
        match self {
            SetupError::Connect(e) => format!("setup_connect_{:?}", e.kind()),
            SetupError::WebSocket(_) => "setup_websocket".to_owned(),
            SetupError::Refused(e) => format!("setup_refused: {e}"),
            SetupError::Closed => "setup_closed".to_owned(),
            SetupError::Timeout => "setup_timeout".to_owned(),
            SetupError::Unparseable => "setup_unparseable".to_owned(),
        }
    }
}

/// The fields of a server message the load generator looks at; the rest is skipped unparsed.
#[derive(Debug, Deserialize)]
pub struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(rename = "roomId", default, borrow)]
    pub room_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub from: Option<Cow<'a, str>>,
    #[serde(rename = "clientId", default, borrow)]
    pub client_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub error: Option<Cow<'a, str>>,
    #[serde(rename = "userCount", default)]
    pub user_count: Option<u64>,
}

/// Hands out source addresses round-robin.
#[derive(Default)]
pub struct SourceAddrs {
    next: AtomicU32,
}

impl SourceAddrs {
    /// The source to bind for the next connection to `target`; `None` for IPv6 (only `::1` exists).
    pub fn next_for(&self, target: &Target) -> Option<Ipv4Addr> {
        match target.addr.ip() {
            IpAddr::V4(_) => {
                let n = self.next.fetch_add(1, Ordering::Relaxed) % SOURCE_HOSTS;
                Some(Ipv4Addr::new(127, 0, 0, 1 + n as u8))
            }
            IpAddr::V6(_) => None,
        }
    }
}

/// Opens a WebSocket to the target's signaling endpoint from `source` (when given).
pub async fn connect(
    target: &Target,
    source: Option<Ipv4Addr>,
    config: WebSocketConfig,
) -> Result<Ws, SetupError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(target.ws_url(), stream, Some(config)).await?;
    Ok(ws)
}

/// A client in a ready room.
pub struct Member {
    pub ws: Ws,
    pub client_id: String,
}

/// Connects two clients, each to its node of `service`, and joins both to `room`, returning once
/// both saw `room_ready`.
pub async fn join_pair(
    service: &Service,
    sources: &SourceAddrs,
    room: &str,
    config: WebSocketConfig,
) -> Result<(Member, Member), SetupError> {
    let setup = async {
        let (first, second) = tokio::try_join!(
            greet_member(service, 0, sources, config),
            greet_member(service, 1, sources, config)
        )?;
        let (mut first, mut second) = (first, second);
        // The first joiner must be in before the second joins, so the initiator is deterministic.
        send_join(&mut first.ws, room).await?;
        wait_for(&mut first.ws, "room_joined").await?;
        send_join(&mut second.ws, room).await?;
        tokio::try_join!(
            wait_for(&mut first.ws, "room_ready"),
            wait_for(&mut second.ws, "room_ready")
        )?;
        Ok((first, second))
    };
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .map_err(|_| SetupError::Timeout)?
}

/// Connects `size` clients, each to its node of `service`, and joins them all to `room`, which the
/// first one creates with that capacity; returns them in join order once each has joined and every
/// earlier member has been told of the last one, so no join notice is still on its way when the
/// caller starts sending.
pub async fn join_group(
    service: &Service,
    sources: &SourceAddrs,
    room: &str,
    size: u32,
    config: WebSocketConfig,
) -> Result<Vec<Member>, SetupError> {
    let setup = async {
        let mut members = futures_util::future::try_join_all(
            (0..size as usize).map(|member| greet_member(service, member, sources, config)),
        )
        .await?;
        // One at a time, so the join order (and the first joiner, who fixes the capacity) is known.
        for (index, member) in members.iter_mut().enumerate() {
            let capacity = (index == 0).then_some(size);
            send_join_with(&mut member.ws, room, capacity).await?;
            wait_for(&mut member.ws, "room_joined").await?;
        }
        // Each earlier member gets a `peer_joined` per later joiner; the last says the room is full.
        let full = Some(u64::from(size));
        let earlier = members.len().saturating_sub(1);
        futures_util::future::try_join_all(members[..earlier].iter_mut().map(|member| {
            wait_until(&mut member.ws, |m| {
                m.kind == "peer_joined" && m.user_count == full
            })
        }))
        .await?;
        Ok(members)
    };
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .map_err(|_| SetupError::Timeout)?
}

/// Connects member `member` of a room to its node of `service` and reads the greeting.
async fn greet_member(
    service: &Service,
    member: usize,
    sources: &SourceAddrs,
    config: WebSocketConfig,
) -> Result<Member, SetupError> {
    let target = service.member_node(member);
    greet(target, sources.next_for(target), config).await
}

/// Connects and reads the `connected` greeting.
async fn greet(
    target: &Target,
    source: Option<Ipv4Addr>,
    config: WebSocketConfig,
) -> Result<Member, SetupError> {
    let mut ws = connect(target, source, config).await?;
    let client_id = wait_for(&mut ws, "connected").await?.unwrap_or_default();
    Ok(Member { ws, client_id })
}

async fn send_join(ws: &mut Ws, room: &str) -> Result<(), SetupError> {
    send_join_with(ws, room, None).await
}

/// A `join_room`, with a `capacity` when given.
async fn send_join_with(ws: &mut Ws, room: &str, capacity: Option<u32>) -> Result<(), SetupError> {
    let mut join = serde_json::json!({ "type": "join_room", "roomId": room });
    if let Some(capacity) = capacity {
        join["capacity"] = capacity.into();
    }
    ws.send(Message::text(join.to_string())).await?;
    Ok(())
}

/// Reads until a message of type `kind`, returning its `clientId` if any. Other informational
/// messages are skipped; `error` and `room_full` end the setup.
async fn wait_for(ws: &mut Ws, kind: &str) -> Result<Option<String>, SetupError> {
    wait_until(ws, |m| m.kind == kind).await
}

/// Reads until a message for which `wanted` holds, returning its `clientId` if any. Other
/// informational messages are skipped; `error` and `room_full` end the setup.
async fn wait_until(
    ws: &mut Ws,
    wanted: impl Fn(&ServerMessage) -> bool,
) -> Result<Option<String>, SetupError> {
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let parsed: ServerMessage =
            serde_json::from_str(&text).map_err(|_| SetupError::Unparseable)?;
        if wanted(&parsed) {
            return Ok(parsed.client_id.map(Cow::into_owned));
        }
        if parsed.kind == "error" || parsed.kind == "room_full" {
            let reason = parsed.error.unwrap_or(parsed.kind);
            return Err(SetupError::Refused(reason.into_owned()));
        }
    }
    Err(SetupError::Closed)
}
