#!/usr/bin/env bash
# Stops what deploy/local/up.sh started, by the PIDs it recorded, in order: the
# balancer, then the gateways (each drains: SIGTERM, `reconnect`, exit), then Redis.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"
[[ -d $LOCAL_DIR ]] || exit 0
stop haproxy > /dev/null
# The gateways drain together.
for f in "$LOCAL_DIR"/g*.pid; do
  [[ -e $f ]] && stop "$(basename "$f" .pid)" > /dev/null &
done
wait
for f in "$LOCAL_DIR"/redis-*.pid; do
  [[ -e $f ]] && stop "$(basename "$f" .pid)" > /dev/null
done
say "stopped (state kept in $LOCAL_DIR)"
