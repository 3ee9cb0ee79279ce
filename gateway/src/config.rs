//! The gateway's configuration: plain structs with defaults. Built by [`crate::cli`] from
//! flags, environment and an optional TOML file; used once by `App::build`.

use std::net::SocketAddr;
use std::time::Duration;

use danmaku_fanout::memory::MemoryConfig;
use danmaku_fanout::redis::RedisConfig;
use danmaku_protocol::Limits;

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
    /// Events coalesced into one frame at most.
    pub max_batch: usize,
    /// A write that cannot complete in this time closes the connection with 4008.
    pub write_timeout: Duration,
    /// Hot rooms batch: once 8 events of a room came within 4 times this, its viewers
    /// get its events once per this time, in one frame (0 disables).
    pub write_linger: Duration,
    /// Time allowed from TCP accept to the HTTP request head.
    pub handshake_timeout: Duration,
    /// Open connections allowed per client IP.
    pub max_conns_per_ip: usize,
    /// Open WebSocket connections allowed in all.
    pub max_connections: usize,
    /// Events in a snapshot's `recent`.
    pub snapshot_recent: usize,
    /// On drain, time between `reconnect` and the 1012 close.
    pub drain_after: Duration,
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
            memory: MemoryConfig::default(),
            redis: None,
            likes_window: Duration::from_millis(200),
            poll_interval: Duration::from_millis(500),
            presence_interval: Duration::from_secs(1),
            max_body_bytes: 64 * 1024,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            outbound_queue: 1024,
            max_batch: 64,
            write_timeout: Duration::from_secs(10),
            write_linger: Duration::from_millis(80),
            handshake_timeout: Duration::from_secs(5),
            max_conns_per_ip: 10_000,
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

/// A configuration the gateway refuses to start with. Settings are named by their flag
/// (the same name, with `_`, in the TOML file; `DANMAKU_` and upper case in the
/// environment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A number outside what the gateway works with.
    #[error("--{setting} is {value}; it must be {allowed}")]
    OutOfRange {
        /// The setting's flag, without `--`.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is allowed: `between 100 and 86400000`, `at least 1`.
        allowed: String,
    },
    /// A value of the wrong form.
    #[error("--{setting} {value:?}: expected {expected}")]
    Malformed {
        /// The setting's flag, without `--`.
        setting: &'static str,
        /// The value given (never a secret).
        value: String,
        /// What a value looks like.
        expected: &'static str,
    },
    /// One setting larger than another allows.
    #[error("--{setting} {value} is more than --{limit} {limit_value}: {why}")]
    Exceeds {
        /// The setting too large.
        setting: &'static str,
        /// Its value.
        value: String,
        /// The setting that bounds it.
        limit: &'static str,
        /// That one's value.
        limit_value: String,
        /// Why the one bounds the other.
        why: &'static str,
    },
    /// The HS256 secret is too short to be a secret.
    #[error("--jwt-secret has {0} bytes; it must have at least {MIN_SECRET_BYTES}")]
    ShortSecret(usize),
    /// An API key no `Authorization` header can carry.
    #[error(
        "--api-keys: key {0} (counting from 1) contains a space, a comma or a control \
         character; no Authorization header can carry it"
    )]
    UnusableApiKey(usize),
}

/// The shortest HS256 secret accepted (a shorter one can be guessed offline from any token).
pub const MIN_SECRET_BYTES: usize = 16;
/// Timers longer than a day are refused: nobody means them, and they reach the limits of
/// the clock arithmetic.
const DAY_MS: u64 = 86_400_000;
/// History and room lifetimes are bounded by a year.
const YEAR_S: u64 = 365 * 86_400;
/// Most rate per second a token bucket takes (beyond it, a rate limit is no limit).
const MAX_RATE: f64 = 1_000_000.0;

impl Config {
    /// Refuses settings out of range or contradicting each other, with a message that
    /// names the setting and what it allows.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_id("gateway-id", &self.gateway_id, GATEWAY_ID)?;
        self.auth.validate()?;
        self.validate_ws()?;
        self.validate_limits()?;
        self.validate_store()?;
        within("likes-window-ms", millis(self.likes_window), 10, DAY_MS)?;
        within(
            "presence-interval-ms",
            millis(self.presence_interval),
            100,
            DAY_MS,
        )?;
        within("max-body-bytes", self.max_body_bytes, 1024, 16 << 20)
    }

    fn validate_ws(&self) -> Result<(), ConfigError> {
        let ws = &self.ws;
        within("heartbeat-ms", millis(ws.heartbeat), 100, DAY_MS)?;
        within(
            "handshake-timeout-ms",
            millis(ws.handshake_timeout),
            1,
            DAY_MS,
        )?;
        within("write-timeout-ms", millis(ws.write_timeout), 1, DAY_MS)?;
        within("write-linger-ms", millis(ws.write_linger), 0, DAY_MS)?;
        within("drain-ms", millis(ws.drain_after), 0, DAY_MS)?;
        at_least("outbound-queue", ws.outbound_queue, 1)?;
        at_least("max-batch", ws.max_batch, 1)?;
        at_least("max-conns-per-ip", ws.max_conns_per_ip, 1)?;
        at_least("max-connections", ws.max_connections, 1)
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        within("max-frame-bytes", l.max_frame_bytes, 256, 1 << 20)?;
        at_least("max-rooms-per-conn", l.max_rooms, 1)?;
        at_least("like-max-count", l.like_max_count, 1)?;
        at_least("comment-max-chars", l.comment_max_chars, 1)?;
        not_more(
            ("comment-max-chars", l.comment_max_chars),
            ("max-frame-bytes", l.max_frame_bytes),
            "a longer comment could never arrive in one client frame",
        )?;
        let r = &self.rates;
        for (per_s, burst, rate) in [
            ("comments-per-s", "comments-burst", r.comments),
            ("likes-per-s", "likes-burst", r.likes),
            ("votes-per-s", "votes-burst", r.votes),
        ] {
            within(per_s, rate.per_s, 0.0, MAX_RATE)?;
            within(burst, rate.burst, 1.0, MAX_RATE)?;
        }
        Ok(())
    }

    fn validate_store(&self) -> Result<(), ConfigError> {
        let m = &self.memory;
        at_least("history-len", m.history_len, 1)?;
        within("history-age-s", m.history_age.as_secs(), 1, YEAR_S)?;
        within("room-ttl-s", m.room_ttl.as_secs(), 1, YEAR_S)?;
        at_least("max-rooms", m.max_rooms, 1)?;
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let setting = if redis.cluster {
            "redis-cluster"
        } else {
            "redis-url"
        };
        if redis.urls.is_empty() {
            return Err(malformed(setting, "", "one or more comma-separated URLs"));
        }
        for url in &redis.urls {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("redis" | "redis+unix" | "unix")) {
                return Err(malformed(
                    setting,
                    url,
                    "redis://host:port or redis+unix:///path (TLS is not built in)",
                ));
            }
        }
        check_id("redis-prefix", &redis.prefix, REDIS_PREFIX)
    }
}

impl AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let JwtKey::Hs256(secret) = &self.jwt
            && secret.len() < MIN_SECRET_BYTES
        {
            return Err(ConfigError::ShortSecret(secret.len()));
        }
        if let Some(i) = self.api_keys.iter().position(|k| {
            k.is_empty()
                || k.chars()
                    .any(|c| c == ',' || c.is_whitespace() || c.is_control())
        }) {
            return Err(ConfigError::UnusableApiKey(i + 1));
        }
        for origin in &self.allowed_origins {
            if !origin_well_formed(origin) {
                return Err(malformed(
                    "allowed-origins",
                    origin,
                    "scheme://host or scheme://host:port, as browsers send it (no path, no trailing /)",
                ));
            }
        }
        Ok(())
    }
}

/// `scheme://host[:port]`, the serialization browsers send in `Origin` (RFC 6454).
fn origin_well_formed(origin: &str) -> bool {
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = !host.is_empty()
        && !host
            .chars()
            .any(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace());
    scheme_ok && host_ok
}

/// A gateway id: short, it is in every connection id.
const GATEWAY_ID: (usize, &str) = (32, "1 to 32 characters of [A-Za-z0-9_-]");
/// A Redis key prefix: it is in every key.
const REDIS_PREFIX: (usize, &str) = (64, "1 to 64 characters of [A-Za-z0-9_-]");

/// 1..=`max` characters of `[A-Za-z0-9_-]`.
fn check_id(
    setting: &'static str,
    id: &str,
    (max, expected): (usize, &'static str),
) -> Result<(), ConfigError> {
    let ok = (1..=max).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(malformed(setting, id, expected))
    }
}

fn malformed(setting: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Malformed {
        setting,
        value: value.to_owned(),
        expected,
    }
}

fn within<T>(setting: &'static str, value: T, min: T, max: T) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    // Written so that NaN is out of range too.
    if value >= min && value <= max {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        setting,
        value: value.to_string(),
        allowed: format!("between {min} and {max}"),
    })
}

fn at_least<T>(setting: &'static str, value: T, min: T) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if value >= min {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        setting,
        value: value.to_string(),
        allowed: format!("at least {min}"),
    })
}

fn not_more(
    (setting, value): (&'static str, usize),
    (limit, limit_value): (&'static str, usize),
    why: &'static str,
) -> Result<(), ConfigError> {
    if value <= limit_value {
        return Ok(());
    }
    Err(ConfigError::Exceeds {
        setting,
        value: value.to_string(),
        limit,
        limit_value: limit_value.to_string(),
        why,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(change: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::default();
        change(&mut c);
        match c.validate() {
            Ok(()) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
        let with_redis = Config {
            redis: Some(RedisConfig::default()),
            ..Config::default()
        };
        assert_eq!(with_redis.validate(), Ok(()));
    }

    #[test]
    fn numbers_out_of_range_name_the_setting_and_the_range() {
        assert_eq!(
            refused(|c| c.ws.heartbeat = Duration::from_millis(99)),
            "--heartbeat-ms is 99; it must be between 100 and 86400000"
        );
        assert_eq!(
            refused(|c| c.ws.outbound_queue = 0),
            "--outbound-queue is 0; it must be at least 1"
        );
        assert_eq!(
            refused(|c| c.rates.likes.burst = 0.5),
            "--likes-burst is 0.5; it must be between 1 and 1000000"
        );
        assert!(refused(|c| c.rates.votes.per_s = f64::NAN).starts_with("--votes-per-s is NaN"));
        assert!(refused(|c| c.limits.max_frame_bytes = 100).starts_with("--max-frame-bytes"));
        assert!(refused(|c| c.memory.room_ttl = Duration::ZERO).starts_with("--room-ttl-s is 0"));
        assert!(refused(|c| c.max_body_bytes = 1 << 30).starts_with("--max-body-bytes"));
        // Zero is a meaningful value where the doc says so.
        let mut c = Config::default();
        c.ws.write_linger = Duration::ZERO;
        c.ws.drain_after = Duration::ZERO;
        c.rates.comments.per_s = 0.0;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn contradictions_name_both_settings() {
        assert_eq!(
            refused(|c| {
                c.limits.max_frame_bytes = 256;
                c.limits.comment_max_chars = 300;
            }),
            "--comment-max-chars 300 is more than --max-frame-bytes 256: a longer comment could \
             never arrive in one client frame"
        );
    }

    #[test]
    fn malformed_ids_urls_and_origins() {
        assert!(refused(|c| c.gateway_id = "g 1".into()).starts_with("--gateway-id \"g 1\""));
        assert!(refused(|c| c.gateway_id = "g".repeat(33)).contains("1 to 32"));
        let redis = |change: fn(&mut RedisConfig)| {
            move |c: &mut Config| {
                let mut r = RedisConfig::default();
                change(&mut r);
                c.redis = Some(r);
            }
        };
        assert!(refused(redis(|r| r.prefix = "a:b".into())).starts_with("--redis-prefix"));
        assert!(refused(redis(|r| r.urls.clear())).starts_with("--redis-url"));
        let e = refused(redis(|r| {
            r.cluster = true;
            r.urls = vec!["rediss://a:1".into()];
        }));
        assert!(
            e.starts_with("--redis-cluster \"rediss://a:1\"") && e.contains("TLS"),
            "{e}"
        );
        for bad in ["https://a.example/", "a.example", "https://a.example/path"] {
            let e = refused(|c| c.auth.allowed_origins = vec![bad.into()]);
            assert!(e.starts_with("--allowed-origins"), "{bad}: {e}");
        }
        let mut c = Config::default();
        c.auth.allowed_origins = vec!["https://a.example".into(), "http://127.0.0.1:3000".into()];
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn credentials_that_cannot_work() {
        assert_eq!(
            refused(|c| c.auth.jwt = JwtKey::Hs256(b"short".to_vec())),
            "--jwt-secret has 5 bytes; it must have at least 16"
        );
        let e = refused(|c| c.auth.api_keys = vec!["ok".into(), "has space".into()]);
        assert!(e.starts_with("--api-keys: key 2 "), "{e}");
        assert!(!e.contains("has space"), "a key is never echoed: {e}");
    }
}
