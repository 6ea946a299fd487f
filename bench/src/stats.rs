//! Percentiles and medians of benchmark samples.

use std::time::Duration;

/// The `q`-quantile (`0.0..=1.0`) of `sorted` by the nearest-rank method, so
/// the result is always an observed sample. `None` when `sorted` is empty.
///
/// `sorted` must be in ascending order; the result is meaningless otherwise.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// The median of `values` (the mean of the two middle ones for an even
/// count). `None` when `values` is empty; NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The latency distribution of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Samples summarised.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Slowest sample.
    pub max: Duration,
}

impl Latency {
    /// Summarise `samples` (any order). `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        samples.sort_unstable();
        Some(Latency {
            count: samples.len(),
            p50: quantile(&samples, 0.50)?,
            p99: quantile(&samples, 0.99)?,
            max: *samples.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let s = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(quantile(&s, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&s, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&s, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&s, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn p99_of_few_samples_is_the_max() {
        let l = Latency::of(ms(&[3, 1, 2])).expect("samples");
        assert_eq!(l.p50, Duration::from_millis(2));
        assert_eq!(l.p99, Duration::from_millis(3));
        assert_eq!(l.max, Duration::from_millis(3));
        assert_eq!(l.count, 3);
        assert_eq!(Latency::of(Vec::new()), None);
    }

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
