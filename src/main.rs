//! The signalpost server binary: configuration, logging, serve until a signal.

use std::net::SocketAddr;

use clap::Parser;
use signalpost::{Config, Server};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_logging();
    let addr = SocketAddr::new(config.host, config.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let server = match Server::start(config, listener).await {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    signalpost::shutdown::signal().await;
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// `RUST_LOG` filters as usual; the default shows the server's own info lines.
fn init_logging() {
    let mut builder = pretty_env_logger::formatted_timed_builder();
    match std::env::var("RUST_LOG") {
        Ok(filter) => builder.parse_filters(&filter),
        Err(_) => builder.parse_filters("info"),
    };
    builder.init();
}
