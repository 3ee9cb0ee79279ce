// The wire protocol's messages and event kinds, as TypeScript types (protocol/README.md
// is the contract; these follow it field by field).

/** A sequenced event's priority; absent on the wire means `normal`. */
export type Priority = "high" | "normal" | "low";

/** Where a room's continuity stands: the room's epoch and the last seq accounted for. */
export interface Position {
  epoch: string;
  seq: number;
}

/** The data of every event kind the gateway itself produces or reserves. */
export interface EventData {
  comment: { user: string; name: string; text: string };
  likes: { total: number; delta: number };
  poll: Poll;
  retract: { seq: number };
  "comment.merged": { text: string; count: number; users: string[] };
  entrance: {
    count: number;
    names: string[];
    vip: { user: string; name: string; tags: string[] }[];
    vip_count: number;
  };
  coupon: Coupon;
  keyword: Keyword;
  quiz: Quiz;
  lottery: Lottery;
  "lottery.won": { id: string; prize: string };
  seats: Seats;
  "cohost.request": { user: string; name: string };
  "cohost.invite": { by: string; seat?: number };
  "cohost.accepted": { seat: number };
  "cohost.rejected": { reason: "rejected" | "kicked" | "expired" | "seat_removed" };
  stage: Stage | null;
  moderation: {
    action: "mute" | "unmute" | "ban" | "unban";
    user: string;
    by: string;
    at: number;
    until?: number;
  };
  settings: RoomSettings;
}

/** The kinds above; a backend may publish any other `[a-z][a-z0-9_.]{0,31}`. */
export type KnownKind = keyof EventData;

interface EventBase {
  type: "event";
  room: string;
  epoch: string;
  seq: number;
  priority?: "high" | "low";
  /** Unix ms when it was sequenced (server clock). */
  ts: number;
}

/** An event of a known kind, its `data` typed by the kind. */
export type KnownEvent = { [K in KnownKind]: EventBase & { kind: K; data: EventData[K] } }[KnownKind];

/** Any sequenced event: a known kind, or a backend's own with any JSON `data`. */
export type RoomEvent = KnownEvent | (EventBase & { kind: string; data: unknown });

/** Narrows an event to a known kind: `if (isKind(e, "comment")) e.data.text`. */
export function isKind<K extends KnownKind>(
  event: RoomEvent,
  kind: K,
): event is EventBase & { kind: K; data: EventData[K] } {
  return event.kind === kind;
}

export interface Poll {
  poll: string;
  state: "open" | "closed";
  question: string;
  options: { text: string; votes: number }[];
  ends_at: number;
}

export interface Coupon {
  coupon: string;
  state: "open" | "sold_out" | "closed";
  title: string;
  stock: number;
  remaining: number;
  per_user: number;
  ends_at: number;
}

export interface Keyword {
  id: string;
  state: "open" | "closed";
  keyword: string;
  goal?: number;
  ends_at: number;
  comments: number;
  participants: number;
  reached?: boolean;
}

export interface Quiz {
  id: string;
  state: "open" | "closed";
  question: string;
  options: string[];
  ends_at: number;
  answers: number;
  /** Only once closed. */
  answer?: number;
  counts?: number[];
  correct?: number;
}

export type LotteryEntry = { comment: string } | { quiz: string } | "command";

export interface Lottery {
  id: string;
  state: "open" | "drawn";
  prize: string;
  winners: number;
  entry: LotteryEntry;
  tags?: string[];
  /** Hex SHA-256 of the seed, published at the open. */
  commitment: string;
  ends_at: number;
  entrants: number;
  /** Only once drawn. */
  seed?: string;
  entrants_digest?: string;
  winner_ids?: string[];
}

export interface Seat {
  seat: number;
  user: string;
  name: string;
  since: number;
}

export interface Seats {
  count: number;
  seats: (Seat | null)[];
  queue: { user: string; name: string; since: number }[];
}

export interface Stage {
  product: unknown;
  ends_at?: number;
  label?: string;
  since: number;
}

export interface RoomSettings {
  slow_mode_s: number;
  comments_per_s: number;
  merge_after: number;
  merge_window_ms: number;
  blocked_words: string[];
  min_level: number;
  entrances: boolean;
  vip_tags: string[];
  experiment: { name: string; variants: string[] } | null;
}

/** A run of seqs this viewer was not sent, told in place (never a silent gap). */
export interface Skipped {
  type: "skipped";
  room: string;
  from: number;
  to: number;
  count: number;
  reason: "sampled" | "targeted" | "retracted" | string;
}

/** Everything a viewer needs to render a room at once. */
export interface Snapshot {
  /** The last events, oldest first; a run of events for others is one `skipped`. */
  recent: (RoomEvent | Skipped)[];
  likes: number;
  online: number;
  polls: Poll[];
  coupons?: Coupon[];
  keywords?: Keyword[];
  quizzes?: Quiz[];
  lotteries?: Lottery[];
  seats?: Seats;
  stage?: Stage;
  settings?: RoomSettings;
}

export interface Welcome {
  text: string;
  returning: boolean;
  visits: number;
}

export interface Hello {
  type: "hello";
  conn: string;
  gateway: string;
  heartbeat_ms: number;
  server_time: number;
}

export interface Joined {
  type: "joined";
  id: number;
  room: string;
  epoch: string;
  seq: number;
  recovered: boolean;
  snapshot: Snapshot;
  welcome?: Welcome;
  variant?: string;
}

export interface Ack {
  type: "ack";
  id: number;
  seq?: number;
  merged?: boolean;
  claim?: { coupon: string; code: string };
  /** A host's `open`: what it opened (a coupon with an audience also counts its viewers here). */
  opened?: Opened;
}

/** What a host's `open` opened. */
export interface Opened {
  what: OpenWhat;
  id: string;
  audience_online?: number;
}

export interface Left {
  type: "left";
  id: number;
  room: string;
}

export interface Pong {
  type: "pong";
  id: number;
  server_time: number;
}

export interface ErrorFrame {
  type: "error";
  id?: number;
  code: ErrorCode;
  message: string;
  retry_after_ms?: number;
}

export interface Reset {
  type: "reset";
  room: string;
  epoch: string;
  seq: number;
  snapshot: Snapshot;
}

export interface Presence {
  type: "presence";
  room: string;
  online: number;
}

export interface Reconnect {
  type: "reconnect";
  reason: string;
  after_ms: number;
}

export interface Kicked {
  type: "kicked";
  room: string;
  reason: string;
}

/** Every message the server sends. */
export type ServerMessage =
  | Hello
  | Joined
  | RoomEvent
  | Presence
  | Ack
  | Left
  | Pong
  | ErrorFrame
  | Reset
  | Reconnect
  | Skipped
  | Kicked;

/** The protocol's error codes (an `error` frame's `code`). */
export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_joined"
  | "rate_limited"
  | "too_large"
  | "invalid_room"
  | "unknown_poll"
  | "poll_closed"
  | "already_voted"
  | "too_many_rooms"
  | "unavailable"
  | "outcome_unknown"
  | "internal"
  | "room_busy"
  | "muted"
  | "slow_mode"
  | "blocked"
  | "already_answered"
  | "quiz_closed"
  | "unknown_quiz"
  | "unknown_lottery"
  | "lottery_closed"
  | "already_entered"
  | "not_eligible"
  | "sold_out"
  | "already_claimed"
  | "coupon_closed"
  | "unknown_coupon"
  | "seat_taken"
  | "unknown_interaction"
  | "interaction_closed";

/** A viewer's co-host moves, and a host's. */
export type CohostAction =
  | "request"
  | "cancel"
  | "accept_invite"
  | "decline"
  | "leave"
  | "accept"
  | "reject"
  | "invite"
  | "kick";

export type ModerateAction = "mute" | "unmute" | "ban" | "unban" | "retract";

/** What a host may open over its connection. */
export type OpenWhat = "keyword" | "quiz" | "lottery" | "coupon";
