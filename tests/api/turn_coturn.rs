//! coturn, started from the shipped `turn-server/turnserver.conf`, against the credentials
//! signalpost mints, with coturn's own client `turnutils_uclient` doing the allocations.
//!
//! Only what a loopback test needs is overridden on coturn's command line: listening and
//! relay address (127.0.0.1), ports (free ones), the pid file and user database (inside a
//! temp dir, away from root-only paths), `--no-tls --no-dtls` (no certificate here: the TLS
//! listener on 5349 is not covered) and the secrets. Success means data went through the
//! relay, which needs one more override: the shipped config denies loopback peers (see
//! `shipped_config_denies_relaying_to_loopback_peers`), so the other tests allow exactly
//! 127.0.0.1 with `--allow-loopback-peers --allowed-peer-ip=127.0.0.1`. coturn's TLS
//! listener (5349, `turns:`) is not exercised.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use signalpost::turn::{TurnSettings, sign};

use crate::external::{
    Daemon, STARTUP_DEADLINE, free_port, program, read_lossy, require_programs, run_client,
    wait_for_log, wait_for_tcp,
};

/// What coturn and its client need on the machine.
const PROGRAMS: [&str; 2] = ["turnserver", "turnutils_uclient"];

/// Relay ports per coturn instance. A `turnutils_uclient -y` run takes two allocations,
/// which outlive the client for a while, and coturn hands out even ports only: 10 ports
/// ran out (`508 Cannot create socket`), 100 leave ample room.
const RELAY_PORTS: u16 = 100;

/// Relay ranges are handed out from here up to [`RELAY_TOP`], below Linux's ephemeral
/// range (32768 and up by default), where [`free_port`] finds listening ports: a relay
/// socket of one instance must never take the listening port of another started in
/// parallel. Ports already busy in a range are skipped by coturn.
const RELAY_BASE: u16 = 20_000;
const RELAY_TOP: u16 = 32_000;

/// Next relay range for this process; starts at an offset derived from the pid so that
/// test processes running side by side (e.g. under nextest) mostly get disjoint ranges.
fn next_relay_range() -> (u16, u16) {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let slots = u32::from((RELAY_TOP - RELAY_BASE) / RELAY_PORTS);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id() % slots,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) % slots;
    let min = RELAY_BASE + u16::try_from(slot).expect("slot < slots") * RELAY_PORTS;
    (min, min + RELAY_PORTS - 1)
}

/// A coturn process on loopback, killed when dropped.
struct Coturn {
    port: u16,
    log: PathBuf,
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

/// Whether coturn may relay to 127.0.0.1, the only peer a loopback test has.
#[derive(Clone, Copy, PartialEq)]
enum LoopbackPeers {
    /// `--allow-loopback-peers` only: coturn's built-in loopback ban is lifted, so the
    /// shipped `denied-peer-ip` lines alone decide.
    ShippedRules,
    /// `--allow-loopback-peers --allowed-peer-ip=127.0.0.1`: exactly 127.0.0.1 allowed.
    Allowed,
}

impl Coturn {
    async fn start(secrets: &[&str], peers: LoopbackPeers) -> Coturn {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let log = dir.path().join("turnserver.log");
        let port = free_port();
        let (min_port, max_port) = next_relay_range();
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("turn-server/turnserver.conf");

        let mut command = std::process::Command::new(program("turnserver"));
        command
            .arg("-c")
            .arg(&conf)
            .arg("--listening-ip=127.0.0.1")
            .arg("--relay-ip=127.0.0.1")
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={min_port}"))
            .arg(format!("--max-port={max_port}"))
            .arg("--no-tls")
            .arg("--no-dtls")
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turnserver.pid").display()
            ))
            .arg(format!("--db={}", dir.path().join("turndb").display()));
        command.arg("--allow-loopback-peers");
        if peers == LoopbackPeers::Allowed {
            command.arg("--allowed-peer-ip=127.0.0.1");
        }
        for secret in secrets {
            command.arg(format!("--static-auth-secret={secret}"));
        }
        // The shipped config logs to stdout; keep it in a file for the assertions.
        let out = std::fs::File::create(&log).expect("create the coturn log");
        let err = out.try_clone().expect("clone the log handle");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut daemon = Daemon::new(command.spawn().expect("start turnserver"));

        let addr = ([127, 0, 0, 1], port).into();
        wait_for_tcp(addr, || daemon.is_running(), || read_lossy(&log)).await;
        // turnutils_uclient talks UDP: also wait for a STUN answer there.
        wait_for_stun(addr, || daemon.is_running(), || read_lossy(&log)).await;
        Coturn {
            port,
            log,
            _daemon: daemon,
            _dir: dir,
        }
    }

    /// Two `turnutils_uclient` clients allocate a relay each and send one message to each
    /// other through the relays (`-y`), over UDP, without RTCP allocations (`-c`).
    async fn relay(&self, username: &str, credential: &str) -> Uclient {
        let output = run_client(
            tokio::process::Command::new(program("turnutils_uclient"))
                .args(["-y", "-c", "-n", "1", "-u", username, "-w", credential])
                .args(["-p", &self.port.to_string(), "127.0.0.1"]),
        )
        .await;
        Uclient {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }

    async fn assert_relays(&self, username: &str, credential: &str) {
        let run = self.relay(username, credential).await;
        assert!(
            run.success && run.received_messages() > 0,
            "expected a relayed message for {username}; uclient said:\n{}\ncoturn said:\n{}",
            run.stdout,
            read_lossy(&self.log)
        );
    }

    /// The allocation fails, and coturn says it was the credentials of this very user
    /// (not, say, a dead server or a refused peer).
    async fn assert_refuses(&self, username: &str, credential: &str) {
        let run = self.relay(username, credential).await;
        assert!(
            !run.success && run.stdout.contains("Cannot complete Allocation"),
            "expected the allocation for {username} to be refused; uclient said:\n{}",
            run.stdout
        );
        let logged = format!("Cannot find credentials of user <{username}>");
        assert!(
            wait_for_log(&self.log, &logged).await,
            "coturn did not log {logged:?}:\n{}",
            read_lossy(&self.log)
        );
    }
}

/// Sends STUN Binding requests over UDP until one is answered (coturn answers them
/// without authentication), failing like [`wait_for_tcp`].
async fn wait_for_stun(
    addr: SocketAddr,
    mut still_running: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    // RFC 5389 header: Binding request, no attributes, magic cookie, transaction id.
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    request.extend_from_slice(b"signalpost00");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a UDP socket");
    let start = Instant::now();
    let mut answer = [0u8; 512];
    loop {
        socket
            .send_to(&request, addr)
            .await
            .expect("send a STUN request");
        let reply = tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut answer));
        if let Ok(Ok(n)) = reply.await {
            // A Binding success response carrying our transaction id.
            if n >= 20 && answer[..2] == [0x01, 0x01] && &answer[8..20] == b"signalpost00" {
                return;
            }
        }
        assert!(
            still_running(),
            "coturn exited before answering STUN:\n{}",
            describe()
        );
        assert!(
            start.elapsed() < STARTUP_DEADLINE,
            "no STUN answer from {addr} after {STARTUP_DEADLINE:?}:\n{}",
            describe()
        );
    }
}

/// What `turnutils_uclient` reported.
struct Uclient {
    success: bool,
    stdout: String,
}

impl Uclient {
    /// Messages that made it through the relays, from uclient's closing
    /// `start_mclient: tot_send_msgs=N, tot_recv_msgs=M` line.
    fn received_messages(&self) -> u64 {
        self.stdout
            .rsplit_once("tot_recv_msgs=")
            .map(|(_, rest)| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0)
    }
}

/// Username and credential as signalpost mints them for `label`, signed with the first of
/// `secrets`, valid from `now` for an hour.
/// Credentials as a client gets them: from a real server's `GET /api/turn-credentials`,
/// configured with `secrets` (comma-separated in `TURN_SECRET`, the first signs).
async fn server_minted(secrets: &[&str], device: &str) -> (String, String) {
    let secret = secrets.join(",");
    let app = crate::helpers::spawn_app_with(|c| {
        c.turn_secret =
            signalpost::config::SecretList(secrets.iter().map(|s| s.to_string()).collect());
        c.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
    })
    .await;
    let reply = app
        .get(&format!("/api/turn-credentials?deviceId={device}"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!reply.body.contains(&secret));
    let turn = reply.json()["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.get("credential").is_some())
        .cloned()
        .expect("a TURN entry");
    (
        turn["username"].as_str().unwrap().to_owned(),
        turn["credential"].as_str().unwrap().to_owned(),
    )
}

/// Credentials minted with the server's own signing code at any instant (for expired ones and
/// other secrets, which a running server would not hand out).
fn mint(secrets: &[&str], label: &str, now: SystemTime) -> (String, String) {
    let settings = TurnSettings {
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        stun_urls: vec![],
        ttl: Duration::from_secs(3600),
    };
    let servers = settings
        .ice_servers(Some(label), now)
        .expect("settings with a secret and a url mint credentials");
    let turn = servers
        .ice_servers
        .into_iter()
        .find(|server| server.credential.is_some())
        .expect("a TURN entry with credentials");
    (
        turn.username.expect("TURN entry has a username"),
        turn.credential.expect("TURN entry has a credential"),
    )
}

#[tokio::test]
async fn fresh_credentials_relay_through_coturn() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let coturn = Coturn::start(&["test-secret"], LoopbackPeers::Allowed).await;
    let (username, credential) = server_minted(&["test-secret"], "device-1").await;

    coturn.assert_relays(&username, &credential).await;
}

#[tokio::test]
async fn tampered_credential_is_refused() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let coturn = Coturn::start(&["test-secret"], LoopbackPeers::Allowed).await;
    let (username, credential) = mint(&["test-secret"], "device-1", SystemTime::now());
    // Same length and alphabet, one character different.
    let mut tampered = credential.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("base64 is ASCII");
    // A tampered username (a later expiry) with the original credential is refused too.
    let (later, _) = mint(
        &["test-secret"],
        "device-1",
        SystemTime::now() + Duration::from_secs(86_400),
    );

    coturn.assert_refuses(&username, &tampered).await;
    coturn.assert_refuses(&later, &credential).await;
    // Control: the untampered pair works on the same server.
    coturn.assert_relays(&username, &credential).await;
}

#[tokio::test]
async fn expired_credentials_are_refused() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let coturn = Coturn::start(&["test-secret"], LoopbackPeers::Allowed).await;
    // Minted two hours ago with a one-hour lifetime: expired an hour ago, correctly signed.
    let (username, credential) = mint(
        &["test-secret"],
        "device-1",
        SystemTime::now() - Duration::from_secs(7200),
    );

    coturn.assert_refuses(&username, &credential).await;
}

#[tokio::test]
async fn credentials_signed_by_another_secret_are_refused() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    let coturn = Coturn::start(&["test-secret"], LoopbackPeers::Allowed).await;
    let (username, credential) = mint(&["some-other-secret"], "device-1", SystemTime::now());
    assert_ne!(credential, sign("test-secret", &username));

    coturn.assert_refuses(&username, &credential).await;
}

#[tokio::test]
async fn credentials_signed_with_the_old_secret_work_while_both_are_configured() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    // Mid-rotation: coturn got one --static-auth-secret per secret, signalpost has
    // TURN_SECRET=new,old and signs with the new one.
    let coturn = Coturn::start(&["new-secret", "old-secret"], LoopbackPeers::Allowed).await;
    let minted_before_rotation = server_minted(&["old-secret"], "device-1").await;
    let minted_after_rotation = server_minted(&["new-secret", "old-secret"], "device-2").await;
    let minted_with_a_retired_secret = mint(&["retired-secret"], "device-3", SystemTime::now());

    coturn
        .assert_relays(&minted_before_rotation.0, &minted_before_rotation.1)
        .await;
    coturn
        .assert_relays(&minted_after_rotation.0, &minted_after_rotation.1)
        .await;
    coturn
        .assert_refuses(
            &minted_with_a_retired_secret.0,
            &minted_with_a_retired_secret.1,
        )
        .await;
}

#[tokio::test]
async fn shipped_config_denies_relaying_to_loopback_peers() {
    if !require_programs(&PROGRAMS) {
        return;
    }
    // coturn's built-in loopback ban is lifted, so the 403 below comes from the shipped
    // denied-peer-ip=127.0.0.0-127.255.255.255 (checked by hand: without that line the same
    // run relays).
    let coturn = Coturn::start(&["test-secret"], LoopbackPeers::ShippedRules).await;
    let (username, credential) = mint(&["test-secret"], "device-1", SystemTime::now());

    let run = coturn.relay(&username, &credential).await;

    assert!(!run.success, "relayed to a loopback peer:\n{}", run.stdout);
    assert!(
        run.stdout.contains("403 (Forbidden IP)")
            && !run.stdout.contains("Cannot complete Allocation"),
        "expected the allocation to succeed and the loopback peer to be refused:\n{}\ncoturn said:\n{}",
        run.stdout,
        read_lossy(&coturn.log)
    );
}
