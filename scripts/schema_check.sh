#!/usr/bin/env bash
# The HTTP API against its OpenAPI document: schemathesis (PyPI) generates requests
# from gateway/openapi.json — valid and invalid bodies, parameters and paths — and
# sends them to a live gateway, which must never answer a server error, and must
# answer every request with a status, a content type and a body the document gives
# for it.
#
#   scripts/schema_check.sh [gateway binary]   # default: target/debug/danmaku-gateway
#
# Bounded: at most 30 cases per operation (under three minutes on two cores). /ws is
# left out (schemathesis does not speak WebSocket; the handshake has tests of its own).
# Exits non-zero on any failure; the report lands in target/schema-check/.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/gateway.sh
. scripts/lib/gateway.sh
pip_tool schemathesis 'schemathesis>=4,<5'
SCHEMATHESIS=$(command -v schemathesis || echo "python3 -m schemathesis.cli")

OUT=target/schema-check
rm -rf "$OUT" && mkdir -p "$OUT"
KEY=schema-check-key

# The key's quota raised out of the way: a 429 would be conformant, and hide the rest.
start_gateway "${1:-target/debug/danmaku-gateway}" "$OUT" \
  --jwt-secret schema-check-secret-0123456789 --api-keys "$KEY" \
  --api-rate-per-s 1000000 --api-burst 1000000
ADDR=$GATEWAY_ADDR

status=0
$SCHEMATHESIS run gateway/openapi.json \
  --url "http://$ADDR" \
  --header "Authorization: Bearer $KEY" \
  --exclude-path /ws \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 30 \
  --seed "${SCHEMA_CHECK_SEED:-1}" \
  --request-timeout 10 \
  --report junit --report-dir "$OUT" \
  || status=$?

if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
  echo "the gateway exited during the run" >&2
  cat "$OUT/gateway.log" >&2
  status=1
fi
exit "$status"
