//! Server configuration: every option is an environment variable and the flag of the same name.
//!
//! `signalpost --help` prints the whole table with defaults. Unparseable values stop the server at
//! start with clap's message naming the option, before anything is bound or opened.
//!
//! A leaf of the crate: the types options parse into ([`cidr::Cidr`], [`origins::AllowedOrigins`],
//! [`LogFormat`]) live here, and the modules that use them import them from here.

pub mod cidr;
pub mod origins;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The rules of the guess limiter: failures allowed per window, and the first lock-out.
#[derive(Debug, Clone, Copy)]
pub struct GuessPolicy {
    /// Failures allowed in the window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// The first lock-out; doubled per repeated offence up to 15 minutes.
    pub first_block: Duration,
}

/// Everything the server can be told at start.
#[derive(Debug, Clone, Parser)]
#[command(name = "signalpost", version, about)]
pub struct Config {
    /// TCP port to listen on (0 picks a free port and logs it).
    #[arg(long = "port", env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long = "host", env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Path of the SQLite database file; its directory is created if missing.
    #[arg(
        long = "sqlite-db-path",
        env = "SQLITE_DB_PATH",
        default_value = "./data/chat.db"
    )]
    pub sqlite_db_path: PathBuf,

    /// Enable the REST pairing API backed by SQLite (`0`/`false` turns it off: its routes answer 404).
    #[arg(long = "use-sqlite", env = "USE_SQLITE", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub use_sqlite: bool,

    /// Seconds between sweeps that delete expired pending codes.
    #[arg(long = "sweep-interval-secs", env = "SWEEP_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_interval_secs: u64,

    /// The furthest in the future a pending code may expire, in seconds.
    #[arg(long = "max-pending-ttl-secs", env = "MAX_PENDING_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending_ttl_secs: u64,

    /// Require every WebSocket join to name a paired room and a member `deviceId`.
    #[arg(long = "strict-rooms", env = "STRICT_ROOMS", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub strict_rooms: bool,

    /// Most members a room may have: the largest `capacity` a `join_room` or `POST /api/rooms`
    /// may ask for (every member's messages go to every other, so cost grows with its square).
    #[arg(long = "max-room-capacity", env = "MAX_ROOM_CAPACITY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub max_room_capacity: u32,

    /// Seconds a member that asked to be resumable (`join_room` with `resumable: true`) keeps
    /// its place after its connection drops; 0 turns resume off.
    #[arg(
        long = "resume-grace-secs",
        env = "RESUME_GRACE_SECS",
        default_value_t = 20
    )]
    pub resume_grace_secs: u64,

    /// Messages kept for a detached member at most; more ends its grace at once.
    #[arg(long = "resume-buffer-messages", env = "RESUME_BUFFER_MESSAGES", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub resume_buffer_messages: u64,

    /// Bytes of messages kept for a detached member at most; more ends its grace at once.
    #[arg(long = "resume-buffer-bytes", env = "RESUME_BUFFER_BYTES", default_value_t = 256 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub resume_buffer_bytes: u64,

    /// Seconds between WebSocket pings sent by the server.
    #[arg(long = "ws-ping-interval-secs", env = "WS_PING_INTERVAL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_ping_interval_secs: u64,

    /// Seconds without any frame from a client after which its connection is dropped.
    #[arg(long = "ws-idle-timeout-secs", env = "WS_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_idle_timeout_secs: u64,

    /// Messages that may wait for one slow client before it is disconnected (close 1008).
    #[arg(long = "ws-send-queue", env = "WS_SEND_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub ws_send_queue: u64,

    /// Bytes of messages that may wait for one slow client before it is disconnected (close
    /// 1008): with the message bound, what one stalled reader can pin in server memory.
    #[arg(long = "ws-send-queue-bytes", env = "WS_SEND_QUEUE_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(65_536..=1 << 30))]
    pub ws_send_queue_bytes: u64,

    /// Seconds one WebSocket write may take before the client is deemed not to read and is
    /// disconnected (close 1008). Heartbeats and idle checks keep running meanwhile.
    #[arg(long = "ws-write-timeout-secs", env = "WS_WRITE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_write_timeout_secs: u64,

    /// Seconds a connection may take to send complete request headers (from its first byte, or
    /// from being accepted) before it is closed: slow-header clients cannot hold sockets.
    #[arg(long = "http-header-timeout-secs", env = "HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_secs: u64,

    /// Seconds an idle keep-alive connection is kept between requests.
    #[arg(long = "http-keepalive-secs", env = "HTTP_KEEPALIVE_SECS", default_value_t = 75,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_keepalive_secs: u64,

    /// Concurrent TCP connections in all (HTTP and upgraded WebSockets, every listener); a new
    /// connection beyond it is closed at once.
    #[arg(long = "max-connections", env = "MAX_CONNECTIONS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Seconds to wait at shutdown for WebSocket sessions to close.
    #[arg(
        long = "shutdown-grace-secs",
        env = "SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,

    /// Bearer token for operator endpoints (`GET /rooms`, `GET /logs`, ...); unset, they answer 404.
    #[arg(long = "admin-token", env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Key that also opens `GET /logs` as `?key=...`, for dashboards that cannot send a header.
    /// A query string ends up in proxy logs, so prefer `ADMIN_TOKEN` where possible.
    #[arg(
        long = "log-access-key",
        env = "LOG_ACCESS_KEY",
        hide_env_values = true
    )]
    pub log_access_key: Option<Secret>,

    /// Bearer token required by `GET /metrics`; unset, metrics are open to whoever reaches the
    /// port (keep it off the public internet, or set this).
    #[arg(long = "metrics-token", env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// Log line format on stderr: `text` (human-readable) or `json` (one object per line, for
    /// log shippers). `RUST_LOG` filters either way.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// TURN shared secrets (coturn's `static-auth-secret`), comma-separated: the first signs new
    /// credentials, the others still verify while coturn has them too (rotation).
    #[arg(long = "turn-secret", env = "TURN_SECRET", hide_env_values = true,
          value_parser = parse_secret_list, default_value = "", hide_default_value = true)]
    pub turn_secret: SecretList,

    /// TURN urls handed to clients, comma-separated (`turn:turn.example.org:3478?transport=udp`).
    #[arg(long = "turn-urls", env = "TURN_URLS", value_parser = parse_string_list, default_value = "")]
    pub turn_urls: StringList,

    /// STUN urls handed to clients, comma-separated (`stun:turn.example.org:3478`).
    #[arg(long = "stun-urls", env = "STUN_URLS", value_parser = parse_string_list, default_value = "")]
    pub stun_urls: StringList,

    /// Lifetime of minted TURN credentials, in seconds.
    #[arg(long = "turn-ttl-secs", env = "TURN_TTL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub turn_ttl_secs: u64,

    /// Origins allowed to open WebSockets and read answers, comma-separated; `https://*.example.com`
    /// allows every subdomain. Unset: any origin.
    #[arg(long = "allowed-origins", env = "ALLOWED_ORIGINS", value_parser = parse_origins)]
    pub allowed_origins: Option<OriginList>,

    /// Redis URL (`redis://host:6379/0`, `rediss://` for TLS): set, the node runs in cluster
    /// mode, sharing pairings, rooms and limits with every node on the same Redis. Unset: one
    /// node with embedded SQLite.
    #[arg(long = "redis-url", env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// This node's name in logs and metrics (cluster mode). Default: random at start.
    #[arg(long = "node-id", env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Seconds without a heartbeat after which the other nodes take a node for dead: its
    /// members' peers are told, its members leave their rooms (cluster mode).
    #[arg(long = "node-ttl-secs", env = "NODE_TTL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub node_ttl_secs: u64,

    /// Port of the Oodaa messenger's listener (its raw WebSocket JSON protocol on every path,
    /// `GET /health` and `GET /`); unset: off.
    #[arg(long = "oodaa-port", env = "OODAA_PORT")]
    pub oodaa_port: Option<u16>,

    /// Largest `userInfo` an Oodaa `register` may carry, in bytes of its compact JSON. It is held
    /// for as long as the user is online and sent to everyone who lists the online users; the
    /// app sends `{name, timestamp}`, under 100 bytes, so 4 KiB leaves room for a richer profile.
    #[arg(long = "oodaa-max-userinfo-bytes", env = "OODAA_MAX_USERINFO_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(2..=65_536))]
    pub oodaa_max_userinfo_bytes: u32,

    /// Port of OctateCode's listener (its lean WebSocket protocol on every path and its HTTP
    /// API, on one port); unset: off.
    #[arg(long = "octatecode-port", env = "OCTATECODE_PORT")]
    pub octatecode_port: Option<u16>,

    /// Secret that signs OctateCode's room tokens (`POST /api/auth/token`); set, every `auth`
    /// must carry a token for its user and room. Unset: no tokens (the lean server's way).
    #[arg(
        long = "octatecode-auth-secret",
        env = "OCTATECODE_AUTH_SECRET",
        hide_env_values = true
    )]
    pub octatecode_auth_secret: Option<Secret>,

    /// Lifetime of OctateCode's room tokens, in seconds: the hour its README promises. A token
    /// is checked when a socket joins, so a shorter one only shortens the window to join.
    #[arg(long = "octatecode-token-ttl-secs", env = "OCTATECODE_TOKEN_TTL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub octatecode_token_ttl_secs: u64,

    /// Port of the DropSilk dialect (its WebSocket on every path, and its HTTP room API);
    /// unset: off. Needs the pairing store (`USE_SQLITE`, or `REDIS_URL`): its rooms are kept there.
    #[arg(long = "dropsilk-port", env = "DROPSILK_PORT")]
    pub dropsilk_port: Option<u16>,

    /// Seconds a DropSilk room lives after it was last read or written (every poll slides it):
    /// 30 minutes, the original's `ROOM_TTL_MINUTES`, long enough for a transfer to be set up
    /// while both sides poll every second.
    #[arg(long = "dropsilk-room-ttl-secs", env = "DROPSILK_ROOM_TTL_SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub dropsilk_room_ttl_secs: u64,

    /// A local port whose origins (`http://localhost:N`, `http://127.0.0.1:N`) the DropSilk
    /// dialect allows besides `ALLOWED_ORIGINS`, for the web app's dev server (the original's
    /// `--allow-local-port`). Only matters when `ALLOWED_ORIGINS` is set.
    #[arg(long = "dropsilk-allow-local-port", env = "DROPSILK_ALLOW_LOCAL_PORT")]
    pub dropsilk_allow_local_port: Option<u16>,

    /// Abuse limits.
    #[command(flatten)]
    pub limits: Limits,

    /// The PrivyDrop dialect's listener.
    #[command(flatten)]
    pub privydrop: PrivyDropOptions,
}

/// The PrivyDrop dialect (docs/dialects.md): Socket.IO signaling and PrivyDrop's room API on a
/// port of their own. The defaults are the original server's constants.
#[derive(Debug, Clone, clap::Args)]
pub struct PrivyDropOptions {
    /// Port of the PrivyDrop listener (0 picks a free port and logs it); unset, it is off.
    #[arg(id = "privydrop_port", long = "privydrop-port", env = "PRIVYDROP_PORT")]
    pub port: Option<u16>,

    /// PrivyDrop joins of a new room per client in the window (a rejoin of the socket's own
    /// room does not count): the original's 2, enough for the app's two sockets per browser.
    #[arg(id = "privydrop_join_limit", long = "privydrop-join-limit", env = "PRIVYDROP_JOIN_LIMIT", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub join_limit: u32,

    /// The window of the PrivyDrop join limit, in seconds (the original's 5).
    #[arg(id = "privydrop_join_window_secs", long = "privydrop-join-window-secs", env = "PRIVYDROP_JOIN_WINDOW_SECS",
          default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub join_window_secs: u64,

    /// Seconds a PrivyDrop room lives after its creation and after every join (the original's
    /// 24 hours: a link shared today still works tomorrow).
    #[arg(id = "privydrop_room_ttl_secs", long = "privydrop-room-ttl-secs", env = "PRIVYDROP_ROOM_TTL_SECS",
          default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub room_ttl_secs: u64,

    /// Seconds a PrivyDrop room lives once its last member is gone (the original's 15 minutes:
    /// long enough to reconnect after a network change).
    #[arg(id = "privydrop_empty_room_ttl_secs", long = "privydrop-empty-room-ttl-secs", env = "PRIVYDROP_EMPTY_ROOM_TTL_SECS",
          default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub empty_room_ttl_secs: u64,
}

/// Per-client and global limits. Every refusal they cause is a clear answer: 429 with
/// `Retry-After` over HTTP, `rate_limited` then close 1008 over WebSocket, 503 at the global cap.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Proxies whose `X-Forwarded-For` is believed, as comma-separated CIDRs (`10.0.0.0/8,::1/128`).
    #[arg(long = "trusted-proxies", env = "TRUSTED_PROXIES", value_parser = parse_cidrs, default_value = "")]
    pub trusted_proxies: CidrList,

    /// Failed join-code guesses (accept or check answering 404) allowed per client in the window.
    #[arg(long = "guess-limit", env = "GUESS_LIMIT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub guess_limit: u32,

    /// The window, in seconds, in which failed guesses are counted.
    #[arg(long = "guess-window-secs", env = "GUESS_WINDOW_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub guess_window_secs: u64,

    /// First lock-out after too many guesses, in seconds; it doubles with every repeated offence
    /// up to 15 minutes.
    #[arg(long = "guess-block-secs", env = "GUESS_BLOCK_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=900))]
    pub guess_block_secs: u64,

    /// REST requests per minute per client (sustained rate).
    #[arg(long = "rest-rate-per-min", env = "REST_RATE_PER_MIN", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rest_rate_per_min: u32,

    /// REST requests a client may make at once before the per-minute rate applies.
    #[arg(long = "rest-burst", env = "REST_BURST", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rest_burst: u32,

    /// WebSocket upgrades per minute per client.
    #[arg(long = "ws-upgrade-rate-per-min", env = "WS_UPGRADE_RATE_PER_MIN", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_upgrade_rate_per_min: u32,

    /// Concurrent WebSocket connections per client.
    #[arg(long = "ws-max-connections-per-client", env = "WS_MAX_CONNECTIONS_PER_CLIENT",
          default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_max_connections_per_client: u32,

    /// Concurrent WebSocket connections in all; upgrades beyond it get 503.
    #[arg(long = "ws-max-connections", env = "WS_MAX_CONNECTIONS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_max_connections: u32,

    /// Live join codes one client address may hold at once; creating more answers 429
    /// `too_many_pending`, so a few addresses cannot fill the code space. 0: no cap (only where
    /// every client is trusted, e.g. a benchmark from one address).
    #[arg(
        long = "max-pending-per-client",
        env = "MAX_PENDING_PER_CLIENT",
        default_value_t = 20
    )]
    pub max_pending_per_client: u32,

    /// WebSocket messages per second per connection (sustained rate).
    #[arg(long = "ws-msg-rate-per-sec", env = "WS_MSG_RATE_PER_SEC", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_msg_rate_per_sec: u32,

    /// WebSocket messages a connection may send at once before the per-second rate applies.
    #[arg(long = "ws-msg-burst", env = "WS_MSG_BURST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_msg_burst: u32,
}

/// A secret from the environment. `Debug` never shows it, and comparison takes the same time
/// whatever the input, so the token cannot be guessed byte by byte from response times.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Whether `candidate` is this secret, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        use subtle::ConstantTimeEq;
        // Length is not secret; the bytes are.
        self.0.len() == candidate.len() && bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }

    /// The secret itself, for the code that must use it (signing, never logging).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Err("a secret cannot be empty".into())
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

/// A list of secrets; `Debug` shows only how many.
#[derive(Clone, Default)]
pub struct SecretList(pub Vec<String>);

impl std::fmt::Debug for SecretList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretList([{} redacted])", self.0.len())
    }
}

/// A comma-separated list of strings.
pub type StringList = Vec<String>;

fn parse_secret_list(s: &str) -> Result<SecretList, String> {
    let secrets = parse_list(s);
    // The compose file hands the secrets to coturn on its command line, where whitespace splits
    // a secret in two: coturn would then refuse every credential signed with it.
    if secrets
        .iter()
        .any(|secret| secret.chars().any(char::is_whitespace))
    {
        return Err(
            "a TURN secret cannot contain whitespace (coturn would read it as two); \
                    generate one with `openssl rand -base64 32`"
                .into(),
        );
    }
    Ok(SecretList(secrets))
}

fn parse_string_list(s: &str) -> Result<StringList, String> {
    Ok(parse_list(s))
}

/// A comma-separated list: items trimmed, empty ones dropped.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A list of CIDR ranges.
pub type CidrList = Vec<cidr::Cidr>;

/// A list of allowed origins.
pub type OriginList = origins::AllowedOrigins;

fn parse_cidrs(s: &str) -> Result<CidrList, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|e| format!("`{p}`: {e}")))
        .collect()
}

fn parse_origins(s: &str) -> Result<OriginList, String> {
    s.parse()
}

impl Config {
    /// The configuration with every default, as `signalpost` with no flags and no environment.
    pub fn defaults() -> Self {
        Self::parse_from(["signalpost"])
    }

    /// Interval between sweeps of expired pending codes.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }

    /// Longest lifetime a pending code may be given.
    pub fn max_pending_ttl(&self) -> Duration {
        Duration::from_secs(self.max_pending_ttl_secs)
    }

    /// How often the server pings each WebSocket.
    pub fn ws_ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws_ping_interval_secs)
    }

    /// How long a silent WebSocket is kept.
    pub fn ws_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_idle_timeout_secs)
    }

    /// The guess limiter's policy.
    pub fn guess_policy(&self) -> GuessPolicy {
        GuessPolicy {
            limit: self.limits.guess_limit,
            window: Duration::from_secs(self.limits.guess_window_secs),
            first_block: Duration::from_secs(self.limits.guess_block_secs),
        }
    }

    /// How long failed guesses are remembered.
    pub fn guess_window(&self) -> Duration {
        Duration::from_secs(self.limits.guess_window_secs)
    }

    /// Deadline of one WebSocket write.
    pub fn ws_write_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_write_timeout_secs)
    }

    /// Header and keep-alive timeouts of HTTP connections.
    pub fn http_timeouts(&self) -> (Duration, Duration) {
        (
            Duration::from_secs(self.http_header_timeout_secs),
            Duration::from_secs(self.http_keepalive_secs),
        )
    }

    /// Bound on the shutdown wait for WebSocket sessions.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Accepts the spellings operators use for booleans in environment files.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true/false/1/0, got `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_table() {
        let c = Config::try_parse_from(["signalpost"]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.sqlite_db_path, PathBuf::from("./data/chat.db"));
        assert!(c.use_sqlite);
        assert_eq!(c.sweep_interval_secs, 60);
        assert_eq!(c.max_pending_ttl_secs, 86_400);
        assert!(!c.strict_rooms);
    }

    #[test]
    fn privydrop_is_off_by_default_with_the_original_constants() {
        let c = Config::try_parse_from(["signalpost"]).unwrap();
        let p = &c.privydrop;
        assert_eq!(p.port, None);
        assert_eq!((p.join_limit, p.join_window_secs), (2, 5));
        assert_eq!((p.room_ttl_secs, p.empty_room_ttl_secs), (86_400, 900));
        let c = Config::try_parse_from(["signalpost", "--privydrop-port", "3001"]).unwrap();
        assert_eq!((c.port, c.privydrop.port), (8080, Some(3001)));
    }

    #[test]
    fn use_sqlite_accepts_zero_and_false() {
        for v in ["0", "false", "FALSE", "off"] {
            let c = Config::try_parse_from(["signalpost", "--use-sqlite", v]).unwrap();
            assert!(!c.use_sqlite, "{v}");
        }
    }

    #[test]
    fn a_turn_secret_with_whitespace_is_refused_at_start() {
        let err = Config::try_parse_from(["signalpost", "--turn-secret", "two words"]).unwrap_err();
        assert!(err.to_string().contains("whitespace"), "{err}");
        let err =
            Config::try_parse_from(["signalpost", "--turn-secret", "ok,tab\there"]).unwrap_err();
        assert!(err.to_string().contains("whitespace"), "{err}");
        assert!(Config::try_parse_from(["signalpost", "--turn-secret", " a , b "]).is_ok());
    }

    #[test]
    fn unparseable_values_are_errors() {
        assert!(Config::try_parse_from(["signalpost", "--port", "eighty"]).is_err());
        assert!(Config::try_parse_from(["signalpost", "--use-sqlite", "maybe"]).is_err());
        assert!(Config::try_parse_from(["signalpost", "--sweep-interval-secs", "0"]).is_err());
    }
}
