//! Command-line interface: one subcommand per scenario, plus the helpers `scripts/bench.sh` uses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::broadcast::BroadcastArgs;
use crate::connections::ConnectionsArgs;
use crate::pairing::PairingArgs;
use crate::relay::RelayArgs;
use crate::target::Target;

/// Drives a running signalpost (or the baseline relay) over real sockets, on loopback only.
///
/// Exit status: 0 when the run counted no error, lost or misrouted message; 2 when it completed
/// but counted some; 1 when it could not run at all.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Full REST pairings (create, check, accept, check) as fast as the workers can go.
    Pairing(PairingArgs),
    /// Rooms of two WebSocket clients exchanging offers, answers and candidates.
    Relay(RelayArgs),
    /// Rooms of several WebSocket clients in which one member broadcasts and the others read.
    Broadcast(BroadcastArgs),
    /// Many idle WebSocket connections joined in pairs; measures server RSS per connection.
    Connections(ConnectionsArgs),
    /// Prints a markdown table from `--json` outputs, one JSON object per line.
    Report {
        /// Files to read; standard input when none.
        files: Vec<PathBuf>,
    },
    /// Prints a loopback TCP port that was free a moment ago (for scripts).
    FreePort,
}

/// Options every scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Server base URL. Only loopback hosts (127.0.0.0/8, ::1, localhost) are accepted.
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub target: Target,
    /// Name of the server under test in the report.
    #[arg(long, default_value = "signalpost")]
    pub label: String,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_urls_are_rejected_at_parse_time() {
        let parsed = Cli::try_parse_from(["loadgen", "pairing", "--url", "http://10.1.2.3:8080"]);
        assert!(parsed.is_err());
        let parsed = Cli::try_parse_from([
            "loadgen",
            "relay",
            "--baseline-url",
            "http://example.com:80",
        ]);
        assert!(parsed.is_err());
        let parsed = Cli::try_parse_from(["loadgen", "broadcast", "--url", "http://[::2]:80"]);
        assert!(parsed.is_err());
    }

    #[test]
    fn scenarios_parse_with_loopback_urls() {
        let parsed = Cli::try_parse_from([
            "loadgen",
            "relay",
            "--url",
            "http://127.0.0.1:1",
            "--baseline-url",
            "http://localhost:2",
            "--rooms",
            "3",
            "--rate",
            "0",
            "--duration",
            "1",
            "--size",
            "200",
            "--json",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn unbounded_runs_are_rejected() {
        for args in [
            &["loadgen", "pairing", "--duration", "0"][..],
            &["loadgen", "pairing", "--concurrency", "100000"],
            &["loadgen", "connections", "--count", "10000000"],
            &["loadgen", "relay", "--size", "100000"],
            &["loadgen", "broadcast", "--members", "2"],
            &["loadgen", "broadcast", "--members", "33"],
            &["loadgen", "broadcast", "--size", "100000"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
