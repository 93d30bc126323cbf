// Helpers of the PrivyDrop dialect conformance tests (privydrop.test.mjs): the server's start and
// stop, socket.io-client peers whose every wait is bounded, and the HTTP calls of the room API.
//
// A wait for an event fails after WAIT_MS (a hang bound, never a speed check); "nothing arrives"
// is concluded after listening for QUIET_MS.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { io } from "socket.io-client";
import { startServer } from "./server.mjs";

/** How long a test waits for an expected event, answer or state before it fails. */
export const WAIT_MS = 5_000;
/** How long a test listens to conclude that nothing arrives. */
export const QUIET_MS = 300;
/** The bound of one test (bounded waits only; the server start is in a hook). */
export const TEST_TIMEOUT_MS = 30_000;
/** The bound of a hook that starts or stops a server (the harness waits up to 30 s for a start). */
export const HOOK_TIMEOUT_MS = 60_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A random id of `n` characters from [A-Za-z0-9], for custom room ids no test shares. */
export function randomId(n = 12) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join("");
}

let nextAddress = 1;
/**
 * A fresh client address for X-Forwarded-For (198.18.0.0/15, a range for tests; only a header,
 * nothing is sent there), so tests do not share a per-client limit.
 */
export function freshAddress() {
  const n = nextAddress++;
  return `198.18.${(n >> 8) & 255}.${n & 255}`;
}

// ---------------------------------------------------------------------------------------------
// Server

/** The first start of this file that timed out: later starts fail at once with it. */
let startFailure = null;

/** Process ids of this process's children (Linux /proc; elsewhere none are known). */
function childPids() {
  const pids = new Set();
  let entries = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) pids.add(Number(entry));
    } catch {
      // It ended while we looked.
    }
  }
  return pids;
}

/**
 * Starts signalpost with the PrivyDrop listener (PRIVYDROP_PORT=0) and `env`.
 * Resolves to { server, base (http://127.0.0.1:<privydrop port>), main (main port), stop() }.
 *
 * A start that times out (the "privydrop listening on" line never came) leaves the spawned
 * process running, which would keep this test process alive: it is ended by its id here, and
 * every later start of this file fails at once with the same error instead of 30 s later.
 */
export async function startPrivyDrop(env = {}) {
  if (startFailure) {
    throw new Error(`not started: an earlier start in this file timed out:\n${startFailure.message}`);
  }
  const before = childPids();
  let server;
  try {
    server = await startServer({ dialects: ["privydrop"], env });
  } catch (err) {
    for (const pid of childPids()) {
      if (!before.has(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
    }
    if (/did not start in time/.test(err.message)) startFailure = err;
    throw err;
  }
  return {
    server,
    base: server.urls.privydrop,
    main: server.main,
    stop: () => server.stop(),
  };
}

// ---------------------------------------------------------------------------------------------
// Socket.IO peers

/**
 * A socket.io-client socket that records every event it receives, so a test can wait for the
 * next one of a name (bounded) or check that none arrived (for QUIET_MS).
 */
export class Peer {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    /** Received, not yet consumed: [{event, args}]. */
    this.inbox = [];
    this.waiters = [];
    this.disconnectReason = null;
    socket.onAny((event, ...args) => {
      this.inbox.push({ event, args });
      this.wake();
    });
    socket.on("disconnect", (reason) => {
      this.disconnectReason = reason;
      this.wake();
    });
  }

  get id() {
    return this.socket.id;
  }

  /** The Engine.IO transport in use ("websocket" or "polling"). */
  get transport() {
    return this.socket.io.engine?.transport?.name;
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /**
   * The payload of the next unconsumed `event` (optionally the first one matching `match`),
   * consumed; fails after `timeout` ms.
   */
  next(event, { match = () => true, timeout = WAIT_MS } = {}) {
    return new Promise((resolve, reject) => {
      const look = () => {
        const i = this.inbox.findIndex((m) => m.event === event && match(m.args[0]));
        if (i < 0) return false;
        const [m] = this.inbox.splice(i, 1);
        done();
        resolve(m.args[0]);
        return true;
      };
      const waiter = () => look();
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `${this.label}: no "${event}" within ${timeout} ms` +
              ` (unconsumed: ${JSON.stringify(this.inbox)}; disconnected: ${this.disconnectReason})`,
          ),
        );
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      this.waiters.push(waiter);
      look();
    });
  }

  /** The unconsumed events named in `events` (all names if omitted), consumed. */
  take(events) {
    const keep = [];
    const taken = [];
    for (const m of this.inbox) {
      (events === undefined || events.includes(m.event) ? taken : keep).push(m);
    }
    this.inbox = keep;
    return taken;
  }

  /** Forgets every event received so far. */
  drain() {
    this.inbox = [];
  }

  /** Emits `join {roomId}` and resolves with the next `joinResponse`. */
  async join(roomId) {
    const answer = this.next("joinResponse");
    this.emit("join", { roomId });
    return answer;
  }

  /** Joins and asserts the exact success answer of the spec. */
  async mustJoin(roomId) {
    assert.deepEqual(
      await this.join(roomId),
      { success: true, message: "Successfully joined room", roomId },
      `${this.label} should join ${roomId}`,
    );
  }

  close() {
    this.socket.disconnect();
  }
}

/**
 * Opens a socket.io-client connection to the dialect listener and resolves once connected.
 * Options: transports (default ["websocket"]), xff (an X-Forwarded-For value), label, and any
 * socket.io-client option in `options`. The peer is closed when the test `t` ends.
 */
export async function connect(t, base, { transports = ["websocket"], xff, label, options = {} } = {}) {
  const extraHeaders = xff === undefined ? {} : { "x-forwarded-for": xff };
  const socket = io(base, {
    path: "/socket.io/",
    transports,
    reconnection: false,
    forceNew: true,
    timeout: WAIT_MS,
    extraHeaders,
    ...options,
  });
  const peer = new Peer(socket, label ?? `peer(${transports.join("+")})`);
  t.after(() => peer.close());
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      socket.disconnect();
      reject(new Error(`${peer.label}: not connected within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (err) => {
      cleanup();
      socket.disconnect();
      reject(new Error(`${peer.label}: connect_error: ${err?.message ?? err}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    };
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
  return peer;
}

/**
 * Listens QUIET_MS and asserts that none of `peers` received any of `events` (any event if
 * omitted) in that time or before, unconsumed.
 */
export async function assertNothing(peers, events, why = "") {
  await sleep(QUIET_MS);
  for (const p of peers) {
    const got = p.take(events);
    assert.deepEqual(
      got,
      [],
      `${p.label} should receive no ${events ? events.join("/") : "event"}${why ? ` (${why})` : ""}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** A request with a bounded wait; resolves to { status, headers, text, json }. */
export async function request(base, path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(WAIT_MS) };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export const postJson = (base, path, body, headers = {}) =>
  request(base, path, { method: "POST", body, headers });

/** GET /api/get_room: the new room's id (asserting a 200 JSON answer). */
export async function getRoom(base) {
  const res = await request(base, "/api/get_room");
  assert.equal(res.status, 200, `get_room: ${res.text}`);
  assert.equal(typeof res.json?.roomId, "string", `get_room: ${res.text}`);
  return res.json.roomId;
}

/** POST /api/check_room: the `available` answer (asserting a 200 JSON answer). */
export async function isAvailable(base, roomId) {
  const res = await postJson(base, "/api/check_room", { roomId });
  assert.equal(res.status, 200, `check_room: ${res.text}`);
  assert.equal(typeof res.json?.available, "boolean", `check_room: ${res.text}`);
  return res.json.available;
}

/** POST /api/create_room of a new custom id (asserting the spec's success answer). */
export async function createRoom(base, roomId) {
  const res = await postJson(base, "/api/create_room", { roomId });
  assert.equal(res.status, 200, `create_room: ${res.text}`);
  assert.deepEqual(res.json, { success: true, message: "create room success" });
  return roomId;
}

/** Polls `check` (an async predicate) every 100 ms until it holds; fails after `timeout` ms. */
export async function eventually(what, check, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms`);
    await sleep(100);
  }
}
