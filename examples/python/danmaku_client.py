#!/usr/bin/env python3
"""A small danmaku v1 client (see protocol/README.md), usable as a library and a CLI.

Library use::

    client = DanmakuClient("ws://127.0.0.1:8080/ws", token=jwt)
    await client.connect()                  # offers `danmaku.v1`, reads `hello`
    joined = await client.join("shop-42")   # or since=client.position("shop-42")
    event = await client.next_event()       # duplicates (seq <= last seen) are dropped
    await client.close()                    # room positions survive for a later resume

CLI (an end-to-end check of ordering and resume; exit 0 only if everything holds)::

    python3 danmaku_client.py check --ws-url ws://HOST:PORT/ws --http-url http://HOST:PORT \\
        --token TOKEN --api-key KEY --room ROOM

Needs Python 3.11+ and the `websockets` package; everything else is the stdlib.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any

try:  # websockets >= 13: the asyncio implementation.
    from websockets.asyncio.client import connect as ws_connect
except ImportError:  # Older releases.
    from websockets import connect as ws_connect  # type: ignore[no-redef]
from websockets.exceptions import WebSocketException

SUBPROTOCOL = "danmaku.v1"
DEFAULT_TIMEOUT = 10.0

Message = dict[str, Any]


class ProtocolError(Exception):
    """The server did something the protocol does not allow, or did not answer in time."""


@dataclass
class RoomPosition:
    """Where continuity stands in one room: its epoch and the last seq seen."""

    epoch: str
    seq: int

    def as_since(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seq": self.seq}


class DanmakuClient:
    """One WebSocket connection at a time; room positions are kept across reconnects."""

    def __init__(self, url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        if token is not None:
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}token={urllib.parse.quote(token, safe='')}"
        self.url = url
        self.timeout = timeout
        self.ws: Any = None
        self.hello: Message | None = None
        self.rooms: dict[str, RoomPosition] = {}
        self.duplicates_dropped = 0
        self._pending: deque[Message] = deque()
        self._next_id = 1

    # -- connection ---------------------------------------------------------------

    async def connect(self) -> Message:
        """Opens the connection, checks the subprotocol and returns `hello`."""
        self._pending.clear()
        self.ws = await asyncio.wait_for(
            ws_connect(self.url, subprotocols=[SUBPROTOCOL], max_size=None),
            self.timeout,
        )
        if self.ws.subprotocol != SUBPROTOCOL:
            raise ProtocolError(f"server selected subprotocol {self.ws.subprotocol!r}")
        hello = await self.recv()
        if hello.get("type") != "hello":
            raise ProtocolError(f"expected hello, got {hello}")
        self.hello = hello
        return hello

    async def close(self) -> None:
        if self.ws is not None:
            await asyncio.wait_for(self.ws.close(), self.timeout)
            self.ws = None

    async def __aenter__(self) -> DanmakuClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending ------------------------------------------------------------------

    async def send(self, cmd: Message) -> int:
        """Sends one command with a fresh `id`; returns the id."""
        cmd = dict(cmd, id=self._next_id)
        self._next_id += 1
        await self.ws.send(json.dumps(cmd, ensure_ascii=False))
        return cmd["id"]

    async def request(self, cmd: Message) -> Message:
        """Sends a command and waits for its reply; other messages stay queued, in order."""
        cmd_id = await self.send(cmd)
        return await asyncio.wait_for(self._take_reply(cmd_id), self.timeout)

    async def _take_reply(self, cmd_id: int) -> Message:
        scanned = 0
        while True:
            for i in range(scanned, len(self._pending)):
                if self._pending[i].get("id") == cmd_id:
                    msg = self._pending[i]
                    del self._pending[i]
                    return msg
            scanned = len(self._pending)
            await self._read_frame()

    def position(self, room: str) -> dict[str, Any] | None:
        """The `since` to resume `room` with, or None if the room was never joined."""
        pos = self.rooms.get(room)
        return pos.as_since() if pos else None

    async def join(self, room: str, since: dict[str, Any] | None = None) -> Message:
        """Joins `room`, optionally resuming from `since {epoch, seq}`; returns `joined`."""
        cmd: Message = {"type": "join", "room": room}
        if since is not None:
            cmd["since"] = since
        reply = await self.request(cmd)
        if reply.get("type") != "joined":
            raise ProtocolError(f"join {room!r} failed: {reply}")
        if reply.get("recovered"):
            # Events since+1..joined.seq follow; continuity continues from `since`.
            self.rooms[room] = RoomPosition(since["epoch"], since["seq"])  # type: ignore[index]
        else:
            # The snapshot covers everything up to joined.seq; live events follow it.
            self.rooms[room] = RoomPosition(reply["epoch"], reply["seq"])
        return reply

    async def leave(self, room: str) -> Message:
        return await self.request({"type": "leave", "room": room})

    async def comment(self, room: str, text: str) -> Message:
        return await self.request({"type": "comment", "room": room, "text": text})

    async def ping(self) -> Message:
        return await self.request({"type": "ping"})

    # -- receiving ----------------------------------------------------------------

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message (duplicated events dropped), within `timeout` seconds."""
        timeout = self.timeout if timeout is None else timeout
        return await asyncio.wait_for(self._recv(), timeout)

    async def _recv(self) -> Message:
        while True:
            while self._pending:
                msg = self._pending.popleft()
                if self._track(msg):
                    return msg
            await self._read_frame()

    async def _read_frame(self) -> None:
        """Reads one text frame and queues its messages (one JSON object per line)."""
        frame = await self.ws.recv()
        if isinstance(frame, bytes):
            raise ProtocolError("server sent a binary frame")
        for line in frame.split("\n"):
            if line.strip():
                self._pending.append(json.loads(line))

    def _track(self, msg: Message) -> bool:
        """Updates room positions; False for an event already seen (to drop)."""
        kind = msg.get("type")
        room = msg.get("room")
        if kind == "event":
            pos = self.rooms.get(room)
            if pos is not None and pos.epoch == msg["epoch"] and msg["seq"] <= pos.seq:
                self.duplicates_dropped += 1
                return False
            self.rooms[room] = RoomPosition(msg["epoch"], msg["seq"])
        elif kind == "reset":
            # Continuity restarts after the snapshot at reset.seq.
            self.rooms[room] = RoomPosition(msg["epoch"], msg["seq"])
        return True

    async def next_of(self, kind: str, timeout: float | None = None) -> Message:
        """The next message of type `kind`, skipping others (presence, …)."""
        while True:
            msg = await self.recv(timeout)
            if msg.get("type") == kind:
                return msg
            if msg.get("type") == "reset":
                raise ProtocolError(f"unexpected reset while waiting for {kind}: {msg}")

    async def next_event(self, timeout: float | None = None) -> Message:
        return await self.next_of("event", timeout)


# -- HTTP API (backend side) ---------------------------------------------------------


def publish(http_url: str, api_key: str, room: str, kind: str, data: Any,
            timeout: float = DEFAULT_TIMEOUT) -> Message:
    """`POST /v1/rooms/{room}/events`; returns `{"room","epoch","seq"}`."""
    url = f"{http_url.rstrip('/')}/v1/rooms/{urllib.parse.quote(room, safe='')}/events"
    body = json.dumps({"kind": kind, "data": data}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
    })
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise ProtocolError(f"publish to {room!r}: HTTP {e.code}: {e.read().decode(errors='replace')}")


# -- the `check` scenario ------------------------------------------------------------


class CheckFailed(Exception):
    pass


def expect(cond: bool, reason: str) -> None:
    if not cond:
        raise CheckFailed(reason)


async def run_check(args: argparse.Namespace) -> None:
    client = DanmakuClient(args.ws_url, token=args.token, timeout=args.timeout)
    try:
        await check_scenario(client, args)
    finally:
        if client.ws is not None:
            await client.ws.close()


async def check_scenario(client: DanmakuClient, args: argparse.Namespace) -> None:
    room, timeout = args.room, args.timeout

    async def publish_range(first: int, last: int, epoch: str) -> None:
        for i in range(first, last + 1):
            r = await asyncio.to_thread(publish, args.http_url, args.api_key, room,
                                        "comment", {"i": i}, timeout)
            expect(r.get("seq") == i and r.get("epoch") == epoch,
                   f"publish #{i} returned {r}, expected seq {i} in epoch {epoch}")

    async def expect_events(client: DanmakuClient, first: int, last: int) -> None:
        for i in range(first, last + 1):
            try:
                ev = await client.next_event()
            except TimeoutError:
                raise CheckFailed(f"timed out after {timeout}s waiting for seq {i}") from None
            expect(ev.get("room") == room and ev.get("seq") == i
                   and ev.get("data", {}).get("i") == i,
                   f"expected event seq {i} (data.i={i}) in {room!r}, got {ev}")

    # a. A fresh join, 20 published events arrive as seq 1..20 in order.
    await client.connect()
    joined = await client.join(room)
    expect(joined.get("recovered") is False,
           f"fresh join should have recovered:false, got {joined}")
    expect(joined.get("seq") == 0,
           f"room {room!r} is not fresh (seq={joined.get('seq')}); use a new room id")
    epoch = joined["epoch"]
    await publish_range(1, 20, epoch)
    await expect_events(client, 1, 20)
    print(f"a. ok: fresh join, seq 1..20 received in order (epoch {epoch})")

    # b. Disconnect, miss 15 events, resume with `since` and get exactly 21..35, then live.
    since = client.position(room)
    expect(since == {"epoch": epoch, "seq": 20}, f"tracked position is {since}, expected seq 20")
    await client.close()
    await publish_range(21, 35, epoch)
    await client.connect()
    joined = await client.join(room, since=since)
    expect(joined.get("recovered") is True and joined.get("seq") == 35,
           f"resume from seq 20 should give recovered:true and seq 35, got {joined}")
    await expect_events(client, 21, 35)
    await publish_range(36, 36, epoch)
    await expect_events(client, 36, 36)
    expect(client.position(room) == {"epoch": epoch, "seq": 36},
           f"tracked position is {client.position(room)}, expected seq 36")
    # Nothing else sequenced may be waiting (no duplicates past the dedup, no extras).
    try:
        extra = await client.next_event(timeout=0.3)
    except TimeoutError:
        extra = None
    expect(extra is None, f"unexpected extra event after seq 36: {extra}")
    await client.close()
    print("b. ok: resumed with recovered:true, seq 21..35 replayed in order, seq 36 live")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="end-to-end check of ordering and resume")
    check.add_argument("--ws-url", required=True, help="e.g. ws://127.0.0.1:8080/ws")
    check.add_argument("--http-url", required=True, help="e.g. http://127.0.0.1:8080")
    check.add_argument("--token", required=True, help="viewer JWT")
    check.add_argument("--api-key", required=True, help="backend API key")
    check.add_argument("--room", required=True, help="a room id not used before")
    check.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help="seconds any single wait may take (default %(default)s)")
    args = parser.parse_args(argv)

    try:
        # A whole-scenario guard on top of the per-wait timeouts: it can never hang.
        asyncio.run(asyncio.wait_for(run_check(args), args.timeout * 5))
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"FAIL: timed out (each wait may take {args.timeout}s)", file=sys.stderr)
        return 1
    except (ProtocolError, WebSocketException, OSError, ValueError, KeyError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
