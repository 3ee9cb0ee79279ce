#!/usr/bin/env bash
# Runs the standard load-test scenarios, each against a freshly started gateway (the
# in-memory backend) on this machine, and writes their figures into BENCHMARKS.md.
#
#   scripts/bench.sh            # every scenario
#   scripts/bench.sh ramp huge  # only scenarios whose name contains one of the words
#
# Results: bench-results/<scenario>.json (and .html); the table between the markers
# in BENCHMARKS.md is rewritten from them.
#
# To compare two builds in one sitting, give each its own binaries and output:
#   DANMAKU_BENCH_GW=old/danmaku-gateway DANMAKU_BENCH_OUT=bench-before \
#   DANMAKU_BENCH_NO_TABLE=1 scripts/bench.sh
# (DANMAKU_BENCH_LT and DANMAKU_BENCH_PR likewise pick the load-test and the
# publish-rate binaries; keep one load test for both runs.)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -z "${DANMAKU_BENCH_GW:-}" ] || [ -z "${DANMAKU_BENCH_LT:-}" ]; then
  cargo build --release -q -p danmaku-gateway -p danmaku-loadtest
fi
[ -n "${DANMAKU_BENCH_PR:-}" ] || cargo build --release -q -p danmaku-fanout --example publish_rate
PR=${DANMAKU_BENCH_PR:-target/release/examples/publish_rate}
GW=${DANMAKU_BENCH_GW:-target/release/danmaku-gateway}
LT=${DANMAKU_BENCH_LT:-target/release/danmaku-loadtest}
SECRET=bench-secret-0123456789abcdef
KEY=bench-key
OUT=${DANMAKU_BENCH_OUT:-bench-results}
mkdir -p "$OUT"
PIDS=()

start_redis() { # a throwaway redis-server for the Redis-backed scenarios
  mkdir -p "$OUT/redis"
  redis-server --port 18790 --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT/redis" > "$OUT/redis/log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do redis-cli -p 18790 ping >/dev/null 2>&1 && break; sleep 0.1; done
}

start_gateways() { # count, extra flags...
  local n=$1; shift
  PIDS=(); URLS=(); PIDARGS=()
  for i in $(seq 1 "$n"); do
    local port=$((18700 + i))
    "$GW" --listen "127.0.0.1:$port" --gateway-id "g$i" --jwt-secret "$SECRET" --api-keys "$KEY" \
      --max-conns-per-ip 100000 --log warn "$@" > "$OUT/gateway-$i.log" 2>&1 &
    PIDS+=($!); URLS+=(--url "ws://127.0.0.1:$port/ws"); PIDARGS+=(--gateway-pid "$!")
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((18700 + i))/healthz" >/dev/null && break; sleep 0.1; done
  done
}

stop_gateways() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
# Waits for Redis to exit, so a next run can take its port at once.
trap 'stop_gateways; [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null' EXIT

run() { # name, gateways, loadtest args...
  local name=$1 n=$2; shift 2
  if [ -n "${FILTER:-}" ] && ! grep -qE "$FILTER" <<<"$name"; then return; fi
  echo "== $name"
  start_gateways "$n" ${GW_EXTRA:-}
  "$LT" "$@" "${URLS[@]}" "${PIDARGS[@]}" --api-key "$KEY" --jwt-secret "$SECRET" --quiet \
    --json "$OUT/$name.json" --html "$OUT/$name.html" | tee "$OUT/$name.txt" || true
  stop_gateways
  sleep 1
}

FILTER=$(IFS='|'; echo "$*")

run memory-10k        1 connect --connections 10000 --hold-s 2
run memory-19k        1 connect --connections 19000 --procs 2 --hold-s 2
run ramp-asap-10k     1 connect --connections 10000 --in-flight 2000 --threads 2
run ramp-2000ps-5k    1 connect --connections 5000 --ramp-rate 2000
run small-busy-room-200x25 1 fanout --viewers 200 --rooms 1 --rate 25 --size 100 --duration-s 20
run huge-room-latency 1 fanout --viewers 5000 --rooms 1 --rate 10 --size 100 --duration-s 20 --threads 2
run huge-room-saturation 1 fanout --viewers 5000 --rooms 1 --rate 50 --size 100 --duration-s 20
GW_EXTRA="--write-linger-ms 50" run huge-room-saturation-linger50 1 fanout --viewers 5000 --rooms 1 --rate 50 --size 100 --duration-s 20
# 5,000 viewers cheering "666" together (50 comments/s): merged (the default) and not.
run merge-666-5k 1 interact --viewers 5000 --rooms 1 --rate 1 --size 100 --duration-s 20 --comment-rate 0.01 --like-rate 0 --no-vote --repeat-share 1
GW_EXTRA="--merge-after 0" run merge-666-5k-unmerged 1 interact --viewers 5000 --rooms 1 --rate 1 --size 100 --duration-s 20 --comment-rate 0.01 --like-rate 0 --no-vote --repeat-share 1
# Room games. A coupon storm: 10,000 viewers claim 5 times at once for a stock of 100 at
# 2 per user (50,000 claims), on one gateway and on three sharing Redis. A keyword
# flood: 5,000 viewers type the keyword (about 50 a second), merged (the default) and
# not; the keyword game's counts are checked exactly in both.
TAPS="--votes-per-s 10 --votes-burst 10"
STORM="--viewers 10000 --rooms 1 --rate 1 --size 100 --duration-s 5 --comment-rate 0 --like-rate 0 --no-vote --coupon-stock 100 --coupon-per-user 2 --coupon-claims 5"
GW_EXTRA=$TAPS run coupon-storm-10k 1 interact $STORM
FLOOD="--viewers 5000 --rooms 1 --rate 1 --size 100 --duration-s 20 --comment-rate 0.01 --like-rate 0 --no-vote --repeat-share 1 --keyword 买买买"
run keyword-flood-5k 1 interact $FLOOD
GW_EXTRA="--merge-after 0" run keyword-flood-5k-unmerged 1 interact $FLOOD
if [ -z "$FILTER" ] || grep -qE "$FILTER" <<<"redis-coupon-storm"; then
  start_redis
  GW_EXTRA="$TAPS --redis-url redis://127.0.0.1:18790" run redis-coupon-storm-10k-3gw 3 interact $STORM
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
fi
# A moderation storm: a moderator's connection retracting 5 events a second while 5,000 viewers
# receive 10 a second (each retraction is an event of the room too: 15 a second),
# beside the same room at 15 events a second without it.
MOD="--viewers 5000 --rooms 1 --size 100 --duration-s 20 --threads 2"
run moderation-calm-5k 1 fanout $MOD --rate 15
run moderation-storm-5k 1 fanout $MOD --rate 10 --retract-rate 5
run many-rooms-100x50 1 fanout --viewers 5000 --rooms 100 --rate 500 --size 100 --duration-s 20
run zipf-1000-rooms   1 fanout --viewers 10000 --rooms 1000 --zipf 1.0 --rate 1000 --size 100 --duration-s 20
run resume-5k         1 resume --viewers 5000 --rooms 1 --rate 20 --size 100 --duration-s 30 --drop-fraction 0.1 --drop-every-s 3
run scale-40k-3gw     3 connect --connections 40000 --procs 3 --hold-s 2 --source-addrs 127.0.0.2,127.0.0.3,127.0.0.4

# Redis-backed: the latency Redis adds, and 30,000 viewers over 3 gateways.
if [ -z "$FILTER" ] || grep -qE "$FILTER" <<<"redis"; then
  start_redis
  GW_EXTRA="--redis-url redis://127.0.0.1:18790" run redis-many-rooms-100x50 1 fanout --viewers 5000 --rooms 100 --rate 500 --size 100 --duration-s 20
  # Viewers' comments, each sequenced by the room script (merging off): the comment path.
  GW_EXTRA="--redis-url redis://127.0.0.1:18790 --merge-after 0" run redis-comments-5k 1 interact --viewers 5000 --rooms 1 --rate 1 --size 100 --duration-s 20 --comment-rate 0.01 --like-rate 0 --no-vote
  GW_EXTRA="--redis-url redis://127.0.0.1:18790" run redis-30k-3gw-1000ps 3 fanout --viewers 30000 --rooms 1000 --rate 1000 --size 100 --duration-s 20 --procs 2
  "$PR" redis://127.0.0.1:18790 64 10 100 | tee "$OUT/redis-publish-rate.txt" || true
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
fi

# Ordinary clients: plain tokio-tungstenite viewers in two single-threaded processes,
# each room publishing over a keep-alive connection of its own, on Redis — the shape of
# an independent generator — beside the load test's own readers in the same shapes.
if [ -z "$FILTER" ] || grep -qE "$FILTER" <<<"ordinary"; then
  start_redis
  R="--redis-url redis://127.0.0.1:18790"
  ORD="--client tungstenite --procs 2"
  P="--publishers 8 --publish-by-room"
  # Rounds alternate the two clients; the table shows each round and the median.
  for round in $(seq 1 "${DANMAKU_BENCH_ROUNDS:-2}"); do
    for c in own ordinary; do
      flags=""; [ "$c" = ordinary ] && flags=$ORD
      r="-r$round"
      GW_EXTRA=$R FILTER= run "$c-redis-100x50$r" 1 fanout $flags --viewers 5000 --rooms 100 --rate 500 --size 100 --duration-s 20 $P
      GW_EXTRA=$R FILTER= run "$c-redis-1x5000-1gw$r" 1 fanout $flags --viewers 5000 --rooms 1 --rate 10 --size 100 --duration-s 20 $P
      GW_EXTRA=$R FILTER= run "$c-redis-1x5000-2gw$r" 2 fanout $flags --viewers 5000 --rooms 1 --rate 10 --size 100 --duration-s 20 $P
      GW_EXTRA=$R FILTER= run "$c-redis-1x5000-50ps$r" 1 fanout $flags --viewers 5000 --rooms 1 --rate 50 --size 100 --duration-s 20 $P
      GW_EXTRA=$R FILTER= run "$c-redis-idle-5k$r" 1 connect $flags --connections 5000 --hold-s 2
      GW_EXTRA=$R FILTER= run "$c-redis-ramp-10k$r" 1 connect $flags --connections 10000 --in-flight 2000
    done
  done
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
fi

# 100,000 joined viewers over 6 gateways on one Redis, from one load test of 6 worker
# processes over 8 source addresses: 5 rooms of 20,000, one of them getting 10 events/s
# for a minute. Only when asked for by name (a few minutes, ~2 GiB).
if [ -n "$FILTER" ] && grep -qE "$FILTER" <<<"scale-100k"; then
  # The last run's connections linger in TIME_WAIT for a minute, and a new connection
  # on one of their address pairs is refused: wait until they are gone.
  for _ in $(seq 1 120); do
    [ "$(awk '/^TCP:/ {print $7}' /proc/net/sockstat)" -lt 1000 ] && break
    sleep 1
  done
  start_redis
  SRC=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9
  # What the kernel holds meanwhile (sockets, their buffers, slab), every 5 s.
  (for _ in $(seq 1 40); do
     date +%T; grep -E '^TCP:' /proc/net/sockstat; grep -E '^(MemAvailable|Slab|SUnreclaim):' /proc/meminfo
     sleep 5
   done) > "$OUT/scale-100k-kernel.txt" &
  SAMPLER=$!
  GW_EXTRA="--redis-url redis://127.0.0.1:18790" FILTER= run scale-100k-6gw 6 fanout \
    --viewers 100000 --rooms 5 --publish-rooms 1 --rate 10 --size 100 --duration-s 60 \
    --procs 6 --source-addrs "$SRC" --in-flight 3000 --idempotent
  kill "$SAMPLER" 2>/dev/null || true
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
fi

# The kernel's own cost per loopback write and read, for reading the figures above
# (see "The floor" in BENCHMARKS.md).
if [ -z "$FILTER" ] || grep -qE "$FILTER" <<<"floor"; then
  echo "== floor"
  scripts/floor.sh | tee "$OUT/floor.txt" || true
fi

[ -n "${DANMAKU_BENCH_NO_TABLE:-}" ] || python3 scripts/bench_table.py "$OUT" BENCHMARKS.md
