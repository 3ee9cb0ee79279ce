//! What the gateway counts, and `/metrics` (Prometheus text or OpenMetrics).
//!
//! [`Metrics`] holds the handles the gateway counts with: `prometheus-client` counters
//! and gauges (each an `Arc` of one atomic: an event is one relaxed `fetch_add`) and
//! lock-free histograms. Every labelled series whose label set is known in advance
//! (close codes, error codes, refusal reasons, skip reasons) is resolved to its handle
//! once, here, so counting never looks a label up. Only the HTTP request metrics look
//! theirs up (route × status is not known in advance), once per HTTP request.
//!
//! # Layout
//! - [`export`]: the registry (names, help, types), the values read at scrape time
//!   (hub, store, backlogs, readiness), and the encoding.
//! - [`http`]: the HTTP request counter and duration histogram (a middleware).
//! - [`process`]: `process_*` metrics read from `/proc` at scrape time (Linux).
//!
//! Every metric is listed in `docs/metrics.md`; the test `metrics_catalogue` fails when
//! the exposed set and the catalogue differ.

pub mod export;
pub mod http;
mod process;

use std::sync::Arc;

use danmaku_fanout::stats::{BUCKETS, Histogram};
use danmaku_protocol::{CloseCode, ErrorCode, Priority};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

pub use export::{Exporter, Hist, Live};

/// Upper bounds of the dwell buckets (a viewer's time in a room), in microseconds:
/// 1 s to 4 h.
pub const DWELL_BUCKETS_US: [u64; BUCKETS] = [
    1_000_000,
    5_000_000,
    15_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
    900_000_000,
    1_800_000_000,
    3_600_000_000,
    7_200_000_000,
    10_800_000_000,
    14_400_000_000,
];

/// Why a WebSocket handshake was refused: the code of the HTTP error it got (the last
/// one, `other`, for any code not listed).
pub const REFUSAL_REASONS: [&str; 7] = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "unavailable",
    "proxy",
    "other",
];

/// Every metric the gateway counts itself (values kept elsewhere are read at scrape
/// time, see [`Live`]).
#[derive(Debug)]
pub struct Metrics {
    /// Joins answered `joined` (resumes included).
    pub joins: Counter,
    /// Joins with `since`, by their answer: recovered, not recovered.
    pub resumes: [Counter; 2],
    /// Upgrade request to a connection's first `joined` queued (the first render).
    pub first_render: Hist,
    /// A connection's time in a room, join to leave or disconnect (with `--analytics`).
    pub dwell: Hist,
    /// Open WebSocket connections.
    pub open_connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
    /// Handshakes refused, by [`REFUSAL_REASONS`].
    handshakes_refused: [Counter; REFUSAL_REASONS.len()],
    /// HTTP API requests refused by their key's quota.
    pub api_rate_limited: Counter,
    /// Events sequenced through this gateway (client comments and API publishes).
    pub events_in: Counter,
    /// Like clicks received (sum of counts).
    pub likes_in: Counter,
    /// Votes received.
    pub votes_in: Counter,
    /// WebSocket frames written.
    pub frames_out: Counter,
    /// Messages written (a frame may carry several).
    pub messages_out: Counter,
    /// Bytes written to viewers' sockets (WebSocket framing included).
    pub bytes_out: Counter,
    /// `reset` frames sent.
    pub resets: Counter,
    /// Events not delivered to adaptive viewers (told by `skipped`), by priority:
    /// low, normal (high events are never sampled).
    pub skipped_sampled: [Counter; 2],
    /// Targeted events not delivered to viewers outside their audience (told by
    /// `skipped`), by priority: high, normal, low.
    pub skipped_targeted: [Counter; 3],
    /// Targeted events delivered to viewers of their audience.
    pub targeted_delivered: Counter,
    /// Viewer comments merged into a `comment.merged` instead of sequenced.
    pub comments_merged: Counter,
    /// Viewer comments refused with `room_busy` (the room's comment budget).
    pub room_busy: Counter,
    /// Connections closed as slow consumers (4008).
    pub slow_closes: Counter,
    /// Connections closed by the gateway, by close code (in [`CloseCode::ALL`] order).
    closes: [Counter; CloseCode::ALL.len()],
    /// Commands refused with `rate_limited`.
    pub rate_limited: Counter,
    /// Commands refused with any other error, by code (in [`ErrorCode::ALL`] order;
    /// `rate_limited`'s slot stays 0: it is [`Metrics::rate_limited`]).
    command_errors: [Counter; ErrorCode::ALL.len()],
    /// Time from a `join` command to its `joined` reply queued for the socket: the
    /// store's view of the room and the snapshot (not the network, not the upgrade).
    pub join_latency: Hist,
    /// Time to sequence one publish.
    pub publish_latency: Hist,
    /// HTTP requests by route and status, and their durations by route.
    pub http: Arc<http::HttpMetrics>,
    /// The labelled families the handles above belong to (for the registry).
    families: Families,
}

/// A family of counters with one label.
type Labelled = Family<[(&'static str, &'static str); 1], Counter>;

/// The labelled counter families, each series created up front (a series exists, at 0,
/// before its first event: `rate()` sees the first one).
#[derive(Debug, Default)]
struct Families {
    handshakes_refused: Labelled,
    closes: Family<[(&'static str, u16); 1], Counter>,
    command_errors: Labelled,
    resumes: Labelled,
    skipped: Family<[(&'static str, &'static str); 2], Counter>,
}

/// The handles of `family`'s series `label`=each of `values`.
fn resolve<const N: usize>(
    family: &Labelled,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    values.map(|v| family.get_or_create_owned(&[(label, v)]))
}

impl Default for Metrics {
    fn default() -> Self {
        let f = Families::default();
        let skipped = |reason, priority| {
            f.skipped
                .get_or_create_owned(&[("reason", reason), ("priority", priority)])
        };
        let codes = ErrorCode::ALL.map(|c| c.as_str());
        let command_errors = codes.map(|c| {
            if c == ErrorCode::RateLimited.as_str() {
                Counter::default() // never counted: `rate_limited` has its own metric
            } else {
                f.command_errors.get_or_create_owned(&[("code", c)])
            }
        });
        Self {
            joins: Counter::default(),
            resumes: resolve(&f.resumes, "recovered", ["true", "false"]),
            first_render: Hist::default(),
            dwell: Hist::new(Histogram::with_bounds(&DWELL_BUCKETS_US)),
            open_connections: Gauge::default(),
            connections_total: Counter::default(),
            handshakes_refused: resolve(&f.handshakes_refused, "reason", REFUSAL_REASONS),
            api_rate_limited: Counter::default(),
            events_in: Counter::default(),
            likes_in: Counter::default(),
            votes_in: Counter::default(),
            frames_out: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            resets: Counter::default(),
            skipped_sampled: [skipped("sampled", "low"), skipped("sampled", "normal")],
            skipped_targeted: [
                skipped("targeted", "high"),
                skipped("targeted", "normal"),
                skipped("targeted", "low"),
            ],
            targeted_delivered: Counter::default(),
            comments_merged: Counter::default(),
            room_busy: Counter::default(),
            slow_closes: Counter::default(),
            closes: CloseCode::ALL.map(|c| f.closes.get_or_create_owned(&[("code", c.code())])),
            rate_limited: Counter::default(),
            command_errors,
            join_latency: Hist::default(),
            publish_latency: Hist::default(),
            http: Arc::default(),
            families: f,
        }
    }
}

impl Metrics {
    /// Counts a handshake refused with the HTTP error code `code`.
    pub fn handshake_refused(&self, code: &str) {
        let last = REFUSAL_REASONS.len() - 1;
        let i = REFUSAL_REASONS[..last]
            .iter()
            .position(|r| *r == code)
            .unwrap_or(last);
        self.handshakes_refused[i].inc();
    }

    /// Counts a close the gateway sent.
    pub fn closed(&self, code: CloseCode) {
        if let Some(i) = CloseCode::ALL.iter().position(|c| *c == code) {
            self.closes[i].inc();
        }
        if code == CloseCode::SlowConsumer {
            self.slow_closes.inc();
        }
    }

    /// Counts an `error` reply sent to a client.
    pub fn command_error(&self, code: ErrorCode) {
        if code == ErrorCode::RateLimited {
            self.rate_limited.inc();
        } else if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.command_errors[i].inc();
        }
    }

    /// Counts a skipped event told to a viewer.
    pub fn skipped(&self, targeted: bool, priority: Priority) {
        if targeted {
            let i = match priority {
                Priority::High => 0,
                Priority::Normal => 1,
                Priority::Low => 2,
            };
            self.skipped_targeted[i].inc();
        } else {
            self.skipped_sampled[usize::from(priority != Priority::Low)].inc();
        }
    }
}
