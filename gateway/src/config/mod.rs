//! The gateway's configuration: plain structs with defaults. Built by [`crate::cli`] from
//! flags, environment and an optional TOML file, checked by [`Config::validate`], used
//! once by `App::bind`.

use std::net::SocketAddr;
use std::time::Duration;

use danmaku_fanout::memory::MemoryConfig;
use danmaku_fanout::redis::RedisConfig;
use danmaku_protocol::Limits;
use danmaku_protocol::settings::{RoomSettings, SettingsError};

#[cfg(test)]
mod tests;
mod validate;

pub use validate::{ConfigError, MIN_SECRET_BYTES};

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the public port (WebSocket, HTTP API, health, metrics).
    pub listen: SocketAddr,
    /// This gateway's id (in `hello` and connection ids).
    pub gateway_id: String,
    /// Who may connect and publish.
    pub auth: AuthConfig,
    /// Connection handling.
    pub ws: WsConfig,
    /// What clients may send.
    pub limits: Limits,
    /// Per-connection command rates.
    pub rates: Rates,
    /// What every room starts with: its comment budget and merging.
    pub rooms: RoomDefaults,
    /// The embedded store's bounds.
    pub memory: MemoryConfig,
    /// The Redis store, when configured (otherwise the embedded memory store is used).
    pub redis: Option<RedisConfig>,
    /// Likes are summed per room over this window and published as one event.
    pub likes_window: Duration,
    /// Poll tallies are published at most once per this interval per poll.
    pub poll_interval: Duration,
    /// Online counts are announced at most once per this interval per room.
    pub presence_interval: Duration,
    /// Largest HTTP API request body.
    pub max_body_bytes: usize,
    /// HTTP API requests per API key.
    pub api_rate: Rate,
    /// Serve the diagnostic echo at `/diagnostic/echo` (for conformance suites).
    pub diagnostic_echo: bool,
    /// Record retention data (joins, dwell, first render, resumes, interactions).
    pub analytics: bool,
    /// The analytics clock runs this many times faster than the real one (1 but in
    /// load tests that simulate minutes in seconds).
    pub analytics_time_scale: u64,
}

/// Authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// How viewer tokens are verified.
    pub jwt: JwtKey,
    /// Whether requests without a token get a read-only anonymous viewer.
    pub anonymous: bool,
    /// API keys accepted by the HTTP API (`Authorization: Bearer <key>`).
    pub api_keys: Vec<String>,
    /// Allowed `Origin` values for WebSocket upgrades; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Origins whose pages may call the HTTP API (CORS); empty grants none.
    pub cors_origins: Vec<String>,
    /// When set, a viewer token must carry this `aud`.
    pub audience: Option<String>,
    /// When set, a viewer token must carry this `iss`.
    pub issuer: Option<String>,
}

/// The key viewer tokens are verified with.
#[derive(Clone, Default)]
pub enum JwtKey {
    /// No key: every token is refused (anonymous viewers only, if enabled).
    #[default]
    None,
    /// HS256 with a shared secret.
    Hs256(Vec<u8>),
    /// RS256 with a PEM public key.
    Rs256(Vec<u8>),
    /// ES256 with a PEM public key.
    Es256(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Hs256(_) => "Hs256(<secret>)",
            Self::Rs256(_) => "Rs256(<key>)",
            Self::Es256(_) => "Es256(<key>)",
        })
    }
}

/// Connection handling.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Interval of server pings; a connection silent for 2.5× this is closed.
    pub heartbeat: Duration,
    /// Deliveries queued per connection before the slow-consumer policy applies.
    pub outbound_queue: usize,
    /// Bytes of frames queued per connection before the slow-consumer policy applies:
    /// with the write buffer (1 MiB), what a viewer that stops reading can hold.
    pub outbound_queue_bytes: usize,
    /// The kernel send buffer of each viewer socket (`SO_SNDBUF`), or 0 to leave it to
    /// the kernel's autotuning (which lets a socket that is not read hold up to
    /// `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default, of kernel memory).
    pub send_buffer_bytes: usize,
    /// Events coalesced into one frame at most.
    pub max_batch: usize,
    /// A write that cannot complete in this time closes the connection with 4008.
    pub write_timeout: Duration,
    /// Hot rooms batch: once 8 events of a room came within 4 times this, its viewers
    /// get its events once per this time, in one frame (0 disables).
    pub write_linger: Duration,
    /// Coalescing pays from this many writes per second: a room is batched only when
    /// its viewers × events per second reach it, and a viewer's own stream only while
    /// the whole gateway's rooms ask for that many (0: whatever the cost).
    pub coalesce_writes_per_s: u64,
    /// Time allowed from TCP accept to the HTTP request head.
    pub handshake_timeout: Duration,
    /// Open connections allowed per client IP.
    pub max_conns_per_ip: usize,
    /// Proxies believed about the client's address (`X-Forwarded-For`, PROXY).
    pub trusted_proxies: crate::proxy::TrustedProxies,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from a trusted
    /// proxy; others are closed.
    pub proxy_protocol: bool,
    /// Open WebSocket connections allowed in all.
    pub max_connections: usize,
    /// Events in a snapshot's `recent`.
    pub snapshot_recent: usize,
    /// On drain, time between `reconnect` and the 1012 close.
    pub drain_after: Duration,
}

/// The settings of a room that has none of its own (a settings call gives a room its
/// own, starting from these).
#[derive(Debug, Clone)]
pub struct RoomDefaults {
    /// Viewer comments a room admits per second, on every gateway together (`room_busy`
    /// beyond; 0: no budget). Hosts, moderators and backends are never refused for it.
    pub comments_per_s: u32,
    /// Copies of one comment (normalized) sequenced one by one within a merge window;
    /// further copies merge into one `comment.merged` (0: never merge).
    pub merge_after: u32,
    /// How long a merge window lasts from its first copy.
    pub merge_window: Duration,
    /// A viewer comments at most once per this many seconds (0: off).
    pub slow_mode_s: u32,
    /// Viewers whose `level` claim is below it may not comment.
    pub min_level: i64,
    /// Words no viewer comment may contain (matched normalized).
    pub blocked_words: Vec<String>,
    /// Whether joins are told in `entrance` events.
    pub entrances: bool,
    /// Tags whose viewers `entrance` events name one by one.
    pub vip_tags: Vec<String>,
}

impl RoomDefaults {
    /// These defaults as room settings, checked and normalized.
    ///
    /// # Errors
    /// The first setting out of its bounds.
    pub fn settings(&self) -> Result<RoomSettings, SettingsError> {
        let base = RoomSettings {
            comments_per_s: self.comments_per_s,
            merge_after: self.merge_after,
            merge_window_ms: u64::try_from(self.merge_window.as_millis()).unwrap_or(u64::MAX),
            ..RoomSettings::default()
        };
        base.patch(&serde_json::json!({
            "slow_mode_s": self.slow_mode_s,
            "min_level": self.min_level,
            "blocked_words": self.blocked_words,
            "vip_tags": self.vip_tags,
            "entrances": self.entrances,
        }))
    }
}

impl Default for RoomDefaults {
    fn default() -> Self {
        Self {
            comments_per_s: 200,
            merge_after: 3,
            merge_window: Duration::from_secs(1),
            slow_mode_s: 0,
            min_level: 0,
            blocked_words: Vec::new(),
            entrances: false,
            vip_tags: Vec::new(),
        }
    }
}

/// Token-bucket rates per connection.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Comments per second and burst.
    pub comments: Rate,
    /// Like commands per second and burst.
    pub likes: Rate,
    /// Votes per second and burst.
    pub votes: Rate,
}

/// A rate with a burst.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Sustained rate per second.
    pub per_s: f64,
    /// Commands allowed at once.
    pub burst: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            gateway_id: "g1".into(),
            auth: AuthConfig::default(),
            ws: WsConfig::default(),
            limits: Limits::default(),
            rates: Rates::default(),
            rooms: RoomDefaults::default(),
            memory: MemoryConfig::default(),
            redis: None,
            likes_window: Duration::from_millis(200),
            poll_interval: Duration::from_millis(500),
            presence_interval: Duration::from_secs(1),
            max_body_bytes: 64 * 1024,
            api_rate: Rate {
                per_s: 5_000.0,
                burst: 10_000.0,
            },
            diagnostic_echo: false,
            analytics: true,
            analytics_time_scale: 1,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            outbound_queue: 1024,
            outbound_queue_bytes: 1024 * 1024,
            send_buffer_bytes: 0,
            max_batch: 64,
            write_timeout: Duration::from_secs(10),
            write_linger: Duration::from_millis(80),
            coalesce_writes_per_s: 50_000,
            handshake_timeout: Duration::from_secs(5),
            max_conns_per_ip: 10_000,
            trusted_proxies: crate::proxy::TrustedProxies::default(),
            proxy_protocol: false,
            max_connections: 100_000,
            snapshot_recent: 50,
            drain_after: Duration::from_millis(500),
        }
    }
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            comments: Rate {
                per_s: 5.0,
                burst: 10.0,
            },
            likes: Rate {
                per_s: 20.0,
                burst: 40.0,
            },
            votes: Rate {
                per_s: 2.0,
                burst: 5.0,
            },
        }
    }
}
