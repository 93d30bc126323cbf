// Conformance tests of the PrivyDrop dialect (issue 14): signalpost's PRIVYDROP_PORT listener must
// speak PrivyDrop's protocol (../shared/protocols/privydrop.md) to the unchanged PrivyDrop client,
// here the real socket.io-client 4.x, with the deviations the issue lists.
//
// Run: cargo build && SIGNALPOST_BIN=target/debug/signalpost node --test tests/node/privydrop.test.mjs
//
// Every wait is bounded (WAIT_MS, a hang bound, not a speed check); "nothing arrives" means
// nothing within QUIET_MS. Each describe block runs one server with its own configuration.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import {
  HOOK_TIMEOUT_MS,
  QUIET_MS,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  assertNothing,
  connect,
  createRoom,
  eventually,
  freshAddress,
  getRoom,
  isAvailable,
  postJson,
  randomId,
  request,
  sleep,
  startPrivyDrop,
} from "./lib/privydrop.mjs";

const T = { timeout: TEST_TIMEOUT_MS };
const HOOK = { timeout: HOOK_TIMEOUT_MS };

/** Limits that keep tests that are not about the join limit independent of each other. */
const NO_JOIN_LIMIT = { PRIVYDROP_JOIN_LIMIT: "1000000" };

/** The client options of PrivyDrop's web app (frontend/app/config/environment.ts). */
const REAL_CLIENT = { path: "/socket.io/", transports: ["websocket", "polling"] };

const OFFER = { type: "offer", sdp: "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" };
const ANSWER = { type: "answer", sdp: "v=0\r\no=- 1234567890 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" };
const candidate = (n) => ({
  candidate: `candidate:${n} 1 udp 2122260223 192.0.2.${n} 5432${n % 10} typ host generation 0`,
  sdpMid: "0",
  sdpMLineIndex: 0,
  usernameFragment: "abCD",
});

const SIGNALS = ["offer", "answer", "ice-candidate"];
const BROADCASTS = ["initiator-online", "recipient-ready", "ready"];

/** Starts one server for the enclosing describe block and stops it after the block. */
function useServer(env) {
  const srv = {};
  before(async () => Object.assign(srv, await startPrivyDrop(env)), HOOK);
  after(async () => srv.stop && (await srv.stop()), HOOK);
  return srv;
}

/**
 * A room from get_room with a joined sender and `n` joined receivers; every `ready` the joins
 * caused is checked (each joiner is announced to everyone already in) and consumed.
 */
async function roomWith(t, base, n = 2, { xff } = {}) {
  const roomId = await getRoom(base);
  const sender = await connect(t, base, { label: "sender", xff });
  await sender.mustJoin(roomId);
  const receivers = [];
  for (let i = 1; i <= n; i++) {
    const r = await connect(t, base, { label: `receiver${i}`, xff });
    await r.mustJoin(roomId);
    for (const p of [sender, ...receivers]) {
      assert.deepEqual(
        await p.next("ready", { match: (d) => d?.peerId === r.id }),
        { peerId: r.id },
        `${p.label} is told that ${r.label} joined`,
      );
    }
    receivers.push(r);
  }
  return { roomId, sender, receivers };
}

/** `from` sends `event` to `to` with the fields the real client sends; `to` must get it as relayed. */
async function relay(event, from, to, body) {
  const field = { offer: "offer", answer: "answer", "ice-candidate": "candidate" }[event];
  from.emit(event, { ...(event === "offer" ? { roomId: from.roomId } : {}), [field]: body, peerId: to.id, from: from.id });
  assert.deepEqual(
    await to.next(event),
    { [field]: body, from: from.id, peerId: from.id },
    `${to.label} gets ${from.label}'s ${event}`,
  );
}

// =============================================================================================
describe("PrivyDrop signaling over Socket.IO", () => {
  const srv = useServer(NO_JOIN_LIMIT);

  test("a sender and two receivers meet in a room made by get_room, each join announced to the others with ready", T, async (t) => {
    const roomId = await getRoom(srv.base);
    const sender = await connect(t, srv.base, { label: "sender", options: REAL_CLIENT });
    const r1 = await connect(t, srv.base, { label: "receiver1", options: REAL_CLIENT });
    const r2 = await connect(t, srv.base, { label: "receiver2", options: REAL_CLIENT });
    assert.notEqual(r1.id, r2.id);

    assert.deepEqual(await sender.join(roomId), { success: true, message: "Successfully joined room", roomId });
    await assertNothing([sender], ["ready"], "nobody else is in the room yet");

    assert.deepEqual(await r1.join(roomId), { success: true, message: "Successfully joined room", roomId });
    assert.deepEqual(await sender.next("ready"), { peerId: r1.id });

    assert.deepEqual(await r2.join(roomId), { success: true, message: "Successfully joined room", roomId });
    assert.deepEqual(await sender.next("ready"), { peerId: r2.id });
    assert.deepEqual(await r1.next("ready"), { peerId: r2.id });

    await assertNothing([sender, r1, r2], ["ready"], "a joiner is not told of its own join");
  });

  test("the sender's offer reaches only the addressed receiver, with from as sent and peerId set to the sender's id", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    sender.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: sender.id });
    assert.deepEqual(await r1.next("offer"), { offer: OFFER, from: sender.id, peerId: sender.id });
    await assertNothing([sender, r2], SIGNALS, "the offer was addressed to receiver1");

    const offer2 = { ...OFFER, sdp: OFFER.sdp + "a=second\r\n" };
    sender.emit("offer", { roomId, peerId: r2.id, offer: offer2, from: sender.id });
    assert.deepEqual(await r2.next("offer"), { offer: offer2, from: sender.id, peerId: sender.id });
    await assertNothing([sender, r1], SIGNALS, "the offer was addressed to receiver2");
  });

  test("a receiver's answer reaches only the addressed sender, with the receiver's id as from and peerId", T, async (t) => {
    const { sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    r1.emit("answer", { answer: ANSWER, peerId: sender.id, from: r1.id });
    assert.deepEqual(await sender.next("answer"), { answer: ANSWER, from: r1.id, peerId: r1.id });
    await assertNothing([r1, r2], SIGNALS, "the answer was addressed to the sender");

    r2.emit("answer", { answer: ANSWER, peerId: sender.id, from: r2.id });
    assert.deepEqual(await sender.next("answer"), { answer: ANSWER, from: r2.id, peerId: r2.id });
    await assertNothing([r1, r2], SIGNALS, "the answer was addressed to the sender");
  });

  test("ice candidates flow both ways between the sender and each receiver, each to the addressed socket only", T, async (t) => {
    const { sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const pairs = [
      [sender, r1, candidate(1)],
      [r1, sender, candidate(2)],
      [sender, r2, candidate(3)],
      [r2, sender, candidate(4)],
    ];
    for (const [from, to, c] of pairs) {
      from.emit("ice-candidate", { candidate: c, peerId: to.id, from: from.id });
      assert.deepEqual(await to.next("ice-candidate"), { candidate: c, from: from.id, peerId: from.id });
    }
    await assertNothing([sender, r1, r2], SIGNALS, "each candidate reached its addressee only once");
  });

  test("a whole negotiation between a sender and two receivers relays every message once and nothing else", T, async (t) => {
    const { roomId, sender, receivers } = await roomWith(t, srv.base, 2);
    sender.roomId = roomId;
    for (const r of receivers) {
      await relay("offer", sender, r, OFFER);
      await relay("answer", r, sender, ANSWER);
      await relay("ice-candidate", sender, r, candidate(5));
      await relay("ice-candidate", r, sender, candidate(6));
    }
    await assertNothing([sender, ...receivers], undefined, "every relayed message was consumed");
  });

  test("a sender with three receivers reaches each of them (the room is not limited to two)", T, async (t) => {
    const { roomId, sender, receivers } = await roomWith(t, srv.base, 3);
    sender.roomId = roomId;
    for (const r of receivers) {
      await relay("offer", sender, r, OFFER);
      await relay("answer", r, sender, ANSWER);
    }
    await assertNothing([sender, ...receivers], SIGNALS);
  });

  test("an offer and the candidates that follow it reach the receiver in the order they were sent", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    sender.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: sender.id });
    for (let i = 1; i <= 20; i++) sender.emit("ice-candidate", { candidate: candidate(i), peerId: r1.id, from: sender.id });
    await r1.next("ice-candidate", { match: (d) => d?.candidate?.candidate === candidate(20).candidate });
    const order = [{ event: "offer" }, ...Array.from({ length: 19 }, (_, i) => ({ event: "ice-candidate", n: i + 1 }))];
    const got = r1.take(SIGNALS).map((m) => ({
      event: m.event,
      ...(m.event === "ice-candidate" ? { n: Number(m.args[0].candidate.candidate.split(/[: ]/)[1]) } : {}),
    }));
    assert.deepEqual(got, order);
  });

  test("from is forwarded exactly as the client sent it, while peerId is always the sender's socket id", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    sender.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: "not-the-sender-id" });
    assert.deepEqual(await r1.next("offer"), { offer: OFFER, from: "not-the-sender-id", peerId: sender.id });
    r1.emit("answer", { answer: ANSWER, peerId: sender.id, from: "someone-else" });
    assert.deepEqual(await sender.next("answer"), { answer: ANSWER, from: "someone-else", peerId: r1.id });
    r1.emit("ice-candidate", { candidate: candidate(7), peerId: sender.id, from: "x" });
    assert.deepEqual(await sender.next("ice-candidate"), { candidate: candidate(7), from: "x", peerId: r1.id });
  });

  test("a relay addressed to a socket in another room reaches nobody and the sender gets no error", T, async (t) => {
    const a = await roomWith(t, srv.base, 1);
    const b = await roomWith(t, srv.base, 1);
    const [ra] = a.receivers;
    const [rb] = b.receivers;
    a.sender.emit("offer", { roomId: a.roomId, peerId: rb.id, offer: OFFER, from: a.sender.id });
    ra.emit("answer", { answer: ANSWER, peerId: b.sender.id, from: ra.id });
    rb.emit("ice-candidate", { candidate: candidate(8), peerId: a.sender.id, from: rb.id });
    await assertNothing([a.sender, ra, b.sender, rb], undefined, "relays never cross rooms");
  });

  test("a relay from a socket that joined no room reaches nobody", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    const outsider = await connect(t, srv.base, { label: "outsider" });
    outsider.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: outsider.id });
    outsider.emit("answer", { answer: ANSWER, peerId: sender.id, from: outsider.id });
    outsider.emit("ice-candidate", { candidate: candidate(9), peerId: r1.id, from: outsider.id });
    await assertNothing([sender, r1, outsider], undefined, "the outsider is in no room");
  });

  test("a relay addressed to an unknown socket id is dropped without an answer, and the room still relays", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    sender.emit("offer", { roomId, peerId: "no-such-socket-id", offer: OFFER, from: sender.id });
    sender.emit("ice-candidate", { candidate: candidate(1), peerId: "", from: sender.id });
    await assertNothing([sender, r1]);
    sender.roomId = roomId;
    await relay("offer", sender, r1, OFFER);
  });

  test("a same-room rejoin answers success again and announces ready to the others again, once", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    assert.deepEqual(await r1.join(roomId), { success: true, message: "Successfully joined room", roomId });
    assert.deepEqual(await sender.next("ready"), { peerId: r1.id });
    assert.deepEqual(await r2.next("ready"), { peerId: r1.id });
    await assertNothing([sender, r1, r2], ["ready"], "one ready per join, none to the joiner");

    // The sender's reconnect path: it rejoins, then announces itself; it is still one member.
    assert.deepEqual(await sender.join(roomId), { success: true, message: "Successfully joined room", roomId });
    assert.deepEqual(await r1.next("ready"), { peerId: sender.id });
    assert.deepEqual(await r2.next("ready"), { peerId: sender.id });
    sender.emit("initiator-online", { roomId });
    assert.deepEqual(await r1.next("initiator-online"), { roomId });
    assert.deepEqual(await r2.next("initiator-online"), { roomId });
    await assertNothing([sender, r1, r2], BROADCASTS, "a rejoin does not make a second membership");
  });

  test("a socket bound to one room is refused another with Socket is already bound to another room", T, async (t) => {
    const a = await roomWith(t, srv.base, 1);
    const b = await roomWith(t, srv.base, 0);
    assert.deepEqual(await a.sender.join(b.roomId), {
      success: false,
      message: "Socket is already bound to another room",
      roomId: b.roomId,
    });
    await assertNothing([b.sender], ["ready"], "the refused socket is not announced in the other room");
    // It is still a member of its first room.
    const [r1] = a.receivers;
    r1.emit("recipient-ready", { roomId: a.roomId, peerId: r1.id });
    assert.deepEqual(await a.sender.next("recipient-ready"), { peerId: r1.id });
    // And not of the other one.
    b.sender.emit("initiator-online", { roomId: b.roomId });
    await assertNothing([a.sender], ["initiator-online"]);
  });

  test("joining a room that does not exist answers Room does not exist and leaves the socket free to join another", T, async (t) => {
    const missing = `nx${randomId(10)}`;
    const s = await connect(t, srv.base, { label: "joiner" });
    assert.deepEqual(await s.join(missing), { success: false, message: "Room does not exist", roomId: missing });
    const { roomId, sender } = await roomWith(t, srv.base, 0);
    await s.mustJoin(roomId);
    assert.deepEqual(await sender.next("ready"), { peerId: s.id });
  });

  test("initiator-online from a member reaches every other member of its room, not the sender", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    sender.emit("initiator-online", { roomId });
    assert.deepEqual(await r1.next("initiator-online"), { roomId });
    assert.deepEqual(await r2.next("initiator-online"), { roomId });
    await assertNothing([sender, r1, r2], ["initiator-online"]);
  });

  test("recipient-ready from a member reaches the others of its room with the peerId it sent", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    r1.emit("recipient-ready", { roomId, peerId: r1.id });
    assert.deepEqual(await sender.next("recipient-ready"), { peerId: r1.id });
    assert.deepEqual(await r2.next("recipient-ready"), { peerId: r1.id });
    await assertNothing([sender, r1, r2], ["recipient-ready"]);
  });

  test("initiator-online and recipient-ready from a socket in no room reach nobody", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    const outsider = await connect(t, srv.base, { label: "outsider" });
    outsider.emit("initiator-online", { roomId });
    outsider.emit("recipient-ready", { roomId, peerId: outsider.id });
    await assertNothing([sender, r1, outsider], undefined, "the outsider is not a member of the room");
  });

  test("initiator-online and recipient-ready naming a room the sender is not in reach nobody there", T, async (t) => {
    const a = await roomWith(t, srv.base, 1);
    const b = await roomWith(t, srv.base, 1);
    b.sender.emit("initiator-online", { roomId: a.roomId });
    b.receivers[0].emit("recipient-ready", { roomId: a.roomId, peerId: b.receivers[0].id });
    await assertNothing([a.sender, ...a.receivers, b.sender, ...b.receivers], undefined, "members of room b only");
  });

  test("a receiver that disconnects is announced to the others with peer-disconnected", T, async (t) => {
    const { sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const id = r2.id;
    r2.close();
    assert.deepEqual(await sender.next("peer-disconnected"), { peerId: id });
    assert.deepEqual(await r1.next("peer-disconnected"), { peerId: id });
    await assertNothing([sender, r1], ["peer-disconnected"]);
  });

  test("a sender that disconnects is announced to every receiver, and a socket in no room disconnects silently", T, async (t) => {
    const { sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const outsider = await connect(t, srv.base, { label: "outsider" });
    outsider.close();
    await assertNothing([sender, r1, r2], ["peer-disconnected"], "the outsider was in no room");
    const id = sender.id;
    sender.close();
    assert.deepEqual(await r1.next("peer-disconnected"), { peerId: id });
    assert.deepEqual(await r2.next("peer-disconnected"), { peerId: id });
  });

  test("leave_room answers Successfully left the room and announces peer-disconnected to everyone in the room, the leaver included", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const res = await postJson(srv.base, "/api/leave_room", { roomId, socketId: r1.id });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { success: true, message: "Successfully left the room" });
    for (const p of [sender, r1, r2]) {
      assert.deepEqual(await p.next("peer-disconnected"), { peerId: r1.id }, `${p.label} is told`);
    }
    await assertNothing([sender, r1, r2], ["peer-disconnected"]);
  });

  test("after leave_room the socket is out of the room: no ready, broadcasts or relays of it reach it, and it may join another room", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const left = await postJson(srv.base, "/api/leave_room", { roomId, socketId: r1.id });
    assert.deepEqual(left.json, { success: true, message: "Successfully left the room" });
    for (const p of [sender, r1, r2]) await p.next("peer-disconnected");

    const r3 = await connect(t, srv.base, { label: "receiver3" });
    await r3.mustJoin(roomId);
    assert.deepEqual(await sender.next("ready"), { peerId: r3.id });
    assert.deepEqual(await r2.next("ready"), { peerId: r3.id });
    sender.emit("initiator-online", { roomId });
    assert.deepEqual(await r2.next("initiator-online"), { roomId });
    assert.deepEqual(await r3.next("initiator-online"), { roomId });
    r2.emit("recipient-ready", { roomId, peerId: r2.id });
    assert.deepEqual(await sender.next("recipient-ready"), { peerId: r2.id });
    assert.deepEqual(await r3.next("recipient-ready"), { peerId: r2.id });
    sender.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: sender.id });
    await assertNothing([r1], undefined, "the socket that left gets nothing of its old room");

    // Its own broadcasts no longer reach the old room either.
    r1.emit("initiator-online", { roomId });
    await assertNothing([sender, r2, r3], ["initiator-online"]);

    const other = await roomWith(t, srv.base, 0);
    await r1.mustJoin(other.roomId);
    assert.deepEqual(await other.sender.next("ready"), { peerId: r1.id });
  });
});

// =============================================================================================
describe("PrivyDrop over the long-polling transport", () => {
  const srv = useServer(NO_JOIN_LIMIT);

  test("a polling-only client joins and relays offer, answer and candidates with a websocket client", T, async (t) => {
    const roomId = await getRoom(srv.base);
    const p = await connect(t, srv.base, { label: "polling sender", transports: ["polling"] });
    const w = await connect(t, srv.base, { label: "websocket receiver" });
    assert.equal(p.transport, "polling");
    await p.mustJoin(roomId);
    await w.mustJoin(roomId);
    assert.deepEqual(await p.next("ready"), { peerId: w.id });
    p.roomId = roomId;
    await relay("offer", p, w, OFFER);
    await relay("answer", w, p, ANSWER);
    await relay("ice-candidate", p, w, candidate(1));
    await relay("ice-candidate", w, p, candidate(2));
    w.emit("recipient-ready", { roomId, peerId: w.id });
    assert.deepEqual(await p.next("recipient-ready"), { peerId: w.id });
    p.emit("initiator-online", { roomId });
    assert.deepEqual(await w.next("initiator-online"), { roomId });
    assert.equal(p.transport, "polling", "it never upgraded");
    await assertNothing([p, w]);
  });

  test("two polling-only clients signal each other, and a polling client's disconnect is announced", T, async (t) => {
    const roomId = await getRoom(srv.base);
    const a = await connect(t, srv.base, { label: "polling sender", transports: ["polling"] });
    const b = await connect(t, srv.base, { label: "polling receiver", transports: ["polling"] });
    await a.mustJoin(roomId);
    await b.mustJoin(roomId);
    assert.deepEqual(await a.next("ready"), { peerId: b.id });
    a.roomId = roomId;
    await relay("offer", a, b, OFFER);
    await relay("answer", b, a, ANSWER);
    const id = b.id;
    b.close();
    assert.deepEqual(await a.next("peer-disconnected"), { peerId: id });
  });

  test("a client that starts on polling and upgrades to websocket keeps its socket id and its room", T, async (t) => {
    const roomId = await getRoom(srv.base);
    const u = await connect(t, srv.base, { label: "upgrading sender", transports: ["polling", "websocket"] });
    const id = u.id;
    await u.mustJoin(roomId);
    await eventually("the upgrade to websocket", () => u.transport === "websocket");
    assert.equal(u.id, id);
    const w = await connect(t, srv.base, { label: "websocket receiver" });
    await w.mustJoin(roomId);
    assert.deepEqual(await u.next("ready"), { peerId: w.id });
    u.roomId = roomId;
    await relay("offer", u, w, OFFER);
    await relay("answer", w, u, ANSWER);
  });
});

// =============================================================================================
describe("PrivyDrop HTTP room API", () => {
  const srv = useServer(NO_JOIN_LIMIT);

  test("while four-digit ids are free, get_room answers a new one of 4 decimal digits, and each is a distinct room", T, async () => {
    const ids = [];
    for (let i = 0; i < 20; i++) {
      const res = await request(srv.base, "/api/get_room");
      assert.equal(res.status, 200, res.text);
      assert.match(res.headers.get("content-type") ?? "", /application\/json/);
      assert.deepEqual(Object.keys(res.json), ["roomId"]);
      assert.match(res.json.roomId, /^(\d{4}|[A-Za-z0-9]{4})$/);
      assert.match(res.json.roomId, /^\d{4}$/, "4 digits first (the server holds few rooms)");
      ids.push(res.json.roomId);
    }
    assert.equal(new Set(ids).size, ids.length, `distinct ids: ${ids}`);
  });

  test("get_room also creates the room: check_room says it is taken and create_room refuses it", T, async () => {
    const roomId = await getRoom(srv.base);
    assert.equal(await isAvailable(srv.base, roomId), false);
    const res = await postJson(srv.base, "/api/create_room", { roomId });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { success: false, message: "roomId is already exists" });
  });

  test("create_room of a new id answers create room success and the room can be joined by its id", T, async (t) => {
    const roomId = randomId(12);
    assert.equal(await isAvailable(srv.base, roomId), true);
    const res = await postJson(srv.base, "/api/create_room", { roomId });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { success: true, message: "create room success" });
    assert.equal(await isAvailable(srv.base, roomId), false);
    const s = await connect(t, srv.base, { label: "sender" });
    await s.mustJoin(roomId);
  });

  test("create_room of an existing id shorter than 8 characters answers roomId is already exists with status 200", T, async () => {
    for (const roomId of [randomId(5), randomId(7)]) {
      await createRoom(srv.base, roomId);
      const res = await postJson(srv.base, "/api/create_room", { roomId });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { success: false, message: "roomId is already exists" });
    }
  });

  test("create_room of an existing id of 8 or more characters answers room exists (rejoin allowed)", T, async () => {
    for (const roomId of [randomId(8), randomId(20)]) {
      await createRoom(srv.base, roomId);
      const res = await postJson(srv.base, "/api/create_room", { roomId });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { success: true, message: "room exists (rejoin allowed)" });
    }
  });

  test("create_room without a roomId answers 400 Room ID is required", T, async () => {
    for (const body of [{}, { roomId: "" }, { roomId: null }]) {
      const res = await postJson(srv.base, "/api/create_room", body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.deepEqual(res.json, { error: "Room ID is required" });
    }
  });

  test("check_room answers available true for an unknown room and false for an existing one", T, async () => {
    const roomId = randomId(10);
    let res = await postJson(srv.base, "/api/check_room", { roomId });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { available: true });
    await createRoom(srv.base, roomId);
    res = await postJson(srv.base, "/api/check_room", { roomId });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { available: false });
  });

  test("check_room without a roomId answers 400 Room ID is required", T, async () => {
    for (const body of [{}, { roomId: "" }]) {
      const res = await postJson(srv.base, "/api/check_room", body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.deepEqual(res.json, { error: "Room ID is required" });
    }
  });

  test("leave_room of a room that does not exist answers Room does not exist.", T, async () => {
    const res = await postJson(srv.base, "/api/leave_room", { roomId: `nx${randomId(10)}`, socketId: "abc" });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { success: true, message: "Room does not exist." });
  });

  test("leave_room without a roomId or a socketId answers 400 Room ID and Socket ID are required", T, async () => {
    const roomId = await getRoom(srv.base);
    for (const body of [{}, { roomId }, { socketId: "abc" }, { roomId: "", socketId: "abc" }, { roomId, socketId: "" }]) {
      const res = await postJson(srv.base, "/api/leave_room", body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.deepEqual(res.json, { error: "Room ID and Socket ID are required" });
    }
  });

  test("set_track answers success and its referrer counts per day appear in the main port's /stats", T, async () => {
    const ref = `ref${randomId(8)}`;
    const day = () => new Date().toISOString().slice(0, 10);
    const days = new Set([day()]);
    for (const timestamp of [Date.now(), new Date().toISOString()]) {
      const res = await postJson(srv.base, "/api/set_track", { ref, timestamp });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { success: true });
    }
    days.add(day()); // the two posts may straddle midnight UTC
    let last;
    await eventually("both set_track calls counted in /stats", async () => {
      const stats = await request(srv.main, "/stats");
      assert.equal(stats.status, 200, stats.text);
      last = stats.json?.privydrop?.referrers;
      let n = 0;
      for (const d of days) {
        const v = last?.[d]?.[ref];
        if (v !== undefined) assert.equal(typeof v, "number", `referrers["${d}"]["${ref}"] is a count`);
        n += v ?? 0;
      }
      return n === 2;
    }).catch((e) => {
      throw new Error(`${e.message}; /stats privydrop.referrers = ${JSON.stringify(last)}`);
    });
  });

  test("logs_debug answers success", T, async () => {
    const res = await postJson(srv.base, "/api/logs_debug", { message: "hello from the conformance test", timestamp: Date.now() });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { success: true });
  });

  test("/health and /api/health answer healthy with timestamp, uptime, service, version and environment", T, async () => {
    for (const path of ["/health", "/api/health"]) {
      const res = await request(srv.base, path);
      assert.equal(res.status, 200, `${path}: ${res.text}`);
      assert.match(res.headers.get("content-type") ?? "", /application\/json/);
      const h = res.json;
      assert.equal(h.status, "healthy", path);
      assert.equal(typeof h.timestamp, "string", `${path} timestamp`);
      assert.ok(!Number.isNaN(Date.parse(h.timestamp)), `${path} timestamp is a date: ${h.timestamp}`);
      assert.equal(typeof h.uptime, "number", `${path} uptime`);
      assert.ok(h.uptime >= 0, `${path} uptime`);
      for (const k of ["service", "version", "environment"]) {
        assert.equal(typeof h[k], "string", `${path} ${k}`);
        assert.ok(h[k].length > 0, `${path} ${k}`);
      }
    }
  });

  test("/health/detailed answers healthy with a dependencies object", T, async () => {
    const res = await request(srv.base, "/health/detailed");
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.status, "healthy");
    assert.equal(typeof res.json.dependencies, "object");
    assert.ok(res.json.dependencies !== null && !Array.isArray(res.json.dependencies));
  });
});

// =============================================================================================
describe("PrivyDrop events without a usable payload", () => {
  const srv = useServer(NO_JOIN_LIMIT);

  /** Payloads that are missing, null or of the wrong type (NONE: the event has no argument). */
  const NONE = Symbol("no payload");
  const emitWith = (peer, event, payload) => (payload === NONE ? peer.emit(event) : peer.emit(event, payload));
  const show = (payload) => (payload === NONE ? "(none)" : JSON.stringify(payload));

  test("join without a usable payload gets no answer and the socket can still join afterwards", T, async (t) => {
    const { roomId, sender } = await roomWith(t, srv.base, 0);
    const s = await connect(t, srv.base, { label: "joiner" });
    for (const payload of [NONE, null, 5, "1234", true, [], [roomId]]) {
      emitWith(s, "join", payload);
      await assertNothing([s, sender], undefined, `join ${show(payload)}`);
    }
    // A payload of the right type with a missing or wrongly typed roomId need not be answered,
    // but must not break anything either.
    s.emit("join", {});
    s.emit("join", { roomId: 5 });
    s.emit("join", { roomId: null });
    await sleep(QUIET_MS);
    s.take(["joinResponse"]);
    assert.equal(s.disconnectReason, null, "the socket is still connected");
    await s.mustJoin(roomId);
    assert.deepEqual(await sender.next("ready"), { peerId: s.id });
  });

  test("offer, answer and ice-candidate without a usable payload are dropped and relaying goes on", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const payloads = [NONE, null, 5, "x", true, [], {}, { peerId: 7 }, { peerId: null }, { peerId: [r1.id] }, { peerId: { id: r1.id } }];
    for (const event of SIGNALS) {
      for (const payload of payloads) emitWith(sender, event, payload);
    }
    await assertNothing([sender, r1, r2], undefined, "nothing is relayed for unusable payloads");
    assert.equal(sender.disconnectReason, null, "the sender is still connected");
    sender.roomId = roomId;
    await relay("offer", sender, r1, OFFER);
    await relay("answer", r1, sender, ANSWER);
    await relay("ice-candidate", sender, r2, candidate(3));
  });

  test("initiator-online and recipient-ready without a usable payload are dropped", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const payloads = [NONE, null, 5, roomId, true, [], {}, { roomId: 7 }, { roomId: null }, { roomId: [roomId] }];
    for (const event of ["initiator-online", "recipient-ready"]) {
      for (const payload of payloads) emitWith(r1, event, payload);
    }
    await assertNothing([sender, r1, r2], undefined, "no broadcast for unusable payloads");
    r1.emit("recipient-ready", { roomId, peerId: r1.id });
    assert.deepEqual(await sender.next("recipient-ready"), { peerId: r1.id });
  });

  test("an unknown event is ignored", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    sender.emit("bogus", { roomId });
    sender.emit("message", { roomId, peerId: r1.id });
    sender.emit("error", { roomId });
    await assertNothing([sender, r1]);
    assert.equal(sender.disconnectReason, null);
  });

  test("a burst of unusable events from one member leaves every socket of its room connected and served", T, async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomWith(t, srv.base, 2);
    const bad = [NONE, null, 0, -1, "", "x".repeat(1000), false, [], [null], {}, { roomId: {} }, { peerId: {} }];
    for (let round = 0; round < 3; round++) {
      for (const event of ["join", ...SIGNALS, "initiator-online", "recipient-ready"]) {
        for (const payload of bad) emitWith(r2, event, payload);
      }
    }
    await sleep(QUIET_MS);
    for (const p of [sender, r1, r2]) {
      assert.equal(p.disconnectReason, null, `${p.label} is still connected`);
      p.take(["joinResponse"]); // r2's joins of a non-string are not asserted (see the join test)
    }
    await assertNothing([sender, r1], SIGNALS);
    sender.roomId = roomId;
    await relay("offer", sender, r1, OFFER);
    await relay("offer", sender, r2, OFFER);
    await relay("answer", r2, sender, ANSWER);
    const late = await connect(t, srv.base, { label: "late joiner" });
    await late.mustJoin(roomId);
    for (const p of [sender, r1, r2]) assert.deepEqual(await p.next("ready"), { peerId: late.id });
  });

  test("garbled Socket.IO and Engine.IO packets never take the server down", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    const url = srv.base.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
    const frames = ['42["join"', '42{"roomId":1}', '42[5]', '42["offer",{"peerId":', "4", "9garbage", "", "2probe", Buffer.from([0xff, 0x00, 0x42])];
    for (const frame of frames) {
      const ws = new WebSocket(url);
      t.after(() => ws.terminate());
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("raw Engine.IO connection: no open packet")), WAIT_MS);
        ws.on("error", (e) => {
          clearTimeout(timer);
          reject(e);
        });
        ws.on("message", (data) => {
          const s = data.toString();
          if (s.startsWith("0")) ws.send("40");
          if (s.startsWith("40")) {
            clearTimeout(timer);
            ws.send(frame, () => {});
            resolve();
          }
        });
      });
      await sleep(50);
      ws.terminate();
    }
    await sleep(QUIET_MS);
    assert.equal(sender.disconnectReason, null);
    assert.equal(r1.disconnectReason, null);
    sender.roomId = roomId;
    await relay("offer", sender, r1, OFFER);
    const fresh = await connect(t, srv.base, { label: "new client" });
    await fresh.mustJoin(roomId);
  });
});

// =============================================================================================
describe("PrivyDrop join rate limit (defaults: 2 joins per 5 s per client, behind a trusted proxy)", () => {
  const srv = useServer({ TRUSTED_PROXIES: "127.0.0.1/32" });
  const REFUSAL = /^Rate limit exceeded\. Try again in ([1-9]\d*)s\. Attempts left: 0\.$/;

  /** Asserts the original's refusal answer; resolves to its N (seconds). */
  async function assertRefused(peer, roomId) {
    const r = await peer.join(roomId);
    assert.equal(r.success, false, JSON.stringify(r));
    assert.deepEqual(Object.keys(r).sort(), ["message", "roomId", "success"], JSON.stringify(r));
    assert.equal(r.roomId, roomId);
    const m = r.message.match(REFUSAL);
    assert.ok(m, `refusal message: ${JSON.stringify(r.message)}`);
    return Number(m[1]);
  }

  test("the third join from one client address within the window is refused with the original's message", T, async (t) => {
    const xff = freshAddress();
    const roomId = await getRoom(srv.base);
    const a = await connect(t, srv.base, { label: "a", xff });
    const b = await connect(t, srv.base, { label: "b", xff });
    const c = await connect(t, srv.base, { label: "c", xff });
    await a.mustJoin(roomId);
    await b.mustJoin(roomId);
    assert.deepEqual(await a.next("ready"), { peerId: b.id });
    const n = await assertRefused(c, roomId);
    assert.ok(n >= 1 && n <= 5, `Try again in ${n}s, within the 5 s window`);
    await assertNothing([a, b], ["ready"], "the refused socket did not join");
  });

  test("same-room rejoins do not count toward the join limit", T, async (t) => {
    const xff = freshAddress();
    const roomId = await getRoom(srv.base);
    const a = await connect(t, srv.base, { label: "a", xff });
    await a.mustJoin(roomId);
    for (let i = 0; i < 4; i++) await a.mustJoin(roomId);
    const b = await connect(t, srv.base, { label: "b", xff });
    await b.mustJoin(roomId);
    const c = await connect(t, srv.base, { label: "c", xff });
    await assertRefused(c, roomId);
  });

  test("the join limit is per client address: another address still joins", T, async (t) => {
    const xff = freshAddress();
    const roomId = await getRoom(srv.base);
    for (const label of ["a", "b"]) {
      const p = await connect(t, srv.base, { label, xff });
      await p.mustJoin(roomId);
    }
    await assertRefused(await connect(t, srv.base, { label: "c", xff }), roomId);
    const other = await connect(t, srv.base, { label: "other address", xff: freshAddress() });
    await other.mustJoin(roomId);
  });

  test("behind a trusted proxy the client is the right-most X-Forwarded-For entry", T, async (t) => {
    const client = freshAddress();
    const roomId = await getRoom(srv.base);
    const a = await connect(t, srv.base, { label: "a", xff: `192.0.2.10, ${client}` });
    const b = await connect(t, srv.base, { label: "b", xff: `192.0.2.11, ${client}` });
    const c = await connect(t, srv.base, { label: "c", xff: `192.0.2.12,${client}` });
    await a.mustJoin(roomId);
    await b.mustJoin(roomId);
    await assertRefused(c, roomId);
  });
});

describe("PrivyDrop join rate limit as configured (1 join per 1 s)", () => {
  const srv = useServer({ TRUSTED_PROXIES: "127.0.0.1/32", PRIVYDROP_JOIN_LIMIT: "1", PRIVYDROP_JOIN_WINDOW_SECS: "1" });

  test("PRIVYDROP_JOIN_LIMIT and PRIVYDROP_JOIN_WINDOW_SECS set the limit, and the address joins again once the window has passed", T, async (t) => {
    const xff = freshAddress();
    const roomId = await getRoom(srv.base);
    const a = await connect(t, srv.base, { label: "a", xff });
    const b = await connect(t, srv.base, { label: "b", xff });
    await a.mustJoin(roomId);
    const r = await b.join(roomId);
    assert.deepEqual(r, { success: false, message: "Rate limit exceeded. Try again in 1s. Attempts left: 0.", roomId });
    await sleep(1_500); // one whole window after the last attempt
    await b.mustJoin(roomId);
    assert.deepEqual(await a.next("ready"), { peerId: b.id });
  });
});

describe("PrivyDrop join rate limit without a trusted proxy", () => {
  const srv = useServer({});

  test("X-Forwarded-For from an untrusted peer is ignored: the socket's own address is limited", T, async (t) => {
    const roomId = await getRoom(srv.base);
    const a = await connect(t, srv.base, { label: "a", xff: freshAddress() });
    const b = await connect(t, srv.base, { label: "b", xff: freshAddress() });
    const c = await connect(t, srv.base, { label: "c", xff: freshAddress() });
    await a.mustJoin(roomId);
    await b.mustJoin(roomId);
    const r = await c.join(roomId);
    assert.equal(r.success, false, JSON.stringify(r));
    assert.match(r.message, /^Rate limit exceeded\. Try again in [1-5]s\. Attempts left: 0\.$/);
  });
});

// =============================================================================================
describe("PrivyDrop room lifetime once empty (PRIVYDROP_EMPTY_ROOM_TTL_SECS=1)", () => {
  const srv = useServer({ ...NO_JOIN_LIMIT, PRIVYDROP_EMPTY_ROOM_TTL_SECS: "1" });
  const EXPIRY_BOUND_MS = 10_000;

  test("a room emptied by disconnects expires after the empty-room lifetime, then cannot be joined", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    assert.equal(await isAvailable(srv.base, roomId), false);
    r1.close();
    sender.close();
    await eventually("the emptied room expires", () => isAvailable(srv.base, roomId), EXPIRY_BOUND_MS);
    const late = await connect(t, srv.base, { label: "late" });
    assert.deepEqual(await late.join(roomId), { success: false, message: "Room does not exist", roomId });
  });

  test("a room emptied by leave_room expires after the empty-room lifetime", T, async (t) => {
    const { roomId, sender } = await roomWith(t, srv.base, 0);
    const res = await postJson(srv.base, "/api/leave_room", { roomId, socketId: sender.id });
    assert.deepEqual(res.json, { success: true, message: "Successfully left the room" });
    await eventually("the emptied room expires", () => isAvailable(srv.base, roomId), EXPIRY_BOUND_MS);
  });

  test("a room that still has a member does not expire on the empty-room lifetime", T, async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomWith(t, srv.base, 1);
    r1.close();
    await sender.next("peer-disconnected");
    await sleep(2_500);
    assert.equal(await isAvailable(srv.base, roomId), false);
    const again = await connect(t, srv.base, { label: "again" });
    await again.mustJoin(roomId);
  });

  test("a room nobody has joined yet keeps the full room lifetime", T, async () => {
    const fromGet = await getRoom(srv.base);
    const custom = await createRoom(srv.base, randomId(12));
    await sleep(2_500);
    assert.equal(await isAvailable(srv.base, fromGet), false);
    assert.equal(await isAvailable(srv.base, custom), false);
  });
});

describe("PrivyDrop room lifetime (PRIVYDROP_ROOM_TTL_SECS=1)", () => {
  const srv = useServer({ ...NO_JOIN_LIMIT, PRIVYDROP_ROOM_TTL_SECS: "1" });

  test("a room nobody joins expires after the room lifetime", T, async () => {
    const fromGet = await getRoom(srv.base);
    const custom = await createRoom(srv.base, randomId(12));
    await eventually("both rooms expire", async () => (await isAvailable(srv.base, fromGet)) && (await isAvailable(srv.base, custom)), 10_000);
  });
});

// =============================================================================================
describe("PrivyDrop CORS (ALLOWED_ORIGINS=http://app.example)", () => {
  const ORIGIN = "http://app.example";
  const srv = useServer({ ...NO_JOIN_LIMIT, ALLOWED_ORIGINS: ORIGIN });

  function assertGranted(res, what) {
    assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN, `${what}: Access-Control-Allow-Origin`);
    assert.equal(res.headers.get("access-control-allow-credentials"), "true", `${what}: Access-Control-Allow-Credentials`);
  }

  test("API answers to the allowed origin carry that origin and credentials", T, async () => {
    const headers = { origin: ORIGIN };
    const got = await request(srv.base, "/api/get_room", { headers });
    assert.equal(got.status, 200, got.text);
    assertGranted(got, "GET /api/get_room");
    const checked = await postJson(srv.base, "/api/check_room", { roomId: got.json.roomId }, headers);
    assert.deepEqual(checked.json, { available: false });
    assertGranted(checked, "POST /api/check_room");
    const health = await request(srv.base, "/health", { headers });
    assertGranted(health, "GET /health");
  });

  test("a preflight from the allowed origin is answered with the origin, credentials, POST and Content-Type", T, async () => {
    for (const path of ["/api/create_room", "/api/check_room", "/api/leave_room", "/api/set_track", "/api/logs_debug"]) {
      const res = await request(srv.base, path, {
        method: "OPTIONS",
        headers: {
          origin: ORIGIN,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
      assert.ok([200, 204].includes(res.status), `OPTIONS ${path}: ${res.status}`);
      assertGranted(res, `OPTIONS ${path}`);
      assert.match(res.headers.get("access-control-allow-methods") ?? "", /\bPOST\b/i, `OPTIONS ${path}: methods`);
      assert.match(res.headers.get("access-control-allow-headers") ?? "", /\bcontent-type\b/i, `OPTIONS ${path}: headers`);
    }
  });

  test("the Socket.IO polling handshake answers the allowed origin with credentials", T, async () => {
    const res = await request(srv.base, "/socket.io/?EIO=4&transport=polling", { headers: { origin: ORIGIN } });
    assert.equal(res.status, 200, res.text);
    assert.match(res.text, /^0\{.*"sid"/, "an Engine.IO v4 open packet");
    assertGranted(res, "polling handshake");
  });

  test("an origin that is not allowed is not granted", T, async () => {
    const res = await request(srv.base, "/api/get_room", { headers: { origin: "http://evil.example" } });
    const granted = res.headers.get("access-control-allow-origin");
    assert.notEqual(granted, "http://evil.example");
    assert.notEqual(granted, "*");
  });
});

// =============================================================================================
describe("PrivyDrop HTTP routes under the per-client REST rate (burst 3, 1 per minute)", () => {
  const srv = useServer({ TRUSTED_PROXIES: "127.0.0.1/32", REST_BURST: "3", REST_RATE_PER_MIN: "1" });

  const ROUTES = [
    ["GET", "/api/get_room", undefined],
    ["POST", "/api/create_room", { roomId: randomId(12) }],
    ["POST", "/api/check_room", { roomId: randomId(12) }],
    ["POST", "/api/leave_room", { roomId: randomId(12), socketId: "abc" }],
    ["POST", "/api/set_track", { ref: "ratetest", timestamp: Date.now() }],
    ["POST", "/api/logs_debug", { message: "rate test", timestamp: Date.now() }],
  ];

  test("each API route answers 429 too_many_requests with Retry-After once a client is over the rate", T, async () => {
    for (const [method, path, body] of ROUTES) {
      const headers = { "x-forwarded-for": freshAddress() };
      const first = await request(srv.base, path, { method, body, headers });
      assert.equal(first.status, 200, `${method} ${path} first answer: ${first.status} ${first.text}`);
      let refused;
      for (let i = 0; i < 10 && !refused; i++) {
        const res = await request(srv.base, path, { method, body, headers });
        if (res.status === 429) refused = res;
        else assert.equal(res.status, 200, `${method} ${path}: ${res.status} ${res.text}`);
      }
      assert.ok(refused, `${method} ${path}: no 429 within 11 requests at a burst of 3`);
      assert.deepEqual(refused.json, { error: "too_many_requests" }, `${method} ${path}`);
      assert.match(refused.headers.get("retry-after") ?? "", /^[1-9]\d*$/, `${method} ${path}: Retry-After`);
    }
  });

  test("the REST rate is per client: another client is still served", T, async () => {
    const busy = { "x-forwarded-for": freshAddress() };
    let refused = false;
    for (let i = 0; i < 11 && !refused; i++) {
      refused = (await request(srv.base, "/api/check_room", { method: "POST", body: { roomId: "abcd" }, headers: busy })).status === 429;
    }
    assert.ok(refused, "the busy client is refused");
    const other = await request(srv.base, "/api/check_room", {
      method: "POST",
      body: { roomId: "abcd" },
      headers: { "x-forwarded-for": freshAddress() },
    });
    assert.equal(other.status, 200, other.text);
  });
});
