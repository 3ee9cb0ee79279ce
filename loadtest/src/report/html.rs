//! The self-contained HTML page: what was run, the summary table, the charts and
//! the raw results.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::figures::{ms, num};
use super::results::Results;
use super::{svg, table};

/// The page for `r`, with latency over time (`series`, one histogram a second) and
/// the latency and first-render histograms.
pub fn render(
    r: &Results,
    series: &[Histogram<u64>],
    latency: &Histogram<u64>,
    first_render: &Histogram<u64>,
) -> String {
    let over_time: Vec<(f64, f64, f64)> = series
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(i, h)| (i as f64, ms(h, 0.5), ms(h, 0.99)))
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>danmaku load test: {scenario}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f4f4f4;padding:1em}}\
         td,th{{text-align:left;padding:0.1em 1em 0.1em 0}}</style></head><body>\
         <h1>danmaku load test: {scenario}</h1>\
         <p>danmaku-loadtest {version}, started {started} (UTC). Result: <b>{result}</b></p>\
         <h2>Parameters</h2>{parameters}\
         <h2>Summary</h2><pre>{table}</pre>\
         <h2>End-to-end latency over time</h2>{over_time}\
         <h2>Latency histogram</h2>{latency}\
         <h2>Time to first render</h2>{first_render}\
         <h2>Raw results</h2><pre>{raw}</pre></body></html>",
        scenario = escape(&r.scenario),
        version = escape(&r.version),
        started = escape(&r.started_at),
        result = if r.pass { "PASS" } else { "FAIL" },
        parameters = parameters(r),
        table = escape(&table::render(r)),
        over_time = svg::line_chart(&over_time),
        latency = svg::bar_chart(&svg::log_buckets(latency), "events"),
        first_render = svg::bar_chart(&svg::log_buckets(first_render), "viewers"),
        raw = escape(&r.to_json()),
    )
}

/// The run's parameters as a table.
fn parameters(r: &Results) -> String {
    let p = &r.parameters;
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "—".to_owned()
        } else {
            items.join(", ")
        }
    };
    let mut rows = vec![
        ("scenario".to_owned(), r.scenario.clone()),
        ("scenario flags".to_owned(), table::flags_line(r)),
        ("gateways".to_owned(), list(p.urls.clone())),
        (
            "viewer tokens".to_owned(),
            if p.signed_tokens {
                "signed"
            } else {
                "anonymous"
            }
            .to_owned(),
        ),
        (
            "processes × threads".to_owned(),
            format!("{} × {}", p.procs, p.threads),
        ),
        (
            "source addresses".to_owned(),
            list(p.source_addrs.iter().map(ToString::to_string).collect()),
        ),
        ("in flight".to_owned(), p.in_flight.to_string()),
        ("ramp rate (per s, 0: unpaced)".to_owned(), num(p.ramp_rate)),
        ("room prefix".to_owned(), p.room_prefix.clone()),
        (
            "watched gateway pids".to_owned(),
            list(p.gateway_pids.iter().map(ToString::to_string).collect()),
        ),
    ];
    if let Some(max) = p.max_p99_ms {
        rows.push(("max p99 (ms)".into(), num(max)));
    }
    if let Some(min) = p.min_deliveries_per_s {
        rows.push(("min deliveries/s".into(), num(min)));
    }
    let mut out = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(&k),
            escape(&v)
        );
    }
    out.push_str("</table>");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}
