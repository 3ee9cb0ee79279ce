#!/usr/bin/env bash
# The kernel's floor per delivery on this machine: a C program writes one 110-byte
# message to each of 5,000 loopback TCP connections, 10 times a second (the huge-room
# scenario's shape), and a second process reads them with epoll. See
# loadtest/floor/floor.c. Prints the sender's and the receiver's CPU per delivery.
#
#   scripts/floor.sh [connections rounds bytes gap_ms]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=target/floor
mkdir -p target
cc -O2 -o "$out" loadtest/floor/floor.c
"$out" "${1:-5000}" "${2:-40}" "${3:-110}" "${4:-100}"
