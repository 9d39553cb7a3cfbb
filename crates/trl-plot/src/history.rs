//! A run's `log_history` as plottable series: one `(step, value)` list per metric name, read
//! from `trainer_state.json` as the HF Trainer (and trl-rs) writes it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::PlotError;

/// The file a training run leaves in its output folder (and in each `checkpoint-N/`).
pub const STATE_FILE: &str = "trainer_state.json";

/// The logged steps of one run, in the order they were logged. The final summary entry
/// (`train_runtime`, `train_loss`, ...) and entries without a `step` are left out: they are
/// not points on a curve.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    entries: Vec<Map<String, Value>>,
}

/// One curve: a metric's name and its `(step, value)` points, steps ascending as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Keys of a log entry that are coordinates or bookkeeping, never a curve of their own.
const NOT_METRICS: &[&str] = &["step", "epoch"];

impl History {
    /// Reads `OUTPUT_DIR/trainer_state.json`; an absent file, bad JSON or a history with no
    /// logged step is an error that says what to do.
    pub fn read(output_dir: &Path) -> Result<Self, PlotError> {
        let path = output_dir.join(STATE_FILE);
        if !path.is_file() {
            return Err(PlotError::NoTrainerState {
                dir: output_dir.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| PlotError::Io {
            path: path.clone(),
            source,
        })?;
        let state: Value = serde_json::from_str(&text).map_err(|source| PlotError::Json {
            path: path.clone(),
            source,
        })?;
        Self::from_state(&state, path)
    }

    /// The history inside a parsed `trainer_state.json` (`path` names it in errors).
    pub fn from_state(state: &Value, path: PathBuf) -> Result<Self, PlotError> {
        let Some(log_history) = state.get("log_history").and_then(Value::as_array) else {
            return Err(PlotError::NoLogHistory { path });
        };
        let entries: Vec<Map<String, Value>> = log_history
            .iter()
            .filter_map(Value::as_object)
            .filter(|entry| is_logged_step(entry))
            .cloned()
            .collect();
        let history = Self { entries };
        if history.metric_names().is_empty() {
            return Err(PlotError::EmptyHistory { path });
        }
        Ok(history)
    }

    /// Every metric some logged step has a number for, in the order they first appear.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for entry in &self.entries {
            for (name, value) in entry {
                if !NOT_METRICS.contains(&name.as_str())
                    && finite(value).is_some()
                    && !names.contains(name)
                {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// Whether some logged step has a number for `name`.
    pub fn has(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.get(name).and_then(finite).is_some())
    }

    /// The curve of `name`: one point per logged step that has a finite value for it (NaN
    /// is written as `null` in JSON and skipped).
    pub fn series(&self, name: &str) -> Series {
        let points = self
            .entries
            .iter()
            .filter_map(|entry| {
                let step = entry.get("step").and_then(finite)?;
                let value = entry.get(name).and_then(finite)?;
                Some((step, value))
            })
            .collect();
        Series {
            name: name.to_string(),
            points,
        }
    }
}

/// A point on the curves: it has a step and is not the run's final summary.
fn is_logged_step(entry: &Map<String, Value>) -> bool {
    entry.get("step").and_then(finite).is_some() && !entry.contains_key("train_runtime")
}

fn finite(value: &Value) -> Option<f64> {
    value.as_f64().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn history(log: Value) -> Result<History, PlotError> {
        History::from_state(&json!({ "log_history": log }), PathBuf::from("t.json"))
    }

    #[test]
    fn summary_entry_and_missing_values_are_not_points() {
        let h = history(json!([
            {"loss": 2.0, "grad_norm": 1.5, "epoch": 0.5, "step": 1},
            {"loss": null, "epoch": 1.0, "step": 2},
            {"loss": 1.0, "eval_loss": 1.2, "step": 3},
            {"train_runtime": 1.0, "train_loss": 1.5, "step": 3}
        ]))
        .unwrap();
        assert_eq!(h.metric_names(), ["loss", "grad_norm", "eval_loss"]);
        assert_eq!(h.series("loss").points, [(1.0, 2.0), (3.0, 1.0)]);
        assert_eq!(h.series("grad_norm").points, [(1.0, 1.5)]);
        assert!(!h.has("train_loss"));
    }

    #[test]
    fn a_history_with_only_the_summary_is_empty() {
        let err = history(json!([{"train_runtime": 1.0, "train_loss": 1.5, "step": 3}]));
        assert!(
            matches!(err, Err(PlotError::EmptyHistory { .. })),
            "{err:?}"
        );
        let err = History::from_state(&json!({"global_step": 3}), PathBuf::from("t.json"));
        assert!(
            matches!(err, Err(PlotError::NoLogHistory { .. })),
            "{err:?}"
        );
    }
}
