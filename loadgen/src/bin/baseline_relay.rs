//! `baseline-relay`: the least work a signaling relay can do, to measure signalpost against.
//!
//! Raw tokio-tungstenite with its default `WebSocketConfig`; rooms of two; each relayed message is
//! parsed, given `from` and `roomId`, and forwarded to the other member. No REST, no limits, no
//! heartbeats, no validation beyond what the load generator needs. Benchmark use only.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;

/// Serves the baseline relay on 127.0.0.1 (loopback only: it has no limits of any kind).
#[derive(Debug, Parser)]
#[command(name = "baseline-relay")]
struct Args {
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

type ClientId = String;

/// A room's members, at most two: their ids and outbound queues.
type Members = Vec<(ClientId, UnboundedSender<Message>)>;

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, Members>>,
    next_id: AtomicU64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    println!("baseline-relay listening on {}", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, rooms.clone()));
    }
}

async fn serve(stream: TcpStream, rooms: Arc<Rooms>) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });

    let n = rooms.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
    let _ = tx.send(text(json!({ "type": "connected", "clientId": id })));
    let mut room: Option<String> = None;
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(frame) = message else {
            continue;
        };
        let Ok(mut fields) = serde_json::from_str::<Map<String, Value>>(&frame) else {
            continue;
        };
        match fields.get("type").and_then(Value::as_str) {
            Some("join_room") => {
                if let Some(name) = fields.get("roomId").and_then(Value::as_str) {
                    join(&rooms, name, &id, &tx);
                    room = Some(name.to_owned());
                }
            }
            Some("webrtc_offer" | "webrtc_answer" | "ice_candidate") => {
                let Some(name) = &room else { continue };
                fields.insert("from".into(), Value::String(id.clone()));
                fields.insert("roomId".into(), Value::String(name.clone()));
                let relayed = text(Value::Object(fields));
                let rooms = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(peer) = rooms
                    .get(name)
                    .and_then(|m| m.iter().find(|(other, _)| *other != id))
                {
                    let _ = peer.1.send(relayed);
                }
            }
            _ => {}
        }
    }
    if let Some(name) = room {
        leave(&rooms, &name, &id);
    }
}

fn join(rooms: &Rooms, name: &str, id: &str, tx: &UnboundedSender<Message>) {
    let mut rooms = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
    let members = rooms.entry(name.to_owned()).or_default();
    if members.len() >= 2 {
        let _ = tx.send(text(
            json!({ "type": "room_full", "error": "Room is full (max 2 users)", "roomId": name }),
        ));
        return;
    }
    members.push((id.to_owned(), tx.clone()));
    let count = members.len();
    let _ = tx.send(text(json!({
        "type": "room_joined", "roomId": name, "userCount": count, "isInitiator": count == 1, "ready": count == 2
    })));
    if count == 2 {
        for (index, (_, member)) in members.iter().enumerate() {
            let _ = member.send(text(json!({
                "type": "room_ready", "roomId": name, "message": "Both users connected. Ready for WebRTC handshake.",
                "userCount": 2, "isInitiator": index == 0
            })));
        }
    }
}

fn leave(rooms: &Rooms, name: &str, id: &str) {
    let mut rooms = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(members) = rooms.get_mut(name) {
        members.retain(|(member, _)| member != id);
        for (_, peer) in members.iter() {
            let _ = peer.send(text(json!({ "type": "peer_disconnected", "message": "Other user disconnected", "peerId": id })));
        }
        if members.is_empty() {
            rooms.remove(name);
        }
    }
}

fn text(value: Value) -> Message {
    Message::text(value.to_string())
}
