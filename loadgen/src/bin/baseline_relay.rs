//! `baseline-relay`: the least work a signaling relay can do, to measure signalpost against.
//!
//! Raw tokio-tungstenite with its default `WebSocketConfig`; rooms of two, or of the `capacity` (2 to
//! 32) their first joiner asks for; each relayed message is parsed, given `from` and `roomId`, and
//! forwarded to every other member (with two members, to the other one). No REST, no limits, no
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

/// Largest room, as signalpost's default `MAX_ROOM_CAPACITY`.
const MAX_CAPACITY: u64 = 32;

/// A room's members, in join order (their ids and outbound queues), and how many it admits.
struct Room {
    capacity: usize,
    members: Vec<(ClientId, UnboundedSender<Message>)>,
}

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, Room>>,
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
                let capacity = match fields.get("capacity") {
                    None => Some(2),
                    Some(n) => n.as_u64().filter(|n| (2..=MAX_CAPACITY).contains(n)),
                };
                let Some(capacity) = capacity else {
                    let _ = tx.send(text(
                        json!({ "type": "error", "error": "Invalid capacity" }),
                    ));
                    continue;
                };
                if let Some(name) = fields.get("roomId").and_then(Value::as_str)
                    && join(&rooms, name, capacity as usize, &id, &tx)
                {
                    room = Some(name.to_owned());
                }
            }
            Some("webrtc_offer" | "webrtc_answer" | "ice_candidate") => {
                let Some(name) = &room else { continue };
                fields.insert("from".into(), Value::String(id.clone()));
                fields.insert("roomId".into(), Value::String(name.clone()));
                let relayed = text(Value::Object(fields));
                let rooms = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
                let members = rooms.get(name).map_or(&[][..], |r| &r.members);
                for (_, peer) in members.iter().filter(|(other, _)| *other != id) {
                    let _ = peer.send(relayed.clone());
                }
            }
            _ => {}
        }
    }
    if let Some(name) = room {
        leave(&rooms, &name, &id);
    }
}

/// Joins `id` to room `name`, which a first joiner creates with `capacity`; false when it is full.
fn join(
    rooms: &Rooms,
    name: &str,
    capacity: usize,
    id: &str,
    tx: &UnboundedSender<Message>,
) -> bool {
    let mut rooms = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
    let room = rooms.entry(name.to_owned()).or_insert_with(|| Room {
        capacity,
        members: Vec::new(),
    });
    if room.members.len() >= room.capacity {
        let error = format!("Room is full (max {} users)", room.capacity);
        let _ = tx.send(text(
            json!({ "type": "room_full", "error": error, "roomId": name }),
        ));
        return false;
    }
    room.members.push((id.to_owned(), tx.clone()));
    let count = room.members.len();
    let _ = tx.send(text(json!({
        "type": "room_joined", "roomId": name, "userCount": count, "isInitiator": count == 1, "ready": count >= 2
    })));
    if room.capacity == 2 && count == 2 {
        for (index, (_, member)) in room.members.iter().enumerate() {
            let _ = member.send(text(json!({
                "type": "room_ready", "roomId": name, "message": "Both users connected. Ready for WebRTC handshake.",
                "userCount": 2, "isInitiator": index == 0
            })));
        }
    } else if room.capacity > 2 {
        let joined = text(
            json!({ "type": "peer_joined", "roomId": name, "peerId": id, "userCount": count }),
        );
        for (_, member) in room.members.iter().filter(|(member, _)| member != id) {
            let _ = member.send(joined.clone());
        }
    }
    true
}

fn leave(rooms: &Rooms, name: &str, id: &str) {
    let mut rooms = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Room { members, .. }) = rooms.get_mut(name) {
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

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;

    fn client() -> (UnboundedSender<Message>, UnboundedReceiver<Message>) {
        mpsc::unbounded_channel()
    }

    /// The `type`s of the messages queued for a client, taken.
    fn kinds(rx: &mut UnboundedReceiver<Message>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| {
                let value: Value =
                    serde_json::from_str(m.to_text().unwrap_or("{}")).unwrap_or_default();
                value["type"].as_str().unwrap_or("?").to_owned()
            })
            .collect()
    }

    #[test]
    fn a_room_of_two_gets_ready_as_before() {
        let rooms = Rooms::default();
        let ((a, mut ra), (b, mut rb), (c, mut rc)) = (client(), client(), client());
        assert!(join(&rooms, "r", 2, "a", &a));
        assert!(join(&rooms, "r", 5, "b", &b));
        assert!(!join(&rooms, "r", 2, "c", &c));
        assert_eq!(kinds(&mut ra), ["room_joined", "room_ready"]);
        assert_eq!(kinds(&mut rb), ["room_joined", "room_ready"]);
        assert_eq!(kinds(&mut rc), ["room_full"]);
    }

    #[test]
    fn the_first_joiner_fixes_a_larger_capacity() {
        let rooms = Rooms::default();
        let mut queues: Vec<_> = (0..4).map(|_| client()).collect();
        for (index, (tx, _)) in queues.iter().enumerate() {
            let joined = join(
                &rooms,
                "r",
                if index == 0 { 3 } else { 2 },
                &index.to_string(),
                tx,
            );
            assert_eq!(joined, index < 3, "{index}");
        }
        let got: Vec<_> = queues.iter_mut().map(|(_, rx)| kinds(rx)).collect();
        assert_eq!(got[0], ["room_joined", "peer_joined", "peer_joined"]);
        assert_eq!(got[1], ["room_joined", "peer_joined"]);
        assert_eq!(got[2], ["room_joined"]);
        assert_eq!(got[3], ["room_full"]);
    }
}
