//! The registry behind `/metrics`: every metric's name, help and type in one place,
//! the values read at scrape time, and the two text formats.

use std::fmt;
use std::sync::Arc;

use danmaku_fanout::Fanout;
use danmaku_fanout::stats::{Histogram, StoreStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::ws::Backlogs;

/// The `Content-Type` of the Prometheus text format, the default answer.
pub const TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of OpenMetrics text, answered to who asks for it (`Accept`).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A lock-free histogram as a `prometheus-client` metric (a shared handle: the copy
/// registered and the one observed are the same histogram).
#[derive(Debug, Clone, Default)]
pub struct Hist(Arc<Histogram>);

impl Hist {
    /// A handle to `histogram`.
    pub fn new(histogram: Histogram) -> Self {
        Self(Arc::new(histogram))
    }
}

impl std::ops::Deref for Hist {
    type Target = Histogram;

    fn deref(&self) -> &Histogram {
        &self.0
    }
}

impl TypedMetric for Hist {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Hist {
    fn encode(&self, encoder: MetricEncoder<'_>) -> fmt::Result {
        encode_histogram(&self.0, encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn encode_histogram(h: &Histogram, mut encoder: MetricEncoder<'_>) -> fmt::Result {
    let s = h.snapshot();
    encoder.encode_histogram::<NoLabelSet>(s.sum, s.count, &s.buckets, None)
}

/// What `/metrics` reads at scrape time: values kept by the hub, the store and the
/// connections, and the gateway's state.
pub struct Live {
    /// The store (and through it the hub).
    pub fanout: Arc<dyn Fanout>,
    /// Every connection's outbound backlog.
    pub backlogs: Arc<Backlogs>,
    /// Cancelled once the gateway drains.
    pub shutdown: CancellationToken,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// One value read at scrape time.
enum Value {
    Counter(u64),
    Gauge(i64),
}

fn gauge(v: impl TryInto<i64>) -> Value {
    Value::Gauge(v.try_into().unwrap_or(i64::MAX))
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let hub = self.fanout.hub();
        let stats = hub.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let outbound = self.backlogs.totals();
        let empty = StoreStats::default();
        let store = self.fanout.store_stats().unwrap_or(&empty);
        let values = [
            (
                "danmaku_deliveries",
                "Frames handed to connection queues",
                Value::Counter(load(&stats.delivered)),
            ),
            (
                "danmaku_queue_drops",
                "Frames dropped at full connection queues",
                Value::Counter(load(&stats.dropped)),
            ),
            (
                "danmaku_rooms",
                "Rooms with local viewers",
                gauge(hub.room_count()),
            ),
            (
                "danmaku_outbound_bytes",
                "Bytes held for writing to viewers: queued, being written, not yet taken by the socket",
                gauge(outbound.bytes),
            ),
            (
                "danmaku_outbound_bytes_max",
                "The largest outbound backlog of one connection",
                gauge(outbound.max_bytes),
            ),
            (
                "danmaku_pubsub_stalls",
                "Pub/sub connections found stalled by the liveness probe and replaced",
                Value::Counter(StoreStats::get(&store.pubsub_stalls)),
            ),
            (
                "danmaku_store_rollovers",
                "Rooms moved to a new epoch because the store went back under their epoch (lost acknowledged writes)",
                Value::Counter(StoreStats::get(&store.rollovers)),
            ),
            (
                "danmaku_store_errors",
                "Store calls answered with an error (unreachable, connection lost, error reply; not timeouts, not the room script's refusals)",
                Value::Counter(StoreStats::get(&store.errors)),
            ),
            (
                "danmaku_store_timeouts",
                "Store calls without an answer within --redis-timeout-ms (a publish among them is answered outcome_unknown)",
                Value::Counter(StoreStats::get(&store.timeouts)),
            ),
            (
                "danmaku_store_reconnects",
                "Pub/sub connections to the store opened again after one was lost",
                Value::Counter(StoreStats::get(&store.reconnects)),
            ),
            (
                "danmaku_store_up",
                "1 while the store is reachable (as /readyz sees it), else 0",
                gauge(i64::from(self.fanout.ready())),
            ),
            (
                "danmaku_draining",
                "1 once the gateway is draining (SIGTERM), else 0",
                gauge(i64::from(self.shutdown.is_cancelled())),
            ),
        ];
        for (name, help, value) in values {
            match value {
                Value::Counter(v) => {
                    let c = ConstCounter::new(v);
                    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
                }
                Value::Gauge(v) => {
                    let g = ConstGauge::new(v);
                    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
                }
            }
        }
        let histograms = [
            (
                "danmaku_store_call_seconds",
                "Store calls that got an answer, by their time (Redis store)",
                &store.latency,
            ),
            (
                "danmaku_delivery_lag_seconds",
                "An event's sequencing (its ts, the sequencing gateway's clock) to this gateway's hub taking it from pub/sub (Redis store)",
                &store.delivery_lag,
            ),
        ];
        for (name, help, h) in histograms {
            encode_histogram(
                h,
                encoder.encode_descriptor(name, help, None, MetricType::Histogram)?,
            )?;
        }
        Ok(())
    }
}

/// The registry `/metrics` encodes.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// Registers every metric of `m`, the values of `live`, build information and the
    /// process's metrics.
    pub fn new(m: &Metrics, live: Live) -> Self {
        let mut r = Registry::default();
        register_counters(&mut r, m);
        register_labelled(&mut r, m);
        r.register(
            "danmaku_open_connections",
            "Open WebSocket connections",
            m.open_connections.clone(),
        );
        let histograms = [
            (
                "danmaku_join_seconds",
                "Join command to joined reply queued",
                &m.join_latency,
            ),
            (
                "danmaku_publish_seconds",
                "Sequencing one publish",
                &m.publish_latency,
            ),
            (
                "danmaku_first_render_seconds",
                "Upgrade request to the connection's first joined queued",
                &m.first_render,
            ),
            (
                "danmaku_dwell_seconds",
                "A connection's time in a room, join to leave or disconnect",
                &m.dwell,
            ),
        ];
        for (name, help, h) in histograms {
            r.register(name, help, h.clone());
        }
        m.http.register(&mut r);
        let build: Family<[(&'static str, &'static str); 2], Gauge> = Family::default();
        build
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", crate::cli::GIT_COMMIT),
            ])
            .set(1);
        r.register(
            "danmaku_build_info",
            "The gateway's version and git commit (1)",
            build,
        );
        r.register_collector(Box::new(live));
        r.register_collector(Box::new(super::process::Process));
        Self { registry: r }
    }

    /// The metrics in OpenMetrics text when `accept` asks for it, else in the
    /// Prometheus text format; with the answer's `Content-Type`.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        let mut out = String::with_capacity(16 * 1024);
        let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
        // Writing into a String cannot fail; an encoder error would leave the text cut
        // short, which a scraper reports.
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = encoded {
            tracing::warn!(error = %e, "metrics not fully encoded");
        }
        (if openmetrics { OPENMETRICS } else { TEXT }, out)
    }
}

fn register_counters(r: &mut Registry, m: &Metrics) {
    let counters = [
        (
            "danmaku_connections",
            "WebSocket connections accepted",
            &m.connections_total,
        ),
        (
            "danmaku_api_rate_limited",
            "HTTP API requests refused by their key's quota",
            &m.api_rate_limited,
        ),
        (
            "danmaku_events_in",
            "Events sequenced through this gateway",
            &m.events_in,
        ),
        ("danmaku_likes_in", "Like clicks received", &m.likes_in),
        ("danmaku_votes_in", "Votes received", &m.votes_in),
        (
            "danmaku_frames_out",
            "WebSocket frames written",
            &m.frames_out,
        ),
        ("danmaku_messages_out", "Messages written", &m.messages_out),
        (
            "danmaku_bytes_out",
            "Bytes written to viewers' sockets, WebSocket framing included",
            &m.bytes_out,
        ),
        ("danmaku_resets", "reset frames sent", &m.resets),
        (
            "danmaku_slow_closes",
            "Connections closed as slow consumers",
            &m.slow_closes,
        ),
        (
            "danmaku_rate_limited",
            "Commands refused as rate limited",
            &m.rate_limited,
        ),
        (
            "danmaku_comments_merged",
            "Viewer comments merged into a comment.merged event instead of sequenced",
            &m.comments_merged,
        ),
        (
            "danmaku_room_busy",
            "Viewer comments refused with room_busy (the room's comment budget)",
            &m.room_busy,
        ),
        (
            "danmaku_targeted_deliveries",
            "Targeted events delivered to a viewer of their audience",
            &m.targeted_delivered,
        ),
        (
            "danmaku_joins",
            "Joins answered joined, resumes included",
            &m.joins,
        ),
    ];
    for (name, help, c) in counters {
        r.register(name, help, c.clone());
    }
}

fn register_labelled(r: &mut Registry, m: &Metrics) {
    let f = &m.families;
    r.register(
        "danmaku_handshakes_refused",
        "Handshakes refused, by the code of the HTTP error answered",
        f.handshakes_refused.clone(),
    );
    r.register(
        "danmaku_closes",
        "Connections the gateway closed, by WebSocket close code",
        f.closes.clone(),
    );
    r.register(
        "danmaku_command_errors",
        "Commands refused with an error reply, by its code (rate_limited is danmaku_rate_limited_total)",
        f.command_errors.clone(),
    );
    r.register(
        "danmaku_resumes",
        "Joins with since, by whether they recovered",
        f.resumes.clone(),
    );
    r.register(
        "danmaku_skipped",
        "Events not delivered to a viewer and told by a skipped marker",
        f.skipped.clone(),
    );
}
