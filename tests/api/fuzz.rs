//! Property tests: no request body and no WebSocket frame, however odd, crashes or wedges the
//! server. Each property runs against one live server; after every case the server must still
//! answer, and the session must still respond to a ping.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, WsClient, spawn_app};

const POST_PATHS: [&str; 5] = [
    "/api/rooms",
    "/api/rooms/accept",
    "/api/rooms/check",
    "/api/user/purge",
    "/api/rooms/abc/accept",
];

const FIELDS: [&str; 10] = [
    "joinid",
    "exp",
    "expiresInSeconds",
    "client1",
    "client2",
    "deviceId",
    "deviceIds",
    "roomid",
    "roomId",
    "type",
];

const TYPES: [&str; 10] = [
    "join_room",
    "leave_room",
    "webrtc_offer",
    "webrtc_answer",
    "ice_candidate",
    "key_exchange",
    "key_exchange_complete",
    "ping",
    "JOIN_ROOM",
    "",
];

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[0-9]{6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object using the API's own field names with arbitrary values.
fn api_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(&FIELDS[..]), json_value()), 0..6).prop_map(
        |fields| {
            let map: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            Value::Object(map)
        },
    )
}

async fn still_answers(app: &TestApp) -> bool {
    app.get("/").await.status == 200
}

#[test]
fn arbitrary_request_bodies_never_cause_a_server_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let bytes = prop::collection::vec(any::<u8>(), 0..1024).prop_map(|b| (b, None::<Value>));
    let objects = api_object().prop_map(|v| (v.to_string().into_bytes(), Some(v)));
    let body = prop_oneof![bytes, objects];
    runner(300)
        .run(
            &(prop::sample::select(&POST_PATHS[..]), body),
            |(path, (body, _))| {
                let reply = rt.block_on(app.post_raw(path, body));
                prop_assert!(
                    reply.status < 500,
                    "{path}: {} {}",
                    reply.status,
                    reply.body
                );
                if reply.status != 204 {
                    prop_assert!(
                        serde_json::from_str::<Value>(&reply.body).is_ok(),
                        "{}",
                        reply.body
                    );
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(rt.block_on(still_answers(&app)));
}

#[test]
fn arbitrary_queries_never_cause_a_server_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    runner(200)
        .run(&("[ -~]{0,60}", prop::bool::ANY), |(query, delete)| {
            let path = format!("/api/rooms?{}", query.replace(['#', ' '], "%20"));
            let reply = if delete {
                rt.block_on(app.send(app.request("DELETE", &path)))
            } else {
                rt.block_on(app.get(&path))
            };
            prop_assert!(
                reply.status < 500,
                "{path}: {} {}",
                reply.status,
                reply.body
            );
            Ok(())
        })
        .unwrap();
    assert!(rt.block_on(still_answers(&app)));
}

/// Sends a ping and reads until the pong: the session is alive and not wedged.
async fn responds(client: &mut WsClient) -> bool {
    client.send_json(&json!({"type": "ping"})).await;
    loop {
        match client.next_frame().await {
            Some(Message::Text(t)) if t.as_str() == r#"{"type":"pong"}"# => return true,
            Some(Message::Close(_)) | None => return false,
            Some(_) => continue,
        }
    }
}

#[test]
fn arbitrary_text_frames_never_crash_or_wedge_a_session() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let (a, mut b) = rt.block_on(app.joined_pair("fuzz"));
    let a = tokio::sync::Mutex::new(a);
    let typed = (prop::sample::select(&TYPES[..]), api_object()).prop_map(|(t, mut v)| {
        v["type"] = Value::from(t);
        v.to_string()
    });
    let frame = prop_oneof![".{0,200}", typed, json_value().prop_map(|v| v.to_string())];
    runner(300)
        .run(&frame, |text| {
            rt.block_on(async {
                let mut a = a.lock().await;
                a.send_text(&text).await;
                assert!(responds(&mut a).await, "session wedged after {text:?}");
            });
            Ok(())
        })
        .unwrap();
    // The peer saw whatever was relayed, and is itself fine.
    assert!(rt.block_on(responds(&mut b)));
    assert!(rt.block_on(still_answers(&app)));
}

#[test]
fn arbitrary_binary_frames_are_refused_without_harm() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let a = tokio::sync::Mutex::new(rt.block_on(app.connect_ws()));
    runner(100)
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            rt.block_on(async {
                use futures_util::SinkExt;
                let mut a = a.lock().await;
                a.stream.send(Message::binary(bytes)).await.unwrap();
                assert!(responds(&mut a).await);
            });
            Ok(())
        })
        .unwrap();
}
