//! A lock-free Prometheus histogram of durations: one atomic per bucket plus the sum, so
//! observing is two atomic adds on the hot path (no float arithmetic there); the
//! cumulative counts are summed when rendered.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds of one histogram: in seconds (the `le` labels) and the same in
/// nanoseconds (what observing compares with). The `+Inf` bucket is implicit.
#[derive(Debug)]
pub struct Buckets<const N: usize> {
    /// Upper bounds in seconds, ascending.
    pub seconds: [f64; N],
    /// The same bounds in nanoseconds.
    pub nanos: [u64; N],
}

/// Per-bucket counts (not cumulative; the last one is `+Inf` only) and the sum of every
/// observation in nanoseconds.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static Buckets<N>,
    /// `N` + 1 counters (the last: above every bound). A `Vec` because `[_; N + 1]` needs
    /// unstable const generics; allocated once.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static Buckets<N>) -> Histogram<N> {
        Histogram {
            bounds,
            counts: (0..=N).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation of `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = self
            .bounds
            .nanos
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(N);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Appends the `_bucket`, `_sum` and `_count` series of `name` to `out`; `labels` (e.g.
    /// `route="/api",`, with its trailing comma, or empty) go before `le`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0u64;
        for (i, le) in self.bounds.seconds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.counts[N].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let bare = labels.trim_end_matches(',');
        let braces = if bare.is_empty() {
            String::new()
        } else {
            format!("{{{bare}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static TWO: Buckets<2> = Buckets {
        seconds: [0.001, 1.0],
        nanos: [1_000_000, 1_000_000_000],
    };

    #[test]
    fn buckets_are_cumulative_and_labelled() {
        let h = Histogram::new(&TWO);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(5));
        assert_eq!(h.count(), 4);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "route=\"/a\",");
        assert_eq!(
            out,
            "x_seconds_bucket{route=\"/a\",le=\"0.001\"} 2\n\
             x_seconds_bucket{route=\"/a\",le=\"1\"} 3\n\
             x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n\
             x_seconds_sum{route=\"/a\"} 5.0215\n\
             x_seconds_count{route=\"/a\"} 4\n"
        );
        let mut bare = String::new();
        Histogram::new(&TWO).render(&mut bare, "y", "");
        assert!(
            bare.contains("y_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n"),
            "{bare}"
        );
    }
}
