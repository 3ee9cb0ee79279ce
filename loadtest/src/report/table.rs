//! The summary table for a terminal.

use std::fmt::Write as _;

use super::results::Results;

/// The table of `r`, one line per figure.
pub fn render(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario            {}  ({} s measured, ramp {} s)",
        r.scenario, r.duration_s, r.ramp_s
    );
    let c = &r.connections;
    let _ = writeln!(
        s,
        "connections         {} / {} established, {} failed",
        c.established, c.target, c.failed
    );
    for (name, q) in [
        ("connect", &r.connect_ms),
        ("first render", &r.first_render_ms),
        ("latency", &r.latency_ms),
    ] {
        let _ = writeln!(
            s,
            "{name:<20}p50 {} ms  p99 {} ms  max {} ms",
            q.p50, q.p99, q.max
        );
    }
    let e = &r.events;
    let _ = writeln!(
        s,
        "events              published {}  expected {}  delivered {}  lost {}  dup {}  reordered {}  resets {}",
        e.published, e.expected, e.delivered, e.lost, e.duplicated, e.reordered, e.resets
    );
    let _ = writeln!(
        s,
        "throughput          {} deliveries/s, {} frames/s, {} events/frame",
        r.deliveries_per_s, r.frames_per_s, r.events_per_frame
    );
    let _ = writeln!(
        s,
        "load generator      {} CPU-s, {:.2} µs per delivery",
        r.loadgen.cpu_s, r.loadgen.cpu_us_per_delivery
    );
    for g in &r.gateways {
        let _ = writeln!(
            s,
            "gateway {:<12}RSS {} → {} MiB, {} CPU-s ({:.2} per million deliveries), {} B/connection",
            g.pid,
            g.rss_start_bytes >> 20,
            g.rss_peak_bytes >> 20,
            g.cpu_s,
            g.cpu_s_per_million_deliveries,
            g.rss_growth_per_connection_bytes
        );
    }
    let _ = writeln!(
        s,
        "result              {}",
        if r.pass {
            "PASS".into()
        } else {
            format!("FAIL: {}", r.failures.join("; "))
        }
    );
    s
}
