# shellcheck shell=bash
# Shared by the scripts that check one gateway from outside (scripts/schema_check.sh,
# scripts/conformance.sh): a Python tool installed when missing, and a throwaway
# gateway on an ephemeral port. Source it from the repository's root.

# pip_tool COMMAND SPEC: installs SPEC from PyPI unless COMMAND is on the PATH (into the
# system Python when pip refuses an externally managed one).
pip_tool() {
  command -v "$1" >/dev/null && return 0
  python3 -m pip install --quiet "$2" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "$2"
}

# start_gateway BINARY OUT ARGS…: starts BINARY (built first if missing) on 127.0.0.1:0
# with ARGS, its output in OUT/gateway.out and OUT/gateway.log; sets GATEWAY_PID and
# GATEWAY_ADDR (host:port, read from its first line), and stops it on exit. Fails,
# showing its log, if it does not print its address within 10 s.
start_gateway() {
  local gw=$1 out=$2
  shift 2
  [ -x "$gw" ] || cargo build -q -p danmaku-gateway
  "$gw" --listen 127.0.0.1:0 --log warn "$@" > "$out/gateway.out" 2> "$out/gateway.log" &
  GATEWAY_PID=$!
  trap 'kill "$GATEWAY_PID" 2>/dev/null || true; wait "$GATEWAY_PID" 2>/dev/null || true' EXIT
  GATEWAY_ADDR=""
  for _ in $(seq 1 100); do
    GATEWAY_ADDR=$(head -1 "$out/gateway.out" 2>/dev/null | awk '{print $NF}')
    [ -n "$GATEWAY_ADDR" ] && return 0
    sleep 0.1
  done
  echo "the gateway did not start" >&2
  cat "$out/gateway.log" >&2
  return 1
}
