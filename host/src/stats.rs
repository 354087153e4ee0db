//! Latency histograms that cost a few relaxed atomic adds to record, so the hot path can afford
//! them: `INFO latencystats` and the metrics endpoint read them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram's buckets, in microseconds (the last one catches the rest):
/// from a pipelined read served locally (tens of µs) to a write waiting out an election (s).
pub const BUCKET_BOUNDS_MICROS: [u64; 18] = [
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    u64::MAX,
];

/// Counts by bucket, plus their total count and sum: what both histograms below keep, for their
/// own bucket bounds.
#[derive(Debug)]
struct Buckets<const N: usize> {
    counts: [AtomicU64; N],
    sum: AtomicU64,
}

impl<const N: usize> Default for Buckets<N> {
    fn default() -> Self {
        Buckets { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum: AtomicU64::new(0) }
    }
}

impl<const N: usize> Buckets<N> {
    /// Counts `value` in the first bucket whose bound holds it (the last catches the rest).
    fn observe(&self, bounds: &[u64; N], value: u64) {
        let bucket = bounds.iter().position(|&bound| value <= bound).unwrap_or(N - 1);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// `(upper bound divided by `scale`, count in that bucket)`; the last bound is `f64::MAX`,
    /// which `prometheus-client`'s encoder writes as `+Inf`.
    fn upper_bounds(&self, bounds: &[u64; N], scale: f64) -> Vec<(f64, u64)> {
        bounds
            .iter()
            .zip(&self.counts)
            .map(|(&bound, count)| {
                let upper = if bound == u64::MAX { f64::MAX } else { bound as f64 / scale };
                (upper, count.load(Ordering::Relaxed))
            })
            .collect()
    }
}

/// Durations by bucket, plus their count and sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: Buckets<{ BUCKET_BOUNDS_MICROS.len() }>,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets.observe(&BUCKET_BOUNDS_MICROS, micros);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.buckets.count()
    }

    /// Their sum, in microseconds.
    pub fn sum_micros(&self) -> u64 {
        self.buckets.sum()
    }

    /// `(upper bound in seconds, count in that bucket)`, the last bound `f64::MAX`, which
    /// `prometheus-client`'s encoder writes as `+Inf` (it accumulates the counts).
    pub fn buckets_seconds(&self) -> Vec<(f64, u64)> {
        self.buckets.upper_bounds(&BUCKET_BOUNDS_MICROS, 1e6)
    }

    /// The `q` quantile (0..=1) in microseconds, as the upper bound of the bucket it falls in
    /// (what a bucketed histogram can tell; the last bucket reports its lower bound).
    pub fn quantile_micros(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.counts.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return if BUCKET_BOUNDS_MICROS[i] == u64::MAX {
                    BUCKET_BOUNDS_MICROS[i - 1]
                } else {
                    BUCKET_BOUNDS_MICROS[i]
                };
            }
        }
        BUCKET_BOUNDS_MICROS[BUCKET_BOUNDS_MICROS.len() - 2]
    }
}

/// Upper bounds of [`SizeHistogram`]'s buckets (the last one catches the rest): powers of four,
/// from one write per entry (`-c 1`) to the batcher's cap (4096 by default).
pub const SIZE_BUCKET_BOUNDS: [u64; 8] = [1, 4, 16, 64, 256, 1024, 4096, u64::MAX];

/// Sizes (counts of things, such as the writes in one log entry) by bucket, plus their count and
/// sum: a relaxed add or two to record.
#[derive(Debug, Default)]
pub struct SizeHistogram {
    buckets: Buckets<{ SIZE_BUCKET_BOUNDS.len() }>,
}

impl SizeHistogram {
    /// Records one size.
    pub fn observe(&self, size: u64) {
        self.buckets.observe(&SIZE_BUCKET_BOUNDS, size);
    }

    /// Sizes recorded.
    pub fn count(&self) -> u64 {
        self.buckets.count()
    }

    /// Their sum.
    pub fn sum(&self) -> u64 {
        self.buckets.sum()
    }

    /// `(upper bound, count in that bucket)`, the last bound `f64::MAX` (`+Inf` when encoded).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.buckets.upper_bounds(&SIZE_BUCKET_BOUNDS, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_land_in_their_bucket() {
        let h = SizeHistogram::default();
        for size in [1, 2, 4, 5, 4096, 10_000] {
            h.observe(size);
        }
        assert_eq!((h.count(), h.sum()), (6, 14_108));
        let counts: Vec<u64> = h.buckets().iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, vec![1, 2, 1, 0, 0, 0, 1, 1]);
        assert_eq!(h.buckets().last().map(|(bound, _)| *bound), Some(f64::MAX));
    }

    #[test]
    fn durations_land_in_their_bucket_and_quantiles_read_back() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.observe(Duration::from_micros(80));
        }
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_micros(0.5), 100);
        assert_eq!(h.quantile_micros(0.99), 5_000);
        assert_eq!(h.quantile_micros(1.0), 10_000_000);
        let buckets = h.buckets_seconds();
        assert_eq!(buckets[1], (0.0001, 98));
        assert!(buckets.last().is_some_and(|(b, n)| *b == f64::MAX && *n == 1));
        assert_eq!(h.sum_micros(), 98 * 80 + 3_000 + 60_000_000);
    }
}
