//! Every setting, declared once: its flag and TOML key (the field's name), its
//! environment variable, its doc (the `--help` line and the README's "meaning"), where
//! it goes in [`Config`] (which also gives its default) and the store it applies to.
//!
//! The `settings!` macro turns the list into the [`Args`] fields, the file merge, the
//! plain assignments into [`Config`] and the [`SETTINGS`] table that `--help` and the
//! README table are made from. Settings that combine with others (credentials, the
//! store) are marked `custom` and applied in `cli::into_config`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use danmaku_fanout::redis::RedisConfig;
use serde::Deserialize;

use crate::config::Config;

/// The store a setting applies to; given with another store, it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Every store.
    Any,
    /// Only the in-memory store (no `--redis-url`, no `--redis-cluster`).
    Memory,
    /// Only Redis (`--redis-url` or `--redis-cluster`).
    Redis,
}

/// One declared setting, for `--help`, the docs and the store check.
#[derive(Debug)]
pub struct Setting {
    /// The field's name: the TOML key; the flag is this with `-`.
    pub name: &'static str,
    /// The store it applies to.
    pub store: Store,
    /// The default, read from the default configuration or described.
    pub default: fn(&Config) -> Shown,
}

/// How a default is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// A value, as it would be given (`25000`).
    Value(String),
    /// A description (`dev mode`).
    Text(&'static str),
}

impl Setting {
    /// The long flag, `--heartbeat-ms`.
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

/// Declares the settings. Each entry is
/// `/// doc`, `#[arg(env = "DANMAKU_…", …)]`, `name: Type => target [in store],`
/// where the target is one of
/// - `value(path)`: `config.path = value` (the default is `config.path`);
/// - `millis(path)`, `secs(path)`: a `Duration` field, given in ms or s;
/// - `custom(default = |config| value)` or `custom(text = "description")`: applied
///   in `cli::into_config`.
macro_rules! settings {
    (@store) => { Store::Any };
    (@store memory) => { Store::Memory };
    (@store redis) => { Store::Redis };

    (@default value($($f:ident).+)) => { |c| Shown::Value(c.$($f).+.to_string()) };
    (@default millis($($f:ident).+)) => { |c| Shown::Value(c.$($f).+.as_millis().to_string()) };
    (@default secs($($f:ident).+)) => { |c| Shown::Value(c.$($f).+.as_secs().to_string()) };
    (@default custom(text = $text:expr)) => { |_| Shown::Text($text) };
    (@default custom(default = $shown:expr)) => {
        |c| {
            let shown: fn(&Config) -> String = $shown;
            Shown::Value(shown(c))
        }
    };

    (@apply $v:expr, $c:ident, value($($f:ident).+)) => {
        if let Some(v) = $v.take() { $c.$($f).+ = v; }
    };
    (@apply $v:expr, $c:ident, millis($($f:ident).+)) => {
        if let Some(v) = $v.take() { $c.$($f).+ = Duration::from_millis(v); }
    };
    (@apply $v:expr, $c:ident, secs($($f:ident).+)) => {
        if let Some(v) = $v.take() { $c.$($f).+ = Duration::from_secs(v); }
    };
    (@apply $v:expr, $c:ident, custom($($shown:tt)*)) => {};

    ($(
        $(#[$meta:meta])*
        $name:ident: $ty:ty => $kind:ident ($($target:tt)*) $(in $store:ident)?,
    )*) => {
        /// The danmaku gateway: live-room comments, likes and votes over WebSocket.
        ///
        /// Every setting is a flag, a `DANMAKU_*` environment variable or a key of the
        /// `--config` file; precedence: flag, environment, file, default.
        #[derive(Debug, Default, Parser, Deserialize)]
        #[command(name = "danmaku-gateway", version, about)]
        #[serde(default, deny_unknown_fields)]
        pub struct Args {
            $( $(#[$meta])* #[arg(long)] pub $name: Option<$ty>, )*
        }

        /// Every setting, in declaration order.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                store: settings!(@store $($store)?),
                default: settings!(@default $kind($($target)*)),
            },
        )*];

        impl Args {
            /// Takes from `file` what the flags and environment left unset.
            pub(super) fn fill_from(&mut self, file: Args) {
                $( if self.$name.is_none() { self.$name = file.$name; } )*
            }

            /// The declared settings that were given (by flag, environment or file).
            pub(super) fn given(&self) -> impl Iterator<Item = &'static Setting> {
                let given = [$( self.$name.is_some() ),*];
                SETTINGS.iter().zip(given).filter_map(|(s, g)| g.then_some(s))
            }

            /// Moves the plain settings into `config`; `custom` ones are left to
            /// `into_config`.
            pub(super) fn apply_plain(&mut self, config: &mut Config) {
                $( settings!(@apply self.$name, config, $kind($($target)*)); )*
            }
        }
    };
}

/// The log filter without `--log`.
pub const DEFAULT_LOG: &str = "info";
/// The log format without `--log-format`.
pub const DEFAULT_LOG_FORMAT: &str = "text";
/// The algorithm of `--jwt-public-key` without `--jwt-algorithm`.
pub const DEFAULT_JWT_ALGORITHM: &str = "RS256";

settings! {
    /// TOML file with any of the other settings, keys spelled like the flags with `_`
    /// (`heartbeat_ms = 25000`).
    #[arg(env = "DANMAKU_CONFIG")]
    #[serde(skip)]
    config: PathBuf => custom(text = "—"),

    /// host:port of the public port (WebSocket, HTTP API, health, metrics).
    #[arg(env = "DANMAKU_LISTEN")]
    listen: String => custom(default = |c| c.listen.to_string()),

    /// This gateway's id, in `hello` and connection ids: 1–32 of `[A-Za-z0-9_-]`.
    #[arg(env = "DANMAKU_GATEWAY_ID")]
    gateway_id: String => value(gateway_id),

    /// HS256 secret for viewer tokens, at least 16 bytes. Without it (and without
    /// `--jwt-public-key`) the gateway runs in dev mode: a random secret, a printed
    /// viewer token and API key, anonymous viewers on.
    #[arg(env = "DANMAKU_JWT_SECRET")]
    jwt_secret: String => custom(text = "dev mode"),

    /// PEM public key file for RS256 or ES256 viewer tokens, instead of `--jwt-secret`.
    #[arg(env = "DANMAKU_JWT_PUBLIC_KEY")]
    jwt_public_key: PathBuf => custom(text = "—"),

    /// The algorithm of `--jwt-public-key`: `RS256` or `ES256`.
    #[arg(env = "DANMAKU_JWT_ALGORITHM")]
    jwt_algorithm: String => custom(default = |_| DEFAULT_JWT_ALGORITHM.to_string()),

    /// Requests without a token get a read-only viewer (`--anonymous false` turns it off
    /// in dev mode).
    #[arg(env = "DANMAKU_ANONYMOUS", num_args = 0..=1, default_missing_value = "true")]
    anonymous: bool => custom(text = "on in dev mode, else off"),

    /// Comma-separated API keys for the HTTP API (`Authorization: Bearer <key>`).
    #[arg(env = "DANMAKU_API_KEYS", value_delimiter = ',')]
    api_keys: Vec<String> => custom(text = "a printed dev key"),

    /// Comma-separated `Origin` values (`scheme://host[:port]`) allowed to open a
    /// WebSocket; with a list, an upgrade without `Origin` is refused.
    #[arg(env = "DANMAKU_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String> => custom(text = "any"),

    /// Comma-separated `Origin` values (`scheme://host[:port]`) whose pages may call the
    /// HTTP API (CORS: preflights granted, answers marked); by default none may, and
    /// preflights get 403. Such a page holds an API key: list only origins whose pages
    /// are for trusted operators, never for viewers.
    #[arg(env = "DANMAKU_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String> => custom(text = "none"),

    /// When set, a viewer token must carry this `aud` claim (without it, a token that
    /// has an `aud` is refused).
    #[arg(env = "DANMAKU_JWT_AUDIENCE")]
    jwt_audience: String => custom(text = "—"),

    /// When set, a viewer token must carry this `iss` claim.
    #[arg(env = "DANMAKU_JWT_ISSUER")]
    jwt_issuer: String => custom(text = "—"),

    /// Server ping interval in ms; a connection silent for 2.5 times this is closed
    /// with 4000.
    #[arg(env = "DANMAKU_HEARTBEAT_MS")]
    heartbeat_ms: u64 => millis(ws.heartbeat),

    /// Largest client frame in bytes; a larger one closes the connection with 1009.
    #[arg(env = "DANMAKU_MAX_FRAME_BYTES")]
    max_frame_bytes: usize => value(limits.max_frame_bytes),

    /// Rooms one connection may have joined at once.
    #[arg(env = "DANMAKU_MAX_ROOMS_PER_CONN")]
    max_rooms_per_conn: usize => value(limits.max_rooms),

    /// Longest comment, in Unicode scalar values (at most `--max-frame-bytes`).
    #[arg(env = "DANMAKU_COMMENT_MAX_CHARS")]
    comment_max_chars: usize => value(limits.comment_max_chars),

    /// Largest `count` of one `like` command.
    #[arg(env = "DANMAKU_LIKE_MAX_COUNT")]
    like_max_count: u32 => value(limits.like_max_count),

    /// Comments per second per connection.
    #[arg(env = "DANMAKU_COMMENTS_PER_S")]
    comments_per_s: f64 => value(rates.comments.per_s),

    /// Comments one connection may send at once.
    #[arg(env = "DANMAKU_COMMENTS_BURST")]
    comments_burst: f64 => value(rates.comments.burst),

    /// Like commands per second per connection.
    #[arg(env = "DANMAKU_LIKES_PER_S")]
    likes_per_s: f64 => value(rates.likes.per_s),

    /// Like commands one connection may send at once.
    #[arg(env = "DANMAKU_LIKES_BURST")]
    likes_burst: f64 => value(rates.likes.burst),

    /// Votes per second per connection.
    #[arg(env = "DANMAKU_VOTES_PER_S")]
    votes_per_s: f64 => value(rates.votes.per_s),

    /// Votes one connection may send at once.
    #[arg(env = "DANMAKU_VOTES_BURST")]
    votes_burst: f64 => value(rates.votes.burst),

    /// Open connections per client IP (429 beyond).
    #[arg(env = "DANMAKU_MAX_CONNS_PER_IP")]
    max_conns_per_ip: usize => value(ws.max_conns_per_ip),

    /// Comma-separated addresses or CIDR networks of proxies (balancers) in front of
    /// the gateway: from these only, `X-Forwarded-For` (its rightmost entry that is not
    /// itself a trusted proxy) or the PROXY header gives the client's address, which
    /// the per-IP limit and the logs use. Others' headers are ignored.
    #[arg(env = "DANMAKU_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String> => custom(text = "none"),

    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy's
    /// `send-proxy` sends), from a proxy in `--trusted-proxies`; a connection without
    /// one, or from another address, is closed.
    #[arg(env = "DANMAKU_PROXY_PROTOCOL", num_args = 0..=1, default_missing_value = "true")]
    proxy_protocol: bool => value(ws.proxy_protocol),

    /// Open WebSocket connections in all (503 beyond).
    #[arg(env = "DANMAKU_MAX_CONNECTIONS")]
    max_connections: usize => value(ws.max_connections),

    /// Time from TCP accept to the end of the request head, in ms.
    #[arg(env = "DANMAKU_HANDSHAKE_TIMEOUT_MS")]
    handshake_timeout_ms: u64 => millis(ws.handshake_timeout),

    /// Deliveries queued per connection; beyond, the room catches up from history or
    /// gets `reset`.
    #[arg(env = "DANMAKU_OUTBOUND_QUEUE")]
    outbound_queue: usize => value(ws.outbound_queue),

    /// Bytes of frames queued per connection; beyond, as for `--outbound-queue`.
    #[arg(env = "DANMAKU_OUTBOUND_QUEUE_BYTES")]
    outbound_queue_bytes: usize => value(ws.outbound_queue_bytes),

    /// Kernel send buffer of each viewer socket (`SO_SNDBUF`, 4 KiB to 64 MiB): bounds
    /// the kernel memory a viewer that stops reading holds; 0 leaves it to the kernel's
    /// autotuning (up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default).
    #[arg(env = "DANMAKU_SEND_BUFFER_BYTES")]
    send_buffer_bytes: usize => value(ws.send_buffer_bytes),

    /// Most messages coalesced into one WebSocket frame.
    #[arg(env = "DANMAKU_MAX_BATCH")]
    max_batch: usize => value(ws.max_batch),

    /// A write blocked this long, in ms, closes the connection with 4008.
    #[arg(env = "DANMAKU_WRITE_TIMEOUT_MS")]
    write_timeout_ms: u64 => millis(ws.write_timeout),

    /// Hot rooms, in ms: once 8 events of a room came within 4 times this, its viewers
    /// get its events once per this time, together in one frame (one write per viewer
    /// per linger, however fast the room goes); quieter rooms are written at once; 0
    /// disables.
    #[arg(env = "DANMAKU_WRITE_LINGER_MS")]
    write_linger_ms: u64 => millis(ws.write_linger),

    /// Writes per second from which coalescing pays (about half a core's writes): a
    /// busy room is batched only once its viewers × events per second reach it, and a
    /// viewer's own events only while the gateway's rooms ask for that many; below, every
    /// event is written at once; 0 coalesces whatever the cost.
    #[arg(env = "DANMAKU_COALESCE_WRITES_PER_S")]
    coalesce_writes_per_s: u64 => value(ws.coalesce_writes_per_s),

    /// Viewer comments a room admits per second, on every gateway together; beyond, a
    /// comment gets `room_busy` (hosts, moderators and backends are never refused for
    /// it); 0: no budget.
    #[arg(env = "DANMAKU_ROOM_COMMENTS_PER_S")]
    room_comments_per_s: u32 => value(rooms.comments_per_s),

    /// Copies of one comment (NFKC, trimmed, lower-cased) sequenced one by one within
    /// a merge window; further copies are acked `merged:true` and told in one
    /// `comment.merged` when the window ends; 0: never merge.
    #[arg(env = "DANMAKU_MERGE_AFTER")]
    merge_after: u32 => value(rooms.merge_after),

    /// How long a merge window lasts from its text's first copy, in ms.
    #[arg(env = "DANMAKU_MERGE_WINDOW_MS")]
    merge_window_ms: u64 => millis(rooms.merge_window),

    /// Rooms' default slow mode: a viewer comments at most once per this many seconds
    /// (`slow_mode` otherwise); 0: off. A room's settings replace every room default.
    #[arg(env = "DANMAKU_ROOM_SLOW_MODE_S")]
    room_slow_mode_s: u32 => value(rooms.slow_mode_s),

    /// Rooms' default minimum `level` claim to comment (`forbidden` below it).
    #[arg(env = "DANMAKU_ROOM_MIN_LEVEL")]
    room_min_level: i64 => value(rooms.min_level),

    /// Comma-separated words rooms block by default: a viewer comment containing one
    /// (compared NFKC and lower-cased, so full-width and mixed case too) gets
    /// `blocked` and is not sequenced.
    #[arg(env = "DANMAKU_ROOM_BLOCKED_WORDS", value_delimiter = ',')]
    room_blocked_words: Vec<String> => custom(text = "none"),

    /// Rooms tell their joins in `entrance` events (at most one a second, low) unless
    /// their settings say otherwise.
    #[arg(env = "DANMAKU_ROOM_ENTRANCES", num_args = 0..=1, default_missing_value = "true")]
    room_entrances: bool => value(rooms.entrances),

    /// Comma-separated tags whose viewers rooms' `entrance` events name one by one.
    #[arg(env = "DANMAKU_ROOM_VIP_TAGS", value_delimiter = ',')]
    room_vip_tags: Vec<String> => custom(text = "none"),

    /// Online counts (`presence`) are announced at most this often per room, in ms.
    #[arg(env = "DANMAKU_PRESENCE_INTERVAL_MS")]
    presence_interval_ms: u64 => millis(presence_interval),

    /// Likes are summed per room over this window, in ms, and published as one event.
    #[arg(env = "DANMAKU_LIKES_WINDOW_MS")]
    likes_window_ms: u64 => millis(likes_window),

    /// Redis for rooms shared by every gateway on it: `redis://host:port` or
    /// `redis+unix:///path`; several comma-separated shard the rooms over standalone
    /// servers. Without it (and without `--redis-cluster`) rooms live in memory.
    #[arg(env = "DANMAKU_REDIS_URL")]
    redis_url: String => custom(text = "— (in-memory store)"),

    /// Seed URLs of a Redis Cluster, comma-separated, instead of `--redis-url`: rooms
    /// spread by hash slot, events over sharded pub/sub.
    #[arg(env = "DANMAKU_REDIS_CLUSTER")]
    redis_cluster: String => custom(text = "—"),

    /// Prefix of every Redis key: 1–64 of `[A-Za-z0-9_-]`.
    #[arg(env = "DANMAKU_REDIS_PREFIX")]
    redis_prefix: String => custom(default = |_| RedisConfig::default().prefix) in redis,

    /// The longest a Redis call may take, in ms. A publish without an answer by then is
    /// answered 504 `outcome_unknown` (retry with the same idempotency key); a Redis
    /// that cannot be reached is answered 503 at once.
    #[arg(env = "DANMAKU_REDIS_TIMEOUT_MS")]
    redis_timeout_ms: u64 => custom(default = |_| RedisConfig::default().call_timeout.as_millis().to_string()) in redis,

    /// A pub/sub connection whose liveness probe (one per second) has not come back
    /// within this many ms is taken for stalled and replaced.
    #[arg(env = "DANMAKU_REDIS_PROBE_TIMEOUT_MS")]
    redis_probe_timeout_ms: u64 => custom(default = |_| RedisConfig::default().probe_timeout.as_millis().to_string()) in redis,

    /// A gateway that cannot reach Redis for this many ms tells its viewers to move to
    /// another gateway (`reconnect` with reason `store unavailable`, then 1012).
    #[arg(env = "DANMAKU_REDIS_LOST_AFTER_MS")]
    redis_lost_after_ms: u64 => custom(default = |_| RedisConfig::default().store_lost_after.as_millis().to_string()) in redis,

    /// Events kept per room for resume.
    #[arg(env = "DANMAKU_HISTORY_LEN")]
    history_len: usize => value(memory.history_len),

    /// Seconds an event stays in history (a resume from before it gets
    /// `recovered:false`).
    #[arg(env = "DANMAKU_HISTORY_AGE_S")]
    history_age_s: u64 => secs(memory.history_age),

    /// Seconds after which a room without viewers and without events is forgotten (it
    /// comes back with a new epoch); with Redis, every key of the room expires then.
    #[arg(env = "DANMAKU_ROOM_TTL_S")]
    room_ttl_s: u64 => secs(memory.room_ttl),

    /// How long a co-host request or invitation waits, and how long a seat outlives
    /// its holder's last connection, in ms.
    #[arg(env = "DANMAKU_COHOST_LEASE_MS")]
    cohost_lease_ms: u64 => millis(memory.cohost_lease),

    /// Rooms the in-memory store holds at most; a publish into a new room beyond gets
    /// 503.
    #[arg(env = "DANMAKU_MAX_ROOMS")]
    max_rooms: usize => value(memory.max_rooms) in memory,

    /// Events in a snapshot's `recent` (of those still in history).
    #[arg(env = "DANMAKU_SNAPSHOT_RECENT")]
    snapshot_recent: usize => value(ws.snapshot_recent),

    /// On SIGTERM, ms between `reconnect` and close 1012.
    #[arg(env = "DANMAKU_DRAIN_MS")]
    drain_ms: u64 => millis(ws.drain_after),

    /// Largest HTTP API request body in bytes (413 beyond).
    #[arg(env = "DANMAKU_MAX_BODY_BYTES")]
    max_body_bytes: usize => value(max_body_bytes),

    /// HTTP API requests per second per API key (429 with `Retry-After` beyond).
    #[arg(env = "DANMAKU_API_RATE_PER_S")]
    api_rate_per_s: f64 => value(api_rate.per_s),

    /// HTTP API requests one API key may make at once.
    #[arg(env = "DANMAKU_API_BURST")]
    api_burst: f64 => value(api_rate.burst),

    /// Serve a WebSocket echo at `/diagnostic/echo` on the same stack, limits and checks
    /// as `/ws`, for conformance suites such as Autobahn's. Not for production.
    #[arg(env = "DANMAKU_DIAGNOSTIC_ECHO", num_args = 0..=1, default_missing_value = "true")]
    diagnostic_echo: bool => value(diagnostic_echo),

    /// Record retention data per room and variant — joins, distinct users, dwell,
    /// first render, resumes, interactions — for `GET /v1/rooms/{room}/analytics`.
    #[arg(env = "DANMAKU_ANALYTICS", num_args = 0..=1, default_missing_value = "true")]
    analytics: bool => value(analytics),

    /// The analytics clock runs this many times faster than the real one, so a load
    /// test simulates minutes of dwell in seconds. 1 in production.
    #[arg(env = "DANMAKU_ANALYTICS_TIME_SCALE")]
    analytics_time_scale: u64 => value(analytics_time_scale),

    /// Log filter in tracing's env-filter syntax (`warn`, `danmaku_gateway=debug`, …).
    #[arg(env = "DANMAKU_LOG")]
    log: String => custom(default = |_| DEFAULT_LOG.to_string()),

    /// How log lines are written to stderr: `text` (coloured only on a terminal) or
    /// `json` (one object a line: `timestamp`, `level`, `target`, `message` and the
    /// event's fields).
    #[arg(env = "DANMAKU_LOG_FORMAT")]
    log_format: String => custom(default = |_| DEFAULT_LOG_FORMAT.to_string()),
}
