//! What the load commands count: failures by kind, and round-trip times.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

/// Counts by kind, such as failures (`"connect"`, `"receive: …"`); printed
/// as a JSON object, in the kinds' order.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Tally(BTreeMap<String, u64>);

impl Tally {
    /// Counts one more of `kind`.
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_default() += 1;
    }

    /// Adds every count of `other` to this one.
    pub fn merge(&mut self, other: Tally) {
        for (kind, count) in other.0 {
            *self.0.entry(kind).or_default() += count;
        }
    }
}

/// Round-trip times in microseconds, in the order they were taken.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    /// Records one round trip (saturating at about 71 minutes).
    pub fn record(&mut self, took: Duration) {
        self.0.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    /// How many round trips were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends every round trip of `other`.
    pub fn merge(&mut self, mut other: Latencies) {
        self.0.append(&mut other.0);
    }

    /// The 50th and 99th percentiles and the maximum, in microseconds
    /// (`None` when nothing was recorded).
    pub fn summary(mut self) -> Option<Percentiles> {
        self.0.sort_unstable();
        let values = &self.0;
        let max = *values.last()?;
        Some(Percentiles {
            p50_us: nearest_rank(values, 50),
            p99_us: nearest_rank(values, 99),
            max_us: max,
        })
    }
}

/// A summary of [`Latencies`].
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// The median round trip, in microseconds.
    pub p50_us: u32,
    /// The 99th percentile, in microseconds.
    pub p99_us: u32,
    /// The longest round trip, in microseconds.
    pub max_us: u32,
}

/// The `percent`th percentile of sorted, non-empty `values` by the
/// nearest-rank method: the smallest value that at least `percent` % of
/// the values do not exceed.
fn nearest_rank(values: &[u32], percent: usize) -> u32 {
    let rank = (values.len() * percent).div_ceil(100).max(1);
    values[rank.min(values.len()) - 1]
}

/// Prints `value` as one line of JSON on stdout, flushed at once so a
/// harness reading the pipe sees it.
pub fn print_json(value: &impl Serialize) -> Result<(), String> {
    let line = serde_json::to_string(value).map_err(|e| format!("cannot encode the results: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot print the results: {e}"))
}

/// Unit tests of the counts and percentiles.
#[cfg(test)]
mod tests {
    use super::*;

    /// 1..=100 µs give a p50 of 50, a p99 of 99 and a maximum of 100.
    #[test]
    fn percentiles_by_nearest_rank() {
        let mut latencies = Latencies::default();
        for us in (1..=100).rev() {
            latencies.record(Duration::from_micros(us));
        }
        let summary = latencies.summary().expect("values were recorded");
        assert_eq!((summary.p50_us, summary.p99_us, summary.max_us), (50, 99, 100));
    }

    /// A single value is every percentile; no value gives no summary.
    #[test]
    fn one_value_is_every_percentile() {
        let mut latencies = Latencies::default();
        latencies.record(Duration::from_micros(7));
        let summary = latencies.summary().expect("a value was recorded");
        assert_eq!((summary.p50_us, summary.p99_us, summary.max_us), (7, 7, 7));
        assert!(Latencies::default().summary().is_none());
    }

    /// Merged tallies add up kind by kind and print as a JSON object.
    #[test]
    fn tallies_merge() {
        let mut a = Tally::default();
        a.add("connect");
        let mut b = Tally::default();
        b.add("connect");
        b.add("receive");
        a.merge(b);
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"connect":2,"receive":1}"#);
    }
}
