#!/usr/bin/env python3
"""Rewrites the load-test table of BENCHMARKS.md from bench-results/*.json."""
import json
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

out, md = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
# The ordinary-client shapes (`own-…` and `ordinary-…`, one file per round) have a
# table of their own.
ORDINARY = re.compile(r"^(own|ordinary)-(.+?)(?:-r(\d+))?$")
rows, ordinary = [], {}
for f in sorted(out.glob("*.json")):
    j = json.loads(f.read_text())
    m = ORDINARY.match(f.stem)
    if m:
        ordinary.setdefault((m.group(2), m.group(1)), []).append(j)
        continue
    gws = j.get("gateways") or []
    cpu_m = max((g.get("cpu_s_per_million_deliveries", 0) for g in gws), default=0)
    per_conn = max((g.get("rss_growth_per_connection_bytes", 0) for g in gws), default=0)
    e, c = j["events"], j["connections"]
    pub = j.get("publish") or {}
    on_time = f'{100 * pub.get("on_time", 0) / pub["scheduled"]:.0f}%' if pub.get("scheduled") else "—"
    rows.append(
        f'| {f.stem} | {c["established"]}/{c["target"]} | {j["ramp_s"]} | {j["first_render_ms"]["p99"]} '
        f'| {j["latency_ms"]["p50"]} | {j["latency_ms"]["p99"]} | {e["delivered"]} | {e["lost"]} | {e["duplicated"]}/{e["reordered"]} '
        f'| {j["deliveries_per_s"]:.0f} | {j["events_per_frame"]} | {on_time} | {cpu_m:.2f} | {per_conn} '
        f'| {j["loadgen"]["cpu_us_per_delivery"]:.2f} | {"PASS" if j["pass"] else "FAIL"} |'
    )
cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
floor = out / "floor.txt"
floor_line = (
    "Kernel floor in the same run (`scripts/floor.sh`: plain C, 5,000 connections for a delivery, all or 50 a round; "
    "10,000 opened with 2,000 in flight for a connection; the huge room's and the Zipf scenario's shapes for latency): "
    + "; ".join(l.strip() for l in floor.read_text().splitlines() if l.strip())
    + "."
    if floor.exists()
    else ""
)
table = "\n".join([
    "<!-- bench:begin -->",
    f"Run by `scripts/bench.sh` on {time.strftime('%Y-%m-%d')}, {cpu} cores, {platform.system()} {platform.release()}; "
    "gateway and load generator on the same machine; in-memory backend, except the `redis-` scenarios (one local redis-server).",
    *([ "", floor_line ] if floor_line else []),
    "",
    "| scenario | joined | ramp s | first render p99 ms | latency p50 ms | latency p99 ms | delivered | lost | dup/reord "
    "| deliveries/s | events/frame | on time | gateway CPU-s per M deliveries | RSS growth B/conn | generator µs/delivery | verdict |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    *rows,
    "<!-- bench:end -->",
])


def listed(values, fmt="{:.2f}"):
    """Each round's value, and their median when there are several."""
    shown = " · ".join(fmt.format(v) for v in values)
    return shown if len(values) < 2 else f"{shown} (median {fmt.format(statistics.median(values))})"


def ordinary_table(runs):
    lines = [
        "<!-- ordinary:begin -->",
        f"Run by `scripts/bench.sh ordinary` on {time.strftime('%Y-%m-%d')}, {cpu} cores, one local redis-server; "
        "`own`: the load test's epoll readers; `ordinary`: plain tokio-tungstenite clients, one task each, on a "
        "single-threaded runtime in each of 2 processes. Publishers: 8 keep-alive connections, each room on one of "
        "its own, each request waiting for its answer. One value per round.",
        "",
        "| shape | client | latency p50 ms | latency p99 ms | gateway CPU-s per M deliveries | client µs/delivery "
        "| on time | lost/dup | ramp s / connect p99 ms | RSS growth B/conn |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (shape, client), js in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1] != "own")):
        gws = [j.get("gateways") or [] for j in js]
        cpu_m = [sum(g.get("cpu_s_per_million_deliveries", 0) for g in gw) for gw in gws]
        per_conn = [max((g.get("rss_growth_per_connection_bytes", 0) for g in gw), default=0) for gw in gws]
        pubs = [j.get("publish") or {} for j in js]
        on_time = " · ".join(
            f'{100 * p.get("on_time", 0) / p["scheduled"]:.0f}%' if p.get("scheduled") else "—" for p in pubs
        )
        lost = " · ".join(f'{j["events"]["lost"]}/{j["events"]["duplicated"]}' for j in js)
        ramp = " · ".join(f'{j["ramp_s"]} / {j["connect_ms"]["p99"]}' for j in js)
        published = any(p.get("scheduled") for p in pubs)
        lines.append(
            f"| {shape} | {client} "
            f'| {listed([j["latency_ms"]["p50"] for j in js]) if published else "—"} '
            f'| {listed([j["latency_ms"]["p99"] for j in js]) if published else "—"} '
            f'| {listed(cpu_m) if published else "—"} '
            f'| {listed([j["loadgen"]["cpu_us_per_delivery"] for j in js]) if published else "—"} '
            f"| {on_time} | {lost} | {ramp} | {listed(per_conn, '{:.0f}')} |"
        )
    lines.append("<!-- ordinary:end -->")
    return "\n".join(lines)


def replace(text, name, table, heading):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin in text:
        head, rest = text.split(begin, 1)
        return head + table + rest.split(end, 1)[1]
    return text + f"\n## {heading}\n\n" + table + "\n"


text = md.read_text()
if rows:
    text = replace(text, "bench", table, "Load-test scenarios")
    print(table)
if ordinary:
    t = ordinary_table(ordinary)
    text = replace(text, "ordinary", t, "Ordinary clients and the load test's readers, on Redis")
    print(t)
md.write_text(text)
