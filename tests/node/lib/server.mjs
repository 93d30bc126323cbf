// Starts the real signalpost binary for a test file and tells where its listeners are.
//
// The binary is $SIGNALPOST_BIN (the Rust harness sets it; by hand:
// `cargo build && SIGNALPOST_BIN=target/debug/signalpost node --test tests/node/`).
// Every listener binds 127.0.0.1 on a free port (PORT=0, <DIALECT>_PORT=0) and logs
// "<name> listening on 127.0.0.1:<port>" on stderr; this module waits for those lines.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** Limits high enough that tests exercise behaviour, not abuse limits (all clients are 127.0.0.1). */
export const RELAXED_LIMITS = {
  REST_RATE_PER_MIN: "1000000",
  REST_BURST: "1000000",
  GUESS_LIMIT: "1000000",
  WS_UPGRADE_RATE_PER_MIN: "1000000",
  WS_MAX_CONNECTIONS_PER_CLIENT: "1000000",
  WS_MSG_RATE_PER_SEC: "1000000",
  WS_MSG_BURST: "1000000",
};

/** How long a start may take before the test fails (a hang bound, not a speed check). */
const START_DEADLINE_MS = 30_000;

/**
 * Starts a server. `dialects` lists the dialect listeners to open ("privydrop", "dropsilk",
 * "oodaa", "octatecode"); `env` adds or overrides environment variables.
 * Resolves to { main, urls: {<dialect>: "http://127.0.0.1:<port>"}, log(), stop(), kill() }.
 */
export async function startServer({ dialects = [], env = {} } = {}) {
  const bin = process.env.SIGNALPOST_BIN;
  if (!bin) throw new Error("SIGNALPOST_BIN is not set (path of the signalpost binary)");
  const dir = mkdtempSync(join(tmpdir(), "signalpost-node-"));
  const fullEnv = {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: "0",
    SQLITE_DB_PATH: join(dir, "test.db"),
    RUST_LOG: process.env.RUST_LOG || "info",
    ...RELAXED_LIMITS,
    ...Object.fromEntries(dialects.map((d) => [`${d.toUpperCase()}_PORT`, "0"])),
    ...env,
  };
  const child = spawn(bin, [], { env: fullEnv, stdio: ["ignore", "ignore", "pipe"] });
  const lines = [];
  const urls = {};
  const wanted = new Set(["signalpost", ...dialects]);
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leave a half-started server behind: it would keep the test run alive.
      child.kill("SIGKILL");
      reject(new Error(`server did not start in time:\n${lines.join("\n")}`));
    }, START_DEADLINE_MS);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) at start:\n${lines.join("\n")}`));
    });
    createInterface({ input: child.stderr }).on("line", (line) => {
      lines.push(line);
      if (lines.length > 5000) lines.shift();
      const m = line.match(/\b(\w+) listening on (\S+)/);
      if (m && wanted.has(m[1]) && !urls[m[1]]) {
        urls[m[1]] = `http://${m[2]}`;
        if ([...wanted].every((w) => urls[w])) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
  });
  await ready;
  child.removeAllListeners("exit");
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const server = {
    main: urls.signalpost,
    urls,
    dir,
    /** The server's log so far (stderr lines). */
    log: () => lines.join("\n"),
    /** SIGTERM, then wait for the exit (bounded by the server's own grace). */
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
    /** SIGKILL, then wait. */
    async kill() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  return server;
}

/** `http://host:port` → `ws://host:port` (plus an optional path). */
export function wsUrl(httpUrl, path = "/") {
  return httpUrl.replace(/^http/, "ws") + path;
}
