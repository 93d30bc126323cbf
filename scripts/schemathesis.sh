#!/usr/bin/env bash
# Runs schemathesis against a live release server with docs/openapi.yaml: generated and mutated
# requests for every operation, checking that none gets a 5xx, none times out, and every answer
# matches the spec (status, content type, body schema, headers).
#
# Usage: scripts/schemathesis.sh [max-examples per operation, default 300] [--cluster]
#   --cluster  the server is a cluster node (REDIS_URL) on a private redis-server started here,
#              so the same contract is checked against the Redis store and rooms
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-300}"
cluster="${2:-}"

command -v schemathesis >/dev/null || pip install -q schemathesis
cargo build --release --quiet -p signalpost

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
redis=
cluster_env=()
if [[ $cluster == --cluster ]]; then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
  redis=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.05; done
  cluster_env=(REDIS_URL="redis://127.0.0.1:$redis_port/0" NODE_ID=schemathesis)
fi
# Limits off the way, so the run measures behaviour rather than rate limiting; the admin token is
# set so /rooms is live; TURN is configured, because without it the credentials route answers
# 501 by contract, which the "no 5xx" check would count.
HOST=127.0.0.1 PORT="$port" SQLITE_DB_PATH="$work/st.db" RUST_LOG=warn \
  REST_RATE_PER_MIN=100000000 REST_BURST=100000000 GUESS_LIMIT=100000000 \
  WS_UPGRADE_RATE_PER_MIN=100000000 ADMIN_TOKEN=schemathesis-admin \
  TURN_SECRET=schemathesis-turn TURN_URLS=turn:127.0.0.1:3478 STUN_URLS=stun:127.0.0.1:3478 \
  env "${cluster_env[@]}" ./target/release/signalpost 2>"$work/server.log" &
server=$!
trap 'kill $server $redis 2>/dev/null || true; wait $server $redis 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done

status=0
schemathesis run docs/openapi.yaml \
  --url "http://127.0.0.1:$port" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "$examples" \
  --request-timeout 5 \
  --phases examples,coverage,fuzzing \
  --suppress-health-check all \
  -H "Authorization: Bearer schemathesis-admin" \
  --no-color || status=$?
if grep -q "panicked" "$work/server.log"; then
  echo "server panicked:"; grep -A5 panicked "$work/server.log"; status=1
fi
kill -0 "$server" || { echo "server died"; status=1; }
exit $status
