#!/usr/bin/env bash
# Measures this checkout's signalpost against an earlier commit's, side by side in one run, for
# what scripts/bench.sh has no baseline for: memory per idle connection and pairing.
#
#   scripts/bench-against.sh REV [CONNECTIONS]     e.g. scripts/bench-against.sh 94a2aa4
#
# Builds REV (release) in a temporary git worktree, with its own target directory kept under
# target/bench-against/ so a second run does not rebuild it, and this checkout as it is. Then, each
# time with fresh servers (temporary databases, free loopback ports, the generous limits of
# scripts/bench.sh): `loadgen connections` (CONNECTIONS idle WebSockets, default 19,000, held 5 s),
# and `loadgen pairing` at concurrency 16 and 64 for 10 s, REV as the baseline. The ratios are
# this checkout / REV. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

rev=${1:?usage: $0 REV [CONNECTIONS]}
count=${2:-19000}
sha=$(git rev-parse --short "$rev^{commit}")
work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    git worktree remove --force "$work/src" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "building $sha and this checkout (release)..." >&2
git worktree add --detach --quiet "$work/src" "$sha"
old_target="$PWD/target/bench-against/$sha"
(cd "$work/src" && CARGO_TARGET_DIR="$old_target" cargo build --release --quiet -p signalpost)
cargo build --release --quiet -p signalpost -p loadgen
old_bin="$old_target/release/signalpost"
new_bin=target/release/signalpost
loadgen=target/release/loadgen

limits=(
    REST_RATE_PER_MIN=100000000 REST_BURST=1000000 WS_UPGRADE_RATE_PER_MIN=100000000
    WS_MAX_CONNECTIONS_PER_CLIENT=1000000 WS_MSG_RATE_PER_SEC=100000000 WS_MSG_BURST=1000000
)
# Options the earlier build may not know are given to this checkout only (an unknown variable is
# ignored by the old build anyway, but a value it would refuse is not): see scripts/bench.sh.
new_limits=(MAX_PENDING_PER_CLIENT=0 GUESS_LIMIT=100000000)

# start NAME BIN [VAR=value...]: starts a server on a free port; sets url and pid.
start() {
    local name=$1 bin=$2 log="$work/$1.log"
    shift 2
    env HOST=127.0.0.1 PORT=0 SQLITE_DB_PATH="$work/$name.db" RUST_LOG=info "${limits[@]}" "$@" \
        "$bin" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1 100); do
        url=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$log" | head -n1 | awk '{print $3}' || true)
        [[ -n $url ]] && url="http://$url" && return 0
        sleep 0.1
    done
    echo "bench-against: $name did not start; log:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

stop_all() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    rm -f "$work"/*.db*
}

scenario() {
    start old "$old_bin"
    local old_url=$url old_pid=$pid
    start new "$new_bin" "${new_limits[@]}"
    local new_url=$url new_pid=$pid
    case $1 in
        connections)
            "$loadgen" connections --url "$new_url" --server-pid "$new_pid" --label HEAD \
                --baseline-url "$old_url" --baseline-pid "$old_pid" --baseline-label "$sha" \
                --count "$count" --hold 5 --settle 2 ;;
        pairing)
            "$loadgen" pairing --url "$new_url" --label HEAD \
                --baseline-url "$old_url" --baseline-label "$sha" --concurrency "$2" --duration 10 ;;
    esac
    stop_all
}

echo "load before: $(uptime)" >&2
scenario connections
scenario pairing 16
scenario pairing 64
echo "load after: $(uptime)" >&2
