//! The test harness: a real server on `127.0.0.1:0` with its own database, and real HTTP and
//! WebSocket clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use signalpost::{Config, Server};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a message it expects before failing (a hang bound, not a speed test).
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a test listens to conclude that nothing arrives.
pub const SILENCE: Duration = Duration::from_millis(300);

/// Logs are quiet unless `TEST_LOG=1`, but always kept (info and up) in the ring behind
/// `GET /logs`, so tests can read room stories there.
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let verbose = std::env::var("TEST_LOG").is_ok_and(|v| v == "1");
        let filter = if verbose {
            "debug,hyper=info,hyper_util=info,warp=info"
        } else {
            "info,hyper=warn,hyper_util=warn,warp=warn"
        };
        let format = signalpost::telemetry::logging::LogFormat::Text;
        let _ = signalpost::telemetry::logging::try_init(format, filter, verbose);
    });
}

/// A running server and what it needs to be talked to.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database file.
    pub db_path: PathBuf,
    server: Option<Server>,
    http: reqwest::Client,
    _dir: Option<TempDir>,
}

/// A test configuration: loopback, a fresh temp database, and whatever `adjust` changes.
pub fn test_config(db_path: &Path, adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::defaults();
    config.host = "127.0.0.1".parse().unwrap();
    config.port = 0;
    config.sqlite_db_path = db_path.to_owned();
    // Tests exercise behaviour, not the abuse limits, unless they set small ones themselves:
    // every test client comes from 127.0.0.1.
    let l = &mut config.limits;
    l.rest_rate_per_min = 1_000_000;
    l.rest_burst = 1_000_000;
    l.guess_limit = 1_000_000;
    l.ws_upgrade_rate_per_min = 1_000_000;
    l.ws_max_connections_per_client = 1_000_000;
    l.ws_msg_rate_per_sec = 1_000_000;
    l.ws_msg_burst = 1_000_000;
    adjust(&mut config);
    config
}

/// Starts a server with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `adjust` has changed the test configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir.path().join("test.db"), adjust);
    let mut app = spawn_with_config(config).await;
    app._dir = Some(dir);
    app
}

/// Starts a server with exactly this configuration (the caller owns the database file).
pub async fn spawn_with_config(config: Config) -> TestApp {
    init_logging();
    let listener = tokio::net::TcpListener::bind((config.host, config.port))
        .await
        .unwrap();
    let server = Server::start(config.clone(), listener).await.unwrap();
    TestApp {
        addr: server.local_addr(),
        db_path: config.sqlite_db_path.clone(),
        server: Some(server),
        http: reqwest::Client::new(),
        _dir: None,
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `error` code of an error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request built from the client.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request failed");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// A request of any method.
    pub fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.http.request(method, self.url(path))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, body.to_string()).await
    }

    /// `POST path` with these exact body bytes.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    /// Creates a pending code for `client1` (server-generated), returning the code.
    pub async fn create_code(&self, client1: &str) -> String {
        let reply = self
            .post_json(
                "/api/rooms",
                &serde_json::json!({"client1": client1, "expiresInSeconds": 300}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()["joinid"].as_str().unwrap().to_owned()
    }

    /// Runs a whole pairing between two devices, returning the room id.
    pub async fn pair(&self, client1: &str, client2: &str) -> String {
        let code = self.create_code(client1).await;
        let reply = self
            .post_json(
                "/api/rooms/accept",
                &serde_json::json!({"joinid": code, "client2": client2}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["roomid"].as_str().unwrap().to_owned()
    }

    /// Opens a WebSocket on `/ws` and reads the `connected` greeting.
    pub async fn connect_ws(&self) -> WsClient {
        self.connect_ws_path("/ws").await
    }

    /// Opens a WebSocket on `path` and reads the `connected` greeting.
    pub async fn connect_ws_path(&self, path: &str) -> WsClient {
        let url = format!("ws://{}{}", self.addr, path);
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut client = WsClient {
            stream,
            client_id: String::new(),
        };
        let hello = client.recv().await;
        assert_eq!(hello["type"], "connected", "{hello}");
        assert_eq!(hello["server"], "signalpost");
        client.client_id = hello["clientId"].as_str().unwrap().to_owned();
        client
    }

    /// Where the dialect `name` listens (its port set to 0 in the test's configuration).
    pub fn dialect_addr(&self, name: &str) -> SocketAddr {
        let server = self.server.as_ref().expect("the server is running");
        server
            .dialect_addrs()
            .into_iter()
            .find_map(|(dialect, addr)| (dialect == name).then_some(addr))
            .unwrap_or_else(|| panic!("no {name} listener"))
    }

    /// Two clients joined to `room`, greetings and readiness read.
    pub async fn joined_pair(&self, room: &str) -> (WsClient, WsClient) {
        let mut a = self.connect_ws().await;
        let mut b = self.connect_ws().await;
        a.pair_with(&mut b, room).await;
        (a, b)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Makes a pending code expire a second ago (the same UTC day), straight in the database.
    pub fn expire_code(&self, joinid: &str) {
        let past = chrono::Utc::now().timestamp_millis() - 1000;
        let changed = self
            .db()
            .execute(
                "UPDATE pendings SET exp = ?1 WHERE joinid = ?2",
                rusqlite::params![past, joinid],
            )
            .unwrap();
        assert_eq!(changed, 1, "no pending code {joinid}");
    }

    /// Opens the database file directly, as an operator would.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db_path).unwrap()
    }
}

/// A WebSocket test client.
pub struct WsClient {
    /// The raw stream, for tests that need frames other than JSON text.
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The id the server gave this connection.
    pub client_id: String,
}

impl WsClient {
    /// Sends a JSON message.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.unwrap();
    }

    /// `join_room`.
    pub async fn join(&mut self, room: &str) {
        self.send_json(&serde_json::json!({"type": "join_room", "roomId": room}))
            .await;
    }

    /// Joins `room` first, then `other` joins it: both hear they joined, then that the room
    /// is ready.
    pub async fn pair_with(&mut self, other: &mut WsClient, room: &str) {
        self.join(room).await;
        self.expect("room_joined").await;
        other.join(room).await;
        other.expect("room_joined").await;
        self.expect("room_ready").await;
        other.expect("room_ready").await;
    }

    /// The next frame, whatever it is (skipping pings), or `None` once the connection is closed.
    pub async fn next_frame(&mut self) -> Option<Message> {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.stream.next())
                .await
                .expect("timed out waiting for a frame");
            match frame {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next JSON text message (panics on anything else).
    pub async fn recv(&mut self) -> Value {
        match self.next_frame().await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message, which must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let m = self.recv().await;
        assert_eq!(m["type"], kind, "unexpected message: {m}");
        m
    }

    /// The next message must be an error with this text.
    pub async fn expect_error(&mut self, text: &str) {
        let m = self.expect("error").await;
        assert_eq!(m["error"], text, "{m}");
    }

    /// Nothing arrives for a short while.
    pub async fn expect_silence(&mut self) {
        match tokio::time::timeout(SILENCE, self.stream.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Ping(_)))) => {}
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }

    /// Reads until the server's close frame; returns its code (None if the socket just ended).
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next_frame().await {
                Some(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Some(_) => continue,
                None => return None,
            }
        }
    }
}

/// Starts the real binary (loopback, a free port, `RUST_LOG=info`, then `env`) and reads its
/// log until the line saying where it listens; returns the process and that line. The rest of
/// the log is drained in the background so the server never blocks on a full pipe.
pub fn start_binary_until_listening(env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalpost"))
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let line = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if line.contains("listening on ") {
            break line;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, line)
}

/// [`start_binary_until_listening`] with the default text log, returning the address it logged.
pub fn start_binary(env: &[(&str, &str)]) -> (std::process::Child, String) {
    let (child, line) = start_binary_until_listening(env);
    let addr = line.split("listening on ").nth(1).unwrap_or_default();
    (child, addr.trim().to_owned())
}

/// Where a test server keeps its pairings, rooms and limits: the same cases run against each,
/// so "a cluster node answers as a single node does" is checked, not hoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite, one node, limits in the process.
    Sqlite,
    /// A private `redis-server` (cluster mode, one node): store, rooms and limits in Redis.
    Redis,
}

impl Backend {
    /// Every backend this machine can run (Redis is skipped, with a printed reason, without
    /// `redis-server`, and fails the test when `SIGNALPOST_REQUIRE_ALL=1`).
    pub fn available() -> Vec<Backend> {
        let mut backends = vec![Backend::Sqlite];
        if crate::external::require_program("redis-server") {
            backends.push(Backend::Redis);
        }
        backends
    }
}

/// A test server on a backend, and the private Redis it uses (stopped when this is dropped).
pub struct BackendApp {
    app: TestApp,
    _redis: Option<crate::cluster::PrivateRedis>,
}

impl std::ops::Deref for BackendApp {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// Starts a server on `backend` after `adjust` has changed the test configuration.
pub async fn spawn_on(backend: Backend, adjust: impl FnOnce(&mut Config)) -> BackendApp {
    // Test output is shown for failures only: this says which backend failed.
    eprintln!("backend: {backend:?}");
    match backend {
        Backend::Sqlite => BackendApp {
            app: spawn_app_with(adjust).await,
            _redis: None,
        },
        Backend::Redis => {
            let redis = crate::cluster::PrivateRedis::start().expect("redis-server is installed");
            let app = crate::cluster::node(&redis, "n0", adjust).await;
            BackendApp {
                app,
                _redis: Some(redis),
            }
        }
    }
}
