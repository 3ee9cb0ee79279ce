import type { ErrorCode, ErrorFrame } from "./types.js";

/** What the client itself reports, next to the server's error codes. */
export type ClientErrorCode =
  /** The connection went away before the reply came: the command may or may not have been done. */
  | "disconnected"
  /** No reply within the command timeout. */
  | "timeout"
  /** `close()` was called. */
  | "closed"
  /** More commands waiting for a connection than the client keeps. */
  | "queue_full"
  /** The server ended the session for good (close code 4500–4999, e.g. a refused token). */
  | "terminal"
  /** The room's events skipped a seq with no `skipped` marker; the client re-syncs the room. */
  | "gap";

/** A command refused by the server (its error code), or failed on the client's side. */
export class DanmakuError extends Error {
  readonly code: ErrorCode | ClientErrorCode;
  /** How long to wait before trying again (`rate_limited`, `room_busy`, `slow_mode`, a timed `muted`). */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode | ClientErrorCode, message: string, retryAfterMs?: number) {
    super(message);
    this.name = "DanmakuError";
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }

  static fromFrame(frame: ErrorFrame): DanmakuError {
    return new DanmakuError(frame.code, frame.message, frame.retry_after_ms);
  }
}
