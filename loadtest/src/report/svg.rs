//! The HTML report's charts, as inline SVG: axes with ticks at round values, light
//! grid lines, and every figure printed by [`num`].

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::figures::{num, round};

const W: f64 = 800.0;
const H: f64 = 320.0;
/// Room left of the plot for the y ticks and title.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
/// Room below the plot for the x ticks and title.
const BOTTOM: f64 = 50.0;

/// Mantissas of the histogram's bucket bounds: about evenly spaced on a log scale,
/// and round in ms (0.05, 0.07, 0.1, 0.15, …).
const BOUNDS: [u64; 6] = [10, 15, 20, 30, 50, 70];

/// Counts in buckets up to round bounds (50 µs, 70 µs, 100 µs, 150 µs, …), in ms.
pub fn log_buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut buckets = Vec::new();
    if h.is_empty() {
        return buckets;
    }
    let mut prev = 0u64;
    let mut scale = 1u64;
    // From 50 µs: the fifth mantissa of the first decade.
    let mut i = 4;
    while prev <= h.max() {
        let bound = BOUNDS[i] * scale;
        buckets.push((bound as f64 / 1000.0, h.count_between(prev, bound)));
        prev = bound + 1;
        i += 1;
        if i == BOUNDS.len() {
            i = 0;
            scale *= 10;
        }
    }
    buckets
}

/// Ticks from 0 to at least `max`, a round step apart (1, 2 or 5 × 10ⁿ, and at least
/// `min_step`), about five of them.
pub fn ticks(max: f64, min_step: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
        .max(min_step);
    let decimals = (-step.log10().floor()).max(0.0) as i32;
    let n = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=n).map(|k| round(k as f64 * step, decimals)).collect()
}

/// Maps data values to the plot's pixels.
struct Frame {
    xmax: f64,
    ymax: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.xmax * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - v / self.ymax * (H - TOP - BOTTOM)
    }
}

/// The y axis with its ticks, grid lines and title.
fn y_axis(out: &mut String, f: &Frame, ticks: &[f64], title: &str) {
    for &t in ticks {
        let y = f.y(t);
        let _ = write!(
            out,
            "<line x1='{LEFT}' y1='{y:.1}' x2='{}' y2='{y:.1}' stroke='#ddd'/>\
             <line x1='{}' y1='{y:.1}' x2='{LEFT}' y2='{y:.1}' stroke='black'/>\
             <text x='{}' y='{:.1}' font-size='11' text-anchor='end'>{}</text>",
            W - RIGHT,
            LEFT - 5.0,
            LEFT - 8.0,
            y + 4.0,
            num(t)
        );
    }
    let _ = write!(
        out,
        "<line x1='{LEFT}' y1='{TOP}' x2='{LEFT}' y2='{}' stroke='black'/>\
         <text x='15' y='{}' font-size='12' transform='rotate(-90 15 {})' text-anchor='middle'>{title}</text>",
        H - BOTTOM,
        H / 2.0,
        H / 2.0
    );
}

/// The x axis line and its title; ticks are the caller's.
fn x_axis(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<line x1='{LEFT}' y1='{}' x2='{}' y2='{}' stroke='black'/>\
         <text x='{}' y='{}' font-size='12' text-anchor='middle'>{title}</text>",
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM,
        (LEFT + W - RIGHT) / 2.0,
        H - 10.0
    );
}

/// An x tick at pixel `x`, labelled `label`.
fn x_tick(out: &mut String, x: f64, label: &str) {
    let _ = write!(
        out,
        "<line x1='{x:.1}' y1='{}' x2='{x:.1}' y2='{}' stroke='black'/>\
         <text x='{x:.1}' y='{}' font-size='11' text-anchor='middle'>{label}</text>",
        H - BOTTOM,
        H - BOTTOM + 5.0,
        H - BOTTOM + 18.0
    );
}

fn svg(body: &str) -> String {
    format!("<svg width='{W}' height='{H}' xmlns='http://www.w3.org/2000/svg'>{body}</svg>")
}

/// p50 and p99 (ms) for each second: (second, p50, p99) points.
pub fn line_chart(points: &[(f64, f64, f64)]) -> String {
    if points.is_empty() {
        return "<p>no latency samples</p>".into();
    }
    let xt = ticks(points.iter().map(|p| p.0).fold(1.0, f64::max), 1.0);
    let yt = ticks(points.iter().map(|p| p.2).fold(0.0, f64::max), 0.001);
    let f = Frame {
        xmax: xt.last().copied().unwrap_or(1.0),
        ymax: yt.last().copied().unwrap_or(1.0),
    };
    let mut out = String::new();
    y_axis(&mut out, &f, &yt, "ms");
    x_axis(&mut out, "seconds into the measured phase");
    for &t in &xt {
        x_tick(&mut out, f.x(t), &num(t));
    }
    for (colour, pick) in [("#1f77b4", 1), ("#d62728", 2)] {
        let pts: Vec<String> = points
            .iter()
            .map(|p| {
                let v = if pick == 1 { p.1 } else { p.2 };
                format!("{:.1},{:.1}", f.x(p.0), f.y(v))
            })
            .collect();
        let _ = write!(
            out,
            "<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>",
            pts.join(" ")
        );
    }
    let _ = write!(
        out,
        "<text x='{}' y='18' fill='#1f77b4' font-size='12'>p50</text>\
         <text x='{}' y='18' fill='#d62728' font-size='12'>p99</text>",
        W - RIGHT - 80.0,
        W - RIGHT - 40.0
    );
    svg(&out)
}

/// A histogram: (upper bound in ms, count) buckets; `counted` names what the counts
/// count.
pub fn bar_chart(buckets: &[(f64, u64)], counted: &str) -> String {
    if buckets.is_empty() {
        return "<p>no samples</p>".into();
    }
    let yt = ticks(buckets.iter().map(|b| b.1).max().unwrap_or(1) as f64, 1.0);
    let f = Frame {
        xmax: buckets.len() as f64,
        ymax: yt.last().copied().unwrap_or(1.0),
    };
    let mut out = String::new();
    y_axis(&mut out, &f, &yt, counted);
    x_axis(&mut out, "ms (bucket upper bound)");
    let every = buckets.len().div_ceil(10).max(1);
    for (i, &(bound, n)) in buckets.iter().enumerate() {
        let (x0, x1) = (f.x(i as f64), f.x(i as f64 + 1.0));
        let top = f.y(n as f64);
        let _ = write!(
            out,
            "<rect x='{:.1}' y='{top:.1}' width='{:.1}' height='{:.1}' fill='#2ca02c'>\
             <title>≤ {} ms: {n}</title></rect>",
            x0 + 1.0,
            (x1 - x0 - 2.0).max(1.0),
            H - BOTTOM - top,
            num(bound)
        );
        if i % every == 0 {
            x_tick(&mut out, x1, &num(bound));
        }
    }
    svg(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every `<text>` element.
    fn labels(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>').and_then(|(_, r)| r.split_once('<')))
            .map(|(label, _)| label)
            .collect()
    }

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        assert_eq!(ticks(12.3, 0.0), vec![0.0, 5.0, 10.0, 15.0]);
        assert_eq!(ticks(0.8, 0.0), vec![0.0, 0.2, 0.4, 0.6, 0.8]);
        assert_eq!(ticks(3.0, 1.0), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 1.0]);
        let many = ticks(97_000.0, 1.0);
        assert_eq!(many.last(), Some(&100_000.0));
    }

    #[test]
    fn charts_label_their_axes_with_plain_figures() {
        let points: Vec<(f64, f64, f64)> = (0..20)
            .map(|s| (f64::from(s), 0.1 * f64::from(s), 3.4 + 0.3 * f64::from(s)))
            .collect();
        let line = line_chart(&points);
        let mut h = crate::stats::histogram();
        for us in [60, 90, 1_234, 5_555, 12_000, 250_000] {
            let _ = h.record(us);
        }
        let bars = bar_chart(&log_buckets(&h), "events");
        for chart in [&line, &bars] {
            let figures: Vec<&str> = labels(chart)
                .into_iter()
                .filter(|l| l.parse::<f64>().is_ok())
                .collect();
            assert!(figures.len() >= 6, "ticks on both axes: {figures:?}");
            for f in figures {
                assert_eq!(num(f.parse().expect("a number")), f, "a plain figure");
            }
        }
        assert!(labels(&line).contains(&"seconds into the measured phase"));
        assert!(labels(&bars).contains(&"0.05"), "{:?}", labels(&bars));
    }

    #[test]
    fn buckets_have_round_bounds_and_count_everything() {
        let mut h = crate::stats::histogram();
        for us in [40, 60, 100, 1_000, 1_400] {
            let _ = h.record(us);
        }
        let b = log_buckets(&h);
        let bounds: Vec<f64> = b.iter().map(|x| x.0).take(6).collect();
        assert_eq!(bounds, vec![0.05, 0.07, 0.1, 0.15, 0.2, 0.3]);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 5);
    }
}
