//! Latency histogram (an HDR histogram with 3 significant digits: ≤ 0.1% relative
//! error, exact below 2048 µs) and exact percentiles of small samples.

/// The largest latency tracked exactly: an hour, in microseconds (larger values count as it).
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of microsecond values.
#[derive(Debug, Clone)]
pub(crate) struct Histogram(hdrhistogram::Histogram<u64>);

impl Default for Histogram {
    fn default() -> Self {
        // 1 µs to an hour at three significant digits: fixed, valid bounds.
        #[allow(clippy::expect_used)]
        Self(hdrhistogram::Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds"))
    }
}

impl Histogram {
    /// Count one value (values beyond the histogram's range count as its maximum).
    pub(crate) fn record(&mut self, value: u64) {
        self.0.saturating_record(value);
    }

    /// Values recorded.
    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// The largest value recorded (0 when empty).
    pub(crate) fn max(&self) -> u64 {
        self.0.max()
    }

    /// The mean of the values recorded (0 when empty).
    pub(crate) fn mean(&self) -> f64 {
        self.0.mean()
    }

    /// The value at quantile `q` in `0.0..=1.0` (0 when empty).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.value_at_quantile(q.clamp(0.0, 1.0))
    }

    /// Add another histogram's counts to this one.
    #[cfg(test)]
    pub(crate) fn merge(&mut self, other: &Histogram) {
        let _ = self.0.add(&other.0);
    }
}

/// The exact value at quantile `q` of `values` (nearest rank); 0 when empty.
pub(crate) fn exact_quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).max(1);
    values.get(rank - 1).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.quantile(0.999), 100);
        assert_eq!(h.quantile(1.0), 100);
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!(h.max(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_within_a_tenth_of_a_percent() {
        let mut h = Histogram::default();
        for v in 1..=1_000_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.001, "q{q}: {got} vs {want}");
        }
        assert!((h.max() as f64 - 1e6).abs() / 1e6 < 0.001);
        h.record(u64::MAX);
        assert_eq!(h.count(), 1_000_001, "out-of-range values still count");
        assert!(h.max() >= MAX_MICROS);
    }

    #[test]
    fn tail_and_merge() {
        // 999 fast values and one slow one: p99 is fast, p99.9 is fast, max is slow.
        let mut a = Histogram::default();
        for _ in 0..999 {
            a.record(1000);
        }
        let mut b = Histogram::default();
        b.record(250_000);
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert_eq!(a.quantile(0.99), 1000);
        assert_eq!(a.quantile(0.999), 1000);
        assert!((a.quantile(1.0) as f64 - 250_000.0).abs() < 250.0);
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }

    #[test]
    fn exact_quantiles() {
        let mut v: Vec<u64> = (1..=10).rev().collect();
        assert_eq!(exact_quantile(&mut v, 0.5), 5);
        assert_eq!(exact_quantile(&mut v, 0.99), 10);
        assert_eq!(exact_quantile(&mut v, 0.1), 1);
        assert_eq!(exact_quantile(&mut [], 0.5), 0);
    }
}
