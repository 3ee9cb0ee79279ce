#!/usr/bin/env bash
# Runs N gateway processes on one machine (the production shape, without containers):
# ports BASE+1 … BASE+N on 127.0.0.1, ids g1 … gN. Stops them all on Ctrl-C.
#
#   deploy/local/run.sh 3                 # three gateways on 8081-8083
#   BASE=9000 deploy/local/run.sh 2 --anonymous
#
# Set DANMAKU_JWT_SECRET and DANMAKU_API_KEYS in the environment to fix credentials;
# every other flag after N goes to each gateway. Each process holds up to ~19,000
# connections under a 20,000 open-file limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-3}; shift || true
base=${BASE:-8080}
: "${DANMAKU_JWT_SECRET:=local-dev-secret-0123456789}"
: "${DANMAKU_API_KEYS:=local-dev-key}"
export DANMAKU_JWT_SECRET DANMAKU_API_KEYS
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p danmaku-gateway
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in $(seq 1 "$n"); do
  target/release/danmaku-gateway --listen "127.0.0.1:$((base + i))" --gateway-id "g$i" "$@" &
  pids+=($!)
done
echo "gateways: ${pids[*]} on ports $((base + 1))-$((base + n)); API key $DANMAKU_API_KEYS"
wait
