//! Server configuration: every option is an environment variable and the flag of the same name.
//!
//! `signalpost --help` prints the whole table with defaults. Unparseable values stop the server at
//! start with clap's message naming the option, before anything is bound or opened.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

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
    #[arg(long = "use-sqlite", env = "USE_SQLITE", default_value = "true", value_parser = parse_bool)]
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
    #[arg(long = "strict-rooms", env = "STRICT_ROOMS", default_value = "false", value_parser = parse_bool)]
    pub strict_rooms: bool,

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

    /// Seconds to wait at shutdown for WebSocket sessions to close.
    #[arg(
        long = "shutdown-grace-secs",
        env = "SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,
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
    fn use_sqlite_accepts_zero_and_false() {
        for v in ["0", "false", "FALSE", "off"] {
            let c = Config::try_parse_from(["signalpost", "--use-sqlite", v]).unwrap();
            assert!(!c.use_sqlite, "{v}");
        }
    }

    #[test]
    fn unparseable_values_are_errors() {
        assert!(Config::try_parse_from(["signalpost", "--port", "eighty"]).is_err());
        assert!(Config::try_parse_from(["signalpost", "--use-sqlite", "maybe"]).is_err());
        assert!(Config::try_parse_from(["signalpost", "--sweep-interval-secs", "0"]).is_err());
    }
}
