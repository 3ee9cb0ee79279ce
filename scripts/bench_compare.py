#!/usr/bin/env python3
"""Prints a before/after table of two `scripts/bench.sh` result folders.

    scripts/bench_compare.py bench-before bench-after

One row per scenario found in both: first-render p99, latency p50 and p99, lost
events, the gateway's CPU-s per million deliveries and RSS growth per connection,
before -> after, with the after/before ratio of the figures where lower is better.
"""
import json
import pathlib
import sys


def figures(path):
    j = json.loads(path.read_text())
    gws = j.get("gateways") or []
    return {
        "first render p99 ms": j["first_render_ms"]["p99"],
        "latency p50 ms": j["latency_ms"]["p50"],
        "latency p99 ms": j["latency_ms"]["p99"],
        "lost": j["events"]["lost"],
        "CPU-s/M": max((g.get("cpu_s_per_million_deliveries", 0) for g in gws), default=0),
        "B/conn": max((g.get("rss_growth_per_connection_bytes", 0) for g in gws), default=0),
    }


def cell(before, after):
    fmt = lambda v: f"{v:.2f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)
    if not before or not after:
        return f"{fmt(before)} → {fmt(after)}"
    return f"{fmt(before)} → {fmt(after)} ({after / before:.2f}×)"


def main():
    before_dir, after_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    names = sorted(p.stem for p in before_dir.glob("*.json") if (after_dir / p.name).exists())
    columns = list(figures(before_dir / f"{names[0]}.json")) if names else []
    print("| scenario | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in names:
        b, a = figures(before_dir / f"{name}.json"), figures(after_dir / f"{name}.json")
        print(f"| {name} | " + " | ".join(cell(b[c], a[c]) for c in columns) + " |")
    for name in ("redis-publish-rate",):
        bt, at = before_dir / f"{name}.txt", after_dir / f"{name}.txt"
        if bt.exists() and at.exists():
            print(f"\n{name}: before `{bt.read_text().strip()}`; after `{at.read_text().strip()}`")


if __name__ == "__main__":
    main()
