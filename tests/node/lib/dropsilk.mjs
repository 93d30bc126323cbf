// A small DropSilk client for the conformance tests of the dropsilk dialect listener.
//
// It follows the real web client (medy17/dropsilk, frontend/src/js/network/):
//   roomApi.js      JSON requests; a non-2xx answer throws Error(data.error || "HTTP <status>")
//   roomSession.js  create or join a room over HTTP, poll the summary, POST /ready, and once a
//                   summary says shouldConnect, attach the WebSocket to the room
//   websocket.js    on open: register-details, then attach-room {roomCode, participantId}
//   chatSession.js / screenShareSession.js
//                   a separate WebSocket each: register-details, then attach-room with channel
//
// Every wait is bounded (WAIT_MS) so a missing message fails the test instead of hanging it, and
// "nothing arrives" is checked by listening for QUIET_MS.
import { readdirSync, readFileSync } from "node:fs";

import WebSocket from "ws";

import { startServer, wsUrl } from "./server.mjs";

/** Longest wait for a message or an answer that should come (a hang bound, not a speed check). */
export const WAIT_MS = 5_000;
/** How long to listen when asserting that a message does NOT come. */
export const QUIET_MS = 300;

export const ROOM_CODE = /^[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}$/;
export const PARTICIPANT_ID = /^[0-9a-z]{12}$/;
export const SESSION_ID = /^[0-9a-z]{10}$/;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Server

let dialectMissing = null;

/** Process ids of this process's children (Linux /proc; empty elsewhere). */
function childPids() {
  try {
    return readdirSync("/proc")
      .filter((name) => /^\d+$/.test(name))
      .filter((pid) => {
        try {
          // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces.
          const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
          return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === process.pid;
        } catch {
          return false;
        }
      })
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * Starts signalpost with the dropsilk listener. When a first start showed that the binary opens
 * its main listener but never a dropsilk one (the feature is absent), later starts fail at once
 * with that finding instead of each waiting out the harness's start deadline again.
 *
 * A start that times out leaves its server running (the harness only rejects); this kills that
 * one child, by its pid, so the test file can end instead of hanging on it.
 */
export async function startDropsilk(env = {}) {
  if (dialectMissing) {
    throw new Error(`not starting again: an earlier start never opened the dropsilk listener\n${dialectMissing}`);
  }
  const before = new Set(childPids());
  try {
    return await startServer({ dialects: ["dropsilk"], env });
  } catch (error) {
    for (const pid of childPids()) {
      if (!before.has(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    const message = String(error?.message ?? error);
    if (/signalpost listening on/.test(message) && !/dropsilk listening on/.test(message)) {
      dialectMissing = message.slice(0, 2_000);
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** An answer: status, headers, the raw text and the parsed JSON body (undefined if not JSON). */
async function httpRequest(base, method, path, { body, rawBody, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(WAIT_MS) };
  if (rawBody !== undefined) {
    init.body = rawBody;
    init.headers["Content-Type"] ??= "application/json";
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] ??= "application/json";
  }
  const response = await fetch(base + path, init);
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** The error roomApi.js throws on a non-2xx answer, with the status and body kept for asserts. */
export class RoomApiError extends Error {
  constructor(reply) {
    super(reply.json?.error || `HTTP ${reply.status}`);
    this.status = reply.status;
    this.body = reply.json ?? reply.text;
    this.headers = reply.headers;
  }
}

/**
 * HTTP client of one DropSilk user. `from` is the user's address, sent as X-Forwarded-For (the
 * server believes it only from a trusted proxy, as the tests configure); `origin` an Origin header.
 */
export class RoomApi {
  constructor(base, { from, origin, headers = {} } = {}) {
    this.base = base;
    this.headers = { ...headers };
    if (from) this.headers["X-Forwarded-For"] = from;
    if (origin) this.headers.Origin = origin;
  }

  /** Any request; never throws on a status. */
  raw(method, path, options = {}) {
    return httpRequest(this.base, method, path, {
      ...options,
      headers: { ...this.headers, ...(options.headers || {}) },
    });
  }

  async #call(method, path, body) {
    const reply = await this.raw(method, path, { body });
    if (reply.status < 200 || reply.status > 299) throw new RoomApiError(reply);
    return reply.json;
  }

  createRoom(name) {
    return this.#call("POST", "/api/rooms", { name });
  }

  joinRoom(roomCode, name) {
    return this.#call("POST", `/api/rooms/${encodeURIComponent(roomCode)}/join`, { name });
  }

  getRoomStatus(roomCode, participantId) {
    return this.#call(
      "GET",
      `/api/rooms/${encodeURIComponent(roomCode)}?participantId=${encodeURIComponent(participantId)}`,
    );
  }

  markParticipantReady(roomCode, participantId, payload) {
    return this.#call("POST", participantPath(roomCode, participantId, "ready"), payload);
  }

  setParticipantScreenShare(roomCode, participantId, active) {
    return this.#call("POST", participantPath(roomCode, participantId, "screen-share"), { active });
  }

  setParticipantChatActive(roomCode, participantId, active) {
    return this.#call("POST", participantPath(roomCode, participantId, "chat"), { active });
  }
}

export function participantPath(roomCode, participantId, action) {
  return `/api/rooms/${encodeURIComponent(roomCode)}/participants/${encodeURIComponent(participantId)}/${action}`;
}

// ---------------------------------------------------------------------------------------------
// WebSocket

const openSockets = new Set();

/** Closes every socket the tests opened (call it after each test). */
export async function closeAllSockets() {
  const sockets = [...openSockets];
  openSockets.clear();
  await Promise.all(sockets.map((s) => s.close()));
}

const describe = (types, where) =>
  `${[types].flat().join("|")}${where ? ` matching ${where.toString().slice(0, 120)}` : ""}`;

/** One WebSocket to the dialect listener, with an inbox and bounded waits. */
export class DropSilkSocket {
  /**
   * Opens a socket and waits for the server's `registered` greeting (`socket.id`).
   * `from`: the client address (X-Forwarded-For); `origin`: an Origin header; `path`: any path.
   */
  static async connect(base, { path = "/", from, origin } = {}) {
    const headers = {};
    if (from) headers["X-Forwarded-For"] = from;
    if (origin) headers.Origin = origin;
    const socket = new DropSilkSocket(new WebSocket(wsUrl(base, path), { headers }));
    await socket.opened;
    const registered = await socket.next("registered");
    socket.id = registered.id;
    return socket;
  }

  constructor(ws) {
    this.ws = ws;
    this.id = null;
    this.inbox = [];
    this.waiters = [];
    this.closeInfo = null;
    openSockets.add(this);
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Error(`socket closed (${code}) while waiting for ${w.what}`));
        }
        resolve(this.closeInfo);
      });
    });
    this.opened = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error("WebSocket did not open in time"));
      }, WAIT_MS);
      ws.once("open", () => {
        clearTimeout(timer);
        resolve();
      });
      ws.once("unexpected-response", (_req, res) => {
        clearTimeout(timer);
        reject(new Error(`WebSocket upgrade refused with HTTP ${res.statusCode}`));
        ws.terminate();
      });
      ws.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    ws.on("error", () => {});
    ws.on("message", (data) => {
      let message;
      try {
        message = JSON.parse(data.toString());
      } catch {
        message = { type: "<not json>", raw: data.toString().slice(0, 200) };
      }
      const i = this.waiters.findIndex((w) => w.matches(message));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(message);
      } else {
        this.inbox.push(message);
      }
    });
  }

  /** Sends a message object as JSON text. */
  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  /** Sends a text frame as is. */
  sendRaw(text) {
    this.ws.send(text);
  }

  /**
   * The next unread message of the given type(s) (and matching `where`), waiting at most
   * `timeout` ms. Other messages stay unread.
   */
  next(types, where = null, timeout = WAIT_MS) {
    const wanted = new Set([types].flat());
    const matches = (m) => wanted.has(m?.type) && (!where || where(m));
    const i = this.inbox.findIndex(matches);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    const what = describe(types, where);
    if (this.closeInfo) {
      return Promise.reject(new Error(`socket already closed (${this.closeInfo.code}); wanted ${what}`));
    }
    return new Promise((resolve, reject) => {
      const waiter = { matches, resolve, reject, what };
      waiter.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        const seen = this.inbox.map((m) => JSON.stringify(m).slice(0, 200)).join("\n  ");
        reject(new Error(`no ${what} within ${timeout} ms; unread:\n  ${seen || "(nothing)"}`));
      }, timeout);
      this.waiters.push(waiter);
    });
  }

  /**
   * The first `users-on-network-update` whose list satisfies `where`, dropping the older
   * updates before it (each update is a snapshot, only the newest ones matter).
   */
  async usersUpdate(where, timeout = WAIT_MS) {
    const message = await this.next("users-on-network-update", (m) => where(m.users), timeout);
    this.forget("users-on-network-update");
    return message;
  }

  /** Drops unread messages of a type. */
  forget(type) {
    this.inbox = this.inbox.filter((m) => m.type !== type);
  }

  /**
   * Fails if a message of the given type (matching `where`) is unread now or arrives within
   * `ms`. Returns nothing.
   */
  async expectNone(type, ms = QUIET_MS, where = null) {
    const matches = (m) => m.type === type && (!where || where(m));
    const check = () => {
      const found = this.inbox.find(matches);
      if (found) throw new Error(`unexpected ${type}: ${JSON.stringify(found).slice(0, 300)}`);
    };
    check();
    await sleep(ms);
    check();
  }

  /** Waits for the server to close this socket; resolves to {code, reason}. */
  async closedByServer(timeout = WAIT_MS) {
    let timer;
    const deadline = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`socket not closed within ${timeout} ms`)), timeout);
    });
    try {
      return await Promise.race([this.closed, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the socket and waits (bounded) for the close to complete. */
  async close() {
    openSockets.delete(this);
    if (this.closeInfo) return;
    if (this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.terminate();
    } else {
      this.ws.close();
    }
    let timer;
    await Promise.race([this.closed, new Promise((r) => (timer = setTimeout(r, 2_000)))]);
    clearTimeout(timer);
    if (!this.closeInfo) {
      this.ws.terminate();
      await Promise.race([this.closed, sleep(1_000)]);
    }
  }
}

/**
 * Tries a WebSocket upgrade and tells its HTTP status: 101 when it succeeded (the socket is then
 * closed), or the refusal's status.
 */
export function upgradeStatus(base, { origin, from, path = "/" } = {}) {
  const headers = {};
  if (origin) headers.Origin = origin;
  if (from) headers["X-Forwarded-For"] = from;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(base, path), { headers });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error("upgrade got no answer in time"));
    }, WAIT_MS);
    ws.on("error", () => {});
    ws.once("unexpected-response", (_req, res) => {
      clearTimeout(timer);
      res.resume();
      ws.terminate();
      resolve(res.statusCode);
    });
    ws.once("open", () => {
      clearTimeout(timer);
      ws.close();
      resolve(101);
    });
    ws.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// A DropSilk user: the room flow of roomSession.js plus its sockets

export class DropSilkUser {
  /** `name` as generateRandomName() would make; `from` the user's address. */
  constructor(base, name, { from, origin } = {}) {
    this.base = base;
    this.name = name;
    this.from = from;
    this.origin = origin;
    this.api = new RoomApi(base, { from, origin });
    this.roomCode = null;
    this.participantId = null;
  }

  #remember(summary) {
    this.roomCode = summary.roomCode;
    this.participantId = summary.self.participantId;
    return summary;
  }

  /** POST /api/rooms (the host). */
  async createRoom() {
    return this.#remember(await this.api.createRoom(this.name));
  }

  /** POST /api/rooms/:code/join (the guest). */
  async joinRoom(roomCode) {
    return this.#remember(await this.api.joinRoom(roomCode, this.name));
  }

  /** One poll: GET /api/rooms/:code?participantId=. */
  poll() {
    return this.api.getRoomStatus(this.roomCode, this.participantId);
  }

  /**
   * Polls (every 100 ms, at most `timeout` ms) until `until(summary)` holds; returns that summary.
   * Used where a change is asynchronous (a socket closing); each poll slides the room's expiry.
   */
  async pollUntil(until, timeout = WAIT_MS) {
    const deadline = Date.now() + timeout;
    let last;
    for (;;) {
      try {
        last = await this.poll();
        if (until(last)) return last;
      } catch (error) {
        last = error;
        if (until(error)) return error;
      }
      if (Date.now() > deadline) {
        throw new Error(`room summary did not reach the expected state in ${timeout} ms; last: ${
          last instanceof Error ? `${last.status} ${last.message}` : JSON.stringify(last)}`);
      }
      await sleep(100);
    }
  }

  /** POST .../ready, as when files are selected. */
  markReady(payload = { fileCount: 1, totalBytes: 1024 }) {
    return this.api.markParticipantReady(this.roomCode, this.participantId, payload);
  }

  setChat(active) {
    return this.api.setParticipantChatActive(this.roomCode, this.participantId, active);
  }

  setScreenShare(active) {
    return this.api.setParticipantScreenShare(this.roomCode, this.participantId, active);
  }

  /** A fresh socket that has registered this user's name, as every client socket does on open. */
  async connect({ from = this.from, origin = this.origin } = {}) {
    const socket = await DropSilkSocket.connect(this.base, { from, origin });
    socket.send({ type: "register-details", name: this.name, localIpPrefix: "unknown", localIp: "unknown" });
    return socket;
  }

  /**
   * Opens a socket for a channel and attaches it to the room, as websocket.js (transfer: no
   * channel field) or chatSession.js / screenShareSession.js do. Resolves to {socket, attached}
   * once `room-attached` arrives; rejects with the server's error message otherwise.
   */
  async attach(channel = "transfer", { from = this.from, socket } = {}) {
    socket ??= await this.connect({ from });
    const message = { type: "attach-room", roomCode: this.roomCode, participantId: this.participantId };
    if (channel !== "transfer") message.channel = channel;
    socket.send(message);
    const reply = await socket.next(["room-attached", "error"]);
    if (reply.type === "error") throw new Error(`attach-room answered error: ${reply.message}`);
    return { socket, attached: reply };
  }
}

/** Sorts a users list by id so lists compare regardless of order. */
export function byId(users) {
  return [...users].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
