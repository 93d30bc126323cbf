//! Operating the server (issue 6): health, stats, Prometheus metrics, the log ring, JSON logs,
//! and room stories.

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::SinkExt;
use serde_json::{Value, json};
use signalpost::Config;
use signalpost::ids::DeviceId;
use signalpost::telemetry::logging::{self, LogFormat};
use signalpost::telemetry::story::device_hash;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Reply, TestApp, WsClient, spawn_app, spawn_app_with, start_binary_until_listening,
};

/// Bound on waiting for something the server does asynchronously (a disconnect, a sweep).
const DEADLINE: Duration = Duration::from_secs(10);

const ADMIN: &str = "admin-secret-token";
const LOG_KEY: &str = "log-access-key";
const METRICS: &str = "metrics-secret-token";

async fn spawn_with_secrets() -> TestApp {
    spawn_app_with(|c| {
        c.admin_token = Some(ADMIN.parse().unwrap());
        c.log_access_key = Some(LOG_KEY.parse().unwrap());
    })
    .await
}

async fn get_with_bearer(app: &TestApp, path: &str, token: &str) -> Reply {
    app.send(app.request("GET", path).bearer_auth(token)).await
}

/// The value of one series (`name{labels}`) in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn metrics_text(app: &TestApp) -> String {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// Polls `/metrics` until `done` holds for it, returning that text.
async fn metrics_when(app: &TestApp, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = metrics_text(app).await;
        if done(&text) {
            return text;
        }
        assert!(started.elapsed() < DEADLINE, "never reached:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Joins `room` as `device`, reading the `room_joined` answer.
async fn join_as(client: &mut WsClient, room: &str, device: &str) {
    client
        .send_json(&json!({"type": "join_room", "roomId": room, "deviceId": device}))
        .await;
    client.expect("room_joined").await;
}

/// Sends `message` from `from` and returns the frame `to` received, as text.
async fn relay(from: &mut WsClient, to: &mut WsClient, message: &Value) -> String {
    from.send_json(message).await;
    match to.next_frame().await {
        Some(Message::Text(t)) => t.as_str().to_owned(),
        other => panic!("expected a relayed frame, got {other:?}"),
    }
}

/// The story of the room a client was in, from the log ring, once it is there.
async fn story_of(client_id: &str, read_ring: impl AsyncFn() -> String) -> Value {
    let started = Instant::now();
    loop {
        let ring = read_ring().await;
        let line = ring
            .lines()
            .rfind(|l| l.contains("signalpost::story") && l.contains(client_id));
        if let Some(line) = line {
            let json = line
                .split_once("room_story ")
                .unwrap_or_else(|| panic!("no room_story in {line}"))
                .1;
            return serde_json::from_str(json).unwrap();
        }
        assert!(started.elapsed() < DEADLINE, "no story for {client_id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_reports_the_database_version_and_uptime() {
    let app = spawn_app().await;
    let reply = app.get("/health").await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["db"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptimeSecs"].is_u64(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn health_is_degraded_while_another_process_holds_the_database() {
    let app = spawn_app().await;
    // An operator's `sqlite3` shell left in a write transaction: pairing cannot write.
    let operator = app.db();
    operator.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    let reply = app.get("/health").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["db"], "unavailable");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the probe waited {:?}",
        started.elapsed()
    );

    operator.execute_batch("ROLLBACK").unwrap();
    let started = Instant::now();
    loop {
        let reply = app.get("/health").await;
        if reply.status == 200 {
            assert_eq!(reply.json()["status"], "ok");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "never healthy again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_without_sqlite_reports_the_database_disabled_and_ok() {
    let app = spawn_app_with(|c| c.use_sqlite = false).await;
    let reply = app.get("/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["db"], "disabled");
    assert_eq!(reply.json()["status"], "ok");
}

#[tokio::test]
async fn keep_alive_answers_ok_in_plain_text() {
    let app = spawn_app().await;
    let reply = app.get("/keep-alive").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn stats_count_live_sessions_and_codes_without_naming_any() {
    let app = spawn_app().await;
    app.create_code("device-waiting").await;
    let room = app.pair("device-A", "device-B").await;
    let (mut a, mut b) = (app.connect_ws().await, app.connect_ws().await);
    join_as(&mut a, &room, "device-A").await;
    join_as(&mut b, &room, "device-B").await;
    a.expect("room_ready").await;
    relay(
        &mut a,
        &mut b,
        &json!({"type": "webrtc_offer", "sdp": "v=0"}),
    )
    .await;

    let reply = app.get("/stats").await;
    assert_eq!(reply.status, 200);
    let stats = reply.json();
    for key in [
        "uptimeSecs",
        "connections",
        "rooms",
        "roomsReady",
        "pendings",
        "pairings",
        "messagesRelayed",
        "bytesRelayed",
        "memory",
        "timestamp",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    assert_eq!(stats.as_object().unwrap().len(), 10, "{stats}");
    assert_eq!(
        (&stats["connections"], &stats["rooms"], &stats["roomsReady"]),
        (&json!(2), &json!(1), &json!(1))
    );
    // Both codes are live: the waiting one and the accepted one (kept until it expires).
    assert_eq!(stats["pendings"], 2);
    assert_eq!(
        stats["pairings"],
        json!({"created": 2, "accepted": 1, "expired": 0})
    );
    assert_eq!(stats["messagesRelayed"], 1);
    assert!(stats["bytesRelayed"].as_u64().unwrap() > 0);
    assert!(stats["memory"]["rssBytes"].as_u64().unwrap() > 0);
    chrono::DateTime::parse_from_rfc3339(stats["timestamp"].as_str().unwrap()).unwrap();
    for secret in ["device-", room.as_str(), a.client_id.as_str()] {
        assert!(!reply.body.contains(secret), "{secret} in {}", reply.body);
    }
}

#[tokio::test]
async fn metrics_are_open_without_a_token_and_closed_with_one() {
    let open = spawn_app().await;
    let reply = open.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(reply.body.ends_with("# EOF\n"));

    let closed = spawn_app_with(|c| c.metrics_token = Some(METRICS.parse().unwrap())).await;
    let reply = closed.get("/metrics").await;
    assert_eq!((reply.status, reply.error()), (401, "unauthorized".into()));
    let reply = get_with_bearer(&closed, "/metrics", "not-the-token").await;
    assert_eq!((reply.status, reply.error()), (401, "unauthorized".into()));
    let reply = get_with_bearer(&closed, "/metrics", ADMIN).await;
    assert_eq!(reply.status, 401);
    let reply = get_with_bearer(&closed, "/metrics", METRICS).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("signalpost_connections 0"));
}

#[tokio::test]
async fn metrics_after_a_scripted_session_count_each_step() {
    let app = spawn_app().await;
    let room = app.pair("device-A", "device-B").await;
    let miss = app
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": "000000", "client2": "device-C"}),
        )
        .await;
    assert_eq!(miss.status, 404);
    let (mut a, mut b) = (app.connect_ws().await, app.connect_ws().await);
    join_as(&mut a, &room, "device-A").await;
    join_as(&mut b, &room, "device-B").await;
    a.expect("room_ready").await;
    b.expect("room_ready").await;
    let offer = relay(
        &mut a,
        &mut b,
        &json!({"type": "webrtc_offer", "sdp": "v=0 offer"}),
    )
    .await;
    let mut candidate_bytes = 0;
    for i in 0..2 {
        let candidate =
            json!({"type": "ice_candidate", "candidate": {"candidate": format!("c{i}")}});
        candidate_bytes += relay(&mut a, &mut b, &candidate).await.len();
    }
    a.stream.close(None).await.unwrap();
    b.stream.close(None).await.unwrap();

    let text = metrics_when(&app, |t| {
        sample(t, "signalpost_connections") == 0.0
            && sample(t, "signalpost_room_lifetime_seconds_count") == 1.0
    })
    .await;
    let expect = [
        ("signalpost_pairings_total{result=\"created\"}", 1.0),
        ("signalpost_pairings_total{result=\"accepted\"}", 1.0),
        ("signalpost_pairings_total{result=\"not_found\"}", 1.0),
        ("signalpost_pairings_total{result=\"conflict\"}", 0.0),
        ("signalpost_pairings_total{result=\"expired\"}", 0.0),
        ("signalpost_pairing_wait_seconds_count", 1.0),
        (
            "signalpost_relayed_messages_total{type=\"webrtc_offer\"}",
            1.0,
        ),
        (
            "signalpost_relayed_messages_total{type=\"ice_candidate\"}",
            2.0,
        ),
        (
            "signalpost_relayed_messages_total{type=\"webrtc_answer\"}",
            0.0,
        ),
        (
            "signalpost_relayed_bytes_total{type=\"webrtc_offer\"}",
            offer.len() as f64,
        ),
        (
            "signalpost_relayed_bytes_total{type=\"ice_candidate\"}",
            candidate_bytes as f64,
        ),
        ("signalpost_ws_closes_total{code=\"client\"}", 2.0),
        ("signalpost_refusals_total{reason=\"room_full\"}", 0.0),
        ("signalpost_rooms", 0.0),
        ("signalpost_rooms_ready", 0.0),
        ("signalpost_pending_codes", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), value, "{series}");
    }
    assert!(sample(&text, "process_resident_memory_bytes") > 0.0);
    assert!(sample(&text, "process_open_fds") > 0.0);
    assert!(text.contains("signalpost_build_info{version=\""));
}

#[tokio::test]
async fn refusals_and_close_codes_are_counted_by_reason() {
    let app = spawn_app().await;
    let (_a, _b) = app.joined_pair("full").await;
    let mut c = app.connect_ws().await;
    c.join("full").await;
    c.expect("room_full").await;
    let oversize = format!(
        r#"{{"type":"webrtc_offer","sdp":"{}"}}"#,
        "x".repeat(signalpost::signaling::MAX_MESSAGE_BYTES)
    );
    let _ = c.stream.send(Message::text(oversize)).await;
    assert_eq!(c.expect_close().await, Some(1009));

    let text = metrics_when(&app, |t| sample(t, "signalpost_connections") == 2.0).await;
    assert_eq!(
        sample(&text, "signalpost_refusals_total{reason=\"room_full\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "signalpost_refusals_total{reason=\"oversize\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "signalpost_ws_closes_total{code=\"1009\"}"),
        1.0
    );
}

#[tokio::test]
async fn codes_that_expire_unaccepted_are_counted_as_expired() {
    let app = spawn_app_with(|c| c.sweep_interval_secs = 1).await;
    let dead = app.create_code("device-A").await;
    app.expire_code(&dead);
    let text = metrics_when(&app, |t| {
        sample(t, "signalpost_pairings_total{result=\"expired\"}") == 1.0
    })
    .await;
    assert!(sample(&text, "signalpost_sweeps_total{result=\"ok\"}") >= 1.0);
    assert_eq!(app.get("/stats").await.json()["pairings"]["expired"], 1);
}

#[tokio::test]
async fn logs_need_the_admin_token_or_the_access_key() {
    let app = spawn_with_secrets().await;
    app.create_code("device-A").await;

    for reply in [
        app.get("/logs").await,
        get_with_bearer(&app, "/logs", "wrong").await,
        get_with_bearer(&app, "/logs", LOG_KEY).await,
        app.get("/logs?key=wrong").await,
        app.get(&format!("/logs?key={ADMIN}")).await,
    ] {
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.json(), json!({"error": "unauthorized"}));
    }
    for reply in [
        get_with_bearer(&app, "/logs", ADMIN).await,
        app.get(&format!("/logs?key={LOG_KEY}")).await,
    ] {
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(reply.body.lines().count() <= logging::RING_LINES);
        assert!(
            reply.body.contains("pending code created"),
            "{}",
            reply.body
        );
        assert!(
            !reply.body.contains("device-A"),
            "a raw device id was logged"
        );
    }
}

#[tokio::test]
async fn logs_do_not_exist_when_no_token_is_configured() {
    let app = spawn_app().await;
    let reply = get_with_bearer(&app, "/logs?key=anything", "anything").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json(), json!({"error": "not_found"}));
}

#[tokio::test]
async fn the_access_key_alone_opens_the_logs() {
    let app = spawn_app_with(|c| c.log_access_key = Some(LOG_KEY.parse().unwrap())).await;
    assert_eq!(app.get(&format!("/logs?key={LOG_KEY}")).await.status, 200);
    assert_eq!(get_with_bearer(&app, "/logs", LOG_KEY).await.status, 401);
}

#[tokio::test]
async fn the_room_story_of_a_pairing_and_relay_session_tells_what_happened() {
    let app = spawn_with_secrets().await;
    let room = app.pair("device-A", "device-B").await;
    let (mut a, mut b) = (app.connect_ws().await, app.connect_ws().await);
    join_as(&mut a, &room, "device-A").await;
    join_as(&mut b, &room, "device-B").await;
    a.expect("room_ready").await;
    b.expect("room_ready").await;
    let offer = relay(
        &mut a,
        &mut b,
        &json!({"type": "webrtc_offer", "sdp": "v=0 o"}),
    )
    .await;
    let answer = relay(
        &mut b,
        &mut a,
        &json!({"type": "webrtc_answer", "sdp": "v=0 a"}),
    )
    .await;
    let mut candidates = 0;
    for i in 0..2 {
        let c = json!({"type": "ice_candidate", "candidate": {"candidate": format!("c{i}")}});
        candidates += relay(&mut a, &mut b, &c).await.len();
    }
    // device-B's connection drops, and it comes back as a new client.
    b.stream.close(None).await.unwrap();
    a.expect("peer_disconnected").await;
    let mut b2 = app.connect_ws().await;
    join_as(&mut b2, &room, "device-B").await;
    a.stream.close(None).await.unwrap();
    b2.stream.close(None).await.unwrap();

    let story = story_of(&a.client_id, async || {
        get_with_bearer(&app, "/logs", ADMIN).await.body
    })
    .await;
    assert_eq!(story["room"], format!("{}…", &room[..8]));
    assert_eq!(story["ended"], "disconnected");
    assert!(story["ageMs"].is_u64());
    assert_eq!(story["reconnects"], 1);
    let joins = story["joins"].as_array().unwrap();
    let who: Vec<&str> = joins
        .iter()
        .map(|j| j["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(
        who,
        [
            a.client_id.as_str(),
            b.client_id.as_str(),
            b2.client_id.as_str()
        ]
    );
    let hash = |d: &str| device_hash(&DeviceId::parse(d).unwrap());
    assert_eq!(joins[0]["device"], hash("device-A"));
    assert_eq!(joins[1]["device"], hash("device-B"));
    assert_eq!(joins[2]["device"], hash("device-B"));
    assert!(joins[1]["atMs"].as_u64() <= joins[2]["atMs"].as_u64());
    assert_eq!(
        story["messages"],
        json!({
            "webrtc_offer": {"count": 1, "bytes": offer.len()},
            "webrtc_answer": {"count": 1, "bytes": answer.len()},
            "ice_candidate": {"count": 2, "bytes": candidates},
        })
    );
    assert_eq!(story["totalMessages"], 4);
    assert_eq!(story["joinsNotListed"], 0);
    let line = story.to_string();
    for secret in ["device-A", "device-B", room.as_str(), "v=0"] {
        assert!(!line.contains(secret), "{secret} in the story: {line}");
    }
}

#[tokio::test]
async fn a_deleted_room_s_story_says_deleted() {
    let app = spawn_with_secrets().await;
    let room = app.pair("device-A", "device-B").await;
    let mut a = app.connect_ws().await;
    join_as(&mut a, &room, "device-A").await;
    let reply = app
        .send(app.request("DELETE", &format!("/api/rooms?roomid={room}")))
        .await;
    assert_eq!(reply.status, 200);
    a.expect("room_closed").await;
    let story = story_of(&a.client_id, async || {
        get_with_bearer(&app, "/logs", ADMIN).await.body
    })
    .await;
    assert_eq!(story["ended"], "deleted");
    assert_eq!(story["joins"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_tells_the_story_of_rooms_still_open() {
    let app = spawn_app().await;
    let (a, _b) = app.joined_pair("open-at-shutdown").await;
    app.shutdown().await;
    let story = story_of(&a.client_id, async || logging::recent()).await;
    assert_eq!(story["ended"], "shutdown");
    assert_eq!(story["room"], "open-at-…");
    assert_eq!(story["joins"].as_array().unwrap().len(), 2);
}

#[test]
fn log_format_json_makes_the_binary_write_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let (mut child, line) = start_binary_until_listening(&[
        ("LOG_FORMAT", "json"),
        ("SQLITE_DB_PATH", db.to_str().unwrap()),
    ]);
    child.kill().unwrap();
    child.wait().unwrap();
    let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["fields", "level", "message", "target", "timestamp"]);
    assert_eq!(value["level"], "INFO");
    assert_eq!(value["target"], "signalpost::server");
    assert!(
        value["message"]
            .as_str()
            .unwrap()
            .starts_with("signalpost listening on ")
    );
    chrono::DateTime::parse_from_rfc3339(value["timestamp"].as_str().unwrap()).unwrap();
}

#[test]
fn secrets_never_show_in_the_configuration_s_debug_output() {
    let config = Config::try_parse_from([
        "signalpost",
        "--admin-token",
        "admin-s3cret",
        "--log-access-key",
        "key-s3cret",
        "--metrics-token",
        "metrics-s3cret",
        "--log-format",
        "json",
    ])
    .unwrap();
    assert_eq!(config.log_format, LogFormat::Json);
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body_for_uptime_monitors() {
    let app = spawn_app().await;
    for path in ["/", "/health", "/keep-alive"] {
        let get = app.get(path).await;
        let head = app.send(app.request("HEAD", path)).await;
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(head.body, "", "{path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
    }
}
