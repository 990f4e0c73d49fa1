//! Latency histogram (log-linear buckets, ≤ 1.6% relative error, exact below
//! 128 µs) and exact percentiles of small samples.

/// Values below this are counted exactly.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// Enough buckets for any u64.
const BUCKETS: usize = (LINEAR + (64 - 7) * SUB) as usize;

/// A fixed-size histogram of microsecond values.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exp = 63 - u64::from(value.leading_zeros()); // ≥ 7
    let shift = exp - 6;
    let mantissa = (value >> shift) - SUB; // 0..64
    (LINEAR + (exp - 7) * SUB + mantissa) as usize
}

/// The middle of a bucket's value range.
fn value_of(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR {
        return bucket;
    }
    let exp = (bucket - LINEAR) / SUB + 7;
    let mantissa = (bucket - LINEAR) % SUB;
    let shift = exp - 6;
    let low = (SUB + mantissa) << shift;
    low + ((1u64 << shift) - 1) / 2
}

impl Histogram {
    /// Count one value.
    pub(crate) fn record(&mut self, value: u64) {
        if let Some(c) = self.counts.get_mut(bucket_of(value)) {
            *c += 1;
        }
        self.count += 1;
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    /// How many values were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded (exact).
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The mean, 0 when empty.
    pub(crate) fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1): the smallest bucket holding the
    /// ⌈q·n⌉-th value, never above the exact maximum. 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return value_of(bucket).min(self.max);
            }
        }
        self.max
    }

    /// Add another histogram's counts to this one.
    #[cfg(test)]
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
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
    fn large_values_within_two_percent() {
        let mut h = Histogram::default();
        for v in 1..=1_000_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(h.quantile(1.0), 1_000_000);
    }

    #[test]
    fn buckets_are_monotonic_and_cover_u64() {
        let mut last = 0;
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) + (1u64 << shift) / 3] {
                let b = bucket_of(v);
                assert!(b < BUCKETS);
                assert!(b >= last);
                last = b;
                let mid = value_of(b) as f64;
                assert!((mid - v as f64).abs() / (v as f64) < 0.016, "{v}");
            }
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
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
        assert!((a.quantile(0.99) as f64 - 1000.0).abs() < 16.0);
        assert!((a.quantile(0.999) as f64 - 1000.0).abs() < 16.0);
        assert_eq!(a.quantile(1.0), 250_000);
        assert_eq!(a.max(), 250_000);
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
