// Conformance tests of the dropsilk dialect listener (issue 15, "Speak DropSilk's protocol").
//
// The contract is ../shared/protocols/dropsilk.md (the original DropSilk backend, as its current
// web client uses it) plus the decisions recorded in issue 15's brief: DROPSILK_PORT opens the
// listener; the client address is the socket peer, or the right-most X-Forwarded-For entry from a
// TRUSTED_PROXIES peer; DROPSILK_ROOM_TTL_SECS sets the sliding room expiry; GUESS_LIMIT counts
// failed code lookups; stale duplicate sockets no longer evict the live participant; origins,
// the 1 MiB frame cap, TURN credentials, UploadThing's 501 and the 400 shape of malformed bodies.
//
// The tests drive the server as the real client does (lib/dropsilk.mjs follows roomApi.js,
// roomSession.js and websocket.js): create or join a room over HTTP, poll, mark ready, then
// attach one WebSocket per channel. Client addresses are varied with X-Forwarded-For, which the
// servers here believe because the test process is their trusted proxy (127.0.0.1/32).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import {
  DropSilkSocket,
  DropSilkUser,
  PARTICIPANT_ID,
  QUIET_MS,
  ROOM_CODE,
  RoomApi,
  RoomApiError,
  SESSION_ID,
  byId,
  closeAllSockets,
  participantPath,
  sleep,
  startDropsilk,
  upgradeStatus,
} from "./lib/dropsilk.mjs";

// ---------------------------------------------------------------------------------------------
// Servers

const TRUSTED = { TRUSTED_PROXIES: "127.0.0.1/32" };
const servers = [];

async function start(env) {
  const server = await startDropsilk(env);
  servers.push(server);
  return server;
}

let sharedServer = null;
/** The server most tests share: default settings, the test process as trusted proxy. */
function shared() {
  sharedServer ??= start(TRUSTED);
  return sharedServer;
}

after(async () => {
  await closeAllSockets();
  await Promise.all(servers.map((s) => s.stop()));
});

// ---------------------------------------------------------------------------------------------
// Helpers

const HOST = "SwiftFox123";
const GUEST = "CalmOtter456";

const NO_SHARE = { activeParticipantId: null, requestedBySelf: false, requestedByPeer: false, isActive: false };
const NO_CHAT = { requestedBySelf: false, requestedByPeer: false, isActive: false };

/** A RoomParticipantSummary. */
function participant(user, role, { ready = false, fileCount = 0, totalBytes = 0 } = {}) {
  return { participantId: user.participantId, role, name: user.name, ready, fileCount, totalBytes };
}

/** A code in the room alphabet that no room has (a fresh random one). */
function unknownCode() {
  const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  return Array.from({ length: 6 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
}

/** Asserts an ISO-8601 UTC timestamp about `seconds` from now (± `slack` seconds). */
function assertExpiresIn(expiresAt, seconds, slack) {
  assert.match(expiresAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, "expiresAt is ISO-8601 UTC");
  const inMs = Date.parse(expiresAt) - Date.now();
  assert.ok(
    Math.abs(inMs - seconds * 1000) <= slack * 1000,
    `expiresAt ${expiresAt} should be about ${seconds} s from now, is ${inMs / 1000} s`,
  );
}

/** Expects a roomApi.js call to fail with this status and body. */
async function rejectsWith(promise, status, body) {
  const error = await promise.then(
    (value) => assert.fail(`expected HTTP ${status}, got a summary: ${JSON.stringify(value)}`),
    (e) => e,
  );
  assert.ok(error instanceof RoomApiError, String(error));
  assert.equal(error.status, status, `status of ${JSON.stringify(error.body)}`);
  assert.deepEqual(error.body, body);
}

const NOT_IN_ROOM = { error: "Room not found or participant is not part of it." };
const ROOM_GONE = { error: "Room not found or expired" };

/** Asserts the 400 validation shape: {error: "Invalid request", issues: [strings]}. */
function assertInvalidRequest(reply, what, { needIssues = true } = {}) {
  assert.equal(reply.status, 400, `${what}: status (body ${reply.text})`);
  assert.equal(reply.json?.error, "Invalid request", `${what}: error (body ${reply.text})`);
  assert.ok(Array.isArray(reply.json.issues), `${what}: issues is an array`);
  assert.ok(reply.json.issues.every((i) => typeof i === "string"), `${what}: issues are strings`);
  if (needIssues) assert.ok(reply.json.issues.length >= 1, `${what}: at least one issue`);
  assert.deepEqual(Object.keys(reply.json).sort(), ["error", "issues"], `${what}: no other fields`);
}

/** Host creates a room, guest joins it. */
async function hostAndGuest(base, { hostFrom, guestFrom } = {}) {
  const host = new DropSilkUser(base, HOST, { from: hostFrom });
  const guest = new DropSilkUser(base, GUEST, { from: guestFrom });
  await host.createRoom();
  await guest.joinRoom(host.roomCode);
  return { host, guest };
}

/** Both attach a channel (host first); resolves once both sockets have seen peer-joined. */
async function pairOn(channel, host, guest, { hostFrom, guestFrom } = {}) {
  const h = await host.attach(channel, hostFrom ? { from: hostFrom } : {});
  const g = await guest.attach(channel, guestFrom ? { from: guestFrom } : {});
  const [hostJoined, guestJoined] = await Promise.all([h.socket.next("peer-joined"), g.socket.next("peer-joined")]);
  return { host: h.socket, guest: g.socket, hostAttached: h.attached, guestAttached: g.attached, hostJoined, guestJoined };
}

/** A room with the guest ready and both transfer sockets paired (what the client does first). */
async function pairedRoom(base, options = {}) {
  const { host, guest } = await hostAndGuest(base, options);
  await guest.markReady({ fileCount: 1, totalBytes: 10 });
  const transfer = await pairOn("transfer", host, guest);
  return { host, guest, transfer };
}

/** A paired room with chat and screen share started and all three channels attached on both sides. */
async function roomOnAllChannels(base, options = {}) {
  const { host, guest, transfer } = await pairedRoom(base, options);
  await host.setChat(true);
  const chat = await pairOn("chat", host, guest);
  await guest.setScreenShare(true);
  const screen = await pairOn("screen-share", host, guest);
  return {
    host,
    guest,
    sockets: {
      host: { transfer: transfer.host, chat: chat.host, "screen-share": screen.host },
      guest: { transfer: transfer.guest, chat: chat.guest, "screen-share": screen.guest },
    },
  };
}

/** A users-list predicate: exactly these sockets, with these names, in any order. */
const exactly = (...entries) => (users) =>
  JSON.stringify(byId(users)) === JSON.stringify(byId(entries.map(([socket, name]) => ({ id: socket.id, name }))));

/** A socket that has registered `name`, from `from`. */
async function person(base, name, from) {
  const socket = await DropSilkSocket.connect(base, { from });
  socket.send({ type: "register-details", name });
  return socket;
}

/** Two sockets paired in a legacy flight; resolves to what each saw. */
async function legacyFlight(base, { fromA, fromB } = {}) {
  const a = await person(base, "Ann", fromA);
  const b = await person(base, "Ben", fromB);
  a.send({ type: "create-flight" });
  const { flightCode } = await a.next("flight-created");
  b.send({ type: "join-flight", flightCode });
  const [aJoined, bJoined] = await Promise.all([a.next("peer-joined"), b.next("peer-joined")]);
  return { a, b, flightCode, aJoined, bJoined };
}

// ---------------------------------------------------------------------------------------------

describe("rooms over HTTP", () => {
  let base;
  before(async () => {
    base = (await shared()).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("creating a room answers 201 with the host's summary: waiting, a room code, a participant id and an expiry 30 minutes out", async () => {
    const api = new RoomApi(base);
    const reply = await api.raw("POST", "/api/rooms", { body: { name: `  ${HOST}  ` } });
    assert.equal(reply.status, 201, reply.text);
    const summary = reply.json;
    assert.match(summary.roomCode, ROOM_CODE);
    assert.match(summary.self.participantId, PARTICIPANT_ID);
    assert.deepEqual(summary, {
      roomCode: summary.roomCode,
      status: "waiting",
      shouldConnect: false,
      expiresAt: summary.expiresAt,
      self: { participantId: summary.self.participantId, role: "host", name: HOST, ready: false, fileCount: 0, totalBytes: 0 },
      peer: null,
      screenShare: NO_SHARE,
      chat: NO_CHAT,
    });
    assertExpiresIn(summary.expiresAt, 1800, 60);

    const other = (await api.raw("POST", "/api/rooms", { body: { name: HOST } })).json;
    assert.notEqual(other.roomCode, summary.roomCode, "two rooms get two codes");
    assert.notEqual(other.self.participantId, summary.self.participantId);
  });

  test("a guest joins with the code: 200 with the guest's summary, paired, and the host's poll sees the guest", async () => {
    const host = new DropSilkUser(base, HOST);
    const guest = new DropSilkUser(base, GUEST);
    await host.createRoom();

    const reply = await guest.api.raw("POST", `/api/rooms/${host.roomCode}/join`, { body: { name: GUEST } });
    assert.equal(reply.status, 200, reply.text);
    const joined = reply.json;
    assert.match(joined.self.participantId, PARTICIPANT_ID);
    assert.notEqual(joined.self.participantId, host.participantId);
    guest.participantId = joined.self.participantId;
    guest.roomCode = joined.roomCode;
    assert.deepEqual(joined, {
      roomCode: host.roomCode,
      status: "paired",
      shouldConnect: false,
      expiresAt: joined.expiresAt,
      self: participant(guest, "guest"),
      peer: participant(host, "host"),
      screenShare: NO_SHARE,
      chat: NO_CHAT,
    });

    const polled = await host.poll();
    assert.deepEqual(polled, {
      roomCode: host.roomCode,
      status: "paired",
      shouldConnect: false,
      expiresAt: polled.expiresAt,
      self: participant(host, "host"),
      peer: participant(guest, "guest"),
      screenShare: NO_SHARE,
      chat: NO_CHAT,
    });
  });

  test("a room is ready, and shouldConnect, once it has a guest and either participant is ready", async () => {
    // The host alone and ready: still waiting, nobody to connect to.
    const host = new DropSilkUser(base, HOST);
    await host.createRoom();
    const alone = await host.markReady({ fileCount: 2, totalBytes: 2048 });
    assert.equal(alone.status, "waiting");
    assert.equal(alone.shouldConnect, false);
    assert.deepEqual(alone.self, participant(host, "host", { ready: true, fileCount: 2, totalBytes: 2048 }));

    // A guest joins a room whose host is ready: ready at once, for both.
    const guest = new DropSilkUser(base, GUEST);
    const joined = await guest.joinRoom(host.roomCode);
    assert.equal(joined.status, "ready");
    assert.equal(joined.shouldConnect, true);
    assert.deepEqual(joined.peer, participant(host, "host", { ready: true, fileCount: 2, totalBytes: 2048 }));
    const polled = await host.poll();
    assert.equal(polled.status, "ready");
    assert.equal(polled.shouldConnect, true);

    // Only the guest ready: also ready, and the guest's files show as the host's peer.
    const host2 = new DropSilkUser(base, HOST);
    const guest2 = new DropSilkUser(base, GUEST);
    await host2.createRoom();
    await guest2.joinRoom(host2.roomCode);
    assert.equal((await host2.poll()).status, "paired");
    const ready = await guest2.markReady({ fileCount: 3, totalBytes: 4096 });
    assert.deepEqual(
      [ready.status, ready.shouldConnect, ready.self],
      ["ready", true, participant(guest2, "guest", { ready: true, fileCount: 3, totalBytes: 4096 })],
    );
    const seenByHost = await host2.poll();
    assert.deepEqual(
      [seenByHost.status, seenByHost.shouldConnect, seenByHost.self.ready, seenByHost.peer],
      ["ready", true, false, participant(guest2, "guest", { ready: true, fileCount: 3, totalBytes: 4096 })],
    );
  });

  test("ready takes fileCount and totalBytes as numbers or numeric strings, and defaults them to zero", async () => {
    const host = new DropSilkUser(base, HOST);
    await host.createRoom();
    const empty = await host.markReady({});
    assert.deepEqual(empty.self, participant(host, "host", { ready: true }));
    const strings = await host.markReady({ fileCount: "4", totalBytes: "5000" });
    assert.deepEqual(strings.self, participant(host, "host", { ready: true, fileCount: 4, totalBytes: 5000 }));
  });

  test("chat requests show as requestedBySelf to the requester, requestedByPeer to the other, and isActive to both", async () => {
    const { host, guest } = await hostAndGuest(base);
    let mine = await host.setChat(true);
    assert.deepEqual(mine.chat, { requestedBySelf: true, requestedByPeer: false, isActive: true });
    assert.deepEqual((await guest.poll()).chat, { requestedBySelf: false, requestedByPeer: true, isActive: true });

    mine = await guest.setChat(true);
    assert.deepEqual(mine.chat, { requestedBySelf: true, requestedByPeer: true, isActive: true });

    mine = await host.setChat(false);
    assert.deepEqual(mine.chat, { requestedBySelf: false, requestedByPeer: true, isActive: true });
    assert.deepEqual((await guest.poll()).chat, { requestedBySelf: true, requestedByPeer: false, isActive: true });

    mine = await guest.setChat(false);
    assert.deepEqual(mine.chat, NO_CHAT);
    assert.deepEqual((await host.poll()).chat, NO_CHAT);
  });

  test("screen sharing names the sharer as activeParticipantId, and the peer cannot start while it lasts: 400 Peer is already screen sharing", async () => {
    const { host, guest } = await hostAndGuest(base);
    const sharing = await guest.setScreenShare(true);
    assert.deepEqual(sharing.screenShare, {
      activeParticipantId: guest.participantId, requestedBySelf: true, requestedByPeer: false, isActive: true,
    });
    assert.deepEqual((await host.poll()).screenShare, {
      activeParticipantId: guest.participantId, requestedBySelf: false, requestedByPeer: true, isActive: true,
    });

    await rejectsWith(host.setScreenShare(true), 400, { error: "Peer is already screen sharing" });
    // Turning one's own (inactive) share off is always fine.
    assert.equal((await host.setScreenShare(false)).screenShare.activeParticipantId, guest.participantId);

    assert.deepEqual((await guest.setScreenShare(false)).screenShare, NO_SHARE);
    const hostSharing = await host.setScreenShare(true);
    assert.deepEqual(hostSharing.screenShare, {
      activeParticipantId: host.participantId, requestedBySelf: true, requestedByPeer: false, isActive: true,
    });
    await rejectsWith(guest.setScreenShare(true), 400, { error: "Peer is already screen sharing" });
  });

  test("a third person cannot join: 400 Room already has two participants", async () => {
    const { host } = await hostAndGuest(base);
    const third = new DropSilkUser(base, "BoldLynx789");
    await rejectsWith(third.joinRoom(host.roomCode), 400, { error: "Room already has two participants" });
  });

  test("joining a code no room has: 400 Room not found or expired", async () => {
    const guest = new DropSilkUser(base, GUEST);
    await rejectsWith(guest.joinRoom(unknownCode()), 400, ROOM_GONE);
  });

  test("polling, ready, chat and screen-share answer 404 for an unknown room or a participant who is not in it", async () => {
    const { host } = await hostAndGuest(base);
    const stranger = new RoomApi(base);
    const code = host.roomCode;
    const cases = [
      ["GET", `/api/rooms/${unknownCode()}?participantId=${host.participantId}`],
      ["GET", `/api/rooms/${code}?participantId=zzzzzzzzzzzz`],
      ["POST", participantPath(code, "zzzzzzzzzzzz", "ready"), { fileCount: 1, totalBytes: 1 }],
      ["POST", participantPath(code, "zzzzzzzzzzzz", "chat"), { active: true }],
      ["POST", participantPath(code, "zzzzzzzzzzzz", "screen-share"), { active: true }],
      ["POST", participantPath(unknownCode(), host.participantId, "ready"), {}],
    ];
    for (const [method, path, body] of cases) {
      const reply = await stranger.raw(method, path, { body });
      assert.equal(reply.status, 404, `${method} ${path}: ${reply.text}`);
      assert.deepEqual(reply.json, NOT_IN_ROOM, `${method} ${path}`);
    }
  });

  test("codes are case-insensitive: a lower-case code joins, polls and attaches", async () => {
    const host = new DropSilkUser(base, HOST);
    await host.createRoom();
    const guest = new DropSilkUser(base, GUEST);
    const joined = await guest.joinRoom(host.roomCode.toLowerCase());
    assert.equal(joined.roomCode, host.roomCode);
    const polled = await guest.api.getRoomStatus(host.roomCode.toLowerCase(), guest.participantId);
    assert.equal(polled.roomCode, host.roomCode);

    const socket = await guest.connect();
    socket.send({ type: "attach-room", roomCode: host.roomCode.toLowerCase(), participantId: guest.participantId });
    const attached = await socket.next(["room-attached", "error"]);
    assert.equal(attached.type, "room-attached", JSON.stringify(attached));
    assert.equal(attached.flightCode, host.roomCode);
  });

  test("invalid requests answer 400 {error: \"Invalid request\", issues: [strings]}", async () => {
    const { host } = await hostAndGuest(base);
    const api = new RoomApi(base);
    const code = host.roomCode;
    const pid = host.participantId;
    const cases = [
      ["create without a name", "POST", "/api/rooms", {}],
      ["create with an empty name", "POST", "/api/rooms", { name: "" }],
      ["create with a blank name", "POST", "/api/rooms", { name: "   " }],
      ["create with a 51-character name", "POST", "/api/rooms", { name: "x".repeat(51) }],
      ["create with a number for a name", "POST", "/api/rooms", { name: 42 }],
      ["join without a name", "POST", `/api/rooms/${code}/join`, {}],
      ["join with a five-character code", "POST", `/api/rooms/${code.slice(0, 5)}/join`, { name: GUEST }],
      ["poll with a five-character code", "GET", `/api/rooms/${code.slice(0, 5)}?participantId=${pid}`],
      ["poll with a seven-character code", "GET", `/api/rooms/${code}A?participantId=${pid}`],
      ["poll without participantId", "GET", `/api/rooms/${code}`],
      ["poll with a 65-character participantId", "GET", `/api/rooms/${code}?participantId=${"p".repeat(65)}`],
      ["ready with a negative fileCount", "POST", participantPath(code, pid, "ready"), { fileCount: -1, totalBytes: 0 }],
      ["ready with a fractional fileCount", "POST", participantPath(code, pid, "ready"), { fileCount: 1.5, totalBytes: 0 }],
      ["ready with a negative totalBytes", "POST", participantPath(code, pid, "ready"), { fileCount: 1, totalBytes: -5 }],
      ["ready with a word for fileCount", "POST", participantPath(code, pid, "ready"), { fileCount: "many" }],
      ["chat without active", "POST", participantPath(code, pid, "chat"), {}],
      ["chat with active as a string", "POST", participantPath(code, pid, "chat"), { active: "true" }],
      ["screen-share with active as a number", "POST", participantPath(code, pid, "screen-share"), { active: 1 }],
    ];
    for (const [what, method, path, body] of cases) {
      assertInvalidRequest(await api.raw(method, path, { body }), what);
    }
    // None of that changed the room.
    const after = await host.poll();
    assert.deepEqual([after.self.ready, after.chat, after.screenShare], [false, NO_CHAT, NO_SHARE]);
  });

  test("a malformed JSON body answers 400 Invalid request (not 500)", async () => {
    const { host } = await hostAndGuest(base);
    const api = new RoomApi(base);
    const cases = [
      ["POST", "/api/rooms"],
      ["POST", `/api/rooms/${host.roomCode}/join`],
      ["POST", participantPath(host.roomCode, host.participantId, "ready")],
      ["POST", participantPath(host.roomCode, host.participantId, "chat")],
      ["POST", participantPath(host.roomCode, host.participantId, "screen-share")],
    ];
    for (const [method, path] of cases) {
      const reply = await api.raw(method, path, { rawBody: '{"name": "Broken' });
      assertInvalidRequest(reply, `${method} ${path} with a malformed body`, { needIssues: false });
    }
  });

  test("other /api/rooms paths answer 404 Room endpoint not found.", async () => {
    const api = new RoomApi(base);
    const code = unknownCode();
    for (const [method, path] of [
      ["GET", `/api/rooms/${code}/join`],
      ["POST", `/api/rooms/${code}/participants/abc/unknown`],
      ["DELETE", `/api/rooms/${code}`],
      ["GET", `/api/rooms/${code}/participants/abc/ready/extra`],
    ]) {
      const reply = await api.raw(method, path);
      assert.equal(reply.status, 404, `${method} ${path}: ${reply.text}`);
      assert.deepEqual(reply.json, { error: "Room endpoint not found." }, `${method} ${path}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe("room expiry (DROPSILK_ROOM_TTL_SECS=2)", () => {
  const TTL = 2;
  let base;
  before(async () => {
    base = (await start({ ...TRUSTED, DROPSILK_ROOM_TTL_SECS: String(TTL) })).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("every poll slides the expiry: a room polled every 400 ms outlives its TTL", async () => {
    const host = new DropSilkUser(base, HOST);
    const created = await host.createRoom();
    assertExpiresIn(created.expiresAt, TTL, 1.5);
    let last = created;
    const until = Date.now() + (TTL + 1.5) * 1000;
    while (Date.now() < until) {
      await sleep(400);
      last = await host.poll();
    }
    assert.ok(
      Date.parse(last.expiresAt) > Date.parse(created.expiresAt),
      `expiry moved on: ${created.expiresAt} → ${last.expiresAt}`,
    );
    assertExpiresIn(last.expiresAt, TTL, 1.5);
  });

  test("a room left alone past its TTL is gone: 404 to polls, 400 Room not found or expired to joins and attach-room", async () => {
    const { host, guest } = await hostAndGuest(base);
    await sleep((TTL + 2) * 1000);
    await rejectsWith(host.poll(), 404, NOT_IN_ROOM);
    await rejectsWith(guest.poll(), 404, NOT_IN_ROOM);
    const late = new DropSilkUser(base, "BoldLynx789");
    await rejectsWith(late.joinRoom(host.roomCode), 400, ROOM_GONE);
    await rejectsWith(host.markReady(), 404, NOT_IN_ROOM);

    const socket = await host.connect();
    socket.send({ type: "attach-room", roomCode: host.roomCode, participantId: host.participantId });
    assert.deepEqual(await socket.next("error"), { type: "error", message: "Room not found or expired" });
  });
});

// ---------------------------------------------------------------------------------------------

describe("WebSocket messages", () => {
  let base;
  before(async () => {
    base = (await shared()).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("a connection on any path is greeted with registered and a ten-character session id", async () => {
    const root = await DropSilkSocket.connect(base, { path: "/" });
    const deep = await DropSilkSocket.connect(base, { path: "/some/where?x=1" });
    assert.match(root.id, SESSION_ID);
    assert.match(deep.id, SESSION_ID);
    assert.notEqual(root.id, deep.id);
  });

  test("register-details is taken silently, with the client's extra fields ignored", async () => {
    const socket = await DropSilkSocket.connect(base);
    socket.send({ type: "register-details", name: "SwiftFox123", localIpPrefix: "unknown", localIp: "unknown" });
    socket.send({ type: "register-details", name: `  ${"n".repeat(50)}  ` });
    await socket.expectNone("error");
  });

  test("frames that are not JSON objects with a string type get error 'Invalid message format', and the socket stays usable", async () => {
    const socket = await DropSilkSocket.connect(base);
    for (const frame of ["not json", "{\"type\":", "null", "42", "\"signal\"", "true", "[1,2]", "{}",
      "{\"name\":\"x\"}", "{\"type\":5}", "{\"type\":null}", "{\"type\":[\"signal\"]}"]) {
      socket.sendRaw(frame);
      assert.deepEqual(await socket.next("error"), { type: "error", message: "Invalid message format" }, frame);
    }
    socket.send({ type: "create-flight" });
    assert.match((await socket.next("flight-created")).flightCode, ROOM_CODE);
  });

  test("a type the protocol does not have gets error 'Unknown message type'", async () => {
    const socket = await DropSilkSocket.connect(base);
    for (const type of ["hello", "", "create-room", "Signal", "peer-joined"]) {
      socket.send({ type });
      assert.deepEqual(await socket.next("error"), { type: "error", message: "Unknown message type" }, type);
    }
  });

  test("a known type with a bad payload gets error 'Invalid message payload'", async () => {
    const socket = await DropSilkSocket.connect(base);
    const cases = [
      { type: "register-details" },
      { type: "register-details", name: "" },
      { type: "register-details", name: "   " },
      { type: "register-details", name: "x".repeat(51) },
      { type: "register-details", name: 42 },
      { type: "join-flight" },
      { type: "join-flight", flightCode: "ABC" },
      { type: "join-flight", flightCode: "ABCDEFG" },
      { type: "join-flight", flightCode: 123456 },
      { type: "attach-room", roomCode: "ABC234" },
      { type: "attach-room", participantId: "abc" },
      { type: "attach-room", roomCode: "ABC23", participantId: "abc" },
      { type: "attach-room", roomCode: "ABC234", participantId: "" },
      { type: "attach-room", roomCode: "ABC234", participantId: "p".repeat(65) },
      { type: "attach-room", roomCode: "ABC234", participantId: "abc", channel: "video" },
      { type: "invite-to-flight", flightCode: "ABC234" },
      { type: "invite-to-flight", inviteeId: "abc" },
      { type: "invite-to-flight", inviteeId: "abc", flightCode: "ABCD" },
    ];
    for (const message of cases) {
      socket.send(message);
      assert.deepEqual(
        await socket.next("error"),
        { type: "error", message: "Invalid message payload" },
        JSON.stringify(message),
      );
    }
  });

  test("attach-room to a room that does not exist, or as someone not in it, gets error 'Room not found or expired'", async () => {
    const host = new DropSilkUser(base, HOST);
    await host.createRoom();
    const socket = await DropSilkSocket.connect(base);
    socket.send({ type: "attach-room", roomCode: unknownCode(), participantId: host.participantId });
    assert.deepEqual(await socket.next("error"), { type: "error", message: "Room not found or expired" });
    socket.send({ type: "attach-room", roomCode: host.roomCode, participantId: "zzzzzzzzzzzz", channel: "chat" });
    assert.deepEqual(await socket.next("error"), { type: "error", message: "Room not found or expired" });
  });

  test("a signal from a socket in no room goes nowhere and gets no answer", async () => {
    const a = await DropSilkSocket.connect(base);
    const b = await DropSilkSocket.connect(base);
    a.send({ type: "signal", data: { sdp: { type: "offer", sdp: "v=0" } } });
    await Promise.all([a.expectNone("error"), a.expectNone("signal"), b.expectNone("signal")]);
  });

  test("a frame over 1 MiB closes the connection with 1009; a signal just under that is relayed", async () => {
    const { a, b } = await legacyFlight(base);
    const big = "s".repeat(1_000_000);
    a.send({ type: "signal", data: { sdp: { type: "offer", sdp: big } } });
    const relayed = await b.next("signal");
    assert.equal(relayed.data.sdp.sdp.length, big.length);

    a.sendRaw(JSON.stringify({ type: "signal", data: "x".repeat(1024 * 1024) }));
    const { code } = await a.closedByServer();
    assert.equal(code, 1009);
  });
});

// ---------------------------------------------------------------------------------------------

describe("two users in a room", () => {
  let base;
  before(async () => {
    base = (await shared()).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("host and guest attach their transfer sockets: room-attached with role and the stored peer, then peer-joined to both", async () => {
    const { host, guest } = await hostAndGuest(base, { hostFrom: "81.2.69.40", guestFrom: "81.2.69.40" });
    await guest.markReady({ fileCount: 1, totalBytes: 10 });
    const hostView = await host.poll();
    assert.deepEqual([hostView.status, hostView.shouldConnect], ["ready", true]);

    // The host's client sees shouldConnect first and attaches alone.
    const h = await host.attach();
    assert.deepEqual(h.attached, {
      type: "room-attached",
      flightCode: host.roomCode,
      role: "host",
      peer: participant(guest, "guest", { ready: true, fileCount: 1, totalBytes: 10 }),
    });
    await h.socket.expectNone("peer-joined");

    const g = await guest.attach();
    assert.deepEqual(g.attached, {
      type: "room-attached",
      flightCode: host.roomCode,
      role: "guest",
      peer: participant(host, "host"),
    });
    assert.deepEqual(await h.socket.next("peer-joined"), {
      type: "peer-joined",
      flightCode: host.roomCode,
      peer: { id: g.socket.id, name: GUEST },
      connectionType: "lan",
    });
    assert.deepEqual(await g.socket.next("peer-joined"), {
      type: "peer-joined",
      flightCode: host.roomCode,
      peer: { id: h.socket.id, name: HOST },
      connectionType: "lan",
    });
    await Promise.all([h.socket.expectNone("error"), g.socket.expectNone("error")]);
  });

  test("a host attached alone gets room-attached with a null peer, and no peer-joined", async () => {
    const host = new DropSilkUser(base, HOST);
    await host.createRoom();
    const { socket, attached } = await host.attach();
    assert.deepEqual(attached, { type: "room-attached", flightCode: host.roomCode, role: "host", peer: null });
    await socket.expectNone("peer-joined");
  });

  test("chat and screen-share sockets pair on their own channel: peer-joined reaches only that channel's sockets", async () => {
    const { host, guest, transfer } = await pairedRoom(base);

    await host.setChat(true);
    assert.equal((await guest.poll()).chat.isActive, true);
    const chat = await pairOn("chat", host, guest);
    assert.deepEqual(
      [chat.hostAttached.role, chat.hostAttached.flightCode, chat.hostAttached.peer?.participantId],
      ["host", host.roomCode, guest.participantId],
    );
    assert.deepEqual([chat.guestAttached.role, chat.guestAttached.peer?.participantId], ["guest", host.participantId]);
    assert.deepEqual(chat.hostJoined, {
      type: "peer-joined", flightCode: host.roomCode, peer: { id: chat.guest.id, name: GUEST }, connectionType: "lan",
    });
    assert.deepEqual(chat.guestJoined, {
      type: "peer-joined", flightCode: host.roomCode, peer: { id: chat.host.id, name: HOST }, connectionType: "lan",
    });
    await Promise.all([transfer.host.expectNone("peer-joined"), transfer.guest.expectNone("peer-joined")]);

    await guest.setScreenShare(true);
    assert.equal((await host.poll()).screenShare.isActive, true);
    const screen = await pairOn("screen-share", host, guest);
    assert.equal(screen.hostJoined.peer.id, screen.guest.id);
    assert.equal(screen.guestJoined.peer.id, screen.host.id);
    assert.equal(screen.hostAttached.role, "host");
    assert.equal(screen.guestAttached.role, "guest");
    await Promise.all(
      [transfer.host, transfer.guest, chat.host, chat.guest].map((s) => s.expectNone("peer-joined")),
    );
  });

  test("a signal reaches the peer's socket on the same channel only, unchanged, and is never echoed", async () => {
    const { sockets } = await roomOnAllChannels(base);
    const channels = ["transfer", "chat", "screen-share"];
    for (const [from, to] of [["host", "guest"], ["guest", "host"]]) {
      for (const channel of channels) {
        const data = channel === "chat"
          ? { candidate: { candidate: "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host", sdpMid: "0", sdpMLineIndex: 0 } }
          : { sdp: { type: from === "host" ? "offer" : "answer", sdp: `v=0\r\ns=${channel} ${from}\r\n` } };
        sockets[from][channel].send({ type: "signal", data });
        assert.deepEqual(await sockets[to][channel].next("signal"), { type: "signal", data }, `${from} → ${to} on ${channel}`);
        const others = [];
        for (const side of ["host", "guest"]) {
          for (const c of channels) {
            if (!(side === to && c === channel)) others.push(sockets[side][c]);
          }
        }
        await Promise.all(others.map((s) => s.expectNone("signal")));
      }
    }
  });

  // (A signal with no `data` at all is not pinned: spec §3.6 says it is forwarded bare, the
  // original's zod 4 schema answers "Invalid message payload".)
  test("a signal's data is relayed whatever JSON it is, null and strings included", async () => {
    const { transfer } = await pairedRoom(base);
    for (const data of [null, "opaque", 42, [1, { two: 2 }], { nested: { deep: [true, false] } }]) {
      transfer.guest.send({ type: "signal", data });
      assert.deepEqual(await transfer.host.next("signal"), { type: "signal", data }, JSON.stringify(data));
    }
  });

  test("when the guest's transfer socket closes, the host gets peer-left and the room drops the guest and clears chat and screen share", async () => {
    const { host, guest, transfer } = await pairedRoom(base);
    await host.markReady({ fileCount: 2, totalBytes: 200 });
    await host.setChat(true);
    await guest.setScreenShare(true);

    await transfer.guest.close();
    assert.deepEqual(await transfer.host.next("peer-left"), { type: "peer-left" });
    const summary = await host.pollUntil((s) => s.peer === null);
    assert.deepEqual(summary, {
      roomCode: host.roomCode,
      status: "waiting",
      shouldConnect: false,
      expiresAt: summary.expiresAt,
      self: participant(host, "host", { ready: true, fileCount: 2, totalBytes: 200 }),
      peer: null,
      screenShare: NO_SHARE,
      chat: NO_CHAT,
    });
    await rejectsWith(guest.poll(), 404, NOT_IN_ROOM);

    // The seat is free again.
    const next = new DropSilkUser(base, "BoldLynx789");
    const joined = await next.joinRoom(host.roomCode);
    assert.equal(joined.self.role, "guest");
    assert.equal((await host.poll()).peer.participantId, next.participantId);
  });

  test("when the host's transfer socket closes with a guest in the room, the guest becomes the host and can pair again", async () => {
    const { host, guest } = await hostAndGuest(base);
    await host.markReady({ fileCount: 1, totalBytes: 100 });
    await guest.markReady({ fileCount: 3, totalBytes: 300 });
    await host.setChat(true);
    await guest.setChat(true);
    const transfer = await pairOn("transfer", host, guest);

    await transfer.host.close();
    assert.deepEqual(await transfer.guest.next("peer-left"), { type: "peer-left" });
    const promoted = await guest.pollUntil((s) => s.self.role === "host");
    assert.deepEqual(promoted, {
      roomCode: host.roomCode,
      status: "waiting",
      shouldConnect: false,
      expiresAt: promoted.expiresAt,
      self: participant(guest, "host", { ready: true, fileCount: 3, totalBytes: 300 }),
      peer: null,
      screenShare: NO_SHARE,
      chat: NO_CHAT,
    });
    await rejectsWith(host.poll(), 404, NOT_IN_ROOM);

    // A newcomer joins as the guest; the promoted host re-attaches its socket (as websocket.js
    // does when the room is ready again) and the two pair.
    const newcomer = new DropSilkUser(base, "BoldLynx789");
    const joined = await newcomer.joinRoom(host.roomCode);
    assert.deepEqual(joined.peer, participant(guest, "host", { ready: true, fileCount: 3, totalBytes: 300 }));
    const reattached = await guest.attach("transfer", { socket: transfer.guest });
    assert.deepEqual(reattached.attached, {
      type: "room-attached", flightCode: host.roomCode, role: "host", peer: participant(newcomer, "guest"),
    });
    const n = await newcomer.attach();
    assert.equal(n.attached.role, "guest");
    assert.deepEqual((await transfer.guest.next("peer-joined")).peer, { id: n.socket.id, name: "BoldLynx789" });
    assert.deepEqual((await n.socket.next("peer-joined")).peer, { id: transfer.guest.id, name: GUEST });
  });

  test("when the host's transfer socket closes while alone, the room is deleted", async () => {
    const host = new DropSilkUser(base, HOST);
    await host.createRoom();
    const { socket } = await host.attach();
    await socket.close();
    const gone = await host.pollUntil((s) => s instanceof RoomApiError);
    assert.deepEqual([gone.status, gone.body], [404, NOT_IN_ROOM]);
    await rejectsWith(new DropSilkUser(base, GUEST).joinRoom(host.roomCode), 400, ROOM_GONE);
  });

  test("closing a chat or screen-share socket tells only the peer's socket on that channel, and leaves the room as it was", async () => {
    const { host, guest, sockets } = await roomOnAllChannels(base);
    await sockets.guest.chat.close();
    assert.deepEqual(await sockets.host.chat.next("peer-left"), { type: "peer-left" });
    await Promise.all([sockets.host.transfer.expectNone("peer-left"), sockets.host["screen-share"].expectNone("peer-left")]);

    await sockets.guest["screen-share"].close();
    assert.deepEqual(await sockets.host["screen-share"].next("peer-left"), { type: "peer-left" });
    await sockets.host.transfer.expectNone("peer-left");

    const summary = await host.poll();
    assert.equal(summary.peer?.participantId, guest.participantId);
    assert.deepEqual(summary.chat, { requestedBySelf: true, requestedByPeer: false, isActive: true });
    assert.equal(summary.screenShare.activeParticipantId, guest.participantId);
    assert.equal((await guest.poll()).self.role, "guest");
  });

  test("re-attaching the transfer channel on a new socket hands it over; the old socket closing removes nobody and sends no peer-left", async () => {
    const { host, guest, transfer } = await pairedRoom(base);
    const fresh = await guest.attach();
    assert.equal(fresh.attached.role, "guest");
    assert.deepEqual((await transfer.host.next("peer-joined")).peer, { id: fresh.socket.id, name: GUEST });
    assert.deepEqual((await fresh.socket.next("peer-joined")).peer, { id: transfer.host.id, name: HOST });

    transfer.host.send({ type: "signal", data: { sdp: { type: "offer", sdp: "v=0 again" } } });
    assert.equal((await fresh.socket.next("signal")).data.sdp.sdp, "v=0 again");
    await transfer.guest.expectNone("signal");

    await transfer.guest.close();
    await transfer.host.expectNone("peer-left");
    await fresh.socket.expectNone("peer-left");
    assert.equal((await host.poll()).peer?.participantId, guest.participantId);
    assert.equal((await guest.poll()).self.role, "guest");
    fresh.socket.send({ type: "signal", data: { sdp: { type: "answer", sdp: "v=0 still here" } } });
    assert.equal((await transfer.host.next("signal")).data.sdp.sdp, "v=0 still here");
  });

  test("invite-to-flight hands the invitee a flight-invitation with the room code and the sender's name, and answers the sender nothing", async () => {
    const host = new DropSilkUser(base, HOST, { from: "81.2.69.45" });
    await host.createRoom();
    const { socket: hostSocket } = await host.attach();
    const carol = await person(base, "Carol", "81.2.69.45");
    await hostSocket.usersUpdate(exactly([carol, "Carol"]));

    hostSocket.send({ type: "invite-to-flight", inviteeId: carol.id, flightCode: host.roomCode.toLowerCase() });
    assert.deepEqual(await carol.next("flight-invitation"), {
      type: "flight-invitation", flightCode: host.roomCode, fromName: HOST,
    });
    await Promise.all([hostSocket.expectNone("error"), hostSocket.expectNone("flight-invitation")]);

    // Carol accepts as the toast does: she joins the room over HTTP.
    const carolUser = new DropSilkUser(base, "Carol");
    assert.equal((await carolUser.joinRoom(host.roomCode)).self.role, "guest");

    // An invitee nobody has: nothing happens, no error.
    hostSocket.send({ type: "invite-to-flight", inviteeId: "nobody012345", flightCode: host.roomCode });
    await Promise.all([hostSocket.expectNone("error"), carol.expectNone("flight-invitation")]);

    // A sender that never registered a name is "Anonymous".
    const anonymous = await DropSilkSocket.connect(base);
    anonymous.send({ type: "invite-to-flight", inviteeId: carol.id, flightCode: "ABC234" });
    assert.deepEqual(await carol.next("flight-invitation"), {
      type: "flight-invitation", flightCode: "ABC234", fromName: "Anonymous",
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("same network: LAN or WAN, and users-on-network-update", () => {
  let base;
  before(async () => {
    base = (await shared()).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  const pairs = [
    ["81.2.69.50", "81.2.69.50", "lan", "two clients behind one public address"],
    ["81.2.69.51", "81.2.69.52", "wan", "two public addresses, even in one /24"],
    ["192.168.60.10", "192.168.60.20", "lan", "two private addresses in one /24"],
    ["192.168.61.10", "192.168.62.10", "wan", "private addresses in different /24s"],
    ["100.64.5.1", "100.64.5.2", "lan", "two carrier-grade NAT addresses in one /24"],
    ["81.2.69.53", "192.168.63.10", "wan", "a public and a private address"],
    ["fd12:3456:789a:1::10", "fd12:3456:789a:1:aaaa::20", "lan", "unique-local IPv6 sharing the first four hextets"],
    ["fd12:3456:789a:2::10", "fd12:3456:789a:3::10", "wan", "unique-local IPv6 in different /64s"],
    ["2a00:1450:4001:81c::200e", "2a00:1450:4001:81c::200f", "wan", "two public IPv6 addresses, even in one /64"],
    ["203.0.113.7, 81.2.69.54", "81.2.69.54", "lan", "the right-most X-Forwarded-For entry counting"],
    ["81.2.69.55, 81.2.69.56", "81.2.69.55", "wan", "the left-most X-Forwarded-For entry not counting"],
  ];
  for (const [fromA, fromB, expected, what] of pairs) {
    test(`a legacy flight is ${expected} for ${what} (${fromA} / ${fromB})`, async () => {
      const { aJoined, bJoined } = await legacyFlight(base, { fromA, fromB });
      assert.equal(aJoined.connectionType, expected);
      assert.equal(bJoined.connectionType, expected);
    });
  }

  test("a room's connectionType comes from the two sockets of each channel", async () => {
    const { host, guest } = await hostAndGuest(base);
    await guest.markReady();
    const transfer = await pairOn("transfer", host, guest, { hostFrom: "81.2.69.57", guestFrom: "81.2.69.58" });
    assert.equal(transfer.hostJoined.connectionType, "wan");
    assert.equal(transfer.guestJoined.connectionType, "wan");
    await host.setChat(true);
    const chat = await pairOn("chat", host, guest, { hostFrom: "192.168.64.2", guestFrom: "192.168.64.3" });
    assert.equal(chat.hostJoined.connectionType, "lan");
    assert.equal(chat.guestJoined.connectionType, "lan");
  });

  test("users-on-network-update lists the other users of one's network group by id and name, never oneself, and follows joins, renames and leaves", async () => {
    const ann = await person(base, "Ann", "81.2.69.70");
    const abe = await person(base, "Abe", "81.2.69.70");
    const bea = await person(base, "Bea", "81.2.69.71");
    const pia = await person(base, "Pia", "192.168.70.5");
    const pat = await person(base, "Pat", "192.168.70.99");
    const quin = await person(base, "Quin", "192.168.71.5");

    await ann.usersUpdate(exactly([abe, "Abe"]));
    await abe.usersUpdate(exactly([ann, "Ann"]));
    await pia.usersUpdate(exactly([pat, "Pat"]));
    await pat.usersUpdate(exactly([pia, "Pia"]));
    // Alone in their groups: Bea (another public address) and Quin (another private /24).
    const beaList = await bea.usersUpdate(() => true);
    const quinList = await quin.usersUpdate(() => true);
    await bea.expectNone("users-on-network-update", QUIET_MS, (m) => m.users.length > 0);
    await quin.expectNone("users-on-network-update", QUIET_MS, (m) => m.users.length > 0);
    assert.deepEqual([beaList.users, quinList.users], [[], []]);

    pia.send({ type: "register-details", name: "Pia Renamed" });
    await pat.usersUpdate(exactly([pia, "Pia Renamed"]));

    await abe.close();
    await ann.usersUpdate(exactly());
  });

  test("users in a full transfer flight get an empty list and leave the others' lists; attached chat and screen-share sockets are never listed", async () => {
    const X = "81.2.69.80";
    const carol = await person(base, "Carol", X);
    const { host, guest } = await hostAndGuest(base, { hostFrom: X, guestFrom: X });
    await guest.markReady();
    const transfer = await pairOn("transfer", host, guest);
    await carol.usersUpdate(exactly([transfer.host, HOST], [transfer.guest, GUEST]));

    // Dave arrives: the pair is in a full flight now.
    const dave = await person(base, "Dave", X);
    await carol.usersUpdate(exactly([dave, "Dave"]));
    await dave.usersUpdate(exactly([carol, "Carol"]));
    await transfer.host.usersUpdate((users) => users.length === 0);
    await transfer.guest.usersUpdate((users) => users.length === 0);

    // Chat and screen share open their own sockets (same address).
    await host.setChat(true);
    const chat = await pairOn("chat", host, guest);
    await guest.setScreenShare(true);
    const screen = await pairOn("screen-share", host, guest);

    const eve = await person(base, "Eve", X);
    await carol.usersUpdate(exactly([dave, "Dave"], [eve, "Eve"]));
    await eve.usersUpdate(exactly([carol, "Carol"], [dave, "Dave"]));
    const listsEve = (m) => m.users.some((u) => u.id === eve.id);
    await Promise.all(
      [chat.host, chat.guest, screen.host, screen.guest].map((s) => s.expectNone("users-on-network-update", QUIET_MS, listsEve)),
    );

    // The guest leaves: the host is alone in its flight and back in everyone's list.
    await transfer.guest.close();
    await carol.usersUpdate(exactly([transfer.host, HOST], [dave, "Dave"], [eve, "Eve"]));
    await transfer.host.usersUpdate(exactly([carol, "Carol"], [dave, "Dave"], [eve, "Eve"]));
  });
});

describe("client address without a trusted proxy", () => {
  let base;
  before(async () => {
    base = (await start({})).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("X-Forwarded-For is ignored and the socket peer is the address: two loopback clients are lan and see each other", async () => {
    const { aJoined, bJoined } = await legacyFlight(base, { fromA: "81.2.69.100", fromB: "81.2.69.101" });
    assert.equal(aJoined.connectionType, "lan");
    assert.equal(bJoined.connectionType, "lan");
    const c = await person(base, "Cy", "81.2.69.102");
    const d = await person(base, "Di", "81.2.69.103");
    await c.usersUpdate(exactly([d, "Di"]));
    await d.usersUpdate(exactly([c, "Cy"]));
  });
});

// ---------------------------------------------------------------------------------------------

describe("legacy flights", () => {
  let base;
  before(async () => {
    base = (await shared()).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("create-flight answers flight-created; join-flight pairs both with peer-joined; signals flow; leaving sends peer-left", async () => {
    const ann = await person(base, "Ann");
    const ben = await person(base, "Ben");
    ann.send({ type: "create-flight" });
    const created = await ann.next("flight-created");
    assert.match(created.flightCode, ROOM_CODE);
    assert.deepEqual(created, { type: "flight-created", flightCode: created.flightCode });

    ben.send({ type: "join-flight", flightCode: created.flightCode.toLowerCase() });
    assert.deepEqual(await ben.next("peer-joined"), {
      type: "peer-joined", flightCode: created.flightCode, peer: { id: ann.id, name: "Ann" }, connectionType: "lan",
    });
    assert.deepEqual(await ann.next("peer-joined"), {
      type: "peer-joined", flightCode: created.flightCode, peer: { id: ben.id, name: "Ben" }, connectionType: "lan",
    });

    ann.send({ type: "signal", data: { sdp: { type: "offer", sdp: "v=0 legacy" } } });
    assert.deepEqual(await ben.next("signal"), { type: "signal", data: { sdp: { type: "offer", sdp: "v=0 legacy" } } });
    ben.send({ type: "signal", data: { candidate: { candidate: "", sdpMid: "0" } } });
    assert.deepEqual(await ann.next("signal"), { type: "signal", data: { candidate: { candidate: "", sdpMid: "0" } } });
    await Promise.all([ann.expectNone("signal"), ben.expectNone("signal")]);

    await ben.close();
    assert.deepEqual(await ann.next("peer-left"), { type: "peer-left" });
  });

  test("a socket already in a flight gets error 'Already in a flight' for create-flight and join-flight", async () => {
    const { a, b, flightCode } = await legacyFlight(base);
    for (const [socket, message] of [
      [a, { type: "create-flight" }],
      [a, { type: "join-flight", flightCode }],
      [b, { type: "create-flight" }],
      [b, { type: "join-flight", flightCode: unknownCode() }],
    ]) {
      socket.send(message);
      assert.deepEqual(await socket.next("error"), { type: "error", message: "Already in a flight" }, JSON.stringify(message));
    }
    const solo = await person(base, "Solo");
    solo.send({ type: "create-flight" });
    await solo.next("flight-created");
    solo.send({ type: "create-flight" });
    assert.deepEqual(await solo.next("error"), { type: "error", message: "Already in a flight" });
  });

  test("joining a flight that does not exist, or is full, gets error 'Flight not found or full'", async () => {
    const { flightCode } = await legacyFlight(base);
    const late = await person(base, "Late");
    late.send({ type: "join-flight", flightCode });
    assert.deepEqual(await late.next("error"), { type: "error", message: "Flight not found or full" });
    late.send({ type: "join-flight", flightCode: unknownCode() });
    assert.deepEqual(await late.next("error"), { type: "error", message: "Flight not found or full" });
  });
});

// ---------------------------------------------------------------------------------------------

describe("HTTP service endpoints", () => {
  let base;
  before(async () => {
    base = (await shared()).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("GET / and HEAD / say the server is alive, /keep-alive says OK, unknown pages are 404", async () => {
    const api = new RoomApi(base);
    const root = await api.raw("GET", "/");
    assert.equal(root.status, 200);
    assert.equal(root.text, "Server is alive and waiting for WebSocket connections.");
    const head = await api.raw("HEAD", "/");
    assert.equal(head.status, 200);
    assert.equal(head.text, "");
    const keepAlive = await api.raw("GET", "/keep-alive");
    assert.deepEqual([keepAlive.status, keepAlive.text], [200, "OK"]);
    assert.equal((await api.raw("GET", "/no-such-page")).status, 404);
  });

  test("/stats reports connections, flights, memory, a timestamp and the uptime", async () => {
    const { a } = await legacyFlight(base);
    assert.ok(a);
    const reply = await new RoomApi(base).raw("GET", "/stats");
    assert.equal(reply.status, 200, reply.text);
    const stats = reply.json;
    assert.ok(Number.isInteger(stats.activeConnections) && stats.activeConnections >= 2, `activeConnections ${stats.activeConnections}`);
    assert.ok(Number.isInteger(stats.activeFlights) && stats.activeFlights >= 1, `activeFlights ${stats.activeFlights}`);
    assert.equal(typeof stats.memory, "object");
    assert.notEqual(stats.memory, null);
    assert.ok(!Number.isNaN(Date.parse(stats.timestamp)), `timestamp ${stats.timestamp}`);
    assert.equal(typeof stats.uptime, "number");
  });

  test("/api/status reports the server operational, with its memory, services and counters", async () => {
    const reply = await new RoomApi(base).raw("GET", "/api/status");
    assert.equal(reply.status, 200, reply.text);
    const s = reply.json;
    assert.equal(s.status, "operational");
    for (const key of ["heapTotalMB", "heapUsedMB", "rssMB"]) assert.equal(typeof s.memory?.[key], "number", `memory.${key}`);
    assert.equal(typeof s.services.signaling.activeFlights, "number");
    assert.equal(s.services.signaling.status, "operational");
    assert.equal(typeof s.services.websocket.activeConnections, "number");
    assert.equal(s.services.websocket.status, "operational");
    assert.equal(s.services.turn.status, "not_configured");
    for (const key of ["totalConnections", "totalDisconnections", "totalFlightsCreated", "totalFlightsJoined"]) {
      assert.equal(typeof s.stats?.[key], "number", `stats.${key}`);
    }
    assert.ok(!Number.isNaN(Date.parse(s.timestamp)), `timestamp ${s.timestamp}`);
    assert.equal(typeof s.uptime, "number");
    assert.match(s.uptimeFormatted, /^(\d+d )?(\d+h )?(\d+m )?\d+s$/);
    assert.equal(typeof s.version, "string");
  });

  test("turn-credentials without TURN or STUN configured answers 501 TURN service is not configured on the server.", async () => {
    const reply = await new RoomApi(base).raw("GET", "/api/turn-credentials");
    assert.equal(reply.status, 501, reply.text);
    assert.deepEqual(reply.json, { error: "TURN service is not configured on the server." });
  });

  test("UploadThing's routes answer 501 not_supported", async () => {
    const api = new RoomApi(base);
    for (const [method, path] of [
      ["GET", "/api/uploadthing"],
      ["POST", "/api/uploadthing?actionType=upload&slug=previewUpload"],
      ["GET", "/api/uploadthing/anything/below"],
    ]) {
      const reply = await api.raw(method, path, method === "POST" ? { body: { files: [] } } : {});
      assert.equal(reply.status, 501, `${method} ${path}: ${reply.text}`);
      assert.deepEqual(reply.json, { error: "not_supported" }, `${method} ${path}`);
    }
  });

  test("with no ALLOWED_ORIGINS any origin is let in: upgrades succeed, and the API echoes the origin in CORS headers", async () => {
    const origin = "https://anything.example";
    assert.equal(await upgradeStatus(base, { origin }), 101);
    const api = new RoomApi(base, { origin });
    const created = await api.raw("POST", "/api/rooms", { body: { name: HOST } });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.headers.get("access-control-allow-origin"), origin);
    const preflight = await api.raw("OPTIONS", "/api/rooms", {
      headers: { "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), origin);
  });
});

// ---------------------------------------------------------------------------------------------

describe("TURN credentials when configured", () => {
  afterEach(closeAllSockets);

  test("with STUN_URLS, turn-credentials answers 200 with those STUN servers as iceServers", async () => {
    const base = (await start({ ...TRUSTED, STUN_URLS: "stun:stun.example.org:3478" })).urls.dropsilk;
    const reply = await new RoomApi(base).raw("GET", "/api/turn-credentials");
    assert.equal(reply.status, 200, reply.text);
    const { iceServers } = reply.json;
    assert.ok(Array.isArray(iceServers) && iceServers.length >= 1, reply.text);
    assert.ok(iceServers.every((s) => s.urls !== undefined), "every entry has urls");
    assert.ok(
      iceServers.some((s) => [s.urls].flat().includes("stun:stun.example.org:3478")),
      `the STUN url is handed out: ${reply.text}`,
    );
  });

  test("with TURN_SECRET and TURN_URLS, turn-credentials answers a TURN server with a username and a credential", async () => {
    const base = (await start({
      ...TRUSTED, TURN_SECRET: "s3cret", TURN_URLS: "turn:turn.example.org:3478",
    })).urls.dropsilk;
    const reply = await new RoomApi(base).raw("GET", "/api/turn-credentials");
    assert.equal(reply.status, 200, reply.text);
    const { iceServers } = reply.json;
    assert.ok(Array.isArray(iceServers), reply.text);
    const turn = iceServers.find((s) => [s.urls].flat().includes("turn:turn.example.org:3478"));
    assert.ok(turn, `a TURN entry: ${reply.text}`);
    assert.equal(typeof turn.username, "string");
    assert.ok(turn.username.length > 0);
    assert.equal(typeof turn.credential, "string");
    assert.ok(turn.credential.length > 0);
    const status = await new RoomApi(base).raw("GET", "/api/status");
    assert.equal(status.json?.services?.turn?.status, "operational");
  });
});

// ---------------------------------------------------------------------------------------------

describe("origins (ALLOWED_ORIGINS=https://app.example, DROPSILK_ALLOW_LOCAL_PORT=5173)", () => {
  let base;
  before(async () => {
    base = (await start({ ALLOWED_ORIGINS: "https://app.example", DROPSILK_ALLOW_LOCAL_PORT: "5173" })).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("a WebSocket upgrade from an origin not allowed is refused with 403; the app, the local dev port and native clients without Origin get in", async () => {
    for (const [origin, status] of [
      ["https://evil.example", 403],
      ["http://localhost:5174", 403],
      ["https://app.example.evil.example", 403],
      ["https://app.example", 101],
      ["http://localhost:5173", 101],
      ["http://127.0.0.1:5173", 101],
      [undefined, 101],
    ]) {
      assert.equal(await upgradeStatus(base, { origin }), status, `Origin ${origin ?? "(none)"}`);
    }
  });

  test("API requests from an origin not allowed get 403; allowed origins get their CORS headers; no Origin is fine", async () => {
    for (const origin of ["https://evil.example", "http://localhost:5174"]) {
      const api = new RoomApi(base, { origin });
      assert.equal((await api.raw("POST", "/api/rooms", { body: { name: HOST } })).status, 403, `POST from ${origin}`);
      assert.equal((await api.raw("GET", "/api/status")).status, 403, `GET /api/status from ${origin}`);
    }
    for (const origin of ["https://app.example", "http://localhost:5173", "http://127.0.0.1:5173"]) {
      const api = new RoomApi(base, { origin });
      const created = await api.raw("POST", "/api/rooms", { body: { name: HOST } });
      assert.equal(created.status, 201, `${origin}: ${created.text}`);
      assert.equal(created.headers.get("access-control-allow-origin"), origin);
      const preflight = await api.raw("OPTIONS", `/api/rooms/${created.json.roomCode}/join`, {
        headers: { "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
      });
      assert.equal(preflight.status, 204, `preflight from ${origin}`);
      assert.equal(preflight.headers.get("access-control-allow-origin"), origin);
      assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /POST/);
      assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /content-type/i);
      const turn = await api.raw("OPTIONS", "/api/turn-credentials", { headers: { "Access-Control-Request-Method": "GET" } });
      assert.equal(turn.status, 204);
      assert.match(turn.headers.get("access-control-allow-methods") ?? "", /GET/);
    }
    const native = new RoomApi(base);
    assert.equal((await native.raw("POST", "/api/rooms", { body: { name: HOST } })).status, 201);
  });
});

// ---------------------------------------------------------------------------------------------

describe("guessing room codes (GUESS_LIMIT=3)", () => {
  let base;
  before(async () => {
    base = (await start({ ...TRUSTED, GUESS_LIMIT: "3" })).urls.dropsilk;
  });
  afterEach(closeAllSockets);

  test("after three failed code lookups an address gets 429 too_many_requests with Retry-After, for polls and joins alike; others are unaffected", async () => {
    const GUESSER = "81.2.69.120";
    const other = new DropSilkUser(base, HOST, { from: "81.2.69.121" });
    await other.createRoom();
    const open = new DropSilkUser(base, "OpenRoom", { from: "81.2.69.122" });
    await open.createRoom();

    // Successful lookups are not guesses.
    const guesser = new DropSilkUser(base, GUEST, { from: GUESSER });
    await guesser.createRoom();
    for (let i = 0; i < 5; i++) await guesser.poll();

    const api = new RoomApi(base, { from: GUESSER });
    const first = await api.raw("GET", `/api/rooms/${unknownCode()}?participantId=${guesser.participantId}`);
    assert.equal(first.status, 404, first.text);
    const second = await api.raw("POST", `/api/rooms/${unknownCode()}/join`, { body: { name: GUEST } });
    assert.deepEqual([second.status, second.json], [400, ROOM_GONE]);
    const third = await api.raw("GET", `/api/rooms/${unknownCode()}?participantId=x`);
    assert.equal(third.status, 404, third.text);

    // Locked out now, even for a real room.
    const assertTooMany = (reply, what) => {
      assert.equal(reply.status, 429, `${what}: ${reply.text}`);
      assert.deepEqual(reply.json, { error: "too_many_requests" }, what);
      const retry = reply.headers.get("retry-after");
      assert.match(retry ?? "", /^\d+$/, `${what}: Retry-After`);
      assert.ok(Number(retry) >= 1, `${what}: Retry-After ${retry}`);
    };
    assertTooMany(await api.raw("GET", `/api/rooms/${guesser.roomCode}?participantId=${guesser.participantId}`), "poll of a real room");
    assertTooMany(await api.raw("POST", `/api/rooms/${open.roomCode}/join`, { body: { name: GUEST } }), "join of a real room");

    // Another address still polls; creating a room is not a guess.
    assert.equal((await other.poll()).status, "waiting");
    assert.equal((await api.raw("POST", "/api/rooms", { body: { name: GUEST } })).status, 201);
  });
});
