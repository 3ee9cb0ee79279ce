//! Command-line flags, `DANMAKU_*` environment variables and an optional TOML file,
//! merged into a [`Config`]. Precedence: flag, then environment, then file, then default.
//! This is the only place that reads the environment.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;

use danmaku_fanout::redis::RedisConfig;

use crate::config::{Config, JwtKey, Rate};

/// The danmaku gateway: live-room comments, likes and votes over WebSocket.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "danmaku-gateway", version, about)]
#[serde(default, deny_unknown_fields)]
pub struct Args {
    /// TOML file with any of these settings (keys as the long flags, with `_`).
    #[arg(long, env = "DANMAKU_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to serve on (host:port) [default: 127.0.0.1:8080].
    #[arg(long, env = "DANMAKU_LISTEN")]
    pub listen: Option<String>,
    /// This gateway's id, in `hello` and connection ids [default: g1].
    #[arg(long, env = "DANMAKU_GATEWAY_ID")]
    pub gateway_id: Option<String>,
    /// HS256 secret for viewer tokens. Without it (and without a public key) the
    /// gateway runs in dev mode: a random secret, a printed dev token, anonymous on.
    #[arg(long, env = "DANMAKU_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// PEM public key file for RS256/ES256 viewer tokens (instead of the secret).
    #[arg(long, env = "DANMAKU_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of the public key: RS256 or ES256 [default: RS256].
    #[arg(long, env = "DANMAKU_JWT_ALGORITHM")]
    pub jwt_algorithm: Option<String>,
    /// Let requests without a token in as read-only viewers.
    #[arg(long, env = "DANMAKU_ANONYMOUS", num_args = 0..=1, default_missing_value = "true")]
    pub anonymous: Option<bool>,
    /// API keys for the HTTP API, comma-separated. Without any, a dev key is printed.
    #[arg(long, env = "DANMAKU_API_KEYS", value_delimiter = ',')]
    pub api_keys: Option<Vec<String>>,
    /// Allowed Origin values for WebSocket upgrades, comma-separated [default: any].
    #[arg(long, env = "DANMAKU_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Server ping interval in ms; silent connections close after 2.5× [default: 25000].
    #[arg(long, env = "DANMAKU_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Largest client frame in bytes; larger closes with 1009 [default: 4096].
    #[arg(long, env = "DANMAKU_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Rooms per connection [default: 10].
    #[arg(long, env = "DANMAKU_MAX_ROOMS_PER_CONN")]
    pub max_rooms_per_conn: Option<usize>,
    /// Longest comment in characters [default: 200].
    #[arg(long, env = "DANMAKU_COMMENT_MAX_CHARS")]
    pub comment_max_chars: Option<usize>,
    /// Largest like count per command [default: 100].
    #[arg(long, env = "DANMAKU_LIKE_MAX_COUNT")]
    pub like_max_count: Option<u32>,
    /// Comments per second per connection [default: 5].
    #[arg(long, env = "DANMAKU_COMMENTS_PER_S")]
    pub comments_per_s: Option<f64>,
    /// Comment burst per connection [default: 10].
    #[arg(long, env = "DANMAKU_COMMENTS_BURST")]
    pub comments_burst: Option<f64>,
    /// Like commands per second per connection [default: 20].
    #[arg(long, env = "DANMAKU_LIKES_PER_S")]
    pub likes_per_s: Option<f64>,
    /// Like command burst per connection [default: 40].
    #[arg(long, env = "DANMAKU_LIKES_BURST")]
    pub likes_burst: Option<f64>,
    /// Votes per second per connection [default: 2].
    #[arg(long, env = "DANMAKU_VOTES_PER_S")]
    pub votes_per_s: Option<f64>,
    /// Vote burst per connection [default: 5].
    #[arg(long, env = "DANMAKU_VOTES_BURST")]
    pub votes_burst: Option<f64>,
    /// Open connections per client IP [default: 10000].
    #[arg(long, env = "DANMAKU_MAX_CONNS_PER_IP")]
    pub max_conns_per_ip: Option<usize>,
    /// Open WebSocket connections in all [default: 100000].
    #[arg(long, env = "DANMAKU_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time from TCP accept to the request head, in ms [default: 5000].
    #[arg(long, env = "DANMAKU_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Deliveries queued per connection before catch-up/reset applies [default: 1024].
    #[arg(long, env = "DANMAKU_OUTBOUND_QUEUE")]
    pub outbound_queue: Option<usize>,
    /// Most events coalesced into one frame [default: 64].
    #[arg(long, env = "DANMAKU_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// A write blocked this long closes the connection with 4008, in ms [default: 10000].
    #[arg(long, env = "DANMAKU_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// Hot-room coalescing: once 8 events of a room came within 4 times this, its
    /// viewers get its events once per this time, in one frame, in ms; 0 disables
    /// [default: 80].
    #[arg(long, env = "DANMAKU_WRITE_LINGER_MS")]
    pub write_linger_ms: Option<u64>,
    /// Online counts (`presence`) are announced at most this often per room, in ms
    /// [default: 1000].
    #[arg(long, env = "DANMAKU_PRESENCE_INTERVAL_MS")]
    pub presence_interval_ms: Option<u64>,
    /// Likes aggregation window in ms [default: 200].
    #[arg(long, env = "DANMAKU_LIKES_WINDOW_MS")]
    pub likes_window_ms: Option<u64>,
    /// Events kept per room [default: 1000].
    #[arg(long, env = "DANMAKU_HISTORY_LEN")]
    pub history_len: Option<usize>,
    /// Seconds events stay in history [default: 600].
    #[arg(long, env = "DANMAKU_HISTORY_AGE_S")]
    pub history_age_s: Option<u64>,
    /// Seconds an idle room without viewers is kept [default: 3600].
    #[arg(long, env = "DANMAKU_ROOM_TTL_S")]
    pub room_ttl_s: Option<u64>,
    /// Redis URL (`redis://host:port`, `redis+unix:///path`), or several comma-separated
    /// to shard rooms over standalone servers: rooms shared by every gateway on them.
    /// Without it the gateway keeps rooms in memory (single node).
    #[arg(long, env = "DANMAKU_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Seed URLs of a Redis Cluster, comma-separated (instead of --redis-url): rooms
    /// spread by hash slot, events over sharded pub/sub.
    #[arg(long, env = "DANMAKU_REDIS_CLUSTER")]
    pub redis_cluster: Option<String>,
    /// Prefix of every Redis key [default: dm].
    #[arg(long, env = "DANMAKU_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Rooms held in memory at most [default: 100000].
    #[arg(long, env = "DANMAKU_MAX_ROOMS")]
    pub max_rooms: Option<usize>,
    /// Events in a snapshot's `recent` [default: 50].
    #[arg(long, env = "DANMAKU_SNAPSHOT_RECENT")]
    pub snapshot_recent: Option<usize>,
    /// On shutdown, ms between `reconnect` and close 1012 [default: 500].
    #[arg(long, env = "DANMAKU_DRAIN_MS")]
    pub drain_ms: Option<u64>,
    /// Largest HTTP API body in bytes [default: 65536].
    #[arg(long, env = "DANMAKU_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log filter (tracing env-filter syntax) [default: info].
    #[arg(long, env = "DANMAKU_LOG")]
    pub log: Option<String>,
}

/// What start-up should tell the operator about dev mode.
#[derive(Debug, Default)]
pub struct DevMode {
    /// The random HS256 secret generated for this run, when none was configured.
    pub jwt_secret: Option<String>,
    /// The API key generated for this run, when none was configured.
    pub api_key: Option<String>,
}

macro_rules! merge {
    ($cli:ident, $file:ident, $($f:ident),+ $(,)?) => { $( if $cli.$f.is_none() { $cli.$f = $file.$f.take(); } )+ };
}

impl Args {
    /// Reads the TOML file, if any, under the flags and environment.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn with_file(mut self) -> anyhow::Result<Self> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut f: Args =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        merge!(
            self,
            f,
            listen,
            gateway_id,
            jwt_secret,
            jwt_public_key,
            jwt_algorithm,
            anonymous,
            api_keys,
            allowed_origins,
            heartbeat_ms,
            max_frame_bytes,
            max_rooms_per_conn,
            comment_max_chars,
            like_max_count,
            comments_per_s,
            comments_burst,
            likes_per_s,
            likes_burst,
            votes_per_s,
            votes_burst,
            max_conns_per_ip,
            max_connections,
            handshake_timeout_ms,
            outbound_queue,
            max_batch,
            write_timeout_ms,
            write_linger_ms,
            presence_interval_ms,
            likes_window_ms,
            history_len,
            history_age_s,
            room_ttl_s,
            max_rooms,
            redis_url,
            redis_cluster,
            redis_prefix,
            snapshot_recent,
            drain_ms,
            max_body_bytes,
            log
        );
        Ok(self)
    }

    /// Builds the configuration.
    ///
    /// # Errors
    /// On an invalid address, key file or out-of-range value.
    pub fn into_config(self) -> anyhow::Result<(Config, DevMode)> {
        let mut c = Config::default();
        let mut dev = DevMode::default();
        if let Some(l) = &self.listen {
            use std::net::ToSocketAddrs;
            c.listen = l
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .with_context(|| format!("--listen {l}: expected host:port"))?;
        }
        if let Some(g) = self.gateway_id {
            if g.is_empty()
                || g.len() > 32
                || !g
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("--gateway-id must be 1..=32 characters of [A-Za-z0-9_-]");
            }
            c.gateway_id = g;
        }
        c.auth.jwt = match (self.jwt_secret, self.jwt_public_key) {
            (Some(_), Some(_)) => bail!("give either --jwt-secret or --jwt-public-key, not both"),
            (Some(s), None) if s.len() < 16 => bail!("--jwt-secret must be at least 16 bytes"),
            (Some(s), None) => JwtKey::Hs256(s.into_bytes()),
            (None, Some(path)) => {
                let pem =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                match self.jwt_algorithm.as_deref().unwrap_or("RS256") {
                    "RS256" => JwtKey::Rs256(pem),
                    "ES256" => JwtKey::Es256(pem),
                    other => bail!("--jwt-algorithm {other}: expected RS256 or ES256"),
                }
            }
            (None, None) => {
                let secret = random_hex(32);
                dev.jwt_secret = Some(secret.clone());
                JwtKey::Hs256(secret.into_bytes())
            }
        };
        c.auth.anonymous = self.anonymous.unwrap_or(dev.jwt_secret.is_some());
        c.auth.api_keys = self
            .api_keys
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
        if c.auth.api_keys.is_empty() {
            let key = format!("dev-{}", random_hex(24));
            dev.api_key = Some(key.clone());
            c.auth.api_keys.push(key);
        }
        c.auth.allowed_origins = self.allowed_origins.unwrap_or_default();
        let ms = Duration::from_millis;
        if let Some(v) = self.heartbeat_ms {
            c.ws.heartbeat = ms(v.max(100));
        }
        if let Some(v) = self.max_frame_bytes {
            c.limits.max_frame_bytes = v.max(256);
        }
        if let Some(v) = self.max_rooms_per_conn {
            c.limits.max_rooms = v.max(1);
        }
        if let Some(v) = self.comment_max_chars {
            c.limits.comment_max_chars = v.max(1);
        }
        if let Some(v) = self.like_max_count {
            c.limits.like_max_count = v.max(1);
        }
        rate(
            &mut c.rates.comments,
            self.comments_per_s,
            self.comments_burst,
        )?;
        rate(&mut c.rates.likes, self.likes_per_s, self.likes_burst)?;
        rate(&mut c.rates.votes, self.votes_per_s, self.votes_burst)?;
        if let Some(v) = self.max_conns_per_ip {
            c.ws.max_conns_per_ip = v;
        }
        if let Some(v) = self.max_connections {
            c.ws.max_connections = v;
        }
        if let Some(v) = self.handshake_timeout_ms {
            c.ws.handshake_timeout = ms(v.max(1));
        }
        if let Some(v) = self.outbound_queue {
            c.ws.outbound_queue = v.max(1);
        }
        if let Some(v) = self.max_batch {
            c.ws.max_batch = v.max(1);
        }
        if let Some(v) = self.presence_interval_ms {
            c.presence_interval = ms(v.max(100));
        }
        if let Some(v) = self.write_linger_ms {
            c.ws.write_linger = ms(v);
        }
        if let Some(v) = self.write_timeout_ms {
            c.ws.write_timeout = ms(v.max(1));
        }
        if let Some(v) = self.likes_window_ms {
            c.likes_window = ms(v.max(10));
        }
        if let Some(v) = self.history_len {
            c.memory.history_len = v.max(1);
        }
        if let Some(v) = self.history_age_s {
            c.memory.history_age = Duration::from_secs(v);
        }
        if let Some(v) = self.room_ttl_s {
            c.memory.room_ttl = Duration::from_secs(v);
        }
        if let Some(v) = self.max_rooms {
            c.memory.max_rooms = v.max(1);
        }
        let redis = match (
            self.redis_url.filter(|u| !u.is_empty()),
            self.redis_cluster.filter(|u| !u.is_empty()),
        ) {
            (Some(_), Some(_)) => bail!("give either --redis-url or --redis-cluster, not both"),
            (Some(urls), None) => Some((urls, false)),
            (None, Some(seeds)) => Some((seeds, true)),
            (None, None) => None,
        };
        if let Some((url, cluster)) = redis {
            let prefix = self.redis_prefix.unwrap_or_else(|| "dm".into());
            if prefix.is_empty()
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bail!("--redis-prefix must be 1+ characters of [A-Za-z0-9_-]");
            }
            c.redis = Some(RedisConfig {
                urls: url
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(String::from)
                    .collect(),
                cluster,
                prefix,
                history_len: c.memory.history_len,
                history_age: c.memory.history_age,
                room_ttl: c.memory.room_ttl,
                idempotency_ttl: c.memory.idempotency_ttl,
                gateway_id: c.gateway_id.clone(),
                online_ttl: c.presence_interval * 5,
                ..RedisConfig::default()
            });
        }
        if let Some(v) = self.snapshot_recent {
            c.ws.snapshot_recent = v;
        }
        if let Some(v) = self.drain_ms {
            c.ws.drain_after = ms(v);
        }
        if let Some(v) = self.max_body_bytes {
            c.max_body_bytes = v.max(1024);
        }
        Ok((c, dev))
    }
}

fn rate(r: &mut Rate, per_s: Option<f64>, burst: Option<f64>) -> anyhow::Result<()> {
    if let Some(v) = per_s {
        r.per_s = v;
    }
    if let Some(v) = burst {
        r.burst = v;
    }
    if !(r.per_s.is_finite() && r.per_s >= 0.0 && r.burst.is_finite() && r.burst >= 1.0) {
        bail!("rates must be >= 0 per second with a burst >= 1");
    }
    Ok(())
}

/// `n` random hex digits (std's randomly keyed hasher; good for dev secrets and ids).
pub fn random_hex(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(n + 16);
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(out.len());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<(Config, DevMode)> {
        let mut all = vec!["danmaku-gateway"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)?.with_file()?.into_config()
    }

    #[test]
    fn a_toml_file_fills_what_flags_do_not_set() {
        let path = std::env::temp_dir().join(format!("danmaku-cli-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9001\"\nheartbeat_ms = 5000\nhistory_len = 77\napi_keys = [\"file-key\"]\njwt_secret = \"file-secret-0123456789\"\n",
        )
        .expect("write");
        let file = path.to_str().expect("utf8");
        let (c, dev) = parse(&["--config", file, "--heartbeat-ms", "7000"]).expect("config");
        assert_eq!(c.listen.port(), 9001, "from the file");
        assert_eq!(
            c.ws.heartbeat,
            Duration::from_millis(7000),
            "the flag wins over the file"
        );
        assert_eq!(c.memory.history_len, 77);
        assert_eq!(c.auth.api_keys, vec!["file-key".to_string()]);
        assert!(
            dev.jwt_secret.is_none() && dev.api_key.is_none(),
            "not dev mode"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        assert!(parse(&["--jwt-secret", "short"]).is_err());
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--gateway-id", "has space"]).is_err());
        assert!(parse(&["--comments-per-s", "-1"]).is_err());
        assert!(parse(&["--redis-url", "redis://a", "--redis-cluster", "redis://b"]).is_err());
        let path =
            std::env::temp_dir().join(format!("danmaku-cli-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "no_such_setting = 1\n").expect("write");
        assert!(
            parse(&["--config", path.to_str().expect("utf8")]).is_err(),
            "unknown keys are refused"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn without_credentials_it_runs_in_dev_mode() {
        let (c, dev) = parse(&[]).expect("config");
        assert!(dev.jwt_secret.is_some() && dev.api_key.is_some());
        assert!(c.auth.anonymous);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        let (c, _) = parse(&["--redis-url", "redis://a:1,redis://b:2"]).expect("config");
        let redis = c.redis.expect("redis");
        assert_eq!((redis.urls.len(), redis.cluster), (2, false));
    }
}
