//! Command-line interface: one subcommand per scenario, plus the helpers `scripts/bench.sh` uses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::broadcast::BroadcastArgs;
use crate::compare::Subject;
use crate::connections::ConnectionsArgs;
use crate::pairing::PairingArgs;
use crate::relay::RelayArgs;
use crate::target::{Service, Target};

/// Drives a running signalpost (or the baseline relay) over real sockets, on loopback only.
///
/// A server may be several nodes of one service (`--url` with a comma-separated list): member i of
/// every room connects to node i mod n, and the four steps of a pairing rotate over the nodes, so
/// rooms and pairings cross nodes.
///
/// Exit status: 0 when the run counted no error, lost, duplicated or misrouted message; 2 when it
/// completed but counted some; 1 when it could not run at all.
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
    /// Server base URL, or a comma-separated list of the base URLs of several nodes of one
    /// service (a cluster). Only loopback hosts (127.0.0.0/8, ::1, localhost) are accepted. With
    /// n nodes, in relay, broadcast and connections member i of every room connects to node
    /// i mod n (with two nodes, the two members of a pair are on different nodes); in pairing,
    /// pairing number k is created on node k, checked on k+1, accepted on k+2 and checked again on
    /// k+3 (mod n), so every pairing crosses nodes. One URL is a service of one node.
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub target: Service,
    /// Name of the server under test in the report.
    #[arg(long, default_value = "signalpost")]
    pub label: String,
    /// Also run the same scenario against this server (one URL or a list, as --url), first, and
    /// report both side by side with the ratios target / baseline.
    #[arg(long)]
    pub baseline_url: Option<Service>,
    /// Name of the baseline in the report.
    #[arg(long, default_value = "baseline")]
    pub baseline_label: String,
    /// Redis of the service at --url (redis://127.0.0.1:PORT, loopback only): its INFO counters
    /// are read before and after the measured traffic, and the report gives Redis commands and
    /// CPU per operation (pairing, message delivered, connection).
    #[arg(long, value_parser = Target::parse_redis)]
    pub redis: Option<Target>,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Common {
    /// The server under test.
    pub fn target(&self) -> Subject<'_> {
        Subject {
            service: &self.target,
            label: &self.label,
            redis: self.redis.as_ref(),
        }
    }

    /// The baseline, when one was given; its Redis (if any) is not metered.
    pub fn baseline(&self) -> Option<Subject<'_>> {
        self.baseline_url.as_ref().map(|service| Subject {
            service,
            label: &self.baseline_label,
            redis: None,
        })
    }
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
    fn every_scenario_takes_node_lists_and_labels() {
        for scenario in ["pairing", "relay", "broadcast", "connections"] {
            let mut args = vec![
                "loadgen",
                scenario,
                "--url",
                "http://127.0.0.1:1,http://127.0.0.1:2",
                "--label",
                "cluster (2 nodes)",
                "--baseline-url",
                "http://127.0.0.1:3",
                "--baseline-label",
                "single node",
                "--redis",
                "redis://127.0.0.1:4/0",
            ];
            if scenario == "connections" {
                args.extend(["--baseline-pid", "1"]);
            }
            let common = match Cli::try_parse_from(args).map(|cli| cli.command) {
                Ok(
                    Command::Pairing(PairingArgs { common, .. })
                    | Command::Relay(RelayArgs { common, .. })
                    | Command::Broadcast(BroadcastArgs { common, .. })
                    | Command::Connections(ConnectionsArgs { common, .. }),
                ) => common,
                other => panic!("{scenario}: {other:?}"),
            };
            assert_eq!(common.target().service.nodes().len(), 2);
            assert_eq!(common.target().label, "cluster (2 nodes)");
            let baseline = common.baseline().expect("baseline");
            assert_eq!(
                (baseline.service.nodes().len(), baseline.label),
                (1, "single node")
            );
            assert!(common.target().redis.is_some() && baseline.redis.is_none());
        }
    }

    #[test]
    fn the_baseline_is_labelled_baseline_unless_told() {
        let parsed =
            Cli::try_parse_from(["loadgen", "pairing", "--baseline-url", "http://127.0.0.1:3"]);
        let Ok(Cli {
            command: Command::Pairing(args),
        }) = parsed
        else {
            panic!("{parsed:?}");
        };
        assert_eq!(args.common.baseline().map(|b| b.label), Some("baseline"));
        assert_eq!(args.common.target().label, "signalpost");
    }

    #[test]
    fn a_node_list_with_one_remote_node_is_rejected() {
        let parsed = Cli::try_parse_from([
            "loadgen",
            "relay",
            "--url",
            "http://127.0.0.1:1,http://192.168.0.2:2",
        ]);
        assert!(parsed.is_err());
        let parsed =
            Cli::try_parse_from(["loadgen", "pairing", "--redis", "redis://10.0.0.1:6379"]);
        assert!(parsed.is_err());
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
