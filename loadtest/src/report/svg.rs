//! The HTML report's charts, as inline SVG.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Counts in buckets whose bounds grow by half each (50 µs, 75 µs, …), in ms.
pub fn log_buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
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

pub fn line_chart(points: &[(f64, f64, f64)]) -> String {
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

pub fn bar_chart(buckets: &[(f64, u64)]) -> String {
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
