//! Same-network discovery in signalpost's own protocol: `discover`, `peers_on_network`, and
//! `sameNetwork` on `room_ready` and `peer_joined`. Clients are placed on networks with
//! `X-Forwarded-For`, which the server believes because the test is its trusted proxy.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{TestApp, WsClient, spawn_app_with};

/// A server that believes the test's `X-Forwarded-For` (it comes from 127.0.0.1).
async fn behind_proxy() -> TestApp {
    spawn_app_with(|c| c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await
}

/// A WebSocket on `/ws` from client address `from`, its greeting read.
pub async fn connect_from(app: &TestApp, from: &str) -> WsClient {
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", from.parse().unwrap());
    let (stream, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = WsClient {
        stream,
        client_id: String::new(),
    };
    let hello = client.expect("connected").await;
    client.client_id = hello["clientId"].as_str().unwrap().to_owned();
    client
}

async fn discover(client: &mut WsClient, name: &str) {
    client
        .send_json(&json!({"type": "discover", "name": name}))
        .await;
}

/// The next `peers_on_network`'s list.
async fn peers(client: &mut WsClient) -> Value {
    client.expect("peers_on_network").await["peers"].clone()
}

fn peer(client: &WsClient, name: &str) -> Value {
    json!({"peerId": client.client_id, "name": name})
}

#[tokio::test]
async fn discovering_clients_behind_one_address_list_each_other_and_see_leaves() {
    let app = behind_proxy().await;
    let mut a = connect_from(&app, "81.2.69.10").await;
    let mut b = connect_from(&app, "81.2.69.10").await;

    discover(&mut a, "Kitchen laptop").await;
    assert_eq!(
        a.recv().await,
        json!({"type": "peers_on_network", "peers": []})
    );
    discover(&mut b, "Phone").await;
    assert_eq!(peers(&mut b).await, json!([peer(&a, "Kitchen laptop")]));
    assert_eq!(peers(&mut a).await, json!([peer(&b, "Phone")]));

    b.stream.close(None).await.unwrap();
    assert_eq!(peers(&mut a).await, json!([]));
}

#[tokio::test]
async fn other_networks_and_sessions_that_do_not_discover_are_never_listed() {
    let app = behind_proxy().await;
    let mut a = connect_from(&app, "81.2.69.11").await;
    discover(&mut a, "A").await;
    assert_eq!(peers(&mut a).await, json!([]));

    // Another public address, even next door, is another network.
    let mut elsewhere = connect_from(&app, "81.2.69.12").await;
    discover(&mut elsewhere, "Elsewhere").await;
    assert_eq!(peers(&mut elsewhere).await, json!([]));
    // Same address, but never asked to be discoverable: not listed, and told nothing.
    let mut quiet = connect_from(&app, "81.2.69.11").await;
    quiet.join("some-room").await;
    quiet.expect("room_joined").await;
    a.expect_silence().await;
    quiet.expect_silence().await;

    // Private addresses are one network per /24.
    let mut lan1 = connect_from(&app, "192.168.5.1").await;
    let mut lan2 = connect_from(&app, "192.168.5.200").await;
    let mut other_lan = connect_from(&app, "192.168.6.1").await;
    discover(&mut lan1, "One").await;
    assert_eq!(peers(&mut lan1).await, json!([]));
    discover(&mut other_lan, "Other").await;
    assert_eq!(peers(&mut other_lan).await, json!([]));
    discover(&mut lan2, "Two").await;
    assert_eq!(peers(&mut lan2).await, json!([peer(&lan1, "One")]));
    assert_eq!(peers(&mut lan1).await, json!([peer(&lan2, "Two")]));
    other_lan.expect_silence().await;
    a.expect_silence().await;
}

#[tokio::test]
async fn discovering_again_under_a_new_name_shows_the_new_name() {
    let app = behind_proxy().await;
    let mut a = connect_from(&app, "81.2.69.13").await;
    let mut b = connect_from(&app, "81.2.69.13").await;
    discover(&mut a, "A").await;
    peers(&mut a).await;
    discover(&mut b, "B").await;
    peers(&mut b).await;
    assert_eq!(peers(&mut a).await, json!([peer(&b, "B")]));

    discover(&mut b, "B renamed").await;
    // The others see the old entry go and the new one come.
    assert_eq!(peers(&mut a).await, json!([]));
    assert_eq!(peers(&mut a).await, json!([peer(&b, "B renamed")]));
    assert_eq!(peers(&mut b).await, json!([peer(&a, "A")]));

    // A name is optional; a bad one is refused and changes nothing.
    b.send_json(&json!({"type": "discover", "name": "   "}))
        .await;
    b.expect_error("Invalid name").await;
    b.send_json(&json!({"type": "discover", "name": 42})).await;
    b.expect_error("Invalid name").await;
    a.expect_silence().await;
    let mut c = connect_from(&app, "81.2.69.13").await;
    c.send_json(&json!({"type": "discover"})).await;
    let listed = peers(&mut c).await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(
        peers(&mut a).await,
        json!([peer(&b, "B renamed"), {"peerId": c.client_id, "name": null}])
    );
}

#[tokio::test]
async fn room_ready_says_whether_the_two_are_on_the_same_network() {
    let app = behind_proxy().await;
    for (from_a, from_b, same) in [
        ("81.2.69.20", "81.2.69.20", true),
        ("81.2.69.21", "81.2.69.22", false),
        ("192.168.9.10", "192.168.9.20", true),
        ("192.168.9.10", "81.2.69.23", false),
    ] {
        let room = format!("ready-{from_a}-{from_b}");
        let mut a = connect_from(&app, from_a).await;
        let mut b = connect_from(&app, from_b).await;
        a.join(&room).await;
        a.expect("room_joined").await;
        b.join(&room).await;
        b.expect("room_joined").await;
        for ready in [a.expect("room_ready").await, b.expect("room_ready").await] {
            assert_eq!(ready["sameNetwork"], same, "{from_a} / {from_b}: {ready}");
        }
    }
}

#[tokio::test]
async fn peer_joined_in_a_larger_room_says_whether_the_joiner_is_on_ones_network() {
    let app = behind_proxy().await;
    let mut a = connect_from(&app, "81.2.69.30").await;
    let mut b = connect_from(&app, "81.2.69.30").await;
    let mut c = connect_from(&app, "81.2.69.31").await;
    let join = |capacity| json!({"type": "join_room", "roomId": "trio", "capacity": capacity});
    a.send_json(&join(3)).await;
    a.expect("room_joined").await;
    b.send_json(&join(3)).await;
    b.expect("room_joined").await;
    let seen = a.expect("peer_joined").await;
    assert_eq!(
        (seen["peerId"].as_str(), &seen["sameNetwork"]),
        (Some(b.client_id.as_str()), &json!(true))
    );
    c.send_json(&join(3)).await;
    c.expect("room_joined").await;
    for member in [&mut a, &mut b] {
        let seen = member.expect("peer_joined").await;
        assert_eq!(seen["sameNetwork"], false, "{seen}");
    }
}

#[tokio::test]
async fn a_discovering_session_stays_listed_while_in_a_room_and_can_meet_a_peer_it_saw() {
    let app = behind_proxy().await;
    let mut a = connect_from(&app, "81.2.69.40").await;
    let mut b = connect_from(&app, "81.2.69.40").await;
    discover(&mut a, "A").await;
    peers(&mut a).await;
    discover(&mut b, "B").await;
    let seen = peers(&mut b).await;
    assert_eq!(seen, json!([peer(&a, "A")]));
    peers(&mut a).await;

    // B learnt A's id from the list; they meet in a room both name.
    a.join("meet").await;
    a.expect("room_joined").await;
    b.join("meet").await;
    b.expect("room_joined").await;
    assert_eq!(a.expect("room_ready").await["sameNetwork"], true);
    assert_eq!(b.expect("room_ready").await["sameNetwork"], true);
    b.send_json(&json!({"type": "message", "to": a.client_id, "data": "hi"}))
        .await;
    assert_eq!(a.expect("message").await["data"], "hi");

    // Leaving the room is not leaving the network.
    b.send_json(&json!({"type": "leave_room"})).await;
    b.expect("left_room").await;
    a.expect("peer_left").await;
    a.expect_silence().await;
    b.expect_silence().await;
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_places_nobody_on_another_network() {
    // No trusted proxy: every test client is 127.0.0.1, whatever it claims.
    let app = spawn_app_with(|_| {}).await;
    let mut a = connect_from(&app, "81.2.69.50").await;
    let mut b = connect_from(&app, "81.2.69.51").await;
    discover(&mut a, "A").await;
    peers(&mut a).await;
    discover(&mut b, "B").await;
    assert_eq!(peers(&mut b).await, json!([peer(&a, "A")]));
}
