// signalpost browser client: the REST pairing flow and the WebSocket relay of
// a signalpost server, in one dependency-free ES module.
//
//   import { Signalpost } from "/sdk/signalpost.js";
//   const sp = new Signalpost();                    // same origin as the page
//   const { code } = await sp.createCode({ expiresInSeconds: 120 });
//   const roomId = await sp.waitForPeer();          // device A (shows `code`)
//   const roomId = await sp.acceptCode("123456");   // device B (typed `code`)
//   const session = sp.connect(roomId);
//   session.on("ready", ({ isInitiator }) => { ... });
//   session.on("offer", ({ sdp }) => { ... });
//   session.sendOffer(pc.localDescription.sdp);
//
// The wire protocol is described in docs/protocol.md. Everything here only
// uses what every current browser has: fetch, WebSocket, localStorage.

/** Key under which the stable device id is kept in `localStorage`. */
export const DEVICE_ID_KEY = "signalpost.deviceId";

/** Polling of `POST /api/rooms/check` starts at this interval (ms)... */
const CHECK_INITIAL_DELAY_MS = 400;
/** ...and grows by this factor per unanswered poll... */
const CHECK_BACKOFF_FACTOR = 1.5;
/** ...up to this interval, which keeps a waiting device well under the
 * server's default REST limit (120 requests per minute). */
const CHECK_MAX_DELAY_MS = 2500;

/** First WebSocket reconnect comes after this delay (ms); it doubles per
 * failed attempt up to the maximum, with jitter so that many clients cut off
 * by one server restart do not all come back in the same instant. */
const RECONNECT_INITIAL_DELAY_MS = 500;
const RECONNECT_MAX_DELAY_MS = 10_000;

/** The client sends an application `ping` this often (ms) while connected and
 * treats the socket as dead when nothing at all arrives for
 * `HEARTBEAT_TIMEOUT_MS`. Browsers answer the server's protocol pings by
 * themselves, but cannot tell that a socket went silent (a phone switching
 * networks); this notices it in well under a minute. */
const HEARTBEAT_INTERVAL_MS = 20_000;
const HEARTBEAT_TIMEOUT_MS = 45_000;

/** Messages sent while the socket is down are queued (and sent after the room
 * is re-joined) up to this many; beyond it the oldest are dropped. An offer
 * and a burst of ICE candidates fit comfortably. */
const MAX_QUEUED_MESSAGES = 256;

/** A room found full is asked again this many times, ROOM_FULL_RETRY_MS apart
 * (growing), before the session gives up: the place may be held by this very
 * device's previous connection, which the server replaces or drops within
 * seconds. */
const ROOM_FULL_RETRIES = 3;
const ROOM_FULL_RETRY_MS = 1000;

/** Server errors after which re-joining cannot help: the session ends. */
const FATAL_SERVER_ERRORS = new Set(["Invalid roomId", "Not a member of this room"]);

/**
 * @typedef {object} SignalpostOptions
 * @property {string} [baseUrl] HTTP(S) base URL of the server, e.g.
 *   `https://signal.example.com` (a path prefix is kept). Default: the page's origin.
 * @property {string} [wsUrl] WebSocket URL. Default: derived from `baseUrl`
 *   (`http` → `ws`, `https` → `wss`) plus `/ws`.
 * @property {string} [deviceId] Device id to use instead of the stored one.
 * @property {Storage | null} [storage] Where the device id is kept. Default: `localStorage`.
 * @property {typeof fetch} [fetch] `fetch` implementation. Default: the global one.
 * @property {typeof WebSocket} [WebSocket] `WebSocket` constructor. Default: the global one.
 */

/**
 * @typedef {object} CreatedCode
 * @property {string} code The join code to show to the other device (6 digits when server-generated).
 * @property {string} exp Expiry instant as the server reported it (RFC 3339, UTC).
 * @property {Date} expiresAt Expiry in this device's clock (request time + `expiresInSeconds`),
 *   which is what a countdown should use when the clocks disagree.
 * @property {number} expiresInSeconds The lifetime that was requested.
 */

/**
 * @typedef {object} WaitForPeerOptions
 * @property {string} [code] Code to wait on. Default: the one last returned by `createCode`.
 * @property {AbortSignal} [signal] Stops waiting (the promise rejects with the signal's reason).
 */

/**
 * An error answered by the server (or a network failure, `status` 0).
 * `code` is the server's machine-readable `error` string, e.g.
 * `not_found_or_expired`, `conflict`, `too_many_requests`.
 */
export class SignalpostError extends Error {
  /**
   * @param {string} code
   * @param {number} status
   * @param {string} [message]
   * @param {number | null} [retryAfter] Seconds from a `Retry-After` header (429).
   */
  constructor(code, status, message, retryAfter = null) {
    super(message || describeError(code, status, retryAfter));
    this.name = "SignalpostError";
    /** @type {string} */
    this.code = code;
    /** @type {number} */
    this.status = status;
    /** @type {number | null} */
    this.retryAfter = retryAfter;
  }
}

/**
 * @param {string} code
 * @param {number} status
 * @param {number | null} retryAfter
 */
function describeError(code, status, retryAfter) {
  switch (code) {
    case "not_found_or_expired":
      return "No such code, or it has expired.";
    case "conflict":
      return "This code has already been used by another device.";
    case "too_many_requests":
      return retryAfter != null
        ? `Too many attempts. Try again in ${retryAfter} s.`
        : "Too many attempts. Try again later.";
    case "network_error":
      return "Cannot reach the signaling server.";
    default:
      return `Server answered ${status} (${code}).`;
  }
}

/** A client of one signalpost server, acting as one device. */
export class Signalpost {
  /** @param {SignalpostOptions} [options] */
  constructor(options = {}) {
    const origin = typeof location !== "undefined" ? location.origin : undefined;
    const base = options.baseUrl ?? origin;
    if (!base) throw new TypeError("Signalpost: baseUrl is required outside a page");
    /** Base URL without a trailing slash. */
    this.baseUrl = base.replace(/\/+$/, "");
    /** WebSocket URL. */
    this.wsUrl = options.wsUrl ?? wsUrlFor(this.baseUrl);
    /** @private */
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    /** @private */
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    /** This device's stable id (sent as `client1` / `client2` / `deviceId`). */
    this.deviceId = options.deviceId ?? loadDeviceId(options.storage);
    /** @private @type {string | null} */
    this._lastCode = null;
  }

  /**
   * Creates a join code for this device (`POST /api/rooms`).
   * @param {{expiresInSeconds?: number, code?: string}} [options]
   *   `code` asks for a specific join code instead of a server-generated one.
   * @returns {Promise<CreatedCode>}
   */
  async createCode({ expiresInSeconds = 120, code } = {}) {
    const started = Date.now();
    /** @type {Record<string, unknown>} */
    const body = { client1: this.deviceId, expiresInSeconds };
    if (code) body.joinid = code;
    const { data } = await this._post("/api/rooms", body);
    this._lastCode = String(data.joinid);
    return {
      code: this._lastCode,
      exp: String(data.exp),
      expiresAt: new Date(started + expiresInSeconds * 1000),
      expiresInSeconds,
    };
  }

  /**
   * Accepts another device's join code (`POST /api/rooms/accept`) and returns
   * the room id. Retrying with the same code is safe.
   * @param {string} code
   * @returns {Promise<string>}
   * @throws {SignalpostError} `not_found_or_expired` for a wrong or expired
   *   code, `conflict` when another device accepted it first (or it was
   *   created by this same device), `too_many_requests` after many wrong codes.
   */
  async acceptCode(code) {
    const { data } = await this._post("/api/rooms/accept", {
      joinid: normalizeCode(code),
      client2: this.deviceId,
    });
    return String(data.roomid);
  }

  /**
   * Waits until the other device accepts the code, polling
   * `POST /api/rooms/check` with backoff, and returns the room id. Network
   * failures and 429 answers are waited out; a 404 (expired or unknown code)
   * rejects with `not_found_or_expired`.
   * @param {WaitForPeerOptions} [options]
   * @returns {Promise<string>}
   */
  async waitForPeer({ code, signal } = {}) {
    const joinid = code ?? this._lastCode;
    if (!joinid) throw new TypeError("waitForPeer: no code (call createCode first)");
    let delay = CHECK_INITIAL_DELAY_MS;
    for (;;) {
      signal?.throwIfAborted();
      let pause = delay;
      try {
        const { status, data } = await this._post(
          "/api/rooms/check",
          { joinid, client1: this.deviceId },
          signal,
        );
        if (status === 200 && data && data.roomid) return String(data.roomid);
      } catch (err) {
        if (!(err instanceof SignalpostError)) throw err; // aborted
        if (err.code === "too_many_requests") {
          pause = Math.max(delay, (err.retryAfter ?? 5) * 1000);
        } else if (err.status !== 0 && err.status < 500) {
          throw err;
        }
      }
      await sleep(pause, signal);
      delay = Math.min(delay * CHECK_BACKOFF_FACTOR, CHECK_MAX_DELAY_MS);
    }
  }

  /**
   * ICE servers for an `RTCPeerConnection`, from `GET /api/turn-credentials`
   * (short-lived TURN credentials). When the server has no TURN configured
   * or cannot be reached, returns `[]`: direct connections still work on the
   * same network, and no third-party STUN server is contacted behind the
   * user's back.
   * @returns {Promise<RTCIceServer[]>}
   */
  async iceServers() {
    const url = `${this.baseUrl}/api/turn-credentials?deviceId=${encodeURIComponent(this.deviceId)}`;
    try {
      const res = await this._fetch(url, { headers: { Accept: "application/json" } });
      if (res.status !== 200) return [];
      const data = await res.json();
      return Array.isArray(data?.iceServers) ? data.iceServers : [];
    } catch {
      return [];
    }
  }

  /**
   * Opens the signaling WebSocket and joins `roomId`. The returned session
   * reconnects by itself and re-joins the room after a drop.
   * @param {string} roomId
   * @returns {SignalingSession}
   */
  connect(roomId) {
    return new SignalingSession({
      url: this.wsUrl,
      roomId,
      deviceId: this.deviceId,
      WebSocket: this._WebSocket,
    });
  }

  /**
   * @private
   * @param {string} path
   * @param {object} body
   * @param {AbortSignal} [signal]
   * @returns {Promise<{status: number, data: any}>}
   */
  async _post(path, body, signal) {
    let res;
    try {
      res = await this._fetch(this.baseUrl + path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new SignalpostError("network_error", 0);
    }
    const text = await res.text().catch(() => "");
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (res.ok) return { status: res.status, data };
    const code = typeof data?.error === "string" ? data.error : `http_${res.status}`;
    const retryAfter = parseRetryAfter(res.headers.get("Retry-After"));
    throw new SignalpostError(code, res.status, undefined, retryAfter);
  }
}

/**
 * @typedef {object} SessionEvents
 * @property {{clientId: string}} open The socket is connected (again); the room is being joined.
 * @property {{roomId: string, userCount: number, isInitiator: boolean, ready: boolean}} joined
 * @property {{roomId: string, isInitiator: boolean}} ready Both devices are in the room;
 *   the initiator now creates the offer. Fires again when a peer comes back.
 * @property {{sdp: string, from: string}} offer
 * @property {{sdp: string, from: string}} answer
 * @property {{candidate: any, from: string}} candidate
 * @property {{peerId?: string, message?: string}} peerLeft The other device left the room on purpose.
 * @property {{peerId?: string, message?: string}} peerDisconnected The other device's socket closed.
 * @property {{attempt: number, delayMs: number}} reconnecting The socket dropped; retrying.
 * @property {{message: string, fatal: boolean}} error
 * @property {{reason: string}} closed The session is over; it will not reconnect.
 */

/**
 * The signaling session of one device in one room. Emits the events of
 * `SessionEvents` (listen with `on`), sends offers, answers and candidates.
 */
export class SignalingSession {
  /**
   * @param {{url: string, roomId: string, deviceId?: string, WebSocket?: typeof WebSocket}} options
   */
  constructor({ url, roomId, deviceId, WebSocket: WS = globalThis.WebSocket }) {
    /** The room this session is in. */
    this.roomId = roomId;
    /** This connection's id as the server knows it (changes on reconnect). @type {string | null} */
    this.clientId = null;
    /** Whether this device is the room's initiator (it makes the offer). */
    this.isInitiator = false;
    /** @private */ this._url = url;
    /** @private */ this._deviceId = deviceId;
    /** @private */ this._WS = WS;
    /** @private @type {WebSocket | null} */ this._ws = null;
    /** @private @type {Map<string, Set<Function>>} */ this._listeners = new Map();
    /** @private @type {string[]} */ this._queue = [];
    /** @private */ this._joined = false;
    /** @private */ this._closed = false;
    /** @private */ this._attempt = 0;
    /** @private */ this._fullRetries = 0;
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */ this._retryTimer = undefined;
    /** @private @type {ReturnType<typeof setInterval> | undefined} */ this._heartbeat = undefined;
    /** @private */ this._lastMessageAt = 0;
    this._open();
  }

  /**
   * Adds a listener; returns a function that removes it.
   * @template {keyof SessionEvents} K
   * @param {K} type
   * @param {(event: SessionEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /**
   * @template {keyof SessionEvents} K
   * @param {K} type
   * @param {(event: SessionEvents[K]) => void} listener
   */
  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /**
   * Like `on`, but the listener runs at most once.
   * @template {keyof SessionEvents} K
   * @param {K} type
   * @param {(event: SessionEvents[K]) => void} listener
   * @returns {() => void}
   */
  once(type, listener) {
    const off = this.on(type, (event) => {
      off();
      listener(event);
    });
    return off;
  }

  /** @param {string} sdp */
  sendOffer(sdp) {
    this._send({ type: "webrtc_offer", sdp });
  }

  /** @param {string} sdp */
  sendAnswer(sdp) {
    this._send({ type: "webrtc_answer", sdp });
  }

  /** @param {RTCIceCandidateInit | RTCIceCandidate} candidate */
  sendCandidate(candidate) {
    const json =
      candidate && typeof (/** @type {any} */ (candidate).toJSON) === "function"
        ? /** @type {RTCIceCandidate} */ (candidate).toJSON()
        : candidate;
    this._send({ type: "ice_candidate", candidate: json });
  }

  /** Leaves the room on purpose (the peer gets `peerLeft`) and ends the session. */
  leave() {
    if (this._closed) return;
    if (this._ws?.readyState === 1) this._ws.send(JSON.stringify({ type: "leave_room" }));
    this._finish("left");
  }

  /** Ends the session without leaving explicitly (the peer gets `peerDisconnected`). */
  close() {
    this._finish("closed");
  }

  /**
   * @private
   * @param {keyof SessionEvents} type
   * @param {any} event
   */
  _emit(type, event) {
    for (const listener of [...(this._listeners.get(type) ?? [])]) {
      try {
        listener(event);
      } catch (err) {
        // One failing listener must not stop signaling; surface it, async.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  /** @private @param {object} message */
  _send(message) {
    if (this._closed) return;
    const text = JSON.stringify(message);
    if (this._joined && this._ws?.readyState === 1) {
      this._ws.send(text);
    } else {
      this._queue.push(text);
      if (this._queue.length > MAX_QUEUED_MESSAGES) this._queue.shift();
    }
  }

  /** @private */
  _open() {
    if (this._closed) return;
    let ws;
    try {
      ws = new this._WS(this._url);
    } catch (err) {
      this._emit("error", { message: `Cannot open ${this._url}: ${err}`, fatal: true });
      this._finish("error");
      return;
    }
    this._ws = ws;
    this._joined = false;
    ws.onopen = () => {
      this._lastMessageAt = Date.now();
      this._startHeartbeat();
    };
    ws.onmessage = (ev) => {
      this._lastMessageAt = Date.now();
      if (typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg === "object") this._handle(msg);
    };
    ws.onclose = () => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._joined = false;
      this._stopHeartbeat();
      this._scheduleReconnect();
    };
    // Every error is followed by a close; reconnecting happens there.
    ws.onerror = () => {};
  }

  /** @private */
  _sendJoin() {
    this._ws?.send(
      JSON.stringify({
        type: "join_room",
        roomId: this.roomId,
        ...(this._deviceId ? { deviceId: this._deviceId } : {}),
      }),
    );
  }

  /** @private @param {any} msg */
  _handle(msg) {
    switch (msg.type) {
      case "connected":
        this.clientId = msg.clientId ?? null;
        this._emit("open", { clientId: this.clientId });
        this._sendJoin();
        break;
      case "room_joined": {
        this._attempt = 0;
        this._fullRetries = 0;
        this._joined = true;
        this.isInitiator = !!msg.isInitiator;
        this._emit("joined", {
          roomId: msg.roomId,
          userCount: msg.userCount,
          isInitiator: this.isInitiator,
          ready: !!msg.ready,
        });
        const queued = this._queue.splice(0);
        for (const text of queued) this._ws?.send(text);
        break;
      }
      case "room_ready":
        this.isInitiator = !!msg.isInitiator;
        this._emit("ready", { roomId: msg.roomId, isInitiator: this.isInitiator });
        break;
      case "webrtc_offer":
        this._emit("offer", { sdp: msg.sdp, from: msg.from });
        break;
      case "webrtc_answer":
        this._emit("answer", { sdp: msg.sdp, from: msg.from });
        break;
      case "ice_candidate":
        this._emit("candidate", { candidate: msg.candidate, from: msg.from });
        break;
      case "peer_left":
        this._emit("peerLeft", { peerId: msg.peerId, message: msg.message });
        break;
      case "peer_disconnected":
        this._emit("peerDisconnected", { peerId: msg.peerId, message: msg.message });
        break;
      case "room_closed":
        this._finish("room_closed");
        break;
      case "room_full":
        if (this._fullRetries < ROOM_FULL_RETRIES) {
          // Perhaps our own stale connection holds the place: ask again shortly.
          this._fullRetries += 1;
          const ws = this._ws;
          this._retryTimer = setTimeout(() => {
            if (!this._closed && this._ws === ws && ws?.readyState === 1) this._sendJoin();
          }, ROOM_FULL_RETRY_MS * this._fullRetries);
          break;
        }
        this._emit("error", { message: msg.error || "Room is full", fatal: true });
        this._finish("room_full");
        break;
      case "replaced":
        // This device opened a newer session that took our place: stop, quietly.
        this._finish("replaced");
        break;
      case "server_shutdown":
        // The close frame follows; reconnecting with backoff waits for the restart.
        break;
      case "error": {
        const message = String(msg.error ?? "unknown error");
        const fatal = FATAL_SERVER_ERRORS.has(message);
        this._emit("error", { message, fatal });
        if (fatal) this._finish("error");
        break;
      }
      default:
        // pong, left_room, and message types of later protocol versions.
        break;
    }
  }

  /** @private */
  _scheduleReconnect() {
    if (this._closed) return;
    const base = Math.min(RECONNECT_INITIAL_DELAY_MS * 2 ** this._attempt, RECONNECT_MAX_DELAY_MS);
    const delayMs = Math.round(base / 2 + Math.random() * (base / 2));
    this._attempt += 1;
    this._emit("reconnecting", { attempt: this._attempt, delayMs });
    this._retryTimer = setTimeout(() => this._open(), delayMs);
  }

  /** @private */
  _startHeartbeat() {
    this._stopHeartbeat();
    this._heartbeat = setInterval(() => {
      const ws = this._ws;
      if (!ws) return;
      if (Date.now() - this._lastMessageAt > HEARTBEAT_TIMEOUT_MS) {
        ws.close(4000, "heartbeat timeout");
        // onclose may take a while on a dead network; do not wait for it.
        ws.onclose?.(/** @type {any} */ (new Event("close")));
        return;
      }
      if (ws.readyState === 1) ws.send(JSON.stringify({ type: "ping" }));
    }, HEARTBEAT_INTERVAL_MS);
  }

  /** @private */
  _stopHeartbeat() {
    clearInterval(this._heartbeat);
    this._heartbeat = undefined;
  }

  /** @private @param {string} reason */
  _finish(reason) {
    if (this._closed) return;
    this._closed = true;
    this._joined = false;
    this._queue.length = 0;
    clearTimeout(this._retryTimer);
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= 1) ws.close(1000, reason);
    this._emit("closed", { reason });
  }
}

/**
 * The WebSocket URL for an HTTP(S) base URL: `https://h/p` → `wss://h/p/ws`.
 * @param {string} baseUrl
 * @returns {string}
 */
export function wsUrlFor(baseUrl) {
  const url = new URL(baseUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = url.pathname.replace(/\/+$/, "") + "/ws";
  url.search = "";
  url.hash = "";
  return url.toString();
}

/**
 * Strips what people type around a code: spaces, dashes, dots.
 * @param {string} code
 * @returns {string}
 */
export function normalizeCode(code) {
  return String(code).replace(/[\s.\-]/g, "");
}

/**
 * The stored device id, created (a random UUID) on first use. Falls back to
 * an id for this page's lifetime when storage is unavailable (some private
 * browsing modes throw on access).
 * @param {Storage | null} [storage]
 * @returns {string}
 */
export function loadDeviceId(storage) {
  let store = storage;
  try {
    if (store === undefined) store = globalThis.localStorage ?? null;
    const existing = store?.getItem(DEVICE_ID_KEY);
    if (existing) return existing;
    const id = randomId();
    store?.setItem(DEVICE_ID_KEY, id);
    return id;
  } catch {
    return randomId();
  }
}

function randomId() {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  // crypto.randomUUID needs a secure context (https or localhost); a phone
  // on http://192.168.x.y has only getRandomValues.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** @param {string | null} value @returns {number | null} */
function parseRetryAfter(value) {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, Math.ceil(secs));
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/**
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
