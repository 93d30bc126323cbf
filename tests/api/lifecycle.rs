//! Start, restart, sweep and stop: the server's life around the API.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{spawn_app_with, spawn_with_config, start_binary, test_config};

/// Upper bound for waiting on something the server does in the background (not a speed check).
const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn pairings_survive_a_restart_on_the_same_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/dir/chat.db");
    let app = spawn_with_config(test_config(&db, |_| {})).await;
    let roomid = app.pair("devA", "devB").await;
    let code = app.create_code("devC").await;
    app.shutdown().await;

    let app = spawn_with_config(test_config(&db, |_| {})).await;
    let reply = app.get(&format!("/api/rooms?roomid={roomid}")).await;
    assert_eq!(
        reply.json(),
        json!({"roomid": roomid, "client1": "devA", "client2": "devB"})
    );
    let check = app
        .post_json(
            "/api/rooms/check",
            &json!({"joinid": code, "client1": "devC"}),
        )
        .await;
    assert_eq!(check.status, 204);
    app.shutdown().await;
}

#[tokio::test]
async fn the_sweeper_deletes_expired_codes_and_keeps_live_ones() {
    let app = spawn_app_with(|c| c.sweep_interval_secs = 1).await;
    let live = app.create_code("devA").await;
    let dead = app.create_code("devB").await;
    app.expire_code(&dead);
    let started = Instant::now();
    loop {
        let left: Vec<String> = {
            let db = app.db();
            let mut stmt = db.prepare("SELECT joinid FROM pendings").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        if left == vec![live.clone()] {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "sweeper never ran: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_schema_has_the_documented_tables_and_indexes() {
    let app = spawn_app_with(|_| {}).await;
    let db = app.db();
    let names: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table','index') ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for expected in [
        "pendings",
        "rooms",
        "idx_pendings_client1",
        "idx_pendings_exp",
        "idx_rooms_client1",
        "idx_rooms_client2",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let journal: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn sigterm_stops_the_binary_with_exit_code_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let (mut child, addr) = start_binary(&[("SQLITE_DB_PATH", db.to_str().unwrap())]);
    let body = reqwest::blocking_get(&format!("http://{addr}/"));
    assert!(body.contains("active"), "{body}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < DEADLINE, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(db.exists());
}

#[test]
fn unparseable_configuration_stops_the_binary_with_a_message() {
    for (name, value) in [
        ("PORT", "eighty"),
        ("USE_SQLITE", "perhaps"),
        ("SWEEP_INTERVAL_SECS", "-1"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_signalpost"))
            .env(name, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(value), "{name}: {stderr}");
    }
}

#[test]
fn help_lists_every_option_with_its_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalpost"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "PORT",
        "HOST",
        "SQLITE_DB_PATH",
        "USE_SQLITE",
        "SWEEP_INTERVAL_SECS",
        "MAX_PENDING_TTL_SECS",
        "STRICT_ROOMS",
    ] {
        assert!(help.contains(name), "{name} missing from --help");
    }
    assert!(help.contains("8080") && help.contains("./data/chat.db") && help.contains("86400"));
}

/// Blocking GET for tests that drive the binary from a plain thread.
mod reqwest {
    pub fn blocking_get(url: &str) -> String {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

#[test]
fn use_sqlite_false_in_the_environment_turns_the_pairing_api_off() {
    for off in ["0", "false"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        let (mut child, addr) = start_binary(&[
            ("SQLITE_DB_PATH", db.to_str().unwrap()),
            ("USE_SQLITE", off),
        ]);
        let reply = reqwest::blocking_get(&format!("http://{addr}/api/rooms?roomid=x"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{off}: {reply}");
        assert!(!db.exists());
    }
}

/// Blocking POST of a JSON body; returns the status line's code and the body.
fn blocking_post(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn pairings_acknowledged_before_a_sigkill_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let env = [
        ("SQLITE_DB_PATH", db.to_str().unwrap()),
        ("REST_BURST", "100000"),
        ("REST_RATE_PER_MIN", "100000"),
    ];
    let (mut child, addr) = start_binary(&env);
    // Pair from several threads at once, so commits interleave as they do under load.
    let acknowledged: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let addr = addr.clone();
                scope.spawn(move || {
                    let mut rooms = Vec::new();
                    for i in 0..40 {
                        let (status, body) = blocking_post(
                            &addr,
                            "/api/rooms",
                            &format!(r#"{{"client1":"a{w}-{i}","expiresInSeconds":600}}"#),
                        );
                        assert_eq!(status, 201, "{body}");
                        let code: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let (status, body) = blocking_post(
                            &addr,
                            "/api/rooms/accept",
                            &format!(
                                r#"{{"joinid":"{}","client2":"b{w}-{i}"}}"#,
                                code["joinid"].as_str().unwrap()
                            ),
                        );
                        assert_eq!(status, 200, "{body}");
                        let room: serde_json::Value = serde_json::from_str(&body).unwrap();
                        rooms.push(room["roomid"].as_str().unwrap().to_owned());
                    }
                    rooms
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    // No graceful shutdown: the process dies mid-flight, as in a crash or an OOM kill.
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, addr) = start_binary(&env);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|roomid| {
            let reply = reqwest::blocking_get(&format!("http://{addr}/api/rooms?roomid={roomid}"));
            !reply.starts_with("HTTP/1.1 200")
        })
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 320);
    assert!(
        missing.is_empty(),
        "{} acknowledged pairings lost: {missing:?}",
        missing.len()
    );
}
