#!/usr/bin/env bash
# The room script's cost per publish, in CPU instructions of redis-server counted by
# valgrind's callgrind: unlike wall-clock figures on a shared 2-core machine it
# repeats to within about 0.3 %, so a change to lua/room.lua can be measured before
# it is benchmarked end to end.
#
#   scripts/script_cost.sh                 # the working tree's room.lua
#   N=5000 scripts/script_cost.sh          # more calls per measurement
#
# Prints instructions per call for an event without and with an idempotency key (a
# fresh key per call, so both sequence). The settings written into the script are the
# defaults'. Needs valgrind and redis-server (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind redis-server; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind redis-server >/dev/null; }
done
N=${N:-3000}
PORT=${PORT:-18793}
work=$(mktemp -d)
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# The settings as publisher.rs writes them: history 1000, age 600 s, TTL 3600 s,
# PUBLISH (not Cluster), idempotency keys kept 600 s.
sed 's/= SETTINGS$/= 1000, "600000", "3600000", false, "600"/' \
  fanout/src/redis/lua/room.lua > "$work/room.lua"
data='{"text":"a comment of an ordinary length, about eighty bytes of JSON in all"}'

measure() { # label, then the arguments after the script's sha
  local label=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no \
    redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
    > "$work/log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
  local sha
  sha=$(redis-cli -p "$PORT" script load "$(cat "$work/room.lua")")
  # Warm up (the room exists, the stream is at its length), then count N calls only.
  local r=()
  [ -z "${RANDOM_KEYS:-}" ] || r=(-r 1000000000)
  redis-benchmark -p "$PORT" -n 1000 -c 4 -q "${r[@]}" EVALSHA "$sha" "$@" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  redis-benchmark -p "$PORT" -n "$N" -c 4 -q "${r[@]}" EVALSHA "$sha" "$@" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" || true
  local ir
  ir=$(grep -h "^summary:" "$work"/cg.*.1 | awk '{print $2}')
  rm -f "$work"/cg.*
  echo "$label: $((ir / N)) instructions per call"
}

now=$(date +%s%3N)
window=$((now / 450000))
measure "event, no key" 1 "{dm:cost}" event "$now" e1 "$window" comment "$data" "" ""
RANDOM_KEYS=1 measure "event, a new key each call" 1 "{dm:cost}" event "$now" e1 "$window" \
  comment "$data" "k-__rand_int__" 0123456789abcdef
