#!/usr/bin/env bash
# A rolling restart of the local gateways, one at a time: SIGTERM (the gateway
# answers /readyz 503, so the balancer sends no one new; it tells its viewers
# `reconnect`, they resume on another gateway through the balancer), wait for the exit,
# start it again (a new binary, if DANMAKU_BIN or the build changed), wait until it is
# ready and the balancer sends to it again, then the next.
#
#   deploy/local/roll.sh
#
# Prints one JSON line per gateway: {"gateway":"g1","drain_ms":…,"ready_ms":…}.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"
[[ -f $LOCAL_DIR/gateway.args ]] || die "nothing to roll: deploy/local/up.sh first"
if [[ -n ${DANMAKU_BIN:-} ]]; then
  # A new binary for the restarted gateways.
  sed -i "1s|.*|$(realpath "$DANMAKU_BIN")|" "$LOCAL_DIR/gateway.args"
fi
in_rotation() {
  curl -fsS "http://127.0.0.1:$(( LB_PORT + 1 ))/;csv" | grep -q "^gateways,g$1,.*,UP,"
}
for i in $(seq 1 "$GATEWAYS"); do
  pid_of "g$i" > /dev/null || die "gateway g$i is not running"
  drain_ms=$(stop "g$i")
  start=$(date +%s%N)
  start_gateway "$i"
  wait_for 30 in_rotation "$i" || die "the balancer did not take g$i back"
  ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '{"gateway":"g%d","drain_ms":%d,"ready_ms":%d}\n' "$i" "$drain_ms" "$ready_ms"
done
