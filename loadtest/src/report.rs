//! The run's results: the JSON document, the summary table, the HTML report, and the
//! pass/fail verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::Scenario;
use crate::plan::Plan;
use crate::publish::PublishStats;
use crate::stats::{WorkerReport, merge_hist};

/// One watched gateway process.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayStats {
    /// Process id.
    pub pid: u32,
    /// RSS when the run started.
    pub rss_start_bytes: u64,
    /// Highest RSS seen.
    pub rss_peak_bytes: u64,
    /// CPU seconds during the measured phase.
    pub cpu_s: f64,
}

/// The results.
pub struct Summary {
    /// The JSON document.
    pub json: Value,
    /// Why the run failed, if it did.
    pub failures: Vec<String>,
    latency: Histogram<u64>,
    first_render: Histogram<u64>,
    series: Vec<Histogram<u64>>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        (h.value_at_quantile(q) as f64 / 1000.0 * 1000.0).round() / 1000.0
    }
}

fn quantiles(h: &Histogram<u64>, qs: &[(&str, f64)]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, q) in qs {
        m.insert((*name).into(), json!(ms(h, *q)));
    }
    m.insert(
        "max".into(),
        json!(if h.is_empty() {
            0.0
        } else {
            h.max() as f64 / 1000.0
        }),
    );
    Value::Object(m)
}

impl Summary {
    /// Computes the results and the verdict.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        plan: &Plan,
        r: WorkerReport,
        publish: Option<PublishStats>,
        finals: BTreeMap<String, u64>,
        likes_total: u64,
        gateways: Vec<GatewayStats>,
        ramp_s: f64,
        measured_s: f64,
    ) -> Self {
        let common = &plan.cli.common;
        let (target, _, _) = plan.scenario().shape();
        let connect = merge_hist(&r.connect_us);
        let first = merge_hist(&r.first_render_us);
        let latency = merge_hist(&r.latency_us);
        let series: Vec<Histogram<u64>> = r.latency_series.iter().map(merge_hist).collect();
        let mut expected = 0u64;
        let (mut distinct, mut duplicated, mut reordered, mut reset_lost) = (0, 0, 0, 0);
        for (room, c) in &r.rooms {
            let last = finals.get(room).copied().unwrap_or(0);
            expected += (c.viewers * last).saturating_sub(c.base_sum);
            distinct += c.distinct;
            duplicated += c.duplicated;
            reordered += c.reordered;
            reset_lost += c.reset_lost;
        }
        let lost = expected.saturating_sub(distinct);
        let failed: u64 = r.failures.values().sum();
        let dps = if measured_s > 0.5 {
            distinct as f64 / measured_s
        } else {
            0.0
        };
        let mut failures = Vec::new();
        if r.established + failed < target as u64 {
            failures.push(format!(
                "only {} of {target} connections reported (a worker failed?)",
                r.established + failed
            ));
        }
        if failed > 0 {
            failures.push(format!("{failed} connections failed: {:?}", r.failures));
        }
        if lost > 0 {
            failures.push(format!("{lost} events lost ({reset_lost} to resets)"));
        }
        if reordered > 0 || duplicated > 0 {
            failures.push(format!("{reordered} reordered, {duplicated} duplicated"));
        }
        if let Some(max) = common.max_p99_ms
            && ms(&latency, 0.99) > max
        {
            failures.push(format!("p99 {} ms > {max} ms", ms(&latency, 0.99)));
        }
        if let Some(min) = common.min_deliveries_per_s
            && dps < min
        {
            failures.push(format!("{dps:.0} deliveries/s < {min}"));
        }
        if let Some(p) = &publish
            && p.published < p.scheduled
        {
            failures.push(format!(
                "published {} of {} events",
                p.published, p.scheduled
            ));
        }
        let mut interact = Value::Null;
        if matches!(plan.scenario(), Scenario::Interact { .. }) {
            let mut polls_ok = true;
            for (room, (_, tallies)) in &r.polls_seen {
                let acked = r.votes_acked.get(room).cloned().unwrap_or_default();
                let want: Vec<u64> = (0..tallies.len() as u32)
                    .map(|o| acked.get(&o).copied().unwrap_or(0))
                    .collect();
                if &want != tallies {
                    polls_ok = false;
                    failures.push(format!(
                        "poll tallies of {room}: seen {tallies:?}, acknowledged {want:?}"
                    ));
                }
            }
            if likes_total != r.likes_acked {
                failures.push(format!(
                    "likes total {likes_total} != acknowledged {}",
                    r.likes_acked
                ));
            }
            interact = json!({"commands": r.commands, "acks": r.acks, "likes_acked": r.likes_acked,
                "likes_total": likes_total, "polls_exact": polls_ok,
                "votes_acked": r.votes_acked.values().flat_map(|m| m.values()).sum::<u64>()});
        }
        let deliveries_cpu = distinct.max(1) as f64;
        let gw: Vec<Value> = gateways
            .iter()
            .map(|g| {
                let per_conn = g.rss_peak_bytes.saturating_sub(g.rss_start_bytes).checked_div(r.established).unwrap_or(0);
                json!({"pid": g.pid, "rss_start_bytes": g.rss_start_bytes, "rss_peak_bytes": g.rss_peak_bytes,
                    "cpu_s": (g.cpu_s * 100.0).round() / 100.0,
                    "cpu_s_per_million_deliveries": if distinct > 0 { g.cpu_s / deliveries_cpu * 1e6 } else { 0.0 },
                    "rss_growth_per_connection_bytes": per_conn})
            })
            .collect();
        let json = json!({
            "scenario": plan.scenario().name(),
            "duration_s": (measured_s * 100.0).round() / 100.0,
            "ramp_s": (ramp_s * 1000.0).round() / 1000.0,
            "connections": {"target": target, "established": r.established, "failed": failed, "failures": r.failures},
            "connect_ms": quantiles(&connect, &[("p50", 0.5), ("p99", 0.99)]),
            "first_render_ms": quantiles(&first, &[("p50", 0.5), ("p99", 0.99)]),
            "latency_ms": quantiles(&latency, &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)]),
            "events": {"published": publish.as_ref().map_or(0, |p| p.published), "expected": expected,
                "delivered": distinct, "lost": lost, "duplicated": duplicated, "reordered": reordered,
                "resets": r.resets, "lost_to_resets": reset_lost},
            "latency_p99_ms_by_second": series.iter().map(|h| ms(h, 0.99)).collect::<Vec<_>>(),
            "deliveries_per_s": dps.round(),
            "frames_per_s": if measured_s > 0.5 { (r.frames as f64 / measured_s).round() } else { 0.0 },
            "events_per_frame": if r.frames > 0 { ((r.delivered as f64 / r.frames as f64) * 100.0).round() / 100.0 } else { 0.0 },
            "publish": publish,
            "errors": r.errors,
            "interact": interact,
            "resume": {"reconnects": r.reconnects, "recovered": r.recovered},
            "loadgen": {"procs": common.procs, "cpu_s": (r.cpu_s * 100.0).round() / 100.0,
                "cpu_us_per_delivery": if r.delivered > 0 { r.cpu_s * 1e6 / r.delivered as f64 } else { 0.0 }},
            "gateways": gw,
            "pass": failures.is_empty(),
            "failures": failures,
        });
        Self {
            json,
            failures,
            latency,
            first_render: first,
            series,
        }
    }

    /// The summary table for a terminal.
    pub fn table(&self) -> String {
        let j = &self.json;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario            {}  ({} s measured, ramp {} s)",
            j["scenario"], j["duration_s"], j["ramp_s"]
        );
        let c = &j["connections"];
        let _ = writeln!(
            s,
            "connections         {} / {} established, {} failed",
            c["established"], c["target"], c["failed"]
        );
        for (name, key) in [
            ("connect", "connect_ms"),
            ("first render", "first_render_ms"),
            ("latency", "latency_ms"),
        ] {
            let q = &j[key];
            let _ = writeln!(
                s,
                "{name:<20}p50 {} ms  p99 {} ms  max {} ms",
                q["p50"], q["p99"], q["max"]
            );
        }
        let e = &j["events"];
        let _ = writeln!(
            s,
            "events              published {}  expected {}  delivered {}  lost {}  dup {}  reordered {}  resets {}",
            e["published"],
            e["expected"],
            e["delivered"],
            e["lost"],
            e["duplicated"],
            e["reordered"],
            e["resets"]
        );
        let _ = writeln!(
            s,
            "throughput          {} deliveries/s, {} frames/s, {} events/frame",
            j["deliveries_per_s"], j["frames_per_s"], j["events_per_frame"]
        );
        let _ = writeln!(
            s,
            "load generator      {} CPU-s, {:.2} µs per delivery",
            j["loadgen"]["cpu_s"],
            j["loadgen"]["cpu_us_per_delivery"].as_f64().unwrap_or(0.0)
        );
        for g in j["gateways"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "gateway {:<12}RSS {} → {} MiB, {} CPU-s ({:.2} per million deliveries), {} B/connection",
                g["pid"],
                g["rss_start_bytes"].as_u64().unwrap_or(0) >> 20,
                g["rss_peak_bytes"].as_u64().unwrap_or(0) >> 20,
                g["cpu_s"],
                g["cpu_s_per_million_deliveries"].as_f64().unwrap_or(0.0),
                g["rss_growth_per_connection_bytes"]
            );
        }
        let _ = writeln!(
            s,
            "result              {}",
            if self.failures.is_empty() {
                "PASS".into()
            } else {
                format!("FAIL: {}", self.failures.join("; "))
            }
        );
        s
    }

    /// A self-contained HTML page with latency over time and the latency histogram.
    pub fn html(&self) -> String {
        let over_time: Vec<(f64, f64, f64)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| (i as f64, ms(h, 0.5), ms(h, 0.99)))
            .collect();
        let table = self.table().replace('&', "&amp;").replace('<', "&lt;");
        format!(
            "<!doctype html><html><head><meta charset=utf-8><title>danmaku load test</title>\
             <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f4f4f4;padding:1em}}</style></head><body>\
             <h1>danmaku load test: {}</h1><pre>{table}</pre><h2>End-to-end latency over time</h2>{}\
             <h2>Latency histogram</h2>{}<h2>Time to first render</h2>{}<h2>Raw results</h2><pre>{}</pre></body></html>",
            self.json["scenario"].as_str().unwrap_or(""),
            line_chart(&over_time),
            bar_chart(&log_buckets(&self.latency)),
            bar_chart(&log_buckets(&self.first_render)),
            serde_json::to_string_pretty(&self.json)
                .unwrap_or_default()
                .replace('<', "&lt;"),
        )
    }
}

/// Counts in buckets whose bounds grow by half each (50 µs, 75 µs, …), in ms.
fn log_buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut buckets = Vec::new();
    if h.is_empty() {
        return buckets;
    }
    let (mut prev, mut bound) = (0u64, 50u64);
    while prev <= h.max() {
        buckets.push((bound as f64 / 1000.0, h.count_between(prev, bound)));
        prev = bound + 1;
        bound = bound * 3 / 2;
    }
    buckets
}

const W: f64 = 800.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

fn line_chart(points: &[(f64, f64, f64)]) -> String {
    if points.is_empty() {
        return "<p>no latency samples</p>".into();
    }
    let xmax = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let ymax = points.iter().map(|p| p.2).fold(0.001, f64::max) * 1.1;
    let xy = |x: f64, y: f64| {
        (
            PAD + x / xmax * (W - 2.0 * PAD),
            H - PAD - y / ymax * (H - 2.0 * PAD),
        )
    };
    let poly = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        points
            .iter()
            .map(|p| {
                let (x, y) = xy(p.0, f(p));
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "<svg width='{W}' height='{H}' xmlns='http://www.w3.org/2000/svg'>{}\
         <polyline fill='none' stroke='#1f77b4' stroke-width='2' points='{}'/>\
         <polyline fill='none' stroke='#d62728' stroke-width='2' points='{}'/>\
         <text x='{}' y='20' fill='#1f77b4'>p50</text><text x='{}' y='20' fill='#d62728'>p99</text>\
         <text x='{}' y='{}'>seconds</text></svg>",
        axes(ymax, "ms"),
        poly(&|p| p.1),
        poly(&|p| p.2),
        W - 120.0,
        W - 80.0,
        W / 2.0,
        H - 10.0
    )
}

fn bar_chart(buckets: &[(f64, u64)]) -> String {
    if buckets.is_empty() {
        return "<p>no latency samples</p>".into();
    }
    let nmax = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
    let bw = (W - 2.0 * PAD) / buckets.len() as f64;
    let mut bars = String::new();
    for (i, (bound, n)) in buckets.iter().enumerate() {
        let h = *n as f64 / nmax * (H - 2.0 * PAD);
        let x = PAD + i as f64 * bw;
        let _ = write!(
            bars,
            "<rect x='{x:.1}' y='{:.1}' width='{:.1}' height='{h:.1}' fill='#2ca02c'><title>≤ {bound:.2} ms: {n}</title></rect>",
            H - PAD - h,
            bw * 0.9
        );
        if i % 4 == 0 {
            let _ = write!(
                bars,
                "<text x='{x:.1}' y='{}' font-size='10'>{bound:.2}</text>",
                H - PAD + 15.0
            );
        }
    }
    format!(
        "<svg width='{W}' height='{H}' xmlns='http://www.w3.org/2000/svg'>{}{bars}<text x='{}' y='{}'>ms (upper bound)</text></svg>",
        axes(nmax, "events"),
        W / 2.0,
        H - 10.0
    )
}

fn axes(ymax: f64, unit: &str) -> String {
    format!(
        "<line x1='{PAD}' y1='{}' x2='{}' y2='{}' stroke='black'/><line x1='{PAD}' y1='{PAD}' x2='{PAD}' y2='{}' stroke='black'/>\
         <text x='5' y='{}' font-size='11'>{ymax:.2} {unit}</text><text x='5' y='{}' font-size='11'>0</text>",
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD,
        PAD,
        H - PAD
    )
}
