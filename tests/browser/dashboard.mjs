// The retention dashboard in a real browser: headless Chromium (Debian's `chromium`,
// driven by playwright-core) opens the gateway's own /dashboard after real viewers
// (WebSockets from Node, `ws`) joined, commented, liked, resumed and left a room with
// an A/B experiment, and while the load-test CLI runs a fanout in another room; it
// checks what an operator would read against the API itself: the load room's online
// count and the deliveries per second while the load runs,
// the rooms by online count, the room's joins, unique viewers, online count, recovery,
// interactions by kind and over time, the first-render and dwell histograms bucket by
// bucket with their percentiles, the retention shares per variant, the gateway's
// operations and a p99 delivery lag. The key is typed, kept for the tab, sent in a
// header and in no URL; a wrong one shows the error and asks again; a `?key=` is not
// taken. The screenshot goes to target/browser/dashboard.png.
//
//   node tests/browser/dashboard.mjs <gateway binary> <load-test binary>
//
// Exits 0 when all hold, 1 (saying why) otherwise. Everything it starts it stops.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { apiClient, startGateway as start, viewerToken } from "../support/gateway.mjs";

const SECRET = "browser-dashboard-secret-0123456789";
const KEY = "browser-dashboard-key";
const ROOM = "shop-42";
const OTHER = "warm-up";
// The analytics clock runs 60 times faster: a minute of dwell is a second.
const TIME_SCALE = 60;
const LOAD_ROOM = "load-0";
const LOAD_VIEWERS = 200;
const gatewayBin = process.argv[2] ?? "target/debug/danmaku-gateway";
const loadtestBin = process.argv[3] ?? "target/debug/danmaku-loadtest";
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.DANMAKU_ARTIFACTS ?? "target/browser";

const token = (sub, name) => viewerToken(SECRET, sub, name);

/** A viewer on a real WebSocket: join, comment, like, resume, leave. */
class Viewer {
  constructor(addr, user) {
    this.addr = addr;
    this.user = user;
    this.nextId = 1;
    this.waiting = new Map();
  }

  async open() {
    const ws = new WebSocket(`ws://${this.addr}/ws?token=${token(this.user, `fan ${this.user}`)}`, "danmaku.v1");
    this.ws = ws;
    ws.on("message", (data) => {
      for (const line of data.toString().split("\n")) {
        if (line.trim() === "") continue;
        const msg = JSON.parse(line);
        const w = msg.id !== undefined ? this.waiting.get(msg.id) : undefined;
        if (w === undefined) continue;
        this.waiting.delete(msg.id);
        if (msg.type === "error") w.reject(new Error(`${this.user}: ${msg.code} ${msg.message}`));
        else w.resolve(msg);
      }
    });
    ws.on("error", () => {});
    await once(ws, "open");
  }

  send(command) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.user}: no reply to ${command.type}`)), 10_000);
      this.waiting.set(id, {
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.ws.send(JSON.stringify({ ...command, id }));
    });
  }

  async join(room, since) {
    this.room = room;
    const joined = await this.send({ type: "join", room, ...(since ? { since } : {}) });
    this.position = { epoch: joined.epoch, seq: joined.seq };
    this.variant = joined.variant;
    return joined;
  }

  comment(text) {
    return this.send({ type: "comment", room: this.room, text });
  }

  like(count) {
    return this.send({ type: "like", room: this.room, count });
  }

  async close() {
    if (this.ws === undefined || this.ws.readyState === WebSocket.CLOSED) return;
    const closed = once(this.ws, "close");
    this.ws.close(1000, "bye");
    await Promise.race([closed, sleep(2000)]);
  }
}

/** What the page drew, read from its DOM (the data-* of what is on screen). */
function readPage() {
  const q = (sel) => [...document.querySelectorAll(sel)];
  const stat = (id) => Number(document.getElementById(id).dataset.value);
  const bars = (id) => q(`#${id} rect.bar`).map((r) => ({ from: Number(r.dataset.from), to: Number(r.dataset.to), count: Number(r.dataset.count) }));
  const markers = (id) => Object.fromEntries(q(`#${id} line.marker`).map((l) => [l.dataset.mark, Number(l.dataset.value)]));
  const retention = {};
  for (const c of q("#chart-retention circle")) {
    const v = (retention[c.dataset.variant] ??= {});
    const row = (v[c.dataset.minute] ??= { minute: Number(c.dataset.minute), joined: Number(c.dataset.joined) });
    row[c.dataset.mark] = Number(c.dataset.share);
  }
  return {
    room: document.getElementById("stats-room").textContent,
    online: stat("stat-online"),
    joins: stat("stat-joins"),
    unique: stat("stat-unique"),
    resumes: Number(document.getElementById("stat-recovery").dataset.resumes),
    recovered: Number(document.getElementById("stat-recovery").dataset.recovered),
    meanDwell: stat("stat-dwell"),
    rooms: q("#rooms tr[data-room]").map((tr) => ({ room: tr.dataset.room, online: Number(tr.dataset.online), seq: Number(tr.dataset.seq) })),
    kinds: Object.fromEntries(q("#kinds [data-kind]").map((k) => [k.dataset.kind, Number(k.dataset.count)])),
    firstRender: { histogram: bars("chart-first-render"), marks: markers("chart-first-render") },
    dwell: { histogram: bars("chart-dwell"), marks: markers("chart-dwell") },
    online_over_time: q("#chart-online circle").map((c) => ({ minute: Number(c.dataset.x), online: Number(c.dataset.y) })),
    interactions_over_time: q("#chart-interactions circle").map((c) => ({ minute: Number(c.dataset.x), interactions: Number(c.dataset.y) })),
    variants: document.getElementById("chart-retention").dataset.variants,
    legend: q("#chart-retention .legend .key").map((k) => k.textContent),
    retention: Object.fromEntries(Object.entries(retention).map(([v, rows]) => [v, Object.values(rows).sort((a, b) => a.minute - b.minute)])),
    doc: window.dashboard.analytics,
  };
}

/** What the page should show for the analytics document `doc`. */
function expected(doc) {
  const last = (rows, n) => rows.slice(-n);
  const shares = (rows) =>
    last(rows, 30).map((r) => ({ minute: r.minute, joined: r.joined, after_1m: r.after_1m, after_5m: r.after_5m, after_15m: r.after_15m }));
  return {
    room: doc.room,
    online: doc.viewers.online,
    joins: doc.viewers.joins,
    unique: doc.viewers.unique,
    resumes: doc.recovery.resumes,
    recovered: doc.recovery.recovered,
    meanDwell: doc.dwell_s.mean,
    kinds: doc.interactions,
    firstRender: doc.first_render_ms.histogram,
    firstRenderMarks: { p50: doc.first_render_ms.p50, p99: doc.first_render_ms.p99 },
    dwell: doc.dwell_s.histogram,
    dwellMarks: { p50: doc.dwell_s.p50, p90: doc.dwell_s.p90 },
    retention: Object.fromEntries(Object.entries(doc.by_variant).map(([v, d]) => [v, shares(d.retention)])),
  };
}

/** The figures that no longer move once the load is over, as the page drew them. */
function settled(page) {
  return {
    room: page.room,
    online: page.online,
    joins: page.joins,
    unique: page.unique,
    resumes: page.resumes,
    recovered: page.recovered,
    meanDwell: page.meanDwell,
    kinds: page.kinds,
    firstRender: page.firstRender.histogram,
    firstRenderMarks: { p50: page.firstRender.marks.p50, p99: page.firstRender.marks.p99 },
    dwell: page.dwell.histogram,
    dwellMarks: { p50: page.dwell.marks.p50, p90: page.dwell.marks.p90 },
    retention: page.retention,
  };
}

/**
 * The load-test CLI's fanout against `addr`: LOAD_VIEWERS viewers in LOAD_ROOM, 20 events
 * a second for `seconds`; `done` resolves with its exit code (0: nothing lost).
 */
function loadRun(addr, seconds) {
  const child = spawn(
    loadtestBin,
    [
      "fanout",
      ...["--url", `ws://${addr}/ws`, "--api-key", KEY, "--jwt-secret", SECRET, "--room-prefix", "load"],
      ...["--viewers", String(LOAD_VIEWERS), "--rooms", "1", "--rate", "20", "--duration-s", String(seconds), "--quiet"],
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const done = once(child, "exit").then(([code]) => code);
  return { done, kill: () => child.kill() };
}

/** A gateway with the test's secret and key, and `extra` flags. */
const startGateway = (extra) => start(gatewayBin, ["--jwt-secret", SECRET, "--api-keys", KEY, ...extra]);

async function main() {
  mkdirSync(artifacts, { recursive: true });
  const gw = startGateway(["--anonymous", "true", "--analytics-time-scale", String(TIME_SCALE)]);
  let strict;
  let browser;
  let load;
  const viewers = [];
  try {
    const addr = await gw.addr;
    const api = apiClient(addr, KEY);
    const viewer = async (user, room) => {
      const v = new Viewer(addr, user);
      viewers.push(v);
      await v.open();
      await v.join(room);
      return v;
    };

    // The room runs an A/B experiment: every viewer is in A or B.
    await api("PUT", `/v1/rooms/${ROOM}/settings`, { experiment: { name: "x", variants: ["A", "B"] } });

    // A busier room elsewhere (the page opens on the busiest; the operator picks ours).
    for (let i = 1; i <= 7; i++) await viewer(`w-${i}`, OTHER);

    // Twelve viewers join; each comments and likes; some leave early, some late, one
    // drops its connection and resumes where it was; four stay.
    const room = [];
    for (let i = 1; i <= 12; i++) {
      room.push(await viewer(`u-${i}`, ROOM));
      await sleep(150);
    }
    assert.ok(new Set(room.map((v) => v.variant)).size === 2, `both variants drawn: ${room.map((v) => v.variant)}`);
    for (const [i, v] of room.entries()) {
      await v.comment(`comment ${i + 1} from ${v.user}`);
      if (i % 2 === 0) await v.comment(`another from ${v.user}, ${i}`);
      await v.like(1 + (i % 3));
    }
    await sleep(1500); // past the 1-minute mark (analytics clock)
    for (const v of room.slice(0, 4)) await v.close();
    // u-5 loses its connection and resumes it: one visit, counted in recovery.
    const resumer = room[4];
    await resumer.close();
    await resumer.open();
    await resumer.join(ROOM, resumer.position);
    await sleep(4500); // past the 5-minute mark
    for (const v of room.slice(4, 8)) await v.close();
    for (const v of room.slice(8)) await v.like(5);
    await sleep(11_000); // past the 15-minute mark for the first minutes' joins

    // --- the page ----------------------------------------------------------------------
    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const pageErrors = [];
    const requests = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("request", (r) => requests.push({ url: r.url(), auth: r.headers().authorization }));
    const base = `http://${addr}/dashboard`;

    // Nothing without a key; a key in the URL is not taken.
    await page.goto(`${base}?key=${KEY}`);
    await page.waitForSelector("#key-form:not([hidden])");
    assert.equal(await page.isHidden("#board"), true, "no figures before a key is typed");
    assert.ok(!page.url().includes(KEY), "the key is taken out of the URL");
    assert.match(await page.textContent("#key-error"), /not accepted/);
    await sleep(500);
    assert.ok(!requests.some((r) => r.url.includes("/v1/")), "no API request with a key from the URL");

    const afterUrlKey = requests.length;

    // A wrong key: the error, and the form again.
    await page.fill("#key", "not-the-key");
    await page.click("#key-form button[type=submit]");
    await page.waitForSelector("body[data-auth=wrong]", { timeout: 10_000 });
    assert.match(await page.textContent("#key-error"), /wrong key/i);
    assert.equal(await page.isVisible("#key-form"), true);
    assert.equal(await page.isHidden("#board"), true);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a wrong key is not kept");

    // The right key: the busiest room first, then ours picked from the list.
    await page.fill("#key", KEY);
    await page.click("#key-form button[type=submit]");
    await page.waitForSelector("body[data-auth=ok]", { timeout: 10_000 });
    await page.waitForSelector(`#rooms tr[data-room="${OTHER}"].selected`, { timeout: 10_000 });
    await page.click(`#rooms tr[data-room="${ROOM}"]`);
    await page.waitForFunction((r) => window.dashboard.analytics?.room === r, ROOM, { timeout: 10_000 });
    assert.ok(page.url().endsWith(`/dashboard?room=${ROOM}`), page.url());

    // A load run while the page watches: the load room's online count as the API lists
    // it, and the deliveries per second the gateway's counters show.
    load = loadRun(addr, 6);
    let loadRows;
    for (let attempt = 0; attempt < 40; attempt++) {
      const listing = await api("GET", "/v1/rooms?sort=online&limit=50");
      loadRows = await page.evaluate(() => [...document.querySelectorAll("#rooms tr[data-room]")].map((tr) => [tr.dataset.room, Number(tr.dataset.online)]));
      const busiest = listing.rooms[0];
      if (busiest?.room === LOAD_ROOM && busiest.online === LOAD_VIEWERS && JSON.stringify(loadRows) === JSON.stringify(listing.rooms.map((r) => [r.room, r.online]))) break;
      loadRows = undefined;
      await sleep(250);
    }
    assert.ok(loadRows !== undefined, "the page lists the load room first, with its viewers, as the API does");
    await page.waitForFunction(() => Number(document.getElementById("op-deliveries").dataset.value) > 0, null, { timeout: 15_000 });
    const underLoad = await page.evaluate(() => Number(document.getElementById("op-deliveries").dataset.value));
    assert.equal(await load.done, 0, "the load run lost nothing");
    load = undefined;

    // Events while the page watches: its delivery lag is measured from them.
    await page.waitForFunction(() => window.dashboard.lag.state === "joined", null, { timeout: 10_000 });
    for (let i = 1; i <= 20; i++) {
      await api("POST", `/v1/rooms/${ROOM}/events`, { kind: "comment", data: { user: "host", name: "host", text: `host says ${i}` } });
      await sleep(50);
    }
    await page.waitForFunction(() => window.dashboard.lag.samples >= 20 && window.dashboard.ops.deliveries.length >= 2, null, { timeout: 15_000 });

    // The page's figures are the API's: wait until a refresh drew what the API says now.
    let drawn;
    let doc;
    let lastDiff = "";
    for (let attempt = 0; attempt < 20; attempt++) {
      doc = await api("GET", `/v1/rooms/${ROOM}/analytics`);
      drawn = await page.evaluate(readPage);
      try {
        assert.deepEqual(settled(drawn), expected(doc));
        lastDiff = "";
        break;
      } catch (e) {
        lastDiff = e.message;
        await sleep(500);
      }
    }
    assert.equal(lastDiff, "", `the page shows the API's figures:\n${lastDiff}`);

    // What was done, as the API and the page both count it.
    assert.equal(drawn.joins, 13, "12 viewers and the page's own visit (the resume continues one)");
    assert.equal(drawn.unique, 13);
    assert.equal(drawn.online, 5, "four viewers stay, and the page");
    assert.deepEqual([drawn.resumes, drawn.recovered], [1, 1]);
    assert.equal(drawn.kinds.comments, 18);
    assert.equal(drawn.kinds.likes, 16, "like commands, each of any count");
    assert.equal(drawn.firstRender.histogram.reduce((a, b) => a + b.count, 0), 13);
    assert.equal(drawn.dwell.histogram.reduce((a, b) => a + b.count, 0), 8, "eight visits ended");
    assert.ok(drawn.meanDwell > 60, `mean dwell in analytics seconds: ${drawn.meanDwell}`);
    assert.ok(drawn.firstRender.marks.p90 !== undefined && drawn.dwell.marks.p99 !== undefined, "p90/p99 marked");
    assert.equal(drawn.variants, "A,B");
    assert.equal(drawn.legend.length, 2);
    const share = (v, mark) => drawn.retention[v].reduce((a, r) => a + r[mark] * r.joined, 0);
    for (const v of ["A", "B"]) {
      assert.ok(drawn.retention[v].length > 0, `retention of ${v}`);
      assert.ok(share(v, "after_1m") >= share(v, "after_5m") && share(v, "after_5m") >= share(v, "after_15m"), `${v} decays`);
    }
    const { present, joined } = ["A", "B"].reduce(
      (a, v) => ({
        present: a.present + doc.by_variant[v].retention.reduce((s, r) => s + r.present.after_15m, 0),
        joined: a.joined + doc.by_variant[v].retention.reduce((s, r) => s + r.joined, 0),
      }),
      { present: 0, joined: 0 },
    );
    assert.ok(present >= 4 && joined >= 12, `the four who stayed are present after 15 min: ${present} of ${joined}`);

    // The rooms list and the timelines are the ones the page fetched.
    const listing = await api("GET", "/v1/rooms?sort=online&limit=50");
    assert.deepEqual(drawn.rooms.map((r) => [r.room, r.online]), listing.rooms.map((r) => [r.room, r.online]));
    assert.deepEqual(drawn.rooms.map((r) => r.room).filter((r) => r !== LOAD_ROOM), [OTHER, ROOM]);
    const timeline = drawn.doc.timeline.slice(-120);
    assert.deepEqual(drawn.online_over_time, timeline.map((t) => ({ minute: t.minute, online: t.online })));
    assert.deepEqual(drawn.interactions_over_time, timeline.map((t) => ({ minute: t.minute, interactions: t.interactions })));
    assert.equal(
      drawn.interactions_over_time.reduce((a, t) => a + t.interactions, 0),
      Object.values(doc.interactions).reduce((a, n) => a + n, 0),
      "the interactions over time add up to the interactions by kind",
    );
    assert.ok(Math.max(...drawn.online_over_time.map((t) => t.online)) >= 12, "the peak is on the chart");

    // Operations: deliveries per second, resets, skips, and the page's p99 delivery lag.
    const ops = await page.evaluate(() => ({
      deliveries: document.getElementById("op-deliveries").dataset.value,
      resets: document.getElementById("op-resets").dataset.value,
      skips: document.getElementById("op-skips").dataset.value,
      lag: document.getElementById("op-lag").dataset.value,
      lagText: document.getElementById("op-lag").textContent,
      samples: window.dashboard.lag.samples,
    }));
    for (const name of ["deliveries", "resets", "skips", "lag"]) {
      assert.ok(Number.isFinite(Number(ops[name])) && Number(ops[name]) >= 0, `${name}: ${ops[name]}`);
    }
    assert.ok(Number(ops.lag) < 1000, `p99 delivery lag on loopback: ${ops.lagText}`);

    // The key went in a header, to every API request, and in no URL.
    const apiRequests = requests.filter((r) => r.url.includes("/v1/"));
    assert.ok(apiRequests.length > 3);
    assert.ok(requests.slice(afterUrlKey).every((r) => !r.url.includes(KEY)), "the key is in no URL the page asks for");
    assert.ok(apiRequests.filter((r) => r.auth !== "Bearer not-the-key").every((r) => r.auth === `Bearer ${KEY}`));

    await page.screenshot({ path: `${artifacts}/dashboard.png`, fullPage: true });

    // Kept for the tab: a reload (with ?room=) needs no key again.
    await page.goto(`${base}?room=${ROOM}`);
    await page.waitForSelector("body[data-auth=ok]", { timeout: 10_000 });
    await page.waitForSelector(`#rooms tr[data-room="${ROOM}"].selected`, { timeout: 10_000 });

    // A gateway that refuses anonymous viewers: no lag to measure ("n/a"), the rest is there.
    strict = startGateway([]);
    const strictAddr = await strict.addr;
    const other = await context.newPage();
    other.on("pageerror", (e) => pageErrors.push(e.message));
    await other.goto(`http://${strictAddr}/dashboard?room=${ROOM}`);
    await other.fill("#key", KEY);
    await other.click("#key-form button[type=submit]");
    await other.waitForSelector("body[data-auth=ok]", { timeout: 10_000 });
    await other.waitForFunction(() => document.getElementById("op-lag").textContent === "n/a", null, { timeout: 10_000 });
    assert.equal(await other.textContent("#stat-joins"), "0");

    assert.deepEqual(pageErrors, [], "no script errors on the page");
    console.log(
      `browser dashboard: ${drawn.joins} joins, ${drawn.unique} unique, ${drawn.online} online, ` +
        `${drawn.firstRender.histogram.length}+${drawn.dwell.histogram.length} histogram buckets, ` +
        `retention A/B as the API's, p99 lag ${ops.lagText}, ${Math.round(underLoad)} deliveries/s under load; screenshot ${artifacts}/dashboard.png`,
    );
  } finally {
    load?.kill();
    await browser?.close();
    await Promise.all(viewers.map((v) => v.close().catch(() => {})));
    gw.kill();
    strict?.kill();
  }
}

main().catch((e) => {
  console.error(`browser dashboard test failed: ${e.stack ?? e}`);
  process.exitCode = 1;
});
