#!/usr/bin/env bash
# The local deployment end to end, as an operator would use it: up (a 3-master Redis
# Cluster, 3 gateways, HAProxy with TLS) → a load test through the balancer over
# wss:// and https:// → a rolling restart of every gateway while the load test's
# `fanout` and `resume` scenarios run through the balancer → down. Fails unless
# nothing is lost or duplicated, every viewer reconnected and nothing is left
# running. Figures (drain and ready time per gateway, reconnect p99) are printed and
# kept in $OUT (target/deploy-local).
#
#   deploy/local/test.sh [gateway binary] [load-test binary]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/local/lib.sh
. "$here/lib.sh"
gateway_bin=$(realpath "${1:-$ROOT/target/debug/danmaku-gateway}")
loadtest_bin=$(realpath "${2:-$ROOT/target/debug/danmaku-loadtest}")
OUT=${OUT:-$ROOT/target/deploy-local}
mkdir -p "$OUT"

# Ports below the ephemeral range, at a base no one listens on.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 50); do
  base=$(( 20000 + RANDOM % 80 * 100 ))
  ok=true
  for p in $(( base + 1 )) $(( base + 2 )) $(( base + 3 )) $(( base + 11 )) $(( base + 12 )) $(( base + 13 )) \
           $(( base + 51 )) $(( base + 52 )) $(( base + 53 )) $(( base + 90 )) $(( base + 91 )); do
    port_free "$p" || { ok=false; break; }
  done
  $ok && break
done
$ok || die "no free port range found"
export DANMAKU_REDIS_BASE=$base DANMAKU_GW_BASE=$(( base + 50 )) DANMAKU_LB_PORT=$(( base + 90 ))
export DANMAKU_LOCAL_DIR
DANMAKU_LOCAL_DIR=$(mktemp -d /tmp/danmaku-local.XXXXXX)
LOCAL_DIR=$DANMAKU_LOCAL_DIR LB_PORT=$DANMAKU_LB_PORT
export DANMAKU_JWT_SECRET=deploy-local-test-secret-0123456789 DANMAKU_API_KEYS=deploy-local-test-key

cleanup() {
  local rc=$?
  "$here/down.sh" || rc=1
  for f in "$LOCAL_DIR"/*.pid; do
    [[ -e $f ]] && { say "left running: $(basename "$f")"; rc=1; }
  done
  (( rc == 0 )) || cp "$LOCAL_DIR"/*.log "$OUT/" 2>/dev/null || true
  rm -rf "$LOCAL_DIR"
  exit "$rc"
}
trap cleanup EXIT

DANMAKU_BIN=$gateway_bin "$here/up.sh" > "$OUT/up.txt"
cat "$OUT/up.txt"
cert=$LOCAL_DIR/tls/cert.pem
lb="127.0.0.1:$LB_PORT"
load() {
  "$loadtest_bin" "$@" --url "wss://$lb/ws" --ca-file "$cert" --api-key "$DANMAKU_API_KEYS" \
    --jwt-secret "$DANMAKU_JWT_SECRET" --quiet
}

# 1. Through the balancer: TLS, leastconn over three gateways, Redis Cluster.
load fanout --viewers 300 --rooms 3 --rate 30 --duration-s 5 --room-prefix through \
  --json "$OUT/through-balancer.json" > "$OUT/through-balancer.txt"
say "through the balancer over wss://: $(grep -E '^(latency|events)' "$OUT/through-balancer.txt" | tr -s ' ' | paste -sd ';')"

# 2. A rolling restart while viewers watch and publishers publish.
viewers=600
load fanout --viewers "$viewers" --rooms 2 --rate 20 --duration-s 30 --idempotent --room-prefix roll \
  --json "$OUT/roll-fanout.json" > "$OUT/roll-fanout.txt" 2>&1 &
fanout=$!
load resume --viewers 200 --rooms 1 --rate 10 --duration-s 30 --idempotent --room-prefix rollr \
  --drop-fraction 0.05 --drop-every-s 4 --json "$OUT/roll-resume.json" > "$OUT/roll-resume.txt" 2>&1 &
resume=$!
online() {
  curl -fsS --cacert "$cert" -H "Authorization: Bearer $DANMAKU_API_KEYS" \
    "https://$lb/v1/rooms?sort=online&limit=50" |
    python3 -c 'import json,sys; print(sum(r["online"] for r in json.load(sys.stdin)["rooms"] if r["room"].startswith("roll")))'
}
all_joined() { (( $(online) >= viewers + 200 )); }
wait_for 60 all_joined || die "the viewers did not all join (online: $(online))"
"$here/roll.sh" | tee "$OUT/roll.jsonl"
wait "$fanout" || { cat "$OUT/roll-fanout.txt"; die "the fanout run failed during the roll"; }
wait "$resume" || { cat "$OUT/roll-resume.txt"; die "the resume run failed during the roll"; }

python3 - "$OUT" "$viewers" <<'PY'
import json, sys
out, viewers = sys.argv[1], int(sys.argv[2])
roll = [json.loads(l) for l in open(f"{out}/roll.jsonl")]
assert len(roll) == 3, roll
for name, n in (("roll-fanout", viewers), ("roll-resume", 200)):
    r = json.load(open(f"{out}/{name}.json"))
    e, c, res = r["events"], r["connections"], r["resume"]
    assert e["lost"] == 0 and e["duplicated"] == 0 and e["reordered"] == 0, (name, e)
    assert c["failed"] == 0 and c["established"] == n, (name, c)
    # Every gateway was restarted under every viewer: each one moved at least once.
    assert res["reconnects"] >= n, (name, res)
    print(f"{name}: {n} viewers, {e['delivered']} deliveries, lost 0, dup 0; "
          f"{res['reconnects']} reconnects ({res['recovered']} recovered), "
          f"reconnect p50 {res['reconnect_ms']['p50']} ms p99 {res['reconnect_ms']['p99']} ms")
print("drain per gateway (SIGTERM → exit): " + ", ".join(f"{g['gateway']} {g['drain_ms']} ms" for g in roll))
print("back in rotation (start → balancer UP): " + ", ".join(f"{g['gateway']} {g['ready_ms']} ms" for g in roll))
PY
say "deploy/local: up, load through wss://, rolling restart with nothing lost, down"
