//! How figures are computed from histograms, rounded, and printed.

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

/// `x` for a reader: at most three decimals, and none that are zeros (`12`, not
/// `12.000`; `3.4`, not `3.4000001`).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_have_no_spurious_decimals() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(3.400_000_1), "3.4");
        assert_eq!(num(0.1 + 0.2), "0.3");
        assert_eq!(num(1_500.0), "1500");
        assert_eq!(num(0.0504), "0.05");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(num(2.25), "2.25");
        assert_eq!(round(3.456_78, 2), 3.46);
    }
}
