// Real parts for the SDK's tests: gateway processes (the workspace's debug build),
// redis-server on an ephemeral port, HS256 tokens, the HTTP API, and a TCP proxy the
// tests cut to force disconnects. Everything started here is stopped by its handle.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { startProxy } from "../../../tests/support/proxy.mjs";
import { DanmakuClient, type ClientOptions, type WebSocketConstructor } from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
export const GATEWAY_BIN =
  process.env.DANMAKU_GATEWAY ?? path.resolve(here, "../../../target/debug/danmaku-gateway");
export const SECRET = "sdk-test-secret-0123456789abcdef";
export const KEY = "sdk-test-key";

export function token(sub: string, claims: Record<string, unknown> = {}): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub, name: `name-${sub}`, exp: Math.floor(Date.now() / 1000) + 600, ...claims });
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  server.close();
  await once(server, "close");
  return port;
}

/** Resolves once `stream` printed a line matching `pattern`, with the match. */
function waitForLine(child: ChildProcess, pattern: RegExp, what: string): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${seen}`)), 15_000);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const m = seen.match(pattern);
      if (m !== null) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        resolve(m);
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${String(code)}): ${seen}`));
    });
  });
}

export class Redis {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(): Promise<Redis> {
    const port = await freePort();
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await waitForLine(child, /Ready to accept connections/, "redis-server");
    return new Redis(`redis://127.0.0.1:${port}`, child);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill("SIGKILL");
    await once(this.child, "exit");
  }
}

export class Gateway {
  private constructor(
    readonly addr: string,
    private readonly child: ChildProcess,
  ) {}

  get wsUrl(): string {
    return `ws://${this.addr}/ws`;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(extra: string[] = [], listen = "127.0.0.1:0"): Promise<Gateway> {
    const child = spawn(
      GATEWAY_BIN,
      ["--listen", listen, "--jwt-secret", SECRET, "--api-keys", KEY, "--log", "warn", ...extra],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const m = await waitForLine(child, /listening on (\S+)/, "the gateway");
    return new Gateway(m[1] ?? "", child);
  }

  /** The HTTP API, with the API key; resolves with status and JSON body. */
  async api(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(`http://${this.addr}${route}`, {
      method,
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text === "" ? null : JSON.parse(text) };
  }

  async publish(room: string, data: unknown, kind = "note"): Promise<number> {
    const r = await this.api("POST", `/v1/rooms/${room}/events`, { kind, data });
    if (r.status !== 200) throw new Error(`publish: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.seq as number;
  }

  /** SIGTERM: the gateway drains (`reconnect`, then 1012) and exits. */
  async drain(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    await once(this.child, "exit");
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGKILL");
    await once(this.child, "exit");
  }
}

/** A TCP proxy in front of a gateway (shared with the browser tests): see its module. */
export type Proxy = Awaited<ReturnType<typeof startProxy>> & { wsUrl: string; stop(): Promise<void> };

export async function startProxyFor(target: string): Promise<Proxy> {
  const proxy = await startProxy(target);
  return { ...proxy, wsUrl: `ws://127.0.0.1:${proxy.port}/ws`, stop: proxy.close };
}

export function client(options: Partial<ClientOptions> & Pick<ClientOptions, "url">): DanmakuClient {
  return new DanmakuClient({ WebSocket: WebSocket as unknown as WebSocketConstructor, ...options });
}

/** Resolves when `check` holds, polling each 10 ms (an event-driven wait on the client's state). */
export async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
