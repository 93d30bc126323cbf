//! The PrivyDrop dialect (issue 14): its conformance suite, driven by the real
//! socket.io-client from `tests/node/privydrop.test.mjs`, and how it starts.

use serde_json::json;
use signalpost::{Server, StartError};

use crate::helpers::{spawn_app, spawn_app_with, test_config};

#[test]
fn privydrop_clients_signal_through_the_dialect_listener() {
    crate::node_suites::run_node_suite("privydrop.test.mjs");
}

#[tokio::test]
async fn the_privydrop_listener_without_the_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir.path().join("test.db"), |c| {
        c.use_sqlite = false;
        c.privydrop.port = Some(0);
    });
    let listener = tokio::net::TcpListener::bind((config.host, 0))
        .await
        .unwrap();
    match Server::start(config, listener).await {
        Err(StartError::Config(message)) => assert!(message.contains("USE_SQLITE"), "{message}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("started without the database"),
    }
}

#[tokio::test]
async fn stats_show_privydrop_referrers_only_when_its_listener_is_on() {
    let off = spawn_app().await;
    let stats = off.get("/stats").await.json();
    assert!(stats.get("privydrop").is_none(), "{stats}");

    let on = spawn_app_with(|c| c.privydrop.port = Some(0)).await;
    let stats = on.get("/stats").await.json();
    assert_eq!(stats["privydrop"], json!({"referrers": {}}), "{stats}");
}
