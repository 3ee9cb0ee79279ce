// A real browser against a real gateway: headless Chromium (Debian's `chromium`, driven
// by playwright-core) loads a page from an allowed origin that connects, joins a room
// and receives an event published over the HTTP API; a page from another origin is
// refused (cross-site WebSocket hijacking), and its socket never opens.
//
//   node tests/browser/origin.mjs <gateway binary>
//
// Exits 0 when both hold, 1 (saying why) otherwise. Everything it starts it stops.
import { spawn } from "node:child_process";
import http from "node:http";
import { once } from "node:events";
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";

const SECRET = "browser-test-secret-0123456789";
const KEY = "browser-test-key";
const gatewayBin = process.argv[2] ?? "target/debug/danmaku-gateway";
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

function fail(why) {
  console.error(`browser test failed: ${why}`);
  process.exitCode = 1;
}

function token(sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 });
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

// A page that connects, joins `room`, and puts what happened in its title.
function page(gateway, room) {
  return `<!doctype html><title>loading</title><script>
    const ws = new WebSocket("ws://${gateway}/ws?token=${token("browser")}", "danmaku.v1");
    ws.onopen = () => ws.send(JSON.stringify({type: "join", id: 1, room: "${room}"}));
    ws.onmessage = (m) => {
      for (const line of m.data.split("\\n")) {
        const f = JSON.parse(line);
        if (f.type === "joined") document.title = "joined";
        if (f.type === "event") document.title = "event:" + f.data.text;
      }
    };
    ws.onclose = (c) => { if (!document.title.startsWith("event")) document.title = "closed:" + c.code; };
  </script>`;
}

async function serve(host, html) {
  const server = http.createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html());
  });
  server.listen(0, host);
  await once(server, "listening");
  return server;
}

async function main() {
  // Two origins: the allowed one, and another port (another origin).
  let gatewayAddr = "";
  const allowed = await serve("127.0.0.1", () => page(gatewayAddr, "browser-room"));
  const other = await serve("127.0.0.1", () => page(gatewayAddr, "browser-room"));
  const allowedOrigin = `http://127.0.0.1:${allowed.address().port}`;
  const otherOrigin = `http://127.0.0.1:${other.address().port}`;

  const gw = spawn(gatewayBin, [
    "--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--api-keys", KEY,
    "--allowed-origins", allowedOrigin, "--log", "warn",
  ], { stdio: ["ignore", "pipe", "inherit"] });
  let browser;
  try {
    const [line] = await Promise.race([
      once(gw.stdout, "data"),
      new Promise((_, reject) => setTimeout(() => reject(new Error("gateway did not start")), 10_000)),
    ]);
    gatewayAddr = line.toString().split("\n")[0].trim().split(/\s+/).pop();

    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    const good = await browser.newPage();
    await good.goto(allowedOrigin);
    await good.waitForFunction(() => document.title === "joined", null, { timeout: 10_000 });
    const res = await fetch(`http://${gatewayAddr}/v1/rooms/browser-room/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ kind: "comment", data: { text: "hello browser" } }),
    });
    if (res.status !== 200) fail(`publish answered ${res.status}`);
    await good.waitForFunction(() => document.title.startsWith("event:"), null, { timeout: 10_000 });
    const got = await good.title();
    if (got !== "event:hello browser") fail(`the allowed page saw "${got}"`);

    const bad = await browser.newPage();
    await bad.goto(otherOrigin);
    await bad.waitForFunction(() => document.title.startsWith("closed:"), null, { timeout: 10_000 });
    const refused = await bad.title();
    // A refused upgrade is invisible to the page except as an abnormal close.
    if (refused !== "closed:1006") fail(`the other origin's page saw "${refused}"`);
    if (!process.exitCode) console.log(`browser: ${allowedOrigin} received the event; ${otherOrigin} was refused`);
  } finally {
    await browser?.close();
    gw.kill();
    allowed.close();
    other.close();
  }
}

main().catch((e) => {
  fail(e.stack ?? String(e));
});
