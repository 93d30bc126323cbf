//! The WebSocket relay contract (issue 3), with real WebSocket clients.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, WsClient, spawn_app, spawn_app_with};

#[tokio::test]
async fn both_paths_upgrade_and_greet_with_a_uuid_client_id() {
    let app = spawn_app().await;
    for path in ["/", "/ws"] {
        let client = app.connect_ws_path(path).await;
        let id = uuid::Uuid::parse_str(&client.client_id).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }
}

#[tokio::test]
async fn first_member_is_the_initiator_and_both_hear_room_ready() {
    let app = spawn_app().await;
    let mut a = app.connect_ws().await;
    let mut b = app.connect_ws().await;
    a.join("room-1").await;
    assert_eq!(
        a.recv().await,
        json!({"type":"room_joined","roomId":"room-1","userCount":1,"isInitiator":true,"ready":false,
               "peerId":a.client_id,"capacity":2,"peers":[]})
    );
    b.join("room-1").await;
    assert_eq!(
        b.recv().await,
        json!({"type":"room_joined","roomId":"room-1","userCount":2,"isInitiator":false,"ready":true,
               "peerId":b.client_id,"capacity":2,"peers":[a.client_id]})
    );
    let message = "Both users connected. Ready for WebRTC handshake.";
    assert_eq!(
        a.recv().await,
        json!({"type":"room_ready","roomId":"room-1","message":message,"userCount":2,"isInitiator":true,
               "sameNetwork":true})
    );
    assert_eq!(
        b.recv().await,
        json!({"type":"room_ready","roomId":"room-1","message":message,"userCount":2,"isInitiator":false,
               "sameNetwork":true})
    );
}

#[tokio::test]
async fn relayed_payloads_arrive_byte_for_byte_with_from_and_room_id() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("r").await;
    let sdp =
        "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\n\\u00e9 \\\"quoted\\\"";
    let offer = format!(r#"{{"type":"webrtc_offer","sdp":"{sdp}"}}"#);
    a.send_text(&offer).await;
    let Some(Message::Text(frame)) = b.next_frame().await else {
        panic!()
    };
    let expected = format!(
        r#"{{"type":"webrtc_offer","from":"{}","roomId":"r","sdp":"{sdp}"}}"#,
        a.client_id
    );
    assert_eq!(frame.as_str(), expected);

    b.send_text(r#"{"type":"webrtc_answer","sdp":"answer"}"#)
        .await;
    let answer = a.expect("webrtc_answer").await;
    assert_eq!(
        (answer["sdp"].as_str(), answer["from"].as_str()),
        (Some("answer"), Some(b.client_id.as_str()))
    );

    let candidate = r#"{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0,  "usernameFragment":null}"#;
    a.send_text(&format!(
        r#"{{"type":"ice_candidate","candidate":{candidate}}}"#
    ))
    .await;
    let Some(Message::Text(frame)) = b.next_frame().await else {
        panic!()
    };
    assert!(
        frame
            .as_str()
            .ends_with(&format!(r#""candidate":{candidate}}}"#)),
        "{frame}"
    );

    for kind in ["key_exchange", "key_exchange_complete"] {
        a.send_json(&json!({"type": kind, "publicKey": "pk", "sessionId": "s1", "timestamp": 1_700_000_000_000u64}))
            .await;
        let m = b.expect(kind).await;
        assert_eq!(
            m,
            json!({"type": kind, "from": a.client_id, "roomId": "r", "publicKey": "pk", "sessionId": "s1", "timestamp": 1_700_000_000_000u64})
        );
    }
    a.expect_silence().await;
}

#[tokio::test]
async fn an_sdp_that_is_not_a_string_is_refused() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("r").await;
    a.send_json(&json!({"type":"webrtc_offer","sdp":{"not":"a string"}}))
        .await;
    a.expect_error("Invalid sdp").await;
    b.expect_silence().await;
}

#[tokio::test]
async fn a_third_joiner_gets_room_full() {
    let app = spawn_app().await;
    let (_a, _b) = app.joined_pair("busy").await;
    let mut c = app.connect_ws().await;
    c.join("busy").await;
    assert_eq!(
        c.recv().await,
        json!({"type":"room_full","error":"Room is full (max 2 users)","roomId":"busy"})
    );
}

#[tokio::test]
async fn a_member_rejoining_its_own_full_room_gets_room_joined_again() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("r").await;
    a.join("r").await;
    assert_eq!(
        a.recv().await,
        json!({"type":"room_joined","roomId":"r","userCount":2,"isInitiator":true,"ready":true,
               "peerId":a.client_id,"capacity":2,"peers":[b.client_id]})
    );
    b.expect_silence().await;
    a.expect_silence().await;
}

#[tokio::test]
async fn leaving_sends_peer_left_and_closing_sends_peer_disconnected() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("r").await;
    a.send_json(&json!({"type":"leave_room"})).await;
    assert_eq!(a.recv().await, json!({"type":"left_room","roomId":"r"}));
    assert_eq!(
        b.recv().await,
        json!({"type":"peer_left","message":"Other user left the room","peerId":a.client_id})
    );
    a.send_json(&json!({"type":"leave_room"})).await;
    assert_eq!(a.recv().await, json!({"type":"left_room","roomId":null}));

    let mut c = app.connect_ws().await;
    c.join("r").await;
    c.expect("room_joined").await;
    b.expect("room_ready").await;
    c.expect("room_ready").await;
    let c_id = c.client_id.clone();
    c.stream.close(None).await.unwrap();
    assert_eq!(
        b.recv().await,
        json!({"type":"peer_disconnected","message":"Other user disconnected","peerId":c_id})
    );
}

#[tokio::test]
async fn a_new_member_can_join_after_a_disconnect_and_the_room_is_ready_again() {
    let app = spawn_app().await;
    let (a, mut b) = app.joined_pair("r").await;
    drop(a);
    b.expect("peer_disconnected").await;
    let mut c = app.connect_ws().await;
    c.join("r").await;
    let joined = c.expect("room_joined").await;
    assert_eq!(
        (
            joined["userCount"].as_u64(),
            joined["isInitiator"].as_bool()
        ),
        (Some(2), Some(false))
    );
    let ready = b.expect("room_ready").await;
    assert_eq!(ready["isInitiator"], true);
    c.expect("room_ready").await;
    c.send_json(&json!({"type":"webrtc_offer","sdp":"hi"}))
        .await;
    assert_eq!(b.expect("webrtc_offer").await["from"], c.client_id.as_str());
}

#[tokio::test]
async fn switching_rooms_leaves_the_old_one_first() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("old").await;
    a.join("new").await;
    let left = b.expect("peer_left").await;
    assert_eq!(left["peerId"], a.client_id.as_str());
    let joined = a.expect("room_joined").await;
    assert_eq!(
        (joined["roomId"].as_str(), joined["userCount"].as_u64()),
        (Some("new"), Some(1))
    );
}

#[tokio::test]
async fn relaying_outside_a_ready_room_is_refused() {
    let app = spawn_app().await;
    let mut a = app.connect_ws().await;
    a.send_json(&json!({"type":"webrtc_offer","sdp":"x"})).await;
    a.expect_error("Not in a valid room for WebRTC signaling")
        .await;
    a.join("alone").await;
    a.expect("room_joined").await;
    for kind in ["webrtc_offer", "webrtc_answer"] {
        a.send_json(&json!({"type": kind, "sdp": "x"})).await;
        a.expect_error("Room must have exactly 2 users for WebRTC")
            .await;
    }
    a.send_json(&json!({"type":"ice_candidate","candidate":{}}))
        .await;
    a.expect_error("Room must have exactly 2 users for WebRTC")
        .await;
}

#[tokio::test]
async fn ping_unknown_types_invalid_json_and_bad_room_ids_get_answers_and_the_session_goes_on() {
    let app = spawn_app().await;
    let mut a = app.connect_ws().await;
    a.send_json(&json!({"type":"ping"})).await;
    assert_eq!(a.recv().await, json!({"type":"pong"}));
    a.send_json(&json!({"type":"dance"})).await;
    a.expect_error("Unknown message type: dance").await;
    a.send_json(&json!({"no":"type"})).await;
    a.expect_error("Unknown message type: undefined").await;
    a.send_text("{not json").await;
    a.expect_error("Invalid JSON format").await;
    for room in [json!(""), json!(5), json!(null), json!("x".repeat(129))] {
        a.send_json(&json!({"type":"join_room","roomId":room}))
            .await;
        a.expect_error("Invalid roomId").await;
    }
    a.send_json(&json!({"type":"join_room","roomId":"x".repeat(128)}))
        .await;
    a.expect("room_joined").await;
}

#[tokio::test]
async fn binary_frames_get_an_error_and_are_ignored() {
    let app = spawn_app().await;
    let mut a = app.connect_ws().await;
    a.stream
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    let error = a.expect("error").await;
    assert!(error["error"].as_str().unwrap().contains("Binary"));
    a.send_json(&json!({"type":"ping"})).await;
    a.expect("pong").await;
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_the_connection_with_1009() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("r").await;
    let just_fits = format!(
        r#"{{"type":"webrtc_offer","sdp":"{}"}}"#,
        "x".repeat(64 * 1024 - 40)
    );
    assert!(just_fits.len() <= 64 * 1024);
    a.send_text(&just_fits).await;
    b.expect("webrtc_offer").await;

    let too_big = format!(
        r#"{{"type":"webrtc_offer","sdp":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    a.send_text(&too_big).await;
    assert_eq!(a.expect_close().await, Some(1009));
    b.expect("peer_disconnected").await;
}

#[tokio::test]
async fn two_hundred_rooms_relay_at_once_without_cross_talk() {
    let app = spawn_app().await;
    let rooms = (0..200).map(|i| {
        let app = &app;
        async move {
            let room = format!("room-{i}");
            let (mut a, mut b) = app.joined_pair(&room).await;
            for n in 0..5 {
                a.send_json(&json!({"type":"webrtc_offer","sdp":format!("{room}/{n}")}))
                    .await;
                b.send_json(&json!({"type":"ice_candidate","candidate":{"room":room,"n":n}}))
                    .await;
            }
            for n in 0..5 {
                let offer = b.expect("webrtc_offer").await;
                assert_eq!(offer["sdp"], format!("{room}/{n}"));
                assert_eq!(
                    (offer["roomId"].as_str(), offer["from"].as_str()),
                    (Some(room.as_str()), Some(a.client_id.as_str()))
                );
                let candidate = a.expect("ice_candidate").await;
                assert_eq!(candidate["candidate"], json!({"room": room, "n": n}));
            }
            (a, b)
        }
    });
    let mut pairs = futures_util::future::join_all(rooms).await;
    for (a, b) in pairs.iter_mut().take(10) {
        a.expect_silence().await;
        b.expect_silence().await;
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_while_others_keep_relaying() {
    let app = spawn_app_with(|c| c.ws_send_queue = 16).await;
    let (mut sender, stalled) = app.joined_pair("slow").await;
    let (mut x, mut y) = app.joined_pair("healthy").await;
    let big = format!(
        r#"{{"type":"webrtc_offer","sdp":"{}"}}"#,
        "s".repeat(60 * 1024)
    );
    // The stalled client's socket buffers and then its queue fill up; the server must let it go.
    let mut disconnected = false;
    for _ in 0..2_000 {
        sender.send_text(&big).await;
        match tokio::time::timeout(Duration::from_millis(5), sender.recv()).await {
            Ok(m) if m["type"] == "peer_disconnected" => {
                disconnected = true;
                break;
            }
            _ => {}
        }
    }
    assert!(disconnected, "the stalled client was never disconnected");
    x.send_json(&json!({"type":"webrtc_offer","sdp":"still here"}))
        .await;
    assert_eq!(y.expect("webrtc_offer").await["sdp"], "still here");
    drop(stalled);
}

#[tokio::test]
async fn shutdown_tells_every_session_and_closes_with_1001() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("r").await;
    let mut lone = app.connect_ws().await;
    let stopping = tokio::spawn(app.shutdown());
    for client in [&mut a, &mut b, &mut lone] {
        client.expect("server_shutdown").await;
        assert_eq!(client.expect_close().await, Some(1001));
    }
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .unwrap()
        .unwrap();
}

async fn joined_as(app: &TestApp, room: &str, device: &str) -> WsClient {
    let mut c = app.connect_ws().await;
    c.send_json(&json!({"type":"join_room","roomId":room,"deviceId":device}))
        .await;
    c
}

#[tokio::test]
async fn deleting_a_room_closes_its_live_sessions() {
    let app = spawn_app().await;
    let roomid = app.pair("devA", "devB").await;
    let mut a = joined_as(&app, &roomid, "devA").await;
    a.expect("room_joined").await;
    let mut b = joined_as(&app, &roomid, "devB").await;
    b.expect("room_joined").await;
    a.expect("room_ready").await;
    b.expect("room_ready").await;

    let reply = app
        .send(app.request("DELETE", &format!("/api/rooms?roomid={roomid}")))
        .await;
    assert_eq!(reply.json()["deleted"], 1);
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.recv().await,
            json!({"type":"room_closed","roomId":roomid})
        );
        c.send_json(&json!({"type":"webrtc_offer","sdp":"x"})).await;
        c.expect_error("Not in a valid room for WebRTC signaling")
            .await;
    }
}

#[tokio::test]
async fn purging_a_device_closes_its_rooms_and_its_sockets() {
    let app = spawn_app().await;
    let roomid = app.pair("devA", "devB").await;
    let mut a = joined_as(&app, &roomid, "devA").await;
    a.expect("room_joined").await;
    let mut b = joined_as(&app, &roomid, "devB").await;
    b.expect("room_joined").await;
    a.expect("room_ready").await;
    b.expect("room_ready").await;

    let reply = app
        .post_json("/api/user/purge", &json!({"deviceId":"devA"}))
        .await;
    assert_eq!(reply.json()["roomsDeleted"], 1);
    assert_eq!(
        a.recv().await,
        json!({"type":"room_closed","roomId":roomid})
    );
    assert!(a.expect_close().await.is_some());
    assert_eq!(
        b.recv().await,
        json!({"type":"room_closed","roomId":roomid})
    );
    b.send_json(&json!({"type":"ping"})).await;
    b.expect("pong").await;
}

#[tokio::test]
async fn a_paired_room_admits_only_its_two_devices() {
    let app = spawn_app().await;
    let roomid = app.pair("devA", "devB").await;
    let mut stranger = joined_as(&app, &roomid, "devX").await;
    stranger.expect_error("Not a member of this room").await;
    let mut a = joined_as(&app, &roomid, "devA").await;
    a.expect("room_joined").await;
    // Without a deviceId (old clients), and in unpaired rooms, anyone may join.
    let mut old = app.connect_ws().await;
    old.join(&roomid).await;
    old.expect("room_joined").await;
    let mut free = joined_as(&app, "unpaired", "devX").await;
    free.expect("room_joined").await;
}

#[tokio::test]
async fn with_strict_rooms_a_non_member_or_unpaired_room_is_refused() {
    let app = spawn_app_with(|c| c.strict_rooms = true).await;
    let roomid = app.pair("devA", "devB").await;
    let mut stranger = joined_as(&app, &roomid, "devX").await;
    stranger.expect_error("Not a member of this room").await;
    let mut anonymous = app.connect_ws().await;
    anonymous.join(&roomid).await;
    anonymous.expect_error("Not a member of this room").await;
    let mut unpaired = joined_as(&app, "made-up-room", "devA").await;
    unpaired.expect_error("Not a member of this room").await;
    let mut b = joined_as(&app, &roomid, "devB").await;
    b.expect("room_joined").await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped() {
    let app = spawn_app_with(|c| {
        c.ws_ping_interval_secs = 1;
        c.ws_idle_timeout_secs = 2;
    })
    .await;
    let (mut quiet, mut peer) = app.joined_pair("r").await;
    // `quiet` reads nothing, so it answers no pings (a client answers when it reads); `peer`
    // keeps reading while it waits, so it answers its pings and stays.
    let left = peer.expect("peer_disconnected").await;
    assert_eq!(left["peerId"], quiet.client_id.as_str());
    let mut closed = false;
    while let Some(frame) = quiet.next_frame().await {
        if matches!(frame, Message::Close(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed || quiet.stream.send(Message::text("{}")).await.is_err());
}

#[tokio::test]
async fn a_client_that_answers_pings_outlives_the_idle_timeout() {
    let app = spawn_app_with(|c| {
        c.ws_ping_interval_secs = 1;
        c.ws_idle_timeout_secs = 2;
    })
    .await;
    let mut a = app.connect_ws().await;
    // expect_silence keeps reading, so pings are answered.
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        a.expect_silence().await;
    }
    a.send_json(&json!({"type":"ping"})).await;
    a.expect("pong").await;
}

#[tokio::test]
async fn a_plain_get_on_the_websocket_path_asks_for_an_upgrade() {
    let app = spawn_app().await;
    let reply = app.get("/ws").await;
    assert_eq!(
        (reply.status, reply.error()),
        (426, "upgrade_required".into())
    );
    let _: Value = reply.json();
}
