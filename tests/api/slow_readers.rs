//! Clients that stop reading (issue 11, item 2): they cannot pin memory or a slot, and nobody
//! else waits for them. Run against the real binary, so its memory can be read from /proc.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::start_binary;

/// Limits out of the way: the flood below is the point.
const RELAXED: [(&str, &str); 6] = [
    ("WS_MSG_RATE_PER_SEC", "1000000"),
    ("WS_MSG_BURST", "1000000"),
    ("WS_UPGRADE_RATE_PER_MIN", "1000000"),
    ("WS_MAX_CONNECTIONS_PER_CLIENT", "1000000"),
    ("REST_RATE_PER_MIN", "1000000"),
    ("REST_BURST", "1000000"),
];

/// A hang bound for the disconnection, far above the timeouts configured here.
const BOUND: Duration = Duration::from_secs(60);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn connect(addr: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "connected");
    ws
}

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(BOUND, ws.next()).await.expect("hang") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn join(ws: &mut Socket, room: &str) {
    ws.send(Message::text(
        json!({"type": "join_room", "roomId": room}).to_string(),
    ))
    .await
    .unwrap();
}

/// Floods `room` from a fresh member with 60 KiB offers (as fast as it can, or `limit` of them)
/// until the member that never reads is reported gone; returns the peak RSS of the server seen
/// meanwhile.
async fn flood_until_the_reader_is_dropped(
    addr: &str,
    pid: u32,
    room: &str,
    limit: Option<usize>,
) -> u64 {
    let mut stalled = connect(addr).await;
    join(&mut stalled, room).await;
    assert_eq!(next_json(&mut stalled).await["type"], "room_joined");
    // From here on `stalled` reads nothing.
    let sender = connect(addr).await;
    let (mut tx, mut rx) = sender.split();
    tx.send(Message::text(
        json!({"type": "join_room", "roomId": room}).to_string(),
    ))
    .await
    .unwrap();
    let sdp = "v".repeat(60 * 1024);
    let offer = json!({"type": "webrtc_offer", "sdp": sdp}).to_string();
    let flood = tokio::spawn(async move {
        for _ in 0..limit.unwrap_or(usize::MAX) {
            if tx.send(Message::text(offer.clone())).await.is_err() {
                return;
            }
        }
        // Stay connected: the sender must see the stalled member go.
        std::future::pending::<()>().await;
    });
    let mut peak = 0;
    let dropped = tokio::time::timeout(BOUND, async {
        loop {
            tokio::select! {
                frame = rx.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        let m: Value = serde_json::from_str(t.as_str()).unwrap();
                        if m["type"] == "peer_disconnected" {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the sender's connection ended: {other:?}"),
                },
                _ = tokio::time::sleep(Duration::from_millis(10)) => {
                    peak = peak.max(rss_bytes(pid));
                }
            }
        }
    })
    .await;
    flood.abort();
    assert!(
        dropped.is_ok(),
        "the member that never reads was not dropped"
    );
    drop(stalled);
    peak
}

/// Two members relay in another room while the flood runs.
async fn another_room_relays(addr: &str) {
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    join(&mut a, "bystanders").await;
    next_json(&mut a).await;
    join(&mut b, "bystanders").await;
    for _ in 0..2 {
        next_json(&mut b).await;
    }
    next_json(&mut a).await;
    for i in 0..50 {
        let offer = json!({"type": "webrtc_offer", "sdp": format!("offer {i}")});
        a.send(Message::text(offer.to_string())).await.unwrap();
        let got = next_json(&mut b).await;
        assert_eq!(got["sdp"], format!("offer {i}"));
    }
}

#[tokio::test]
async fn a_member_that_never_reads_is_dropped_without_pinning_memory() {
    let (mut child, addr) = start_binary(&RELAXED);
    let pid = child.id();
    let before = rss_bytes(pid);
    let (peak, ()) = tokio::join!(
        flood_until_the_reader_is_dropped(&addr, pid, "flooded", None),
        another_room_relays(&addr)
    );
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        peak < before + 8 * 1024 * 1024,
        "server RSS went from {before} to {peak} bytes"
    );
    assert!(
        metrics.contains(r#"signalpost_refusals_total{reason="queue_full"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"signalpost_ws_closes_total{code="1008"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_write_that_outlives_the_write_timeout_drops_the_member_even_with_room_in_its_queue() {
    // The queue could hold the whole flood: only the write deadline can end it.
    let mut env = RELAXED.to_vec();
    env.extend([
        ("WS_WRITE_TIMEOUT_SECS", "1"),
        ("WS_SEND_QUEUE", "65536"),
        ("WS_SEND_QUEUE_BYTES", "268435456"),
    ]);
    let (mut child, addr) = start_binary(&env);
    // 20 MiB: more than the kernel's socket buffers take, far less than the queue would.
    flood_until_the_reader_is_dropped(&addr, child.id(), "stalled-write", Some(340)).await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        metrics.contains(r#"signalpost_ws_closes_total{code="1008"} 1"#),
        "{metrics}"
    );
}
