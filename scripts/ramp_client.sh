#!/usr/bin/env bash
# The ramp scenario (10,000 viewers, 2,000 in flight) against a fresh release gateway,
# opened by loadtest/floor/ramp_client.c (plain C, one epoll loop) instead of the load
# generator: the time to first render and the gateway's CPU per connection with a client
# that costs next to nothing.
#
#   scripts/ramp_client.sh [total in_flight]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p danmaku-gateway
mkdir -p target
cc -O2 -o target/ramp_client loadtest/floor/ramp_client.c
SECRET=ramp-client-secret-0123456789
PORT=18799
token=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(b'{"alg":"HS256","typ":"JWT"}')
body = b64(json.dumps({"sub": "ramp-client", "exp": int(time.time()) + 3600}).encode())
sig = b64(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
)
target/release/danmaku-gateway --listen "127.0.0.1:$PORT" --jwt-secret "$SECRET" --api-keys k \
  --max-conns-per-ip 100000 --log warn > target/ramp_client-gateway.log 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null; wait $GW 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$GW/stat"; }
c0=$(cpu)
target/ramp_client "$PORT" "${1:-10000}" "${2:-2000}" "$token"
c1=$(cpu)
awk -v d=$((c1 - c0)) -v t="$ticks" -v n="${1:-10000}" \
  'BEGIN { printf "gateway: %.1f us CPU per connection\n", d / t * 1e6 / n }'
