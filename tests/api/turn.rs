//! `GET /api/turn-credentials`: short-lived TURN credentials (issue 4).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use signalpost::config::SecretList;

use crate::helpers::{spawn_app, spawn_app_with};

const TURN_URLS: [&str; 3] = [
    "turn:turn.example.org:3478?transport=udp",
    "turn:turn.example.org:3478?transport=tcp",
    "turns:turn.example.org:5349?transport=tcp",
];

fn expected_credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn credentials_are_signed_by_the_first_secret_and_expire_after_the_ttl() {
    let app = spawn_app_with(|c| {
        c.turn_secret = SecretList(vec!["new-secret".into(), "old-secret".into()]);
        c.turn_urls = TURN_URLS.iter().map(|u| u.to_string()).collect();
        c.stun_urls = vec!["stun:turn.example.org:3478".into()];
        c.turn_ttl_secs = 600;
    })
    .await;
    for path in [
        "/api/turn-credentials?deviceId=device-A",
        "/api/ice-servers?deviceId=device-A",
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(!reply.body.contains("new-secret") && !reply.body.contains("old-secret"));
        let v = reply.json();
        assert_eq!(v["ttl"], 600);
        assert_eq!(
            v["iceServers"][0],
            json!({"urls": ["stun:turn.example.org:3478"]})
        );
        let turn = &v["iceServers"][1];
        assert_eq!(turn["urls"], json!(TURN_URLS));
        let username = turn["username"].as_str().unwrap();
        let (expiry, label) = username.split_once(':').unwrap();
        assert_eq!(label, "device-A");
        let expiry: i64 = expiry.parse().unwrap();
        let ahead = expiry - chrono::Utc::now().timestamp();
        assert!((590..=601).contains(&ahead), "{ahead}");
        assert_eq!(
            turn["credential"],
            expected_credential("new-secret", username)
        );
    }
}

#[tokio::test]
async fn without_a_device_id_the_label_is_random() {
    let app = spawn_app_with(|c| {
        c.turn_secret = SecretList(vec!["s".into()]);
        c.turn_urls = vec![TURN_URLS[0].into()];
    })
    .await;
    let label = |v: serde_json::Value| {
        let username = v["iceServers"][0]["username"].as_str().unwrap().to_owned();
        username.split_once(':').unwrap().1.to_owned()
    };
    let a = label(app.get("/api/turn-credentials").await.json());
    let b = label(app.get("/api/turn-credentials").await.json());
    assert!(a.len() >= 8);
    assert_ne!(a, b);
}

#[tokio::test]
async fn a_bad_device_id_is_refused() {
    let app = spawn_app_with(|c| {
        c.turn_secret = SecretList(vec!["s".into()]);
        c.turn_urls = vec![TURN_URLS[0].into()];
    })
    .await;
    let long = "x".repeat(129);
    for bad in ["a:b", "with%20space", long.as_str(), "%C3%A9"] {
        let reply = app
            .get(&format!("/api/turn-credentials?deviceId={bad}"))
            .await;
        assert_eq!(
            (reply.status, reply.error()),
            (400, "invalid_deviceId".into()),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn without_a_secret_only_stun_servers_are_listed() {
    let app = spawn_app_with(|c| c.stun_urls = vec!["stun:stun.example.org:3478".into()]).await;
    let reply = app.get("/api/turn-credentials").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"iceServers": [{"urls": ["stun:stun.example.org:3478"]}], "ttl": 3600})
    );
}

#[tokio::test]
async fn with_nothing_configured_the_answer_is_501() {
    let app = spawn_app().await;
    for path in ["/api/turn-credentials", "/api/ice-servers"] {
        let reply = app.get(path).await;
        assert_eq!(
            (reply.status, reply.json()),
            (501, json!({"error": "turn_not_configured"}))
        );
    }
}
