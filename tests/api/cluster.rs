//! Cluster mode (issue 13): several nodes on one private Redis behave as one service.
//!
//! Each test starts its own `redis-server` on a free loopback port in a temp directory (never
//! the machine's shared one), and two or three nodes on it, in this process (or as separate
//! processes where a node must be killed). Without `redis-server` they are skipped with a
//! printed reason, and fail when `SIGNALPOST_REQUIRE_ALL=1`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::external::{free_port, program, require_program};
use crate::helpers::{TestApp, WsClient, spawn_app_with};

/// A private Redis for one test, with the settings `docker-compose.cluster.yml` gives its
/// Redis (AOF, `appendfsync always`): the durability tests hold for the shipped setup.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts one, or `None` (a printed skip) without `redis-server`.
    pub fn start() -> Option<Self> {
        if !require_program("redis-server") {
            return None;
        }
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn();
        Some(redis)
    }

    fn spawn(&mut self) {
        let child = Command::new(program("redis-server"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir.path().to_str().unwrap(),
                "--daemonize",
                "no",
            ])
            .args(crate::compose_file::cluster_redis_args())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: no shutdown save, only what the AOF already holds survives.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (replaying its AOF).
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: Redis keeps its connections open and answers nothing, the hardest outage to
    /// notice (every call waits out its timeout).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`PrivateRedis::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// The directory it keeps its files in.
    #[allow(dead_code)]
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node of the cluster on `redis`, in this process.
pub async fn node(
    redis: &PrivateRedis,
    name: &str,
    adjust: impl FnOnce(&mut signalpost::Config),
) -> TestApp {
    let url = redis.url();
    let name = name.to_owned();
    spawn_app_with(move |c| {
        c.redis_url = Some(url.parse().unwrap());
        c.node_id = Some(name);
        c.node_ttl_secs = 2;
        adjust(c);
    })
    .await
}

async fn nodes(redis: &PrivateRedis, n: usize) -> Vec<TestApp> {
    let mut all = Vec::new();
    for i in 0..n {
        all.push(node(redis, &format!("n{i}"), |_| {}).await);
    }
    all
}

async fn join_with(client: &mut WsClient, body: Value) {
    let mut message = json!({"type": "join_room"});
    message
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    client.send_json(&message).await;
}

#[tokio::test]
async fn a_code_created_on_one_node_is_checked_and_accepted_on_others() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 3).await;
    let code = n[0].create_code("device-a").await;
    let check = json!({"joinid": code, "client1": "device-a"});
    assert_eq!(n[1].post_json("/api/rooms/check", &check).await.status, 204);
    let accepted = n[2]
        .post_json(
            "/api/rooms/accept",
            &json!({"joinid": code, "client2": "device-b"}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let roomid = accepted.json()["roomid"].as_str().unwrap().to_owned();
    let checked = n[0].post_json("/api/rooms/check", &check).await;
    assert_eq!(checked.json()["roomid"], roomid.as_str());
    let room = n[1].get(&format!("/api/rooms?roomid={roomid}")).await;
    assert_eq!(
        room.json(),
        json!({"roomid": roomid, "client1": "device-a", "client2": "device-b",
               "capacity": 2, "members": ["device-a", "device-b"]})
    );
    // Deleting on one node is seen by all.
    let deleted = n[2]
        .send(n[2].request("DELETE", &format!("/api/rooms?roomid={roomid}")))
        .await;
    assert_eq!(deleted.json()["deleted"], 1);
    assert_eq!(n[0].post_json("/api/rooms/check", &check).await.status, 404);
    assert_eq!(
        n[1].get(&format!("/api/rooms?roomid={roomid}"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn of_fifty_concurrent_accepts_over_three_nodes_exactly_one_wins() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 3).await;
    let code = n[0].create_code("creator").await;
    let bodies: Vec<Value> = (0..50)
        .map(|i| json!({"joinid": code, "client2": format!("guest-{i}")}))
        .collect();
    let accepts = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| n[i % 3].post_json("/api/rooms/accept", body));
    let replies = futures_util::future::join_all(accepts).await;
    let won: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    let lost = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!(
        (won.len(), lost),
        (1, 49),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_pending_cap_counts_codes_created_on_every_node_and_zero_lifts_it() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let capped = [
        node(&redis, "c0", |c| c.limits.max_pending_per_client = 3).await,
        node(&redis, "c1", |c| c.limits.max_pending_per_client = 3).await,
    ];
    for i in 0..3 {
        let body = json!({"client1": format!("d{i}"), "expiresInSeconds": 120});
        assert_eq!(
            capped[i % 2].post_json("/api/rooms", &body).await.status,
            201
        );
    }
    let body = json!({"client1": "d3", "expiresInSeconds": 120});
    let reply = capped[1].post_json("/api/rooms", &body).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.json(), json!({"error": "too_many_pending"}));
    // A node configured without the cap serves the same client.
    let uncapped = node(&redis, "u", |c| c.limits.max_pending_per_client = 0).await;
    for i in 4..30 {
        let body = json!({"client1": format!("d{i}"), "expiresInSeconds": 120});
        let reply = uncapped.post_json("/api/rooms", &body).await;
        assert_eq!(reply.status, 201, "create {i}: {}", reply.body);
    }
}

#[tokio::test]
async fn the_guess_limit_is_shared_by_every_node() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let limit = |c: &mut signalpost::Config| c.limits.guess_limit = 3;
    let a = node(&redis, "a", limit).await;
    let b = node(&redis, "b", limit).await;
    let guess = |n: usize| json!({"joinid": format!("nope{n}"), "client2": "x"});
    assert_eq!(
        a.post_json("/api/rooms/accept", &guess(1)).await.status,
        404
    );
    assert_eq!(
        b.post_json("/api/rooms/accept", &guess(2)).await.status,
        404
    );
    assert_eq!(
        a.post_json("/api/rooms/accept", &guess(3)).await.status,
        404
    );
    for node in [&a, &b] {
        let reply = node.post_json("/api/rooms/accept", &guess(4)).await;
        assert_eq!(reply.status, 429, "{}", reply.body);
    }
}

#[tokio::test]
async fn two_members_on_different_nodes_pair_relay_and_part() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 2).await;
    let mut a = n[0].connect_ws().await;
    let mut b = n[1].connect_ws().await;
    a.join("across").await;
    assert_eq!(a.expect("room_joined").await["userCount"], 1);
    b.join("across").await;
    let joined = b.expect("room_joined").await;
    assert_eq!(joined["peers"], json!([a.client_id]));
    assert_eq!(b.expect("room_ready").await["isInitiator"], false);
    assert_eq!(a.expect("room_ready").await["isInitiator"], true);
    a.send_json(&json!({"type": "webrtc_offer", "sdp": "v=0 offer"}))
        .await;
    assert_eq!(
        b.recv().await,
        json!({"type":"webrtc_offer","from":a.client_id,"roomId":"across","sdp":"v=0 offer"})
    );
    b.send_json(&json!({"type": "webrtc_answer", "sdp": "v=0 answer"}))
        .await;
    assert_eq!(
        a.expect("webrtc_answer").await["from"],
        b.client_id.as_str()
    );
    for i in 0..50 {
        a.send_json(&json!({"type": "ice_candidate", "candidate": {"n": i}}))
            .await;
    }
    for i in 0..50 {
        assert_eq!(b.expect("ice_candidate").await["candidate"]["n"], i);
    }
    b.send_json(&json!({"type": "leave_room"})).await;
    b.expect("left_room").await;
    assert_eq!(a.expect("peer_left").await["peerId"], b.client_id.as_str());
    // A third client on the second node takes the free place; then disconnects.
    let mut c = n[1].connect_ws().await;
    c.join("across").await;
    c.expect("room_joined").await;
    c.expect("room_ready").await;
    a.expect("room_ready").await;
    let c_id = c.client_id.clone();
    drop(c);
    assert_eq!(a.expect("peer_disconnected").await["peerId"], c_id.as_str());
}

#[tokio::test]
async fn a_room_of_three_over_three_nodes_keeps_capacity_addressing_and_order() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 3).await;
    let mut members = Vec::new();
    for (i, node) in n.iter().enumerate() {
        let mut c = node.connect_ws().await;
        join_with(&mut c, json!({"roomId": "trio", "capacity": 3})).await;
        let joined = c.expect("room_joined").await;
        assert_eq!(
            (joined["userCount"].as_u64(), joined["capacity"].as_u64()),
            (Some(i as u64 + 1), Some(3))
        );
        for earlier in members.iter_mut() {
            let c_id: &str = &c.client_id;
            let seen: Value = WsClient::expect(earlier, "peer_joined").await;
            assert_eq!(seen["peerId"], c_id);
        }
        members.push(c);
    }
    let mut fourth = n[0].connect_ws().await;
    fourth.join("trio").await;
    assert_eq!(
        fourth.expect("room_full").await["error"],
        "Room is full (max 3 users)"
    );
    let (a, c) = (members[0].client_id.clone(), members[2].client_id.clone());
    members[0]
        .send_json(&json!({"type": "message", "data": "to c", "to": c}))
        .await;
    let got = members[2].expect("message").await;
    assert_eq!(
        (got["from"].as_str(), got["to"].as_str()),
        (Some(a.as_str()), Some(c.as_str()))
    );
    members[1].expect_silence().await;
    for i in 0..100 {
        members[0]
            .send_json(&json!({"type": "message", "data": i}))
            .await;
    }
    for m in &mut members[1..] {
        for i in 0..100 {
            assert_eq!(m.expect("message").await["data"], i);
        }
        m.expect_silence().await;
    }
    let gone = members.remove(1);
    let gone_id = gone.client_id.clone();
    drop(gone);
    for m in &mut members {
        assert_eq!(
            m.expect("peer_disconnected").await["peerId"],
            gone_id.as_str()
        );
    }
}

/// A node in a process of its own (to be killed, or to race others for real); killed when
/// dropped, so a failing test leaves none behind.
pub struct NodeProcess {
    child: Child,
    /// Where it listens.
    pub addr: String,
}

impl NodeProcess {
    /// SIGKILL: the node dies without a word to the others.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node_process(redis: &PrivateRedis, name: &str) -> NodeProcess {
    node_process_with_ttl(redis, name, 2)
}

/// [`node_process`] with a node TTL of `ttl` seconds.
fn node_process_with_ttl(redis: &PrivateRedis, name: &str, ttl: u64) -> NodeProcess {
    let url = redis.url();
    let ttl = ttl.to_string();
    let (child, addr) = crate::helpers::start_binary(&[
        ("REDIS_URL", url.as_str()),
        ("NODE_ID", name),
        ("NODE_TTL_SECS", ttl.as_str()),
        ("WS_UPGRADE_RATE_PER_MIN", "1000000"),
        ("WS_MAX_CONNECTIONS_PER_CLIENT", "1000000"),
    ]);
    NodeProcess { child, addr }
}

/// A WebSocket client of the node at `addr`, past its `connected`.
async fn client_of(addr: &str) -> WsClient {
    let (stream, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let mut client = WsClient {
        stream,
        client_id: String::new(),
    };
    client.client_id = client.expect("connected").await["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    client
}

#[tokio::test]
async fn concurrent_joins_over_three_nodes_each_hear_they_joined_before_anything_else() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    // Three processes, so the nodes really race: the answer to a node's join (on its command
    // connection) and another node's join (on the room's channel) may come in either order,
    // and whatever comes first, a member first hears that it joined.
    let nodes: Vec<NodeProcess> = (0..3)
        .map(|i| node_process(&redis, &format!("racer{i}")))
        .collect();
    for round in 0..30 {
        let room = format!("race{round}");
        let mut clients = Vec::new();
        for i in 0..9 {
            clients.push(client_of(&nodes[i % 3].addr).await);
        }
        futures_util::future::join_all(clients.iter_mut().map(|c| c.join(&room))).await;
        let mut joined = 0;
        for (i, c) in clients.iter_mut().enumerate() {
            let first = c.recv().await;
            match first["type"].as_str() {
                Some("room_joined") => {
                    joined += 1;
                    c.expect("room_ready").await;
                }
                Some("room_full") => {}
                _ => panic!(
                    "round {round}, client {i} on node {}: first heard {first}",
                    i % 3
                ),
            }
        }
        assert_eq!(joined, 2, "round {round}");
    }
}

#[tokio::test]
async fn a_dropped_member_resumes_on_another_node_with_its_kept_messages() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 2).await;
    let url = format!("ws://{}/ws", n[0].addr);
    let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut a = WsClient {
        stream,
        client_id: String::new(),
    };
    let hello = a.expect("connected").await;
    a.client_id = hello["clientId"].as_str().unwrap().to_owned();
    let token = hello["resumeToken"].as_str().unwrap().to_owned();
    join_with(&mut a, json!({"roomId": "roam", "resumable": true})).await;
    a.expect("room_joined").await;
    let mut b = n[1].connect_ws().await;
    b.join("roam").await;
    b.expect("room_joined").await;
    b.expect("room_ready").await;
    a.expect("room_ready").await;
    let a_id = a.client_id.clone();
    drop(a.stream);
    assert_eq!(b.expect("peer_disconnected").await["resumable"], true);
    for i in 0..3 {
        b.send_json(&json!({"type": "message", "data": i})).await;
    }
    // Once B's pong is back, its three messages have been handled (a session handles its
    // messages in order).
    b.send_json(&json!({"type": "ping"})).await;
    b.expect("pong").await;
    // Comes back through the other node.
    let mut back = n[1].connect_ws().await;
    back.send_json(&json!({"type": "resume", "token": token}))
        .await;
    let resumed = back.expect("resumed").await;
    assert_eq!(
        (resumed["peerId"].as_str(), resumed["missed"].as_u64()),
        (Some(a_id.as_str()), Some(3))
    );
    for i in 0..3 {
        assert_eq!(back.expect("message").await["data"], i);
    }
    assert_eq!(b.expect("peer_reconnected").await["peerId"], a_id.as_str());
    back.send_json(&json!({"type": "message", "data": "back"}))
        .await;
    assert_eq!(b.expect("message").await["from"], a_id.as_str());
}

#[tokio::test]
async fn a_killed_node_is_noticed_within_the_ttl_and_its_members_leave() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let mut doomed_node = node_process(&redis, "doomed");
    let survivor = node(&redis, "survivor", |_| {}).await;
    let mut doomed = client_of(&doomed_node.addr).await;
    doomed.join("lifeboat").await;
    doomed.expect("room_joined").await;
    let mut peer = survivor.connect_ws().await;
    peer.join("lifeboat").await;
    peer.expect("room_joined").await;
    peer.expect("room_ready").await;
    let killed = Instant::now();
    doomed_node.kill();
    let gone = peer.expect("peer_disconnected").await;
    assert_eq!(gone["peerId"], doomed.client_id.as_str());
    // The TTL plus one beat of the reaper, with room for a loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "noticed after {:?}",
        killed.elapsed()
    );
    // Its place is free again, and its stale state is gone.
    let mut next = survivor.connect_ws().await;
    next.join("lifeboat").await;
    assert_eq!(next.expect("room_joined").await["userCount"], 2);
    let stats = survivor.get("/stats").await.json();
    assert_eq!(stats["cluster"]["nodes"], 1, "{stats}");
}

#[tokio::test]
async fn with_redis_down_rest_answers_503_fast_local_relaying_goes_on_and_all_recovers() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 2).await;
    // Pairings acknowledged before the outage.
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let code = n[i % 2].create_code(&format!("a{i}")).await;
        let accepted = n[(i + 1) % 2]
            .post_json(
                "/api/rooms/accept",
                &json!({"joinid": code, "client2": format!("b{i}")}),
            )
            .await;
        assert_eq!(accepted.status, 200);
        acknowledged.push((code, format!("a{i}"), accepted.json()["roomid"].clone()));
    }
    let mut a = n[0].connect_ws().await;
    let mut b = n[0].connect_ws().await;
    a.join("local").await;
    a.expect("room_joined").await;
    b.join("local").await;
    b.expect("room_joined").await;
    b.expect("room_ready").await;
    a.expect("room_ready").await;
    // A room that spans the nodes through the outage, and a device on node 1 in no room.
    let mut e = n[0].connect_ws().await;
    let mut f = n[1].connect_ws().await;
    e.pair_with(&mut f, "spanning").await;
    let roomid = n[0].pair("devP", "devQ").await;
    let mut p = joined_as(&n[1], &roomid, "devP").await;

    redis.kill();
    let started = Instant::now();
    let reply = n[0]
        .post_json(
            "/api/rooms",
            &json!({"client1": "x", "expiresInSeconds": 60}),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        (reply.status, reply.error()),
        (503, "store_unavailable".to_owned())
    );
    let health = n[1].get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["store"], "redis");
    // Members on one node keep relaying.
    for i in 0..10 {
        a.send_json(&json!({"type": "message", "data": i})).await;
        assert_eq!(b.expect("message").await["data"], i);
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while n[0].get("/health").await.status != 200 || n[1].get("/health").await.status != 200 {
        assert!(Instant::now() < deadline, "never healthy again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing acknowledged was lost (AOF, appendfsync always).
    for (code, client1, roomid) in &acknowledged {
        let checked = n[1]
            .post_json(
                "/api/rooms/check",
                &json!({"joinid": code, "client1": client1}),
            )
            .await;
        assert_eq!(checked.json()["roomid"], *roomid);
    }
    // The room that spanned the nodes relays across them again once each node has subscribed
    // its channels again (what was sent before that is lost with the outage), ...
    let deadline = Instant::now() + Duration::from_secs(20);
    'across: for i in 0.. {
        e.send_json(&json!({"type": "message", "data": i})).await;
        while let Ok(m) = tokio::time::timeout(Duration::from_millis(300), f.recv()).await {
            if m["type"] == "message" {
                break 'across;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the spanning room never relays again"
        );
    }
    // ... and what goes to every node arrives again: a purge on node 0 closes node 1's socket.
    let purged = n[0]
        .post_json("/api/user/purge", &json!({"deviceId": "devP"}))
        .await;
    assert_eq!(purged.json()["roomsDeleted"], 1);
    assert!(
        p.expect_close().await.is_some(),
        "the purged device's socket on the other node is closed"
    );
    // And the cluster works again across nodes: a member of the old room is still known, and
    // new rooms span nodes.
    let mut c = n[1].connect_ws().await;
    let mut d = n[0].connect_ws().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.join("after").await;
        let m = c.recv().await;
        if m["type"] == "room_joined" {
            break;
        }
        assert!(Instant::now() < deadline, "joins never work again: {m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.join("after").await;
    d.expect("room_joined").await;
    d.expect("room_ready").await;
    c.expect("room_ready").await;
    c.send_json(&json!({"type": "message", "data": "across again"}))
        .await;
    assert_eq!(d.expect("message").await["data"], "across again");
    let mut late = n[1].connect_ws().await;
    late.join("local").await;
    assert_eq!(
        late.expect("room_full").await["error"],
        "Room is full (max 2 users)",
        "the members of node 0 were registered again"
    );
}

#[tokio::test]
async fn redis_away_longer_than_the_node_ttl_costs_no_member_its_place() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    // Three node processes with a TTL of 6 s, started a second apart: they beat every 2 s, out
    // of step, so that after Redis is back one node checks another's heartbeat before that
    // one has beaten again.
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(node_process_with_ttl(&redis, &format!("steady{i}"), 6));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let addr = |i: usize| nodes[i].addr.clone();
    let mut pairs = Vec::new();
    for (i, (x, y)) in [(0, 1), (1, 2), (2, 0), (1, 1)].into_iter().enumerate() {
        let (mut a, mut b) = (client_of(&addr(x)).await, client_of(&addr(y)).await);
        let room = format!("steady{i}");
        a.pair_with(&mut b, &room).await;
        pairs.push((room, a, b));
    }

    // Every heartbeat expires while Redis is away; when it is back, no node may take the
    // others for dead before they had a TTL to beat again.
    redis.kill();
    tokio::time::sleep(Duration::from_secs(8)).await;
    redis.restart();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..3 {
        let health = format!("http://{}/health", addr(i));
        while http
            .get(&health)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok()
            != Some(200)
        {
            assert!(Instant::now() < deadline, "node {i} never healthy again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Two heartbeats and then some: long enough for a wrongful reap to happen and be told.
    let quiet_until = Instant::now() + Duration::from_secs(5);
    for (room, a, b) in &mut pairs {
        'relayed: loop {
            a.send_json(&json!({"type": "message", "data": room.as_str()}))
                .await;
            if let Ok(m) = tokio::time::timeout(Duration::from_millis(300), b.recv()).await {
                assert_eq!(m["type"], "message", "{room}: {m}");
                break 'relayed;
            }
            assert!(Instant::now() < deadline, "{room} never relays again");
        }
    }
    for (room, a, b) in &mut pairs {
        for member in [a, b] {
            while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
                match tokio::time::timeout(left, member.recv()).await {
                    Ok(m) => assert_eq!(m["type"], "message", "{room}: a member was told {m}"),
                    Err(_) => break,
                }
            }
        }
    }
    for (room, a, b) in &mut pairs {
        let mut late = client_of(&addr(2)).await;
        late.join(room).await;
        assert_eq!(late.expect("room_full").await["roomId"], room.as_str());
        b.send_json(&json!({"type": "message", "data": "still here"}))
            .await;
        assert_eq!(a.expect("message").await["data"], "still here");
    }
}

#[tokio::test]
async fn with_redis_frozen_every_rest_answer_comes_within_two_seconds() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 2).await;
    let code = n[0].create_code("frozen-a").await;
    let roomid = n[1].pair("frozen-b", "frozen-c").await;

    // Frozen, Redis answers nothing: every call waits out its timeout, and a request that
    // needs several calls must not wait for each in turn.
    redis.freeze();
    let create = json!({"client1": "x", "expiresInSeconds": 60});
    let accept = json!({"joinid": code, "client2": "y"});
    let check = json!({"joinid": code, "client1": "frozen-a"});
    let purge = json!({"deviceId": "frozen-b"});
    let requests = [
        ("POST", "/api/rooms", Some(&create), 503),
        ("POST", "/api/rooms/accept", Some(&accept), 503),
        ("POST", "/api/rooms/check", Some(&check), 503),
        ("GET", &*format!("/api/rooms?roomid={roomid}"), None, 503),
        ("DELETE", &*format!("/api/rooms?roomid={roomid}"), None, 503),
        ("POST", "/api/user/purge", Some(&purge), 503),
        ("GET", "/health", None, 503),
    ];
    for round in 0..2 {
        for (method, path, body, status) in &requests {
            for node in &n {
                let mut request = node.request(method, path);
                if let Some(body) = body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body.to_string());
                }
                let started = Instant::now();
                let reply = node.send(request).await;
                let took = started.elapsed();
                assert_eq!(reply.status, *status, "{method} {path}: {}", reply.body);
                if *status == 503 && *path != "/health" {
                    assert_eq!(reply.error(), "store_unavailable", "{method} {path}");
                }
                assert!(
                    took < Duration::from_secs(2),
                    "round {round}: {method} {path} took {took:?}"
                );
            }
        }
    }
    let started = Instant::now();
    assert_eq!(n[0].get("/stats").await.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "/stats");

    redis.thaw();
    let deadline = Instant::now() + Duration::from_secs(20);
    while n[0].get("/health").await.status != 200 || n[1].get("/health").await.status != 200 {
        assert!(Instant::now() < deadline, "never healthy again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The accept answered 503 may still have been carried out when Redis woke (it had been
    // sent): what was not answered is not known either way.
    let checked = n[1].post_json("/api/rooms/check", &check).await;
    assert!([200, 204].contains(&checked.status), "{}", checked.body);
    assert_eq!(n[0].post_json("/api/rooms", &create).await.status, 201);
}

async fn joined_as(app: &TestApp, room: &str, device: &str) -> WsClient {
    let mut c = app.connect_ws().await;
    join_with(&mut c, json!({"roomId": room, "deviceId": device})).await;
    c.expect("room_joined").await;
    c
}

#[tokio::test]
async fn deleting_or_purging_on_a_third_node_closes_the_room_on_every_node() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let n = nodes(&redis, 3).await;

    let roomid = n[0].pair("devA", "devB").await;
    let mut a = joined_as(&n[0], &roomid, "devA").await;
    let mut b = joined_as(&n[1], &roomid, "devB").await;
    a.expect("room_ready").await;
    b.expect("room_ready").await;
    let reply = n[2]
        .send(n[2].request("DELETE", &format!("/api/rooms?roomid={roomid}")))
        .await;
    assert_eq!(reply.json()["deleted"], 1);
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.recv().await,
            json!({"type": "room_closed", "roomId": roomid})
        );
    }
    let mut again = n[1].connect_ws().await;
    join_with(&mut again, json!({"roomId": roomid, "deviceId": "devB"})).await;
    assert_eq!(
        again.recv().await,
        json!({"type": "room_closed", "roomId": roomid}),
        "a deleted room stays dead on every node"
    );

    let roomid = n[1].pair("devC", "devD").await;
    let mut c = joined_as(&n[0], &roomid, "devC").await;
    let mut d = joined_as(&n[1], &roomid, "devD").await;
    c.expect("room_ready").await;
    d.expect("room_ready").await;
    let reply = n[2]
        .post_json("/api/user/purge", &json!({"deviceId": "devC"}))
        .await;
    assert_eq!(reply.json()["roomsDeleted"], 1);
    assert_eq!(
        c.recv().await,
        json!({"type": "room_closed", "roomId": roomid})
    );
    assert!(
        c.expect_close().await.is_some(),
        "the purged device's socket is closed"
    );
    assert_eq!(
        d.recv().await,
        json!({"type": "room_closed", "roomId": roomid})
    );
    d.send_json(&json!({"type": "ping"})).await;
    d.expect("pong").await;
}

#[tokio::test]
async fn the_rest_rate_limit_is_shared_by_every_node() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let mut n = Vec::new();
    for i in 0..3 {
        n.push(
            node(&redis, &format!("n{i}"), |c| {
                c.limits.rest_burst = 6;
                c.limits.rest_rate_per_min = 1;
            })
            .await,
        );
    }
    // Spread over three nodes, the burst is still six requests in all.
    for i in 0..6 {
        assert_eq!(
            n[i % 3].get("/api/rooms?roomid=x").await.status,
            404,
            "request {i}"
        );
    }
    for node in &n {
        let reply = node.get("/api/rooms?roomid=x").await;
        assert_eq!(reply.status, 429, "{}", reply.body);
    }
}

#[tokio::test]
async fn a_node_shut_down_gracefully_tells_peers_on_other_nodes_at_once() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    // A TTL far longer than the test: only the goodbye itself can tell the peer in time.
    let stopping = node(&redis, "stopping", |c| c.node_ttl_secs = 3600).await;
    let staying = node(&redis, "staying", |c| c.node_ttl_secs = 3600).await;
    let mut a = stopping.connect_ws().await;
    let mut b = staying.connect_ws().await;
    a.join("upgrade").await;
    a.expect("room_joined").await;
    b.join("upgrade").await;
    b.expect("room_joined").await;
    b.expect("room_ready").await;

    let a_id = a.client_id.clone();
    stopping.shutdown().await;
    a.expect("server_shutdown").await;
    let told = b.recv().await;
    assert!(
        ["peer_disconnected", "peer_left"].contains(&told["type"].as_str().unwrap_or_default()),
        "{told}"
    );
    assert_eq!(told["peerId"], a_id.as_str());
    let stats = staying.get("/stats").await.json();
    assert_eq!(
        stats["cluster"]["nodes"], 1,
        "the stopped node left the node set: {stats}"
    );
}

/// Every dialect is a translation onto the same store and room directory, so its conformance
/// suite passes unchanged on a cluster node (Redis store and rooms; the suite's servers share
/// one Redis, as nodes do).
#[test]
fn the_dialect_suites_pass_on_cluster_nodes() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    for suite in [
        "privydrop.test.mjs",
        "dropsilk.test.mjs",
        "oodaa.test.mjs",
        "octatecode.test.mjs",
    ] {
        crate::node_suites::run_node_suite_with(suite, &[("REDIS_URL", &url)]);
    }
}

/// A raw WebSocket on a dialect's listener (no greeting read).
async fn dialect_socket(app: &TestApp, dialect: &str) -> WsClient {
    let url = format!("ws://{}/", app.dialect_addr(dialect));
    let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    WsClient {
        stream,
        client_id: String::new(),
    }
}

#[tokio::test]
async fn oodaa_users_on_different_nodes_see_each_other_and_exchange_messages() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let with_oodaa = |c: &mut signalpost::Config| c.oodaa_port = Some(0);
    let n = [
        node(&redis, "n1", with_oodaa).await,
        node(&redis, "n2", with_oodaa).await,
    ];
    let mut alice = dialect_socket(&n[0], "oodaa").await;
    let mut bob = dialect_socket(&n[1], "oodaa").await;
    alice.expect("connected").await;
    bob.expect("connected").await;
    let alice_info = json!({"name": "Alice", "timestamp": "2026-11-29T00:00:00Z"});
    alice
        .send_json(&json!({"type": "register", "userId": "alice417", "userInfo": alice_info}))
        .await;
    alice.expect("registered").await;
    bob.send_json(&json!({"type": "register", "userId": "bob9", "userInfo": {"name": "Bob"}}))
        .await;
    let registered = bob.expect("registered").await;
    let online: Vec<&str> = registered["onlineUsers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["userId"].as_str())
        .collect();
    assert!(
        online.contains(&"alice417"),
        "Bob sees Alice on the other node: {registered}"
    );
    let status = alice.expect("user-status").await;
    assert_eq!(
        (status["userId"].as_str(), status["isOnline"].as_bool()),
        (Some("bob9"), Some(true))
    );

    let message = json!({"id": "1", "text": "hi across", "timestamp": "2026-11-29T00:00:01Z"});
    alice
        .send_json(&json!({"type": "message", "targetUserId": "bob9", "messageData": message}))
        .await;
    assert_eq!(
        bob.expect("message").await,
        json!({"type": "message", "fromUserId": "alice417", "messageData": message})
    );
    bob.send_json(&json!({"type": "contact-request", "targetUserId": "alice417", "requestData": {"name": "Bob"}}))
        .await;
    assert_eq!(alice.expect("contact-request").await["fromUserId"], "bob9");

    drop(bob);
    let status = alice.expect("user-status").await;
    assert_eq!(
        (status["userId"].as_str(), status["isOnline"].as_bool()),
        (Some("bob9"), Some(false))
    );
    alice
        .send_json(&json!({"type": "contact-request", "targetUserId": "bob9", "requestData": {}}))
        .await;
    assert_eq!(
        alice.expect("error").await["message"],
        "User bob9 is not online"
    );
}

#[tokio::test]
async fn octatecode_peers_on_different_nodes_share_a_room() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let with_octatecode = |c: &mut signalpost::Config| c.octatecode_port = Some(0);
    let n = [
        node(&redis, "n1", with_octatecode).await,
        node(&redis, "n2", with_octatecode).await,
    ];
    let mut a = dialect_socket(&n[0], "octatecode").await;
    let mut b = dialect_socket(&n[1], "octatecode").await;
    a.send_json(&json!({"type": "auth", "roomId": "doc", "from": "peer-a", "data": {"name": "A"}}))
        .await;
    assert_eq!(a.expect("peerList").await["peers"], json!([]));
    b.send_json(&json!({"type": "auth", "roomId": "doc", "from": "peer-b", "data": {"name": "B"}}))
        .await;
    assert_eq!(
        b.expect("peerList").await["peers"],
        json!([{"id": "peer-a", "name": "A"}])
    );
    assert_eq!(a.expect("peerJoined").await["peerId"], "peer-b");

    a.send_json(&json!({"type": "offer", "roomId": "doc", "from": "peer-a", "to": "peer-b", "data": {"sdp": "v=0"}}))
        .await;
    let offer = b.expect("offer").await;
    assert_eq!(
        (offer["from"].as_str(), offer["data"]["sdp"].as_str()),
        (Some("peer-a"), Some("v=0"))
    );
    b.send_json(
        &json!({"type": "chat", "roomId": "doc", "from": "peer-b", "data": {"text": "hello"}}),
    )
    .await;
    // Chat goes to every member, the sender included, wherever they are.
    assert_eq!(a.expect("chat").await["data"]["text"], "hello");
    assert_eq!(b.expect("chat").await["data"]["text"], "hello");
    drop(b);
    assert_eq!(a.expect("peerLeft").await["peerId"], "peer-b");
}

#[tokio::test]
async fn discovery_lists_peers_of_one_network_whatever_node_they_are_on() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let behind_proxy = |c: &mut signalpost::Config| {
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]
    };
    let n = [
        node(&redis, "n1", behind_proxy).await,
        node(&redis, "n2", behind_proxy).await,
    ];
    let mut a = crate::discovery::connect_from(&n[0], "81.2.69.20").await;
    let mut b = crate::discovery::connect_from(&n[1], "81.2.69.20").await;
    let mut elsewhere = crate::discovery::connect_from(&n[1], "81.2.69.21").await;
    a.send_json(&json!({"type": "discover", "name": "A"})).await;
    assert_eq!(a.expect("peers_on_network").await["peers"], json!([]));
    elsewhere
        .send_json(&json!({"type": "discover", "name": "E"}))
        .await;
    assert_eq!(
        elsewhere.expect("peers_on_network").await["peers"],
        json!([])
    );
    b.send_json(&json!({"type": "discover", "name": "B"})).await;
    assert_eq!(
        b.expect("peers_on_network").await["peers"],
        json!([{"peerId": a.client_id, "name": "A"}])
    );
    assert_eq!(
        a.expect("peers_on_network").await["peers"],
        json!([{"peerId": b.client_id, "name": "B"}])
    );
    drop(b);
    assert_eq!(a.expect("peers_on_network").await["peers"], json!([]));
}

/// PrivyDrop's Socket.IO clients on two nodes: a sender on one, receivers on the other.
#[test]
fn privydrop_works_across_two_nodes() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    crate::node_suites::run_node_suite_with(
        "privydrop-cluster.test.mjs",
        &[("REDIS_URL", &redis.url())],
    );
}
