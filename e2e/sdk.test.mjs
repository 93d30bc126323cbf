// Unit tests of web/signalpost.js in Node, with a scripted fetch and a fake
// WebSocket: the parts a two-browser run cannot reach on purpose (backoff,
// 429 handling, reconnecting and re-joining after a dropped socket).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

// web/ has no package.json saying "module", so Node would read the .js as
// CommonJS; load the exact bytes the server ships as an ES module instead.
const source = readFileSync(new URL("../web/signalpost.js", import.meta.url), "utf8");
const {
  DEVICE_ID_KEY,
  Signalpost,
  SignalpostError,
  loadDeviceId,
  normalizeCode,
  wsUrlFor,
} = await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);

/** A `fetch` that answers from a list of [status, body, headers] and records requests. */
function scriptedFetch(answers) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    requests.push({ url, method: init.method ?? "GET", body: init.body ? JSON.parse(init.body) : null });
    const next = answers.shift();
    if (!next) throw new Error(`unexpected request ${url}`);
    if (next instanceof Error) throw next;
    const [status, body, headers = {}] = next;
    return new Response(body === undefined ? null : JSON.stringify(body), { status, headers });
  };
  return { fetch, requests };
}

/** A minimal stand-in for the browser WebSocket; the test plays the server. */
class FakeSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.instances.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({});
  }
  // Server side:
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({});
  }
}

function memoryStorage() {
  const map = new Map();
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, String(v)) };
}

const until = async (predicate, ms = 3000) => {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("signalpost.js", () => {
  test("the WebSocket URL is derived from the base URL", () => {
    assert.equal(wsUrlFor("http://localhost:8080"), "ws://localhost:8080/ws");
    assert.equal(wsUrlFor("https://example.com/signal/"), "wss://example.com/signal/ws");
    const sp = new Signalpost({ baseUrl: "https://example.com/", storage: memoryStorage() });
    assert.equal(sp.baseUrl, "https://example.com");
    assert.equal(sp.wsUrl, "wss://example.com/ws");
  });

  test("the device id is created once and kept in storage", () => {
    const storage = memoryStorage();
    const first = loadDeviceId(storage);
    assert.match(first, /^[0-9a-f-]{36}$/);
    assert.equal(storage.getItem(DEVICE_ID_KEY), first);
    assert.equal(loadDeviceId(storage), first);
    const throwing = { getItem: () => { throw new Error("denied"); }, setItem() {} };
    assert.match(loadDeviceId(throwing), /^[0-9a-f-]{36}$/);
  });

  test("codes are normalised before they are sent", () => {
    assert.equal(normalizeCode(" 123 456 "), "123456");
    assert.equal(normalizeCode("123-456"), "123456");
  });

  test("createCode, then waitForPeer polls through 204s until the room id comes", async () => {
    const { fetch, requests } = scriptedFetch([
      [201, { ok: true, joinid: "042042", exp: "2030-01-01T00:00:00Z" }],
      [204],
      [204],
      [200, { roomid: "r".repeat(48) }],
    ]);
    const sp = new Signalpost({ baseUrl: "http://s", fetch, deviceId: "dev-a" });
    const created = await sp.createCode({ expiresInSeconds: 60 });
    assert.equal(created.code, "042042");
    assert.ok(created.expiresAt.getTime() > Date.now() + 55_000);
    assert.deepEqual(requests[0].body, { client1: "dev-a", expiresInSeconds: 60 });
    assert.equal(await sp.waitForPeer(), "r".repeat(48));
    assert.equal(requests.length, 4);
    for (const r of requests.slice(1)) {
      assert.equal(r.url, "http://s/api/rooms/check");
      assert.deepEqual(r.body, { joinid: "042042", client1: "dev-a" });
    }
  });

  test("waitForPeer rejects with not_found_or_expired on a 404 and waits out a 429", async () => {
    const { fetch } = scriptedFetch([
      [429, { error: "too_many_requests" }, { "Retry-After": "0" }],
      new TypeError("network down"),
      [404, { error: "not_found_or_expired" }],
    ]);
    const sp = new Signalpost({ baseUrl: "http://s", fetch, deviceId: "dev-a" });
    await assert.rejects(sp.waitForPeer({ code: "111111" }), (err) => {
      assert.ok(err instanceof SignalpostError);
      assert.equal(err.code, "not_found_or_expired");
      assert.equal(err.status, 404);
      return true;
    });
  });

  test("waitForPeer stops when aborted", async () => {
    const answers = Array.from({ length: 50 }, () => [204]);
    const { fetch } = scriptedFetch(answers);
    const sp = new Signalpost({ baseUrl: "http://s", fetch, deviceId: "dev-a" });
    const ctrl = new AbortController();
    const waiting = sp.waitForPeer({ code: "111111", signal: ctrl.signal });
    setTimeout(() => ctrl.abort(new Error("cancelled")), 50);
    await assert.rejects(waiting, /cancelled/);
  });

  test("acceptCode returns the room id and maps errors to codes with Retry-After", async () => {
    const { fetch, requests } = scriptedFetch([
      [200, { roomid: "abc" }],
      [404, { error: "not_found_or_expired" }],
      [409, { error: "conflict" }],
      [429, { error: "too_many_requests" }, { "Retry-After": "37" }],
      new TypeError("Failed to fetch"),
    ]);
    const sp = new Signalpost({ baseUrl: "http://s", fetch, deviceId: "dev-b" });
    assert.equal(await sp.acceptCode("123 456"), "abc");
    assert.deepEqual(requests[0].body, { joinid: "123456", client2: "dev-b" });
    await assert.rejects(sp.acceptCode("000000"), { code: "not_found_or_expired", status: 404 });
    await assert.rejects(sp.acceptCode("000000"), { code: "conflict", status: 409 });
    await assert.rejects(sp.acceptCode("000000"), {
      code: "too_many_requests",
      status: 429,
      retryAfter: 37,
      message: "Too many attempts. Try again in 37 s.",
    });
    await assert.rejects(sp.acceptCode("000000"), { code: "network_error", status: 0 });
  });

  test("iceServers uses the server's list and falls back to none", async () => {
    const servers = [{ urls: ["stun:stun.example.com:3478"] }];
    const { fetch, requests } = scriptedFetch([
      [200, { iceServers: servers, ttl: 3600 }],
      [501, { error: "turn_not_configured" }],
      new TypeError("offline"),
    ]);
    const sp = new Signalpost({ baseUrl: "http://s", fetch, deviceId: "dev a" });
    assert.deepEqual(await sp.iceServers(), servers);
    assert.equal(requests[0].url, "http://s/api/turn-credentials?deviceId=dev%20a");
    assert.deepEqual(await sp.iceServers(), []);
    assert.deepEqual(await sp.iceServers(), []);
  });

  test("a session joins, relays, and re-joins its room after the socket drops", async () => {
    FakeSocket.instances = [];
    const sp = new Signalpost({ baseUrl: "http://s", WebSocket: FakeSocket, deviceId: "dev-a", fetch: async () => {} });
    const session = sp.connect("room-1");
    const events = [];
    for (const type of ["open", "joined", "ready", "offer", "answer", "candidate", "peerDisconnected", "peerLeft", "reconnecting", "closed", "error"]) {
      session.on(type, (e) => events.push([type, e]));
    }

    const ws1 = FakeSocket.instances[0];
    assert.equal(ws1.url, "ws://s/ws");
    ws1.open();
    ws1.deliver({ type: "connected", clientId: "c1", server: "signalpost" });
    assert.deepEqual(ws1.sent, [{ type: "join_room", roomId: "room-1", deviceId: "dev-a" }]);

    // Sent before the join is confirmed: queued, then flushed in order.
    session.sendOffer("v=0 offer");
    assert.equal(ws1.sent.length, 1);
    ws1.deliver({ type: "room_joined", roomId: "room-1", userCount: 2, isInitiator: true, ready: true });
    ws1.deliver({ type: "room_ready", roomId: "room-1", message: "…", userCount: 2, isInitiator: true });
    assert.deepEqual(ws1.sent[1], { type: "webrtc_offer", sdp: "v=0 offer" });
    session.sendCandidate({ toJSON: () => ({ candidate: "candidate:1", sdpMid: "0" }) });
    assert.deepEqual(ws1.sent[2], { type: "ice_candidate", candidate: { candidate: "candidate:1", sdpMid: "0" } });

    ws1.deliver({ type: "webrtc_answer", from: "c2", roomId: "room-1", sdp: "v=0 answer" });
    ws1.deliver({ type: "ice_candidate", from: "c2", roomId: "room-1", candidate: { candidate: "x" } });
    ws1.deliver({ type: "peer_disconnected", message: "Other user disconnected", peerId: "c2" });
    ws1.deliver({ type: "error", error: "Room must have exactly 2 users for WebRTC" });
    assert.deepEqual(events.find(([t]) => t === "ready")?.[1], { roomId: "room-1", isInitiator: true });
    assert.deepEqual(events.find(([t]) => t === "answer")?.[1], { sdp: "v=0 answer", from: "c2" });
    assert.deepEqual(events.find(([t]) => t === "candidate")?.[1], { candidate: { candidate: "x" }, from: "c2" });
    assert.equal(events.find(([t]) => t === "peerDisconnected")?.[1].peerId, "c2");
    assert.deepEqual(events.find(([t]) => t === "error")?.[1], { message: "Room must have exactly 2 users for WebRTC", fatal: false });

    // The socket drops: the session reconnects with backoff and joins again.
    ws1.drop();
    session.sendAnswer("sent while down");
    assert.ok(events.some(([t]) => t === "reconnecting"));
    await until(() => FakeSocket.instances.length === 2);
    const ws2 = FakeSocket.instances[1];
    ws2.open();
    ws2.deliver({ type: "connected", clientId: "c3", server: "signalpost" });
    assert.deepEqual(ws2.sent, [{ type: "join_room", roomId: "room-1", deviceId: "dev-a" }]);
    assert.equal(session.clientId, "c3");
    ws2.deliver({ type: "room_joined", roomId: "room-1", userCount: 1, isInitiator: true, ready: false });
    assert.deepEqual(ws2.sent[1], { type: "webrtc_answer", sdp: "sent while down" });

    // The server closes the room: the session ends and does not come back.
    ws2.deliver({ type: "room_closed", roomId: "room-1" });
    assert.deepEqual(events.at(-1), ["closed", { reason: "room_closed" }]);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(FakeSocket.instances.length, 2);
  });

  test("a full room is asked again a few times, then ends the session with an error", async () => {
    FakeSocket.instances = [];
    const sp = new Signalpost({ baseUrl: "http://s", WebSocket: FakeSocket, deviceId: "dev-c", fetch: async () => {} });
    const session = sp.connect("room-2");
    const seen = [];
    session.on("error", (e) => seen.push(["error", e.fatal]));
    session.on("closed", (e) => seen.push(["closed", e.reason]));
    const ws = FakeSocket.instances[0];
    ws.open();
    ws.deliver({ type: "connected", clientId: "c9", server: "signalpost" });
    const full = { type: "room_full", error: "Room is full (max 2 users)", roomId: "room-2" };
    for (let retry = 1; retry <= 3; retry += 1) {
      ws.deliver(full);
      assert.deepEqual(seen, [], "not given up yet");
      await until(() => ws.sent.length === retry + 1, 5000);
      assert.deepEqual(ws.sent.at(-1), { type: "join_room", roomId: "room-2", deviceId: "dev-c" });
    }
    ws.deliver(full);
    assert.deepEqual(seen, [["error", true], ["closed", "room_full"]]);
    assert.equal(ws.readyState, 3);
  });

  test("a room that frees up while retrying is joined", async () => {
    FakeSocket.instances = [];
    const sp = new Signalpost({ baseUrl: "http://s", WebSocket: FakeSocket, deviceId: "dev-e", fetch: async () => {} });
    const session = sp.connect("room-4");
    const seen = [];
    session.on("joined", (e) => seen.push(["joined", e.userCount]));
    session.on("closed", (e) => seen.push(["closed", e.reason]));
    const ws = FakeSocket.instances[0];
    ws.open();
    ws.deliver({ type: "connected", clientId: "c1", server: "signalpost" });
    ws.deliver({ type: "room_full", error: "Room is full (max 2 users)", roomId: "room-4" });
    await until(() => ws.sent.length === 2, 5000);
    ws.deliver({ type: "room_joined", roomId: "room-4", userCount: 2, isInitiator: false, ready: true });
    assert.deepEqual(seen, [["joined", 2]]);
  });

  test("a session replaced by a newer one of its device stops quietly and does not reconnect", async () => {
    FakeSocket.instances = [];
    const sp = new Signalpost({ baseUrl: "http://s", WebSocket: FakeSocket, deviceId: "dev-f", fetch: async () => {} });
    const session = sp.connect("room-5");
    const seen = [];
    session.on("error", (e) => seen.push(["error", e.message]));
    session.on("closed", (e) => seen.push(["closed", e.reason]));
    const ws = FakeSocket.instances[0];
    ws.open();
    ws.deliver({ type: "connected", clientId: "c1", server: "signalpost" });
    ws.deliver({ type: "room_joined", roomId: "room-5", userCount: 2, isInitiator: true, ready: true });
    ws.deliver({ type: "replaced" });
    assert.deepEqual(seen, [["closed", "replaced"]]);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(FakeSocket.instances.length, 1);
  });

  test("close() stops reconnecting and leave() tells the server", () => {
    FakeSocket.instances = [];
    const sp = new Signalpost({ baseUrl: "http://s", WebSocket: FakeSocket, deviceId: "dev-d", fetch: async () => {} });
    const session = sp.connect("room-3");
    const ws = FakeSocket.instances[0];
    ws.open();
    ws.deliver({ type: "connected", clientId: "c1", server: "signalpost" });
    session.leave();
    assert.deepEqual(ws.sent.at(-1), { type: "leave_room" });
    assert.equal(ws.readyState, 3);
    assert.equal(FakeSocket.instances.length, 1);
  });
});
