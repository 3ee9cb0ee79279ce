//! The self-contained HTML page: the summary table, the charts and the raw results.

use hdrhistogram::Histogram;

use super::figures::ms;
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
    let table = escape(&table::render(r));
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>danmaku load test</title>\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f4f4f4;padding:1em}}</style></head><body>\
         <h1>danmaku load test: {}</h1><pre>{table}</pre><h2>End-to-end latency over time</h2>{}\
         <h2>Latency histogram</h2>{}<h2>Time to first render</h2>{}<h2>Raw results</h2><pre>{}</pre></body></html>",
        escape(&r.scenario),
        svg::line_chart(&over_time),
        svg::bar_chart(&svg::log_buckets(latency)),
        svg::bar_chart(&svg::log_buckets(first_render)),
        escape(&r.to_json()),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}
