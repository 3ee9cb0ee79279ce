// The gateway's retention dashboard. It shows nothing until an API key is typed; the
// key stays in this tab (sessionStorage) and goes in the Authorization header of every
// API request — never in a URL. Every 2 s it reads the rooms (GET /v1/rooms), the
// selected room's analytics (GET /v1/rooms/{room}/analytics) and the gateway's metrics
// (GET /metrics), and draws them as inline SVG. It also joins the selected room as an
// anonymous viewer with the web SDK, to measure how late events arrive.
//
// What it drew is in window.dashboard (and in data-* attributes on the charts), so a
// test can compare it with the API.
import { DanmakuClient } from "/demo/danmaku.js";

const REFRESH_MS = 2000;
const KEY_ITEM = "danmaku.dashboard.key";
const LAG_WINDOW_MS = 60_000;
const OPS_POINTS = 150; // 5 minutes of 2 s refreshes
const TIMELINE_MINUTES = 120;
const RETENTION_MINUTES = 30;
const MARKS = [
  ["after_1m", "after 1 min", 1],
  ["after_5m", "after 5 min", 5],
  ["after_15m", "after 15 min", 15],
];
const KINDS = ["comments", "likes", "votes", "answers", "entries", "claims"];
const PALETTE = ["#7c5cff", "#32d583", "#fdb022", "#38bdf8", "#ff3d6e", "#f472b6", "#a3e635", "#fb923c"];

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  key: sessionStorage.getItem(KEY_ITEM) ?? "",
  room: params.get("room") || "",
  timer: undefined,
  generation: 0,
  metrics: undefined, // the last scrape: { at, sums }
  ops: { deliveries: [], resets: [], skips: [] },
};

// Exposed for the browser test (and the curious).
window.dashboard = {
  refreshes: 0,
  room: state.room,
  rooms: [],
  analytics: undefined,
  drawn: {},
  ops: state.ops,
  lag: { state: "idle", p99: undefined, samples: 0, offsetMs: undefined },
  errors: [],
};

// --- helpers ------------------------------------------------------------------------------
const NS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.setAttribute(k, String(v));
  for (const child of children) node.append(child);
  return node;
}
function h(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}
const fmt = new Intl.NumberFormat("en");
const num = (n) => fmt.format(n);
function seconds(v) {
  if (v >= 3600) return `${(v / 3600).toFixed(1)} h`;
  if (v >= 60) return `${Math.floor(v / 60)}m ${String(Math.round(v % 60)).padStart(2, "0")}s`;
  return `${v.toFixed(v < 10 ? 1 : 0)} s`;
}
function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}
/** About 5 round ticks from 0 to at least `max`. */
function ticks(max) {
  if (!(max > 0)) return { top: 1, step: 1 };
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => m >= raw) ?? 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}
const short = (v) => (v >= 1e6 ? `${+(v / 1e6).toFixed(1)}M` : v >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : `${+v.toFixed(2)}`);
function empty(container, text) {
  container.replaceChildren(h("div", { className: "empty", textContent: text }));
}
function setStat(id, value, text) {
  const el = $(id);
  el.dataset.value = String(value);
  el.textContent = text ?? num(value);
}

// --- charts -----------------------------------------------------------------------------
const PAD = { left: 44, right: 12, top: 10, bottom: 30 };

/** A frame with a y axis (0..top) and its grid; returns the scales. */
function frame(svgEl, width, height, yMax, yFormat, yLabel) {
  const { top, step } = ticks(yMax);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  for (let v = 0; v <= top + step / 2; v += step) {
    svgEl.append(s("line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v) }));
    svgEl.append(s("text", { class: "tick", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, yFormat(v)));
  }
  if (yLabel) {
    svgEl.append(
      s("text", { class: "axis-label", transform: `translate(11 ${PAD.top + plotH / 2}) rotate(-90)`, "text-anchor": "middle" }, yLabel),
    );
  }
  svgEl.append(s("line", { class: "axis", x1: PAD.left, x2: width - PAD.right, y1: y(0), y2: y(0) }));
  return { y, plotW, plotH, top };
}

function canvas(container, height) {
  const width = Math.max(240, Math.round(container.clientWidth || 400));
  const svgEl = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  return { svgEl, width, height };
}

/**
 * A time series: `series` is [{ name, color, points: [{ x: ms, y }] }], all on one time
 * axis. Each point is a circle with data-x and data-y.
 */
function lineChart(container, series, { yLabel, xLabel = "minute", height = 190, yFormat = short, xFormat = clock, area = true } = {}) {
  const all = series.flatMap((se) => se.points);
  if (all.length === 0) return empty(container, "no data yet");
  const { svgEl, width } = canvas(container, height);
  const yMax = Math.max(...all.map((p) => p.y));
  const { y, plotW } = frame(svgEl, width, height, yMax, yFormat, yLabel);
  let x0 = Math.min(...all.map((p) => p.x));
  let x1 = Math.max(...all.map((p) => p.x));
  if (x0 === x1) [x0, x1] = [x0 - 60_000, x1 + 60_000];
  const x = (v) => PAD.left + ((v - x0) / (x1 - x0)) * plotW;
  const n = Math.min(6, Math.max(2, Math.floor(plotW / 90)));
  for (let i = 0; i <= n; i++) {
    const v = x0 + ((x1 - x0) * i) / n;
    svgEl.append(s("text", { class: "tick", x: x(v), y: height - PAD.bottom + 15, "text-anchor": "middle" }, xFormat(v)));
  }
  svgEl.append(s("text", { class: "axis-label", x: PAD.left + plotW / 2, y: height - 2, "text-anchor": "middle" }, xLabel));
  for (const se of series) {
    const pts = [...se.points].sort((a, b) => a.x - b.x);
    if (pts.length === 0) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join("");
    if (area && series.length === 1) {
      const last = pts.at(-1);
      svgEl.append(s("path", { class: "area", fill: se.color, d: `${d}L${x(last.x).toFixed(1)},${y(0)}L${x(pts[0].x).toFixed(1)},${y(0)}Z` }));
    }
    svgEl.append(s("path", { class: "line", stroke: se.color, d }));
    for (const p of pts) {
      const dot = s("circle", { class: "dot", cx: x(p.x), cy: y(p.y), r: pts.length > 60 ? 1.5 : 3, fill: se.color, "data-x": p.x, "data-y": p.y, "data-series": se.name });
      dot.append(s("title", {}, `${se.name} ${xFormat(p.x)}: ${num(p.y)}`));
      svgEl.append(dot);
    }
  }
  container.replaceChildren(svgEl);
}

/** The `q` quantile of a histogram, at the middle of its bucket (as the gateway reads it). */
function quantile(buckets, q) {
  const total = buckets.reduce((a, b) => a + b.count, 0);
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const b of buckets) {
    seen += b.count;
    if (seen >= rank) return b.to - b.from <= 1 && Number.isInteger(b.from) ? b.from : (b.from + b.to) / 2;
  }
  return buckets.at(-1).from;
}

/**
 * A histogram: one bar per non-empty bucket (buckets widen with the value, so bars are
 * drawn side by side, labelled with their bounds), the percentiles marked.
 */
function histogramChart(container, buckets, marks, { unit, format }) {
  const count = buckets.reduce((a, b) => a + b.count, 0);
  container.dataset.count = String(count);
  container.dataset.buckets = String(buckets.length);
  for (const [name, v] of Object.entries(marks)) container.dataset[name] = String(v);
  if (buckets.length === 0) return empty(container, "no data yet");
  const height = 210;
  const { svgEl, width } = canvas(container, height);
  const { y, plotW } = frame(svgEl, width, height, Math.max(...buckets.map((b) => b.count)), short, "viewers");
  const slot = plotW / buckets.length;
  const gap = Math.min(4, slot * 0.2);
  const every = Math.ceil(buckets.length / Math.max(1, Math.floor(plotW / 48)));
  buckets.forEach((b, i) => {
    const bx = PAD.left + i * slot;
    const bar = s("rect", {
      class: "bar", x: bx + gap / 2, width: Math.max(1, slot - gap), y: y(b.count), height: y(0) - y(b.count),
      "data-from": b.from, "data-to": b.to, "data-count": b.count,
    });
    bar.append(s("title", {}, `${format(b.from)}–${format(b.to)} ${unit}: ${num(b.count)}`));
    svgEl.append(bar);
    if (i % every === 0) {
      svgEl.append(s("text", { class: "tick", x: bx + slot / 2, y: height - PAD.bottom + 15, "text-anchor": "middle" }, format(b.from)));
    }
  });
  svgEl.append(s("text", { class: "axis-label", x: PAD.left + plotW / 2, y: height - 2, "text-anchor": "middle" }, unit));
  // Percentile markers, placed within their bucket.
  const colors = { p50: "#32d583", p90: "#fdb022", p99: "#ff3d6e" };
  let label = 0;
  for (const [name, v] of Object.entries(marks)) {
    let i = buckets.findIndex((b) => v >= b.from && v < b.to);
    if (i < 0) i = v < buckets[0].from ? 0 : buckets.length - 1;
    const b = buckets[i];
    const within = b.to > b.from ? Math.min(1, Math.max(0, (v - b.from) / (b.to - b.from))) : 0.5;
    const mx = PAD.left + (i + within) * slot;
    svgEl.append(s("line", { class: "marker", x1: mx, x2: mx, y1: PAD.top, y2: y(0), stroke: colors[name] ?? "#fff", "data-mark": name, "data-value": v }));
    // Labels to the right of their line, or to its left near the right edge.
    const right = mx < PAD.left + plotW * 0.75;
    svgEl.append(
      s("text", { class: "marker-label", x: right ? mx + 4 : mx - 4, y: PAD.top + 11 + 13 * label++, fill: colors[name] ?? "#fff", "text-anchor": right ? "start" : "end" }, `${name} ${format(v)}`),
    );
  }
  container.replaceChildren(svgEl);
}

/** Retention: one panel per mark (1, 5, 15 min), a line per variant over join minutes. */
function retentionChart(container, variants, now) {
  const names = Object.keys(variants);
  const drawn = {};
  if (names.every((n) => variants[n].length === 0)) {
    empty(container, "no visits yet");
    return drawn;
  }
  const legend = h("div", { className: "legend" });
  names.forEach((name, i) => {
    const rows = variants[name];
    const joined = rows.reduce((a, r) => a + r.joined, 0);
    legend.append(h("span", { className: "key", title: `${num(joined)} visits` }, swatch(PALETTE[i % PALETTE.length]), `${name} `, h("small", { textContent: `${num(joined)} visits` })));
    drawn[name] = rows.map((r) => ({ minute: r.minute, joined: r.joined, ...Object.fromEntries(MARKS.map(([k]) => [k, r[k]])) }));
  });
  const panels = h("div", { className: "panels" });
  for (const [mark, title] of MARKS) {
    const plot = h("div", { className: "plot" });
    plot.dataset.mark = mark;
    panels.append(h("div", { className: "panel" }, h("h4", { textContent: title }), plot));
  }
  // In the document first: the panels are drawn at their laid-out width.
  container.replaceChildren(legend, panels);
  for (const plot of panels.querySelectorAll(".plot")) {
    const [mark, , minutes] = MARKS.find(([k]) => k === plot.dataset.mark);
    drawRetentionPanel(plot, names, variants, mark, minutes, now);
  }
  return drawn;
}

function swatch(color) {
  const el = h("i", { className: "swatch" });
  el.style.background = color;
  return el;
}

function drawRetentionPanel(plot, names, variants, mark, minutes, now) {
  const height = 190;
  const { svgEl, width } = canvas(plot, height);
  const { y, plotW } = frame(svgEl, width, height, 1, (v) => `${Math.round(v * 100)}%`, "still present");
  const all = names.flatMap((n) => variants[n].map((r) => r.minute));
  let x0 = Math.min(...all);
  let x1 = Math.max(...all);
  if (x0 === x1) [x0, x1] = [x0 - 60_000, x1 + 60_000];
  const x = (v) => PAD.left + 8 + ((v - x0) / (x1 - x0)) * (plotW - 16);
  const n = Math.min(4, Math.max(1, Math.floor(plotW / 80)));
  for (let i = 0; i <= n; i++) {
    const v = x0 + ((x1 - x0) * i) / n;
    svgEl.append(s("text", { class: "tick", x: x(v), y: height - PAD.bottom + 15, "text-anchor": "middle" }, clock(v)));
  }
  svgEl.append(s("text", { class: "axis-label", x: PAD.left + plotW / 2, y: height - 2, "text-anchor": "middle" }, "join minute"));
  names.forEach((name, i) => {
    const color = PALETTE[i % PALETTE.length];
    const rows = variants[name];
    // Consecutive join minutes are joined by the line; a minute without joins breaks it.
    const d = rows
      .map((r, j) => `${j && r.minute - rows[j - 1].minute <= 60_000 ? "L" : "M"}${x(r.minute).toFixed(1)},${y(r[mark]).toFixed(1)}`)
      .join("");
    svgEl.append(s("path", { class: "line", stroke: color, d }));
    for (const r of rows) {
      // A minute whose mark has not passed yet for all its visits is still filling in.
      const pending = r.minute + 60_000 + minutes * 60_000 > now;
      const dot = s("circle", {
        class: pending ? "dot pending" : "dot", cx: x(r.minute), cy: y(r[mark]), r: 3.5,
        fill: pending ? "none" : color, stroke: color,
        "data-variant": name, "data-minute": r.minute, "data-mark": mark, "data-share": r[mark],
        "data-joined": r.joined, "data-present": r.present?.[mark] ?? "",
      });
      dot.append(s("title", {}, `${name}, joined ${clock(r.minute)}: ${Math.round(r[mark] * 1000) / 10}% of ${num(r.joined)}${pending ? " (still filling in)" : ""}`));
      svgEl.append(dot);
    }
  });
  plot.replaceChildren(svgEl);
}

function kindsChart(container, interactions) {
  const max = Math.max(1, ...KINDS.map((k) => interactions[k] ?? 0));
  const rows = KINDS.map((k) => {
    const n = interactions[k] ?? 0;
    const fill = h("i");
    fill.style.width = `${(n / max) * 100}%`;
    const row = h("div", { className: "kind" }, h("span", { textContent: k }), h("div", { className: "track" }, fill), h("b", { textContent: num(n) }));
    row.dataset.kind = k;
    row.dataset.count = String(n);
    return row;
  });
  container.replaceChildren(...rows);
}

// --- the API --------------------------------------------------------------------------
class Unauthorized extends Error {}

async function api(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${state.key}` }, cache: "no-store" });
  if (res.status === 401) throw new Unauthorized("wrong key");
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(`${path}: ${res.status} ${body?.error?.message ?? body?.message ?? ""}`.trim());
    err.status = res.status;
    throw err;
  }
  return body;
}

/** Prometheus text → the sum of every series per metric name. */
function parseMetrics(text) {
  const sums = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) sums.set(m[1], (sums.get(m[1]) ?? 0) + v);
  }
  return sums;
}

async function scrape() {
  const res = await fetch("/metrics", { cache: "no-store" });
  if (!res.ok) throw new Error(`/metrics: ${res.status}`);
  return { at: Date.now(), sums: parseMetrics(await res.text()) };
}

// --- rendering ------------------------------------------------------------------------
function renderRooms(rooms) {
  const box = $("rooms");
  box.dataset.count = String(rooms.length);
  $("rooms-count").textContent = rooms.length ? `top ${rooms.length}` : "";
  if (rooms.length === 0) return empty(box, "no room has viewers");
  const max = Math.max(1, ...rooms.map((r) => r.online));
  const table = h("table");
  table.append(h("thead", {}, h("tr", {}, h("th", { textContent: "room" }), h("th", { textContent: "online" }), h("th", { textContent: "seq", className: "num" }))));
  const body = h("tbody");
  for (const r of rooms) {
    const fill = h("i");
    fill.style.width = `${(r.online / max) * 100}%`;
    const tr = h(
      "tr",
      { className: r.room === state.room ? "selected" : "", title: `select ${r.room}` },
      h("td", { className: "name", textContent: r.room }),
      h("td", { className: "online" }, h("div", { className: "track" }, fill), h("b", { textContent: num(r.online) })),
      h("td", { className: "num dim", textContent: num(r.seq) }),
    );
    tr.dataset.room = r.room;
    tr.dataset.online = String(r.online);
    tr.dataset.seq = String(r.seq);
    tr.addEventListener("click", () => select(r.room));
    body.append(tr);
  }
  table.append(body);
  box.replaceChildren(table);
}

function renderAnalytics(doc) {
  const drawn = {};
  $("stats-room").textContent = doc.room;
  // The analytics clock is the wall clock, unless a load test speeds it up.
  const scaled = Math.abs(doc.now - Date.now()) > 60_000;
  $("stats-at").textContent = `as of ${new Date(doc.now).toLocaleTimeString()}${scaled ? " (analytics clock)" : ""}`;
  const { viewers, recovery, dwell_s: dwell, first_render_ms: render } = doc;
  setStat("stat-online", viewers.online);
  setStat("stat-joins", viewers.joins);
  setStat("stat-unique", viewers.unique);
  const rec = $("stat-recovery");
  rec.dataset.resumes = String(recovery.resumes);
  rec.dataset.recovered = String(recovery.recovered);
  rec.textContent = `${num(recovery.resumes)} / ${num(recovery.recovered)}`;
  setStat("stat-dwell", dwell.mean, dwell.count ? seconds(dwell.mean) : "–");
  setStat("stat-render", render.p50, render.count ? `${num(render.p50)} ms` : "–");

  const timeline = doc.timeline.slice(-TIMELINE_MINUTES);
  drawn.online = timeline.map((t) => ({ minute: t.minute, online: t.online }));
  drawn.interactions = timeline.map((t) => ({ minute: t.minute, interactions: t.interactions }));
  lineChart($("chart-online"), [{ name: "online", color: "#38bdf8", points: timeline.map((t) => ({ x: t.minute, y: t.online })) }], { yLabel: "viewers" });
  lineChart($("chart-interactions"), [{ name: "interactions", color: "#ff3d6e", points: timeline.map((t) => ({ x: t.minute, y: t.interactions })) }], { yLabel: "per minute" });
  $("chart-online").dataset.points = String(timeline.length);
  $("chart-interactions").dataset.points = String(timeline.length);

  const renderMarks = { p50: render.p50, p90: quantile(render.histogram, 0.9), p99: render.p99 };
  histogramChart($("chart-first-render"), render.histogram, renderMarks, { unit: "ms", format: (v) => short(v) });
  const dwellMarks = { p50: dwell.p50, p90: dwell.p90, p99: quantile(dwell.histogram, 0.99) };
  histogramChart($("chart-dwell"), dwell.histogram, dwellMarks, { unit: "seconds", format: (v) => (v >= 60 ? `${+(v / 60).toFixed(1)}m` : `${+v.toFixed(1)}s`) });
  drawn.firstRender = { histogram: render.histogram, ...renderMarks };
  drawn.dwell = { histogram: dwell.histogram, ...dwellMarks };

  const variants = Object.keys(doc.by_variant ?? {}).length
    ? Object.fromEntries(Object.entries(doc.by_variant).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, (v.retention ?? []).slice(-RETENTION_MINUTES)]))
    : { all: doc.retention.slice(-RETENTION_MINUTES) };
  drawn.retention = retentionChart($("chart-retention"), variants, doc.now);
  $("chart-retention").dataset.variants = Object.keys(variants).join(",");
  kindsChart($("kinds"), doc.interactions);
  drawn.kinds = { ...doc.interactions };
  window.dashboard.drawn = drawn;
}

function analyticsUnavailable(message) {
  for (const id of ["chart-online", "chart-interactions", "chart-first-render", "chart-dwell", "chart-retention", "kinds"]) {
    empty($(id), message);
  }
}

function renderOps(scrapeNow) {
  const prev = state.metrics;
  state.metrics = scrapeNow;
  const get = (name) => scrapeNow.sums.get(name) ?? 0;
  const at = scrapeNow.at;
  if (prev !== undefined && at > prev.at) {
    const delta = get("danmaku_deliveries_total") - (prev.sums.get("danmaku_deliveries_total") ?? 0);
    push(state.ops.deliveries, { x: at, y: Math.max(0, (delta * 1000) / (at - prev.at)) });
  }
  push(state.ops.resets, { x: at, y: get("danmaku_resets_total") });
  push(state.ops.skips, { x: at, y: get("danmaku_skipped_total") });
  const rate = state.ops.deliveries.at(-1)?.y;
  setStat("op-deliveries", rate ?? 0, rate === undefined ? "…" : short(Math.round(rate * 10) / 10));
  setStat("op-resets", get("danmaku_resets_total"));
  setStat("op-skips", get("danmaku_skipped_total"));
  spark($("chart-deliveries"), state.ops.deliveries, "#38bdf8");
  spark($("chart-resets"), state.ops.resets, "#fdb022");
  spark($("chart-skips"), state.ops.skips, "#a78bfa");
}

function push(series, point) {
  series.push(point);
  if (series.length > OPS_POINTS) series.shift();
}

function spark(container, points, color) {
  if (points.length === 0) return empty(container, "…");
  lineChart(container, [{ name: container.id.replace("chart-", ""), color, points }], { height: 110, xLabel: "", xFormat: (v) => new Date(v).toLocaleTimeString([], { hour12: false }) });
}

// --- delivery lag: the page is a viewer of the selected room ------------------------------
const lag = { client: undefined, room: undefined, offset: undefined, bestRtt: Infinity, samples: [], series: [] };

function p99(values) {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)];
}

function lagState(text) {
  window.dashboard.lag.state = text;
}

function startViewer() {
  if (lag.client !== undefined) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const client = new DanmakuClient({ url });
  lag.client = client;
  client.on("hello", (hello) => {
    // Until a ping measures better: the hello left the server a little before now.
    if (lag.offset === undefined) lag.offset = Date.now() - hello.server_time;
    window.dashboard.lag.offsetMs = lag.offset;
  });
  client.on("state", (st) => {
    if (st === "failed") lagState("refused");
    else if (st !== "open") lagState(st);
    renderLag();
  });
  client.on("error", (e) => {
    if (e.code === "unauthorized" || e.code === "forbidden") lagState("refused");
    renderLag();
  });
  client.connect().then(calibrate, () => {});
  joinViewer();
}

async function calibrate() {
  for (let i = 0; i < 3 && lag.client?.state === "open"; i++) {
    try {
      const { serverTime, rttMs } = await lag.client.ping();
      if (rttMs <= lag.bestRtt) {
        lag.bestRtt = rttMs;
        lag.offset = Date.now() - rttMs / 2 - serverTime;
        window.dashboard.lag.offsetMs = lag.offset;
      }
    } catch {
      return;
    }
  }
}

function joinViewer() {
  const client = lag.client;
  if (client === undefined || lag.room === state.room || !state.room) return;
  const previous = lag.room;
  lag.room = state.room;
  lag.samples = [];
  if (previous !== undefined) client.leave(previous).catch(() => {});
  const room = state.room;
  client
    .join(room, {
      onEvent(event) {
        if (lag.room !== room || lag.offset === undefined) return;
        lag.samples.push({ at: Date.now(), lag: Math.max(0, Date.now() - event.ts - lag.offset) });
      },
    })
    .then(
      () => {
        if (lag.room === room) lagState("joined");
        renderLag();
      },
      (e) => {
        if (lag.room === room) lagState(e.code === "unauthorized" || e.code === "forbidden" || e.code === "closed" ? "refused" : "error");
        renderLag();
      },
    );
}

function renderLag() {
  const now = Date.now();
  lag.samples = lag.samples.filter((x) => now - x.at <= LAG_WINDOW_MS);
  const value = p99(lag.samples.map((x) => x.lag));
  const info = window.dashboard.lag;
  info.samples = lag.samples.length;
  info.p99 = value;
  const el = $("op-lag");
  if (info.state === "refused" || info.state === "error") {
    el.dataset.value = "n/a";
    el.textContent = "n/a";
    el.title = "the gateway does not let this page join as an anonymous viewer";
  } else if (value === undefined) {
    el.dataset.value = "";
    el.textContent = info.state === "joined" ? "no events" : "…";
    el.title = "no event reached this page in the last 60 s";
  } else {
    el.dataset.value = String(value);
    el.textContent = `${Math.round(value)} ms`;
    el.title = `${lag.samples.length} events in the last 60 s`;
  }
  if (value !== undefined) push(lag.series, { x: now, y: value });
  spark($("chart-lag"), lag.series, "#32d583");
}

// --- the loop -----------------------------------------------------------------------------
function setStatus(kind, text) {
  const el = $("status");
  el.className = `status ${kind}`;
  el.querySelector("span").textContent = text;
}

async function refresh(generation) {
  if (generation !== state.generation) return;
  try {
    const [rooms, doc, metrics] = await Promise.all([
      api("/v1/rooms?sort=online&limit=50"),
      state.room ? api(`/v1/rooms/${encodeURIComponent(state.room)}/analytics`).catch((e) => e) : undefined,
      scrape().catch((e) => e),
    ]);
    if (generation !== state.generation) return;
    if (doc instanceof Unauthorized) throw doc;
    window.dashboard.rooms = rooms.rooms;
    if (!state.room && rooms.rooms.length > 0) {
      select(rooms.rooms[0].room);
      return;
    }
    renderRooms(rooms.rooms);
    $("room-title").textContent = state.room ? `room ${state.room}` : "";
    if (doc instanceof Error) {
      analyticsUnavailable(doc.status === 404 ? "the analytics API is not on this gateway" : doc.message);
      window.dashboard.errors.push(doc.message);
    } else if (doc !== undefined) {
      window.dashboard.analytics = doc;
      renderAnalytics(doc);
    }
    if (metrics instanceof Error) window.dashboard.errors.push(metrics.message);
    else renderOps(metrics);
    startViewer();
    joinViewer();
    renderLag();
    window.dashboard.refreshes++;
    document.body.dataset.refreshes = String(window.dashboard.refreshes);
    document.body.dataset.auth = "ok";
    setStatus("ok", `updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    if (e instanceof Unauthorized) return signOut("wrong key");
    window.dashboard.errors.push(String(e.message ?? e));
    setStatus("error", String(e.message ?? e));
  }
  if (generation === state.generation) state.timer = setTimeout(() => refresh(generation), REFRESH_MS);
}

function restart() {
  clearTimeout(state.timer);
  state.generation++;
  refresh(state.generation);
}

function select(room) {
  if (room === state.room) return;
  state.room = room;
  window.dashboard.room = room;
  window.dashboard.analytics = undefined;
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  history.replaceState(null, "", url);
  restart();
}

function signIn(key) {
  state.key = key;
  sessionStorage.setItem(KEY_ITEM, key);
  document.body.dataset.auth = "checking";
  $("key-error").textContent = "";
  $("key-form").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  setStatus("", "loading…");
  restart();
}

function signOut(reason) {
  clearTimeout(state.timer);
  state.generation++;
  state.key = "";
  sessionStorage.removeItem(KEY_ITEM);
  document.body.dataset.auth = reason ? "wrong" : "none";
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("key-form").hidden = false;
  $("key-error").textContent = reason ? "Wrong key: the gateway refused it (401). Try again." : "";
  $("key").value = "";
  $("key").focus();
  setStatus("", reason ? "wrong key" : "signed out");
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("key").value.trim();
  if (key) signIn(key);
});
$("sign-out").addEventListener("click", () => signOut());

if (state.key) signIn(state.key);
else signOut();

// A key in the URL is refused: keys do not belong in URLs (logs, history, Referer).
if (params.has("key")) {
  const url = new URL(location.href);
  url.searchParams.delete("key");
  history.replaceState(null, "", url);
  $("key-error").textContent = "A key in the URL is not accepted: type it here.";
}
