#!/usr/bin/env bash
# The kernel's floor on this machine, in plain C (loadtest/floor/), for two shapes:
#
#  - per delivery (floor.c): one 110-byte message written to each of 5,000 loopback TCP
#    connections, 10 times a second (the huge-room scenario's shape), and read by a
#    second process with epoll. Prints the sender's and the receiver's CPU per delivery.
#    Then the many-rooms shape: the same 5,000 connections as 100 rooms of 50, one room
#    every 2 ms.
#  - per connection (ramp_floor.c): 10,000 connections opened with 2,000 in flight, each
#    exchanging the upgrade, `hello`, `join` and `joined` (the ramp scenario's shape).
#    Prints each side's CPU per connection and the time to first render.
#  - latency (latency_floor.c): events written by 2 threads and read by one epoll
#    thread, timed from when each was due: one room of 5,000 at 10 events/s (the huge
#    room), then 10,000 connections in 1,000 Zipf-sized rooms at 1,000 events/s (the
#    Zipf scenario), 20 s each. Prints the latency percentiles over every delivery.
#
#   scripts/floor.sh [connections rounds bytes gap_ms]   # the delivery floor's shape
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p target
cc -O2 -o target/floor loadtest/floor/floor.c
cc -O2 -o target/ramp_floor loadtest/floor/ramp_floor.c
cc -O2 -pthread -o target/latency_floor loadtest/floor/latency_floor.c -lm
target/floor "${1:-5000}" "${2:-40}" "${3:-110}" "${4:-100}"
target/floor 5000 5000 110 2 50
target/ramp_floor 10000 2000
target/latency_floor 5000 1 10 20
target/latency_floor 10000 1000 1000 20
