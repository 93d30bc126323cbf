//! The REST pairing contract (issue 2), rule by rule, over real HTTP.

use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, spawn_app_with, spawn_on};

// ---- 1. GET / ----

#[tokio::test]
async fn root_answers_a_plain_text_active_message() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let reply = app.get("/").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(reply.body.contains("signalpost") && reply.body.contains("active"));
        assert!(!reply.body.trim().contains('\n'));
    }
}

// ---- 2. POST /api/rooms ----

#[tokio::test]
async fn create_without_joinid_generates_a_six_digit_code() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        for joinid in [None, Some(Value::Null), Some(json!(""))] {
            let mut body = json!({"client1": "devA", "expiresInSeconds": 60});
            if let Some(j) = joinid {
                body["joinid"] = j;
            }
            let reply = app.post_json("/api/rooms", &body).await;
            assert_eq!(reply.status, 201, "{}", reply.body);
            let v = reply.json();
            assert_eq!(v["ok"], true);
            let code = v["joinid"].as_str().unwrap();
            assert!(
                code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
                "{code}"
            );
            assert!(v["exp"].as_str().unwrap().ends_with('Z'));
        }
    }
}

#[tokio::test]
async fn create_with_a_chosen_joinid_echoes_it_and_the_expiry_in_utc() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let exp = (chrono::Utc::now() + chrono::Duration::hours(1))
            .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string();
        let reply = app
            .post_json(
                "/api/rooms",
                &json!({"joinid": "my-Code_1", "exp": exp, "client1": "a"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let v = reply.json();
        assert_eq!(v["joinid"], "my-Code_1");
        let answered = chrono::DateTime::parse_from_rfc3339(v["exp"].as_str().unwrap()).unwrap();
        assert_eq!(
            answered,
            chrono::DateTime::parse_from_rfc3339(&exp).unwrap()
        );
        assert!(v["exp"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn create_accepts_the_sql_timestamp_format_as_utc() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let exp = (chrono::Utc::now() + chrono::Duration::minutes(5))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let reply = app
            .post_json(
                "/api/rooms",
                &json!({"joinid": "sqlfmt", "exp": exp, "client1": "a"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let expected = exp.replace(' ', "T") + ".000Z";
        assert_eq!(reply.json()["exp"], expected);
    }
}

#[tokio::test]
async fn exp_is_always_answered_with_milliseconds() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let soon = chrono::Utc::now() + chrono::Duration::minutes(5);
        let forms = [
            json!({"expiresInSeconds": 60}),
            json!({"exp": soon.format("%Y-%m-%d %H:%M:%S").to_string()}),
            json!({"exp": soon.format("%Y-%m-%dT%H:%M:%SZ").to_string()}),
            json!({"exp": soon.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()}),
        ];
        for (i, form) in forms.into_iter().enumerate() {
            let mut body = form.clone();
            body["client1"] = json!(format!("d{i}"));
            let reply = app.post_json("/api/rooms", &body).await;
            assert_eq!(reply.status, 201, "{}", reply.body);
            let exp = reply.json()["exp"].as_str().unwrap().to_owned();
            let shape = chrono::NaiveDateTime::parse_from_str(&exp, "%Y-%m-%dT%H:%M:%S%.3fZ");
            assert!(shape.is_ok() && exp.len() == 24, "{form}: {exp}");
        }
    }
}

#[tokio::test]
async fn create_refuses_bad_joinids() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let long = "x".repeat(65);
        for bad in [
            json!("has space"),
            json!("ünï"),
            json!(long),
            json!(12),
            json!(["a"]),
        ] {
            let body = json!({"joinid": bad, "expiresInSeconds": 60, "client1": "a"});
            let reply = app.post_json("/api/rooms", &body).await;
            assert_eq!(
                (reply.status, reply.error()),
                (400, "invalid_joinid".into()),
                "{bad}"
            );
        }
    }
}

#[tokio::test]
async fn create_refuses_expiries_in_the_past_too_far_ahead_or_unreadable() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
        let far = (chrono::Utc::now() + chrono::Duration::hours(25)).to_rfc3339();
        for bad in [
            json!(past),
            json!(far),
            json!("tomorrow"),
            json!(1_900_000_000),
            json!("2030-01-01"),
        ] {
            let reply = app
                .post_json("/api/rooms", &json!({"exp": bad, "client1": "a"}))
                .await;
            assert_eq!(
                (reply.status, reply.error()),
                (400, "invalid_exp".into()),
                "{bad}"
            );
        }
    }
}

#[tokio::test]
async fn an_expiry_earlier_the_same_utc_day_is_refused() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        // The old design compared "YYYY-MM-DD HH:MM:SS" text with ISO text and let this through.
        let earlier_today = (chrono::Utc::now() - chrono::Duration::seconds(2))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let reply = app
            .post_json("/api/rooms", &json!({"exp": earlier_today, "client1": "a"}))
            .await;
        assert_eq!((reply.status, reply.error()), (400, "invalid_exp".into()));
    }
}

#[tokio::test]
async fn expires_in_seconds_wins_and_is_range_checked() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let body = json!({"exp": "not a date", "expiresInSeconds": 120, "client1": "a"});
        let reply = app.post_json("/api/rooms", &body).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let exp =
            chrono::DateTime::parse_from_rfc3339(reply.json()["exp"].as_str().unwrap()).unwrap();
        let ahead = exp.timestamp_millis() - chrono::Utc::now().timestamp_millis();
        assert!((100_000..=120_000).contains(&ahead), "{ahead}");

        for bad in [
            json!(0),
            json!(86_401),
            json!("60"),
            json!(2.5),
            json!(-3),
            json!(true),
        ] {
            let body = json!({"expiresInSeconds": bad, "client1": "a"});
            let reply = app.post_json("/api/rooms", &body).await;
            assert_eq!(
                (reply.status, reply.error()),
                (400, "invalid_expiresInSeconds".into()),
                "{bad}"
            );
        }
    }
}

#[tokio::test]
async fn create_reports_missing_fields_in_order() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let cases = [
            (json!({}), "missing_exp"),
            (json!({"client1": "a"}), "missing_exp"),
            (json!({"exp": null, "client1": "a"}), "missing_exp"),
            (json!({"expiresInSeconds": 60}), "missing_client1"),
            (
                json!({"expiresInSeconds": 60, "client1": ""}),
                "missing_client1",
            ),
            (
                json!({"expiresInSeconds": 60, "client1": null}),
                "missing_client1",
            ),
            (
                json!({"expiresInSeconds": 60, "client1": 7}),
                "invalid_client1",
            ),
            (
                json!({"expiresInSeconds": 60, "client1": "x".repeat(129)}),
                "invalid_client1",
            ),
            (
                json!({"expiresInSeconds": 60, "client1": "a\u{7}b"}),
                "invalid_client1",
            ),
        ];
        for (body, code) in cases {
            let reply = app.post_json("/api/rooms", &body).await;
            assert_eq!((reply.status, reply.error()), (400, code.into()), "{body}");
        }
    }
}

#[tokio::test]
async fn a_live_joinid_is_a_conflict_and_an_expired_one_is_replaced() {
    let app = spawn_app().await;
    let body = json!({"joinid": "taken", "expiresInSeconds": 60, "client1": "a"});
    assert_eq!(app.post_json("/api/rooms", &body).await.status, 201);
    let again = json!({"joinid": "taken", "expiresInSeconds": 60, "client1": "b"});
    let reply = app.post_json("/api/rooms", &again).await;
    assert_eq!(
        (reply.status, reply.json()),
        (409, json!({"error": "conflict"}))
    );

    app.expire_code("taken");
    assert_eq!(app.post_json("/api/rooms", &again).await.status, 201);
    let owner: String = app
        .db()
        .query_row(
            "SELECT client1 FROM pendings WHERE joinid = 'taken'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(owner, "b");
}

// ---- 3. POST /api/rooms/accept ----

#[tokio::test]
async fn accepting_a_code_creates_a_room_with_a_48_hex_id() {
    let app = spawn_app().await;
    let code = app.create_code("devA").await;
    let reply = app
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": code, "client2": "devB"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let roomid = reply.json()["roomid"].as_str().unwrap().to_owned();
    assert_eq!(roomid.len(), 48);
    assert!(
        roomid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let (c1, c2): (String, String) = app
        .db()
        .query_row(
            "SELECT client1, client2 FROM rooms WHERE roomid = ?1",
            [&roomid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((c1.as_str(), c2.as_str()), ("devA", "devB"));
}

#[tokio::test]
async fn accepting_an_unknown_or_expired_code_is_not_found() {
    let app = spawn_app().await;
    let reply = app
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": "nope", "client2": "b"}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error()),
        (404, "not_found_or_expired".into())
    );

    let code = app.create_code("a").await;
    // Expired a moment ago, the same UTC day: must be treated as absent.
    app.expire_code(&code);
    let reply = app
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": code, "client2": "b"}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error()),
        (404, "not_found_or_expired".into())
    );
}

#[tokio::test]
async fn second_accept_by_another_device_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    let code = app.create_code("devA").await;
    let first = app
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": code, "client2": "devB"}),
        )
        .await;
    let roomid = first.json()["roomid"].clone();
    let row = |app: &crate::helpers::TestApp| -> (String, String, i64) {
        app.db()
            .query_row(
                "SELECT client2, roomid, exp FROM pendings WHERE joinid = ?1",
                [&code],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let before = row(&app);
    let second = app
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": code, "client2": "devC"}),
        )
        .await;
    assert_eq!(
        (second.status, second.json()),
        (409, json!({"error": "conflict"}))
    );
    assert_eq!(row(&app), before);
    let check = app
        .post_json(
            "/api/rooms/check",
            &json!({"joinid": code, "client1": "devA"}),
        )
        .await;
    assert_eq!(check.json()["roomid"], roomid);
}

#[tokio::test]
async fn the_same_device_accepting_again_gets_the_same_room() {
    let app = spawn_app().await;
    let code = app.create_code("devA").await;
    let body = json!({"joinid": code, "client2": "devB"});
    let first = app.post_json("/api/rooms/accept", &body).await;
    let again = app.post_json("/api/rooms/accept", &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(first.json(), again.json());
    let rooms: i64 = app
        .db()
        .query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rooms, 1);
}

#[tokio::test]
async fn a_device_cannot_accept_its_own_code() {
    let app = spawn_app().await;
    let code = app.create_code("devA").await;
    let reply = app
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": code, "client2": "devA"}),
        )
        .await;
    assert_eq!((reply.status, reply.error()), (409, "conflict".into()));
    let accepted: Option<String> = app
        .db()
        .query_row(
            "SELECT client2 FROM pendings WHERE joinid = ?1",
            [&code],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(accepted, None);
}

#[tokio::test]
async fn twenty_concurrent_accepts_of_one_code_yield_exactly_one_room() {
    let app = spawn_app().await;
    let code = app.create_code("devA").await;
    let attempts = (0..20).map(|i| {
        let body = json!({"joinid": code, "client2": format!("dev{i}")});
        let app = &app;
        async move { app.post_json("/api/rooms/accept", &body).await }
    });
    let replies = futures_util::future::join_all(attempts).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let conflicts = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!((ok, conflicts), (1, 19), "{replies:?}");
    let rooms: i64 = app
        .db()
        .query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rooms, 1);
}

#[tokio::test]
async fn accept_reports_missing_and_invalid_fields_in_order() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let cases = [
            (json!({}), "missing_joinid"),
            (json!({"client2": "b"}), "missing_joinid"),
            (json!({"joinid": "abc"}), "missing_client2"),
            (json!({"joinid": 5, "client2": "b"}), "invalid_joinid"),
            (
                json!({"joinid": "abc", "client2": {"id": 1}}),
                "invalid_client2",
            ),
        ];
        for (body, code) in cases {
            let reply = app.post_json("/api/rooms/accept", &body).await;
            assert_eq!((reply.status, reply.error()), (400, code.into()), "{body}");
        }
    }
}

// ---- 4. POST /api/rooms/check ----

#[tokio::test]
async fn check_is_no_content_until_accepted_then_the_room_every_time() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let code = app.create_code("devA").await;
        let check = json!({"joinid": code, "client1": "devA"});
        let waiting = app.post_json("/api/rooms/check", &check).await;
        assert_eq!((waiting.status, waiting.body.as_str()), (204, ""));

        let accepted = app
            .post_json(
                "/api/rooms/accept",
                &json!({"joinid": code, "client2": "devB"}),
            )
            .await;
        for _ in 0..3 {
            let reply = app.post_json("/api/rooms/check", &check).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.json(), accepted.json());
        }
    }
}

#[tokio::test]
async fn check_by_another_client1_or_of_an_expired_code_is_not_found() {
    let app = spawn_app().await;
    let code = app.create_code("devA").await;
    let reply = app
        .post_json(
            "/api/rooms/check",
            &json!({"joinid": code, "client1": "devX"}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error()),
        (404, "not_found_or_expired".into())
    );
    app.expire_code(&code);
    let reply = app
        .post_json(
            "/api/rooms/check",
            &json!({"joinid": code, "client1": "devA"}),
        )
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn check_finds_the_room_through_the_pending_row_not_the_client_pair() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        // Two pairings of the same two devices: each check answers its own room.
        let first = app.create_code("devA").await;
        let second = app.create_code("devA").await;
        let r1 = app
            .post_json(
                "/api/rooms/accept",
                &json!({"joinid": first, "client2": "devB"}),
            )
            .await
            .json();
        let r2 = app
            .post_json(
                "/api/rooms/accept",
                &json!({"joinid": second, "client2": "devB"}),
            )
            .await
            .json();
        assert_ne!(r1, r2);
        let c1 = app
            .post_json(
                "/api/rooms/check",
                &json!({"joinid": first, "client1": "devA"}),
            )
            .await;
        let c2 = app
            .post_json(
                "/api/rooms/check",
                &json!({"joinid": second, "client1": "devA"}),
            )
            .await;
        assert_eq!((c1.json(), c2.json()), (r1, r2));
    }
}

#[tokio::test]
async fn check_reports_missing_fields_in_order() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let reply = app
            .post_json("/api/rooms/check", &json!({"client1": "a"}))
            .await;
        assert_eq!(reply.error(), "missing_joinid");
        let reply = app
            .post_json("/api/rooms/check", &json!({"joinid": "abc"}))
            .await;
        assert_eq!(reply.error(), "missing_client1");
    }
}

// ---- 5. GET /api/rooms?roomid= ----

#[tokio::test]
async fn a_room_is_looked_up_by_id() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let roomid = app.pair("devA", "devB").await;
        let reply = app.get(&format!("/api/rooms?roomid={roomid}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json(),
            json!({"roomid": roomid, "client1": "devA", "client2": "devB",
                   "capacity": 2, "members": ["devA", "devB"]})
        );
        let missing = app.get("/api/rooms?roomid=nosuchroom").await;
        assert_eq!(
            (missing.status, missing.json()),
            (404, json!({"error": "not_found"}))
        );
        let none = app.get("/api/rooms").await;
        assert_eq!((none.status, none.error()), (400, "missing_roomid".into()));
    }
}

// ---- 6. DELETE /api/rooms ----

#[tokio::test]
async fn deleting_a_room_by_body_or_query_is_idempotent() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let roomid = app.pair("devA", "devB").await;
        let reply = app
            .send(
                app.request("DELETE", "/api/rooms")
                    .body(json!({"roomid": roomid}).to_string()),
            )
            .await;
        assert_eq!(
            (reply.status, reply.json()),
            (200, json!({"ok": true, "deleted": 1}))
        );
        let again = app
            .send(app.request("DELETE", &format!("/api/rooms?roomid={roomid}")))
            .await;
        assert_eq!(
            (again.status, again.json()),
            (200, json!({"ok": true, "deleted": 0}))
        );
        assert_eq!(
            app.get(&format!("/api/rooms?roomid={roomid}")).await.status,
            404
        );

        let other = app.pair("devC", "devD").await;
        let by_query = app
            .send(app.request("DELETE", &format!("/api/rooms?roomid={other}")))
            .await;
        assert_eq!(by_query.json()["deleted"], 1);
        let none = app.send(app.request("DELETE", "/api/rooms")).await;
        assert_eq!((none.status, none.error()), (400, "missing_roomid".into()));
    }
}

// ---- 7. POST /api/user/purge ----

#[tokio::test]
async fn purging_a_device_deletes_its_rooms_and_codes_on_both_sides() {
    let app = spawn_app().await;
    app.pair("devA", "devB").await;
    app.pair("devC", "devA").await;
    app.create_code("devA").await;
    let keep = app.pair("devC", "devD").await;
    let reply = app
        .post_json("/api/user/purge", &json!({"deviceId": "devA"}))
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            200,
            json!({"ok": true, "roomsDeleted": 2, "pendingsDeleted": 3})
        )
    );
    let rooms: i64 = app
        .db()
        .query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rooms, 1);
    assert_eq!(
        app.get(&format!("/api/rooms?roomid={keep}")).await.status,
        200
    );
}

#[tokio::test]
async fn purging_a_list_of_devices() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        app.pair("devA", "devB").await;
        app.pair("devC", "devD").await;
        let reply = app
            .post_json(
                "/api/user/purge",
                &json!({"deviceIds": ["devA", "devD", "nobody"]}),
            )
            .await;
        assert_eq!(
            reply.json(),
            json!({"ok": true, "roomsDeleted": 2, "pendingsDeleted": 2})
        );
    }
}

#[tokio::test]
async fn purge_refuses_missing_and_malformed_device_lists() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let reply = app.post_json("/api/user/purge", &json!({})).await;
        assert_eq!(
            (reply.status, reply.error()),
            (400, "missing_deviceId".into())
        );
        let too_many: Vec<String> = (0..101).map(|i| format!("d{i}")).collect();
        for bad in [
            json!([]),
            json!("devA"),
            json!([1, 2]),
            json!(too_many),
            json!([""]),
        ] {
            let reply = app
                .post_json("/api/user/purge", &json!({"deviceIds": bad}))
                .await;
            assert_eq!(
                (reply.status, reply.error()),
                (400, "invalid_deviceIds".into()),
                "{bad}"
            );
        }
    }
}

// ---- 8. Legacy paths ----

#[tokio::test]
async fn legacy_paths_answer_gone() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let reply = app.post_json("/api/rooms/abc123/accept", &json!({})).await;
        assert_eq!(
            (reply.status, reply.json()),
            (410, json!({"error": "use_new_endpoints"}))
        );
        let reply = app.get("/api/rooms/abc123").await;
        assert_eq!(
            (reply.status, reply.error()),
            (410, "use_new_endpoints".into())
        );
    }
}

// ---- 9. Unknown paths and methods ----

#[tokio::test]
async fn unknown_paths_are_not_found_and_wrong_methods_not_allowed() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        for path in ["/nope", "/api", "/api/rooms/a/b/c", "/api/user"] {
            let reply = app.get(path).await;
            assert_eq!(
                (reply.status, reply.json()),
                (404, json!({"error": "not_found"})),
                "{path}"
            );
        }
        for (method, path) in [
            ("PUT", "/api/rooms"),
            ("GET", "/api/rooms/accept"),
            ("GET", "/api/rooms/check"),
            ("DELETE", "/api/user/purge"),
            ("PATCH", "/api/rooms/accept"),
        ] {
            let reply = app.send(app.request(method, path)).await;
            assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        }
    }
}

// ---- CORS ----

#[tokio::test]
async fn every_answer_carries_cors_headers_and_options_is_no_content() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let replies = [
            app.get("/").await,
            app.get("/nope").await,
            app.post_json("/api/rooms", &json!({})).await,
            app.send(app.request("OPTIONS", "/api/rooms/accept")).await,
            app.send(app.request("OPTIONS", "/any/path/at/all")).await,
        ];
        for reply in &replies {
            assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
            assert_eq!(
                reply.header("access-control-allow-headers"),
                Some("Origin, X-Requested-With, Content-Type, Accept, Authorization")
            );
            assert_eq!(
                reply.header("access-control-allow-methods"),
                Some("GET, POST, DELETE, OPTIONS")
            );
        }
        assert_eq!(replies[3].status, 204);
        assert_eq!(replies[4].status, 204);
    }
}

// ---- 10. Bad bodies ----

#[tokio::test]
async fn malformed_and_non_object_bodies_are_invalid_json() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let bodies: [&[u8]; 8] = [
            b"{",
            b"[1,2]",
            b"\"str\"",
            b"null",
            b"42",
            b"\xff\xfe\x00",
            b"{\"a\":1}{",
            b"",
        ];
        for path in [
            "/api/rooms",
            "/api/rooms/accept",
            "/api/rooms/check",
            "/api/user/purge",
        ] {
            for body in bodies {
                let reply = app.post_raw(path, body.to_vec()).await;
                assert_eq!(
                    (reply.status, reply.error()),
                    (400, "invalid_json".into()),
                    "{path} {body:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn bodies_over_16_kib_are_refused_with_or_without_a_length() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let big = format!(r#"{{"client1":"a","pad":"{}"}}"#, "x".repeat(16 * 1024));
        let reply = app.post_raw("/api/rooms", big.clone()).await;
        assert_eq!(
            (reply.status, reply.error()),
            (413, "payload_too_large".into())
        );

        // Chunked, so there is no Content-Length to check up front.
        let chunks: Vec<Result<String, std::io::Error>> = big
            .as_bytes()
            .chunks(1000)
            .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
            .collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let reply = app.post_raw("/api/rooms", body).await;
        assert_eq!(
            (reply.status, reply.error()),
            (413, "payload_too_large".into())
        );

        let just_fits = format!(
            r#"{{"client1":"a","expiresInSeconds":5,"p":"{}"}}"#,
            "x".repeat(16 * 1024 - 60)
        );
        assert!(just_fits.len() <= 16 * 1024);
        assert_eq!(app.post_raw("/api/rooms", just_fits).await.status, 201);
    }
}

#[tokio::test]
async fn odd_unicode_is_stored_and_returned_intact() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let weird = "🙂\u{200d}👩‍👩‍👧 ǅ ﷽ \u{feff}\u{202e}rtl \u{10ffff}";
        let roomid = app.pair(weird, "Ω≈ç√").await;
        let reply = app.get(&format!("/api/rooms?roomid={roomid}")).await;
        assert_eq!(reply.json()["client1"], weird);
        assert_eq!(reply.json()["client2"], "Ω≈ç√");
    }
}

#[tokio::test]
async fn no_body_of_any_shape_causes_a_server_error() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let values = [
            json!(null),
            json!(true),
            json!(-1),
            json!(1e308),
            json!(""),
            json!("x".repeat(200)),
            json!([]),
            json!({}),
            json!({"nested": {"deep": [1, 2, {"x": null}]}}),
            json!("\u{0}"),
            json!("2030-01-01T00:00:00Z"),
            json!(u64::MAX),
            json!(["a", "a", "a"]),
        ];
        let fields = [
            "joinid",
            "exp",
            "expiresInSeconds",
            "client1",
            "client2",
            "deviceId",
            "deviceIds",
            "roomid",
        ];
        for path in [
            "/api/rooms",
            "/api/rooms/accept",
            "/api/rooms/check",
            "/api/user/purge",
        ] {
            for field in fields {
                for value in &values {
                    let mut body = json!({"joinid": "abc", "client1": "a", "client2": "b", "expiresInSeconds": 30});
                    body[field] = value.clone();
                    let reply = app.post_json(path, &body).await;
                    assert!(
                        reply.status < 500,
                        "{path} {body}: {} {}",
                        reply.status,
                        reply.body
                    );
                    assert!(reply.status == 204 || reply.json().is_object());
                }
            }
        }
        let deep = "[".repeat(5_000) + &"]".repeat(5_000);
        let reply = app.post_raw("/api/rooms", deep).await;
        assert_eq!(reply.status, 400);
    }
}

// ---- USE_SQLITE=false ----

#[tokio::test]
async fn with_sqlite_off_the_pairing_routes_are_not_found() {
    let app = spawn_app_with(|c| c.use_sqlite = false).await;
    let reply = app
        .post_json(
            "/api/rooms",
            &json!({"client1": "a", "expiresInSeconds": 60}),
        )
        .await;
    assert_eq!((reply.status, reply.error()), (404, "not_found".into()));
    assert_eq!(app.get("/api/rooms?roomid=x").await.status, 404);
    assert_eq!(app.get("/").await.status, 200);
    assert!(!app.db_path.exists());
}

/// Joins `room` as `device` and reads until `room_closed` (panics if it never comes).
async fn expect_room_closed(ws: &mut crate::helpers::WsClient, room: &str) {
    loop {
        let m = ws.recv().await;
        if m["type"] == "room_closed" {
            assert_eq!(m["roomId"], room);
            return;
        }
        assert_eq!(m["type"], "room_joined", "{m}");
    }
}

#[tokio::test]
async fn a_deleted_room_stays_dead_for_check_accept_lookup_and_join() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let code = app.create_code("devA").await;
        let accept = json!({"joinid": code, "client2": "devB"});
        let roomid = app.post_json("/api/rooms/accept", &accept).await.json()["roomid"]
            .as_str()
            .unwrap()
            .to_owned();
        let delete = app
            .send(app.request("DELETE", &format!("/api/rooms?roomid={roomid}")))
            .await;
        assert_eq!(delete.json()["deleted"], 1);
        let check = json!({"joinid": code, "client1": "devA"});
        let reply = app.post_json("/api/rooms/check", &check).await;
        assert_eq!(
            (reply.status, reply.error()),
            (404, "not_found_or_expired".into())
        );
        let reply = app.post_json("/api/rooms/accept", &accept).await;
        assert_eq!(
            (reply.status, reply.error()),
            (404, "not_found_or_expired".into())
        );
        assert_eq!(
            app.get(&format!("/api/rooms?roomid={roomid}")).await.status,
            404
        );
        // A device that still holds the room id cannot bring it back, with or without its id.
        for join in [
            json!({"type": "join_room", "roomId": roomid, "deviceId": "devA"}),
            json!({"type": "join_room", "roomId": roomid}),
        ] {
            let mut ws = app.connect_ws().await;
            ws.send_json(&join).await;
            let m = ws.expect("room_closed").await;
            assert_eq!(m["roomId"], roomid.as_str());
        }
    }
}

#[tokio::test]
async fn a_purged_room_stays_dead_for_check_accept_and_join() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let code = app.create_code("devA").await;
        let accept = json!({"joinid": code, "client2": "devB"});
        let roomid = app.post_json("/api/rooms/accept", &accept).await.json()["roomid"]
            .as_str()
            .unwrap()
            .to_owned();
        let purge = app
            .post_json("/api/user/purge", &json!({"deviceId": "devB"}))
            .await;
        assert_eq!(purge.json()["roomsDeleted"], 1);
        let check = json!({"joinid": code, "client1": "devA"});
        assert_eq!(app.post_json("/api/rooms/check", &check).await.status, 404);
        assert_eq!(
            app.post_json("/api/rooms/accept", &accept).await.status,
            404
        );
        let mut ws = app.connect_ws().await;
        ws.send_json(&json!({"type": "join_room", "roomId": roomid, "deviceId": "devA"}))
            .await;
        ws.expect("room_closed").await;
    }
}

#[tokio::test]
async fn a_delete_racing_a_join_always_ends_that_membership() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        for i in 0..30 {
            let roomid = app.pair(&format!("a{i}"), &format!("b{i}")).await;
            let mut ws = app.connect_ws().await;
            let join = json!({"type": "join_room", "roomId": roomid, "deviceId": format!("a{i}")});
            let delete = app.request("DELETE", &format!("/api/rooms?roomid={roomid}"));
            // However the two interleave, the joiner ends up told the room is closed.
            let (_, reply) = tokio::join!(ws.send_json(&join), app.send(delete));
            assert_eq!(reply.status, 200);
            expect_room_closed(&mut ws, &roomid).await;
            ws.send_json(&json!({"type": "webrtc_offer", "sdp": "x"}))
                .await;
            ws.expect_error("Not in a valid room for WebRTC signaling")
                .await;
        }
    }
}

#[tokio::test]
async fn a_code_with_capacity_n_admits_n_minus_one_accepters_into_one_room() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let created = app
            .post_json(
                "/api/rooms",
                &json!({"client1": "host", "expiresInSeconds": 300, "capacity": 4}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let code = created.json()["joinid"].as_str().unwrap().to_owned();
        let accept = |device: &str| json!({"joinid": code, "client2": device});
        let mut rooms = Vec::new();
        for device in ["g1", "g2", "g3"] {
            let reply = app.post_json("/api/rooms/accept", &accept(device)).await;
            assert_eq!(reply.status, 200, "{device}: {}", reply.body);
            rooms.push(reply.json()["roomid"].as_str().unwrap().to_owned());
        }
        assert!(rooms.iter().all(|r| *r == rooms[0]), "{rooms:?}");
        // A repeat is the same room; a fourth device finds the room full; the creator cannot accept.
        let again = app.post_json("/api/rooms/accept", &accept("g2")).await;
        assert_eq!(again.json()["roomid"], rooms[0].as_str());
        for refused in ["g4", "host"] {
            let reply = app.post_json("/api/rooms/accept", &accept(refused)).await;
            assert_eq!(
                (reply.status, reply.error()),
                (409, "conflict".into()),
                "{refused}"
            );
        }
        let room = app
            .get(&format!("/api/rooms?roomid={}", rooms[0]))
            .await
            .json();
        assert_eq!(
            room,
            json!({"roomid": rooms[0], "client1": "host", "client2": "g1", "capacity": 4,
                   "members": ["host", "g1", "g2", "g3"]})
        );
        let check = app
            .post_json(
                "/api/rooms/check",
                &json!({"joinid": code, "client1": "host"}),
            )
            .await;
        assert_eq!(check.json()["roomid"], rooms[0].as_str());
    }
}

#[tokio::test]
async fn a_capacity_outside_two_to_the_maximum_is_invalid_capacity() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |c| c.max_room_capacity = 8).await;
        for bad in [json!(1), json!(9), json!("3"), json!(2.5), json!(-2)] {
            let body = json!({"client1": "a", "expiresInSeconds": 60, "capacity": bad});
            let reply = app.post_json("/api/rooms", &body).await;
            assert_eq!(
                (reply.status, reply.error()),
                (400, "invalid_capacity".into()),
                "{bad}"
            );
        }
        let body = json!({"client1": "a", "expiresInSeconds": 60, "capacity": 8});
        assert_eq!(app.post_json("/api/rooms", &body).await.status, 201);
    }
}

#[tokio::test]
async fn purging_a_later_accepter_deletes_the_room_it_joined() {
    for backend in Backend::available() {
        let app = spawn_on(backend, |_| {}).await;
        let created = app
            .post_json(
                "/api/rooms",
                &json!({"client1": "host", "expiresInSeconds": 300, "capacity": 3}),
            )
            .await;
        let code = created.json()["joinid"].as_str().unwrap().to_owned();
        let mut roomid = String::new();
        for device in ["g1", "g2"] {
            let reply = app
                .post_json(
                    "/api/rooms/accept",
                    &json!({"joinid": code, "client2": device}),
                )
                .await;
            roomid = reply.json()["roomid"].as_str().unwrap().to_owned();
        }
        let purge = app
            .post_json("/api/user/purge", &json!({"deviceId": "g2"}))
            .await;
        assert_eq!(purge.json()["roomsDeleted"], 1);
        assert_eq!(
            app.get(&format!("/api/rooms?roomid={roomid}")).await.status,
            404
        );
    }
}
