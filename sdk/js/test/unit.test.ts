import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { backoffDelay, Continuity, parseFrame, verifyLottery } from "../src/index.js";
import { sha256Hex } from "../src/sha256.js";
import type { Joined, RoomEvent } from "../src/index.js";

const ev = (seq: number, epoch = "e1"): RoomEvent => ({
  type: "event",
  room: "r",
  epoch,
  seq,
  kind: "note",
  ts: 0,
  data: {},
});
const joined = (seq: number, recovered: boolean, epoch = "e1"): Joined => ({
  type: "joined",
  id: 1,
  room: "r",
  epoch,
  seq,
  recovered,
  snapshot: { recent: [], likes: 0, online: 0, polls: [] },
});

describe("frames", () => {
  it("splits a batched frame into its messages and reports bad lines", () => {
    const bad: string[] = [];
    const out = parseFrame('{"type":"pong","id":1,"server_time":2}\n\n{"type":"ack","id":2}\nnope\n[1]', (l) => bad.push(l));
    expect(out.map((m) => m.type)).toEqual(["pong", "ack"]);
    expect(bad).toEqual(["nope", "[1]"]);
  });
});

describe("continuity", () => {
  it("delivers each seq once, in order, and drops duplicates", () => {
    const c = new Continuity();
    c.joined(joined(5, false));
    expect(c.event(ev(6)).kind).toBe("deliver");
    expect(c.event(ev(6)).kind).toBe("duplicate");
    expect(c.event(ev(3)).kind).toBe("duplicate");
    expect(c.event(ev(7)).kind).toBe("deliver");
    expect(c.since()).toEqual({ epoch: "e1", seq: 7 });
  });

  it("takes a skipped range as accounted for, and a gap as a gap", () => {
    const c = new Continuity();
    c.joined(joined(0, false));
    expect(c.skipped({ type: "skipped", room: "r", from: 1, to: 4, count: 4, reason: "sampled" }).kind).toBe("deliver");
    expect(c.event(ev(5)).kind).toBe("deliver");
    expect(c.event(ev(7))).toEqual({ kind: "gap", expected: 6, got: 7, epoch: "e1" });
    expect(c.since()).toEqual({ epoch: "e1", seq: 5 });
    expect(c.skipped({ type: "skipped", room: "r", from: 8, to: 9, count: 2, reason: "targeted" }).kind).toBe("gap");
  });

  it("keeps what arrived during a recovered resume, restarts on a reset or a new epoch", () => {
    const c = new Continuity();
    c.joined(joined(10, false));
    c.event(ev(11));
    c.joined(joined(12, true));
    expect(c.since()).toEqual({ epoch: "e1", seq: 11 });
    expect(c.event(ev(12)).kind).toBe("deliver");
    expect(c.event(ev(1, "e2")).kind).toBe("gap");
    c.joined(joined(3, false, "e2"));
    expect(c.event(ev(4, "e2")).kind).toBe("deliver");
    c.reset({ type: "reset", room: "r", epoch: "e2", seq: 90, snapshot: { recent: [], likes: 0, online: 0, polls: [] } });
    expect(c.event(ev(50, "e2")).kind).toBe("duplicate");
    expect(c.event(ev(91, "e2")).kind).toBe("deliver");
  });
});

describe("backoff", () => {
  it("grows exponentially to its cap, with full jitter", () => {
    const top = (a: number) => backoffDelay(a, { baseMs: 100, maxMs: 1_000, random: () => 0.999999 });
    expect([0, 1, 2, 3, 4, 10].map(top)).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffDelay(3, { baseMs: 100, random: () => 0 })).toBe(0);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(2, { baseMs: 100 });
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(400);
    }
  });
});

describe("sha256 and the lottery's verification", () => {
  it("matches node's SHA-256 on lengths around the block boundaries", () => {
    for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
      const data = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 0xff);
      expect(sha256Hex(data)).toBe(createHash("sha256").update(data).digest("hex"));
    }
  });

  it("recomputes a draw, and finds a forged winner", () => {
    const seedBytes = new Uint8Array(32).map((_, i) => i);
    const seed = Buffer.from(seedBytes).toString("hex");
    const entrants = ["u-3", "u-1", "u-2", "u-10"];
    const h = (s: string) => createHash("sha256").update(s).digest("hex");
    const winner_ids = [...entrants].sort((a, b) => (h(`${seed}:${a}`) < h(`${seed}:${b}`) ? -1 : 1)).slice(0, 2);
    const lottery = {
      id: "l-1",
      winners: 2,
      commitment: createHash("sha256").update(seedBytes).digest("hex"),
      seed,
      entrants_digest: h([...entrants].sort().join("\n")),
      winner_ids,
    };
    expect(verifyLottery({ lottery, entrants })).toEqual({ ok: true, winners: winner_ids, problems: [] });
    const forged = verifyLottery({ lottery: { ...lottery, winner_ids: ["u-1", "u-2"].reverse() }, entrants });
    expect(winner_ids).not.toEqual(["u-2", "u-1"]);
    expect(forged.ok).toBe(false);
    expect(verifyLottery({ lottery: { ...lottery, commitment: h("x") }, entrants }).problems).toHaveLength(1);
    expect(verifyLottery({ lottery, entrants: [...entrants, "u-99"] }).ok).toBe(false);
    // The digest sorts by UTF-8 bytes: U+FF5E (3 bytes) comes before U+1F600 (4 bytes),
    // though JavaScript's own order puts the emoji's surrogates first.
    const wide = ["😀", "～"];
    const digest = createHash("sha256").update(Buffer.concat([Buffer.from("～\n😀")])).digest("hex");
    const check = verifyLottery({ lottery: { ...lottery, winners: 0, winner_ids: [], entrants_digest: digest }, entrants: wide });
    expect(check.problems).toEqual([]);
  });
});
