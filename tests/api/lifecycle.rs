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
        json!({"roomid": roomid, "client1": "devA", "client2": "devB",
               "capacity": 2, "members": ["devA", "devB"]})
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

/// Blocking POST of a JSON body; the status line's code and the body, or `None` when the
/// server is gone (killed mid-request).
fn try_post(addr: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((status, body))
}

/// What one worker did before the kill: codes it tried, codes created (201), and rooms it was
/// answered (200), each with the devices involved.
#[derive(Default)]
struct Ledger {
    attempted: Vec<(String, String, String)>,
    created: Vec<(String, String)>,
    accepted: Vec<(String, String, String)>,
}

/// A stored code: joinid, client1, client2, and its room's client1 and client2.
type StoredCode = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Pairs codes of its own (`w{w}-{i}`) until the server is gone.
fn pair_until_killed(addr: &str, w: usize, done: &std::sync::atomic::AtomicUsize) -> Ledger {
    use std::sync::atomic::Ordering;
    let mut ledger = Ledger::default();
    for i in 0.. {
        let (code, a, b) = (
            format!("w{w}-{i}"),
            format!("a{w}-{i}"),
            format!("b{w}-{i}"),
        );
        ledger.attempted.push((code.clone(), a.clone(), b.clone()));
        let create = format!(r#"{{"joinid":"{code}","client1":"{a}","expiresInSeconds":3600}}"#);
        let Some((status, body)) = try_post(addr, "/api/rooms", &create) else {
            break;
        };
        assert_eq!(status, 201, "{body}");
        ledger.created.push((code.clone(), a.clone()));
        let accept = format!(r#"{{"joinid":"{code}","client2":"{b}"}}"#);
        let Some((status, body)) = try_post(addr, "/api/rooms/accept", &accept) else {
            break;
        };
        assert_eq!(status, 200, "{body}");
        let room: serde_json::Value = serde_json::from_str(&body).unwrap();
        ledger
            .accepted
            .push((code, a, room["roomid"].as_str().unwrap().to_owned()));
        done.fetch_add(1, Ordering::Relaxed);
    }
    ledger
}

#[test]
fn pairings_acknowledged_before_a_sigkill_mid_flight_survive_it_and_nothing_else_appears() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let env = [
        ("SQLITE_DB_PATH", db.to_str().unwrap()),
        ("REST_BURST", "100000"),
        ("REST_RATE_PER_MIN", "100000"),
        ("MAX_PENDING_PER_CLIENT", "1000000"),
    ];
    let (mut child, addr) = start_binary(&env);
    let done = AtomicUsize::new(0);
    // Eight workers pair as fast as they can; the server is killed while they are mid-flight,
    // so some answers are on their way out, some commits in progress, some requests unread.
    let ledgers: Vec<Ledger> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (addr, done) = (&addr, &done);
                scope.spawn(move || pair_until_killed(addr, w, done))
            })
            .collect();
        while done.load(Ordering::Relaxed) < 400 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // No graceful shutdown: the process dies mid-flight, as in a crash or an OOM kill.
        child.kill().unwrap();
        child.wait().unwrap();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let (mut child, addr) = start_binary(&env);
    let check = |code: &str, client1: &str| {
        try_post(
            &addr,
            "/api/rooms/check",
            &format!(r#"{{"joinid":"{code}","client1":"{client1}"}}"#),
        )
        .expect("the restarted server answers")
    };
    for ledger in &ledgers {
        for (code, client1) in &ledger.created {
            let (status, body) = check(code, client1);
            assert!(
                status == 204 || status == 200,
                "created code {code} lost: {status} {body}"
            );
        }
        for (code, client1, roomid) in &ledger.accepted {
            let (status, body) = check(code, client1);
            assert_eq!(
                (status, body.contains(roomid.as_str())),
                (200, true),
                "{code}: {body}"
            );
            let reply = reqwest::blocking_get(&format!("http://{addr}/api/rooms?roomid={roomid}"));
            assert!(
                reply.starts_with("HTTP/1.1 200"),
                "room of {code} lost: {reply}"
            );
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing else: every stored code and room is one a worker asked for, with its devices.
    let attempted: std::collections::HashMap<&str, (&str, &str)> = ledgers
        .iter()
        .flat_map(|l| &l.attempted)
        .map(|(code, a, b)| (code.as_str(), (a.as_str(), b.as_str())))
        .collect();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut rows = conn
        .prepare("SELECT p.joinid, p.client1, p.client2, r.client1, r.client2 FROM pendings p LEFT JOIN rooms r ON r.roomid = p.roomid")
        .unwrap();
    let stored: Vec<StoredCode> = rows
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (code, client1, client2, room1, room2) in &stored {
        let (a, b) = attempted.get(code.as_str()).expect("a code nobody created");
        assert_eq!(client1, a);
        if let Some(client2) = client2 {
            assert_eq!(
                (client2.as_str(), room1.as_deref(), room2.as_deref()),
                (*b, Some(*a), Some(*b))
            );
        }
    }
    let rooms: i64 = conn
        .query_row("SELECT count(*) FROM rooms", [], |r| r.get(0))
        .unwrap();
    let accepted_codes = stored.iter().filter(|s| s.2.is_some()).count() as i64;
    assert_eq!(
        rooms, accepted_codes,
        "a room without the code that led to it"
    );
    let acknowledged: usize = ledgers.iter().map(|l| l.accepted.len()).sum();
    assert!(acknowledged >= 400);
}

#[test]
fn a_fresh_database_starts_without_an_error_line() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    for _ in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_signalpost"))
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("RUST_LOG", "info")
            .env("SQLITE_DB_PATH", dir.path().join("fresh.db"))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut until_listening = Vec::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            let done = line.contains("listening on ");
            until_listening.push(line);
            if done {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let start = until_listening.join("\n");
        assert!(start.contains("listening on "), "{start}");
        assert!(
            !start.contains("ERROR") && !start.contains("WARN"),
            "{start}"
        );
    }
}
