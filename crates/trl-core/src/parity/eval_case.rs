//! The cases of `reference/eval_reference.py` (`fixtures/expected/eval/<method>.json`): TRL
//! trained each method with an eval set and logged every evaluation. What every method's
//! eval test does with one lives here: split its config into our two configs, and compare a
//! run's `log_history` with TRL's under the cases' shared tolerances.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::compare::assert_log_history_matches;
use super::eval_history::assert_eval_history_matches;
use super::load_case;
use crate::train::state::LogEntry;
use crate::train::{TrainingArguments, take_known_keys};

/// Relative tolerance of `loss`/`eval_loss` in the eval cases.
const LOSS_RTOL: f64 = 2e-3;
/// Relative tolerance of every other metric in the eval cases.
const METRIC_RTOL: f64 = 1e-2;

/// Case `method` as the whole JSON, its training arguments and the method's config `C`
/// (`output_dir` set to `output_dir`). Panics on a config key neither takes, so an option TRL
/// set cannot be dropped unnoticed.
pub fn load_eval_case<C: Serialize + DeserializeOwned + Default>(
    method: &str,
    output_dir: &Path,
) -> (Value, TrainingArguments, C) {
    let path = format!("fixtures/expected/eval/{method}.json");
    let (case, mut map) = load_case(&path, "config", output_dir);
    let args: TrainingArguments = take_known_keys(&mut map, "training")
        .unwrap_or_else(|e| panic!("{path}: training arguments: {e}"));
    let config: C =
        take_known_keys(&mut map, method).unwrap_or_else(|e| panic!("{path}: {method}: {e}"));
    assert!(map.is_empty(), "{path}: unhandled keys {map:?}");
    (case, args, config)
}

/// Checks a run with evaluation against the case's `log_history` (`want`): every evaluation
/// (token counts exactly), and every training entry's loss and `train_keys`.
pub fn assert_eval_run_matches(name: &str, got: &[LogEntry], want: &Value, train_keys: &[&str]) {
    let (loss, metric) = (LOSS_RTOL, METRIC_RTOL);
    assert_eval_history_matches(name, got, want, loss, metric, &["eval_num_tokens"]);
    assert_log_history_matches(name, got, want, loss, metric, train_keys, &["num_tokens"]);
}
