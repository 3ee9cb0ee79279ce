#!/usr/bin/env bash
# WebSocket conformance: the Autobahn TestSuite's cases, run by `kosoku` (a Python 3
# runner of the original case files), against the gateway's diagnostic echo — the same
# handshake, fast path, WebSocket stack and limits as /ws.
#
#   scripts/conformance.sh [gateway binary]   # default: target/debug/danmaku-gateway
#
# Runs cases 1–7 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8, close)
# and the 9.x cases with messages up to 256 KiB (9.1.1–2, 9.2.1–2, and 9.7/9.8: many
# small messages); the larger 9.x cases need messages of 1 MiB and more, beyond the
# largest message the gateway accepts (`--max-frame-bytes` is at most 1 MiB). 12.x and 13.x
# test permessage-deflate, which the gateway does not offer (an event is encoded once
# and shared by every viewer; compressing per connection would undo that). Passes
# when every case is OK, NON-STRICT or INFORMATIONAL. The report (index.html and one
# JSON per case) lands in target/conformance/.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/gateway.sh
. scripts/lib/gateway.sh
pip_tool kosoku kosoku==0.1.0
KOSOKU=$(command -v kosoku || echo "python3 -m kosoku._cli")

OUT=target/conformance
rm -rf "$OUT" && mkdir -p "$OUT"

start_gateway "${1:-target/debug/danmaku-gateway}" "$OUT" \
  --jwt-secret conformance-secret-0123456789 --api-keys conformance \
  --anonymous --diagnostic-echo --max-frame-bytes 1048576
ADDR=$GATEWAY_ADDR

$KOSOKU "ws://$ADDR/diagnostic/echo" -p 2 -o "$OUT" \
  -i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' \
  -i '9.1.1' -i '9.1.2' -i '9.2.1' -i '9.2.2' -i '9.7.*' -i '9.8.*'
