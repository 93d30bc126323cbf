#!/usr/bin/env bash
# Benchmarks a signalpost cluster (two nodes on one private Redis) against a single signalpost node
# (SQLite), side by side, release builds on loopback, and prints markdown tables, including what
# Redis did per operation (commands, script calls, CPU, memory).
#
#   scripts/bench-cluster.sh          full run, about 10 minutes
#   scripts/bench-cluster.sh --smoke  every scenario for ~2 s with small numbers, about a minute;
#                                     exits 1 if any scenario reports errors, lost, duplicated or
#                                     misrouted messages
#
# The cluster is the target: member i of every room connects to node i mod 2, so the two members of
# a pair are always on different nodes, and the steps of each pairing alternate between the nodes
# (see `loadgen relay --help`). Redis's commands and CPU are read around the cluster's traffic only
# (`loadgen --redis`), so the per-operation numbers leave out room set-up and the baseline's runs.
#
# Environment:
#   BENCH_SERVER_ENV  extra VAR=value words for every signalpost node, after (so overriding) the
#                     generous limits below
#   BENCH_OUT         where to keep the raw JSON lines (default: a temporary directory)
#   BENCH_LOGS        a directory to copy the servers' logs to at the end (default: not kept)
#
# Redis is a private redis-server on a free loopback port with its files in a temporary directory
# (never the machine's own Redis); the nodes get free loopback ports and a temporary SQLITE_DB_PATH.
# Everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
for arg in "$@"; do
    case "$arg" in
        --smoke) mode=smoke ;;
        *) echo "usage: $0 [--smoke]" >&2; exit 64 ;;
    esac
done

command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    echo "bench-cluster needs redis-server and redis-cli (Debian: apt-get install redis-server)" >&2
    exit 1
}

work=$(mktemp -d)
results=${BENCH_OUT:-$work/results.jsonl}
: >"$results"
redis_pid= redis_port=
node_pids=() node_ports=() node_labels=() node_logs=()
failed=()

# Seconds a process may take to exit after SIGTERM: signalpost's shutdown grace (10 s by default)
# and then some. Slower is a fault, reported, and the process is killed.
stop_deadline=30

# Stops the processes $@ (SIGTERM, then SIGKILL past the deadline) and reaps them.
stop_pids() {
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        for _ in $(seq 1 $(( stop_deadline * 10 ))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)) did not exit within ${stop_deadline}s of SIGTERM; killed" >&2
            failed+=("stopping process $pid (no exit ${stop_deadline}s after SIGTERM)")
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

# The nodes first, so that they leave the cluster while Redis is still there; then Redis.
stop_all() {
    stop_pids "${node_pids[@]}"
    node_pids=()
    stop_pids $redis_pid
    redis_pid=
}
cleanup() {
    stop_all
    rm -rf "$work"
}
trap cleanup EXIT

# The connections scenario needs one descriptor per connection, in the servers and in loadgen.
ulimit -n "$(ulimit -Hn)"

echo "building release binaries..." >&2
cargo build --release --quiet -p loadgen -p signalpost
loadgen=target/release/loadgen

# The same generous limits as scripts/bench.sh (see there why): every request comes from one
# machine, and the scenarios bound the load themselves. GUESS_LIMIT too: a check or accept is a
# possible guess until it succeeds, and one client may have at most GUESS_LIMIT of them in flight,
# so concurrent pairings from one address would otherwise be answered 429.
server_limits=(
    REST_RATE_PER_MIN=100000000 REST_BURST=1000000 MAX_PENDING_PER_CLIENT=0
    WS_UPGRADE_RATE_PER_MIN=100000000 WS_MAX_CONNECTIONS_PER_CLIENT=1000000
    WS_MSG_RATE_PER_SEC=100000000 WS_MSG_BURST=1000000 GUESS_LIMIT=100000000
)

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

start_redis() {
    redis_port=$($loadgen free-port)
    if [[ $redis_port == 6379 ]]; then
        redis_port=$($loadgen free-port)
    fi
    mkdir -p "$work/redis"
    (cd "$work/redis" && exec redis-server --port "$redis_port" --dir "$work/redis" \
        --appendonly yes --appendfsync always --save "" --maxmemory-policy noeviction \
        --bind 127.0.0.1 --daemonize no) >>"$work/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 500); do
        if [[ $(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null) == PONG ]]; then
            echo "{\"scenario\":\"server\",\"label\":\"redis\",\"idle_rss_bytes\":$(rss_bytes "$redis_pid")}" >>"$results"
            return 0
        fi
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.01
    done
    echo "redis-server did not start; its log:" >&2
    cat "$work/redis.log" >&2
    exit 1
}

# Starts one signalpost node labelled $1 with the extra VAR=value words that follow; records its
# start-up time (spawn to first answered GET /) and its idle RSS as a `server` result line. Its
# pid and port are appended to node_pids and node_ports.
start_node() {
    local label=$1
    shift
    local port started name=${label// /-}
    local log="$work/$name.log"
    port=$($loadgen free-port)
    started=$(now_ms)
    # shellcheck disable=SC2086 # BENCH_SERVER_ENV is a list of VAR=value words.
    env SQLITE_DB_PATH="$work/$name.db" PORT="$port" HOST=127.0.0.1 "$@" \
        "${server_limits[@]}" ${BENCH_SERVER_ENV:-} target/release/signalpost >>"$log" 2>&1 &
    local pid=$!
    node_pids+=("$pid") node_ports+=("$port") node_labels+=("$label") node_logs+=("$log")
    for _ in $(seq 1 2000); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
            local startup=$(( $(now_ms) - started ))
            sleep 0.5
            echo "{\"scenario\":\"server\",\"label\":\"$label\",\"startup_ms\":$startup,\"idle_rss_bytes\":$(rss_bytes "$pid")}" >>"$results"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.005
    done
    echo "signalpost ($label) did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

# Waits until the node on port $1 counts $2 live nodes in its cluster.
await_cluster() {
    for _ in $(seq 1 200); do
        if curl -fsS "http://127.0.0.1:$1/stats" 2>/dev/null | grep -q "\"nodes\":$2[,}]"; then
            return 0
        fi
        sleep 0.05
    done
    echo "the cluster did not see $2 nodes; /stats says:" >&2
    curl -sS "http://127.0.0.1:$1/stats" >&2 || true
    exit 1
}

# Runs one loadgen scenario with --json, keeping its line; a non-zero exit (errors, lost,
# duplicated or misrouted messages, or no run at all) is remembered.
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

if [[ $mode == smoke ]]; then
    conn_count=200 conn_hold=2 settle=0
    pairing_runs=("16 2 0" "64 2 0" "64 2 1500")
    relay_runs=("10 200 4 0" "10 mixed 4 0" "10 mixed 1 0" "10 mixed 8 200")
    relay_duration=2 relay_rounds=1
    broadcast_runs=("3 8 200 4 0")
else
    conn_count=10000 conn_hold=10 settle=2
    # concurrency, seconds, pairings/s (0: flat out)
    pairing_runs=("16 10 0" "64 10 0" "64 10 1500")
    # rooms, size, window, rate (0: flat out); the last two are bench.sh's light load: one message
    # in flight per client, and a fixed 200 msg/s.
    relay_runs=("100 200 4 0" "100 mixed 4 0" "10 mixed 1 0" "10 mixed 8 200")
    # Each comparison runs both this many times, alternating, and reports the medians.
    relay_duration=5 relay_rounds=3
    # rooms, members, size, window, rate: one sender per room, read by the 7 others.
    broadcast_runs=("100 8 200 4 0")
fi

# Fresh servers first: start-up time, idle RSS, and memory per idle connection without leftovers
# from other scenarios in the allocator.
start_redis
redis_url="redis://127.0.0.1:$redis_port/0"
start_node "cluster node n1" REDIS_URL="$redis_url" NODE_ID=n1
start_node "cluster node n2" REDIS_URL="$redis_url" NODE_ID=n2
start_node "single node"
await_cluster "${node_ports[0]}" 2
await_cluster "${node_ports[1]}" 2

cluster_label="cluster (2 nodes)"
compare=(
    --url "http://127.0.0.1:${node_ports[0]},http://127.0.0.1:${node_ports[1]}"
    --label "$cluster_label" --redis "$redis_url"
    --baseline-url "http://127.0.0.1:${node_ports[2]}" --baseline-label "single node"
)

run "connections $conn_count" connections "${compare[@]}" \
    --server-pid "${node_pids[0]},${node_pids[1]}" --baseline-pid "${node_pids[2]}" \
    --count "$conn_count" --hold "$conn_hold" --settle "$settle"

for spec in "${pairing_runs[@]}"; do
    read -r concurrency seconds rate <<<"$spec"
    run "pairing c=$concurrency rate=$rate" pairing "${compare[@]}" \
        --concurrency "$concurrency" --duration "$seconds" --rate "$rate"
done

for spec in "${relay_runs[@]}"; do
    read -r rooms size window rate <<<"$spec"
    size_args=()
    [[ $size != mixed ]] && size_args=(--size "$size")
    run "relay rooms=$rooms size=$size window=$window rate=$rate" relay "${compare[@]}" \
        --rooms "$rooms" --window "$window" --rate "$rate" --duration "$relay_duration" \
        --rounds "$relay_rounds" "${size_args[@]}"
done

for spec in "${broadcast_runs[@]}"; do
    read -r rooms members size window rate <<<"$spec"
    size_args=()
    [[ $size != mixed ]] && size_args=(--size "$size")
    run "broadcast rooms=$rooms members=$members size=$size window=$window rate=$rate" broadcast \
        "${compare[@]}" --rooms "$rooms" --members "$members" --window "$window" --rate "$rate" \
        --duration "$relay_duration" --rounds "$relay_rounds" "${size_args[@]}"
done

# Every client has left: the cluster should hold no room any more (none of loadgen's members asks
# to be resumable). Rooms left behind are members whose departure was lost.
rooms_left=
for _ in $(seq 1 100); do
    rooms_left=$(curl -sS "http://127.0.0.1:${node_ports[0]}/stats" | grep -o '"cluster":{[^}]*}' |
        grep -o '"rooms":[0-9]*' | cut -d: -f2 || true)
    [[ $rooms_left == 0 ]] && break
    sleep 0.1
done
if [[ $rooms_left != 0 ]]; then
    failed+=("rooms left in the cluster 10 s after every client left: ${rooms_left:-unknown}")
fi

# Read before the nodes stop: what Redis holds after the runs, and whether the cluster still
# counts both nodes.
redis_after=$(redis-cli -h 127.0.0.1 -p "$redis_port" info memory | grep -m1 '^used_memory_human:' | tr -d '\r' || true)
cluster_after=$(curl -sS "http://127.0.0.1:${node_ports[0]}/stats" | grep -o '"cluster":{[^}]*}' || true)
stop_all
if [[ -n ${BENCH_LOGS:-} ]]; then
    mkdir -p "$BENCH_LOGS"
    cp "$work"/*.log "$BENCH_LOGS"/
fi

echo
echo "## Cluster vs single node ($mode, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
echo "Target \"$cluster_label\": nodes n1 and n2 on one private Redis (AOF, appendfsync always);"
echo "baseline \"single node\": one node on SQLite. After the runs: Redis $redis_after; n1 $cluster_after."
echo
$loadgen report "$results"

# Warnings and errors the nodes logged, so that none goes unseen.
for i in "${!node_logs[@]}"; do
    count=$(grep -c -E '\b(WARN|ERROR)\b|"level":"(WARN|ERROR)"' "${node_logs[$i]}" || true)
    if [[ $count != 0 ]]; then
        echo "${node_labels[$i]} logged $count warnings or errors; the first ones:" >&2
        grep -m 10 -E '\b(WARN|ERROR)\b|"level":"(WARN|ERROR)"' "${node_logs[$i]}" >&2
    fi
done

if (( ${#failed[@]} > 0 )); then
    echo "scenarios that reported errors, lost, duplicated or misrouted messages:" >&2
    printf '  %s\n' "${failed[@]}" >&2
    echo "errors by kind, run by run (label first):" >&2
    grep -o '"error_kinds":{[^}]\+}[^{]*"label":"[^"]*"' "$results" >&2 || true
    for i in "${!node_logs[@]}"; do
        echo "last lines of the ${node_labels[$i]} log:" >&2
        tail -n 20 "${node_logs[$i]}" >&2
    done
    exit 1
fi
