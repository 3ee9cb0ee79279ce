//! [`Config::validate`]: the settings the gateway refuses to start with.

use std::time::Duration;

use super::{AuthConfig, Config, JwtKey};

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
    /// The PROXY protocol without a proxy allowed to send it.
    #[error(
        "--proxy-protocol needs --trusted-proxies: the addresses of the proxies that send the header"
    )]
    ProxyProtocolUntrusted,
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
            "room-comments-per-s",
            self.rooms.comments_per_s,
            0,
            1_000_000,
        )?;
        within("merge-after", self.rooms.merge_after, 0, 1_000)?;
        within("room-slow-mode-s", self.rooms.slow_mode_s, 0, 3_600)?;
        within("room-min-level", self.rooms.min_level, 0, 1_000_000)?;
        if let Err(e) = self.rooms.settings() {
            let lists = [&self.rooms.blocked_words, &self.rooms.vip_tags];
            return Err(ConfigError::Malformed {
                setting: if e.to_string().contains("vip_tags") {
                    "room-vip-tags"
                } else {
                    "room-blocked-words"
                },
                value: lists.map(|l| l.join(",")).join(" / "),
                expected: "at most 500 blocked words of 1..=50 characters, at most 32 VIP tags of [a-z0-9_.:-]{1,32}",
            });
        }
        within(
            "merge-window-ms",
            millis(self.rooms.merge_window),
            100,
            60_000,
        )?;
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
        within(
            "coalesce-writes-per-s",
            ws.coalesce_writes_per_s,
            0,
            1_000_000_000,
        )?;
        within("drain-ms", millis(ws.drain_after), 0, DAY_MS)?;
        at_least("outbound-queue", ws.outbound_queue, 1)?;
        // A hot room's frame holds up to 64 KiB: room for two.
        at_least("outbound-queue-bytes", ws.outbound_queue_bytes, 128 * 1024)?;
        if ws.send_buffer_bytes != 0 {
            within(
                "send-buffer-bytes",
                ws.send_buffer_bytes,
                4096,
                64 * 1024 * 1024,
            )?;
        }
        at_least("max-batch", ws.max_batch, 1)?;
        at_least("max-conns-per-ip", ws.max_conns_per_ip, 1)?;
        if ws.proxy_protocol && ws.trusted_proxies.is_empty() {
            return Err(ConfigError::ProxyProtocolUntrusted);
        }
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
            ("api-rate-per-s", "api-burst", self.api_rate),
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
        within("analytics-time-scale", self.analytics_time_scale, 1, 3_600)?;
        within("room-ttl-s", m.room_ttl.as_secs(), 1, YEAR_S)?;
        within("cohost-lease-ms", millis(m.cohost_lease), 1_000, DAY_MS)?;
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
        within("redis-timeout-ms", millis(redis.call_timeout), 10, 60_000)?;
        within(
            "redis-probe-timeout-ms",
            millis(redis.probe_timeout),
            100,
            600_000,
        )?;
        within(
            "redis-lost-after-ms",
            millis(redis.store_lost_after),
            100,
            3_600_000,
        )?;
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
        for (flag, value) in [
            ("jwt-audience", &self.audience),
            ("jwt-issuer", &self.issuer),
        ] {
            if let Some(v) = value
                && (v.is_empty() || v.len() > 256 || v.chars().any(char::is_control))
            {
                return Err(malformed(
                    flag,
                    v,
                    "1–256 characters, no control characters",
                ));
            }
        }
        for (setting, origins) in [
            ("allowed-origins", &self.allowed_origins),
            ("cors-origins", &self.cors_origins),
        ] {
            if let Some(origin) = origins.iter().find(|o| !origin_well_formed(o)) {
                return Err(malformed(
                    setting,
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
