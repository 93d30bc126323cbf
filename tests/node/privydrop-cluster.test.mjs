// The PrivyDrop dialect across two cluster nodes: signalpost processes on one Redis
// (REDIS_URL) act as one PrivyDrop server, so a sender connected to node A and its receivers
// connected to node B meet in one room, and every event of ../shared/protocols/privydrop.md
// reaches them as on a single server (tests/node/privydrop.test.mjs checks it on one).
//
// Run: cargo build && REDIS_URL=redis://127.0.0.1:<port>/0 SIGNALPOST_BIN=target/debug/signalpost \
//        node --test tests/node/privydrop-cluster.test.mjs
// (tests/api/cluster.rs runs it on a private redis-server.) Without REDIS_URL every test is
// skipped. Never point it at a Redis that holds anything else: the nodes write their state there.
//
// Every wait is bounded (WAIT_MS, a hang bound, not a speed check); "nothing arrives" means
// nothing within QUIET_MS. Each describe block runs two nodes with its own configuration.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
  HOOK_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  assertNothing,
  connect,
  createRoom,
  getRoom,
  isAvailable,
  postJson,
  randomId,
  startPrivyDrop,
} from "./lib/privydrop.mjs";

const REDIS_URL = process.env.REDIS_URL;
const NO_REDIS = "REDIS_URL is not set: the cluster suite needs a Redis the two nodes share";

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

/**
 * A client address for X-Forwarded-For nobody else uses (198.19.0.0/16, half of the test range
 * 198.18.0.0/15; only a header). Random rather than counted, so that this suite shares no
 * address with another suite run on the same Redis, whose join limit is shared.
 */
function freshAddress() {
  const [a, b] = randomBytes(2);
  return `198.19.${a}.${b}`;
}

/** A test that is skipped, saying why, when there is no Redis to make a cluster on. */
function clusterTest(name, fn) {
  test(name, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    if (!REDIS_URL) {
      t.skip(NO_REDIS);
      return;
    }
    await fn(t);
  });
}

/**
 * Starts two nodes (A and B) with the PrivyDrop listener for the enclosing describe block, both
 * on the inherited REDIS_URL with `env`, and stops them after the block. Their NODE_IDs are
 * distinct, and new for every block, so a block's nodes are never taken for the last block's.
 */
function useCluster(env) {
  const nodes = {};
  before(async () => {
    if (!REDIS_URL) return;
    const run = randomId(6);
    nodes.a = await startPrivyDrop({ ...env, NODE_ID: `privydrop-a-${run}` });
    nodes.b = await startPrivyDrop({ ...env, NODE_ID: `privydrop-b-${run}` });
  }, HOOK);
  after(async () => {
    for (const node of [nodes.a, nodes.b]) if (node) await node.stop();
  }, HOOK);
  return nodes;
}

/**
 * A room from get_room on node A with a sender joined on A and `n` receivers joined on B; every
 * `ready` the joins caused is checked (each joiner is announced to everyone already in, across
 * the nodes) and consumed.
 */
async function roomAcross(t, nodes, n = 2, { xff } = {}) {
  const roomId = await getRoom(nodes.a.base);
  const sender = await connect(t, nodes.a.base, { label: "sender on A", xff, options: REAL_CLIENT });
  await sender.mustJoin(roomId);
  const receivers = [];
  for (let i = 1; i <= n; i++) {
    const r = await connect(t, nodes.b.base, { label: `receiver${i} on B`, xff, options: REAL_CLIENT });
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
  sender.roomId = roomId;
  for (const r of receivers) r.roomId = roomId;
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
describe("PrivyDrop on two cluster nodes: a sender on node A, receivers on node B", () => {
  const nodes = useCluster(NO_JOIN_LIMIT);

  clusterTest("a room made on one node exists on the other, for check_room, create_room and join", async (t) => {
    const fromGet = await getRoom(nodes.a.base);
    assert.equal(await isAvailable(nodes.b.base, fromGet), false, "B sees A's get_room room");
    const custom = await createRoom(nodes.b.base, randomId(12));
    assert.equal(await isAvailable(nodes.a.base, custom), false, "A sees B's create_room room");
    const again = await postJson(nodes.a.base, "/api/create_room", { roomId: custom });
    assert.deepEqual(again.json, { success: true, message: "room exists (rejoin allowed)" }, "A knows the room B made");
    const unknown = randomId(12);
    assert.equal(await isAvailable(nodes.a.base, unknown), true);
    assert.equal(await isAvailable(nodes.b.base, unknown), true);

    const joiner = await connect(t, nodes.b.base, { label: "joiner on B" });
    await joiner.mustJoin(fromGet);
    const other = await connect(t, nodes.a.base, { label: "joiner on A" });
    await other.mustJoin(custom);
    const nobody = await connect(t, nodes.a.base, { label: "joiner of a room nobody made" });
    assert.deepEqual(await nobody.join(unknown), { success: false, message: "Room does not exist", roomId: unknown });
  });

  clusterTest("a sender on A and two receivers on B meet, each join announced across the nodes with ready", async (t) => {
    const roomId = await getRoom(nodes.a.base);
    const sender = await connect(t, nodes.a.base, { label: "sender on A", options: REAL_CLIENT });
    const r1 = await connect(t, nodes.b.base, { label: "receiver1 on B", options: REAL_CLIENT });
    const r2 = await connect(t, nodes.b.base, { label: "receiver2 on B", options: REAL_CLIENT });

    await sender.mustJoin(roomId);
    await assertNothing([sender], ["ready"], "nobody else is in the room yet");
    await r1.mustJoin(roomId);
    assert.deepEqual(await sender.next("ready"), { peerId: r1.id });
    await r2.mustJoin(roomId);
    assert.deepEqual(await sender.next("ready"), { peerId: r2.id });
    assert.deepEqual(await r1.next("ready"), { peerId: r2.id });
    await assertNothing([sender, r1, r2], ["ready"], "a joiner is not told of its own join");

    // A third receiver, on A, is announced to the receivers on B and the sender on A.
    const r3 = await connect(t, nodes.a.base, { label: "receiver3 on A", options: REAL_CLIENT });
    await r3.mustJoin(roomId);
    for (const p of [sender, r1, r2]) assert.deepEqual(await p.next("ready"), { peerId: r3.id }, p.label);
    await assertNothing([sender, r1, r2, r3], ["ready"]);
  });

  clusterTest("an offer from A reaches only the addressed receiver on B, with from as sent and peerId set to the sender's id", async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    sender.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: sender.id });
    assert.deepEqual(await r1.next("offer"), { offer: OFFER, from: sender.id, peerId: sender.id });
    await assertNothing([sender, r2], SIGNALS, "the offer was addressed to receiver1");

    const offer2 = { ...OFFER, sdp: OFFER.sdp + "a=second\r\n" };
    sender.emit("offer", { roomId, peerId: r2.id, offer: offer2, from: sender.id });
    assert.deepEqual(await r2.next("offer"), { offer: offer2, from: sender.id, peerId: sender.id });
    await assertNothing([sender, r1], SIGNALS, "the offer was addressed to receiver2");

    // from is passed through verbatim, even when it is not the sender's id.
    sender.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: "not-the-sender-id" });
    assert.deepEqual(await r1.next("offer"), { offer: OFFER, from: "not-the-sender-id", peerId: sender.id });
  });

  clusterTest("answers from B reach only the sender on A, with each receiver's id as from and peerId", async (t) => {
    const { sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    r1.emit("answer", { answer: ANSWER, peerId: sender.id, from: r1.id });
    assert.deepEqual(await sender.next("answer"), { answer: ANSWER, from: r1.id, peerId: r1.id });
    await assertNothing([r1, r2], SIGNALS, "the answer was addressed to the sender");
    r2.emit("answer", { answer: ANSWER, peerId: sender.id, from: "someone-else" });
    assert.deepEqual(await sender.next("answer"), { answer: ANSWER, from: "someone-else", peerId: r2.id });
    await assertNothing([r1, r2], SIGNALS, "the answer was addressed to the sender");
  });

  clusterTest("ice candidates flow both ways across the nodes, each to the addressed socket only", async (t) => {
    const { sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    const pairs = [
      [sender, r1, candidate(1)],
      [r1, sender, candidate(2)],
      [sender, r2, candidate(3)],
      [r2, sender, candidate(4)],
      [r1, r2, candidate(5)], // two receivers on one node, through the same room
    ];
    for (const [from, to, c] of pairs) {
      from.emit("ice-candidate", { candidate: c, peerId: to.id, from: from.id });
      assert.deepEqual(await to.next("ice-candidate"), { candidate: c, from: from.id, peerId: from.id }, `${from.label} → ${to.label}`);
    }
    await assertNothing([sender, r1, r2], SIGNALS, "each candidate reached its addressee only once");
  });

  clusterTest("a whole negotiation across the nodes relays every message once and nothing else", async (t) => {
    const { sender, receivers } = await roomAcross(t, nodes, 2);
    for (const r of receivers) {
      await relay("offer", sender, r, OFFER);
      await relay("answer", r, sender, ANSWER);
      await relay("ice-candidate", sender, r, candidate(6));
      await relay("ice-candidate", r, sender, candidate(7));
    }
    await assertNothing([sender, ...receivers], undefined, "every relayed message was consumed");
  });

  clusterTest("an offer and the candidates after it cross the nodes in the order they were sent", async (t) => {
    const { roomId, sender, receivers: [r1] } = await roomAcross(t, nodes, 1);
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

  clusterTest("a relay addressed across the nodes to a socket in another room reaches nobody", async (t) => {
    const a = await roomAcross(t, nodes, 1);
    const b = await roomAcross(t, nodes, 1);
    const [ra] = a.receivers;
    const [rb] = b.receivers;
    a.sender.emit("offer", { roomId: a.roomId, peerId: rb.id, offer: OFFER, from: a.sender.id });
    ra.emit("answer", { answer: ANSWER, peerId: b.sender.id, from: ra.id });
    rb.emit("ice-candidate", { candidate: candidate(8), peerId: a.sender.id, from: rb.id });
    await assertNothing([a.sender, ra, b.sender, rb], undefined, "relays never cross rooms");
  });

  clusterTest("initiator-online from A reaches every receiver on B, and recipient-ready from B reaches the others on both nodes", async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    sender.emit("initiator-online", { roomId });
    assert.deepEqual(await r1.next("initiator-online"), { roomId });
    assert.deepEqual(await r2.next("initiator-online"), { roomId });
    await assertNothing([sender, r1, r2], ["initiator-online"], "once each, not to the sender");

    r1.emit("recipient-ready", { roomId, peerId: r1.id });
    assert.deepEqual(await sender.next("recipient-ready"), { peerId: r1.id });
    assert.deepEqual(await r2.next("recipient-ready"), { peerId: r1.id });
    await assertNothing([sender, r1, r2], ["recipient-ready"], "once each, not to the receiver that sent it");
  });

  clusterTest("the sender's reconnect path across the nodes: a rejoin is announced again, initiator-online is answered with recipient-ready", async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    await sender.mustJoin(roomId);
    assert.deepEqual(await r1.next("ready"), { peerId: sender.id });
    assert.deepEqual(await r2.next("ready"), { peerId: sender.id });
    sender.emit("initiator-online", { roomId });
    for (const r of [r1, r2]) {
      assert.deepEqual(await r.next("initiator-online"), { roomId });
      r.emit("recipient-ready", { roomId, peerId: r.id });
    }
    const ready = [await sender.next("recipient-ready"), await sender.next("recipient-ready")];
    assert.deepEqual(
      ready.map((d) => d.peerId).sort(),
      [r1.id, r2.id].sort(),
      "each receiver's recipient-ready reached the sender",
    );
    // recipient-ready goes to everyone else in the room: each receiver hears the other's.
    assert.deepEqual(await r1.next("recipient-ready"), { peerId: r2.id });
    assert.deepEqual(await r2.next("recipient-ready"), { peerId: r1.id });
    await relay("offer", sender, r2, OFFER);
    await assertNothing([sender, r1, r2], [...BROADCASTS, ...SIGNALS], "a rejoin does not make a second membership");
  });

  clusterTest("a socket bound to a room on one node is refused another room with Socket is already bound to another room", async (t) => {
    const a = await roomAcross(t, nodes, 1);
    const other = await getRoom(nodes.b.base);
    assert.deepEqual(await a.receivers[0].join(other), {
      success: false,
      message: "Socket is already bound to another room",
      roomId: other,
    });
    await relay("offer", a.sender, a.receivers[0], OFFER);
  });

  clusterTest("leave_room on node B for the sender on node A announces peer-disconnected to everyone in the room, the leaver included", async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    const res = await postJson(nodes.b.base, "/api/leave_room", { roomId, socketId: sender.id });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { success: true, message: "Successfully left the room" });
    for (const p of [sender, r1, r2]) {
      assert.deepEqual(await p.next("peer-disconnected"), { peerId: sender.id }, `${p.label} is told`);
    }
    await assertNothing([sender, r1, r2], ["peer-disconnected"]);

    // It is out of the room: a new joiner is announced to the receivers only, and its relays
    // and broadcasts reach nobody there.
    const late = await connect(t, nodes.a.base, { label: "late joiner on A" });
    await late.mustJoin(roomId);
    assert.deepEqual(await r1.next("ready"), { peerId: late.id });
    assert.deepEqual(await r2.next("ready"), { peerId: late.id });
    sender.emit("offer", { roomId, peerId: r1.id, offer: OFFER, from: sender.id });
    sender.emit("initiator-online", { roomId });
    await assertNothing([r1, r2, late], [...SIGNALS, "initiator-online"], "the socket that left is in no room");
    await assertNothing([sender], ["ready"], "the socket that left hears nothing of its old room");

    // And it may join another room, made on the other node.
    const other = await getRoom(nodes.b.base);
    await sender.mustJoin(other);
  });

  clusterTest("leave_room on node A for a receiver on node B is seen on both nodes", async (t) => {
    const { roomId, sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    const res = await postJson(nodes.a.base, "/api/leave_room", { roomId, socketId: r2.id });
    assert.deepEqual(res.json, { success: true, message: "Successfully left the room" });
    for (const p of [sender, r1, r2]) assert.deepEqual(await p.next("peer-disconnected"), { peerId: r2.id }, `${p.label} is told`);
    sender.emit("offer", { roomId, peerId: r2.id, offer: OFFER, from: sender.id });
    await assertNothing([r2], SIGNALS, "the receiver that left gets no relay of its old room");
    await relay("offer", sender, r1, OFFER);
  });

  clusterTest("a receiver's disconnect on B is seen on A, and the sender's disconnect on A is seen on B", async (t) => {
    const { sender, receivers: [r1, r2] } = await roomAcross(t, nodes, 2);
    const outsider = await connect(t, nodes.b.base, { label: "outsider on B" });
    outsider.close();
    await assertNothing([sender, r1, r2], ["peer-disconnected"], "the outsider was in no room");

    const id2 = r2.id;
    r2.close();
    assert.deepEqual(await sender.next("peer-disconnected"), { peerId: id2 });
    assert.deepEqual(await r1.next("peer-disconnected"), { peerId: id2 });
    await assertNothing([sender, r1], ["peer-disconnected"]);

    const id = sender.id;
    sender.close();
    assert.deepEqual(await r1.next("peer-disconnected"), { peerId: id });
    await assertNothing([r1], ["peer-disconnected"]);
  });

  clusterTest("a long-polling receiver on B signals with a websocket sender on A", async (t) => {
    const roomId = await getRoom(nodes.b.base);
    const w = await connect(t, nodes.a.base, { label: "websocket sender on A" });
    const p = await connect(t, nodes.b.base, { label: "polling receiver on B", transports: ["polling"] });
    await w.mustJoin(roomId);
    await p.mustJoin(roomId);
    assert.deepEqual(await w.next("ready"), { peerId: p.id });
    w.roomId = roomId;
    await relay("offer", w, p, OFFER);
    await relay("answer", p, w, ANSWER);
    await relay("ice-candidate", w, p, candidate(1));
    await relay("ice-candidate", p, w, candidate(2));
    assert.equal(p.transport, "polling", "it never upgraded");
    const id = p.id;
    p.close();
    assert.deepEqual(await w.next("peer-disconnected"), { peerId: id });
  });
});

// =============================================================================================
describe("PrivyDrop's join rate limit on two cluster nodes (defaults: 2 joins per 5 s per client, behind a trusted proxy)", () => {
  const nodes = useCluster({ TRUSTED_PROXIES: "127.0.0.1/32" });
  const REFUSAL = /^Rate limit exceeded\. Try again in ([1-5])s\. Attempts left: 0\.$/;

  /** Asserts the original's refusal answer, exactly as the spec words it. */
  async function assertRefused(peer, roomId) {
    const r = await peer.join(roomId);
    assert.equal(r.success, false, `${peer.label}: ${JSON.stringify(r)}`);
    assert.deepEqual(Object.keys(r).sort(), ["message", "roomId", "success"], JSON.stringify(r));
    assert.equal(r.roomId, roomId);
    assert.match(r.message, REFUSAL, `${peer.label}: refusal message`);
  }

  clusterTest("joins of one client address spread over both nodes share one budget: the third is refused on either node", async (t) => {
    const xff = freshAddress();
    const roomId = await getRoom(nodes.a.base);
    const a = await connect(t, nodes.a.base, { label: "a on A", xff });
    const b = await connect(t, nodes.b.base, { label: "b on B", xff });
    const c = await connect(t, nodes.a.base, { label: "c on A", xff });
    const d = await connect(t, nodes.b.base, { label: "d on B", xff });
    await a.mustJoin(roomId);
    await b.mustJoin(roomId);
    assert.deepEqual(await a.next("ready"), { peerId: b.id });
    await assertRefused(c, roomId);
    await assertRefused(d, roomId);
    await assertNothing([a, b], ["ready"], "the refused sockets did not join");

    // The budget is per client address: another one still joins, on either node.
    const other = await connect(t, nodes.b.base, { label: "another address on B", xff: freshAddress() });
    await other.mustJoin(roomId);
    for (const p of [a, b]) assert.deepEqual(await p.next("ready"), { peerId: other.id });
  });

  clusterTest("same-room rejoins on one node do not count toward the budget shared with the other", async (t) => {
    const xff = freshAddress();
    const roomId = await getRoom(nodes.b.base);
    const a = await connect(t, nodes.a.base, { label: "a on A", xff });
    await a.mustJoin(roomId);
    for (let i = 0; i < 3; i++) await a.mustJoin(roomId);
    const b = await connect(t, nodes.b.base, { label: "b on B", xff });
    await b.mustJoin(roomId);
    await assertRefused(await connect(t, nodes.b.base, { label: "c on B", xff }), roomId);
  });
});
