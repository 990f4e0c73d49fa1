//! Latency histogram (an HDR histogram with 3 significant digits: ≤ 0.1% relative
//! error, exact below 2048 µs) and exact percentiles of small samples.

/// The largest latency tracked exactly: an hour, in microseconds (larger values count as it).
const MAX_MICROS: u64 = 3_600_000_000;

/// The quantiles a [`Histogram::cdf`] always has a point at.
const CDF_QUANTILES: [f64; 20] = [
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995,
    0.9999, 1.0,
];

/// Points per decade of value in a [`Histogram::cdf`]'s log-spaced set.
const CDF_PER_DECADE: i32 = 10;

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

    /// A compact CDF: `(value, fraction of values <= value)` points, ascending in both, at the
    /// quantiles in [`CDF_QUANTILES`] and at log-spaced values (10 per decade) between the
    /// smallest and the largest value. Values are the histogram's bucket edges, so every point
    /// lies on the histogram's step function. Empty when nothing was recorded.
    pub(crate) fn cdf(&self) -> Vec<(u64, f64)> {
        let h = &self.0;
        if h.is_empty() {
            return Vec::new();
        }
        let mut points: Vec<(u64, f64)> = CDF_QUANTILES
            .iter()
            .map(|&q| (h.value_at_quantile(q), q))
            .collect();
        let (min, max) = (h.min().max(1), h.max());
        let decade = |v: u64| (v as f64).log10() * f64::from(CDF_PER_DECADE);
        for k in decade(min).floor() as i32..=decade(max).ceil() as i32 {
            let v = 10f64.powf(f64::from(k) / f64::from(CDF_PER_DECADE)).round() as u64;
            if v < min || v >= max {
                continue;
            }
            // The whole bucket `v` falls in counts as at most `v`: take its upper edge.
            points.push((h.highest_equivalent(v), h.quantile_below(v)));
        }
        points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        points.dedup();
        points
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
    fn cdf_is_small_ascending_and_on_the_histogram() {
        assert!(Histogram::default().cdf().is_empty());
        // 1 ms .. 1 s, skewed: most values small, a long tail.
        let mut h = Histogram::default();
        for i in 1..=100_000u64 {
            h.record(1000 + i * i / 10_000);
        }
        let cdf = h.cdf();
        assert!(cdf.len() <= CDF_QUANTILES.len() + 40, "{} points", cdf.len());
        for pair in cdf.windows(2) {
            assert!(
                pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1,
                "not ascending: {pair:?}"
            );
        }
        let first = cdf.first().copied().unwrap_or_default();
        let last = cdf.last().copied().unwrap_or_default();
        assert_eq!(first.1, 0.0);
        assert!(first.0 <= 1001);
        assert_eq!(last, (h.max(), 1.0));
        // Every fixed quantile is there with the histogram's value.
        for q in CDF_QUANTILES {
            assert!(cdf.contains(&(h.quantile(q), q)), "q{q}");
        }
        // The log-spaced points: 100 ms is between p30 and p32 (i*i/10^4 <= 99_000 for i <= 31_464).
        let (_, at_100ms) = cdf
            .iter()
            .copied()
            .find(|&(v, _)| (v as f64 - 100_000.0).abs() < 100.0)
            .unwrap_or_default();
        assert!((at_100ms - 0.3146).abs() < 0.002, "{at_100ms}");
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
