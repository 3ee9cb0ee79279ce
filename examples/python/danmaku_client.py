#!/usr/bin/env python3
"""A small danmaku client in Python, using the `websockets` package.

As a library: `Room` joins one room, reads frames (several JSON objects separated by
newlines), tracks the room's epoch and last seq, drops duplicates, and rejoins with
`since` after a reconnect so that nothing is missed.

As a program, `check` runs an end-to-end scenario against a gateway and exits 0 only
if every event arrives once and in order, across a reconnect:

    python3 danmaku_client.py check --ws-url ws://127.0.0.1:8080/ws \
        --http-url http://127.0.0.1:8080 --token TOKEN --api-key KEY --room demo
"""

import argparse
import asyncio
import json
import sys
import urllib.request

try:
    from websockets.asyncio.client import connect
except ImportError:  # websockets < 13
    from websockets import connect

TIMEOUT = 10.0


class Room:
    """One viewer of one room: connect, join (or resume), receive events in order."""

    def __init__(self, ws_url, token, room):
        self.url = f"{ws_url}?token={token}"
        self.room = room
        self.epoch = None
        self.last_seq = 0
        self.ws = None
        self.pending = []
        self.next_id = 1

    async def open(self):
        """Connects and joins; resumes from the last seen seq when there is one.
        Returns the `joined` reply."""
        self.ws = await connect(self.url, subprotocols=["danmaku.v1"])
        hello = await self._next()
        if hello.get("type") != "hello":
            raise RuntimeError(f"expected hello, got {hello}")
        cmd = {"type": "join", "id": self._id(), "room": self.room}
        if self.epoch is not None:
            cmd["since"] = {"epoch": self.epoch, "seq": self.last_seq}
        await self.ws.send(json.dumps(cmd))
        while True:
            msg = await self._next()
            if msg.get("type") == "joined":
                break
            if msg.get("type") == "error":
                raise RuntimeError(f"join failed: {msg}")
        if not msg["recovered"]:
            # Continuity restarts at the room's current seq; the snapshot has the state.
            self.last_seq = msg["seq"]
        self.epoch = msg["epoch"]
        return msg

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def next_event(self):
        """The next new sequenced event of the room (duplicates are dropped)."""
        while True:
            msg = await self._next()
            if msg.get("type") == "reset":
                self.epoch, self.last_seq = msg["epoch"], msg["seq"]
                continue
            if msg.get("type") != "event" or msg.get("room") != self.room:
                continue
            if msg["seq"] <= self.last_seq:
                continue
            self.last_seq = msg["seq"]
            return msg

    def _id(self):
        self.next_id += 1
        return self.next_id

    async def _next(self):
        while not self.pending:
            frame = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
            self.pending.extend(json.loads(line) for line in frame.split("\n") if line.strip())
        return self.pending.pop(0)


def publish(http_url, api_key, room, data):
    """Publishes one event through the HTTP API; returns its seq."""
    req = urllib.request.Request(
        f"{http_url}/v1/rooms/{room}/events",
        data=json.dumps({"kind": "comment", "data": data}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())["seq"]


async def check(args):
    pub = lambda i: publish(args.http_url, args.api_key, args.room, {"i": i})
    viewer = Room(args.ws_url, args.token, args.room)

    joined = await viewer.open()
    if joined["recovered"] or joined["seq"] != 0:
        return f"a fresh join should be seq 0, not recovered: {joined}"
    for i in range(1, 21):
        pub(i)
    for i in range(1, 21):
        ev = await viewer.next_event()
        if ev["seq"] != i or ev["data"]["i"] != i:
            return f"live: expected seq {i}, got {ev}"

    await viewer.close()
    for i in range(21, 36):
        pub(i)  # published while the viewer is away
    joined = await viewer.open()
    if not joined["recovered"]:
        return f"resume should recover from seq 20: {joined}"
    for i in range(21, 36):
        ev = await viewer.next_event()
        if ev["seq"] != i or ev["data"]["i"] != i:
            return f"resume: expected seq {i}, got {ev}"
    pub(36)
    ev = await viewer.next_event()
    if ev["seq"] != 36:
        return f"live after resume: expected seq 36, got {ev}"
    await viewer.close()
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="join, receive in order, resume after a reconnect")
    for flag in ("--ws-url", "--http-url", "--token", "--api-key", "--room"):
        c.add_argument(flag, required=True)
    args = parser.parse_args()
    try:
        problem = asyncio.run(asyncio.wait_for(check(args), 60))
    except Exception as e:  # noqa: BLE001 - report any failure as a failed check
        problem = f"{type(e).__name__}: {e}"
    if problem:
        print(f"FAIL: {problem}")
        sys.exit(1)
    print("OK: 36 events received once and in order, across a reconnect with since")


if __name__ == "__main__":
    main()
