#!/usr/bin/env bash
# A 20,000-viewer room with 1 % slow viewers, spread over its lanes, on two gateways
# sharing one Redis: what the slow viewers cost the gateways, by the gateways' own
# account (danmaku_outbound_bytes) and by RSS, against the same room without them.
#
#   scripts/slow_room.sh                  # 19,800 readers + 200 stalled, then 20,000 readers
#   SLOW_QUEUE_BYTES=1048576 scripts/slow_room.sh
#
# The stalled viewers (scripts/stalled_viewers.py) join during the load test's ramp, one
# every 15 ms, so they land over the room's lanes of 64; they never read after `joined`.
# Results: slow-room-results/{stalled,none}.{json,txt} and the sampled metrics in
# slow-room-results/*.samples (one line per second: held bytes, largest, RSS of each
# gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -n "${DANMAKU_BENCH_GW:-}" ] || cargo build --release -q -p danmaku-gateway -p danmaku-loadtest
GW=${DANMAKU_BENCH_GW:-target/release/danmaku-gateway}
LT=${DANMAKU_BENCH_LT:-target/release/danmaku-loadtest}
QUEUE=${SLOW_QUEUE_BYTES:-131072}
SNDBUF=${SLOW_SEND_BUFFER:-65536}
VIEWERS=${SLOW_VIEWERS:-20000}
STALLED=$((VIEWERS / 100))
SECRET=bench-secret-0123456789abcdef
KEY=bench-key
OUT=slow-room-results
mkdir -p "$OUT/redis"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

redis-server --port 18791 --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT/redis" > "$OUT/redis/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p 18791 ping >/dev/null 2>&1 && break; sleep 0.1; done

metric() { # port name
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2}'
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

scenario() { # name stalled
  local name=$1 stalled=$2 gws=() sampler stall=""
  for i in 1 2; do
    "$GW" --listen "127.0.0.1:$((18710 + i))" --gateway-id "s$i" --jwt-secret "$SECRET" \
      --api-keys "$KEY" --anonymous true --max-conns-per-ip 100000 --log warn \
      --redis-url redis://127.0.0.1:18791 --outbound-queue-bytes "$QUEUE" --send-buffer-bytes "$SNDBUF" \
      > "$OUT/$name-gateway-$i.log" 2>&1 &
    gws+=($!); PIDS+=($!)
  done
  for i in 1 2; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((18710 + i))/healthz" >/dev/null && break; sleep 0.1; done
  done
  local rss0=$(( $(rss_kib "${gws[0]}") + $(rss_kib "${gws[1]}") ))
  (
    while kill -0 "${gws[0]}" 2>/dev/null; do
      echo "$(( $(metric 18711 danmaku_outbound_bytes) + $(metric 18712 danmaku_outbound_bytes) )) \
$(metric 18711 danmaku_outbound_bytes_max) $(metric 18712 danmaku_outbound_bytes_max) \
$(rss_kib "${gws[0]}") $(rss_kib "${gws[1]}")"
      sleep 1
    done
  ) > "$OUT/$name.samples" 2>/dev/null &
  sampler=$!
  local room="slow$RANDOM"
  if [ "$stalled" -gt 0 ]; then
    python3 scripts/stalled_viewers.py --url ws://127.0.0.1:18711/ws --url ws://127.0.0.1:18712/ws \
      --room "$room-0" --count "$stalled" --every-ms 15 --hold-s $(( ${SLOW_DURATION_S:-60} + 30 )) > "$OUT/$name-stalled.txt" 2>&1 &
    stall=$!; PIDS+=($stall)
  fi
  local ramp=$(( (VIEWERS - stalled) * 1000 / (stalled > 0 ? stalled * 15 : 3000) ))
  "$LT" fanout --viewers $((VIEWERS - stalled)) --rooms 1 --rate "${SLOW_RATE:-2}" --size "${SLOW_SIZE:-4000}" --duration-s "${SLOW_DURATION_S:-60}" \
    --procs 2 --ramp-rate "$ramp" --room-prefix "$room" \
    --url ws://127.0.0.1:18711/ws --url ws://127.0.0.1:18712/ws \
    --gateway-pid "${gws[0]}" --gateway-pid "${gws[1]}" \
    --api-key "$KEY" --jwt-secret "$SECRET" --quiet --json "$OUT/$name.json" | tee "$OUT/$name.txt" || true
  local peak=$(sort -n "$OUT/$name.samples" | tail -1)
  local rss1=$(( $(rss_kib "${gws[0]}") + $(rss_kib "${gws[1]}") ))
  local closes=$(( $(metric 18711 danmaku_slow_closes_total) + $(metric 18712 danmaku_slow_closes_total) ))
  local drops=$(( $(metric 18711 danmaku_queue_drops_total) + $(metric 18712 danmaku_queue_drops_total) ))
  echo "$name: stalled $stalled, closed 4008: $closes, queue drops: $drops, RSS $((rss0 / 1024)) -> $((rss1 / 1024)) MiB;" \
    "peak held bytes / largest per gateway / RSS KiB per gateway: $peak" | tee -a "$OUT/summary.txt"
  [ -z "$stall" ] || kill "$stall" 2>/dev/null || true
  kill "${gws[@]}" 2>/dev/null || true
  wait "${gws[@]}" 2>/dev/null || true
  kill "$sampler" 2>/dev/null || true
  sleep 1
}

: > "$OUT/summary.txt"
scenario stalled "$STALLED"
scenario none 0
echo "bound per stalled viewer: 2 x ($QUEUE + 64 KiB) + 1 MiB + 64 KiB; $STALLED stalled:" \
  "$(( STALLED * (2 * (QUEUE + 65536) + 1048576 + 65536) / 1048576 )) MiB" | tee -a "$OUT/summary.txt"
