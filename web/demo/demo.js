// The signalpost demo: pair two devices by code, open an RTCDataChannel
// between them, and use it for chat and file transfer.
//
// Data channel messages: strings are JSON control messages
// ({t: "chat" | "file-start" | "file-end" | "file-ack", ...}); binary messages
// are chunks of the file announced by the last "file-start". The channel is
// ordered and reliable, so chunks arrive in order and between start and end.

import { Signalpost, SignalpostError } from "/sdk/signalpost.js";

/** Lifetime of a created code. Long enough to read it out and type it. */
const CODE_TTL_SECS = 120;
/** File chunk size: 16 KiB is the largest message every browser pair accepts. */
const CHUNK_BYTES = 16 * 1024;
/** Stop queueing chunks above this much unsent data, resume below the low mark:
 * keeps memory flat and the progress bar honest for large files. */
const BUFFER_HIGH_BYTES = 1024 * 1024;
const BUFFER_LOW_BYTES = 256 * 1024;
/** Files up to this size are hashed (SHA-256) to prove they arrived intact;
 * hashing needs the whole file in memory. */
const MAX_HASHED_BYTES = 512 * 1024 * 1024;

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  createBtn: /** @type {HTMLButtonElement} */ ($("create-btn")),
  cancelBtn: /** @type {HTMLButtonElement} */ ($("cancel-btn")),
  restartBtn: /** @type {HTMLButtonElement} */ ($("restart-btn")),
  pairOptions: $("pair-options"),
  paired: $("paired"),
  pairedText: $("paired-text"),
  codeBox: $("code-box"),
  code: $("code"),
  countdown: $("countdown"),
  joinForm: /** @type {HTMLFormElement} */ ($("join-form")),
  codeInput: /** @type {HTMLInputElement} */ ($("code-input")),
  joinBtn: /** @type {HTMLButtonElement} */ ($("join-btn")),
  error: $("error"),
  status: $("status"),
  route: $("route"),
  notice: $("notice"),
  messages: $("messages"),
  chatForm: /** @type {HTMLFormElement} */ ($("chat-form")),
  chatInput: /** @type {HTMLInputElement} */ ($("chat-input")),
  chatSend: /** @type {HTMLButtonElement} */ ($("chat-send")),
  fileInput: /** @type {HTMLInputElement} */ ($("file-input")),
  transfer: $("transfer"),
  transferName: $("transfer-name"),
  fileProgress: /** @type {HTMLProgressElement} */ ($("file-progress")),
  fileSpeed: $("file-speed"),
  files: $("files"),
};

// `?server=https://signal.example.com` points the demo at another server.
const server = new URLSearchParams(location.search).get("server") || undefined;
const sp = new Signalpost({ baseUrl: server });

/** @type {AbortController | null} */ let waiting = null;
/** @type {ReturnType<typeof setInterval> | undefined} */ let countdownTimer;
/** @type {import("/sdk/signalpost.js").SignalingSession | null} */ let session = null;
/** @type {RTCIceServer[]} */ let iceServers = [];
/** @type {RTCPeerConnection | null} */ let pc = null;
/** @type {RTCDataChannel | null} */ let channel = null;
/** @type {RTCIceCandidateInit[]} */ let pendingCandidates = [];
/** The server said the peer's socket went away while our data channel was
 * still open: if the channel closes too, the peer is gone; if not, it only
 * lost the signaling server and will re-join by itself. */
let peerSignalingGone = false;

// ---------------------------------------------------------------- pairing

ui.createBtn.addEventListener("click", async () => {
  clearError();
  setPairingEnabled(false);
  setState("waiting");
  setStatus("Creating a code…");
  const cancel = new AbortController();
  waiting = cancel;
  try {
    const created = await sp.createCode({ expiresInSeconds: CODE_TTL_SECS });
    ui.code.textContent = created.code;
    ui.code.dataset.code = created.code;
    ui.codeBox.hidden = false;
    startCountdown(created.expiresAt);
    setStep("pairing", "active");
    setStatus("Waiting for the other device to enter the code…");
    const roomId = await sp.waitForPeer({ signal: cancel.signal });
    waiting = null;
    stopCountdown();
    ui.codeBox.hidden = true;
    await startSession(roomId);
  } catch (err) {
    if (cancel.signal.aborted) return; // cancelled by the user
    waiting = null;
    stopCountdown();
    ui.codeBox.hidden = true;
    setPairingEnabled(true);
    setStep("pairing", "failed");
    if (err instanceof SignalpostError && err.code === "not_found_or_expired") {
      showError("The code expired before the other device used it. Create a new one.", err.code);
    } else {
      showError(explain(err), errorCode(err));
    }
    setState("error");
    setStatus("Not connected.");
  }
});

ui.cancelBtn.addEventListener("click", () => {
  waiting?.abort();
  waiting = null;
  stopCountdown();
  ui.codeBox.hidden = true;
  setPairingEnabled(true);
  setStep("pairing", "");
  setState("idle");
  setStatus("Not connected.");
});

ui.restartBtn.addEventListener("click", () => {
  session?.close();
  session = null;
  resetPeer();
  setChatEnabled(false);
  for (const step of /** @type {const} */ (["pairing", "signaling", "ice", "connected"])) setStep(step, "");
  ui.paired.hidden = true;
  ui.pairOptions.hidden = false;
  ui.route.hidden = true;
  ui.transfer.hidden = true;
  hideNotice();
  clearError();
  setPairingEnabled(true);
  setState("idle");
  setStatus("Not connected.");
});

ui.joinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  const code = ui.codeInput.value.replace(/[\s.\-]/g, "");
  if (!/^\d{6}$/.test(code)) {
    showError("Enter the 6-digit code shown on the other device.", "invalid_code");
    ui.codeInput.setAttribute("aria-invalid", "true");
    ui.codeInput.focus();
    return;
  }
  ui.codeInput.removeAttribute("aria-invalid");
  setPairingEnabled(false);
  setState("pairing");
  setStep("pairing", "active");
  setStatus("Checking the code…");
  try {
    const roomId = await sp.acceptCode(code);
    await startSession(roomId);
  } catch (err) {
    setPairingEnabled(true);
    setStep("pairing", "failed");
    setState("error");
    setStatus("Not connected.");
    showError(explain(err), errorCode(err));
    ui.codeInput.setAttribute("aria-invalid", "true");
    ui.codeInput.focus();
    ui.codeInput.select();
  }
});

/** @param {unknown} err */
function explain(err) {
  if (!(err instanceof SignalpostError)) return `Something went wrong: ${err}`;
  switch (err.code) {
    case "not_found_or_expired":
      return "Wrong or expired code. Check the digits, or create a new code on the other device.";
    case "conflict":
      return "This code is already in use: another device accepted it, or it was created in this same browser.";
    case "too_many_requests":
      return err.retryAfter != null
        ? `Too many attempts. Wait ${err.retryAfter} s and try again.`
        : "Too many attempts. Wait a little and try again.";
    case "invalid_joinid":
      return "That is not a valid code.";
    case "network_error":
      return "Cannot reach the signaling server. Check your connection.";
    default:
      return err.message;
  }
}

/** @param {unknown} err */
function errorCode(err) {
  return err instanceof SignalpostError ? err.code : "error";
}

/** @param {Date} expiresAt */
function startCountdown(expiresAt) {
  stopCountdown();
  const tick = () => {
    const left = Math.max(0, Math.ceil((expiresAt.getTime() - Date.now()) / 1000));
    ui.countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    ui.countdown.dataset.seconds = String(left);
    if (left === 0) {
      ui.countdown.textContent = "expired";
      stopCountdown();
    }
  };
  tick();
  countdownTimer = setInterval(tick, 250);
}

function stopCountdown() {
  clearInterval(countdownTimer);
  countdownTimer = undefined;
}

// -------------------------------------------------------------- signaling

/** @param {string} roomId */
async function startSession(roomId) {
  ui.pairOptions.hidden = true;
  ui.paired.hidden = false;
  peerSignalingGone = false;
  setStep("pairing", "done");
  setStep("signaling", "active");
  setState("signaling");
  setStatus("Paired. Connecting to the signaling server…");
  iceServers = await sp.iceServers();
  session = sp.connect(roomId);
  // A trace of the signaling session in the console, for debugging.
  for (const type of /** @type {const} */ (["joined", "ready", "peerLeft", "peerDisconnected", "reconnecting", "closed"])) {
    session.on(type, (event) => console.info(`signalpost ${type}`, JSON.stringify(event)));
  }

  session.on("joined", ({ ready }) => {
    if (!ready && !isConnected()) setStatus("Waiting for the other device to join the room…");
  });
  session.on("ready", ({ isInitiator }) => {
    hideNotice();
    peerSignalingGone = false;
    // A re-join after our own socket dropped: the peer connection survives it.
    if (isConnected()) return;
    setStatus(isInitiator ? "Both devices are here. Sending the offer…" : "Both devices are here. Waiting for the offer…");
    startPeer(isInitiator).catch((err) => failConnection(`Could not start WebRTC: ${err}`));
  });
  session.on("offer", ({ sdp }) => {
    answerOffer(sdp).catch((err) => failConnection(`Could not answer the offer: ${err}`));
  });
  session.on("answer", ({ sdp }) => {
    if (!pc || pc.signalingState !== "have-local-offer") return;
    pc.setRemoteDescription({ type: "answer", sdp })
      .then(flushCandidates)
      .catch((err) => failConnection(`Could not apply the answer: ${err}`));
  });
  session.on("candidate", ({ candidate }) => {
    if (!candidate) return;
    if (pc?.remoteDescription) {
      pc.addIceCandidate(candidate).catch((err) => console.warn("addIceCandidate", err));
    } else {
      pendingCandidates.push(candidate);
    }
  });
  session.on("peerDisconnected", () => {
    if (isConnected()) {
      // A closed page does not always close its data channel at once; ask the
      // peer directly whether it is still there.
      peerSignalingGone = true;
      probePeer().then((alive) => {
        if (!alive && peerSignalingGone) peerGone(PEER_DISCONNECTED);
      });
      return;
    }
    peerGone(PEER_DISCONNECTED);
  });
  session.on("peerLeft", () => peerGone("Peer left the room."));
  session.on("reconnecting", () => {
    if (!isConnected()) setStatus("Lost the signaling server, reconnecting…");
  });
  session.on("error", ({ message, fatal }) => {
    if (fatal) showError(`Signaling error: ${message}`, "signaling");
    else console.warn("signaling:", message);
  });
  session.on("closed", ({ reason }) => {
    if (reason === "room_closed") peerGone("The room was closed by the server.");
    else if (reason !== "closed") setStatus(`Signaling ended (${reason}).`);
  });
}

const PEER_DISCONNECTED = "Peer disconnected: the other device closed the page or lost its connection.";

/** How long a peer has to answer a probe over the data channel. */
const PROBE_TIMEOUT_MS = 2000;
/** @type {((alive: boolean) => void) | null} */ let probeAnswered = null;

/** Whether the peer answers a ping over the data channel in time. */
function probePeer() {
  return new Promise((resolve) => {
    if (!isConnected()) return resolve(false);
    const timer = setTimeout(() => {
      probeAnswered = null;
      resolve(false);
    }, PROBE_TIMEOUT_MS);
    probeAnswered = (alive) => {
      clearTimeout(timer);
      probeAnswered = null;
      resolve(alive);
    };
    channel?.send(JSON.stringify({ t: "ping" }));
  });
}

/** @param {boolean} isInitiator */
async function startPeer(isInitiator) {
  resetPeer();
  const peer = newPeerConnection();
  if (isInitiator) {
    setupChannel(peer.createDataChannel("signalpost-demo", { ordered: true }));
    const offer = await peer.createOffer();
    await peer.setLocalDescription(offer);
    session?.sendOffer(/** @type {RTCSessionDescription} */ (peer.localDescription).sdp);
  }
}

/** @param {string} sdp */
async function answerOffer(sdp) {
  // An offer to a connection that already has one is a new peer (the other
  // device came back): start over with a fresh connection.
  if (!pc || pc.remoteDescription || pc.signalingState !== "stable") {
    resetPeer();
    newPeerConnection();
  }
  const peer = /** @type {RTCPeerConnection} */ (pc);
  setStatus("Offer received. Sending the answer…");
  await peer.setRemoteDescription({ type: "offer", sdp });
  await flushCandidates();
  const answer = await peer.createAnswer();
  await peer.setLocalDescription(answer);
  session?.sendAnswer(/** @type {RTCSessionDescription} */ (peer.localDescription).sdp);
}

function newPeerConnection() {
  const peer = new RTCPeerConnection({ iceServers });
  pc = peer;
  pendingCandidates = [];
  peer.onicecandidate = (e) => {
    if (e.candidate && pc === peer) session?.sendCandidate(e.candidate);
  };
  peer.oniceconnectionstatechange = () => {
    if (pc !== peer) return;
    const s = peer.iceConnectionState;
    if (s === "checking") {
      setStep("signaling", "done");
      setStep("ice", "active");
      setState("ice");
      setStatus("Finding a network path between the devices (ICE)…");
    } else if (s === "connected" || s === "completed") {
      setStep("signaling", "done");
      setStep("ice", "done");
    } else if (s === "failed") {
      setStep("ice", "failed");
      failConnection("No network path between the devices (ICE failed). A TURN relay may be needed.");
    }
  };
  peer.onconnectionstatechange = () => {
    if (pc !== peer) return;
    if (peer.connectionState === "disconnected" && isConnected()) {
      setStatus("Connection interrupted, waiting for it to recover…");
    }
  };
  peer.ondatachannel = (e) => setupChannel(e.channel);
  return peer;
}

function resetPeer() {
  if (channel) {
    channel.onclose = null;
    channel.close();
  }
  channel = null;
  pc?.close();
  pc = null;
  pendingCandidates = [];
}

async function flushCandidates() {
  const peer = pc;
  const queued = pendingCandidates.splice(0);
  for (const c of queued) {
    await peer?.addIceCandidate(c).catch((err) => console.warn("addIceCandidate", err));
  }
}

function isConnected() {
  return channel?.readyState === "open";
}

/** @param {string} message */
function failConnection(message) {
  setState("error");
  showError(message, "webrtc");
  setStatus("Not connected.");
}

/** @param {string} message */
function peerGone(message) {
  // This device stays in the room: when the other one comes back (or a new
  // one joins with the same room id), `ready` fires and we connect again.
  setChatEnabled(false);
  resetPeer();
  setStep("connected", "failed");
  setStep("ice", "");
  setState("peer-disconnected");
  setStatus("Waiting for the other device to come back, or pair again.");
  ui.pairedText.textContent = "The other device is gone.";
  showNotice(message);
  ui.route.hidden = true;
}

// ------------------------------------------------------------ data channel

/** @param {RTCDataChannel} ch */
function setupChannel(ch) {
  channel = ch;
  ch.binaryType = "arraybuffer";
  ch.bufferedAmountLowThreshold = BUFFER_LOW_BYTES;
  ch.onopen = async () => {
    if (channel !== ch) return;
    setStep("signaling", "done");
    setStep("ice", "done");
    setStep("connected", "done");
    setState("connected");
    hideNotice();
    clearError();
    setChatEnabled(true);
    ui.pairedText.textContent = "Paired with the other device.";
    setStatus("Connected.");
    const route = await describeRoute();
    if (route && channel === ch) {
      ui.route.textContent = `Route: ${route.detail}`;
      ui.route.dataset.route = route.kind;
      ui.route.hidden = false;
      setStatus(route.kind === "relay" ? "Connected through a TURN relay." : "Connected directly, peer to peer.");
    }
  };
  ch.onclose = () => {
    if (channel !== ch) return;
    probeAnswered?.(false);
    peerGone(peerSignalingGone ? PEER_DISCONNECTED : "Peer disconnected: the direct connection closed.");
  };
  ch.onmessage = (e) => {
    if (typeof e.data === "string") {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      onControlMessage(msg);
    } else {
      onChunk(/** @type {ArrayBuffer} */ (e.data));
    }
  };
}

/**
 * Which candidates the connection settled on, from `getStats`: `relay` when
 * either side's selected candidate is a TURN relay, else `direct`.
 * @returns {Promise<{kind: "direct" | "relay", detail: string} | null>}
 */
async function describeRoute() {
  for (let attempt = 0; attempt < 10 && pc; attempt++) {
    const stats = await pc.getStats();
    /** @type {any} */ let pair = null;
    stats.forEach((r) => {
      if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
    });
    if (!pair) {
      stats.forEach((r) => {
        if (r.type === "candidate-pair" && r.state === "succeeded" && (r.nominated || r.selected)) pair = r;
      });
    }
    if (pair) {
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      const relay = local?.candidateType === "relay" || remote?.candidateType === "relay";
      return {
        kind: relay ? "relay" : "direct",
        detail: `${local?.candidateType ?? "?"} ↔ ${remote?.candidateType ?? "?"}, ${local?.protocol ?? "?"}`,
      };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return null;
}

// -------------------------------------------------------------------- chat

ui.chatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text || !isConnected()) return;
  channel?.send(JSON.stringify({ t: "chat", text }));
  addMessage(text, "me");
  ui.chatInput.value = "";
  ui.chatInput.focus();
});

/**
 * @param {string} text
 * @param {"me" | "peer"} from
 */
function addMessage(text, from) {
  const li = document.createElement("li");
  li.className = `message ${from}`;
  li.dataset.testid = from === "me" ? "message-sent" : "message-received";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = from === "me" ? "You" : "Peer";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  ui.messages.append(li);
  li.scrollIntoView({ block: "nearest" });
}

// ------------------------------------------------------------------- files

/** @type {{id: string, name: string, size: number, mime: string, received: number, chunks: ArrayBuffer[], started: number} | null} */
let incoming = null;
let sending = false;

ui.fileInput.addEventListener("change", async () => {
  const file = ui.fileInput.files?.[0];
  if (!file || !channel || !isConnected() || sending) return;
  sending = true;
  ui.fileInput.disabled = true;
  try {
    await sendFile(channel, file);
  } catch (err) {
    showError(`Sending ${file.name} failed: ${err}`, "file");
  } finally {
    sending = false;
    ui.fileInput.value = "";
    ui.fileInput.disabled = !isConnected();
  }
});

/**
 * @param {RTCDataChannel} ch
 * @param {File} file
 */
async function sendFile(ch, file) {
  const id = crypto.getRandomValues(new Uint32Array(2)).join("-");
  const item = addFileItem(file.name, file.size, "sent", id);
  const sha256 = file.size <= MAX_HASHED_BYTES ? await hashHex(await file.arrayBuffer()) : null;
  if (sha256) item.dataset.sha256 = sha256;
  ch.send(JSON.stringify({ t: "file-start", id, name: file.name, size: file.size, mime: file.type }));
  const started = performance.now();
  showTransfer(`Sending ${file.name}`);
  let offset = 0;
  while (offset < file.size) {
    // Read a block at a time, send it in chunks, pause while the channel's
    // buffer is full.
    const block = await file.slice(offset, offset + BUFFER_HIGH_BYTES).arrayBuffer();
    for (let at = 0; at < block.byteLength; at += CHUNK_BYTES) {
      if (ch.readyState !== "open") throw new Error("the connection closed");
      if (ch.bufferedAmount > BUFFER_HIGH_BYTES) await bufferLow(ch);
      ch.send(block.slice(at, at + CHUNK_BYTES));
      offset += Math.min(CHUNK_BYTES, block.byteLength - at);
      updateTransfer(offset - ch.bufferedAmount, file.size, started);
    }
  }
  ch.send(JSON.stringify({ t: "file-end", id, sha256 }));
  while (ch.bufferedAmount > 0 && ch.readyState === "open") {
    updateTransfer(file.size - ch.bufferedAmount, file.size, started);
    await new Promise((r) => setTimeout(r, 50));
  }
  updateTransfer(file.size, file.size, started);
  ui.transferName.textContent = `Sent ${file.name}`;
  // The receiver's confirmation may already have arrived.
  if (!item.dataset.status) setFileStatus(item, "sent", "Sent, waiting for confirmation…");
}

/** @param {RTCDataChannel} ch */
function bufferLow(ch) {
  return new Promise((resolve) => {
    const done = () => {
      ch.removeEventListener("bufferedamountlow", done);
      ch.removeEventListener("close", done);
      resolve(undefined);
    };
    ch.addEventListener("bufferedamountlow", done);
    ch.addEventListener("close", done);
  });
}

/** @param {any} msg */
function onControlMessage(msg) {
  switch (msg?.t) {
    case "chat":
      if (typeof msg.text === "string") addMessage(msg.text, "peer");
      break;
    case "ping":
      channel?.send(JSON.stringify({ t: "pong" }));
      break;
    case "pong":
      probeAnswered?.(true);
      break;
    case "file-start":
      incoming = {
        id: String(msg.id),
        name: String(msg.name || "file"),
        size: Number(msg.size) || 0,
        mime: String(msg.mime || "application/octet-stream"),
        received: 0,
        chunks: [],
        started: performance.now(),
      };
      showTransfer(`Receiving ${incoming.name}`);
      updateTransfer(0, incoming.size, incoming.started);
      break;
    case "file-end":
      finishIncoming(msg.sha256 ?? null).catch((err) => showError(`Receiving a file failed: ${err}`, "file"));
      break;
    case "file-ack": {
      const item = ui.files.querySelector(`[data-id="${CSS.escape(String(msg.id))}"]`);
      if (item instanceof HTMLElement) {
        setFileStatus(item, msg.ok ? "delivered" : "corrupted",
          msg.ok ? "Delivered, SHA-256 verified by the receiver." : "The receiver got different bytes!");
      }
      break;
    }
    default:
      break;
  }
}

/** @param {ArrayBuffer} chunk */
function onChunk(chunk) {
  if (!incoming) return;
  incoming.chunks.push(chunk);
  incoming.received += chunk.byteLength;
  updateTransfer(incoming.received, incoming.size, incoming.started);
}

/** @param {string | null} expected SHA-256 the sender computed. */
async function finishIncoming(expected) {
  const file = incoming;
  incoming = null;
  if (!file) return;
  ui.transferName.textContent = `Received ${file.name}`;
  const blob = new Blob(file.chunks, { type: file.mime });
  const item = addFileItem(file.name, blob.size, "received", file.id);
  const sha256 = blob.size <= MAX_HASHED_BYTES ? await hashHex(await blob.arrayBuffer()) : null;
  if (sha256) item.dataset.sha256 = sha256;
  const ok = blob.size === file.size && (!expected || !sha256 || expected === sha256);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = file.name;
  link.textContent = "Save";
  link.setAttribute("aria-label", `Save ${file.name}`);
  item.append(link);
  setFileStatus(item, ok ? "verified" : "corrupted",
    ok ? (sha256 && expected ? "Received, SHA-256 matches." : "Received.") : "Received, but the bytes differ from what was sent!");
  if (isConnected()) channel?.send(JSON.stringify({ t: "file-ack", id: file.id, ok, sha256 }));
}

/**
 * @param {string} name
 * @param {number} size
 * @param {"sent" | "received"} direction
 * @param {string} id
 */
function addFileItem(name, size, direction, id) {
  const li = document.createElement("li");
  li.className = `file ${direction}`;
  li.dataset.testid = direction === "sent" ? "file-sent" : "file-received";
  li.dataset.id = id;
  li.dataset.name = name;
  li.dataset.size = String(size);
  const label = document.createElement("span");
  label.className = "file-name";
  label.textContent = `${direction === "sent" ? "↑" : "↓"} ${name} (${formatBytes(size)})`;
  const status = document.createElement("span");
  status.className = "file-status";
  li.append(label, status);
  ui.files.append(li);
  return li;
}

/**
 * @param {HTMLElement} item
 * @param {string} state
 * @param {string} text
 */
function setFileStatus(item, state, text) {
  item.dataset.status = state;
  const status = item.querySelector(".file-status");
  if (status) status.textContent = text;
}

/** @param {string} title */
function showTransfer(title) {
  ui.transfer.hidden = false;
  ui.transferName.textContent = title;
}

/**
 * @param {number} done
 * @param {number} total
 * @param {number} started `performance.now()` at the start
 */
function updateTransfer(done, total, started) {
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  ui.fileProgress.value = fraction;
  const seconds = (performance.now() - started) / 1000;
  const speed = seconds > 0 ? done / seconds : 0;
  ui.fileSpeed.textContent = `${Math.round(fraction * 100)}% · ${formatBytes(done)} of ${formatBytes(total)} · ${formatBytes(speed)}/s`;
}

/** @param {ArrayBuffer} data */
async function hashHex(data) {
  // crypto.subtle exists only in secure contexts (https, localhost).
  if (!crypto.subtle) return null;
  const digest = await crypto.subtle.digest("SHA-256", data);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** @param {number} n */
function formatBytes(n) {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

// --------------------------------------------------------------------- view

/** @param {string} state */
function setState(state) {
  document.body.dataset.state = state;
}

/** @param {string} text */
function setStatus(text) {
  ui.status.textContent = text;
}

/**
 * @param {"pairing" | "signaling" | "ice" | "connected"} step
 * @param {"" | "active" | "done" | "failed"} state
 */
function setStep(step, state) {
  const li = $(`step-${step}`);
  if (state) li.dataset.status = state;
  else delete li.dataset.status;
  if (state === "active") li.setAttribute("aria-current", "step");
  else li.removeAttribute("aria-current");
}

/**
 * @param {string} text
 * @param {string} code machine-readable reason, for tests and styling
 */
function showError(text, code) {
  ui.error.textContent = text;
  ui.error.dataset.code = code;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
  delete ui.error.dataset.code;
}

/** @param {string} text */
function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
}

/** @param {boolean} enabled */
function setPairingEnabled(enabled) {
  ui.createBtn.disabled = !enabled;
  ui.codeInput.disabled = !enabled;
  ui.joinBtn.disabled = !enabled;
}

/** @param {boolean} enabled */
function setChatEnabled(enabled) {
  ui.chatInput.disabled = !enabled;
  ui.chatSend.disabled = !enabled;
  ui.fileInput.disabled = !enabled || sending;
}

// A link like /demo/#123456 fills the code in.
const fromHash = location.hash.replace(/^#(code=)?/, "");
if (/^\d{6}$/.test(fromHash)) ui.codeInput.value = fromHash;

// Expose state for debugging in the console.
Object.assign(window, { signalpostDemo: { sp, get session() { return session; }, get pc() { return pc; } } });
