// The SDK against real gateway processes (the in-memory store, and Redis), over real
// WebSockets, through a TCP proxy the tests cut to force disconnects.
import http from "node:http";
import { once } from "node:events";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { DanmakuClient, DanmakuError, RoomEvent, Skipped, Snapshot, SnapshotReason } from "../src/index.js";
import { client, Gateway, Redis, startProxyFor, token, until } from "./support.js";

/** What an app would have seen of a room. */
class Seen {
  events: RoomEvent[] = [];
  skipped: Skipped[] = [];
  snapshots: { snapshot: Snapshot; reason: SnapshotReason }[] = [];
  errors: DanmakuError[] = [];
  joins = 0;
  recovered: boolean[] = [];

  handlers() {
    return {
      onEvent: (e: RoomEvent) => this.events.push(e),
      onSkipped: (s: Skipped) => this.skipped.push(s),
      onSnapshot: (snapshot: Snapshot, reason: SnapshotReason) => this.snapshots.push({ snapshot, reason }),
      onJoined: (j: { recovered: boolean }) => {
        this.joins += 1;
        this.recovered.push(j.recovered);
      },
      onError: (e: DanmakuError) => this.errors.push(e),
    };
  }

  seqs(): number[] {
    return this.events.map((e) => e.seq);
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function track<T extends { stop(): Promise<void> } | DanmakuClient>(thing: T): T {
  cleanup.push(() => ("close" in thing ? thing.close() : thing.stop()));
  return thing;
}

/** Publishes `count` events one after another, calling `during(i)` after each. */
async function publishAll(gw: Gateway, room: string, count: number, during: (i: number) => Promise<void> | void) {
  const seqs: number[] = [];
  for (let i = 1; i <= count; i++) {
    seqs.push(await gw.publish(room, { i }));
    await during(i);
  }
  return seqs;
}

async function stores(): Promise<[string, () => Promise<string[]>][]> {
  return [
    ["memory", async () => []],
    [
      "redis",
      async () => {
        const redis = track(await Redis.start());
        return ["--redis-url", redis.url];
      },
    ],
  ];
}

describe.each(await stores())("on the %s store", (_, storeArgs) => {
  it("loses nothing through forced disconnects mid-stream", async () => {
    const gw = track(await Gateway.start(await storeArgs()));
    const proxy = track(await startProxyFor(gw.addr));
    const c = track(client({ url: proxy.wsUrl, token: token("u-1"), backoff: { baseMs: 50, maxMs: 200 } }));
    let reconnects = 0;
    c.on("reconnecting", () => (reconnects += 1));
    await c.connect();
    const seen = new Seen();
    await c.join("cut", seen.handlers());
    const seqs = await publishAll(gw, "cut", 300, async (i) => {
      if (i % 75 === 0 && i < 300) {
        await until(() => c.state === "open", "the connection");
        expect(proxy.cut()).toBeGreaterThan(0);
      }
    });
    await until(() => seen.events.length >= 300, "every event");
    expect(seen.seqs()).toEqual(seqs);
    expect(seqs).toEqual(range(1, 300));
    expect(seen.skipped).toEqual([]);
    expect(seen.errors).toEqual([]);
    expect(reconnects).toBeGreaterThanOrEqual(3);
    expect(seen.recovered.slice(1).every((r) => r)).toBe(true);
    expect(seen.snapshots.map((s) => s.reason)).toEqual(["joined"]);
  });

  it("hands the app a snapshot when history no longer covers the gap, then continues", async () => {
    const gw = track(await Gateway.start([...(await storeArgs()), "--history-len", "20"]));
    const proxy = track(await startProxyFor(gw.addr));
    const c = track(client({ url: proxy.wsUrl, token: token("u-2"), backoff: { baseMs: 50, maxMs: 100 } }));
    await c.connect();
    const seen = new Seen();
    await c.join("gap", seen.handlers());
    await publishAll(gw, "gap", 5, () => {});
    await until(() => seen.events.length === 5, "the first five");
    proxy.block(true);
    proxy.cut();
    await until(() => c.state === "reconnecting", "the disconnect");
    // More than history holds (Redis trims its stream approximately, so well beyond 20).
    await publishAll(gw, "gap", 400, () => {});
    proxy.block(false);
    await until(() => seen.snapshots.length === 2, "the snapshot");
    const { snapshot, reason } = seen.snapshots[1] ?? { snapshot: undefined, reason: undefined };
    expect(reason).toBe("not_recovered");
    const recent = (snapshot?.recent ?? []).map((e) => ("seq" in e ? e.seq : -1));
    expect(recent.at(-1)).toBe(405);
    expect(c.position("gap")?.seq).toBe(405);
    await gw.publish("gap", { after: true });
    await until(() => seen.events.length === 6, "the next live event");
    expect(seen.seqs()).toEqual([1, 2, 3, 4, 5, 406]);
    expect(seen.errors).toEqual([]);
  });
});

describe("on the memory store", () => {
  it("replaces the room's view on a reset, sent to a viewer too slow for history", async () => {
    const gw = track(
      await Gateway.start(["--history-len", "50", "--outbound-queue", "8", "--send-buffer-bytes", "4096"]),
    );
    const proxy = track(await startProxyFor(gw.addr));
    const c = track(client({ url: proxy.wsUrl, token: token("u-8") }));
    await c.connect();
    const seen = new Seen();
    await c.join("slow", seen.handlers());
    proxy.freeze();
    const big = "x".repeat(2_000);
    let published = 0;
    while (published < 4_000) {
      await Promise.all(Array.from({ length: 50 }, () => gw.publish("slow", { big })));
      published += 50;
    }
    proxy.thaw();
    await until(() => seen.snapshots.some((s) => s.reason === "reset"), "the reset");
    await until(() => c.position("slow")?.seq === published, "the room's head");
    const after = seen.events.filter((e) => e.seq > (seen.events[0]?.seq ?? 0));
    expect(seen.errors).toEqual([]);
    expect(seen.recovered).toEqual([false]);
    expect(after.length).toBeLessThan(published);
    const reset = seen.snapshots.find((s) => s.reason === "reset");
    expect(reset?.snapshot.recent.length).toBeGreaterThan(0);
  });

  it("takes a new epoch (a restarted gateway) as a snapshot", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    let gw = await Gateway.start([], `127.0.0.1:${port}`);
    cleanup.push(() => gw.stop());
    const c = track(client({ url: gw.wsUrl, token: token("u-3"), backoff: { baseMs: 50, maxMs: 100 } }));
    await c.connect();
    const seen = new Seen();
    const first = await c.join("epoch", seen.handlers());
    await gw.publish("epoch", { n: 1 });
    await until(() => seen.events.length === 1, "the event");
    await gw.stop();
    gw = await Gateway.start([], `127.0.0.1:${port}`);
    await until(() => seen.snapshots.length === 2, "the new epoch's snapshot");
    expect(seen.snapshots[1]?.reason).toBe("not_recovered");
    expect(c.position("epoch")?.epoch).not.toBe(first.epoch);
    await gw.publish("epoch", { n: 2 });
    await until(() => seen.events.length === 2, "the new epoch's event");
    expect(seen.events[1]?.seq).toBe(1);
    expect(seen.errors).toEqual([]);
  });

  it("answers commands with typed replies and errors", async () => {
    const gw = track(await Gateway.start());
    const c = track(client({ url: gw.wsUrl, token: token("u-4") }));
    await c.connect();
    const seen = new Seen();
    await c.join("cmd", seen.handlers());
    const ack = await c.comment("cmd", "hello");
    expect(ack.seq).toBe(1);
    await until(() => seen.events.length === 1, "the comment");
    expect(seen.events[0]).toMatchObject({ kind: "comment", data: { user: "u-4", text: "hello" } });
    await expect(c.vote("cmd", "p-9", 0)).rejects.toMatchObject({ code: "unknown_poll" });
    await expect(c.comment("elsewhere", "x")).rejects.toMatchObject({ code: "not_joined" });
    const results = await Promise.allSettled(Array.from({ length: 15 }, (_, i) => c.comment("cmd", `c${i}`)));
    const limited = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited[0]).toMatchObject({ code: "rate_limited" });
    expect(limited[0].retryAfterMs).toBeGreaterThan(0);
    const coupon = await gw.api("POST", "/v1/rooms/cmd/coupons", { title: "10 off", stock: 5, per_user: 1, duration_s: 60 });
    expect(coupon.status).toBe(200);
    const claim = await c.claim("cmd", coupon.body.coupon);
    expect(claim.code).toMatch(/^[0-9a-f]{16}$/);
    await expect(c.claim("cmd", coupon.body.coupon)).rejects.toMatchObject({ code: "already_claimed" });
    const { rttMs } = await c.ping();
    expect(rttMs).toBeGreaterThanOrEqual(0);
  });

  it("lets a host open a quiz and a coupon that viewers then answer and claim", async () => {
    const gw = track(await Gateway.start());
    const host = track(client({ url: gw.wsUrl, token: token("host-1", { role: "host" }) }));
    const viewer = track(client({ url: gw.wsUrl, token: token("u-5") }));
    await Promise.all([host.connect(), viewer.connect()]);
    await host.join("show", {});
    const seen = new Seen();
    await viewer.join("show", seen.handlers());
    const quiz = await host.open("show", "quiz", { question: "几号?", options: ["1", "2"], answer: 1, duration_s: 60 });
    expect(quiz).toMatchObject({ what: "quiz", id: expect.stringMatching(/^q-/) });
    await until(() => seen.events.some((e) => e.seq === quiz.seq), "the quiz event");
    expect(seen.events.find((e) => e.seq === quiz.seq)).toMatchObject({ kind: "quiz", data: { id: quiz.id, state: "open" } });
    await viewer.answer("show", quiz.id, 1);
    const coupon = await host.open("show", "coupon", { title: "9折", stock: 1, duration_s: 60 });
    expect(coupon.what).toBe("coupon");
    expect((await viewer.claim("show", coupon.id)).coupon).toBe(coupon.id);
    await expect(viewer.open("show", "keyword", { keyword: "666", duration_s: 9 })).rejects.toMatchObject({ code: "forbidden" });
    await expect(host.open("show", "quiz", { question: "?", options: ["a"], answer: 0, duration_s: 9 })).rejects.toMatchObject({
      code: "bad_request",
    });
  });

  it("backs off exponentially with jitter between refused attempts", async () => {
    const attempts: number[] = [];
    const refuser = http.createServer((_, res) => {
      res.writeHead(503).end();
    });
    refuser.on("upgrade", (_req, socket: net.Socket) => {
      attempts.push(Date.now());
      socket.end("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    });
    refuser.listen(0, "127.0.0.1");
    await once(refuser, "listening");
    cleanup.push(() => new Promise<void>((r) => refuser.close(() => r())));
    const port = (refuser.address() as net.AddressInfo).port;
    const c = track(
      client({ url: `ws://127.0.0.1:${port}/ws`, backoff: { baseMs: 100, maxMs: 800, random: () => 0.999 } }),
    );
    const delays: number[] = [];
    c.on("reconnecting", (r) => delays.push(r.delayMs));
    void c.connect().catch(() => {});
    await until(() => attempts.length >= 6, "six attempts");
    expect(delays.slice(0, 5)).toEqual([99, 199, 399, 799, 799]);
    const gaps = attempts.slice(1, 6).map((t, i) => t - (attempts[i] ?? 0));
    gaps.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual((delays[i] ?? 0) - 5));
  });

  it("stops for good on a terminal close (a refused token)", async () => {
    const gw = track(await Gateway.start());
    const c = track(client({ url: gw.wsUrl, token: "not-a-token" }));
    const errors: DanmakuError[] = [];
    c.on("error", (e) => errors.push(e));
    await expect(c.connect()).rejects.toMatchObject({ code: "terminal" });
    expect(c.state).toBe("failed");
    expect(errors[0]?.message).toContain("4501");
  });

  it("takes a connection that went silent for dead and reconnects", async () => {
    const gw = track(await Gateway.start(["--heartbeat-ms", "300"]));
    const proxy = track(await startProxyFor(gw.addr));
    const c = track(client({ url: proxy.wsUrl, token: token("u-5"), backoff: { baseMs: 20, maxMs: 50 } }));
    const reasons: string[] = [];
    c.on("reconnecting", (r) => reasons.push(r.reason));
    await c.connect();
    const seen = new Seen();
    await c.join("quiet", seen.handlers());
    const conn = c.hello?.conn;
    proxy.freeze();
    await until(() => c.hello?.conn !== conn && c.state === "open", "a new connection");
    expect(reasons[0]).toBe("client liveness timeout");
    await gw.publish("quiet", { n: 1 });
    await until(() => seen.events.length === 1, "the event after the reconnect");
    expect(seen.recovered).toEqual([false, true]);
  });
});

describe("on Redis with two gateways", () => {
  it("follows a drain to the other gateway and loses nothing", async () => {
    const redis = track(await Redis.start());
    const a = track(await Gateway.start(["--redis-url", redis.url, "--gateway-id", "ga"]));
    const b = track(await Gateway.start(["--redis-url", redis.url, "--gateway-id", "gb"]));
    const c = track(client({ url: [a.wsUrl, b.wsUrl], token: token("u-6") }));
    await c.connect();
    expect(c.hello?.gateway).toBe("ga");
    const seen = new Seen();
    await c.join("drain", seen.handlers());
    let drained: Promise<void> | undefined;
    const seqs = await publishAll(b, "drain", 200, (i) => {
      if (i === 80) drained = a.drain();
    });
    await drained;
    await until(() => c.state === "open" && c.hello?.gateway === "gb", "the move to the other gateway");
    seqs.push(...(await publishAll(b, "drain", 50, () => {})));
    await until(() => seen.events.length >= 250, "every event");
    expect(seen.seqs()).toEqual(seqs);
    expect(seqs).toEqual(range(1, 250));
    expect(seen.recovered).toEqual([false, true]);
  });

  it("gets a fresh token from the provider when the server says it expired", async () => {
    const redis = track(await Redis.start());
    const gw = track(await Gateway.start(["--redis-url", redis.url, "--heartbeat-ms", "500"]));
    let calls = 0;
    const provider = async () => {
      calls += 1;
      // The first token expires at once (the gateway allows 5 s of leeway), the next ones later.
      return token("u-7", { exp: Math.floor(Date.now() / 1000) + (calls === 1 ? -4 : 600) });
    };
    const c = track(client({ url: gw.wsUrl, token: provider }));
    const codes: number[] = [];
    c.on("reconnecting", (r) => codes.push(r.code));
    await c.connect();
    const seen = new Seen();
    await c.join("token", seen.handlers());
    await gw.publish("token", { before: true });
    await until(() => codes.length === 1, "the expiry's close");
    await gw.publish("token", { during: true });
    await until(() => seen.events.length === 2 && c.state === "open", "both events");
    expect(codes).toEqual([4001]);
    expect(calls).toBe(2);
    expect(seen.seqs()).toEqual([1, 2]);
  });
});
