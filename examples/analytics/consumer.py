#!/usr/bin/env python3
"""Reads the gateway's analytics stream (`<prefix>:analytics` in Redis) — one JSON entry
per join, leave and interaction — and aggregates it, the way a pipeline (a ClickHouse
or Kafka connector) would take it from there. Python's standard library only.

    python3 examples/analytics/consumer.py --redis redis://127.0.0.1:6379 --key dm:analytics
        follows the stream (XREAD BLOCK) and prints each entry as it comes;
    ... --check
        reads every entry there is, checks each against the schema (version 1) and
        prints the totals as one JSON object; exits 1 if any entry is malformed.

On a Redis Cluster, give any node: a MOVED answer is followed to the key's node.
"""
import argparse
import json
import socket
import sys
from urllib.parse import urlparse

SCHEMA = {
    "join": {"v", "type", "room", "user", "conn", "at", "variant", "resumed", "recovered",
             "visit_start", "first_render_ms"},
    "leave": {"v", "type", "room", "user", "conn", "at", "variant"},
    "interaction": {"v", "type", "room", "kind", "at", "variant"},
}
KINDS = {"comments", "likes", "votes", "answers", "entries", "claims"}


class Redis:
    """A minimal RESP2 client: one connection, commands in, replies out."""

    def __init__(self, host, port, path=None):
        self.addr = path or (host, port)
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self.reply()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError(f"unexpected reply {line!r}")


class RedisError(Exception):
    pass


def connect(url, key):
    u = urlparse(url)
    if u.scheme == "redis+unix":
        return Redis(None, None, path=u.path)
    r = Redis(u.hostname or "127.0.0.1", u.port or 6379)
    try:
        r.command("XLEN", key)
    except RedisError as e:
        parts = str(e).split()
        if parts and parts[0] == "MOVED":
            host, port = parts[2].rsplit(":", 1)
            return Redis(host, int(port))
        raise
    return r


def entries(r, key, start, block_ms=None):
    """Yields (id, entry JSON text) from `start` on; stops at the end unless blocking."""
    last = start
    while True:
        if block_ms is None:
            batch = r.command("XRANGE", key, "(" + last if last != "0" else "-", "+", "COUNT", 1000)
            if not batch:
                return
            for entry_id, fields in batch:
                last = entry_id.decode()
                yield last, dict(zip(fields[::2], fields[1::2])).get(b"e", b"").decode()
        else:
            got = r.command("XREAD", "BLOCK", block_ms, "COUNT", 1000, "STREAMS", key, last)
            for _stream, batch in got or []:
                for entry_id, fields in batch:
                    last = entry_id.decode()
                    yield last, dict(zip(fields[::2], fields[1::2])).get(b"e", b"").decode()


def problems_of(entry):
    """What is wrong with one parsed entry (empty when it matches the schema)."""
    if not isinstance(entry, dict):
        return ["not an object"]
    kind = entry.get("type")
    if entry.get("v") != 1:
        return [f"schema version {entry.get('v')!r}, this consumer reads 1"]
    if kind not in SCHEMA:
        return [f"unknown type {kind!r}"]
    missing = SCHEMA[kind] - entry.keys()
    out = [f"missing {sorted(missing)}"] if missing else []
    if not isinstance(entry.get("at"), int):
        out.append("`at` is not an integer")
    if kind == "interaction" and entry.get("kind") not in KINDS:
        out.append(f"unknown interaction kind {entry.get('kind')!r}")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis", default="redis://127.0.0.1:6379",
                   help="redis://host:port or redis+unix:///path; several comma-separated for "
                        "gateways that shard over standalone servers (the stream is on one of them)")
    p.add_argument("--key", default="dm:analytics", help="<prefix>:analytics (prefix: --redis-prefix)")
    p.add_argument("--check", action="store_true", help="read everything, check it, print totals")
    a = p.parse_args()
    servers = [connect(url, a.key) for url in a.redis.split(",")]
    # Cluster nodes given several times all lead to the key's node: read it once.
    servers = list({r.addr: r for r in servers}.values())
    holding = [r for r in servers if r.command("EXISTS", a.key) == 1] or servers[:1]
    if not a.check:
        for entry_id, text in entries(holding[0], a.key, "$", block_ms=5000):
            print(entry_id, text, flush=True)
        return 0
    totals = {"entries": 0, "joins": 0, "resumes": 0, "recovered": 0, "leaves": 0,
              "interactions": {}, "users": set(), "rooms": set()}
    bad = []
    for entry_id, text in (e for r in holding for e in entries(r, a.key, "0")):
        totals["entries"] += 1
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as e:
            bad.append(f"{entry_id}: not JSON ({e})")
            continue
        problems = problems_of(entry)
        if problems:
            bad.append(f"{entry_id}: {'; '.join(problems)}")
            continue
        totals["rooms"].add(entry["room"])
        if entry["type"] == "join":
            totals["joins"] += 1
            totals["users"].add((entry["room"], entry["user"]))
            totals["resumes"] += entry["resumed"]
            totals["recovered"] += entry["recovered"]
        elif entry["type"] == "leave":
            totals["leaves"] += 1
        else:
            k = entry["kind"]
            totals["interactions"][k] = totals["interactions"].get(k, 0) + 1
    totals["users"] = len(totals["users"])
    totals["rooms"] = sorted(totals["rooms"])
    print(json.dumps(totals, sort_keys=True))
    for b in bad[:20]:
        print("malformed:", b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
