# shellcheck shell=bash disable=SC2034
# Shared by up.sh, down.sh and roll.sh: where the local deployment keeps its state,
# its ports, and how its processes are started, found and stopped. Sourced, not run.
#
# Every process started writes its PID to a file in $LOCAL_DIR; down.sh stops exactly
# those (and only when the PID still runs the program it was started as).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_DIR=${DANMAKU_LOCAL_DIR:-$ROOT/target/local}
# The balancer: wss:// and https:// on LB_PORT, its statistics page on LB_PORT + 1.
LB_PORT=${DANMAKU_LB_PORT:-8443}
# Gateways on GW_BASE + 1 … GW_BASE + GATEWAYS; Redis on REDIS_BASE + 1 … + 3.
GW_BASE=${DANMAKU_GW_BASE:-8080}
REDIS_BASE=${DANMAKU_REDIS_BASE:-7000}
GATEWAYS=${DANMAKU_GATEWAYS:-3}
# A drain's `reconnect` → close time, and how long a stop may take before SIGKILL.
DRAIN_MS=${DANMAKU_DRAIN_MS:-2000}
STOP_TIMEOUT_S=$(( DRAIN_MS / 1000 + 10 ))

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# pid_of NAME: the PID recorded for NAME, if that process still runs the program
# recorded with it (a PID the kernel gave to someone else is not ours).
pid_of() {
  local file="$LOCAL_DIR/$1.pid" pid exe
  [[ -f $file ]] || return 1
  read -r pid exe < "$file" || return 1
  [[ -n $pid && -d /proc/$pid ]] || return 1
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] || return 1
  echo "$pid"
}

# record NAME PID PROGRAM: remembers PID, started to run PROGRAM, as NAME (the program
# is given, not read from /proc: a child may not have exec'd it yet).
record() {
  echo "$2 $(readlink -f "$(command -v "$3")")" > "$LOCAL_DIR/$1.pid"
}

# wait_for SECONDS COMMAND…: runs COMMAND every 100 ms until it succeeds.
wait_for() {
  local deadline=$(( SECONDS + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 0.1
  done
}

# exited PID: whether PID has exited. A zombie has: the processes up.sh starts outlive
# it and are reaped by init, which may take a second or more to do so.
exited() {
  local stat
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 0
  stat=${stat##*) }
  [[ ${stat%% *} == Z ]]
}

# stop NAME: SIGTERM, then waits for the exit (SIGKILL after STOP_TIMEOUT_S). Prints
# how long the process took to exit, in ms.
stop() {
  local pid start
  pid=$(pid_of "$1") || { rm -f "$LOCAL_DIR/$1.pid"; return 0; }
  start=$(date +%s%N)
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "$STOP_TIMEOUT_S" exited "$pid"; then
    say "$1 (pid $pid) still runs after ${STOP_TIMEOUT_S}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 exited "$pid" || true
  fi
  rm -f "$LOCAL_DIR/$1.pid"
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}

ready() { curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz"; }

# start_gateway I: starts gateway I with the arguments up.sh saved, waits until it is
# ready (at most 30 s).
start_gateway() {
  local i=$1 port=$(( GW_BASE + $1 )) args
  mapfile -t args < "$LOCAL_DIR/gateway.args"
  (
    set -a
    # shellcheck source=/dev/null
    . "$LOCAL_DIR/credentials.env"
    DANMAKU_DRAIN_MS=$DRAIN_MS
    exec "${args[0]}" --listen "127.0.0.1:$port" --gateway-id "g$i" "${args[@]:1}"
  ) >> "$LOCAL_DIR/g$i.log" 2>&1 < /dev/null &
  record "g$i" $! "${args[0]}"
  wait_for 30 ready "$port" || die "gateway g$i did not become ready on port $port (see $LOCAL_DIR/g$i.log)"
}
