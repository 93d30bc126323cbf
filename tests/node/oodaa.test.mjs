// Conformance of the Oodaa messenger listener (OODAA_PORT) with protocol B of
// ../shared/protocols/oodaa-messenger.md (the raw WebSocket JSON server.js the HEAD app talks to),
// with the fixes issue 16 decided: every relayed type to an offline target is an error, a relay
// needs a registered sender, a replaced registration's old socket going away does not mark the
// user offline, and userInfo is size-capped.
//
// Run: SIGNALPOST_BIN=target/debug/signalpost node --test tests/node/
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  QUIET_MS,
  TEST_TIMEOUT_MS,
  eventually,
  flood,
  matching,
  named,
  request,
  startDialect,
} from "./lib/dialect.mjs";
import { startServer } from "./lib/server.mjs";

const it = (name, fn) => test(name, { timeout: TEST_TIMEOUT_MS }, fn);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The userInfo the HEAD client sends at register. */
const infoOf = (name) => ({ name, timestamp: "2025-07-19T10:00:00.000Z" });

/** The six types that are relayed to `targetUserId`, with a payload as the client would send. */
const RELAYED = {
  message: { messageData: { id: "1752919200000", text: "hi", timestamp: "2025-07-19T10:00:00.000Z" } },
  "contact-request": {
    requestData: { name: "Alice", requesterId: "alice", timestamp: "2025-07-19T10:00:01.000Z" },
  },
  "contact-accepted": {
    accepterInfo: { name: "Alice", userId: "alice", timestamp: "2025-07-19T10:00:02.000Z" },
  },
  offer: { offer: { type: "offer", sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" } },
  answer: { answer: { type: "answer", sdp: "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n" } },
  "ice-candidate": {
    candidate: {
      candidate: "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host",
      sdpMid: "0",
      sdpMLineIndex: 0,
    },
  },
};

/** Starts signalpost with the oodaa listener for this test. */
const startOodaa = (t, env = {}) =>
  startDialect(t, "oodaa", { OODAA_MAX_USERINFO_BYTES: undefined, METRICS_TOKEN: undefined, ...env });

/** Connects to the oodaa listener and takes the `connected` greeting. */
async function arrive(app, label, path = "/") {
  const socket = await app.connect(path, label);
  await socket.nextOfType("connected");
  return socket;
}

/** Connects and registers `userId`; resolves once `registered` has arrived. */
async function register(app, userId, userInfo = infoOf(userId), path = "/") {
  const socket = await arrive(app, userId, path);
  socket.send({ type: "register", userId, userInfo });
  socket.registered = await socket.nextOfType("registered");
  return socket;
}

const online = (userId, userInfo = infoOf(userId)) => ({
  type: "user-status",
  userId,
  isOnline: true,
  userInfo,
});
const offline = (userId) => ({ type: "user-status", userId, isOnline: false, userInfo: null });
const notOnline = (userId) => ({ type: "error", message: `User ${userId} is not online` });
const INVALID_FORMAT = { type: "error", message: "Invalid message format" };
const NOT_REGISTERED = { type: "error", message: "Not registered" };
const TOO_LARGE = { type: "error", message: "userInfo too large" };

/** A user list sorted by id, for comparing without depending on order. */
const byId = (users) => [...users].sort((a, b) => (a.userId < b.userId ? -1 : 1));

/** Registers alice, bob and carol, and takes the presence pushes their arrivals cause. */
async function threeUsers(app) {
  const alice = await register(app, "alice");
  const bob = await register(app, "bob");
  await alice.next(online("bob"));
  const carol = await register(app, "carol");
  await alice.next(online("carol"));
  await bob.next(online("carol"));
  return { alice, bob, carol };
}

async function health(app, path = "/health") {
  const res = await request(`${app.http}${path}`);
  assert.equal(res.status, 200, `GET ${path}: ${res.text}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  return res.body;
}

describe("oodaa: the listener and its HTTP", () => {
  it("GET /health answers healthy with the counts of connections and registered users", async (t) => {
    const app = await startOodaa(t);
    const empty = await health(app);
    assert.equal(empty.status, "healthy");
    assert.equal(empty.service, "Oodaa Signaling Server");
    assert.equal(empty.clients, 0);
    assert.equal(empty.users, 0);
    assert.equal(typeof empty.timestamp, "string");
    assert.ok(!Number.isNaN(Date.parse(empty.timestamp)), `timestamp ${empty.timestamp} is ISO 8601`);

    const alice = await register(app, "alice");
    const lurker = await arrive(app, "lurker");
    const busy = await health(app);
    assert.equal(busy.clients, 2);
    assert.equal(busy.users, 1);

    await alice.close();
    await lurker.close();
    await eventually(async () => {
      const after = await health(app);
      assert.equal(after.clients, 0);
      assert.equal(after.users, 0);
    });
  });

  it("GET / answers the same health document", async (t) => {
    const app = await startOodaa(t);
    const body = await health(app, "/");
    assert.equal(body.status, "healthy");
    assert.equal(body.service, "Oodaa Signaling Server");
    assert.equal(body.clients, 0);
    assert.equal(body.users, 0);
    assert.ok(!Number.isNaN(Date.parse(body.timestamp)));
  });

  it("any other path answers 404", async (t) => {
    const app = await startOodaa(t);
    for (const path of ["/nope", "/health/more", "/api/rooms", "/metrics", "/stats"]) {
      const res = await request(`${app.http}${path}`);
      assert.equal(res.status, 404, `GET ${path}`);
    }
  });

  it("the WebSocket protocol is spoken on any path", async (t) => {
    const app = await startOodaa(t);
    for (const path of ["/", "/ws", "/any/deep/path", "/?client=flutter", "/health"]) {
      const socket = await arrive(app, `client at ${path}`, path);
      socket.send({ type: "ping" });
      await socket.nextOfType("pong");
      await socket.close();
    }
  });

  it("without OODAA_PORT no oodaa listener is opened", async (t) => {
    const server = await startServer({ env: { OODAA_PORT: undefined } });
    t.after(() => server.stop());
    await new Promise((r) => setTimeout(r, QUIET_MS));
    assert.doesNotMatch(server.log(), /oodaa listening on/);
  });
});

describe("oodaa: connecting", () => {
  it("a new connection is greeted with connected and a fresh UUID clientId before anything else", async (t) => {
    const app = await startOodaa(t);
    const first = await app.connect("/", "first");
    const second = await app.connect("/", "second");
    const one = await first.next();
    const two = await second.next();
    assert.equal(one.type, "connected");
    assert.equal(one.message, "Connected to Oodaa signaling server");
    assert.match(one.clientId, UUID);
    assert.equal(two.type, "connected");
    assert.match(two.clientId, UUID);
    assert.notEqual(one.clientId, two.clientId);
  });

  it("ping is answered with pong and a millisecond timestamp, registered or not", async (t) => {
    const app = await startOodaa(t);
    const stranger = await arrive(app, "stranger");
    stranger.send({ type: "ping" });
    const pong = await stranger.nextOfType("pong");
    assert.ok(Number.isInteger(pong.timestamp), `timestamp ${pong.timestamp} is an integer`);
    assert.ok(Math.abs(pong.timestamp - Date.now()) < 60_000, "timestamp is milliseconds since the epoch");

    const alice = await register(app, "alice");
    alice.send({ type: "ping" });
    await alice.nextOfType("pong");
  });

  it("bad JSON, null and non-object frames answer Invalid message format and the connection goes on", async (t) => {
    const app = await startOodaa(t);
    const socket = await arrive(app, "sloppy");
    for (const frame of ["not json", "{\"type\":", "null", "42", "\"register\"", "true", "[1,2]"]) {
      socket.sendText(frame);
      const reply = await socket.next(named(`in reply to ${frame}`, () => true));
      assert.deepEqual(reply, INVALID_FORMAT, `reply to ${frame}`);
    }
    socket.send({ type: "ping" });
    await socket.nextOfType("pong");
    await socket.nothing();
  });

  it("a message of an unknown type, or of no type, is ignored without a reply", async (t) => {
    const app = await startOodaa(t);
    const socket = await arrive(app, "curious");
    socket.send({ type: "typing", targetUserId: "bob" });
    socket.send({ targetUserId: "bob" });
    await socket.nothing();
    socket.send({ type: "ping" });
    await socket.nextOfType("pong");
  });
});

describe("oodaa: registering and presence", () => {
  it("registering answers registered with the online users, the registrant included", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    assert.deepEqual(alice.registered, {
      type: "registered",
      userId: "alice",
      onlineUsers: [{ userId: "alice", userInfo: infoOf("alice") }],
    });
    await alice.nothing();
  });

  it("a second user sees both users and the first is told the second is online", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    const bob = await register(app, "bob", { name: "Bob", timestamp: "2025-07-19T11:00:00.000Z" });
    assert.equal(bob.registered.userId, "bob");
    assert.deepEqual(byId(bob.registered.onlineUsers), [
      { userId: "alice", userInfo: infoOf("alice") },
      { userId: "bob", userInfo: { name: "Bob", timestamp: "2025-07-19T11:00:00.000Z" } },
    ]);
    assert.deepEqual(
      await alice.nextOfType("user-status"),
      online("bob", { name: "Bob", timestamp: "2025-07-19T11:00:00.000Z" }),
    );
    await bob.nothing();
    await alice.nothing();
  });

  it("with three users each arrival is pushed to every other registered user once", async (t) => {
    const app = await startOodaa(t);
    const { alice, bob, carol } = await threeUsers(app);
    assert.deepEqual(byId(carol.registered.onlineUsers), [
      { userId: "alice", userInfo: infoOf("alice") },
      { userId: "bob", userInfo: infoOf("bob") },
      { userId: "carol", userInfo: infoOf("carol") },
    ]);
    await alice.nothing();
    await bob.nothing();
    await carol.nothing();
  });

  it("get-online-users lists every registered user once with their userInfo", async (t) => {
    const app = await startOodaa(t);
    const { bob } = await threeUsers(app);
    bob.send({ type: "get-online-users" });
    const list = await bob.nextOfType("online-users");
    assert.deepEqual(Object.keys(list).sort(), ["type", "users"]);
    assert.deepEqual(byId(list.users), [
      { userId: "alice", userInfo: infoOf("alice") },
      { userId: "bob", userInfo: infoOf("bob") },
      { userId: "carol", userInfo: infoOf("carol") },
    ]);
  });

  it("a connection that has not registered gets no presence pushes", async (t) => {
    const app = await startOodaa(t);
    const lurker = await arrive(app, "lurker");
    const alice = await register(app, "alice");
    await alice.close();
    await lurker.nothing();
  });

  it("when a registered user disconnects every other registered user is told it is offline", async (t) => {
    const app = await startOodaa(t);
    const { alice, bob, carol } = await threeUsers(app);
    await carol.close();
    assert.deepEqual(await alice.nextOfType("user-status"), offline("carol"));
    assert.deepEqual(await bob.nextOfType("user-status"), offline("carol"));
    alice.send({ type: "get-online-users" });
    const list = await alice.nextOfType("online-users");
    assert.deepEqual(
      list.users.map((u) => u.userId).sort(),
      ["alice", "bob"],
    );
    await alice.nothing();
    await bob.nothing();
  });

  it("a connection that closes without registering causes no presence push", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    const lurker = await arrive(app, "lurker");
    await lurker.close();
    await alice.nothing();
  });
});

describe("oodaa: relaying between users", () => {
  it("a message reaches only its target, stamped with the sender's user id, and the sender gets no ack", async (t) => {
    const app = await startOodaa(t);
    const { alice, bob, carol } = await threeUsers(app);
    alice.send({ type: "message", targetUserId: "bob", ...RELAYED.message });
    assert.deepEqual(await bob.next(), { type: "message", fromUserId: "alice", ...RELAYED.message });
    await alice.nothing();
    await carol.nothing();
  });

  it("fromUserId is the sender's registered id, whatever the sender claims", async (t) => {
    const app = await startOodaa(t);
    const { alice, bob } = await threeUsers(app);
    alice.send({ type: "message", targetUserId: "bob", fromUserId: "carol", ...RELAYED.message });
    assert.deepEqual(await bob.next(), { type: "message", fromUserId: "alice", ...RELAYED.message });
    alice.send({
      type: "contact-request",
      targetUserId: "bob",
      fromUserId: "carol",
      fromUserInfo: infoOf("carol"),
      ...RELAYED["contact-request"],
    });
    const contactRequest = await bob.next();
    assert.equal(contactRequest.fromUserId, "alice");
    assert.deepEqual(contactRequest.fromUserInfo, infoOf("alice"));
  });

  it("a contact request carries the sender's registered userInfo as fromUserInfo", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice", { name: "Alice", timestamp: "2025-07-19T09:00:00.000Z" });
    const bob = await register(app, "bob");
    await alice.next(online("bob"));
    alice.send({ type: "contact-request", targetUserId: "bob", ...RELAYED["contact-request"] });
    assert.deepEqual(await bob.next(), {
      type: "contact-request",
      fromUserId: "alice",
      fromUserInfo: { name: "Alice", timestamp: "2025-07-19T09:00:00.000Z" },
      ...RELAYED["contact-request"],
    });
    await alice.nothing();
  });

  it("a contact acceptance reaches the requester with fromUserId, fromUserInfo and accepterInfo", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    const bob = await register(app, "bob", { name: "Bob", timestamp: "2025-07-19T11:00:00.000Z" });
    await alice.next(online("bob", { name: "Bob", timestamp: "2025-07-19T11:00:00.000Z" }));
    bob.send({ type: "contact-accepted", targetUserId: "alice", ...RELAYED["contact-accepted"] });
    assert.deepEqual(await alice.next(), {
      type: "contact-accepted",
      fromUserId: "bob",
      fromUserInfo: { name: "Bob", timestamp: "2025-07-19T11:00:00.000Z" },
      ...RELAYED["contact-accepted"],
    });
    await bob.nothing();
  });

  for (const type of ["offer", "answer", "ice-candidate"]) {
    it(`${type} is relayed to its target with fromUserId and its payload`, async (t) => {
      const app = await startOodaa(t);
      const { alice, bob, carol } = await threeUsers(app);
      alice.send({ type, targetUserId: "carol", ...RELAYED[type] });
      assert.deepEqual(await carol.next(), { type, fromUserId: "alice", ...RELAYED[type] });
      await alice.nothing();
      await bob.nothing();
    });
  }

  it("a message goes both ways between two users", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    const bob = await register(app, "bob");
    await alice.next(online("bob"));
    const toAlice = { id: "2", text: "hello alice", timestamp: "t" };
    bob.send({ type: "message", targetUserId: "alice", messageData: toAlice });
    assert.deepEqual(await alice.next(), { type: "message", fromUserId: "bob", messageData: toAlice });
    const toBob = { id: "3", text: "hello bob", timestamp: "t" };
    alice.send({ type: "message", targetUserId: "bob", messageData: toBob });
    assert.deepEqual(await bob.next(), { type: "message", fromUserId: "alice", messageData: toBob });
  });

  for (const type of Object.keys(RELAYED)) {
    it(`${type} to a user who is not online answers User <id> is not online`, async (t) => {
      const app = await startOodaa(t);
      const alice = await register(app, "alice");
      alice.send({ type, targetUserId: "nobody", ...RELAYED[type] });
      assert.deepEqual(await alice.next(), notOnline("nobody"));
    });
  }

  it("a relay to a user who has gone offline answers not online", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    const bob = await register(app, "bob");
    await alice.next(online("bob"));
    await bob.close();
    await alice.next(offline("bob"));
    alice.send({ type: "message", targetUserId: "bob", ...RELAYED.message });
    assert.deepEqual(await alice.next(), notOnline("bob"));
  });

  for (const type of Object.keys(RELAYED)) {
    it(`${type} from a connection that never registered answers Not registered and reaches nobody`, async (t) => {
      const app = await startOodaa(t);
      const bob = await register(app, "bob");
      const stranger = await arrive(app, "stranger");
      stranger.send({ type, targetUserId: "bob", ...RELAYED[type] });
      assert.deepEqual(await stranger.next(), NOT_REGISTERED);
      await bob.nothing();
    });
  }

  it("messages are relayed, never stored: a user who comes online later receives nothing sent before", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    alice.send({ type: "message", targetUserId: "bob", ...RELAYED.message });
    await alice.next(notOnline("bob"));
    const bob = await register(app, "bob");
    await bob.nothing();
  });
});

describe("oodaa: a second registration of a user id", () => {
  /** alice on `old`, bob, then alice again on `current` (bob sees her come online again). */
  async function reRegistered(app) {
    const old = await register(app, "alice");
    const bob = await register(app, "bob");
    await old.next(online("bob"));
    const current = await register(app, "alice", { name: "alice on her phone", timestamp: "t2" });
    await bob.next(online("alice", { name: "alice on her phone", timestamp: "t2" }));
    return { old, current, bob };
  }

  it("takes over relays from the first connection, which the server leaves open", async (t) => {
    const app = await startOodaa(t);
    const { old, current, bob } = await reRegistered(app);
    bob.send({ type: "message", targetUserId: "alice", ...RELAYED.message });
    assert.deepEqual(await current.next(matching({ type: "message" })), {
      type: "message",
      fromUserId: "bob",
      ...RELAYED.message,
    });
    await old.nothing(matching({ type: "message" }));
    assert.equal(old.closeInfo, null, "the server did not close the first connection");
    old.send({ type: "ping" });
    await old.nextOfType("pong");
  });

  it("lists the user once, with the userInfo of the newer registration", async (t) => {
    const app = await startOodaa(t);
    const { current, bob } = await reRegistered(app);
    assert.deepEqual(byId(current.registered.onlineUsers), [
      { userId: "alice", userInfo: { name: "alice on her phone", timestamp: "t2" } },
      { userId: "bob", userInfo: infoOf("bob") },
    ]);
    bob.send({ type: "get-online-users" });
    assert.deepEqual(byId((await bob.nextOfType("online-users")).users), [
      { userId: "alice", userInfo: { name: "alice on her phone", timestamp: "t2" } },
      { userId: "bob", userInfo: infoOf("bob") },
    ]);
    const res = await request(`${app.http}/health`);
    assert.equal(res.body.users, 2);
  });

  it("closing the replaced connection tells nobody the user is offline and keeps her reachable", async (t) => {
    const app = await startOodaa(t);
    const { old, current, bob } = await reRegistered(app);
    await old.close();
    await bob.nothing(matching({ type: "user-status" }));
    bob.send({ type: "message", targetUserId: "alice", ...RELAYED.message });
    assert.deepEqual(await current.next(matching({ type: "message" })), {
      type: "message",
      fromUserId: "bob",
      ...RELAYED.message,
    });
    await bob.nothing(matching({ type: "error" }));
    bob.send({ type: "get-online-users" });
    const list = await bob.nextOfType("online-users");
    assert.deepEqual(list.users.map((u) => u.userId).sort(), ["alice", "bob"]);
  });

  it("closing the current connection tells the others the user is offline", async (t) => {
    const app = await startOodaa(t);
    const { old, current, bob } = await reRegistered(app);
    await old.close();
    await current.close();
    assert.deepEqual(await bob.next(matching({ type: "user-status" })), offline("alice"));
    await bob.nothing(matching({ type: "user-status" }));
    bob.send({ type: "message", targetUserId: "alice", ...RELAYED.message });
    assert.deepEqual(await bob.next(matching({ type: "error" })), notOnline("alice"));
  });

  it("closing the current connection while the replaced one is still open marks the user offline once", async (t) => {
    const app = await startOodaa(t);
    const { old, current, bob } = await reRegistered(app);
    await current.close();
    assert.deepEqual(await bob.next(matching({ type: "user-status" })), offline("alice"));
    await old.close();
    await bob.nothing(matching({ type: "user-status" }));
  });
});

describe("oodaa: the userInfo cap", () => {
  /** A userInfo whose compact JSON is exactly `bytes` bytes long (ASCII). */
  const infoOfBytes = (bytes) => {
    const info = { name: "" };
    info.name = "x".repeat(bytes - JSON.stringify(info).length);
    assert.equal(Buffer.byteLength(JSON.stringify(info)), bytes);
    return info;
  };

  it("a userInfo over 4096 bytes is refused with userInfo too large and nobody learns of the user", async (t) => {
    const app = await startOodaa(t);
    const bob = await register(app, "bob");
    const alice = await arrive(app, "alice");
    alice.send({ type: "register", userId: "alice", userInfo: infoOfBytes(4097) });
    assert.deepEqual(await alice.next(), TOO_LARGE);
    await alice.nothing();
    await bob.nothing();
    bob.send({ type: "message", targetUserId: "alice", ...RELAYED.message });
    assert.deepEqual(await bob.next(), notOnline("alice"));
    bob.send({ type: "get-online-users" });
    assert.deepEqual((await bob.nextOfType("online-users")).users.map((u) => u.userId), ["bob"]);
    assert.equal((await request(`${app.http}/health`)).body.users, 1);
  });

  it("a userInfo of exactly 4096 bytes is accepted", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice", infoOfBytes(4096));
    assert.deepEqual(alice.registered.onlineUsers, [{ userId: "alice", userInfo: infoOfBytes(4096) }]);
  });

  it("the connection can still register with a smaller userInfo after a refusal", async (t) => {
    const app = await startOodaa(t);
    const alice = await arrive(app, "alice");
    alice.send({ type: "register", userId: "alice", userInfo: infoOfBytes(5000) });
    assert.deepEqual(await alice.next(), TOO_LARGE);
    alice.send({ type: "register", userId: "alice", userInfo: infoOf("alice") });
    assert.deepEqual((await alice.nextOfType("registered")).onlineUsers, [
      { userId: "alice", userInfo: infoOf("alice") },
    ]);
  });

  it("OODAA_MAX_USERINFO_BYTES sets the cap, counted in bytes of the JSON", async (t) => {
    const app = await startOodaa(t, { OODAA_MAX_USERINFO_BYTES: "100" });
    const atCap = await register(app, "alice", infoOfBytes(100));
    assert.equal(atCap.registered.userId, "alice");

    const overCap = await arrive(app, "bob");
    overCap.send({ type: "register", userId: "bob", userInfo: infoOfBytes(101) });
    assert.deepEqual(await overCap.next(), TOO_LARGE);

    // 50 characters, but 2 bytes each in UTF-8: 111 bytes of JSON.
    const wide = await arrive(app, "carol");
    wide.send({ type: "register", userId: "carol", userInfo: { name: "é".repeat(50) } });
    assert.deepEqual(await wide.next(), TOO_LARGE);
    await atCap.nothing();
  });
});

describe("oodaa: limits and heartbeats of the main port", () => {
  it("the per-client message rate applies: a flood is refused and then the connection closed with 1008", async (t) => {
    const app = await startOodaa(t, { WS_MSG_RATE_PER_SEC: "1", WS_MSG_BURST: "3" });
    const socket = await arrive(app, "flooder");
    const pongs = await flood(socket, { type: "ping" }, 60, matching({ type: "pong" }));
    assert.ok(pongs >= 1, "the burst is answered");
    assert.ok(pongs <= 5, `${pongs} of 60 pings answered with a burst of 3 at 1/s`);
    const { code } = await socket.closedByServer();
    assert.equal(code, 1008);
  });

  it("another client is not limited by a flooder", async (t) => {
    const app = await startOodaa(t, { WS_MSG_RATE_PER_SEC: "1", WS_MSG_BURST: "3" });
    const flooder = await arrive(app, "flooder");
    const calm = await arrive(app, "calm");
    await flood(flooder, { type: "ping" }, 60, matching({ type: "pong" }));
    calm.send({ type: "ping" });
    await calm.nextOfType("pong");
  });

  it("the server sends WebSocket protocol pings", async (t) => {
    const app = await startOodaa(t, { WS_PING_INTERVAL_SECS: "1" });
    const socket = await arrive(app, "idle");
    await socket.pinged(1);
  });

  it("a frame over 64 KiB closes the connection with 1009", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    const bob = await register(app, "bob");
    await alice.next(online("bob"));
    alice.send({
      type: "message",
      targetUserId: "bob",
      messageData: { id: "1", text: "x".repeat(128 * 1024), timestamp: "t" },
    });
    assert.equal((await alice.closedByServer()).code, 1009);
    await bob.nothing(matching({ type: "message" }));
  });

  it("relayed messages are counted in the metrics under the oodaa dialect", async (t) => {
    const app = await startOodaa(t);
    const alice = await register(app, "alice");
    const bob = await register(app, "bob");
    await alice.next(online("bob"));
    alice.send({ type: "message", targetUserId: "bob", ...RELAYED.message });
    await bob.nextOfType("message");
    const res = await request(`${app.server.main}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.text, /^signalpost_\w+\{[^}]*dialect="oodaa"[^}]*\} [1-9]/m);
  });
});
