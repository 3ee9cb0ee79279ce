//! Command-line flags, `DANMAKU_*` environment variables and an optional TOML file,
//! merged into a [`Config`]. Precedence: flag, then environment, then file, then default.
//! This is the only place that reads the environment.
//!
//! Every setting is declared once, in `settings.rs`; `--help` and the README's
//! configuration table are made from that list ([`settings_table`]).

mod banner;
mod docs;
mod settings;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use clap::FromArgMatches;
use danmaku_fanout::redis::RedisConfig;

use crate::config::{Config, ConfigError, JwtKey};

pub use docs::{command, settings_table};
pub use settings::{
    Args, DEFAULT_JWT_ALGORITHM, DEFAULT_LOG, DEFAULT_LOG_FORMAT, SETTINGS, Setting, Shown, Store,
};

/// What `--version` prints after the name: the version and the git commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DANMAKU_GIT_COMMIT"),
    ")"
);

/// The flag that asks for a health check instead of serving (not a setting: no
/// environment variable, no file key).
const HEALTHCHECK: &str = "healthcheck";

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve.
    Serve,
    /// `--healthcheck`: ask a running gateway's `/readyz`, then exit.
    Healthcheck,
}

/// The git commit the binary was built from (`build.rs`), `unknown` when it could not
/// tell.
pub const GIT_COMMIT: &str = env!("DANMAKU_GIT_COMMIT");

/// What start-up should tell the operator about dev mode.
#[derive(Debug, Default)]
pub struct DevMode {
    /// The random HS256 secret generated for this run, when none was configured.
    pub jwt_secret: Option<String>,
    /// The API key generated for this run, when none was configured.
    pub api_key: Option<String>,
}

/// Settings the gateway refuses to start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The `--config` file cannot be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML or has an unknown key.
    #[error("parsing {path}: {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Why (names the key).
        source: toml::de::Error,
    },
    /// `--listen` is not an address.
    #[error("--listen {0}: expected host:port")]
    Listen(String),
    /// A `--trusted-proxies` entry that is not an address or a network.
    #[error("--trusted-proxies: {0}")]
    TrustedProxies(crate::proxy::ParseError),
    /// Two settings that exclude each other.
    #[error("give either {0} or {1}, not both")]
    Exclusive(&'static str, &'static str),
    /// A setting that only means something with another one.
    #[error("{0} only applies with {1}")]
    Requires(&'static str, &'static str),
    /// A setting the chosen store would ignore.
    #[error("{}", not_for_store(.flag, *.store))]
    NotForStore {
        /// The setting's flag.
        flag: String,
        /// The store it applies to.
        store: Store,
    },
    /// `--jwt-algorithm` is not one we verify.
    #[error("--jwt-algorithm {0}: expected RS256 or ES256")]
    Algorithm(String),
    /// The `--jwt-public-key` file cannot be read.
    #[error("reading --jwt-public-key {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value out of range or contradicting another.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn not_for_store(flag: &str, store: Store) -> String {
    match store {
        Store::Memory => format!(
            "{flag} only applies to the in-memory store, but --redis-url or --redis-cluster \
             puts the rooms in Redis; remove {flag}"
        ),
        Store::Redis | Store::Any => format!(
            "{flag} only applies to Redis, but neither --redis-url nor --redis-cluster is \
             given; remove {flag} or give one"
        ),
    }
}

impl Args {
    /// The command line and environment (on `--help`, `--version` or a malformed flag,
    /// prints and exits, as clap does), then the `--config` file under them.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn load() -> Result<(Self, Mode), CliError> {
        let matches = command().get_matches();
        let mode = if matches.get_flag(HEALTHCHECK) {
            Mode::Healthcheck
        } else {
            Mode::Serve
        };
        let args = Self::from_arg_matches(&matches)
            .unwrap_or_else(|e| e.exit())
            .with_file()?;
        Ok((args, mode))
    }

    /// The `--listen` address (the default without it).
    ///
    /// # Errors
    /// When it is not an address.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, CliError> {
        let Some(l) = &self.listen else {
            return Ok(Config::default().listen);
        };
        use std::net::ToSocketAddrs;
        l.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| CliError::Listen(l.clone()))
    }

    /// Parses `args` (the first is the program name) and the environment.
    ///
    /// # Errors
    /// A malformed or unknown flag, or `--help`.
    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::from_arg_matches(&command().try_get_matches_from(args)?)
    }

    /// Reads the TOML file, if any, under the flags and environment.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn with_file(mut self) -> Result<Self, CliError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| CliError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let file: Args =
            toml::from_str(&text).map_err(|source| CliError::ParseFile { path, source })?;
        self.fill_from(file);
        Ok(self)
    }

    /// Builds and validates the configuration.
    ///
    /// # Errors
    /// On an invalid address or key file, settings that exclude each other or that the
    /// store would ignore, and anything [`Config::validate`] refuses.
    pub fn into_config(mut self) -> Result<(Config, DevMode), CliError> {
        let redis_url = self.redis_url.take().filter(|u| !u.is_empty());
        let redis_cluster = self.redis_cluster.take().filter(|u| !u.is_empty());
        let store = if redis_url.is_some() || redis_cluster.is_some() {
            Store::Redis
        } else {
            Store::Memory
        };
        if let Some(s) = self
            .given()
            .find(|s| s.store != Store::Any && s.store != store)
        {
            return Err(CliError::NotForStore {
                flag: s.flag(),
                store: s.store,
            });
        }
        let mut c = Config::default();
        let mut dev = DevMode::default();
        self.apply_plain(&mut c);
        c.listen = self.listen_addr()?;
        self.listen = None;
        c.auth.jwt = self.jwt_key(&mut dev)?;
        c.auth.anonymous = self.anonymous.unwrap_or(dev.jwt_secret.is_some());
        c.auth.api_keys = self
            .api_keys
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
        if c.auth.api_keys.is_empty() {
            let key = format!("dev-{}", random_hex(24));
            dev.api_key = Some(key.clone());
            c.auth.api_keys.push(key);
        }
        c.auth.allowed_origins = self.allowed_origins.take().unwrap_or_default();
        c.auth.cors_origins = self.cors_origins.take().unwrap_or_default();
        c.ws.trusted_proxies =
            crate::proxy::TrustedProxies::parse(&self.trusted_proxies.take().unwrap_or_default())
                .map_err(CliError::TrustedProxies)?;
        c.rooms.blocked_words = self.room_blocked_words.take().unwrap_or_default();
        c.rooms.vip_tags = self.room_vip_tags.take().unwrap_or_default();
        c.auth.audience = self.jwt_audience.take();
        c.auth.issuer = self.jwt_issuer.take();
        let redis = match (redis_url, redis_cluster) {
            (Some(_), Some(_)) => {
                return Err(CliError::Exclusive("--redis-url", "--redis-cluster"));
            }
            (Some(urls), None) => Some((urls, false)),
            (None, Some(seeds)) => Some((seeds, true)),
            (None, None) => None,
        };
        c.redis = redis.map(|(urls, cluster)| self.redis_config(&c, &urls, cluster));
        c.validate()?;
        Ok((c, dev))
    }

    fn jwt_key(&mut self, dev: &mut DevMode) -> Result<JwtKey, CliError> {
        let algorithm = self.jwt_algorithm.take();
        Ok(match (self.jwt_secret.take(), self.jwt_public_key.take()) {
            (Some(_), Some(_)) => {
                return Err(CliError::Exclusive("--jwt-secret", "--jwt-public-key"));
            }
            (Some(_), None) | (None, None) if algorithm.is_some() => {
                return Err(CliError::Requires("--jwt-algorithm", "--jwt-public-key"));
            }
            (Some(s), None) => JwtKey::Hs256(s.into_bytes()),
            (None, Some(path)) => {
                let pem = std::fs::read(&path).map_err(|source| CliError::KeyFile {
                    path: path.clone(),
                    source,
                })?;
                match algorithm.as_deref().unwrap_or(DEFAULT_JWT_ALGORITHM) {
                    "RS256" => JwtKey::Rs256(pem),
                    "ES256" => JwtKey::Es256(pem),
                    other => return Err(CliError::Algorithm(other.to_owned())),
                }
            }
            (None, None) => {
                let secret = random_hex(32);
                dev.jwt_secret = Some(secret.clone());
                JwtKey::Hs256(secret.into_bytes())
            }
        })
    }

    /// The Redis store's configuration: the store bounds already in `c.memory` apply
    /// to Redis too.
    fn redis_config(&mut self, c: &Config, urls: &str, cluster: bool) -> RedisConfig {
        let defaults = RedisConfig::default();
        RedisConfig {
            urls: urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect(),
            cluster,
            prefix: self.redis_prefix.take().unwrap_or(defaults.prefix.clone()),
            history_len: c.memory.history_len,
            history_age: c.memory.history_age,
            room_ttl: c.memory.room_ttl,
            cohost_lease: c.memory.cohost_lease,
            idempotency_ttl: c.memory.idempotency_ttl,
            gateway_id: c.gateway_id.clone(),
            online_ttl: c.presence_interval * 5,
            call_timeout: self
                .redis_timeout_ms
                .take()
                .map_or(defaults.call_timeout, Duration::from_millis),
            probe_timeout: self
                .redis_probe_timeout_ms
                .take()
                .map_or(defaults.probe_timeout, Duration::from_millis),
            store_lost_after: self
                .redis_lost_after_ms
                .take()
                .map_or(defaults.store_lost_after, Duration::from_millis),
            ..defaults
        }
    }
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
