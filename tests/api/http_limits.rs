//! Slow and idle HTTP clients (issue 11, item 3): the header timeout, the keep-alive timeout and
//! the cap on open connections, against raw TCP sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

/// A hang bound for "the server closes it": far above the timeouts the tests configure.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// Reads until the server closes the connection (EOF or reset); panics after [`CLOSE_BOUND`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(CLOSE_BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the connection");
    seen
}

/// A plain request on a fresh connection, answered (a hang bound, not a speed test).
async fn answered(app: &TestApp) -> u16 {
    let reply = tokio::time::timeout(CLOSE_BOUND, app.get("/health"))
        .await
        .expect("a normal request was not answered");
    reply.status
}

#[tokio::test]
async fn connections_trickling_headers_are_closed_and_do_not_block_others() {
    let app = spawn_app_with(|c| c.http_header_timeout_secs = 1).await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        slow.push(stream);
    }
    // One more header byte now and then: never a complete request.
    let tricklers: Vec<_> = slow
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return true,
                            Ok(_) => return false,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {
                            if stream.write_all(b"x").await.is_err() {
                                return true;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    assert_eq!(answered(&app).await, 200);
    for trickler in tricklers {
        let closed = tokio::time::timeout(CLOSE_BOUND, trickler)
            .await
            .expect("a trickling connection outlived the header timeout")
            .unwrap();
        assert!(closed, "a trickling connection got an answer");
    }
    assert_eq!(answered(&app).await, 200);
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|c| c.http_header_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    assert!(until_closed(&mut stream).await.is_empty());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_time() {
    let app = spawn_app_with(|c| {
        c.http_header_timeout_secs = 30;
        c.http_keepalive_secs = 1;
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /keep-alive HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("OK"), "{text}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
    let app = spawn_app_with(|c| c.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // The fourth is accepted by the kernel, then closed by the server without an answer.
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(until_closed(&mut extra).await.is_empty());
    // The connections it has are still served.
    let first = &mut held[0];
    first
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&until_closed(first).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(r#"signalpost_refusals_total{reason="connection_cap"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_websocket_holds_its_connection_place_until_it_closes() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let ws = app.connect_ws().await;
    let _other = app.connect_ws().await;
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    assert!(until_closed(&mut extra).await.is_empty());
    drop(ws);
    // The place comes back once the server has seen the socket close.
    let mut status = 0;
    for _ in 0..100 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let _ = stream
            .write_all(b"GET /keep-alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let text = String::from_utf8_lossy(&until_closed(&mut stream).await).into_owned();
        if text.starts_with("HTTP/1.1 200") {
            status = 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
}
