//! The run's plan, computed the same way in every process: rooms, which viewer watches
//! which room, and where each viewer connects.

use std::net::SocketAddr;

use anyhow::bail;
use danmaku_protocol::RoomId;
use serde::Serialize;

use crate::cli::{Cli, ClientKind, Scenario};
use crate::endpoint::Endpoint;
use crate::tls::Tls;
use crate::viewer::Dial;

/// Rooms and viewers of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The command line.
    pub cli: Cli,
    /// Room ids.
    pub rooms: Vec<RoomId>,
    /// Room index of each viewer.
    pub viewer_room: Vec<usize>,
    /// Gateway socket addresses, in `--url` order.
    pub addrs: Vec<SocketAddr>,
    /// The gateways in `--url` order: their HTTP API (`http://host:port`, or
    /// `https://` for a `wss://` URL) and their TLS, which their viewers use too.
    pub http: Vec<Endpoint>,
    /// The TLS trust of the run (public roots and `--ca-file`).
    pub tls: Tls,
    /// Room id prefix of this run.
    pub prefix: String,
}

impl Plan {
    /// Builds the plan.
    ///
    /// # Errors
    /// On an unusable URL or `--ca-file`, or a room prefix that makes invalid room ids.
    pub fn new(cli: Cli) -> anyhow::Result<Self> {
        let (viewers, rooms, zipf) = cli.scenario.shape();
        if rooms == 0 {
            bail!("--rooms must be at least 1");
        }
        let prefix = cli
            .common
            .room_prefix
            .clone()
            .unwrap_or_else(|| format!("lt{:x}", crate::now_us() % 0xff_ffff));
        let room_ids = (0..rooms)
            .map(|i| {
                let id = format!("{prefix}-{i}");
                RoomId::new(&id)
                    .map_err(|e| anyhow::anyhow!("--room-prefix {prefix}: room `{id}`: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let tls = Tls::new(&cli.common.ca_files)?;
        let mut http = Vec::new();
        for url in &cli.common.urls {
            if !url.starts_with("ws://") && !url.starts_with("wss://") {
                bail!("{url}: only ws:// and wss:// URLs");
            }
            http.push(Endpoint::parse(url, &tls)?);
        }
        let addrs: Vec<SocketAddr> = http.iter().map(|e| e.addr).collect();
        if addrs.is_empty() {
            bail!("give at least one --url");
        }
        Ok(Self {
            viewer_room: assign(viewers, rooms, zipf),
            rooms: room_ids,
            cli,
            addrs,
            http,
            tls,
            prefix,
        })
    }

    /// Whether any gateway is reached over TLS.
    pub fn any_tls(&self) -> bool {
        self.http.iter().any(|e| e.tls.is_some())
    }

    /// The gateway (`--url` index) of viewer `i`'s `attempt`th connection.
    pub fn gateway(&self, i: usize, attempt: usize) -> usize {
        (i + attempt) % self.addrs.len().max(1)
    }

    /// How viewer `i` connects (its `attempt`th connection picks the next gateway).
    /// The `max_rate` viewer `i` joins adaptive with, when it is one of the
    /// `--adaptive-fraction`.
    pub fn adaptive(&self, i: usize) -> Option<u32> {
        let load = self.scenario().load()?;
        crate::cli::in_share(i, load.adaptive_fraction).then_some(load.adaptive_max_rate)
    }

    /// Which events viewer `i` measures the latency of: all, unless some events are
    /// not high; then the high events, at the viewers that get every event.
    pub fn measures(&self, i: usize) -> crate::seen::LatencyOf {
        use crate::seen::LatencyOf;
        if !self.scenario().load().is_some_and(|l| l.high_share < 1.0) {
            LatencyOf::All
        } else if self.adaptive(i).is_some() {
            LatencyOf::None
        } else {
            LatencyOf::High
        }
    }

    pub fn dial(&self, i: usize, attempt: usize) -> Dial {
        let g = self.gateway(i, attempt);
        let base = &self.cli.common.urls[g];
        let url = match &self.cli.common.jwt_secret {
            Some(secret) => format!("{base}?token={}", token(secret, &user(i))),
            None => base.clone(),
        };
        let sources = &self.cli.common.source_addrs;
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        Dial {
            url,
            addr: self.addrs[g],
            tls: self.http[g].tls.clone(),
            source,
            seed: ((i as u64) << 16) | attempt as u64,
            tungstenite: self.cli.common.client == ClientKind::Tungstenite,
        }
    }

    /// How the moderation storm's moderator connects to the first gateway: a token with
    /// `"role":"moderator"`, or `None` without `--jwt-secret`.
    pub fn moderator_dial(&self) -> Option<Dial> {
        let secret = self.cli.common.jwt_secret.as_ref()?;
        let token = token_as(secret, "lt-moderator", None, Some("moderator"));
        Some(Dial {
            url: format!("{}?token={token}", self.cli.common.urls[0]),
            ..self.dial(0, 0)
        })
    }

    /// Viewers of worker `w` (of `procs`).
    pub fn viewers_of(&self, w: usize) -> impl Iterator<Item = usize> + '_ {
        (w..self.viewer_room.len()).step_by(self.cli.common.procs.max(1))
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.cli.scenario
    }
}

/// Viewers per room: uniform, or Zipf with exponent `s` (every room gets at least one).
fn assign(viewers: usize, rooms: usize, s: f64) -> Vec<usize> {
    let weights: Vec<f64> = (0..rooms)
        .map(|r| {
            if s > 0.0 {
                1.0 / ((r + 1) as f64).powf(s)
            } else {
                1.0
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| ((w / total) * viewers as f64).floor() as usize)
        .collect();
    if viewers >= rooms {
        for c in counts.iter_mut() {
            *c = (*c).max(1);
        }
    }
    // Fix rounding so the counts add up to `viewers`, trimming or adding at the largest.
    let mut sum: usize = counts.iter().sum();
    while sum > viewers {
        if let Some(i) = (0..rooms).max_by_key(|&i| counts[i]) {
            counts[i] -= 1;
        }
        sum -= 1;
    }
    let mut r = 0;
    while sum < viewers {
        counts[r % rooms] += 1;
        sum += 1;
        r += 1;
    }
    counts
        .iter()
        .enumerate()
        .flat_map(|(room, &n)| std::iter::repeat_n(room, n))
        .collect()
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    name: &'a str,
    /// The viewer's cohort: the gateway puts it in this variant of a room's experiment.
    #[serde(skip_serializing_if = "Option::is_none")]
    cohort: Option<&'a str>,
    /// `moderator` or `host`; a viewer's token has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// Viewer `i`'s user id (its token's `sub`).
pub fn user(i: usize) -> String {
    format!("lt-{i}")
}

/// An HS256 viewer token valid for a day.
pub fn token(secret: &str, sub: &str) -> String {
    token_in(secret, sub, None)
}

/// An HS256 viewer token valid for a day, with a `cohort` claim when given.
pub fn token_in(secret: &str, sub: &str, cohort: Option<&str>) -> String {
    token_as(secret, sub, cohort, None)
}

/// An HS256 token valid for a day, with a `cohort` and a `role` claim when given.
pub fn token_as(secret: &str, sub: &str, cohort: Option<&str>, role: Option<&str>) -> String {
    let exp = crate::now_us() / 1_000_000 + 86_400;
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub,
            exp,
            name: sub,
            cohort,
            role,
        },
        &key,
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_rooms_are_skewed_and_complete() {
        let a = assign(10_000, 1_000, 1.0);
        assert_eq!(a.len(), 10_000);
        let count = |r| a.iter().filter(|&&x| x == r).count();
        assert!(count(0) > 500, "the biggest room is huge: {}", count(0));
        assert!(count(999) >= 1);
        let u = assign(5_000, 100, 0.0);
        assert!((0..100).all(|r| u.iter().filter(|&&x| x == r).count() == 50));
    }
}
