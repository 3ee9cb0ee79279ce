//! Process metrics in Prometheus text format: plain atomics, no registry.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// Upper bounds of the dwell buckets (a viewer's time in a room), in microseconds:
/// 1 s to 4 h.
pub const DWELL_BUCKETS_US: [u64; 14] = [
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

/// A latency histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64; 14],
    counts: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::with_bounds(&BUCKETS_US)
    }
}

impl Histogram {
    /// A histogram with these upper bounds (µs).
    pub fn with_bounds(bounds: &'static [u64; 14]) -> Self {
        Self {
            bounds,
            counts: Default::default(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = self.bounds.iter().position(|&b| us <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
    }
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    /// Joins answered `joined` (resumes included).
    pub joins: AtomicU64,
    /// Joins with `since`, by their answer: recovered, not recovered.
    pub resumes: [AtomicU64; 2],
    /// Upgrade request to a connection's first `joined` queued (the first render).
    pub first_render: Histogram,
    /// A connection's time in a room, join to leave or disconnect (with `--analytics`).
    pub dwell: Histogram,
    /// Open WebSocket connections.
    pub connections: AtomicI64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Handshakes refused, by any cause (auth, limits, origin).
    pub handshakes_refused: AtomicU64,
    /// HTTP API requests refused by their key's quota.
    pub api_rate_limited: AtomicU64,
    /// Events sequenced through this gateway (client comments and API publishes).
    pub events_in: AtomicU64,
    /// Like clicks received (sum of counts).
    pub likes_in: AtomicU64,
    /// Votes received.
    pub votes_in: AtomicU64,
    /// WebSocket frames written.
    pub frames_out: AtomicU64,
    /// Messages written (a frame may carry several).
    pub messages_out: AtomicU64,
    /// `reset` frames sent.
    pub resets: AtomicU64,
    /// Events not delivered to adaptive viewers (told by `skipped`), by priority:
    /// low, normal (high events are never sampled).
    pub skipped_sampled: [AtomicU64; 2],
    /// Targeted events not delivered to viewers outside their audience (told by
    /// `skipped`), by priority: high, normal, low.
    pub skipped_targeted: [AtomicU64; 3],
    /// Targeted events delivered to viewers of their audience.
    pub targeted_delivered: AtomicU64,
    /// Viewer comments merged into a `comment.merged` instead of sequenced.
    pub comments_merged: AtomicU64,
    /// Viewer comments refused with `room_busy` (the room's comment budget).
    pub room_busy: AtomicU64,
    /// Connections closed as slow consumers (4008).
    pub slow_closes: AtomicU64,
    /// Commands refused with `rate_limited`.
    pub rate_limited: AtomicU64,
    /// Commands refused with any other error.
    pub command_errors: AtomicU64,
    /// Time from a `join` command to its `joined` reply queued for the socket: the
    /// store's view of the room and the snapshot (not the network, not the upgrade).
    pub join_latency: Histogram,
    /// Time to sequence one publish.
    pub publish_latency: Histogram,
}

/// Values that live elsewhere (hub, store), read at render time.
pub struct Gauges {
    /// Rooms with local viewers.
    pub rooms: usize,
    /// Frames handed to mailboxes.
    pub deliveries: u64,
    /// Frames dropped at full mailboxes.
    pub queue_drops: u64,
    /// Pub/sub connections found stalled and replaced.
    pub pubsub_stalls: u64,
    /// Rooms moved to a new epoch because the store lost writes.
    pub store_rollovers: u64,
    /// Bytes held for writing to viewers.
    pub outbound: crate::ws::BacklogTotals,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            joins: AtomicU64::new(0),
            resumes: Default::default(),
            first_render: Histogram::default(),
            dwell: Histogram::with_bounds(&DWELL_BUCKETS_US),
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            handshakes_refused: AtomicU64::new(0),
            api_rate_limited: AtomicU64::new(0),
            events_in: AtomicU64::new(0),
            likes_in: AtomicU64::new(0),
            votes_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            skipped_sampled: Default::default(),
            skipped_targeted: Default::default(),
            targeted_delivered: AtomicU64::new(0),
            comments_merged: AtomicU64::new(0),
            room_busy: AtomicU64::new(0),
            slow_closes: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            command_errors: AtomicU64::new(0),
            join_latency: Histogram::default(),
            publish_latency: Histogram::default(),
        }
    }
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, u64); 13] = [
            (
                "danmaku_connections_total",
                "WebSocket connections accepted",
                self.connections_total.load(Ordering::Relaxed),
            ),
            (
                "danmaku_handshakes_refused_total",
                "Handshakes refused",
                self.handshakes_refused.load(Ordering::Relaxed),
            ),
            (
                "danmaku_api_rate_limited_total",
                "HTTP API requests refused by their key's quota",
                self.api_rate_limited.load(Ordering::Relaxed),
            ),
            (
                "danmaku_events_in_total",
                "Events sequenced through this gateway",
                self.events_in.load(Ordering::Relaxed),
            ),
            (
                "danmaku_likes_in_total",
                "Like clicks received",
                self.likes_in.load(Ordering::Relaxed),
            ),
            (
                "danmaku_votes_in_total",
                "Votes received",
                self.votes_in.load(Ordering::Relaxed),
            ),
            (
                "danmaku_deliveries_total",
                "Frames handed to connection queues",
                g.deliveries,
            ),
            (
                "danmaku_queue_drops_total",
                "Frames dropped at full connection queues",
                g.queue_drops,
            ),
            (
                "danmaku_frames_out_total",
                "WebSocket frames written",
                self.frames_out.load(Ordering::Relaxed),
            ),
            (
                "danmaku_messages_out_total",
                "Messages written",
                self.messages_out.load(Ordering::Relaxed),
            ),
            (
                "danmaku_resets_total",
                "reset frames sent",
                self.resets.load(Ordering::Relaxed),
            ),
            (
                "danmaku_slow_closes_total",
                "Connections closed as slow consumers",
                self.slow_closes.load(Ordering::Relaxed),
            ),
            (
                "danmaku_rate_limited_total",
                "Commands refused as rate limited",
                self.rate_limited.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP danmaku_skipped_total Events not delivered to a viewer and told by a skipped marker\n# TYPE danmaku_skipped_total counter"
        );
        for (priority, n) in ["low", "normal"].iter().zip(&self.skipped_sampled) {
            let _ = writeln!(
                out,
                "danmaku_skipped_total{{reason=\"sampled\",priority=\"{priority}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        for (priority, n) in ["high", "normal", "low"].iter().zip(&self.skipped_targeted) {
            let _ = writeln!(
                out,
                "danmaku_skipped_total{{reason=\"targeted\",priority=\"{priority}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP danmaku_comments_merged_total Viewer comments merged into a comment.merged event instead of sequenced\n# TYPE danmaku_comments_merged_total counter\ndanmaku_comments_merged_total {}\n# HELP danmaku_room_busy_total Viewer comments refused with room_busy (the room's comment budget)\n# TYPE danmaku_room_busy_total counter\ndanmaku_room_busy_total {}",
            self.comments_merged.load(Ordering::Relaxed),
            self.room_busy.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP danmaku_targeted_deliveries_total Targeted events delivered to a viewer of their audience\n# TYPE danmaku_targeted_deliveries_total counter\ndanmaku_targeted_deliveries_total {}",
            self.targeted_delivered.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP danmaku_pubsub_stalls_total Pub/sub connections found stalled by the liveness probe and replaced\n# TYPE danmaku_pubsub_stalls_total counter\ndanmaku_pubsub_stalls_total {}",
            g.pubsub_stalls
        );
        let _ = writeln!(
            out,
            "# HELP danmaku_store_rollovers_total Rooms moved to a new epoch because the store went back under their epoch (lost acknowledged writes)\n# TYPE danmaku_store_rollovers_total counter\ndanmaku_store_rollovers_total {}",
            g.store_rollovers
        );
        let errors = self.command_errors.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP danmaku_command_errors_total Commands refused\n# TYPE danmaku_command_errors_total counter\ndanmaku_command_errors_total {errors}"
        );
        let conns = self.connections.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP danmaku_connections Open WebSocket connections\n# TYPE danmaku_connections gauge\ndanmaku_connections {conns}"
        );
        let _ = writeln!(
            out,
            "# HELP danmaku_rooms Rooms with local viewers\n# TYPE danmaku_rooms gauge\ndanmaku_rooms {}",
            g.rooms
        );
        let _ = writeln!(
            out,
            "# HELP danmaku_outbound_bytes Bytes held for writing to viewers: queued, being written, not yet taken by the socket\n# TYPE danmaku_outbound_bytes gauge\ndanmaku_outbound_bytes {}",
            g.outbound.bytes
        );
        let _ = writeln!(
            out,
            "# HELP danmaku_outbound_bytes_max The largest outbound backlog of one connection\n# TYPE danmaku_outbound_bytes_max gauge\ndanmaku_outbound_bytes_max {}",
            g.outbound.max_bytes
        );
        self.join_latency.render(
            &mut out,
            "danmaku_join_seconds",
            "Join command to joined reply queued",
        );
        self.publish_latency.render(
            &mut out,
            "danmaku_publish_seconds",
            "Sequencing one publish",
        );
        let joins = self.joins.load(Ordering::Relaxed);
        let [recovered, lost] = [0, 1].map(|i| self.resumes[i].load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP danmaku_joins_total Joins answered joined, resumes included\n\
             # TYPE danmaku_joins_total counter\n\
             danmaku_joins_total {joins}\n\
             # HELP danmaku_resumes_total Joins with since, by whether they recovered\n\
             # TYPE danmaku_resumes_total counter\n\
             danmaku_resumes_total{{recovered=\"true\"}} {recovered}\n\
             danmaku_resumes_total{{recovered=\"false\"}} {lost}"
        );
        self.first_render.render(
            &mut out,
            "danmaku_first_render_seconds",
            "Upgrade request to the connection's first joined queued",
        );
        self.dwell.render(
            &mut out,
            "danmaku_dwell_seconds",
            "A connection's time in a room, join to leave or disconnect",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.join_latency.observe(Duration::from_micros(80));
        m.join_latency.observe(Duration::from_millis(3));
        let text = m.render(&Gauges {
            rooms: 2,
            deliveries: 5,
            queue_drops: 0,
            pubsub_stalls: 0,
            store_rollovers: 0,
            outbound: crate::ws::BacklogTotals {
                bytes: 7,
                max_bytes: 4,
            },
        });
        assert!(text.contains("danmaku_join_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("danmaku_join_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("danmaku_join_seconds_count 2"));
        assert!(text.contains("danmaku_deliveries_total 5"));
        assert!(text.contains("danmaku_rooms 2"));
        assert!(text.contains("danmaku_outbound_bytes 7\n"));
        assert!(text.contains("danmaku_skipped_total{reason=\"sampled\",priority=\"normal\"} 0\n"));
        assert!(text.contains("danmaku_outbound_bytes_max 4\n"));
    }
}
