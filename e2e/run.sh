#!/usr/bin/env bash
# End-to-end test of the demo page in headless Chromium against a freshly
# built release server: builds it, starts it on a free loopback port with a
# throwaway database, runs `node --test e2e/`, and stops it.
#
# Without /usr/bin/chromium the test is skipped (exit 0) unless
# SIGNALPOST_REQUIRE_ALL=1, which makes a missing browser a failure.
# Screenshots and the pages' console go to e2e/artifacts/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ]; then
  if [ "${SIGNALPOST_REQUIRE_ALL:-0}" = 1 ]; then
    echo "FAILED: chromium not installed at $CHROMIUM (SIGNALPOST_REQUIRE_ALL=1; run e2e/install.sh)" >&2
    exit 1
  fi
  echo "SKIPPED: chromium not installed"
  exit 0
fi

if [ ! -d e2e/node_modules/playwright-core ]; then
  echo "e2e: installing npm packages (npm ci)"
  (cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

cargo build --release --quiet

WORK=$(mktemp -d)
PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
BASE="http://127.0.0.1:$PORT"
SERVER_PID=

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    # Graceful shutdown is bounded by the server; do not wait forever anyway.
    for _ in $(seq 1 150); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap stop_server EXIT

HOST=127.0.0.1 PORT=$PORT SQLITE_DB_PATH="$WORK/e2e.db" RUST_LOG="${RUST_LOG:-info}" \
  "$ROOT/target/release/signalpost" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "$BASE/" 2>/dev/null; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "e2e: the server exited at start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if ! curl -fsS -o /dev/null "$BASE/demo/"; then
  echo "e2e: $BASE/demo/ is not served" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi

mkdir -p e2e/artifacts
status=0
SIGNALPOST_URL=$BASE node --test e2e/ || status=$?
cp "$WORK/server.log" e2e/artifacts/server.log
if [ "$status" -ne 0 ]; then
  echo "e2e: FAILED; server log, console log and screenshots are in e2e/artifacts/" >&2
fi
exit "$status"
