// What the dialect conformance tests share: a server per test that is always stopped, JSON
// WebSocket clients whose every wait is bounded, and small HTTP helpers.
//
// Waits for a message fail the test after WAIT_MS (a hang bound, never a speed check);
// "nothing arrives" is checked by listening for QUIET_MS.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname } from "node:path";
import WebSocket from "ws";
import { startServer, wsUrl } from "./server.mjs";

/** How long a test waits for an expected message or state before it fails. */
export const WAIT_MS = 5_000;
/** How long a test listens to conclude that nothing arrives. */
export const QUIET_MS = 300;
/** How long one test may take in all (a start may take 30 s; the rest is bounded waits). */
export const TEST_TIMEOUT_MS = 90_000;

/** How long a stopping server may take before it is killed. */
const STOP_DEADLINE_MS = 20_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** A deadline for a race: unlike `sleep`, it does not keep the process alive once the race is won. */
const deadline = (ms) => new Promise((r) => setTimeout(r, ms).unref());

/** The first failed start of this test file: later starts fail at once with it, not 30 s later. */
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
      // pid (comm) state ppid ...; comm may hold spaces and parentheses, so split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) pids.add(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/** The environment a process was started with (Linux /proc; elsewhere empty). */
function envOf(pid) {
  try {
    const pairs = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    return Object.fromEntries(
      pairs.filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
    );
  } catch {
    return {};
  }
}

/**
 * Starts signalpost with the given dialect listeners for one test, and stops it (after closing
 * every socket the test opened through `app.connect`) when the test ends.
 * Resolves to { server, http, ws(path), connect(path, label) }.
 */
export async function startDialect(t, dialect, env = {}) {
  if (startFailure) {
    throw new Error(`not started: an earlier start in this file failed:\n${startFailure.message}`);
  }
  const before = childPids();
  const starting = startServer({ dialects: [dialect], env });
  // The spawn has happened (and exec'd) by now: note the new process and its temporary
  // directory, which a failed start would leave behind.
  const spawned = [...childPids()]
    .filter((pid) => !before.has(pid))
    .map((pid) => ({ pid, dir: dirname(envOf(pid).SQLITE_DB_PATH ?? "/") }));
  let server;
  try {
    server = await starting;
  } catch (err) {
    const alive = childPids();
    for (const { pid, dir } of spawned) {
      // A start that failed must not leave its process running (it would keep this test
      // process alive): end it, by its id, if it is still this process's child.
      if (alive.has(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      if (basename(dir).startsWith("signalpost-node-")) rmSync(dir, { recursive: true, force: true });
    }
    if (/did not start in time/.test(err.message)) startFailure = err;
    throw err;
  }
  const sockets = [];
  const http = server.urls[dialect];
  const app = {
    server,
    http,
    ws: (path = "/") => wsUrl(http, path),
    /** Opens a JSON WebSocket client to `path`, closed when the test ends. */
    async connect(path = "/", label = "client") {
      const socket = await JsonSocket.open(wsUrl(http, path), label);
      sockets.push(socket);
      return socket;
    },
  };
  t.after(async () => {
    await Promise.all(sockets.map((s) => s.close()));
    // SIGTERM; a server that does not exit within its grace and a margin is killed.
    const stopped = server.stop();
    const late = await Promise.race([stopped.then(() => false), deadline(STOP_DEADLINE_MS).then(() => true)]);
    if (late) {
      await server.kill();
      await stopped;
    }
  });
  return app;
}

/** True when `message` has every field of `fields` (deeply equal). */
export function has(message, fields) {
  if (message === null || typeof message !== "object") return false;
  return Object.entries(fields).every(([k, v]) => {
    try {
      assert.deepStrictEqual(message[k], v);
      return true;
    } catch {
      return false;
    }
  });
}

/** A message as text for failure messages, cut short. */
const show = (m) => JSON.stringify(m)?.slice(0, 300);

/** A predicate: the message has these fields (e.g. `{ type: "pong" }`). */
export const matching = (fields) => named(`with ${show(fields)}`, (m) => has(m, fields));

/** Any message at all. */
const ANY = named("at all", () => true);

/** A WebSocket client that parses every text frame as JSON and keeps it until a test takes it. */
export class JsonSocket {
  /** Connects, failing after WAIT_MS. */
  static open(url, label = "client") {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`${label}: WebSocket to ${url} did not open within ${WAIT_MS} ms`));
      }, WAIT_MS);
      ws.once("open", () => {
        clearTimeout(timer);
        resolve(new JsonSocket(ws, label));
      });
      ws.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`${label}: WebSocket to ${url} failed: ${err.message}`));
      });
    });
  }

  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    /** Messages received and not yet taken by a test. */
    this.inbox = [];
    /** WebSocket protocol pings received from the server. */
    this.pings = 0;
    /** { code, reason } once the connection has closed. */
    this.closeInfo = null;
    this.wakers = new Set();
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
    ws.on("message", (data, isBinary) => {
      const text = data.toString();
      let message;
      try {
        message = JSON.parse(text);
      } catch {
        message = { unparsable: text, binary: isBinary };
      }
      this.inbox.push(message);
      this.wake();
    });
    ws.on("ping", () => {
      this.pings += 1;
      this.wake();
    });
    ws.on("error", () => {
      // Surfaces as a close; a test waiting on this socket fails with the close code.
    });
  }

  wake() {
    for (const w of this.wakers) w();
  }

  /** Resolves when anything happens on the socket or after `ms`. */
  changed(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a value as JSON text. */
  send(value) {
    this.ws.send(JSON.stringify(value));
  }

  /** Sends raw text (for malformed frames). */
  sendText(text) {
    this.ws.send(text);
  }

  /**
   * Takes the first received message that satisfies `where` (a predicate or a field object),
   * waiting up to `ms`. Messages that do not match stay in the inbox.
   */
  async next(where = ANY, ms = WAIT_MS) {
    const test = typeof where === "function" ? where : matching(where);
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.inbox.findIndex(test);
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      if (this.closeInfo) {
        assert.fail(
          `${this.label}: connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) ` +
            `while waiting for ${phrase(where)}; unmatched: ${this.inbox.map(show).join(", ") || "none"}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        assert.fail(
          `${this.label}: no message ${phrase(where)} within ${ms} ms; ` +
            `received instead: ${this.inbox.map(show).join(", ") || "nothing"}`,
        );
      }
      await this.changed(left);
    }
  }

  /** Takes the first message of this type. */
  nextOfType(type, ms = WAIT_MS) {
    return this.next({ type }, ms);
  }

  /** Asserts that no message satisfying `where` (default: any) is received for `ms`. */
  async nothing(where = ANY, ms = QUIET_MS) {
    const test = typeof where === "function" ? where : matching(where);
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.inbox.find(test);
      if (found !== undefined) {
        assert.fail(`${this.label}: expected no message ${phrase(where)}, got ${show(found)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) return;
      await this.changed(left);
    }
  }

  /** Waits until the server closes the connection; resolves to { code, reason }. */
  async closedByServer(ms = WAIT_MS) {
    const info = await Promise.race([this.closed, deadline(ms).then(() => null)]);
    if (!info) assert.fail(`${this.label}: the server did not close the connection within ${ms} ms`);
    return info;
  }

  /** Waits until at least `n` protocol pings have arrived. */
  async pinged(n = 1, ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    while (this.pings < n) {
      const left = deadline - Date.now();
      if (left <= 0 || this.closeInfo) {
        assert.fail(`${this.label}: ${this.pings} WebSocket ping(s) within ${ms} ms, wanted ${n}`);
      }
      await this.changed(left);
    }
  }

  /** Closes from the client side and waits (bounded) until the connection is gone. */
  async close() {
    if (this.closeInfo) return;
    try {
      this.ws.close(1000);
    } catch {
      // Not open yet or already closing.
    }
    const info = await Promise.race([this.closed, deadline(2_000).then(() => null)]);
    if (!info) {
      this.ws.terminate();
      await Promise.race([this.closed, deadline(1_000)]);
    }
  }
}

function phrase(where) {
  if (typeof where === "function") return where.description ?? "matching the test's predicate";
  // A field object.
  return `like ${show(where)}`;
}

/** Gives a predicate a readable name for failure messages. */
export function named(description, predicate) {
  predicate.description = description;
  return predicate;
}

/**
 * An HTTP request with a bounded wait. Resolves to { status, headers, text, body } where `body`
 * is the parsed JSON (or undefined when the body is not JSON).
 */
export async function request(url, { method = "GET", headers = {}, json } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(WAIT_MS) };
  if (json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof json === "string" ? json : JSON.stringify(json);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

/** Retries `check` (which throws until the state is reached) for up to `ms`. */
export async function eventually(check, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

/** Sends `count` copies of `message` at once and counts the replies that satisfy `isEcho`. */
export async function flood(socket, message, count, isEcho) {
  for (let i = 0; i < count; i++) {
    if (!socket.isOpen) break;
    socket.send(message);
  }
  // Let the replies to the burst arrive (or the connection close).
  await Promise.race([socket.closed, deadline(1_000)]);
  return socket.inbox.filter(isEcho).length;
}
