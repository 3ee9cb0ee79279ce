//! The summary table for a terminal.

use std::fmt::Write as _;

use super::figures::num;
use super::results::{Quantiles, Results};

/// The scenario's flags, `name value` pairs on one line.
pub fn flags_line(r: &Results) -> String {
    r.parameters
        .flags()
        .iter()
        .map(|(k, v)| format!("--{k} {v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table of `r`, one line per figure.
pub fn render(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run                 danmaku-loadtest {}, started {}",
        r.version, r.started_at
    );
    let _ = writeln!(
        s,
        "scenario            {} {}  ({} s measured, ramp {} s)",
        r.scenario,
        flags_line(r),
        num(r.duration_s),
        num(r.ramp_s)
    );
    let c = &r.connections;
    let _ = writeln!(
        s,
        "connections         {} / {} established, {} failed",
        c.established, c.target, c.failed
    );
    let by_gateway: Vec<(String, &Quantiles)> = r
        .latency_ms_by_gateway
        .iter()
        .enumerate()
        .map(|(g, q)| (format!("  at gateway {}", g + 1), q))
        .collect();
    let rows = [
        ("connect".to_owned(), &r.connect_ms),
        ("first render".to_owned(), &r.first_render_ms),
        ("latency".to_owned(), &r.latency_ms),
    ];
    let reconnect = r.resume.reconnect_ms.as_ref().map(|q| {
        let name = format!(
            "reconnect ({}, {} recovered)",
            r.resume.reconnects, r.resume.recovered
        );
        (name, q)
    });
    for (name, q) in rows.into_iter().chain(by_gateway).chain(reconnect) {
        let _ = writeln!(
            s,
            "{name:<20}p50 {} ms  p99 {} ms  max {} ms",
            num(q.p50),
            num(q.p99),
            num(q.max)
        );
    }
    let e = &r.events;
    let _ = writeln!(
        s,
        "events              published {}  expected {}  delivered {}  skipped {}  lost {}  dup {}  reordered {}  resets {}",
        e.published,
        e.expected,
        e.delivered,
        e.skipped,
        e.lost,
        e.duplicated,
        e.reordered,
        e.resets
    );
    if e.skipped > 0 {
        let by: Vec<String> = r
            .skips_by_priority
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "skipped             sampled {}  targeted {}  (gateways, by reason/priority: {})",
            e.skipped - e.skipped_targeted,
            e.skipped_targeted,
            if by.is_empty() {
                "—".to_owned()
            } else {
                by.join(", ")
            }
        );
    }
    let _ = writeln!(
        s,
        "throughput          {} deliveries/s, {} frames/s, {} events/frame",
        num(r.deliveries_per_s),
        num(r.frames_per_s),
        num(r.events_per_frame)
    );
    if let Some(i) = &r.interact {
        let refused: Vec<String> = i.refused.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            s,
            "interact            commands {}  acks {} (merged {})  refused {}",
            i.commands,
            i.acks,
            i.merged_acks,
            if refused.is_empty() {
                "0".to_owned()
            } else {
                refused.join(", ")
            }
        );
    }
    let _ = writeln!(
        s,
        "load generator      {} CPU-s, {} µs per delivery",
        num(r.loadgen.cpu_s),
        num(r.loadgen.cpu_us_per_delivery)
    );
    for g in &r.gateways {
        let _ = writeln!(
            s,
            "gateway {:<12}RSS {} → {} MiB, {} CPU-s ({} per million deliveries), {} B/connection",
            g.pid,
            g.rss_start_bytes >> 20,
            g.rss_peak_bytes >> 20,
            num(g.cpu_s),
            num(g.cpu_s_per_million_deliveries),
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
