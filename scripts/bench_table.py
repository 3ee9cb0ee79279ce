#!/usr/bin/env python3
"""Rewrites the load-test table of BENCHMARKS.md from bench-results/*.json."""
import json
import pathlib
import platform
import subprocess
import sys
import time

out, md = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = []
for f in sorted(out.glob("*.json")):
    j = json.loads(f.read_text())
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
text = md.read_text()
if "<!-- bench:begin -->" in text:
    head, rest = text.split("<!-- bench:begin -->", 1)
    tail = rest.split("<!-- bench:end -->", 1)[1]
    text = head + table + tail
else:
    text += "\n## Load-test scenarios\n\n" + table + "\n"
md.write_text(text)
print(table)
