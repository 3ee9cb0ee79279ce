//! Command-line interface.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// Load-test a danmaku deployment with real WebSocket viewers.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "danmaku-loadtest", version, about)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
    /// Options every scenario takes.
    #[command(flatten)]
    pub common: Common,
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct Common {
    /// Gateway WebSocket URL (`ws://`, or `wss://` for TLS; its HTTP API is then
    /// `https://`); repeat (or separate with commas) for several gateways (round robin).
    #[arg(
        long = "url",
        global = true,
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub urls: Vec<String>,
    /// A PEM file of certificates to trust for `wss://` (and its `https://` API),
    /// besides the public roots: a balancer's self-signed certificate or private CA.
    /// Repeatable; a file may hold several certificates.
    #[arg(long = "ca-file", global = true, value_name = "PEM")]
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// API key for publishing and reading room state.
    #[arg(long, global = true, env = "DANMAKU_API_KEY", default_value = "")]
    pub api_key: String,
    /// HS256 secret to sign viewer tokens with; without it viewers connect anonymously.
    #[arg(long, global = true, env = "DANMAKU_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Worker processes for the viewers (each under the open-file limit).
    #[arg(long, global = true, default_value_t = 1)]
    pub procs: usize,
    /// Runtime threads per process.
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// Source addresses for viewer connections (127.0.0.0/8), comma-separated.
    #[arg(long, global = true, value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,
    /// Write the results as JSON here.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long, global = true)]
    pub html: Option<PathBuf>,
    /// A gateway process to watch (RSS, CPU); repeatable.
    #[arg(long = "gateway-pid", global = true)]
    pub gateway_pids: Vec<u32>,
    /// Fail when the end-to-end p99 exceeds this.
    #[arg(long, global = true)]
    pub max_p99_ms: Option<f64>,
    /// Fail when fewer deliveries per second were made.
    #[arg(long, global = true)]
    pub min_deliveries_per_s: Option<f64>,
    /// Room id prefix (a random one by default, so runs do not share rooms).
    #[arg(long, global = true)]
    pub room_prefix: Option<String>,
    /// Connections opening at once.
    #[arg(long, global = true, default_value_t = 2000)]
    pub in_flight: usize,
    /// Connections opened per second (0: as fast as `--in-flight` allows).
    #[arg(long, global = true, default_value_t = 0.0)]
    pub ramp_rate: f64,
    /// The viewers' WebSocket client: `own` (the load test's lean client, read by epoll
    /// reader threads where viewers only read) or `tungstenite` (plain tokio-tungstenite
    /// clients, one task each, on a single-threaded runtime per worker process, as a
    /// typical app's would be; give `--procs` 2 or more so the viewers do not share the
    /// publishers' runtime).
    #[arg(long, global = true, value_enum, default_value_t = ClientKind::Own)]
    #[serde(default)]
    pub client: ClientKind,
    /// Internal: this process is worker N of `--procs`.
    #[arg(long, global = true, hide = true)]
    pub worker_index: Option<usize>,
    /// No live progress line.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// The scenarios.
#[derive(Debug, Clone, PartialEq, Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Open N connections, each joins a room; measure connect and first render.
    Connect {
        /// Connections.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Rooms the connections spread over.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Seconds to hold the connections open after all joined.
        #[arg(long, default_value_t = 0.0)]
        hold_s: f64,
    },
    /// Viewers over rooms; publishers through the HTTP API; end-to-end latency.
    Fanout(Load),
    /// As fanout, and viewers also comment, like and vote; checks acks and totals.
    Interact {
        /// The fanout load.
        #[command(flatten)]
        #[serde(flatten)]
        load: Load,
        /// Comments per viewer per second.
        #[arg(long, default_value_t = 0.05)]
        comment_rate: f64,
        /// Like commands per viewer per second.
        #[arg(long, default_value_t = 0.5)]
        like_rate: f64,
        /// Skip the poll (by default each viewer votes once in a poll opened at the start).
        #[arg(long)]
        no_vote: bool,
        /// Share of the viewers (0–1, spread evenly) whose comments are all the same
        /// text ("666"), as a room floods a cheer: the gateway merges the copies beyond
        /// its `--merge-after` into one `comment.merged` per window.
        #[arg(long, default_value_t = 0.0)]
        #[serde(default)]
        repeat_share: f64,
        /// Opens a keyword game with this text in each room: the `--repeat-share`
        /// viewers' comments are the keyword (instead of "666"), and its `comments` and
        /// `participants` at the close must equal the acknowledged ones.
        #[arg(long)]
        #[serde(default)]
        keyword: Option<String>,
        /// Opens a quiz (3 options) in each room; each viewer answers once at the
        /// start; its counts at the close must equal the acknowledged answers.
        #[arg(long)]
        #[serde(default)]
        quiz: bool,
        /// Opens a lottery entered by command, with this many winners, in each room;
        /// each viewer enters once at the start. At the close its entrants must be the
        /// acknowledged entries, its draw must recompute from the audit record, and
        /// exactly the winners must receive `lottery.won`.
        #[arg(long)]
        #[serde(default)]
        lottery_winners: Option<u32>,
        /// Opens a coupon with this stock in each room; each viewer claims it
        /// `--coupon-claims` times at once at the start: exactly the stock (or what
        /// the viewers may claim, if less) must succeed, each user at most
        /// `--coupon-per-user` times, and the claims list must hold exactly them.
        #[arg(long)]
        #[serde(default)]
        coupon_stock: Option<u64>,
        /// Claims one user may make of the coupon.
        #[arg(long, default_value_t = 1)]
        #[serde(default = "one_u32")]
        coupon_per_user: u32,
        /// Claims each viewer sends.
        #[arg(long, default_value_t = 1)]
        #[serde(default = "one_u32")]
        coupon_claims: u32,
    },
    /// As fanout, and viewers drop and reconnect with `since` during the run.
    Resume {
        /// The fanout load.
        #[command(flatten)]
        #[serde(flatten)]
        load: Load,
        /// Fraction of viewers that drop in each round.
        #[arg(long, default_value_t = 0.1)]
        drop_fraction: f64,
        /// Seconds between rounds of drops.
        #[arg(long, default_value_t = 3.0)]
        drop_every_s: f64,
    },
    /// Viewers come and go over a simulated time; the room's retention analytics
    /// (`GET /v1/rooms/{room}/analytics`) must match what they did.
    Retention(Retention),
}

/// The `retention` scenario's settings. Times are simulated seconds: the gateways'
/// analytics clock runs `--time-scale` times faster than the real one.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
pub struct Retention {
    /// Viewers (distinct users); each makes one visit, the `--return-share` two.
    #[arg(long, default_value_t = 600)]
    pub viewers: usize,
    /// The room (a fresh `<prefix>-0` by default). It must have no retention data yet.
    #[arg(long)]
    pub room: Option<String>,
    /// The gateways' `--analytics-time-scale`: a real second is this many simulated
    /// seconds. It must be what every gateway was started with.
    #[arg(long, default_value_t = 60)]
    pub time_scale: u64,
    /// The experiment's variants and their dwell distributions, comma-separated:
    /// `NAME=exp:MEAN_S` (exponential), `NAME=uniform:LO_S-HI_S` or `NAME=fixed:S`.
    /// Viewers are spread evenly over the variants.
    #[arg(long, value_delimiter = ',', default_value = "A=exp:120,B=exp:156")]
    pub dwell: Vec<String>,
    /// The experiment's name (the room's settings are set to it at the start).
    #[arg(long, default_value = "retention")]
    pub experiment: String,
    /// Simulated seconds over which the viewers arrive (uniformly at random).
    #[arg(long, default_value_t = 240.0)]
    pub arrivals_s: f64,
    /// The longest dwell, in simulated seconds: longer draws are cut to it.
    #[arg(long, default_value_t = 960.0)]
    pub max_dwell_s: f64,
    /// Share of the viewers (0–1, spread evenly) that drop their connection mid-visit
    /// and come back on the next gateway with `join` + `since` (the same visit).
    #[arg(long, default_value_t = 0.2)]
    pub resume_share: f64,
    /// Simulated seconds a dropped viewer stays away before it resumes.
    #[arg(long, default_value_t = 10.0)]
    pub away_s: f64,
    /// Share of the viewers (0–1, spread evenly) that come back for a second visit
    /// (a plain join, a new visit of the same user) after their first one ended.
    #[arg(long, default_value_t = 0.1)]
    pub return_share: f64,
    /// Comments each viewer sends per visit.
    #[arg(long, default_value_t = 1)]
    pub comments: u32,
    /// Like commands each viewer sends per visit.
    #[arg(long, default_value_t = 2)]
    pub likes: u32,
    /// The gateways' HTTP API for the room's settings (the first `--url`'s gateway by
    /// default). The analytics are read from every `--url`'s gateway.
    #[arg(long)]
    pub http_url: Option<String>,
    /// Real ms between a gateway's checks of its open visits' milestones (its
    /// analytics flush, every 200 ms), with room for the flush itself: a visit that
    /// ends within this (times the scale) after a milestone may or may not count.
    #[arg(long, default_value_t = 250)]
    pub tick_ms: u64,
    /// Real ms to wait after the last viewer left before reading the analytics (the
    /// gateways flush every 200 ms).
    #[arg(long, default_value_t = 600)]
    pub settle_ms: u64,
}

/// Which WebSocket client the viewers use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// The load test's own client (epoll readers for passive viewers).
    #[default]
    Own,
    /// tokio-tungstenite, a task per viewer.
    Tungstenite,
}

/// Viewers, rooms and the publish load.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
pub struct Load {
    /// Viewers.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Zipf exponent of room sizes (0: uniform).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Events per second published in all.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Concurrent publisher connections (0: from the rate).
    #[arg(long, default_value_t = 0)]
    pub publishers: usize,
    /// Each room publishes over one connection of its own (room r on connection
    /// r mod publishers, as a backend with a client per room would; at most one
    /// connection per room), each request still waiting for the answer to the last.
    /// Without it every connection publishes into every room in turn.
    #[arg(long)]
    #[serde(default)]
    pub publish_by_room: bool,
    /// Publish into the first N rooms only (0: every room). Rooms are ranked by size,
    /// so with `--zipf` these are the biggest; the other rooms' viewers stay joined
    /// and idle, as most of a platform's are.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub publish_rooms: usize,
    /// Publish with idempotency keys, and retry a publish answered 503 or 504
    /// (`outcome_unknown`) or cut off, up to 3 times with its key (marked `retry` once
    /// an attempt may have been sequenced), 100, 200, 300 ms apart, as a careful
    /// backend does: the event is then sequenced once whatever happened to the first.
    #[arg(long)]
    #[serde(default)]
    pub idempotent: bool,
    /// Share of the viewers (0–1, spread evenly) that join with `"mode":"adaptive"`,
    /// as a phone on a weak network would: the gateway sends them every high event and
    /// samples the rest, telling the skips. Skipped seqs count as covered, not lost.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub adaptive_fraction: f64,
    /// The `max_rate` (events/s) the adaptive viewers ask for.
    #[arg(long, default_value_t = 20)]
    #[serde(default = "default_max_rate")]
    pub adaptive_max_rate: u32,
    /// Share of the published events (0–1, spread evenly) that are `high`; the others
    /// are published `normal`. At 1 (the default) every event is high, as a backend's
    /// are by default. Below 1, latency is measured on the high events only, and not
    /// at the adaptive viewers (what every viewer must get at once).
    #[arg(long, default_value_t = 1.0)]
    #[serde(default = "one")]
    pub high_share: f64,
    /// A moderation storm: retractions per second in the first room while the events
    /// flow, each of the latest event published there. Viewers get a `retract` event
    /// for each, counted as the room's other events are.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub retract_rate: f64,
    /// Who retracts: a `moderator` connection (a token with `"role":"moderator"`,
    /// joined to the room, sending `moderate`; needs `--jwt-secret`) or the backend
    /// `api` (`POST …/moderation`).
    #[arg(long, value_enum, default_value_t = RetractBy::Moderator)]
    #[serde(default)]
    pub retract_by: RetractBy,
}

/// Who retracts in a moderation storm ([`Load::retract_rate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetractBy {
    /// A moderator's WebSocket connection, joined to the room.
    #[default]
    Moderator,
    /// The backend HTTP API.
    Api,
}

fn default_max_rate() -> u32 {
    20
}

fn one() -> f64 {
    1.0
}

fn one_u32() -> u32 {
    1
}

/// Whether item `i` of a sequence is one of an evenly spread `share` (0–1) of them.
pub fn in_share(i: usize, share: f64) -> bool {
    share >= 1.0 || (share > 0.0 && ((i + 1) as f64 * share).floor() > (i as f64 * share).floor())
}

impl Scenario {
    /// The scenario's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Fanout(_) => "fanout",
            Self::Interact { .. } => "interact",
            Self::Resume { .. } => "resume",
            Self::Retention(_) => "retention",
        }
    }

    /// The load, for scenarios that publish.
    pub fn load(&self) -> Option<&Load> {
        match self {
            Self::Connect { .. } | Self::Retention(_) => None,
            Self::Fanout(l) | Self::Interact { load: l, .. } | Self::Resume { load: l, .. } => {
                Some(l)
            }
        }
    }

    /// Whether the scenario uses the HTTP API (its key is checked before the run).
    pub fn uses_api(&self) -> bool {
        self.load().is_some() || matches!(self, Self::Retention(_))
    }

    /// Viewers and rooms.
    pub fn shape(&self) -> (usize, usize, f64) {
        match self {
            Self::Connect {
                connections, rooms, ..
            } => (*connections, *rooms, 0.0),
            Self::Retention(r) => (r.viewers, 1, 0.0),
            _ => self
                .load()
                .map_or((0, 1, 0.0), |l| (l.viewers, l.rooms, l.zipf)),
        }
    }
}
