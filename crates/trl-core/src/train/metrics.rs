//! Metric aggregation between log lines, as TRL does it: each micro-batch appends a value per
//! metric, and a log line reports the mean of what accumulated since the previous line.

use std::collections::BTreeMap;

/// Values a method reports for one micro-batch.
#[derive(Debug, Clone, Default)]
pub struct StepMetrics {
    /// name -> value, averaged over micro-batches at log time.
    pub values: Vec<(String, f64)>,
    /// Tokens of this micro-batch counted into the cumulative `num_tokens`.
    pub num_tokens: f64,
}

impl StepMetrics {
    /// Adds a metric value.
    pub fn push(&mut self, name: &str, value: f64) {
        self.values.push((name.to_string(), value));
    }
}

/// Accumulates metric values until the next log line.
#[derive(Debug, Default)]
pub struct MetricWindow {
    sums: BTreeMap<String, (f64, usize)>,
}

impl MetricWindow {
    /// Records one micro-batch.
    pub fn record(&mut self, metrics: &StepMetrics) {
        for (name, value) in &metrics.values {
            let entry = self.sums.entry(name.clone()).or_insert((0.0, 0));
            entry.0 += value;
            entry.1 += 1;
        }
    }

    /// Means since the last drain, and resets.
    pub fn drain(&mut self) -> BTreeMap<String, f64> {
        std::mem::take(&mut self.sums)
            .into_iter()
            .map(|(name, (sum, count))| (name, sum / count.max(1) as f64))
            .collect()
    }
}
