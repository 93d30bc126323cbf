//! Latency recording: an HDR histogram in nanoseconds, summarised as percentiles in microseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency recorded exactly; anything slower is clamped to it. A minute is far beyond
/// any run's duration, so clamping only ever hides a stuck measurement, never a real one.
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// Three significant digits: 0.1% resolution at every magnitude, a few hundred KiB per histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies of one kind of operation.
#[derive(Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty recorder.
    pub fn new() -> Self {
        #[allow(clippy::unwrap_used)] // The bounds are constants that hdrhistogram accepts.
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGNIFICANT_DIGITS).unwrap();
        Self { histogram }
    }

    /// Records one observation.
    pub fn record(&mut self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(ns.clamp(1, MAX_TRACKED_NS));
    }

    /// Adds another recorder's observations to this one.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// The percentiles reported by every scenario.
    pub fn summary(&self) -> Summary {
        let us = |ns: u64| ns as f64 / 1_000.0;
        if self.histogram.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.histogram.len(),
            p50_us: us(self.histogram.value_at_quantile(0.50)),
            p99_us: us(self.histogram.value_at_quantile(0.99)),
            p999_us: us(self.histogram.value_at_quantile(0.999)),
            max_us: us(self.histogram.max()),
        }
    }
}

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of observations.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest observation.
    pub max_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.002
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut latency = Latency::new();
        for us in 1..=1000u64 {
            latency.record(Duration::from_micros(us));
        }
        let summary = latency.summary();
        assert_eq!(summary.count, 1000);
        assert!(within(summary.p50_us, 500.0), "{summary:?}");
        assert!(within(summary.p99_us, 990.0), "{summary:?}");
        assert!(within(summary.p999_us, 999.0), "{summary:?}");
        assert!(within(summary.max_us, 1000.0), "{summary:?}");
    }

    #[test]
    fn merging_adds_observations() {
        let mut fast = Latency::new();
        let mut slow = Latency::new();
        for _ in 0..99 {
            fast.record(Duration::from_micros(10));
        }
        slow.record(Duration::from_millis(50));
        fast.merge(&slow);
        let summary = fast.summary();
        assert_eq!(summary.count, 100);
        assert!(within(summary.p50_us, 10.0), "{summary:?}");
        assert!(within(summary.max_us, 50_000.0), "{summary:?}");
    }

    #[test]
    fn empty_and_out_of_range_observations_do_not_panic() {
        assert_eq!(Latency::new().summary(), Summary::default());
        let mut latency = Latency::new();
        latency.record(Duration::ZERO);
        latency.record(Duration::from_secs(3600));
        assert_eq!(latency.summary().count, 2);
        assert!(within(
            latency.summary().max_us,
            MAX_TRACKED_NS as f64 / 1_000.0
        ));
    }
}
