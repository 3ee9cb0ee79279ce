import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { Continuity } from "./continuity.js";
import { DanmakuError } from "./errors.js";
import { parseFrame } from "./frames.js";
import type {
  Ack,
  CohostAction,
  Hello,
  Joined,
  Left,
  ModerateAction,
  Opened,
  OpenWhat,
  Pong,
  RoomEvent,
  ServerMessage,
  Skipped,
  Snapshot,
} from "./types.js";

/** The part of the WebSocket API the client uses: the browser's, React Native's, or `ws`'s. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** A viewer token, or a function that gets a fresh one (called before every connection). */
export type TokenSource = string | (() => string | Promise<string>);

export interface ClientOptions {
  /**
   * The gateway's WebSocket URL (`wss://live.example.com/ws`), or several: each
   * reconnect goes to the next one, so a draining gateway's viewers move on.
   */
  url: string | string[];
  /** Without one, the viewer is anonymous (read-only, where the gateway allows it). */
  token?: TokenSource;
  /** The WebSocket implementation; default `globalThis.WebSocket` (pass `ws`'s in Node). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect delays (exponential, full jitter). */
  backoff?: BackoffOptions;
  /** How long a command waits for its reply, ms (default 10,000). */
  commandTimeoutMs?: number;
  /** Commands kept while disconnected (default 256); beyond, they fail with `queue_full`. */
  maxQueued?: number;
  /** The liveness timeout before the first `hello`, ms (default 10,000). */
  connectTimeoutMs?: number;
}

/** The client's connection state. */
export type State = "idle" | "connecting" | "open" | "reconnecting" | "closed" | "failed";

/** Why the app is handed a snapshot: replace the room's view with it. */
export type SnapshotReason = "joined" | "not_recovered" | "reset";

export interface RoomHandlers {
  /** Each sequenced event, once, in seq order. */
  onEvent?(event: RoomEvent): void;
  /** Seqs this viewer is not sent (sampled, targeted, retracted), in order with events. */
  onSkipped?(skipped: Skipped): void;
  /** Render the room from this (first join, a resume that could not recover, a reset). */
  onSnapshot?(snapshot: Snapshot, reason: SnapshotReason): void;
  /** Every `joined` reply, the first and each resume after a reconnect. */
  onJoined?(joined: Joined): void;
  onPresence?(online: number): void;
  /** The connection was put out of the room (a ban); the client will not rejoin it. */
  onKicked?(reason: string): void;
  /** A rejoin refused, or a continuity violation (code `gap`; the client re-syncs). */
  onError?(error: DanmakuError): void;
}

export interface JoinOptions {
  /** `"all"` (every event) or `"adaptive"` (high ones always, the rest within `max_rate`). */
  mode?: "all" | "adaptive";
  /** Events per second at most, with `"adaptive"` (1–1000, default 20). */
  max_rate?: number;
}

export interface ClientEvents {
  state: State;
  hello: Hello;
  /** A reconnect is scheduled. */
  reconnecting: { attempt: number; delayMs: number; code: number; reason: string };
  /** A problem that belongs to no command: an `error` without id, a terminal close, a bad line. */
  error: DanmakuError;
}

type Listener<T> = (value: T) => void;

type Command = { type: string } & Record<string, unknown>;

interface Pending {
  resolve(reply: ServerMessage): void;
  reject(error: DanmakuError): void;
  timer: ReturnType<typeof setTimeout>;
}

interface RoomEntry {
  room: string;
  handlers: RoomHandlers;
  options: JoinOptions;
  continuity: Continuity;
  /** The id of the join in flight, if any. */
  joining: number | undefined;
  /** Waiting for the first `joined`. */
  first: { resolve(j: Joined): void; reject(e: DanmakuError): void } | undefined;
}

/** Silence, in heartbeats, after which the connection is taken for dead. */
const LIVENESS_HEARTBEATS = 2.5;
/** The close codes of the protocol's ranges: reconnect below, stop from here. */
const TERMINAL_FROM = 4500;
const TERMINAL_TO = 4999;
const DRAINING = 1012;
const TOKEN_EXPIRED = 4001;

/**
 * A connection to the gateway that stays up: it reconnects with backoff, resumes every
 * joined room where it left off, and hands each room's events to the app once each,
 * in order, with nothing missing that is not told.
 */
export class DanmakuClient {
  private readonly urls: string[];
  private readonly options: ClientOptions;
  private readonly WS: WebSocketConstructor;
  private readonly listeners = new Map<keyof ClientEvents, Set<Listener<never>>>();
  private readonly rooms = new Map<string, RoomEntry>();
  private readonly pending = new Map<number, Pending>();
  private readonly queue: { command: Command; id: number }[] = [];
  private socket: WebSocketLike | undefined;
  private nextId = 1;
  private urlIndex = 0;
  private attempt = 0;
  private heartbeatMs = 25_000;
  private lastReceived = 0;
  private lastSent = 0;
  private liveness: ReturnType<typeof setInterval> | undefined;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private drainTimer: ReturnType<typeof setTimeout> | undefined;
  private drainAt: number | undefined;
  private opened = false;
  private firstHello: { resolve(h: Hello): void; reject(e: DanmakuError): void } | undefined;
  private currentState: State = "idle";
  private helloInfo: Hello | undefined;

  constructor(options: ClientOptions) {
    this.options = options;
    this.urls = Array.isArray(options.url) ? [...options.url] : [options.url];
    if (this.urls.length === 0) throw new TypeError("at least one gateway URL is needed");
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WS === undefined) {
      throw new TypeError("no WebSocket here: pass one (in Node, `import WebSocket from \"ws\"`)");
    }
    this.WS = WS;
  }

  /** The connection's state. */
  get state(): State {
    return this.currentState;
  }

  /** The last `hello` (gateway, conn, heartbeat), once connected. */
  get hello(): Hello | undefined {
    return this.helloInfo;
  }

  /** Where a joined room's continuity stands: its epoch and last seq accounted for. */
  position(room: string): { epoch: string; seq: number } | undefined {
    return this.rooms.get(room)?.continuity.since();
  }

  /** Subscribes to a client event; returns the unsubscribe function. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  /** Connects (and keeps reconnecting); resolves with the first `hello`. */
  connect(): Promise<Hello> {
    if (this.currentState !== "idle") {
      return this.helloInfo !== undefined
        ? Promise.resolve(this.helloInfo)
        : Promise.reject(new DanmakuError("closed", `connect() in state ${this.currentState}`));
    }
    return new Promise((resolve, reject) => {
      this.firstHello = { resolve, reject };
      this.setState("connecting");
      void this.dial();
    });
  }

  /** Closes for good: pending commands fail with `closed`, no reconnect. */
  close(): void {
    this.stop("closed", new DanmakuError("closed", "the client was closed"));
  }

  /**
   * Joins a room and keeps it joined: after every reconnect it resumes with `since`.
   * Resolves with the first `joined`; the room's messages go to `handlers`.
   */
  join(room: string, handlers: RoomHandlers = {}, options: JoinOptions = {}): Promise<Joined> {
    if (this.rooms.has(room)) {
      return Promise.reject(new DanmakuError("bad_request", `${room} is joined already`));
    }
    return new Promise((resolve, reject) => {
      const entry: RoomEntry = {
        room,
        handlers,
        options,
        continuity: new Continuity(),
        joining: undefined,
        first: { resolve, reject },
      };
      this.rooms.set(room, entry);
      if (this.currentState === "open") this.sendJoin(entry);
    });
  }

  /** Leaves a room: its handlers get nothing more. */
  async leave(room: string): Promise<Left> {
    const entry = this.rooms.get(room);
    this.rooms.delete(room);
    if (entry?.first !== undefined) entry.first.reject(new DanmakuError("closed", `left ${room}`));
    return (await this.send({ type: "leave", room })) as Left;
  }

  /** Comments; the ack has the seq, or `merged: true` when merged into a counted line. */
  comment(room: string, text: string): Promise<Ack> {
    return this.send({ type: "comment", room, text }) as Promise<Ack>;
  }

  /** Likes (`count` 1–100: batch taps into one command). */
  like(room: string, count = 1): Promise<Ack> {
    return this.send({ type: "like", room, count }) as Promise<Ack>;
  }

  vote(room: string, poll: string, option: number): Promise<Ack> {
    return this.send({ type: "vote", room, poll, option }) as Promise<Ack>;
  }

  answer(room: string, quiz: string, option: number): Promise<Ack> {
    return this.send({ type: "answer", room, quiz, option }) as Promise<Ack>;
  }

  /** Enters a lottery entered by command. */
  enter(room: string, lottery: string): Promise<Ack> {
    return this.send({ type: "enter", room, lottery }) as Promise<Ack>;
  }

  /** Claims one of a coupon's stock: resolves with the claim's code. */
  async claim(room: string, coupon: string): Promise<{ coupon: string; code: string }> {
    const ack = (await this.send({ type: "claim", room, coupon })) as Ack;
    if (ack.claim === undefined) throw new DanmakuError("internal", "the claim's ack has no code");
    return ack.claim;
  }

  /** A co-host move (a viewer's, or a host's naming `user` and maybe `seat`). */
  cohost(room: string, action: CohostAction, target: { user?: string; seat?: number } = {}): Promise<Ack> {
    return this.send({ type: "cohost", room, action, ...target }) as Promise<Ack>;
  }

  /** A host's or moderator's action on a user (mute, ban, …) or on an event (`retract` with `seq`). */
  moderate(
    room: string,
    action: ModerateAction,
    target: { user?: string; seq?: number; duration_s?: number },
  ): Promise<Ack> {
    return this.send({ type: "moderate", room, action, ...target }) as Promise<Ack>;
  }

  /**
   * A host opens a keyword game, quiz, lottery or coupon in a joined room, with the body
   * the HTTP API takes for it (`{question, options, answer, duration_s}` for a quiz, …):
   * resolves with what was opened and the seq of its first event.
   */
  async open(room: string, what: OpenWhat, body: Record<string, unknown>): Promise<Opened & { seq: number }> {
    const ack = (await this.send({ ...body, type: "open", room, what })) as Ack;
    if (ack.opened === undefined || ack.seq === undefined) {
      throw new DanmakuError("internal", "the open's ack names nothing opened");
    }
    return { ...ack.opened, seq: ack.seq };
  }

  /** A round trip: the server's clock and the time it took. */
  async ping(): Promise<{ serverTime: number; rttMs: number }> {
    const started = Date.now();
    const pong = (await this.send({ type: "ping" })) as Pong;
    return { serverTime: pong.server_time, rttMs: Date.now() - started };
  }

  /**
   * Sends any command (an `id` is added) and resolves with its reply, or rejects with
   * the server's error (`code`, `retryAfterMs`) or the client's (`disconnected`,
   * `timeout`, `closed`, `queue_full`). While disconnected, commands wait for the
   * connection (up to the timeout).
   */
  send(command: Command): Promise<ServerMessage> {
    if (this.currentState === "closed" || this.currentState === "failed") {
      return Promise.reject(new DanmakuError("closed", `the client is ${this.currentState}`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeout = this.options.commandTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        const queued = this.queue.findIndex((q) => q.id === id);
        if (queued >= 0) this.queue.splice(queued, 1);
        reject(new DanmakuError("timeout", `no reply to ${command.type} within ${timeout} ms`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      if (this.currentState === "open") {
        this.write({ ...command, id });
      } else if (this.queue.length >= (this.options.maxQueued ?? 256)) {
        this.settle(id, new DanmakuError("queue_full", "too many commands wait for the connection"));
      } else {
        this.queue.push({ command, id });
      }
    });
  }

  // --- the connection ---------------------------------------------------------------

  private async dial(): Promise<void> {
    let token: string | undefined;
    try {
      const source = this.options.token;
      token = typeof source === "function" ? await source() : source;
    } catch (e) {
      this.emit("error", new DanmakuError("unauthorized", `the token provider failed: ${String(e)}`));
      this.scheduleReconnect(0, "token provider failed");
      return;
    }
    if (this.currentState === "closed" || this.currentState === "failed") return;
    const base = this.urls[this.urlIndex % this.urls.length] ?? this.urls[0] ?? "";
    const params = [`refusal=close`];
    if (token !== undefined && token !== "") params.unshift(`token=${encodeURIComponent(token)}`);
    const url = `${base}${base.includes("?") ? "&" : "?"}${params.join("&")}`;
    let socket: WebSocketLike;
    try {
      socket = new this.WS(url, "danmaku.v1");
    } catch (e) {
      this.emit("error", new DanmakuError("bad_request", `cannot open ${base}: ${String(e)}`));
      this.scheduleReconnect(1006, "cannot open");
      return;
    }
    this.socket = socket;
    this.opened = false;
    this.lastReceived = Date.now();
    const connectTimeout = this.options.connectTimeoutMs ?? 10_000;
    this.liveness = setInterval(() => this.checkLiveness(connectTimeout), 250);
    socket.onmessage = (ev) => {
      if (this.socket !== socket) return;
      this.lastReceived = Date.now();
      const text = typeof ev.data === "string" ? ev.data : String(ev.data);
      for (const message of parseFrame(text, (line) =>
        this.emit("error", new DanmakuError("bad_request", `unreadable line from the server: ${line.slice(0, 100)}`)),
      )) {
        this.dispatch(message);
      }
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.lost(ev.code, ev.reason);
    };
    socket.onerror = () => {
      // A close event follows; it decides what happens.
    };
  }

  /** No frame for 2.5 heartbeats (the server pings; a quiet room gets our `ping`'s pong). */
  private checkLiveness(connectTimeout: number): void {
    const now = Date.now();
    const silent = now - this.lastReceived;
    const limit = this.opened ? this.heartbeatMs * LIVENESS_HEARTBEATS : connectTimeout;
    if (silent > limit) {
      this.abandon(4000, this.opened ? "client liveness timeout" : "no hello");
      return;
    }
    if (this.opened && now - Math.max(this.lastReceived, this.lastSent) >= this.heartbeatMs) {
      this.send({ type: "ping" }).catch(() => {});
    }
  }

  /** Drops the socket without waiting for its close handshake, and reconnects. */
  private abandon(code: number, reason: string): void {
    const socket = this.socket;
    if (socket === undefined) return;
    this.detach(socket);
    try {
      socket.close(code, reason);
    } catch {
      // Closing a socket that is not open yet may throw; it is gone either way.
    }
    this.lost(code, reason);
  }

  private detach(socket: WebSocketLike): void {
    socket.onmessage = null;
    socket.onclose = null;
    // Closing a socket still connecting reports an error (`ws` throws it if nobody listens).
    socket.onerror = () => {};
    socket.onopen = null;
    if (this.socket === socket) this.socket = undefined;
  }

  /** The connection is gone: fail what waited on it, then reconnect unless told to stop. */
  private lost(code: number, reason: string): void {
    if (this.socket !== undefined) this.detach(this.socket);
    this.clearTimers();
    const wasOpen = this.opened;
    this.opened = false;
    // Joins in flight are sent again on the next connection; queued commands wait for
    // it; commands sent on this one may or may not have been done.
    const joins = new Set<number>();
    for (const entry of this.rooms.values()) {
      if (entry.joining !== undefined) joins.add(entry.joining);
      entry.joining = undefined;
    }
    for (const [id, pending] of this.pending) {
      if (joins.has(id)) {
        clearTimeout(pending.timer);
        this.pending.delete(id);
      } else if (!this.queue.some((q) => q.id === id)) {
        this.settle(id, new DanmakuError("disconnected", `the connection closed (${code}) before the reply`));
      }
    }
    if (this.currentState === "closed" || this.currentState === "failed") return;
    if (code >= TERMINAL_FROM && code <= TERMINAL_TO) {
      this.stop("failed", new DanmakuError("terminal", `the server ended the session: ${code} ${reason}`));
      return;
    }
    const drainAt = this.drainAt;
    this.drainAt = undefined;
    this.urlIndex += 1;
    if (drainAt !== undefined || code === DRAINING) {
      // Told to go: come back (to the next gateway) once the drain's time is up.
      this.scheduleReconnect(code, reason, Math.max(0, (drainAt ?? 0) - Date.now()));
    } else if (code === TOKEN_EXPIRED) {
      this.scheduleReconnect(code, reason, 0);
    } else {
      if (wasOpen) this.attempt = 0;
      this.scheduleReconnect(code, reason);
    }
  }

  private scheduleReconnect(code: number, reason: string, delay?: number): void {
    const delayMs = delay ?? backoffDelay(this.attempt++, this.options.backoff);
    this.setState("reconnecting");
    this.emit("reconnecting", { attempt: this.attempt, delayMs, code, reason });
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.dial();
    }, delayMs);
  }

  private clearTimers(): void {
    if (this.liveness !== undefined) clearInterval(this.liveness);
    if (this.retry !== undefined) clearTimeout(this.retry);
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    this.liveness = this.retry = this.drainTimer = undefined;
  }

  private stop(state: "closed" | "failed", error: DanmakuError): void {
    if (this.currentState === "closed" || this.currentState === "failed") return;
    this.clearTimers();
    const socket = this.socket;
    if (socket !== undefined) {
      this.detach(socket);
      try {
        socket.close(1000, "bye");
      } catch {
        // Already closing.
      }
    }
    this.setState(state);
    for (const [id] of this.pending) this.settle(id, error);
    this.queue.length = 0;
    for (const entry of this.rooms.values()) entry.first?.reject(error);
    this.rooms.clear();
    this.firstHello?.reject(error);
    this.firstHello = undefined;
    if (state === "failed") this.emit("error", error);
  }

  private write(message: Command): void {
    const socket = this.socket;
    if (socket === undefined) return;
    try {
      socket.send(JSON.stringify(message));
      this.lastSent = Date.now();
    } catch {
      // The socket is closing; its close event takes over.
    }
  }

  private sendJoin(entry: RoomEntry): void {
    const id = this.nextId++;
    entry.joining = id;
    const since = entry.continuity.since();
    const command: Command = { type: "join", room: entry.room, id };
    if (since !== undefined) command.since = since;
    if (entry.options.mode !== undefined) command.mode = entry.options.mode;
    if (entry.options.max_rate !== undefined) command.max_rate = entry.options.max_rate;
    const timeout = this.options.commandTimeoutMs ?? 10_000;
    const timer = setTimeout(() => {
      this.pending.delete(id);
      if (entry.joining === id) this.abandon(4000, `no reply to the join of ${entry.room}`);
    }, timeout);
    this.pending.set(id, {
      resolve: (reply) => this.onJoined(entry, id, reply as Joined),
      reject: (error) => {
        if (entry.joining !== id) return;
        entry.joining = undefined;
        this.rooms.delete(entry.room);
        if (entry.first !== undefined) entry.first.reject(error);
        else entry.handlers.onError?.(error);
        entry.first = undefined;
      },
      timer,
    });
    this.write(command);
  }

  private onJoined(entry: RoomEntry, id: number, joined: Joined): void {
    if (entry.joining !== id || this.rooms.get(entry.room) !== entry) return;
    entry.joining = undefined;
    const resumed = entry.continuity.since() !== undefined;
    entry.continuity.joined(joined);
    entry.handlers.onJoined?.(joined);
    if (!joined.recovered || !resumed) {
      entry.handlers.onSnapshot?.(joined.snapshot, resumed ? "not_recovered" : "joined");
    }
    if (entry.first !== undefined) {
      entry.first.resolve(joined);
      entry.first = undefined;
    }
  }

  /** A command's reply (or error) settles its promise. */
  private settle(id: number, reply: ServerMessage | DanmakuError): void {
    const pending = this.pending.get(id);
    if (pending === undefined) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (reply instanceof DanmakuError) pending.reject(reply);
    else if (reply.type === "error") pending.reject(DanmakuError.fromFrame(reply));
    else pending.resolve(reply);
  }

  private dispatch(message: ServerMessage): void {
    switch (message.type) {
      case "hello":
        this.onHello(message);
        return;
      case "event":
      case "skipped": {
        const entry = this.rooms.get(message.room);
        if (entry === undefined) return;
        const verdict =
          message.type === "event" ? entry.continuity.event(message) : entry.continuity.skipped(message);
        if (verdict.kind === "deliver") {
          if (message.type === "event") entry.handlers.onEvent?.(message);
          else entry.handlers.onSkipped?.(message);
        } else if (verdict.kind === "gap" && entry.joining === undefined) {
          entry.handlers.onError?.(
            new DanmakuError(
              "gap",
              `${entry.room}: expected seq ${verdict.expected}, got ${verdict.got} (epoch ${String(verdict.epoch)}); re-syncing`,
            ),
          );
          this.sendJoin(entry);
        }
        return;
      }
      case "reset": {
        const entry = this.rooms.get(message.room);
        if (entry === undefined) return;
        entry.continuity.reset(message);
        entry.handlers.onSnapshot?.(message.snapshot, "reset");
        return;
      }
      case "presence":
        this.rooms.get(message.room)?.handlers.onPresence?.(message.online);
        return;
      case "kicked": {
        const entry = this.rooms.get(message.room);
        if (entry === undefined) return;
        this.rooms.delete(message.room);
        entry.handlers.onKicked?.(message.reason);
        return;
      }
      case "reconnect":
        this.onReconnect(message.after_ms);
        return;
      case "error":
        if (message.id === undefined) {
          this.emit("error", DanmakuError.fromFrame(message));
        } else {
          this.settle(message.id, message);
        }
        return;
      case "joined":
      case "ack":
      case "left":
      case "pong":
        this.settle(message.id, message);
        return;
      default:
        // A message type this client does not know yet: ignored, as the protocol says.
        return;
    }
  }

  private onHello(hello: Hello): void {
    this.helloInfo = hello;
    this.heartbeatMs = hello.heartbeat_ms > 0 ? hello.heartbeat_ms : 25_000;
    this.opened = true;
    this.attempt = 0;
    this.setState("open");
    this.emit("hello", hello);
    for (const entry of this.rooms.values()) this.sendJoin(entry);
    for (const { command, id } of this.queue.splice(0)) {
      if (this.pending.has(id)) this.write({ ...command, id });
    }
    if (this.firstHello !== undefined) {
      this.firstHello.resolve(hello);
      this.firstHello = undefined;
    }
  }

  /** The gateway drains: leave when it says, for the next gateway. */
  private onReconnect(afterMs: number): void {
    this.drainAt = Date.now() + Math.max(0, afterMs);
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    this.drainTimer = setTimeout(() => this.abandon(DRAINING, "draining"), Math.max(0, afterMs));
  }

  private setState(state: State): void {
    if (this.currentState === state) return;
    this.currentState = state;
    this.emit("state", state);
  }

  private emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        (listener as Listener<ClientEvents[K]>)(value);
      } catch (e) {
        // A listener's bug must not break the connection.
        console.error("danmaku client listener failed", e);
      }
    }
  }
}
