//! Rooms of any size, addressed and broadcast messages, a device replacing its stale session,
//! and resume after a dropped connection (issue 12), over real sockets.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, WsClient, spawn_app, spawn_app_with};

async fn join_with(client: &mut WsClient, body: Value) {
    let mut message = json!({"type": "join_room"});
    message
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    client.send_json(&message).await;
}

/// `n` clients in `room` of capacity `capacity`, every join message read.
async fn room_of(app: &TestApp, room: &str, capacity: u32, n: usize) -> Vec<WsClient> {
    let mut clients: Vec<WsClient> = Vec::new();
    for i in 0..n {
        let mut c = app.connect_ws().await;
        join_with(&mut c, json!({"roomId": room, "capacity": capacity})).await;
        let joined = c.expect("room_joined").await;
        assert_eq!(joined["userCount"], i + 1);
        for earlier in clients.iter_mut() {
            let seen = earlier.expect("peer_joined").await;
            assert_eq!(seen["peerId"], c.client_id.as_str());
        }
        clients.push(c);
    }
    clients
}

#[tokio::test]
async fn a_room_of_three_fills_with_peer_joined_and_no_room_ready_then_refuses_a_fourth() {
    let app = spawn_app().await;
    let mut a = app.connect_ws().await;
    let mut b = app.connect_ws().await;
    let mut c = app.connect_ws().await;
    join_with(&mut a, json!({"roomId": "trio", "capacity": 3})).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"room_joined","roomId":"trio","userCount":1,"isInitiator":true,"ready":false,
               "peerId":a.client_id,"capacity":3,"peers":[]})
    );
    // A later joiner's capacity is ignored: the first join fixed it.
    join_with(&mut b, json!({"roomId": "trio", "capacity": 8})).await;
    assert_eq!(
        b.recv().await,
        json!({"type":"room_joined","roomId":"trio","userCount":2,"isInitiator":false,"ready":true,
               "peerId":b.client_id,"capacity":3,"peers":[a.client_id]})
    );
    assert_eq!(
        a.recv().await,
        json!({"type":"peer_joined","roomId":"trio","peerId":b.client_id,"userCount":2,
               "sameNetwork":true})
    );
    join_with(&mut c, json!({"roomId": "trio"})).await;
    let joined = c.expect("room_joined").await;
    assert_eq!(joined["peers"], json!([a.client_id, b.client_id]));
    assert_eq!(joined["capacity"], 3);
    for member in [&mut a, &mut b] {
        let seen = member.expect("peer_joined").await;
        assert_eq!(
            (seen["peerId"].as_str(), seen["userCount"].as_u64()),
            (Some(c.client_id.as_str()), Some(3))
        );
        member.expect_silence().await;
    }
    let mut d = app.connect_ws().await;
    join_with(&mut d, json!({"roomId": "trio"})).await;
    assert_eq!(
        d.recv().await,
        json!({"type":"room_full","error":"Room is full (max 3 users)","roomId":"trio"})
    );
}

#[tokio::test]
async fn a_capacity_outside_two_to_the_maximum_is_an_invalid_capacity() {
    let app = spawn_app_with(|c| c.max_room_capacity = 8).await;
    let mut a = app.connect_ws().await;
    for bad in [
        json!(1),
        json!(9),
        json!(0),
        json!("4"),
        json!(2.5),
        json!(-3),
    ] {
        join_with(&mut a, json!({"roomId": "r", "capacity": bad})).await;
        a.expect_error("Invalid capacity").await;
    }
    join_with(&mut a, json!({"roomId": "r", "capacity": 8})).await;
    assert_eq!(a.expect("room_joined").await["capacity"], 8);
}

#[tokio::test]
async fn a_broadcast_in_a_room_of_eight_reaches_the_seven_others_and_no_other_room() {
    let app = spawn_app().await;
    let mut eight = room_of(&app, "octet", 8, 8).await;
    let mut elsewhere = room_of(&app, "elsewhere", 3, 2).await;
    let sender = eight[0].client_id.clone();
    eight[0]
        .send_json(&json!({"type": "webrtc_offer", "sdp": "v=0 broadcast"}))
        .await;
    for member in &mut eight[1..] {
        assert_eq!(
            member.recv().await,
            json!({"type":"webrtc_offer","from":sender,"roomId":"octet","sdp":"v=0 broadcast"})
        );
    }
    eight[0].expect_silence().await;
    for other in &mut elsewhere {
        other.expect_silence().await;
    }
}

#[tokio::test]
async fn an_addressed_message_reaches_only_its_peer_with_from_room_and_to() {
    let app = spawn_app().await;
    let mut trio = room_of(&app, "addressed", 3, 3).await;
    let (a, c) = (trio[0].client_id.clone(), trio[2].client_id.clone());
    for (kind, field, value) in [
        ("webrtc_offer", "sdp", json!("v=0 for c")),
        ("webrtc_answer", "sdp", json!("v=0 answer")),
        (
            "ice_candidate",
            "candidate",
            json!({"candidate": "cand", "sdpMid": "0"}),
        ),
        ("key_exchange", "publicKey", json!("pk")),
        ("key_exchange_complete", "publicKey", json!("pk2")),
        ("message", "data", json!({"chat": "hi", "n": [1, 2]})),
    ] {
        trio[0]
            .send_json(&json!({"type": kind, field: value, "to": c}))
            .await;
        let got = trio[2].recv().await;
        assert_eq!(got["type"], kind);
        assert_eq!(
            (got["from"].as_str(), got["to"].as_str()),
            (Some(a.as_str()), Some(c.as_str()))
        );
        assert_eq!(got["roomId"], "addressed");
        assert_eq!(got[field], value);
        trio[1].expect_silence().await;
    }
}

#[tokio::test]
async fn an_application_message_is_relayed_with_its_data_and_counted() {
    let app = spawn_app().await;
    let (mut a, mut b) = app.joined_pair("chat").await;
    a.send_json(&json!({"type": "message", "data": [1, "two", {"three": null}]}))
        .await;
    assert_eq!(
        b.recv().await,
        json!({"type":"message","from":a.client_id,"roomId":"chat","data":[1,"two",{"three":null}]})
    );
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains(r#"signalpost_relayed_messages_total{type="message"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_to_that_names_no_member_is_an_unknown_peer() {
    let app = spawn_app().await;
    let mut trio = room_of(&app, "u", 3, 2).await;
    let myself = trio[0].client_id.clone();
    for to in ["nobody", myself.as_str()] {
        trio[0]
            .send_json(&json!({"type": "webrtc_offer", "sdp": "x", "to": to}))
            .await;
        assert_eq!(
            trio[0].recv().await,
            json!({"type":"error","error":"Unknown peer","peerId":to})
        );
    }
    // A member of another room is no member of this one.
    let others = room_of(&app, "other", 3, 1).await;
    trio[0]
        .send_json(&json!({"type": "message", "data": 1, "to": others[0].client_id}))
        .await;
    assert_eq!(trio[0].recv().await["error"], "Unknown peer");
    trio[1].expect_silence().await;
}

#[tokio::test]
async fn alone_in_a_larger_room_a_broadcast_has_no_one_to_reach() {
    let app = spawn_app().await;
    let mut solo = room_of(&app, "big", 4, 1).await;
    solo[0]
        .send_json(&json!({"type": "message", "data": "anyone?"}))
        .await;
    solo[0].expect_error("No other users in the room").await;
    // A room of two says what it always said.
    let mut pair = app.connect_ws().await;
    pair.join("small").await;
    pair.expect("room_joined").await;
    pair.send_json(&json!({"type": "webrtc_offer", "sdp": "x"}))
        .await;
    pair.expect_error("Room must have exactly 2 users for WebRTC")
        .await;
}

#[tokio::test]
async fn each_receiver_gets_one_senders_messages_in_order() {
    let app = spawn_app().await;
    let mut four = room_of(&app, "order", 4, 4).await;
    for i in 0..200 {
        four[0]
            .send_json(&json!({"type": "message", "data": i}))
            .await;
    }
    for member in &mut four[1..] {
        for i in 0..200 {
            assert_eq!(member.recv().await["data"], i);
        }
    }
}

#[tokio::test]
async fn peer_left_and_peer_disconnected_reach_every_remaining_member() {
    let app = spawn_app().await;
    let mut four = room_of(&app, "leaving", 4, 4).await;
    let leaver = four[3].client_id.clone();
    four[3].send_json(&json!({"type": "leave_room"})).await;
    four[3].expect("left_room").await;
    for member in &mut four[..3] {
        let m = member.expect("peer_left").await;
        assert_eq!(m["peerId"], leaver.as_str());
    }
    let mut dropped = four.pop().unwrap();
    dropped.send_json(&json!({"type": "ping"})).await;
    dropped.expect("pong").await;
    let gone = four.remove(2);
    let gone_id = gone.client_id.clone();
    drop(gone);
    for member in &mut four {
        let m = member.expect("peer_disconnected").await;
        assert_eq!(m["peerId"], gone_id.as_str());
        assert!(m.get("resumable").is_none(), "{m}");
    }
}

#[tokio::test]
async fn a_paired_room_takes_the_capacity_of_its_code_and_admits_its_devices() {
    let app = spawn_app().await;
    let created = app
        .post_json(
            "/api/rooms",
            &json!({"client1": "host", "expiresInSeconds": 300, "capacity": 3}),
        )
        .await;
    let code = created.json()["joinid"].as_str().unwrap().to_owned();
    let mut roomid = String::new();
    for guest in ["g1", "g2"] {
        let reply = app
            .post_json(
                "/api/rooms/accept",
                &json!({"joinid": code, "client2": guest}),
            )
            .await;
        roomid = reply.json()["roomid"].as_str().unwrap().to_owned();
    }
    let mut members = Vec::new();
    for device in ["host", "g1", "g2"] {
        let mut c = app.connect_ws().await;
        // The pairing's capacity wins over what a join asks for.
        join_with(
            &mut c,
            json!({"roomId": roomid, "deviceId": device, "capacity": 8}),
        )
        .await;
        assert_eq!(c.expect("room_joined").await["capacity"], 3);
        members.push(c);
    }
    let mut stranger = app.connect_ws().await;
    join_with(&mut stranger, json!({"roomId": roomid, "deviceId": "g3"})).await;
    stranger.expect_error("Not a member of this room").await;
}

#[tokio::test]
async fn a_device_that_comes_back_replaces_its_stale_session() {
    let app = spawn_app().await;
    let roomid = app.pair("phone", "laptop").await;
    let mut laptop = app.connect_ws().await;
    let mut stale = app.connect_ws().await;
    join_with(&mut laptop, json!({"roomId": roomid, "deviceId": "laptop"})).await;
    laptop.expect("room_joined").await;
    join_with(&mut stale, json!({"roomId": roomid, "deviceId": "phone"})).await;
    stale.expect("room_joined").await;
    stale.expect("room_ready").await;
    laptop.expect("room_ready").await;
    // The phone's network changed: a new socket joins while the old one lingers.
    let mut fresh = app.connect_ws().await;
    join_with(&mut fresh, json!({"roomId": roomid, "deviceId": "phone"})).await;
    let joined = fresh.expect("room_joined").await;
    assert_eq!(
        (
            joined["userCount"].as_u64(),
            joined["isInitiator"].as_bool()
        ),
        (Some(2), Some(false))
    );
    assert_eq!(joined["peers"], json!([laptop.client_id]));
    fresh.expect("room_ready").await;
    assert_eq!(stale.recv().await, json!({"type": "replaced"}));
    assert_eq!(stale.expect_close().await, Some(4001));
    let gone = laptop.expect("peer_disconnected").await;
    assert_eq!(gone["peerId"], stale.client_id.as_str());
    let ready = laptop.expect("room_ready").await;
    assert_eq!(ready["isInitiator"], true);
    // And the call goes on with the new socket.
    fresh
        .send_json(&json!({"type": "webrtc_offer", "sdp": "again"}))
        .await;
    assert_eq!(laptop.recv().await["from"], fresh.client_id.as_str());
}

/// A resumable member in a room of two with a peer, and the member's resume token.
async fn resumable_pair(app: &TestApp, room: &str) -> (WsClient, String, WsClient) {
    let url = format!("ws://{}/ws", app.addr);
    let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut a = WsClient {
        stream,
        client_id: String::new(),
    };
    let hello = a.expect("connected").await;
    a.client_id = hello["clientId"].as_str().unwrap().to_owned();
    let token = hello["resumeToken"].as_str().unwrap().to_owned();
    join_with(&mut a, json!({"roomId": room, "resumable": true})).await;
    a.expect("room_joined").await;
    let mut b = app.connect_ws().await;
    b.join(room).await;
    b.expect("room_joined").await;
    b.expect("room_ready").await;
    a.expect("room_ready").await;
    (a, token, b)
}

/// Drops a connection without a close frame, as a phone losing its network does.
fn drop_without_close(client: WsClient) {
    drop(client.stream);
}

#[tokio::test]
async fn a_member_that_resumes_within_the_grace_gets_its_place_and_the_kept_messages_in_order() {
    let app = spawn_app().await;
    let (a, token, mut b) = resumable_pair(&app, "resume-me").await;
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert!(
        token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{token}"
    );
    let a_id = a.client_id.clone();
    drop_without_close(a);
    assert_eq!(
        b.recv().await,
        json!({"type":"peer_disconnected","message":"Other user disconnected","peerId":a_id,"resumable":true})
    );
    // Its place is kept: a newcomer finds the room full.
    let mut newcomer = app.connect_ws().await;
    newcomer.join("resume-me").await;
    newcomer.expect("room_full").await;
    for i in 0..3 {
        b.send_json(&json!({"type": "ice_candidate", "candidate": {"n": i}}))
            .await;
    }
    b.expect_silence().await;
    let mut back = app.connect_ws().await;
    back.send_json(&json!({"type": "resume", "token": token}))
        .await;
    let resumed = back.expect("resumed").await;
    assert_eq!(resumed["roomId"], "resume-me");
    assert_eq!(resumed["peerId"], a_id.as_str());
    assert_eq!(resumed["userCount"], 2);
    assert_eq!(resumed["peers"], json!([b.client_id]));
    assert_eq!(resumed["missed"], 3);
    let fresh_token = resumed["resumeToken"].as_str().unwrap().to_owned();
    assert_ne!(fresh_token, token);
    for i in 0..3 {
        let kept = back.expect("ice_candidate").await;
        assert_eq!(kept["candidate"]["n"], i);
        assert_eq!(kept["from"], b.client_id.as_str());
    }
    assert_eq!(
        b.recv().await,
        json!({"type":"peer_reconnected","roomId":"resume-me","peerId":a_id})
    );
    // From then on it is that member.
    back.send_json(&json!({"type": "webrtc_answer", "sdp": "after"}))
        .await;
    let answer = b.expect("webrtc_answer").await;
    assert_eq!(answer["from"], a_id.as_str());
    // The old token is spent.
    let mut thief = app.connect_ws().await;
    thief
        .send_json(&json!({"type": "resume", "token": token}))
        .await;
    thief.expect_error("Resume failed").await;
}

#[tokio::test]
async fn a_member_that_does_not_come_back_in_time_leaves_with_reason_timeout() {
    let app = spawn_app_with(|c| c.resume_grace_secs = 1).await;
    let (a, token, mut b) = resumable_pair(&app, "late").await;
    let a_id = a.client_id.clone();
    drop_without_close(a);
    assert_eq!(b.expect("peer_disconnected").await["resumable"], true);
    assert_eq!(
        b.recv().await,
        json!({"type":"peer_left","message":"Other user left the room","peerId":a_id,"reason":"timeout"})
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = app.connect_ws().await;
    late.send_json(&json!({"type": "resume", "token": token}))
        .await;
    late.expect_error("Resume failed").await;
    // The connection stays open as a new session.
    late.send_json(&json!({"type": "ping"})).await;
    late.expect("pong").await;
    late.join("late").await;
    assert_eq!(late.expect("room_joined").await["userCount"], 2);
}

#[tokio::test]
async fn unknown_tokens_and_a_resume_that_is_not_the_first_message_fail() {
    let app = spawn_app().await;
    let mut c = app.connect_ws().await;
    c.send_json(&json!({"type": "resume", "token": "no-such-token"}))
        .await;
    c.expect_error("Resume failed").await;
    let (a, token, _b) = resumable_pair(&app, "first-only").await;
    drop_without_close(a);
    let mut d = app.connect_ws().await;
    d.send_json(&json!({"type": "ping"})).await;
    d.expect("pong").await;
    d.send_json(&json!({"type": "resume", "token": token}))
        .await;
    d.expect_error("Resume failed").await;
}

#[tokio::test]
async fn a_member_that_did_not_opt_in_is_gone_at_once_when_its_connection_drops() {
    let app = spawn_app().await;
    let (a, b) = app.joined_pair("plain").await;
    let b_id = b.client_id.clone();
    drop_without_close(b);
    let mut a = a;
    assert_eq!(
        a.recv().await,
        json!({"type":"peer_disconnected","message":"Other user disconnected","peerId":b_id})
    );
    // The place is free again.
    let mut c = app.connect_ws().await;
    c.join("plain").await;
    assert_eq!(c.expect("room_joined").await["userCount"], 2);
}

#[tokio::test]
async fn a_member_closing_with_a_close_frame_is_not_detached() {
    let app = spawn_app().await;
    let (mut a, token, mut b) = resumable_pair(&app, "bye").await;
    a.stream.close(None).await.unwrap();
    let gone = b.expect("peer_disconnected").await;
    assert!(gone.get("resumable").is_none(), "{gone}");
    let mut c = app.connect_ws().await;
    c.send_json(&json!({"type": "resume", "token": token}))
        .await;
    c.expect_error("Resume failed").await;
}

#[tokio::test]
async fn too_many_kept_messages_end_the_grace_at_once() {
    let app = spawn_app_with(|c| c.resume_buffer_messages = 2).await;
    let (a, token, mut b) = resumable_pair(&app, "overflow").await;
    let a_id = a.client_id.clone();
    drop_without_close(a);
    b.expect("peer_disconnected").await;
    for i in 0..3 {
        b.send_json(&json!({"type": "message", "data": i})).await;
    }
    let left = b.expect("peer_left").await;
    assert_eq!(
        (left["peerId"].as_str(), left["reason"].as_str()),
        (Some(a_id.as_str()), Some("timeout"))
    );
    let mut c = app.connect_ws().await;
    c.send_json(&json!({"type": "resume", "token": token}))
        .await;
    c.expect_error("Resume failed").await;
}

#[tokio::test]
async fn a_deleted_room_ends_its_detached_members_too() {
    let app = spawn_app().await;
    let (a, token, mut b) = resumable_pair(&app, "doomed").await;
    drop_without_close(a);
    b.expect("peer_disconnected").await;
    let reply = app
        .send(app.request("DELETE", "/api/rooms?roomid=doomed"))
        .await;
    assert_eq!(reply.status, 200);
    b.expect("room_closed").await;
    let mut c = app.connect_ws().await;
    c.send_json(&json!({"type": "resume", "token": token}))
        .await;
    c.expect_error("Resume failed").await;
}

#[tokio::test]
async fn with_resume_off_a_resumable_member_is_gone_at_once() {
    let app = spawn_app_with(|c| c.resume_grace_secs = 0).await;
    let (a, token, mut b) = resumable_pair(&app, "off").await;
    drop_without_close(a);
    let gone = b.expect("peer_disconnected").await;
    assert!(gone.get("resumable").is_none(), "{gone}");
    let mut c = app.connect_ws().await;
    c.send_json(&json!({"type": "resume", "token": token}))
        .await;
    c.expect_error("Resume failed").await;
}

#[tokio::test]
async fn stats_count_rooms_of_any_size_as_ready_from_two_members() {
    let app = spawn_app().await;
    let _trio = room_of(&app, "counted", 3, 3).await;
    let _solo = room_of(&app, "alone", 3, 1).await;
    let stats = app.get("/stats").await.json();
    assert_eq!(
        (stats["rooms"].as_u64(), stats["roomsReady"].as_u64()),
        (Some(2), Some(1))
    );
}
