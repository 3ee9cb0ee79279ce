//! How figures are computed from histograms and rounded.

use hdrhistogram::Histogram;

/// The `q` quantile of `h` (µs) in ms, to the µs.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        round(h.value_at_quantile(q) as f64 / 1000.0, 3)
    }
}

/// `x` rounded to `decimals` places.
pub fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}
