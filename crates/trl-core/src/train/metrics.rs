//! Metric aggregation between log lines, as TRL does it: each micro-batch appends a value per
//! metric, and a log line reports the mean of what accumulated since the previous line.

use std::collections::BTreeMap;

use super::collective::Collective;

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
    /// Records one micro-batch. A NaN value (e.g. a min over no tokens) is left out of the
    /// mean, as TRL's `log` drops NaN before averaging.
    pub fn record(&mut self, metrics: &StepMetrics) {
        for (name, value) in &metrics.values {
            let entry = self.sums.entry(name.clone()).or_insert((0.0, 0));
            if !value.is_nan() {
                entry.0 += value;
                entry.1 += 1;
            }
        }
    }

    /// Sums every metric's (sum, count) over the ranks, so that [`MetricWindow::drain`] gives
    /// the mean over every rank's micro-batches (TRL gathers its metrics before logging).
    /// Every rank records the same metric names, so the windows line up name by name.
    pub fn all_reduce(&mut self, world: &dyn Collective) {
        if world.size() == 1 {
            return;
        }
        let mut buffer: Vec<f64> = self
            .sums
            .values()
            .flat_map(|&(sum, count)| [sum, count as f64])
            .collect();
        world.all_reduce_sum_f64(&mut buffer);
        for (entry, pair) in self.sums.values_mut().zip(buffer.chunks(2)) {
            *entry = (pair[0], pair[1].round() as usize);
        }
    }

    /// Means since the last drain, and resets; a metric whose every value was NaN is NaN
    /// (logged as `null`, as TRL does).
    pub fn drain(&mut self) -> BTreeMap<String, f64> {
        std::mem::take(&mut self.sums)
            .into_iter()
            .map(|(name, (sum, count))| {
                let mean = if count == 0 {
                    f64::NAN
                } else {
                    sum / count as f64
                };
                (name, mean)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_values_are_left_out_of_the_mean() {
        let mut window = MetricWindow::default();
        for value in [1.0, f64::NAN, 3.0] {
            let mut m = StepMetrics::default();
            m.push("clip_ratio/low_min", value);
            m.push("all_nan", f64::NAN);
            window.record(&m);
        }
        let means = window.drain();
        assert_eq!(means["clip_ratio/low_min"], 2.0);
        assert!(means["all_nan"].is_nan());
        assert!(window.drain().is_empty());
    }
}
