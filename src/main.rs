//! The signalpost server binary: configuration, logging, serve until a signal.

use std::net::SocketAddr;

use clap::Parser;
use signalpost::{Config, Server};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    signalpost::telemetry::logging::init(config.log_format);
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
