//! `loadgen`: drives a running signalpost, or the baseline relay, over real loopback sockets.
//!
//! Layout:
//! - `cli`: the command line; `target`: loopback-only server addresses, and a service of one or
//!   more nodes with the rule of which node each client talks to; `compare`: the server under test
//!   and the baseline, measured side by side.
//! - `pairing`, `relay`, `broadcast`, `connections`: one module per scenario, each `measure`s and
//!   returns a report; `sequence` tells late and duplicated receipts apart for the readers.
//! - `redis`: a cluster's Redis counters (`INFO`), read around a run: commands and CPU per
//!   operation.
//! - `http` and `ws`: the thin clients the scenarios use; `payload`: realistic signaling messages
//!   that carry a room, a sequence number and a send time.
//! - `stats`: latency histograms; `report`: tables, JSON and the comparison with the baseline.

use std::io::Read as _;
use std::process::ExitCode;

use clap::Parser;

mod broadcast;
mod cli;
mod compare;
mod connections;
mod http;
mod pairing;
mod payload;
mod redis;
mod relay;
mod report;
mod sequence;
mod stats;
mod target;
mod ws;

use cli::{Cli, Command};
use report::Outcome;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Pairing(args) => pairing::run(&args).await,
        Command::Relay(args) => relay::run(&args).await,
        Command::Broadcast(args) => broadcast::run(&args).await,
        Command::Connections(args) => connections::run(&args).await,
        Command::Report { files } => print_markdown(&files),
        Command::FreePort => free_port(),
    };
    outcome.into()
}

fn print_markdown(files: &[std::path::PathBuf]) -> Outcome {
    let mut input = String::new();
    let read = if files.is_empty() {
        std::io::stdin().read_to_string(&mut input).map(drop)
    } else {
        files.iter().try_for_each(|f| {
            input += &std::fs::read_to_string(f)?;
            input.push('\n');
            Ok(())
        })
    };
    if let Err(e) = read {
        eprintln!("loadgen report: {e}");
        return Outcome::Failed;
    }
    print!("{}", report::markdown(&input));
    Outcome::Clean
}

fn free_port() -> Outcome {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => {
            println!("{}", addr.port());
            Outcome::Clean
        }
        Err(e) => {
            eprintln!("loadgen free-port: {e}");
            Outcome::Failed
        }
    }
}
