// Conformance of the OctateCode listener (OCTATECODE_PORT) with the lean protocol of
// ../shared/protocols/octatecode.md (§L, src/lean.server.ts of octatecode-backend), WebSocket and
// HTTP on one port, with what issue 16 decided: relayed signals carry the sender as peerId and
// from, a sender must be a member of the room it sends to under its own peer id, unknown paths
// are 404, optional HMAC tokens from POST /api/auth/token (§T.1), and room listings behind
// ADMIN_TOKEN when it is set.
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

const ROOM = "room-7K3QX9A";
const SECRET = "octatecode-test-secret-Zq8Lw2Vr";

/** Starts signalpost with the octatecode listener for this test. */
const startOctate = (t, env = {}) =>
  startDialect(t, "octatecode", {
    ADMIN_TOKEN: undefined,
    OCTATECODE_AUTH_SECRET: undefined,
    OCTATECODE_TOKEN_TTL_SECS: undefined,
    METRICS_TOKEN: undefined,
    ...env,
  });

/** Connects and sends `auth` into `roomId` as `from`; resolves once `peerList` has arrived. */
async function join(app, roomId, from, data, path = "/") {
  const socket = await app.connect(path, from);
  socket.send({ type: "auth", roomId, from, ...(data === undefined ? {} : { data }) });
  socket.peerList = await socket.nextOfType("peerList");
  return socket;
}

const joined = (peerId, peerName, roomId = ROOM) => ({ type: "peerJoined", roomId, peerId, peerName });
const left = (peerId, roomId = ROOM) => ({ type: "peerLeft", roomId, peerId });
const errorOf = (error) => ({ type: "error", data: { error } });
const NOT_A_MEMBER = errorOf("Not a member of this room");
const MISSING = errorOf("Missing roomId or from");
const INVALID_FORMAT = errorOf("Invalid message format");
const INVALID_TOKEN = errorOf("Invalid token");

/** Peers sorted by id, for comparing without depending on order. */
const byId = (peers) => [...peers].sort((a, b) => (a.id < b.id ? -1 : 1));

/** alice, bob and carol in ROOM (named), with the peerJoined pushes their arrivals cause taken. */
async function threePeers(app) {
  const alice = await join(app, ROOM, "alice", { name: "Alice" });
  const bob = await join(app, ROOM, "bob", { name: "Bob" });
  await alice.next(joined("bob", "Bob"));
  const carol = await join(app, ROOM, "carol", { name: "Carol" });
  await alice.next(joined("carol", "Carol"));
  await bob.next(joined("carol", "Carol"));
  return { alice, bob, carol };
}

const SIGNALS = {
  offer: { type: "offer", sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" },
  answer: { type: "answer", sdp: "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n" },
  ice: { candidate: "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host", sdpMid: "0", sdpMLineIndex: 0 },
};

const near = (ms) => Number.isInteger(ms) && Math.abs(ms - Date.now()) < 60_000;

/** GET a room listing endpoint; asserts 200. */
async function getJson(app, path, headers = {}) {
  const res = await request(`${app.http}${path}`, { headers });
  assert.equal(res.status, 200, `GET ${path}: ${res.status} ${res.text}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  return res.body;
}

/** POST /api/auth/token; resolves to the response. */
const askToken = (app, body) => request(`${app.http}/api/auth/token`, { method: "POST", json: body });

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL = B64.slice(0, 62) + "-_";

/**
 * `token` with one character changed near `index`: a base64 digit gets its top bit flipped (a
 * bit that always carries data, whatever the encoding's padding), a hex digit another hex digit.
 */
function alterAt(token, index) {
  for (let i = index; i >= 0; i--) {
    const c = token[i];
    const alphabet = /[-_]/.test(token) ? B64URL : B64;
    const pos = alphabet.indexOf(c);
    if (pos < 0) continue;
    const hex = /^[0-9a-f.]+$/.test(token);
    const replacement = hex ? (c === "0" ? "8" : "0") : alphabet[pos ^ 32];
    return token.slice(0, i) + replacement + token.slice(i + 1);
  }
  throw new Error(`no character to alter in ${token}`);
}

/** A token for `userId` in `roomId` (asserts 200). */
async function tokenFor(app, userId, roomId = ROOM) {
  const res = await askToken(app, { userId, roomId });
  assert.equal(res.status, 200, `POST /api/auth/token: ${res.status} ${res.text}`);
  return res.body.token;
}

describe("octatecode: HTTP on the listener's port", () => {
  it("GET / names the backend and counts its rooms", async (t) => {
    const app = await startOctate(t);
    const empty = await getJson(app, "/");
    assert.equal(empty.name, "OctateCode P2P Backend");
    assert.equal(empty.status, "running");
    assert.equal(empty.rooms, 0);
    assert.equal(typeof empty.docs, "string");
    await join(app, ROOM, "alice");
    await join(app, "other-room", "bob");
    assert.equal((await getJson(app, "/")).rooms, 2);
  });

  it("GET /api/health reports ok with a millisecond timestamp, the rooms and the peers", async (t) => {
    const app = await startOctate(t);
    const empty = await getJson(app, "/api/health");
    assert.equal(empty.status, "ok");
    assert.ok(near(empty.timestamp), `timestamp ${empty.timestamp} is milliseconds since the epoch`);
    assert.equal(empty.rooms, 0);
    assert.equal(empty.totalPeers, 0);
    const alice = await join(app, ROOM, "alice");
    await join(app, ROOM, "bob");
    await join(app, "other-room", "carol");
    const busy = await getJson(app, "/api/health");
    assert.equal(busy.rooms, 2);
    assert.equal(busy.totalPeers, 3);
    await alice.close();
    await eventually(async () => assert.equal((await getJson(app, "/api/health")).totalPeers, 2));
  });

  it("GET /api/health allows any origin, as the original's cors() does", async (t) => {
    const app = await startOctate(t);
    const res = await request(`${app.http}/api/health`, { headers: { origin: "https://editor.example" } });
    assert.equal(res.status, 200);
    assert.ok(
      ["*", "https://editor.example"].includes(res.headers.get("access-control-allow-origin")),
      `Access-Control-Allow-Origin: ${res.headers.get("access-control-allow-origin")}`,
    );
  });

  it("GET /api/rooms lists every room with its peers, their names and join times", async (t) => {
    const app = await startOctate(t);
    assert.deepEqual(await getJson(app, "/api/rooms"), []);
    await join(app, ROOM, "alice", { name: "Alice", roomName: "Pairing on main.rs" });
    await join(app, ROOM, "0123456789abcdef");
    await join(app, "other-room", "carol", { name: "Carol" });
    const rooms = await getJson(app, "/api/rooms");
    assert.ok(Array.isArray(rooms), "the listing is an array");
    const room = rooms.find((r) => r.id === ROOM);
    assert.equal(room.name, "Pairing on main.rs");
    assert.equal(room.peerCount, 2);
    assert.ok(near(room.createdAt), `createdAt ${room.createdAt} is milliseconds since the epoch`);
    for (const peer of room.peers) {
      assert.ok(near(peer.joinedAt), `joinedAt ${peer.joinedAt} is milliseconds since the epoch`);
    }
    assert.deepEqual(
      byId(room.peers.map(({ id, name }) => ({ id, name }))),
      [
        { id: "0123456789abcdef", name: "peer-01234567" },
        { id: "alice", name: "Alice" },
      ],
    );
    const other = rooms.find((r) => r.id === "other-room");
    assert.equal(other.name, "other-room", "a room without roomName is named by its id");
    assert.equal(other.peerCount, 1);
    assert.equal(rooms.length, 2);
  });

  it("GET /api/rooms/:id answers one room, or 404 Room not found", async (t) => {
    const app = await startOctate(t);
    await join(app, ROOM, "alice", { name: "Alice" });
    const room = await getJson(app, `/api/rooms/${ROOM}`);
    assert.equal(room.id, ROOM);
    assert.equal(room.name, ROOM);
    assert.equal(room.peerCount, 1);
    assert.deepEqual(room.peers.map(({ id, name }) => ({ id, name })), [{ id: "alice", name: "Alice" }]);
    const missing = await request(`${app.http}/api/rooms/no-such-room`);
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, { error: "Room not found" });
  });

  it("a room is gone once its last peer has left", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice");
    const bob = await join(app, ROOM, "bob");
    await alice.close();
    await eventually(async () => assert.equal((await getJson(app, `/api/rooms/${ROOM}`)).peerCount, 1));
    await bob.close();
    await eventually(async () => assert.equal((await request(`${app.http}/api/rooms/${ROOM}`)).status, 404));
    assert.deepEqual(await getJson(app, "/api/rooms"), []);
  });

  it("unknown paths and methods answer 404 Not found, not 500", async (t) => {
    const app = await startOctate(t);
    for (const [method, path] of [
      ["GET", "/nope"],
      ["GET", "/health"],
      ["GET", "/api/stats"],
      ["POST", "/api/rooms"],
      ["POST", "/api/rooms/x/join"],
      ["GET", "/api/rooms/x/peers"],
    ]) {
      const res = await request(`${app.http}${path}`, { method, json: method === "POST" ? {} : undefined });
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.deepEqual(res.body, { error: "Not found" }, `${method} ${path}`);
    }
  });

  it("without OCTATECODE_PORT no octatecode listener is opened", async (t) => {
    const server = await startServer({ env: { OCTATECODE_PORT: undefined } });
    t.after(() => server.stop());
    await new Promise((r) => setTimeout(r, QUIET_MS));
    assert.doesNotMatch(server.log(), /octatecode listening on/);
  });
});

describe("octatecode: room listings behind ADMIN_TOKEN", () => {
  it("with ADMIN_TOKEN the room listings need its bearer token", async (t) => {
    const app = await startOctate(t, { ADMIN_TOKEN: "t0ken" });
    await join(app, ROOM, "alice");
    for (const path of ["/api/rooms", `/api/rooms/${ROOM}`]) {
      assert.equal((await request(`${app.http}${path}`)).status, 401, `${path} without a token`);
      const wrong = await request(`${app.http}${path}`, { headers: { authorization: "Bearer nope" } });
      assert.equal(wrong.status, 401, `${path} with a wrong token`);
      const raw = await request(`${app.http}${path}`, { headers: { authorization: "t0ken" } });
      assert.equal(raw.status, 401, `${path} with the token but no Bearer`);
      await getJson(app, path, { authorization: "Bearer t0ken" });
    }
  });

  it("with ADMIN_TOKEN the root and health stay open", async (t) => {
    const app = await startOctate(t, { ADMIN_TOKEN: "t0ken" });
    assert.equal((await getJson(app, "/")).status, "running");
    assert.equal((await getJson(app, "/api/health")).status, "ok");
  });

  it("without ADMIN_TOKEN the room listings are open", async (t) => {
    const app = await startOctate(t, { ADMIN_TOKEN: undefined });
    await join(app, ROOM, "alice");
    await getJson(app, "/api/rooms");
    await getJson(app, `/api/rooms/${ROOM}`);
  });
});

describe("octatecode: joining a room", () => {
  it("the lean protocol is spoken on any path, and the server speaks only when spoken to", async (t) => {
    const app = await startOctate(t);
    for (const [i, path] of ["/", "/ws", "/signaling/deep", "/?room=x", "/api/health"].entries()) {
      const socket = await app.connect(path, `client at ${path}`);
      await socket.nothing();
      socket.send({ type: "auth", roomId: `room-${i}`, from: "alice" });
      assert.deepEqual(await socket.next(), { type: "peerList", roomId: `room-${i}`, peers: [] });
      await socket.close();
    }
  });

  it("the first peer gets an empty peer list", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice", { name: "Alice" });
    assert.deepEqual(alice.peerList, { type: "peerList", roomId: ROOM, peers: [] });
    await alice.nothing();
  });

  it("a second peer gets the first in its peer list and the first is told it joined", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice", { name: "Alice" });
    const bob = await join(app, ROOM, "bob", { name: "Bob" });
    assert.deepEqual(bob.peerList, { type: "peerList", roomId: ROOM, peers: [{ id: "alice", name: "Alice" }] });
    assert.deepEqual(await alice.next(), joined("bob", "Bob"));
    await bob.nothing();
    await alice.nothing();
  });

  it("a third peer gets both others and each of them is told once", async (t) => {
    const app = await startOctate(t);
    const { alice, bob, carol } = await threePeers(app);
    assert.equal(carol.peerList.roomId, ROOM);
    assert.deepEqual(byId(carol.peerList.peers), [
      { id: "alice", name: "Alice" },
      { id: "bob", name: "Bob" },
    ]);
    await alice.nothing();
    await bob.nothing();
    await carol.nothing();
  });

  it("a peer without a name is called peer- and the first eight characters of its id", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice", { name: "Alice" });
    const anon = await join(app, ROOM, "9f86d081-884c-4d63-a6f5-c7b1e0a2d3f4");
    assert.deepEqual(await alice.next(), joined("9f86d081-884c-4d63-a6f5-c7b1e0a2d3f4", "peer-9f86d081"));
    const bob = await join(app, ROOM, "bob", {});
    assert.deepEqual(await alice.next(), joined("bob", "peer-bob"));
    assert.deepEqual(byId(bob.peerList.peers), [
      { id: "9f86d081-884c-4d63-a6f5-c7b1e0a2d3f4", name: "peer-9f86d081" },
      { id: "alice", name: "Alice" },
    ]);
    await anon.next(joined("bob", "peer-bob"));
  });

  it("peers of another room are not told of a join", async (t) => {
    const app = await startOctate(t);
    const elsewhere = await join(app, "other-room", "dave");
    await join(app, ROOM, "alice");
    await join(app, ROOM, "bob");
    await elsewhere.nothing();
  });
});

describe("octatecode: relaying within a room", () => {
  for (const type of ["offer", "answer", "ice"]) {
    it(`${type} goes to its target only, with the sender as peerId and from`, async (t) => {
      const app = await startOctate(t);
      const { alice, bob, carol } = await threePeers(app);
      alice.send({ type, roomId: ROOM, from: "alice", to: "bob", data: SIGNALS[type], timestamp: 1 });
      assert.deepEqual(await bob.next(), {
        type,
        roomId: ROOM,
        data: SIGNALS[type],
        peerId: "alice",
        from: "alice",
      });
      await alice.nothing();
      await carol.nothing();
    });
  }

  it("an offer and its answer make the round trip between two peers", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice");
    const bob = await join(app, ROOM, "bob");
    await alice.next(joined("bob", "peer-bob"));
    bob.send({ type: "offer", roomId: ROOM, from: "bob", to: "alice", data: SIGNALS.offer });
    const offer = await alice.next();
    assert.equal(offer.peerId, "bob");
    alice.send({ type: "answer", roomId: ROOM, from: "alice", to: offer.peerId, data: SIGNALS.answer });
    assert.deepEqual(await bob.next(), {
      type: "answer",
      roomId: ROOM,
      data: SIGNALS.answer,
      peerId: "alice",
      from: "alice",
    });
  });

  it("a signal to a peer that is not in the room, or to nobody, is dropped silently", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice");
    const bob = await join(app, ROOM, "bob");
    await alice.next(joined("bob", "peer-bob"));
    const elsewhere = await join(app, "other-room", "dave");
    alice.send({ type: "offer", roomId: ROOM, from: "alice", to: "ghost", data: SIGNALS.offer });
    alice.send({ type: "ice", roomId: ROOM, from: "alice", data: SIGNALS.ice });
    alice.send({ type: "answer", roomId: ROOM, from: "alice", to: "dave", data: SIGNALS.answer });
    await alice.nothing();
    await bob.nothing();
    await elsewhere.nothing();
  });

  for (const type of ["chat", "sync"]) {
    it(`${type} goes to every member, the sender included, as the whole message`, async (t) => {
      const app = await startOctate(t);
      const { alice, bob, carol } = await threePeers(app);
      const elsewhere = await join(app, "other-room", "dave");
      const message = {
        type,
        roomId: ROOM,
        from: "bob",
        data: type === "chat" ? { text: "hello", color: "#f80" } : { file: "main.rs", version: 3, ops: [[0, "x"]] },
        timestamp: 1752919200000,
        extra: { kept: true },
      };
      bob.send(message);
      assert.deepEqual(await alice.next(), message);
      assert.deepEqual(await bob.next(), message);
      assert.deepEqual(await carol.next(), message);
      await elsewhere.nothing();
      await bob.nothing();
    });
  }

  for (const type of ["offer", "answer", "ice", "chat", "sync"]) {
    it(`${type} from a socket that has not joined the room answers Not a member of this room`, async (t) => {
      const app = await startOctate(t);
      const alice = await join(app, ROOM, "alice");
      const bob = await join(app, ROOM, "bob");
      await alice.next(joined("bob", "peer-bob"));
      const stranger = await app.connect("/", "stranger");
      stranger.send({ type, roomId: ROOM, from: "mallory", to: "alice", data: { text: "let me in" } });
      assert.deepEqual(await stranger.next(), NOT_A_MEMBER);
      const elsewhere = await join(app, "other-room", "dave");
      elsewhere.send({ type, roomId: ROOM, from: "dave", to: "alice", data: { text: "let me in" } });
      assert.deepEqual(await elsewhere.next(), NOT_A_MEMBER);
      await alice.nothing();
      await bob.nothing();
    });
  }

  for (const type of ["offer", "answer", "ice", "chat", "sync"]) {
    it(`${type} whose from is another peer's id answers Not a member of this room`, async (t) => {
      const app = await startOctate(t);
      const { alice, bob, carol } = await threePeers(app);
      bob.send({ type, roomId: ROOM, from: "carol", to: "alice", data: { text: "I am carol" } });
      assert.deepEqual(await bob.next(), NOT_A_MEMBER);
      await alice.nothing();
      await carol.nothing();
    });
  }
});

describe("octatecode: malformed messages", () => {
  it("a message without roomId or from answers Missing roomId or from, whatever its type", async (t) => {
    const app = await startOctate(t);
    const socket = await app.connect("/", "sloppy");
    for (const message of [
      { type: "auth", from: "alice" },
      { type: "auth", roomId: ROOM },
      { type: "chat", roomId: ROOM, data: {} },
      { type: "offer", roomId: "", from: "alice", to: "bob" },
      { type: "sync", roomId: ROOM, from: "" },
      { type: "no-such-type" },
      {},
    ]) {
      socket.send(message);
      const reply = await socket.next(named(`in reply to ${JSON.stringify(message)}`, () => true));
      assert.deepEqual(reply, MISSING, `reply to ${JSON.stringify(message)}`);
    }
    await socket.nothing();
  });

  it("bad JSON, null and a non-string from answer Invalid message format and the socket goes on", async (t) => {
    const app = await startOctate(t);
    const socket = await app.connect("/", "sloppy");
    for (const frame of ["not json", "{\"type\":\"auth\",", "null"]) {
      socket.sendText(frame);
      assert.deepEqual(await socket.next(named(`in reply to ${frame}`, () => true)), INVALID_FORMAT);
    }
    socket.send({ type: "auth", roomId: ROOM, from: 42 });
    assert.deepEqual(await socket.next(), INVALID_FORMAT, "reply to a numeric from");
    socket.send({ type: "auth", roomId: ROOM, from: "alice" });
    assert.deepEqual(await socket.next(), { type: "peerList", roomId: ROOM, peers: [] });
  });

  it("an unknown type with roomId and from is ignored silently", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice");
    const bob = await join(app, ROOM, "bob");
    await alice.next(joined("bob", "peer-bob"));
    alice.send({ type: "cursor", roomId: ROOM, from: "alice", data: { line: 1 } });
    await alice.nothing();
    await bob.nothing();
  });
});

describe("octatecode: leaving", () => {
  it("when a peer disconnects the others in its room get peerLeft and the room forgets it", async (t) => {
    const app = await startOctate(t);
    const { alice, bob, carol } = await threePeers(app);
    const elsewhere = await join(app, "other-room", "dave");
    await carol.close();
    assert.deepEqual(await alice.next(), left("carol"));
    assert.deepEqual(await bob.next(), left("carol"));
    await elsewhere.nothing();
    const room = await getJson(app, `/api/rooms/${ROOM}`);
    assert.deepEqual(room.peers.map((p) => p.id).sort(), ["alice", "bob"]);
    alice.send({ type: "offer", roomId: ROOM, from: "alice", to: "carol", data: SIGNALS.offer });
    await alice.nothing();
  });

  it("a socket that joined several rooms leaves all of them when it closes", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, "room-a", "alice");
    const bob = await join(app, "room-b", "bob");
    const roamer = await join(app, "room-a", "roamer-a");
    await alice.next(joined("roamer-a", "peer-roamer-a", "room-a"));
    roamer.send({ type: "auth", roomId: "room-b", from: "roamer-b", data: { name: "Roamer" } });
    assert.deepEqual(await roamer.nextOfType("peerList"), {
      type: "peerList",
      roomId: "room-b",
      peers: [{ id: "bob", name: "peer-bob" }],
    });
    await bob.next(joined("roamer-b", "Roamer", "room-b"));
    await roamer.close();
    assert.deepEqual(await alice.next(), left("roamer-a", "room-a"));
    assert.deepEqual(await bob.next(), left("roamer-b", "room-b"));
    assert.equal((await getJson(app, "/api/rooms/room-a")).peerCount, 1);
    assert.equal((await getJson(app, "/api/rooms/room-b")).peerCount, 1);
    assert.equal((await getJson(app, "/api/health")).totalPeers, 2);
  });
});

describe("octatecode: the same peer id on a new socket", () => {
  /** alice on `old`, bob, then alice again on `current` (bob is told she joined again). */
  async function rejoined(app) {
    const old = await join(app, ROOM, "alice", { name: "Alice" });
    const bob = await join(app, ROOM, "bob", { name: "Bob" });
    await old.next(joined("bob", "Bob"));
    const current = await join(app, ROOM, "alice", { name: "Alice again" });
    await bob.next(joined("alice", "Alice again"));
    return { old, current, bob };
  }

  it("replaces the old entry: the new socket gets the others and the signals", async (t) => {
    const app = await startOctate(t);
    const { old, current, bob } = await rejoined(app);
    assert.deepEqual(current.peerList, { type: "peerList", roomId: ROOM, peers: [{ id: "bob", name: "Bob" }] });
    bob.send({ type: "offer", roomId: ROOM, from: "bob", to: "alice", data: SIGNALS.offer });
    assert.deepEqual(await current.next(), {
      type: "offer",
      roomId: ROOM,
      data: SIGNALS.offer,
      peerId: "bob",
      from: "bob",
    });
    bob.send({ type: "chat", roomId: ROOM, from: "bob", data: { text: "who is there?" } });
    await current.next(matching({ type: "chat" }));
    await old.nothing(matching({ type: "offer" }));
    await old.nothing(matching({ type: "chat" }));
    const room = await getJson(app, `/api/rooms/${ROOM}`);
    assert.equal(room.peerCount, 2);
    assert.deepEqual(byId(room.peers.map(({ id, name }) => ({ id, name }))), [
      { id: "alice", name: "Alice again" },
      { id: "bob", name: "Bob" },
    ]);
  });

  it("the old socket is no longer a member of the room", async (t) => {
    const app = await startOctate(t);
    const { old, current, bob } = await rejoined(app);
    old.send({ type: "chat", roomId: ROOM, from: "alice", data: { text: "still here?" } });
    assert.deepEqual(await old.next(matching({ type: "error" })), NOT_A_MEMBER);
    await bob.nothing(matching({ type: "chat" }));
    await current.nothing(matching({ type: "chat" }));
  });

  it("closing the old socket sends no peerLeft and keeps the peer in the room", async (t) => {
    const app = await startOctate(t);
    const { old, current, bob } = await rejoined(app);
    await old.close();
    await bob.nothing(matching({ type: "peerLeft" }));
    const room = await getJson(app, `/api/rooms/${ROOM}`);
    assert.deepEqual(room.peers.map((p) => p.id).sort(), ["alice", "bob"]);
    bob.send({ type: "ice", roomId: ROOM, from: "bob", to: "alice", data: SIGNALS.ice });
    assert.equal((await current.next(matching({ type: "ice" }))).from, "bob");
  });

  it("closing the new socket tells the others the peer left", async (t) => {
    const app = await startOctate(t);
    const { old, current, bob } = await rejoined(app);
    await current.close();
    assert.deepEqual(await bob.next(matching({ type: "peerLeft" })), left("alice"));
    await old.close();
    await bob.nothing(matching({ type: "peerLeft" }));
    assert.deepEqual((await getJson(app, `/api/rooms/${ROOM}`)).peers.map((p) => p.id), ["bob"]);
  });
});

describe("octatecode: tokens with OCTATECODE_AUTH_SECRET", () => {
  it("POST /api/auth/token issues a token for a user and a room", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const res = await askToken(app, { userId: "alice", roomId: ROOM });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    assert.equal(res.body.status, "success");
    assert.equal(typeof res.body.token, "string");
    assert.ok(res.body.token.length > 0);
    assert.equal(res.body.expiresIn, "1 hour");
  });

  it("a token never carries the secret, not even base64-encoded", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const token = await tokenFor(app, "alice");
    const pieces = [token, ...token.split(/[.:_~]/)];
    for (const piece of pieces) {
      for (const encoding of ["base64", "base64url"]) {
        const decoded = Buffer.from(piece, encoding).toString("latin1");
        assert.ok(!decoded.includes(SECRET), `the token's ${encoding} decoding holds the secret`);
        // Nested: the original base64-encoded the secret inside a base64 JSON document.
        for (const inner of decoded.match(/[A-Za-z0-9+/_-]{16,}={0,2}/g) ?? []) {
          assert.ok(
            !Buffer.from(inner, "base64").toString("latin1").includes(SECRET),
            "the token holds the secret base64-encoded inside",
          );
        }
      }
    }
    assert.ok(!token.includes(SECRET));
  });

  it("POST /api/auth/token without userId or roomId answers 400 naming the required fields", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    for (const body of [{ userId: "alice" }, { roomId: ROOM }, {}]) {
      const res = await askToken(app, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error, "Missing required fields");
      assert.deepEqual(res.body.required, ["userId", "roomId"]);
    }
  });

  it("auth with the token issued for that user and room joins the room", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const alice = await join(app, ROOM, "alice", { name: "Alice", token: await tokenFor(app, "alice") });
    assert.deepEqual(alice.peerList, { type: "peerList", roomId: ROOM, peers: [] });
    const bob = await join(app, ROOM, "bob", { name: "Bob", token: await tokenFor(app, "bob") });
    assert.deepEqual(bob.peerList.peers, [{ id: "alice", name: "Alice" }]);
    assert.deepEqual(await alice.next(), joined("bob", "Bob"));
    bob.send({ type: "offer", roomId: ROOM, from: "bob", to: "alice", data: SIGNALS.offer });
    assert.equal((await alice.next()).from, "bob");
  });

  it("a token can be used again, e.g. to reconnect", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const token = await tokenFor(app, "alice");
    const first = await join(app, ROOM, "alice", { token });
    await first.close();
    const again = await join(app, ROOM, "alice", { token });
    assert.equal(again.peerList.type, "peerList");
  });

  /** Asserts that `auth` with `data` as `from` into `roomId` is refused and that nobody learns of it. */
  async function refused(app, witness, from, data, roomId = ROOM) {
    const socket = await app.connect("/", `${from} with a bad token`);
    socket.send({ type: "auth", roomId, from, ...(data === undefined ? {} : { data }) });
    assert.deepEqual(await socket.next(), INVALID_TOKEN, `auth as ${from} with ${JSON.stringify(data)}`);
    await witness.nothing();
    socket.send({ type: "chat", roomId, from, data: { text: "am I in?" } });
    assert.deepEqual(await socket.next(), NOT_A_MEMBER);
    await witness.nothing();
    return socket;
  }

  it("auth without a token is refused with Invalid token", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const witness = await join(app, ROOM, "witness", { token: await tokenFor(app, "witness") });
    await refused(app, witness, "alice", undefined);
    await refused(app, witness, "alice", { name: "Alice" });
    await refused(app, witness, "alice", { token: null });
    await refused(app, witness, "alice", { token: "" });
    const rooms = await getJson(app, "/api/rooms");
    assert.deepEqual(rooms.map((r) => r.peers.map((p) => p.id)), [["witness"]]);
  });

  it("a forged or altered token is refused", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const witness = await join(app, ROOM, "witness", { token: await tokenFor(app, "witness") });
    const genuine = await tokenFor(app, "alice");
    const altered = alterAt(genuine, Math.floor(genuine.length / 2));
    const lastAltered = alterAt(genuine, genuine.length - 1);
    const now = Date.now();
    // The original's format, signed with its default secret, as an attacker would forge it.
    const originalStyle = Buffer.from(
      JSON.stringify({
        userId: "alice",
        roomId: ROOM,
        issuedAt: now,
        expiresAt: now + 3_600_000,
        signature: Buffer.from(`alice:${ROOM}:dev-secret-change-in-production`).toString("base64"),
      }),
    ).toString("base64");
    for (const token of ["not-a-token", "a.b.c", altered, lastAltered, `${genuine}x`, originalStyle]) {
      await refused(app, witness, "alice", { token });
    }
  });

  it("a token issued by a server with another secret is refused", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const stranger = await startOctate(t, { OCTATECODE_AUTH_SECRET: "another-secret-entirely-9" });
    const witness = await join(app, ROOM, "witness", { token: await tokenFor(app, "witness") });
    await refused(app, witness, "alice", { token: await tokenFor(stranger, "alice") });
  });

  it("a token for another room is refused", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const witness = await join(app, ROOM, "witness", { token: await tokenFor(app, "witness") });
    await refused(app, witness, "alice", { token: await tokenFor(app, "alice", "other-room") });
  });

  it("a token for another user is refused, whatever data.userId says", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const witness = await join(app, ROOM, "witness", { token: await tokenFor(app, "witness") });
    const bobs = await tokenFor(app, "bob");
    await refused(app, witness, "alice", { token: bobs });
    await refused(app, witness, "alice", { token: bobs, userId: "bob" });
  });

  it("an expired token is refused", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET, OCTATECODE_TOKEN_TTL_SECS: "2" });
    const witness = await join(app, ROOM, "witness", { token: await tokenFor(app, "witness") });
    const fresh = await tokenFor(app, "alice");
    const alice = await join(app, ROOM, "alice", { token: fresh });
    await witness.next(joined("alice", "peer-alice"));
    await alice.close();
    await witness.next(left("alice"));
    await new Promise((r) => setTimeout(r, 3_500));
    await refused(app, witness, "alice", { token: fresh });
  });

  it("a socket refused for its token can still join with a valid one", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: SECRET });
    const socket = await app.connect("/", "alice");
    socket.send({ type: "auth", roomId: ROOM, from: "alice", data: { token: "forged" } });
    assert.deepEqual(await socket.next(), INVALID_TOKEN);
    socket.send({ type: "auth", roomId: ROOM, from: "alice", data: { token: await tokenFor(app, "alice") } });
    assert.deepEqual(await socket.next(), { type: "peerList", roomId: ROOM, peers: [] });
  });

  it("without the secret auth needs no token and POST /api/auth/token answers 404", async (t) => {
    const app = await startOctate(t, { OCTATECODE_AUTH_SECRET: undefined });
    const res = await askToken(app, { userId: "alice", roomId: ROOM });
    assert.equal(res.status, 404);
    const alice = await join(app, ROOM, "alice");
    assert.deepEqual(alice.peerList, { type: "peerList", roomId: ROOM, peers: [] });
  });
});

describe("octatecode: limits and heartbeats of the main port", () => {
  it("the per-client message rate applies: a flood is refused and then the connection closed with 1008", async (t) => {
    const app = await startOctate(t, { WS_MSG_RATE_PER_SEC: "1", WS_MSG_BURST: "3" });
    const alice = await join(app, ROOM, "alice");
    const chat = { type: "chat", roomId: ROOM, from: "alice", data: { text: "spam" } };
    const echoes = await flood(alice, chat, 60, matching({ type: "chat" }));
    assert.ok(echoes <= 5, `${echoes} of 60 chats relayed with a burst of 3 at 1/s`);
    assert.equal((await alice.closedByServer()).code, 1008);
  });

  it("another client is not limited by a flooder", async (t) => {
    const app = await startOctate(t, { WS_MSG_RATE_PER_SEC: "1", WS_MSG_BURST: "3" });
    const flooder = await join(app, "flood-room", "flooder");
    const calm = await join(app, ROOM, "calm");
    const chat = { type: "chat", roomId: "flood-room", from: "flooder", data: { text: "spam" } };
    await flood(flooder, chat, 60, matching({ type: "chat" }));
    calm.send({ type: "chat", roomId: ROOM, from: "calm", data: { text: "hi" } });
    await calm.nextOfType("chat");
  });

  it("the server sends WebSocket protocol pings", async (t) => {
    const app = await startOctate(t, { WS_PING_INTERVAL_SECS: "1" });
    const socket = await app.connect("/", "idle");
    await socket.pinged(1);
  });

  it("a frame over 64 KiB closes the connection with 1009", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice");
    const bob = await join(app, ROOM, "bob");
    await alice.next(joined("bob", "peer-bob"));
    alice.send({ type: "sync", roomId: ROOM, from: "alice", data: { content: "x".repeat(128 * 1024) } });
    assert.equal((await alice.closedByServer()).code, 1009);
    await bob.nothing(matching({ type: "sync" }));
  });

  it("relayed messages are counted in the metrics under the octatecode dialect", async (t) => {
    const app = await startOctate(t);
    const alice = await join(app, ROOM, "alice");
    const bob = await join(app, ROOM, "bob");
    await alice.next(joined("bob", "peer-bob"));
    alice.send({ type: "offer", roomId: ROOM, from: "alice", to: "bob", data: SIGNALS.offer });
    await bob.nextOfType("offer");
    const res = await request(`${app.server.main}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.text, /^signalpost_\w+\{[^}]*dialect="octatecode"[^}]*\} [1-9]/m);
  });
});
