// @danmaku/client: the web (and Node, and React Native) client of the danmaku gateway.
export { DanmakuClient } from "./client.js";
export type {
  ClientEvents,
  ClientOptions,
  JoinOptions,
  RoomHandlers,
  SnapshotReason,
  State,
  TokenSource,
  WebSocketConstructor,
  WebSocketLike,
} from "./client.js";
export { DanmakuError } from "./errors.js";
export type { ClientErrorCode } from "./errors.js";
export { backoffDelay } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { Continuity } from "./continuity.js";
export type { Verdict } from "./continuity.js";
export { parseFrame } from "./frames.js";
export { verifyLottery } from "./lottery.js";
export type { LotteryAudit, LotteryCheck } from "./lottery.js";
export { isKind } from "./types.js";
export type * from "./types.js";
