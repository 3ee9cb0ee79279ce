// The demo live room in a real browser: headless Chromium (Debian's `chromium`, driven
// by playwright-core) opens the gateway's own /demo page — through a TCP proxy the test
// cuts to force a disconnect — and checks what a person would: events published over
// the HTTP API show in order, a like and a vote from the page are counted, a coupon
// claim succeeds, a lottery draw verifies in the browser, a cut connection recovers
// without loss. Screenshots go to target/browser/ (demo-room.png, demo-lottery.png).
//
//   node tests/browser/demo.mjs <gateway binary>
//
// Exits 0 when all hold, 1 (saying why) otherwise. Everything it starts it stops.
import { mkdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { apiClient, startGateway, viewerToken } from "../support/gateway.mjs";
import { startProxy } from "../support/proxy.mjs";

const SECRET = "browser-demo-secret-0123456789";
const KEY = "browser-demo-key";
const ROOM = "demo-test";
const gatewayBin = process.argv[2] ?? "target/debug/danmaku-gateway";
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.DANMAKU_ARTIFACTS ?? "target/browser";

const token = (sub, name) => viewerToken(SECRET, sub, name);

async function main() {
  mkdirSync(artifacts, { recursive: true });
  const gw = startGateway(gatewayBin, ["--jwt-secret", SECRET, "--api-keys", KEY]);
  let browser;
  let front;
  try {
    const addr = await gw.addr;
    const api = apiClient(addr, KEY);
    front = await startProxy(addr);

    // Already in the room before the viewer comes: the product on stage, a poll, a coupon.
    const endsAt = Date.now() + 10 * 60_000;
    await api("PUT", `/v1/rooms/${ROOM}/stage`, {
      product: { name: "Silk scarf, spring colours", price: 199 }, label: "flash sale", ends_at: endsAt,
    });
    const { poll } = await api("POST", `/v1/rooms/${ROOM}/polls`, {
      question: "Which colour next?", options: ["red", "blue", "green"], duration_s: 600,
    });
    const { coupon } = await api("POST", `/v1/rooms/${ROOM}/coupons`, {
      title: "¥20 off", stock: 50, per_user: 1, duration_s: 600,
    });
    await api("PUT", `/v1/rooms/${ROOM}/welcome`, { new: "欢迎新朋友 {name}!", returning: "欢迎回来 {name}" });

    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(`http://127.0.0.1:${front.port}/demo?room=${ROOM}&token=${token("viewer-1", "Ann")}`);
    await page.waitForSelector("body[data-joined=true]", { timeout: 10_000 });
    assert.equal(await page.getAttribute("#conn", "data-state"), "open");
    assert.match(await page.textContent("#welcome"), /欢迎新朋友 Ann!/);
    assert.match(await page.textContent("#product"), /Silk scarf/);
    assert.match(await page.textContent("#product"), /ends in \d+:\d\d/);
    assert.match(await page.textContent(`#poll-${poll}`), /Which colour next\?/);
    assert.match(await page.textContent(`#coupon-${coupon}`), /50\/50 left/);

    // Events published through the HTTP API show on the page, in order.
    const published = [];
    for (let i = 1; i <= 20; i++) {
      const r = await api("POST", `/v1/rooms/${ROOM}/events`, {
        kind: "comment", data: { user: `u-${i}`, name: `fan ${i}`, text: `第 ${i} 条弹幕 🎉` },
      });
      published.push(r.seq);
    }
    await page.waitForFunction((last) => window.demo.seqs.includes(last), published.at(-1), { timeout: 10_000 });
    const seen = await page.evaluate(() => window.demo.seqs);
    assert.deepEqual(seen.filter((s) => published.includes(s)), published, "in order, each once");
    assert.ok((await page.locator(".dm").count()) > 0, "danmaku fly over the video");

    // A like and a vote from the page are counted by the room.
    await page.click("#like");
    await page.click("#like");
    await page.click("#like");
    await page.waitForFunction(() => document.querySelector("#likes").textContent === "3", null, { timeout: 10_000 });
    assert.equal((await api("GET", `/v1/rooms/${ROOM}`)).likes, 3);
    await page.click(`#poll-${poll} button[data-option="1"]`);
    await page.waitForFunction(
      (id) => document.querySelectorAll(`#poll-${id} .votes`)[1]?.textContent === "1", poll, { timeout: 10_000 },
    );

    // A coupon claim succeeds, and the backend's list has it.
    await page.click(`#coupon-${coupon} button.claim`);
    await page.waitForSelector(`#coupon-${coupon} .code`, { timeout: 10_000 });
    const code = await page.textContent(`#coupon-${coupon} .code`);
    assert.match(code, /^[0-9a-f]{16}$/);
    const claims = await api("GET", `/v1/rooms/${ROOM}/coupons/${coupon}`);
    assert.deepEqual(claims.claims.map((c) => [c.user, c.code]), [["viewer-1", code]]);

    // A quiz and a lottery entered from the page.
    await api("POST", `/v1/rooms/${ROOM}/quizzes`, {
      question: "How many colours?", options: ["two", "three"], answer: 1, duration_s: 600,
    });
    const { lottery } = await api("POST", `/v1/rooms/${ROOM}/lotteries`, {
      prize: "lucky bag", winners: 1, duration_s: 600, entry: "command",
    });
    await page.waitForSelector(`#lottery-${lottery} button`, { timeout: 10_000 });
    await page.click(`#lottery-${lottery} button`);
    await page.waitForFunction(
      (id) => /1 entrants/.test(document.querySelector(`#lottery-${id}`)?.textContent ?? ""), lottery, { timeout: 10_000 },
    );
    await page.screenshot({ path: `${artifacts}/demo-room.png`, fullPage: true });

    // A forced disconnect while the room goes on: nothing is lost, nothing doubled.
    assert.ok(front.cut() > 0, "the page's connection went through the proxy");
    for (let i = 21; i <= 40; i++) {
      const r = await api("POST", `/v1/rooms/${ROOM}/events`, {
        kind: "comment", data: { user: `u-${i}`, name: `fan ${i}`, text: `after the cut ${i}` },
      });
      published.push(r.seq);
    }
    await page.waitForFunction((last) => window.demo.seqs.includes(last), published.at(-1), { timeout: 15_000 });
    const { seqs, skipped } = await page.evaluate(() => ({ seqs: window.demo.seqs, skipped: window.demo.skipped }));
    assert.deepEqual(seqs.filter((s) => published.includes(s)), published, "in order, each once, across the cut");
    const covered = [...seqs, ...skipped.flatMap(([from, to]) => Array.from({ length: to - from + 1 }, (_, k) => from + k))];
    const joinedAt = await page.evaluate(() => window.demo.joined);
    const head = (await api("GET", `/v1/rooms/${ROOM}`)).seq;
    covered.sort((a, b) => a - b);
    assert.deepEqual(covered, Array.from({ length: head - joinedAt }, (_, k) => joinedAt + 1 + k), "every seq once");
    assert.equal(await page.getAttribute("#conn", "data-state"), "open");

    // The lottery is drawn; the page recomputes the draw itself.
    await api("POST", `/v1/rooms/${ROOM}/lotteries/${lottery}/close`);
    await page.waitForSelector(`#lottery-${lottery} a.verify`, { timeout: 10_000 });
    assert.match(await page.textContent(`#lottery-${lottery}`), /you won/);
    // The audit record arrives after the panels' once-a-second redraw: the outcome must
    // still be shown.
    await page.route("**/lotteries/*/draw", async (route) => {
      await sleep(1500);
      await route.continue();
    });
    await page.click(`#lottery-${lottery} a.verify`);
    await page.waitForSelector(`#lottery-${lottery} .verified`, { timeout: 10_000 });
    assert.match(await page.textContent(`#lottery-${lottery} .verified`), /verified: viewer-1 among 1/);
    await page.screenshot({ path: `${artifacts}/demo-lottery.png`, fullPage: true });
    assert.deepEqual(pageErrors, [], "no script errors on the page");
    console.log(`browser demo: ${published.length} events in order across a cut; like, vote, claim, entry, verified draw; screenshots in ${artifacts}/`);
  } finally {
    await browser?.close();
    await front?.close();
    gw.kill();
  }
}

main().catch((e) => {
  console.error(`browser demo test failed: ${e.stack ?? e}`);
  process.exitCode = 1;
});
