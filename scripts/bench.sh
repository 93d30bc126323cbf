#!/usr/bin/env bash
# Benchmarks signalpost against the baseline relay, both release builds on loopback, and prints
# markdown tables (the ones in docs/performance.md).
#
#   scripts/bench.sh                  full run, about 9 minutes
#   scripts/bench.sh --smoke          every scenario for ~2 s with small numbers (CI); exits 1 if
#                                     any scenario reports errors, lost or misrouted messages
#   scripts/bench.sh --baseline-only  relay, broadcast and connections against the baseline relay
#                                     alone
#
# Environment:
#   BENCH_SERVER_ENV  extra VAR=value words for signalpost, after (so overriding) the generous
#                     limits below
#   BENCH_OUT         where to keep the raw JSON lines (default: a temporary directory)
#
# Servers get a temporary SQLITE_DB_PATH and free loopback ports; both are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
with_signalpost=1
for arg in "$@"; do
    case "$arg" in
        --smoke) mode=smoke ;;
        --baseline-only) with_signalpost=0 ;;
        *) echo "usage: $0 [--smoke] [--baseline-only]" >&2; exit 64 ;;
    esac
done

work=$(mktemp -d)
results=${BENCH_OUT:-$work/results.jsonl}
: >"$results"
sp_pid= bl_pid= sp_port= bl_port=
failed=()

stop_servers() {
    for pid in $sp_pid $bl_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $sp_pid $bl_pid; do
        wait "$pid" 2>/dev/null || true
    done
    sp_pid= bl_pid=
}
cleanup() {
    stop_servers
    rm -rf "$work"
}
trap cleanup EXIT

# The connections scenario needs one descriptor per connection, in the servers and in loadgen.
ulimit -n "$(ulimit -Hn)"

echo "building release binaries..." >&2
packages=(-p loadgen)
[[ $with_signalpost == 1 ]] && packages+=(-p signalpost)
cargo build --release --quiet "${packages[@]}"
loadgen=target/release/loadgen

# signalpost's per-client limits protect a public server from one abusive client; here every
# request comes from one machine (250 source addresses), so they are raised far beyond any run.
# The load is bounded by the scenarios themselves. A pairing's code stays live (and counts against
# MAX_PENDING_PER_CLIENT) until it expires, accepted or not, so flat-out pairing needs that lifted
# (0: no cap; the cap's check reads at most that many index rows, so a huge cap would instead
# measure a scan of every code the run made).
# GUESS_LIMIT too: a check or accept is a possible guess until it succeeds, and one client may have
# at most GUESS_LIMIT of them in flight, so concurrent pairings from one address would get 429.
server_limits=(
    REST_RATE_PER_MIN=100000000 REST_BURST=1000000 MAX_PENDING_PER_CLIENT=0
    WS_UPGRADE_RATE_PER_MIN=100000000 WS_MAX_CONNECTIONS_PER_CLIENT=1000000
    WS_MSG_RATE_PER_SEC=100000000 WS_MSG_BURST=1000000 GUESS_LIMIT=100000000
)

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# Starts signalpost on a free port; records its start-up time (spawn to first answered GET /) and
# its idle RSS as a `server` result line.
start_signalpost() {
    sp_port=$($loadgen free-port)
    local started db="$work/bench-$RANDOM.db"
    started=$(now_ms)
    # shellcheck disable=SC2086 # BENCH_SERVER_ENV is a list of VAR=value words.
    env SQLITE_DB_PATH="$db" PORT="$sp_port" HOST=127.0.0.1 "${server_limits[@]}" ${BENCH_SERVER_ENV:-} \
        target/release/signalpost >>"$work/signalpost.log" 2>&1 &
    sp_pid=$!
    for _ in $(seq 1 2000); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$sp_port/" 2>/dev/null; then
            local startup=$(( $(now_ms) - started ))
            sleep 0.5
            echo "{\"scenario\":\"server\",\"label\":\"signalpost\",\"startup_ms\":$startup,\"idle_rss_bytes\":$(rss_bytes "$sp_pid")}" >>"$results"
            return 0
        fi
        kill -0 "$sp_pid" 2>/dev/null || break
        sleep 0.005
    done
    echo "signalpost did not start; its log:" >&2
    cat "$work/signalpost.log" >&2
    exit 1
}

start_baseline() {
    bl_port=$($loadgen free-port)
    target/release/baseline-relay --port "$bl_port" >>"$work/baseline.log" 2>&1 &
    bl_pid=$!
    for _ in $(seq 1 1000); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$bl_port") 2>/dev/null; then
            sleep 0.2
            echo "{\"scenario\":\"server\",\"label\":\"baseline\",\"idle_rss_bytes\":$(rss_bytes "$bl_pid")}" >>"$results"
            return 0
        fi
        sleep 0.01
    done
    echo "baseline-relay did not start" >&2
    exit 1
}

# Runs one loadgen scenario with --json, keeping its line; a non-zero exit (errors, lost or
# misrouted messages, or no run at all) is remembered.
run() {
    local name=$1
    shift
    echo "running $name..." >&2
    local rc=0
    "$loadgen" "$@" --json >>"$results" || rc=$?
    if [[ $rc != 0 ]]; then
        failed+=("$name (exit $rc)")
    fi
}

# Compares against the baseline when signalpost is running, else measures the baseline alone.
target_args() {
    if [[ $with_signalpost == 1 ]]; then
        echo "--url http://127.0.0.1:$sp_port --baseline-url http://127.0.0.1:$bl_port"
    else
        echo "--url http://127.0.0.1:$bl_port --label baseline"
    fi
}
pid_args() {
    if [[ $with_signalpost == 1 ]]; then
        echo "--server-pid $sp_pid --baseline-pid $bl_pid"
    else
        echo "--server-pid $bl_pid"
    fi
}

if [[ $mode == smoke ]]; then
    conn_count=200 conn_hold=2 settle=0
    pairing_runs=("4 2 0")
    relay_runs=("10 200 4 0" "10 2048 4 0" "10 mixed 1 0" "10 mixed 8 200")
    relay_duration=2 relay_rounds=1
    broadcast_runs=("3 8 200 4 0" "3 8 mixed 4 0")
else
    conn_count=19000 conn_hold=10 settle=2
    # concurrency, seconds, pairings/s (0: flat out; 1500 is half the 3,000/s target)
    pairing_runs=("1 10 0" "16 10 0" "64 10 0" "256 10 0" "64 10 1500")
    # rooms, size, window, rate (0: flat out). The last two are light load: one message in flight
    # per client, and a fixed 200 msg/s.
    relay_runs=("100 200 4 0" "100 2048 4 0" "1000 200 4 0" "1000 2048 4 0" "100 mixed 4 0"
        "10 mixed 1 0" "10 mixed 8 200")
    # Each comparison runs both servers this many times, alternating, and reports the medians.
    relay_duration=5 relay_rounds=3
    # rooms, members, size, window, rate (0: flat out): one sender per room, every message
    # received by the other members. Same duration and rounds as relay.
    broadcast_runs=("100 8 200 4 0" "100 8 mixed 4 0")
fi

# Fresh servers first: start-up time, idle RSS, and memory per idle connection without leftovers
# from other scenarios in the allocator.
[[ $with_signalpost == 1 ]] && start_signalpost
start_baseline

# shellcheck disable=SC2046 # word splitting of the argument helpers is intended.
run "connections $conn_count" connections $(target_args) $(pid_args) \
    --count "$conn_count" --hold "$conn_hold" --settle "$settle"

if [[ $with_signalpost == 1 ]]; then
    for spec in "${pairing_runs[@]}"; do
        read -r concurrency seconds rate <<<"$spec"
        run "pairing c=$concurrency rate=$rate" pairing --url "http://127.0.0.1:$sp_port" \
            --concurrency "$concurrency" --duration "$seconds" --rate "$rate"
    done
fi

for spec in "${relay_runs[@]}"; do
    read -r rooms size window rate <<<"$spec"
    size_args=()
    [[ $size != mixed ]] && size_args=(--size "$size")
    # shellcheck disable=SC2046
    run "relay rooms=$rooms size=$size window=$window rate=$rate" relay $(target_args) \
        --rooms "$rooms" --window "$window" --rate "$rate" --duration "$relay_duration" \
        --rounds "$relay_rounds" "${size_args[@]}"
done

for spec in "${broadcast_runs[@]}"; do
    read -r rooms members size window rate <<<"$spec"
    size_args=()
    [[ $size != mixed ]] && size_args=(--size "$size")
    # shellcheck disable=SC2046
    run "broadcast rooms=$rooms members=$members size=$size window=$window rate=$rate" broadcast \
        $(target_args) --rooms "$rooms" --members "$members" --window "$window" --rate "$rate" \
        --duration "$relay_duration" --rounds "$relay_rounds" "${size_args[@]}"
done

stop_servers

echo
echo "## Results ($mode, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
$loadgen report "$results"

if (( ${#failed[@]} > 0 )); then
    echo "scenarios that reported errors, lost or misrouted messages:" >&2
    printf '  %s\n' "${failed[@]}" >&2
    [[ -s $work/signalpost.log ]] && { echo "last lines of the signalpost log:" >&2; tail -n 20 "$work/signalpost.log" >&2; }
    exit 1
fi
