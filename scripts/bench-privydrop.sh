#!/usr/bin/env bash
# Relay throughput through signalpost's PrivyDrop dialect beside PrivyDrop's original server, on
# this machine, all on loopback: starts a private redis-server, signalpost (release build) with
# PRIVYDROP_PORT on SQLite and on that Redis, and the original backend if its checkout is at
# $PRIVYDROP_ORIG_DIR, then runs scripts/bench-privydrop.mjs against them and prints its table.
#
#   scripts/bench-privydrop.sh [bench-privydrop.mjs options...]
#   e.g. scripts/bench-privydrop.sh --rooms 20 --size 200 --duration 10 --rounds 3 --wait-idle 25
#        scripts/bench-privydrop.sh --rooms 1 --window 1 --size 200 --duration 10 --rounds 3
#
# Environment:
#   PRIVYDROP_ORIG_DIR      a checkout of david-bai00/PrivyDrop (or its backend/), whose backend has
#                           node_modules installed (npm install); built with its tsc if dist/ is
#                           missing. Unset: signalpost alone.
#   PRIVYDROP_ORIG_COMMIT   the commit to print for it, where the checkout is no git work tree
#   BENCH_SIGNALPOST_REDIS  1 (default): also signalpost in cluster mode on the private Redis, the
#                           store the original uses; 0: SQLite only
#   BENCH_WAIT_LOAD         wait (up to 20 min, checking every 30 s) until the 1-minute load
#                           average is below this before measuring, e.g. 1.5; unset: no wait
#   SIGNALPOST_BIN          the binary (default: target/release/signalpost, built first)
#   BENCH_SERVER_ENV        extra VAR=value words for signalpost, after the generous limits
#
# Every process it starts is stopped on exit (by its id), and its temporary directory removed.
# The original binds all interfaces by default; a preload given through NODE_OPTIONS makes its
# listen() bind 127.0.0.1 instead. It runs with DISABLE_JOIN_RATE_LIMIT=1: every client here is
# 127.0.0.1, and its join limit (2 per 5 s per address) would refuse the rooms' joins.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# Waits for `$2` (a command) to succeed, up to $1 tenths of a second; else shows log $3 and fails.
wait_for() {
    local tries=$1 check=$2 log=$3
    for _ in $(seq 1 "$tries"); do
        if eval "$check" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "bench-privydrop: not up: $check; log:" >&2
    tail -n 40 "$log" >&2
    exit 1
}

# --- binaries -----------------------------------------------------------------------------------
if [[ -z ${SIGNALPOST_BIN:-} ]]; then
    echo "building signalpost (release)..." >&2
    cargo build --release --quiet -p signalpost
    SIGNALPOST_BIN=target/release/signalpost
fi
[[ -d tests/node/node_modules/socket.io-client ]] || {
    echo "bench-privydrop: run npm ci --prefix tests/node first (socket.io-client)" >&2
    exit 1
}

orig=
if [[ -n ${PRIVYDROP_ORIG_DIR:-} ]]; then
    orig=$PRIVYDROP_ORIG_DIR
    [[ -d $orig/backend ]] && orig=$orig/backend
    [[ -f $orig/package.json && -d $orig/node_modules ]] || {
        echo "bench-privydrop: $orig is not a PrivyDrop backend with node_modules (npm install there)" >&2
        exit 1
    }
    if [[ ! -f $orig/dist/server.js ]]; then
        echo "building the original backend (tsc)..." >&2
        (cd "$orig" && npx --no-install tsc)
    fi
fi

# --- a quiet machine ----------------------------------------------------------------------------
load1() { cut -d' ' -f1 /proc/loadavg; }
if [[ -n ${BENCH_WAIT_LOAD:-} ]]; then
    for _ in $(seq 1 40); do
        awk -v l="$(load1)" -v max="$BENCH_WAIT_LOAD" 'BEGIN { exit !(l < max) }' && break
        echo "load average $(load1) >= $BENCH_WAIT_LOAD; waiting 30 s..." >&2
        sleep 30
    done
fi
echo "load before: $(uptime)" >&2

# --- servers ------------------------------------------------------------------------------------
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for 100 "redis-cli -p $redis_port ping | grep -q PONG" "$work/redis.log"

server_limits=(
    REST_RATE_PER_MIN=100000000 REST_BURST=1000000 WS_UPGRADE_RATE_PER_MIN=100000000
    WS_MAX_CONNECTIONS_PER_CLIENT=1000000 WS_MSG_RATE_PER_SEC=100000000 WS_MSG_BURST=1000000
    PRIVYDROP_JOIN_LIMIT=1000000
)

# Starts signalpost with the PrivyDrop listener on a free port, `$1` naming it and the rest
# being extra VAR=value words; sets sp_url and sp_pid.
start_signalpost() {
    local name=$1 log="$work/signalpost-$1.log"
    shift
    # shellcheck disable=SC2086 # BENCH_SERVER_ENV is a list of VAR=value words.
    env HOST=127.0.0.1 PORT=0 PRIVYDROP_PORT=0 RUST_LOG=info "${server_limits[@]}" "$@" ${BENCH_SERVER_ENV:-} \
        "$SIGNALPOST_BIN" >"$log" 2>&1 &
    sp_pid=$!
    pids+=("$sp_pid")
    wait_for 300 "grep -q 'privydrop listening on' '$log'" "$log"
    sp_url="http://$(grep -o 'privydrop listening on [0-9.:]*' "$log" | head -n1 | awk '{print $4}')"
    echo "signalpost ($name): $sp_url, pid $sp_pid" >&2
}

start_signalpost sqlite SQLITE_DB_PATH="$work/signalpost.db"
args=(--url "$sp_url" --pid "$sp_pid" --label "signalpost (SQLite)")
if [[ ${BENCH_SIGNALPOST_REDIS:-1} == 1 ]]; then
    # Database 1: the original keeps its keys in database 0 of the same Redis.
    start_signalpost redis REDIS_URL="redis://127.0.0.1:$redis_port/1" NODE_ID=bench
    args+=(--extra-url "signalpost (Redis)=$sp_url" --extra-pid "signalpost (Redis)=$sp_pid")
fi

if [[ -n $orig ]]; then
    cat >"$work/loopback.cjs" <<'EOF'
// Makes server.listen(port[, callback]) bind 127.0.0.1 rather than every interface.
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args.length === 1 || typeof args[1] === "function")) args.splice(1, 0, "127.0.0.1");
  return listen.apply(this, args);
};
EOF
    orig_port=$(free_port)
    (cd "$orig" && exec env NODE_ENV=production NODE_OPTIONS="--require $work/loopback.cjs" \
        BACKEND_PORT="$orig_port" CORS_ORIGIN=http://127.0.0.1 REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" \
        DISABLE_JOIN_RATE_LIMIT=1 node dist/server.js) >"$work/original.log" 2>&1 &
    orig_pid=$!
    pids+=("$orig_pid")
    wait_for 300 "curl -fsS http://127.0.0.1:$orig_port/health" "$work/original.log"
    commit=${PRIVYDROP_ORIG_COMMIT:-$(git -C "$orig" rev-parse --short HEAD 2>/dev/null || echo "commit unknown")}
    echo "PrivyDrop original ($commit, node $(node --version), socket.io $(node -p "require('$orig/node_modules/socket.io/package.json').version")): http://127.0.0.1:$orig_port, pid $orig_pid" >&2
    args+=(--baseline-url "http://127.0.0.1:$orig_port" --baseline-pid "$orig_pid")
fi

rc=0
node scripts/bench-privydrop.mjs "${args[@]}" "$@" || rc=$?
echo "load after: $(uptime)" >&2
exit "$rc"
