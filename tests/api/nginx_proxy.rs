//! nginx, started from the shipped `nginx/signalpost.conf`, in front of signalpost over TLS.
//!
//! The test substitutes only the `listen` lines (loopback, free ports), the upstream
//! include and addresses (`nginx/upstream.conf`, or `nginx/upstream-cluster.conf` for
//! two cluster nodes on a private Redis) and the certificate paths, and makes the certificate with the shipped
//! `nginx/gen-self-signed.sh`. Clients verify that certificate rather than skipping the
//! check: `curl --cacert` for REST, and for `wss://` an `openssl s_client` child carrying
//! the TLS while tokio-tungstenite speaks WebSocket through its stdin/stdout (no TLS crate
//! needed in the test).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Join};
use tokio::process::{ChildStdin, ChildStdout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::external::{
    Daemon, free_port, program, read_lossy, require_programs, run_client, wait_for_tcp,
};
use clap::Parser as _;

use crate::helpers::{spawn_app, spawn_app_with};

/// nginx itself, curl for REST over TLS, openssl to make the certificate and carry `wss://`.
const PROGRAMS: [&str; 3] = ["nginx", "curl", "openssl"];

/// How long one expected WebSocket message may take before the test fails (a hang guard).
const RECV_DEADLINE: Duration = Duration::from_secs(10);

/// A single nginx process serving the shipped site, killed when dropped.
struct Nginx {
    https_port: u16,
    http_port: u16,
    cert: PathBuf,
    error_log: PathBuf,
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves the shipped site on loopback, proxying to `upstream` (the one-node setup).
    async fn start(upstream: SocketAddr) -> Nginx {
        Self::start_with("nginx/upstream.conf", &[("signalpost:8080", upstream)]).await
    }

    /// Serves the shipped site with the shipped upstream file `upstreams`, each of its
    /// `servers` (as named there) replaced by a real address.
    async fn start_with(upstreams: &str, servers: &[(&str, SocketAddr)]) -> Nginx {
        let dir = tempfile::tempdir().expect("create a temp dir");
        // Should workers ever be used (they drop to `nobody` when started as root), they
        // must reach the temp paths nginx creates in here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("open up the temp dir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let certs = dir.path().join("certs");
        let made = run_client(
            tokio::process::Command::new("sh")
                .arg(root.join("nginx/gen-self-signed.sh"))
                .arg("localhost")
                .arg(&certs),
        )
        .await;
        assert!(made.status.success(), "gen-self-signed.sh failed: {made:?}");

        let https_port = free_port();
        let http_port = free_port();
        let upstream_file = std::fs::read_to_string(root.join(upstreams))
            .unwrap_or_else(|e| panic!("read {upstreams}: {e}"));
        let addresses: Vec<_> = servers
            .iter()
            .map(|(name, addr)| (format!("server {name}"), format!("server {addr}")))
            .collect();
        let replacements: Vec<_> = addresses
            .iter()
            .map(|(from, to)| (from.as_str(), to.as_str(), 1))
            .collect();
        let upstream_path = dir.path().join("upstream.conf");
        std::fs::write(&upstream_path, substitute(&upstream_file, &replacements))
            .expect("write the upstream file");
        let site = std::fs::read_to_string(root.join("nginx/signalpost.conf"))
            .expect("read nginx/signalpost.conf");
        let certs_dir = format!("{}/", certs.display());
        let include = format!("include {};", upstream_path.display());
        let site = substitute(
            &site,
            &[
                ("include /etc/nginx/signalpost-upstream.conf;", &include, 1),
                ("listen 80;", &format!("listen 127.0.0.1:{http_port};"), 1),
                ("listen [::]:80;", "", 1),
                (
                    "listen 443 ssl;",
                    &format!("listen 127.0.0.1:{https_port} ssl;"),
                    1,
                ),
                ("listen [::]:443 ssl;", "", 1),
                ("/etc/nginx/certs/", &certs_dir, 2),
            ],
        );
        let site_path = dir.path().join("signalpost.conf");
        std::fs::write(&site_path, site).expect("write the site config");

        // The part of nginx.conf a distribution ships, with every path inside the temp dir.
        let d = dir.path().display();
        let main_conf = format!(
            // One process, no workers: killing it (the test's cleanup sends SIGKILL)
            // cannot leave orphaned workers holding the port.
            "master_process off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             include {site};\n\
             }}\n",
            site = site_path.display(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, main_conf).expect("write nginx.conf");

        let error_log = dir.path().join("error.log");
        let mut command = std::process::Command::new(program("nginx"));
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&error_log)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut daemon = Daemon::new(command.spawn().expect("start nginx"));
        let addr = ([127, 0, 0, 1], https_port).into();
        wait_for_tcp(addr, || daemon.is_running(), || read_lossy(&error_log)).await;
        Nginx {
            https_port,
            http_port,
            cert: certs.join("fullchain.pem"),
            error_log,
            _daemon: daemon,
            _dir: dir,
        }
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// A failed join-code guess (accept of a code that does not exist) sent from the
    /// loopback address `from`, so nginx sees that address as the client; `forged` is an
    /// `X-Forwarded-For` the client itself adds. Returns the status.
    async fn guess_from(&self, from: &str, forged: Option<&str>) -> u16 {
        let body = json!({"joinid": "000000", "client2": "guesser"}).to_string();
        let forged = forged.map(|ip| format!("X-Forwarded-For: {ip}"));
        let mut args = vec![
            "--interface",
            from,
            "--header",
            "Content-Type: application/json",
        ];
        if let Some(header) = &forged {
            args.extend(["--header", header]);
        }
        let url = self.https_url("/api/rooms/accept");
        args.extend(["--data", &body, &url]);
        self.curl(&args).await.0
    }

    /// One request with curl, verifying the certificate. Returns status and body.
    async fn curl(&self, args: &[&str]) -> (u16, String) {
        let output = run_client(
            tokio::process::Command::new(program("curl"))
                .args(["--silent", "--show-error", "--cacert"])
                .arg(&self.cert)
                .args(["--write-out", "\n%{http_code}"])
                .args(args),
        )
        .await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "curl {args:?} failed: {}\nnginx error log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            read_lossy(&self.error_log)
        );
        let (body, status) = stdout.rsplit_once('\n').expect("curl wrote the status");
        (status.parse().expect("numeric status"), body.to_owned())
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, body) = self
            .curl(&[
                "--header",
                "Content-Type: application/json",
                "--data",
                &body.to_string(),
                &self.https_url(path),
            ])
            .await;
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} answered {body:?}: {e}"))
        };
        (status, json)
    }

    /// A `wss://` session: `openssl s_client` does TLS (verifying the certificate) and
    /// tokio-tungstenite speaks WebSocket through its stdin and stdout.
    async fn connect_wss(&self, path: &str) -> Wss {
        let mut child = tokio::process::Command::new(program("openssl"))
            .args(["s_client", "-quiet", "-nocommands", "-verify_return_error"])
            .args(["-servername", "localhost", "-CAfile"])
            .arg(&self.cert)
            .args(["-connect", &format!("127.0.0.1:{}", self.https_port)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start openssl s_client");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let url = format!("wss://localhost:{}{path}", self.https_port);
        let (socket, _) = tokio::time::timeout(
            RECV_DEADLINE,
            tokio_tungstenite::client_async(url, tokio::io::join(stdout, stdin)),
        )
        .await
        .expect("WebSocket handshake through nginx timed out")
        .expect("WebSocket handshake through nginx");
        Wss {
            socket,
            _tls: child,
        }
    }
}

/// A WebSocket client over an `openssl s_client` TLS tunnel; dropping it kills the child.
struct Wss {
    socket: WebSocketStream<Join<ChildStdout, ChildStdin>>,
    _tls: tokio::process::Child,
}

impl Wss {
    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send over wss");
    }

    /// The next JSON message whose `type` is `kind`, skipping others (pings, notices).
    async fn recv(&mut self, kind: &str) -> Value {
        let wait = async {
            loop {
                let frame = self
                    .socket
                    .next()
                    .await
                    .unwrap_or_else(|| panic!("connection closed while waiting for {kind}"))
                    .expect("read from wss");
                if let Message::Text(text) = frame {
                    let message: Value = serde_json::from_str(&text).expect("JSON message");
                    if message["type"] == kind {
                        return message;
                    }
                }
            }
        };
        tokio::time::timeout(RECV_DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {kind} message within {RECV_DEADLINE:?}"))
    }
}

/// Replaces each `(from, to, count)` in `text`, failing unless `from` occurs exactly
/// `count` times: if the shipped file changes shape, the test must not silently run
/// nginx on something else.
fn substitute(text: &str, replacements: &[(&str, &str, usize)]) -> String {
    replacements
        .iter()
        .fold(text.to_owned(), |text, (from, to, count)| {
            assert_eq!(
                text.matches(from).count(),
                *count,
                "the shipped nginx file should contain {from:?} {count} time(s)"
            );
            text.replace(from, to)
        })
}

/// A stand-in upstream that answers every request with 200 "ok" and hands the request
/// head (request line and headers, as nginx sent them) to the test.
async fn recording_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the recording upstream");
    let addr = listener.local_addr().expect("bound address");
    let (heads, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, received)
}

/// The value of header `name` (case-insensitive) in a recorded request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn nginx_forwards_client_address_scheme_and_websocket_upgrade_headers() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let (upstream, mut heads) = recording_upstream().await;
    let nginx = Nginx::start(upstream).await;

    // A plain request whose client pretends to be forwarded for someone else.
    let (status, body) = nginx
        .curl(&[
            "--header",
            "X-Forwarded-For: 203.0.113.9",
            &nginx.https_url("/api/rooms?x=1"),
        ])
        .await;
    let plain = heads.recv().await.expect("upstream saw the request");
    // A WebSocket upgrade request (the stand-in answers 200, which is enough to see what
    // nginx passed on).
    nginx
        .curl(&[
            "--header",
            "Connection: Upgrade",
            "--header",
            "Upgrade: websocket",
            &nginx.https_url("/ws"),
        ])
        .await;
    let upgrade = heads.recv().await.expect("upstream saw the upgrade");

    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(
        plain.starts_with("GET /api/rooms?x=1 HTTP/1.1\r\n"),
        "{plain}"
    );
    // The forged entry stays on the left; the address nginx saw is appended right-most,
    // which is the one a trusting server must use.
    assert_eq!(
        header(&plain, "X-Forwarded-For"),
        Some("203.0.113.9, 127.0.0.1"),
        "{plain}"
    );
    assert_eq!(header(&plain, "X-Real-IP"), Some("127.0.0.1"), "{plain}");
    assert_eq!(
        header(&plain, "X-Forwarded-Proto"),
        Some("https"),
        "{plain}"
    );
    assert_eq!(header(&plain, "Host"), Some("127.0.0.1"), "{plain}");
    assert_eq!(header(&plain, "Connection"), Some("close"), "{plain}");
    assert_eq!(header(&plain, "Upgrade"), None, "{plain}");

    assert!(upgrade.starts_with("GET /ws HTTP/1.1\r\n"), "{upgrade}");
    assert_eq!(header(&upgrade, "Upgrade"), Some("websocket"), "{upgrade}");
    assert_eq!(header(&upgrade, "Connection"), Some("upgrade"), "{upgrade}");
}

#[tokio::test]
async fn plain_http_is_redirected_to_https() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let (upstream, mut heads) = recording_upstream().await;
    let nginx = Nginx::start(upstream).await;

    let url = format!("http://127.0.0.1:{}/api/rooms?x=1", nginx.http_port);
    let (status, response) = nginx.curl(&["--include", &url]).await;

    assert_eq!(status, 301, "{response}");
    assert_eq!(
        header(&response, "Location"),
        Some("https://127.0.0.1/api/rooms?x=1"),
        "{response}"
    );
    assert!(
        heads.try_recv().is_err(),
        "a plain HTTP request reached the upstream"
    );
}

#[tokio::test]
async fn rest_pairing_and_a_websocket_relay_work_through_nginx_over_tls() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let app = spawn_app().await;
    let nginx = Nginx::start(app.addr).await;

    // REST: the banner, then a full pairing.
    let (status, banner) = nginx.curl(&[&nginx.https_url("/")]).await;
    assert_eq!(status, 200);
    assert!(banner.contains("signalpost"), "{banner}");

    let (status, created) = nginx
        .post_json(
            "/api/rooms",
            json!({"client1": "devA", "expiresInSeconds": 60}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let joinid = created["joinid"].as_str().expect("joinid").to_owned();
    let (status, _) = nginx
        .post_json(
            "/api/rooms/check",
            json!({"joinid": joinid, "client1": "devA"}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, accepted) = nginx
        .post_json(
            "/api/rooms/accept",
            json!({"joinid": joinid, "client2": "devB"}),
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    let roomid = accepted["roomid"].as_str().expect("roomid").to_owned();
    let (status, checked) = nginx
        .post_json(
            "/api/rooms/check",
            json!({"joinid": joinid, "client1": "devA"}),
        )
        .await;
    assert_eq!(
        (status, checked["roomid"].as_str()),
        (200, Some(roomid.as_str()))
    );

    // WebSocket over TLS: both devices join the paired room, A's offer reaches B.
    let mut a = nginx.connect_wss("/ws").await;
    let mut b = nginx.connect_wss("/ws").await;
    let a_id = a.recv("connected").await["clientId"].clone();
    b.recv("connected").await;
    a.send(json!({"type": "join_room", "roomId": roomid, "deviceId": "devA"}))
        .await;
    a.recv("room_joined").await;
    b.send(json!({"type": "join_room", "roomId": roomid, "deviceId": "devB"}))
        .await;
    b.recv("room_joined").await;
    a.recv("room_ready").await;
    b.recv("room_ready").await;
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    a.send(json!({"type": "webrtc_offer", "sdp": sdp})).await;
    let offer = b.recv("webrtc_offer").await;

    assert_eq!(offer["from"], a_id);
    assert_eq!(offer["roomId"], roomid.as_str());
    assert_eq!(offer["sdp"], sdp);
}

/// What signalpost takes as the client address behind nginx, observed through the
/// per-client join-code guess limit (one failure allowed, then 429). Two clients on
/// different loopback addresses (127.0.0.2 and .3) go through nginx, which connects to
/// signalpost from 127.0.0.1.
async fn guess_statuses(trusted_proxies: Option<&str>) -> [u16; 4] {
    let mut flags = vec!["signalpost", "--guess-limit", "1"];
    if let Some(cidrs) = trusted_proxies {
        flags.extend(["--trusted-proxies", cidrs]);
    }
    let limits = signalpost::Config::try_parse_from(flags)
        .expect("valid flags")
        .limits;
    let app = spawn_app_with(|config| config.limits = limits).await;
    let nginx = Nginx::start(app.addr).await;

    [
        nginx.guess_from("127.0.0.2", None).await,
        nginx.guess_from("127.0.0.2", None).await,
        // The locked-out client pretends to be someone else.
        nginx.guess_from("127.0.0.2", Some("198.51.100.1")).await,
        nginx.guess_from("127.0.0.3", None).await,
    ]
}

#[tokio::test]
async fn behind_a_trusted_nginx_the_server_tells_clients_apart_by_forwarded_address() {
    if !require_programs(&PROGRAMS) {
        return;
    }

    let statuses = guess_statuses(Some("127.0.0.1/32")).await;

    // .2 is locked out after its first failure, forging X-Forwarded-For does not help (the
    // right-most entry is the one nginx saw), and .3 is a different client.
    assert_eq!(statuses, [404, 429, 429, 404]);
}

#[tokio::test]
async fn behind_an_untrusted_nginx_every_client_is_the_proxy() {
    if !require_programs(&PROGRAMS) {
        return;
    }

    let statuses = guess_statuses(None).await;

    // Without TRUSTED_PROXIES the server sees nginx's 127.0.0.1 for everyone: .3 shares
    // the lock-out .2 caused. (Hence TRUSTED_PROXIES in docker-compose.yml.)
    assert_eq!(statuses, [404, 429, 429, 429]);
}

#[tokio::test]
async fn the_cluster_upstreams_spread_requests_and_sockets_over_nodes_that_act_as_one() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let Some(redis) = crate::cluster::PrivateRedis::start() else {
        return;
    };
    let n = [
        crate::cluster::node(&redis, "n1", |_| {}).await,
        crate::cluster::node(&redis, "n2", |_| {}).await,
    ];
    let nginx = Nginx::start_with(
        "nginx/upstream-cluster.conf",
        &[("node1:8080", n[0].addr), ("node2:8080", n[1].addr)],
    )
    .await;

    // No stickiness: one client's requests reach both nodes.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (status, body) = nginx.curl(&[&nginx.https_url("/health")]).await;
        assert_eq!(status, 200, "{body}");
        let health: Value = serde_json::from_str(&body).expect("health JSON");
        seen.insert(
            health["node"]
                .as_str()
                .expect("node in cluster health")
                .to_owned(),
        );
    }
    assert_eq!(seen, ["n1".to_owned(), "n2".to_owned()].into());

    // And yet one service: each step of a pairing may land on either node.
    let (status, created) = nginx
        .post_json(
            "/api/rooms",
            json!({"client1": "devA", "expiresInSeconds": 60}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let joinid = created["joinid"].as_str().expect("joinid").to_owned();
    let mut roomid = String::new();
    for step in 0..4 {
        let (status, reply) = if step == 1 {
            nginx
                .post_json(
                    "/api/rooms/accept",
                    json!({"joinid": joinid, "client2": "devB"}),
                )
                .await
        } else {
            nginx
                .post_json(
                    "/api/rooms/check",
                    json!({"joinid": joinid, "client1": "devA"}),
                )
                .await
        };
        match step {
            0 => assert_eq!(status, 204),
            1 => {
                assert_eq!(status, 200, "{reply}");
                roomid = reply["roomid"].as_str().expect("roomid").to_owned();
            }
            _ => assert_eq!(
                (status, reply["roomid"].as_str()),
                (200, Some(roomid.as_str()))
            ),
        }
    }

    // Two sockets: least_conn puts the second on the node without one.
    let mut a = nginx.connect_wss("/ws").await;
    a.recv("connected").await;
    let mut b = nginx.connect_wss("/ws").await;
    b.recv("connected").await;
    for node in &n {
        let stats = node.get("/stats").await.json();
        assert_eq!(stats["connections"], 1, "one socket per node: {stats}");
    }
    a.send(json!({"type": "join_room", "roomId": roomid, "deviceId": "devA"}))
        .await;
    a.recv("room_joined").await;
    b.send(json!({"type": "join_room", "roomId": roomid, "deviceId": "devB"}))
        .await;
    b.recv("room_joined").await;
    a.recv("room_ready").await;
    b.send(json!({"type": "webrtc_answer", "sdp": "v=0 across"}))
        .await;
    assert_eq!(a.recv("webrtc_answer").await["sdp"], "v=0 across");
}
