/** Reconnect delays: exponential growth, capped, with full jitter. */
export interface BackoffOptions {
  /** The first delay's ceiling, ms (default 500). */
  baseMs?: number;
  /** The largest ceiling, ms (default 30,000). */
  maxMs?: number;
  /** A number in [0, 1) (default Math.random); tests inject their own. */
  random?: () => number;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): a uniform draw in
 * [0, min(maxMs, baseMs · 2^attempt)] ("full jitter"), so that a gateway's viewers,
 * dropped together, do not come back together.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
