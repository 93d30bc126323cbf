//! Abuse resistance (issue 5): client addresses, guessing, rate and connection limits, origins,
//! operator access and security headers. Each test sets small limits of its own.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{Backend, Reply, TestApp, spawn_app, spawn_app_with, spawn_on};

async fn post_from(
    app: &TestApp,
    path: &str,
    forwarded_for: &str,
    body: serde_json::Value,
) -> Reply {
    let request = app
        .request("POST", path)
        .header("x-forwarded-for", forwarded_for)
        .body(body.to_string());
    app.send(request).await
}

fn assert_too_many(reply: &Reply) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.json(), json!({"error": "too_many_requests"}));
    let retry: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
}

/// A WebSocket upgrade's HTTP status (101 when it succeeded).
async fn upgrade_status(app: &TestApp, origin: Option<&str>) -> (u16, Option<TestSocket>) {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => (response.status().as_u16(), Some(socket)),
        Err(tungstenite::Error::Http(response)) => (response.status().as_u16(), None),
        Err(e) => panic!("{e}"),
    }
}

type TestSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::test]
async fn rest_requests_over_the_burst_get_429_with_retry_after() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| {
            c.limits.rest_burst = 3;
            c.limits.rest_rate_per_min = 60;
        })
        .await;
        for _ in 0..3 {
            assert_eq!(app.get("/api/rooms?roomid=x").await.status, 404);
        }
        assert_too_many(&app.get("/api/rooms?roomid=x").await);
        assert_too_many(&app.post_json("/api/rooms", &json!({})).await);
        // Not REST: the health message and the WebSocket are limited separately.
        assert_eq!(app.get("/").await.status, 200);
        app.connect_ws().await;
    }
}

#[tokio::test]
async fn pairing_requests_refused_for_their_body_spend_the_rest_budget_too() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| {
            c.limits.rest_burst = 4;
            c.limits.rest_rate_per_min = 1;
        })
        .await;
        // Create, accept and check count the rate in their own store step; a request that
        // never gets there (not JSON, a field missing or too large a body) counts all the same.
        assert_eq!(app.post_raw("/api/rooms", "{").await.status, 400);
        let no_client2 = json!({"joinid": "123456"});
        assert_eq!(
            app.post_json("/api/rooms/accept", &no_client2).await.status,
            400
        );
        let too_large = "x".repeat(20 * 1024);
        assert_eq!(
            app.post_raw("/api/rooms/check", too_large).await.status,
            413
        );
        let create = json!({"client1": "a", "expiresInSeconds": 60});
        assert_eq!(app.post_json("/api/rooms", &create).await.status, 201);
        // The budget is spent: every route says so, counted or not by the desk.
        assert_too_many(&app.post_raw("/api/rooms/accept", "{").await);
        assert_too_many(&app.post_json("/api/rooms", &create).await);
        assert_too_many(&app.get("/api/rooms?roomid=x").await);
    }
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    for backend in Backend::available() {
        let untrusted = spawn_on(backend, |c| {
            c.limits.rest_burst = 2;
            c.limits.rest_rate_per_min = 1;
        })
        .await;
        for _ in 0..2 {
            post_from(&untrusted, "/api/rooms/check", "198.51.100.1", json!({})).await;
        }
        // Another claimed address changes nothing: the socket peer is the client.
        assert_too_many(
            &post_from(&untrusted, "/api/rooms/check", "198.51.100.2", json!({})).await,
        );

        let trusted = spawn_on(backend, |c| {
            c.limits.rest_burst = 2;
            c.limits.rest_rate_per_min = 1;
            c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .await;
        for _ in 0..2 {
            post_from(&trusted, "/api/rooms/check", "198.51.100.1", json!({})).await;
        }
        assert_too_many(&post_from(&trusted, "/api/rooms/check", "198.51.100.1", json!({})).await);
        // The right-most untrusted entry is the client: what the client wrote left of it is ignored.
        let spoofed = post_from(
            &trusted,
            "/api/rooms/check",
            "203.0.113.5, 198.51.100.1",
            json!({}),
        )
        .await;
        assert_too_many(&spoofed);
        let other = post_from(&trusted, "/api/rooms/check", "198.51.100.2", json!({})).await;
        assert_eq!(other.status, 400);
    }
}

#[tokio::test]
async fn ipv6_clients_share_limits_within_a_64() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| {
            c.limits.rest_burst = 2;
            c.limits.rest_rate_per_min = 1;
            c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .await;
        post_from(&app, "/api/rooms/check", "2001:db8:1:2::1", json!({})).await;
        post_from(&app, "/api/rooms/check", "2001:db8:1:2::ffff", json!({})).await;
        assert_too_many(
            &post_from(&app, "/api/rooms/check", "2001:db8:1:2:abcd::9", json!({})).await,
        );
        let next_net = post_from(&app, "/api/rooms/check", "2001:db8:1:3::1", json!({})).await;
        assert_eq!(next_net.status, 400);
    }
}

#[tokio::test]
async fn failed_guesses_lock_the_address_out_of_accept_and_check() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| c.limits.guess_limit = 3).await;
        let code = app.create_code("devA").await;
        for i in 0..3 {
            let wrong = json!({"joinid": format!("wrong{i}"), "client2": format!("dev{i}")});
            assert_eq!(app.post_json("/api/rooms/accept", &wrong).await.status, 404);
        }
        // Even the right code, from another device id, is refused now.
        let right = json!({"joinid": code, "client2": "devB"});
        assert_too_many(&app.post_json("/api/rooms/accept", &right).await);
        let check = json!({"joinid": code, "client1": "devA"});
        assert_too_many(&app.post_json("/api/rooms/check", &check).await);
        // Creating a code the server picks is not guessing, and is still served.
        assert_eq!(
            app.post_json(
                "/api/rooms",
                &json!({"client1": "devC", "expiresInSeconds": 60})
            )
            .await
            .status,
            201
        );
        // Creating a code of one's choosing would tell whether it is live: refused like a guess.
        let chosen = json!({"joinid": code, "client1": "devC", "expiresInSeconds": 60});
        assert_too_many(&app.post_json("/api/rooms", &chosen).await);
        let free = json!({"joinid": "free-code", "client1": "devC", "expiresInSeconds": 60});
        assert_too_many(&app.post_json("/api/rooms", &free).await);
    }
}

#[tokio::test]
async fn creating_a_live_code_counts_as_a_failed_guess() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| c.limits.guess_limit = 3).await;
        let code = app.create_code("owner").await;
        for i in 0..3 {
            let probe =
                json!({"joinid": code, "client1": format!("prober{i}"), "expiresInSeconds": 60});
            let reply = app.post_json("/api/rooms", &probe).await;
            assert_eq!((reply.status, reply.error()), (409, "conflict".to_owned()));
        }
        // Locked out: probing is over, for live and free codes alike, and so is accepting.
        let probe = json!({"joinid": code, "client1": "prober", "expiresInSeconds": 60});
        assert_too_many(&app.post_json("/api/rooms", &probe).await);
        let accept = json!({"joinid": code, "client2": "prober"});
        assert_too_many(&app.post_json("/api/rooms/accept", &accept).await);
    }
}

#[tokio::test]
async fn a_concurrent_burst_gets_no_more_failed_guesses_than_the_limit() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| {
            c.limits.guess_limit = 5;
            c.limits.rest_burst = 1000;
        })
        .await;
        let guesses = (0..60).map(|i| {
            let body = json!({"joinid": format!("g{i}"), "client2": "burst"});
            let request = app
                .request("POST", "/api/rooms/accept")
                .header("content-type", "application/json")
                .body(body.to_string());
            app.send(request)
        });
        let replies = futures_util::future::join_all(guesses).await;
        let not_found = replies.iter().filter(|r| r.status == 404).count();
        let refused = replies.iter().filter(|r| r.status == 429).count();
        assert_eq!(not_found + refused, 60);
        assert!(not_found <= 5, "{not_found} failed guesses got through");
        // And the client is locked out now.
        let late = json!({"joinid": "late", "client2": "burst"});
        assert_too_many(&app.post_json("/api/rooms/accept", &late).await);
    }
}

#[tokio::test]
async fn live_codes_per_client_are_capped_with_too_many_pending() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| {
            c.limits.max_pending_per_client = 3;
            c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .await;
        for i in 0..3 {
            let body = json!({"client1": format!("d{i}"), "expiresInSeconds": 120});
            assert_eq!(app.post_json("/api/rooms", &body).await.status, 201);
        }
        let body = json!({"client1": "d4", "expiresInSeconds": 120});
        let reply = app.post_json("/api/rooms", &body).await;
        assert_eq!(reply.status, 429, "{}", reply.body);
        assert_eq!(reply.json(), json!({"error": "too_many_pending"}));
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=120).contains(&retry), "Retry-After {retry}");
        // Another address is unaffected; an expired code gives its place back.
        let other = post_from(&app, "/api/rooms", "198.51.100.7", body.clone()).await;
        assert_eq!(other.status, 201, "{}", other.body);
        let chosen = json!({"joinid": "mine", "client1": "d5", "expiresInSeconds": 120});
        assert_eq!(app.post_json("/api/rooms", &chosen).await.status, 429);
    }
}

#[tokio::test]
async fn a_pending_cap_of_zero_lets_one_client_hold_any_number_of_codes() {
    let app = spawn_app_with(|c| c.limits.max_pending_per_client = 0).await;
    for i in 0..30 {
        let body = json!({"client1": format!("d{i}"), "expiresInSeconds": 120});
        let reply = app.post_json("/api/rooms", &body).await;
        assert_eq!(reply.status, 201, "create {i}: {}", reply.body);
    }
}

#[tokio::test]
async fn an_expired_code_no_longer_counts_against_its_client() {
    let app = spawn_app_with(|c| c.limits.max_pending_per_client = 1).await;
    let code = app.create_code("first").await;
    let body = json!({"client1": "second", "expiresInSeconds": 60});
    assert_eq!(app.post_json("/api/rooms", &body).await.status, 429);
    app.expire_code(&code);
    assert_eq!(app.post_json("/api/rooms", &body).await.status, 201);
}

#[tokio::test]
async fn reconnecting_does_not_reset_the_guess_count() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| c.limits.guess_limit = 2).await;
        for i in 0..2 {
            // A fresh connection each time (reqwest would reuse one; this client does not).
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let reply = client
                .post(app.url("/api/rooms/check"))
                .body(json!({"joinid": format!("guess{i}"), "client1": "x"}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 404);
        }
        let reply = app
            .post_json(
                "/api/rooms/check",
                &json!({"joinid": "guess9", "client1": "y"}),
            )
            .await;
        assert_too_many(&reply);
    }
}

#[tokio::test]
async fn successful_pairings_do_not_count_as_guesses() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| c.limits.guess_limit = 2).await;
        for i in 0..6 {
            let roomid = app.pair(&format!("a{i}"), &format!("b{i}")).await;
            assert_eq!(roomid.len(), 48);
        }
    }
}

#[tokio::test]
async fn lock_outs_grow_with_repeated_offences() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| {
            c.limits.guess_limit = 1;
            c.limits.guess_block_secs = 1;
        })
        .await;
        let guess = json!({"joinid": "nope", "client2": "b"});
        assert_eq!(app.post_json("/api/rooms/accept", &guess).await.status, 404);
        let first = app.post_json("/api/rooms/accept", &guess).await;
        assert_eq!(first.header("retry-after"), Some("1"));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(app.post_json("/api/rooms/accept", &guess).await.status, 404);
        let second = app.post_json("/api/rooms/accept", &guess).await;
        assert_eq!(second.status, 429);
        assert_eq!(second.header("retry-after"), Some("2"));
    }
}

#[tokio::test]
async fn websocket_upgrades_over_the_rate_get_429() {
    let app = spawn_app_with(|c| c.limits.ws_upgrade_rate_per_min = 2).await;
    let (a, _sa) = upgrade_status(&app, None).await;
    let (b, _sb) = upgrade_status(&app, None).await;
    let (c, _) = upgrade_status(&app, None).await;
    assert_eq!((a, b, c), (101, 101, 429));
}

#[tokio::test]
async fn concurrent_connections_are_capped_per_client_and_freed_on_close() {
    let app = spawn_app_with(|c| c.limits.ws_max_connections_per_client = 2).await;
    let first = app.connect_ws().await;
    let _second = app.connect_ws().await;
    assert_eq!(upgrade_status(&app, None).await.0, 429);
    drop(first);
    let mut status = 0;
    for _ in 0..100 {
        status = upgrade_status(&app, None).await.0;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 101, "the closed connection's slot was never freed");
}

#[tokio::test]
async fn the_global_connection_cap_answers_503() {
    let app = spawn_app_with(|c| c.limits.ws_max_connections = 2).await;
    let _a = app.connect_ws().await;
    let _b = app.connect_ws().await;
    assert_eq!(upgrade_status(&app, None).await.0, 503);
}

/// A server whose connections may send a burst of three messages, then one a second.
async fn app_allowing_one_message_a_second_after_a_burst_of_three() -> TestApp {
    spawn_app_with(|c| {
        c.limits.ws_msg_rate_per_sec = 1;
        c.limits.ws_msg_burst = 3;
    })
    .await
}

#[tokio::test]
async fn messages_over_the_rate_are_refused_then_the_connection_is_closed() {
    let app = app_allowing_one_message_a_second_after_a_burst_of_three().await;
    let mut a = app.connect_ws().await;
    for _ in 0..4 {
        a.send_json(&json!({"type": "ping"})).await;
    }
    for _ in 0..3 {
        a.expect("pong").await;
    }
    a.expect_error("rate_limited").await;
    for _ in 0..30 {
        if a.stream
            .send(Message::text(r#"{"type":"ping"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(a.expect_close().await, Some(1008));
}

#[tokio::test]
async fn a_flood_read_in_one_go_is_answered_and_refused_before_the_rate_close() {
    let app = app_allowing_one_message_a_second_after_a_burst_of_three().await;
    let mut a = app.connect_ws().await;
    // One write: the server reads the whole flood before it gets to write anything, and the
    // last frames end the session (more than MAX_RATE_STRIKES refusals in a row).
    for _ in 0..40 {
        a.stream
            .feed(Message::text(r#"{"type":"ping"}"#))
            .await
            .unwrap();
    }
    a.stream.flush().await.unwrap();
    for _ in 0..3 {
        a.expect("pong").await;
    }
    a.expect_error("rate_limited").await;
    assert_eq!(a.expect_close().await, Some(1008));
}

#[tokio::test]
async fn websockets_from_origins_not_allowed_get_403() {
    let app = spawn_app_with(|c| {
        c.allowed_origins = Some(
            "https://app.example.com,https://*.preview.example.com"
                .parse()
                .unwrap(),
        );
    })
    .await;
    assert_eq!(
        upgrade_status(&app, Some("https://evil.example.net"))
            .await
            .0,
        403
    );
    assert_eq!(
        upgrade_status(&app, Some("https://app.example.com"))
            .await
            .0,
        101
    );
    assert_eq!(
        upgrade_status(&app, Some("https://pr-7.preview.example.com"))
            .await
            .0,
        101
    );
    // Native apps send no Origin.
    assert_eq!(upgrade_status(&app, None).await.0, 101);
}

#[tokio::test]
async fn cors_reflects_an_allowed_origin_and_omits_others() {
    let app =
        spawn_app_with(|c| c.allowed_origins = Some("https://app.example.com".parse().unwrap()))
            .await;
    let allowed = app
        .send(
            app.request("GET", "/")
                .header("origin", "https://app.example.com"),
        )
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    let other = app
        .send(
            app.request("GET", "/")
                .header("origin", "https://evil.example.net"),
        )
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(
        (other.status, other.error()),
        (403, "origin_not_allowed".to_owned()),
        "a foreign page cannot make its visitors act"
    );

    let open = spawn_app_with(|_| {}).await;
    let any = open
        .send(
            open.request("GET", "/")
                .header("origin", "https://evil.example.net"),
        )
        .await;
    assert_eq!(any.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn the_room_list_needs_the_admin_token() {
    let closed = spawn_app_with(|_| {}).await;
    assert_eq!(closed.get("/rooms").await.status, 404);

    let app = spawn_app_with(|c| c.admin_token = Some("s3cret-token".parse().unwrap())).await;
    let (_a, _b) = app.joined_pair("full-room").await;
    let mut lone = app.connect_ws().await;
    lone.join("half-room").await;
    lone.expect("room_joined").await;

    let none = app.get("/rooms").await;
    assert_eq!((none.status, none.error()), (401, "unauthorized".into()));
    let bad = app
        .send(app.request("GET", "/rooms").bearer_auth("s3cret-tokem"))
        .await;
    assert_eq!(bad.status, 401);
    let good = app
        .send(app.request("GET", "/rooms").bearer_auth("s3cret-token"))
        .await;
    assert_eq!(good.status, 200);
    assert_eq!(
        good.json(),
        json!({"rooms": [
            {"roomId": "full-room", "protocol": "signalpost", "userCount": 2, "capacity": 2, "full": true},
            {"roomId": "half-room", "protocol": "signalpost", "userCount": 1, "capacity": 2, "full": false},
        ], "totalRooms": 2})
    );
}

#[tokio::test]
async fn answers_carry_security_headers() {
    let app = spawn_app_with(|_| {}).await;
    for reply in [
        app.get("/").await,
        app.get("/nope").await,
        app.post_json("/api/rooms", &json!({})).await,
    ] {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
        assert!(
            reply
                .header("content-security-policy")
                .unwrap()
                .contains("default-src 'none'")
        );
    }
}

#[tokio::test]
async fn with_allowed_origins_set_any_request_from_another_origin_is_refused_before_it_acts() {
    let app =
        spawn_app_with(|c| c.allowed_origins = Some("https://app.example.com".parse().unwrap()))
            .await;
    let create = json!({"client1": "victim", "expiresInSeconds": 60}).to_string();
    for (method, path) in [
        ("POST", "/api/rooms"),
        ("POST", "/api/rooms/accept"),
        ("GET", "/api/rooms?roomid=x"),
        ("DELETE", "/api/rooms?roomid=x"),
        ("GET", "/health"),
        ("GET", "/api/turn-credentials"),
        ("OPTIONS", "/api/rooms"),
    ] {
        let reply = app
            .send(
                app.request(method, path)
                    .header("origin", "https://evil.example.net")
                    .header("content-type", "text/plain")
                    .body(create.clone()),
            )
            .await;
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert_eq!(reply.json(), json!({"error": "origin_not_allowed"}));
    }
    let count: i64 = app
        .db()
        .query_row("SELECT count(*) FROM pendings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0, "the refused create did nothing");
    // The allowed origin, and clients that send no Origin at all, are served.
    let allowed = app
        .send(
            app.request("POST", "/api/rooms")
                .header("origin", "https://app.example.com")
                .header("content-type", "application/json")
                .body(create.clone()),
        )
        .await;
    assert_eq!(allowed.status, 201);
    let native = app
        .send(app.request("POST", "/api/rooms").body(create))
        .await;
    assert_eq!(native.status, 201);
}

#[tokio::test]
async fn posts_and_deletes_that_are_not_json_get_415_whatever_the_settings() {
    let app = spawn_app().await;
    let body = json!({"client1": "d", "expiresInSeconds": 60}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for (method, path) in [
            ("POST", "/api/rooms"),
            ("POST", "/api/user/purge"),
            ("DELETE", "/api/rooms"),
        ] {
            let reply = app
                .send(
                    app.request(method, path)
                        .header("content-type", content_type)
                        .body(body.clone()),
                )
                .await;
            assert_eq!(reply.status, 415, "{method} {path} as {content_type}");
            assert_eq!(reply.json(), json!({"error": "unsupported_media_type"}));
        }
    }
    for content_type in [
        Some("application/json"),
        Some("Application/JSON; charset=utf-8"),
        None,
    ] {
        let mut request = app.request("POST", "/api/rooms").body(body.clone());
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        assert_eq!(app.send(request).await.status, 201, "{content_type:?}");
    }
}

#[tokio::test]
async fn operator_endpoints_count_toward_the_rest_rate() {
    for path in ["/health", "/stats", "/metrics", "/rooms", "/logs"] {
        let app = spawn_app_with(|c| {
            c.limits.rest_burst = 2;
            c.limits.rest_rate_per_min = 1;
        })
        .await;
        app.get(path).await;
        app.get(path).await;
        assert_too_many(&app.get(path).await);
    }
}

#[tokio::test]
async fn a_wrong_operator_token_counts_as_a_failed_guess() {
    let app = spawn_app_with(|c| {
        c.limits.guess_limit = 3;
        c.admin_token = Some("admin-secret".parse().unwrap());
        c.metrics_token = Some("metrics-secret".parse().unwrap());
    })
    .await;
    let with_bearer = |path: &str, token: &str| {
        app.request("GET", path)
            .header("authorization", format!("Bearer {token}"))
    };
    assert_eq!(app.send(with_bearer("/rooms", "guess1")).await.status, 401);
    assert_eq!(
        app.send(with_bearer("/metrics", "guess2")).await.status,
        401
    );
    assert_eq!(app.get("/logs?key=guess3").await.status, 401);
    // Locked out: even the right token is refused, and so are join codes.
    assert_too_many(&app.send(with_bearer("/rooms", "admin-secret")).await);
    let accept = json!({"joinid": "123456", "client2": "x"});
    assert_too_many(&app.post_json("/api/rooms/accept", &accept).await);
}

#[tokio::test]
async fn a_right_operator_token_and_a_missing_one_count_as_no_guess() {
    let app = spawn_app_with(|c| {
        c.limits.guess_limit = 2;
        c.admin_token = Some("admin-secret".parse().unwrap());
    })
    .await;
    for _ in 0..5 {
        assert_eq!(app.get("/rooms").await.status, 401);
        let reply = app
            .send(
                app.request("GET", "/rooms")
                    .header("authorization", "Bearer admin-secret"),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
}
