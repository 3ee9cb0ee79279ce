#!/usr/bin/env python3
"""Viewers that join a room and then never read: the slow consumers of a load test.

Each opens a WebSocket with a 4 KiB receive buffer (so what it does not read backs up
into the gateway at once, not into megabytes of kernel buffers), joins ROOM, reads
its `joined` reply and stops reading. They open one every --every-ms, round robin over
the --url gateways, so while a load test ramps its viewers they land spread over the
room's lanes. All are held for --hold-s seconds after the last one joined, then closed.

    scripts/stalled_viewers.py --url ws://127.0.0.1:18701/ws --room r-0 --count 200
"""

import argparse
import base64
import json
import os
import socket
import sys
import time
import urllib.parse


def open_stalled(url: str, room: str, token: str | None) -> socket.socket:
    u = urllib.parse.urlsplit(url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((u.hostname, u.port or 80))
    path = u.path + (f"?token={token}" if token else "")
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        got += chunk
    if not got.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(got.split(b"\r\n", 1)[0].decode(errors="replace"))
    s.sendall(masked_text(json.dumps({"type": "join", "id": 1, "room": room})))
    rest = got.split(b"\r\n\r\n", 1)[1]
    while b'"type":"joined"' not in rest:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before joined")
        rest += chunk
    return s


def masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", action="append", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--every-ms", type=float, default=10.0)
    p.add_argument("--hold-s", type=float, default=30.0)
    p.add_argument("--token")
    a = p.parse_args()
    held, failed = [], 0
    for i in range(a.count):
        try:
            held.append(open_stalled(a.url[i % len(a.url)], a.room, a.token))
        except OSError as e:
            failed += 1
            print(f"stalled viewer {i}: {e}", file=sys.stderr)
        time.sleep(a.every_ms / 1000)
    print(f"{len(held)} stalled viewers joined {a.room} ({failed} failed); holding {a.hold_s} s",
          flush=True)
    time.sleep(a.hold_s)
    for s in held:
        s.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
