import type { Joined, Reset, RoomEvent, Skipped } from "./types.js";

/** What to do with a room's incoming event or marker. */
export type Verdict =
  /** The next seq: hand it to the app. */
  | { kind: "deliver" }
  /** Already accounted for (a replay overlapping live delivery): drop it. */
  | { kind: "duplicate" }
  /** Seqs are missing with no marker for them: re-sync the room from `from`. */
  | { kind: "gap"; expected: number; got: number; epoch: string | undefined };

/**
 * A room's continuity: the epoch and the last seq accounted for (delivered or told as
 * skipped). Every event and marker passes here before the app sees it, so the app gets
 * each seq once, in order, or is told where continuity restarts — never a silent gap.
 */
export class Continuity {
  epoch: string | undefined;
  last = 0;

  /** Where a resume starts (`since`), once the room was joined. */
  since(): { epoch: string; seq: number } | undefined {
    return this.epoch === undefined ? undefined : { epoch: this.epoch, seq: this.last };
  }

  /**
   * A `joined` reply. Recovered: the replay of what was missed follows, and what
   * arrived meanwhile stays accounted for. Otherwise continuity restarts at its seq.
   */
  joined(j: Joined): void {
    if (j.recovered && j.epoch === this.epoch) return;
    this.epoch = j.epoch;
    this.last = j.seq;
  }

  /** A `reset`: continuity restarts at its seq, in its epoch. */
  reset(r: Reset): void {
    this.epoch = r.epoch;
    this.last = r.seq;
  }

  event(e: RoomEvent): Verdict {
    return this.advance(e.epoch, e.seq, e.seq);
  }

  /** A marker of seqs this viewer is not sent (they stay in the room's history). */
  skipped(s: Skipped): Verdict {
    return this.advance(this.epoch, s.from, s.to);
  }

  private advance(epoch: string | undefined, from: number, to: number): Verdict {
    if (epoch !== this.epoch) {
      return { kind: "gap", expected: this.last + 1, got: from, epoch };
    }
    if (to <= this.last) return { kind: "duplicate" };
    if (from > this.last + 1) {
      return { kind: "gap", expected: this.last + 1, got: from, epoch };
    }
    this.last = to;
    return { kind: "deliver" };
  }
}
