import { sha256Hex } from "./sha256.js";

/** A drawn lottery's audit record, as the gateway returns it. */
export interface LotteryAudit {
  lottery: {
    id: string;
    winners: number;
    commitment: string;
    seed?: string;
    entrants_digest?: string;
    winner_ids?: string[];
  };
  entrants: string[];
}

/** What a recomputation found: `ok` when every check holds. */
export interface LotteryCheck {
  ok: boolean;
  /** The winners recomputed from the seed and the entrants. */
  winners: string[];
  /** What did not hold, in words. */
  problems: string[];
}

function hexBytes(hex: string): Uint8Array | undefined {
  if (!/^([0-9a-f]{2})+$/.test(hex)) return undefined;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const utf8 = new TextEncoder();

/** Orders strings by their UTF-8 bytes (JavaScript's `<` compares UTF-16 units). */
function byUtf8(a: string, b: string): number {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/**
 * Recomputes a lottery's draw from its audit record, as the protocol defines it: the
 * seed matches the commitment published at the open (SHA-256 of its 32 bytes), the
 * entrants match their digest (SHA-256 of the ids sorted and joined by "\n"), and the
 * winners are the entrants with the smallest SHA-256 of `seed + ":" + id`, in that order.
 */
export function verifyLottery(audit: LotteryAudit): LotteryCheck {
  const { lottery, entrants } = audit;
  const problems: string[] = [];
  const seed = lottery.seed ?? "";
  const seedBytes = hexBytes(seed);
  if (seedBytes === undefined || seedBytes.length !== 32) {
    problems.push("the seed is not 32 bytes of hex (not drawn yet?)");
  } else if (sha256Hex(seedBytes) !== lottery.commitment) {
    problems.push("the seed does not match the commitment published at the open");
  }
  const sorted = [...entrants].sort(byUtf8);
  if (sha256Hex(utf8.encode(sorted.join("\n"))) !== lottery.entrants_digest) {
    problems.push("the entrants do not match their digest");
  }
  const ranked = entrants
    .map((id) => ({ id, hash: sha256Hex(utf8.encode(`${seed}:${id}`)) }))
    .sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  const winners = ranked.slice(0, lottery.winners).map((r) => r.id);
  const told = lottery.winner_ids ?? [];
  if (winners.length !== told.length || winners.some((w, i) => w !== told[i])) {
    problems.push(`the winners recomputed (${winners.join(", ")}) are not the ones announced (${told.join(", ")})`);
  }
  return { ok: problems.length === 0, winners, problems };
}
