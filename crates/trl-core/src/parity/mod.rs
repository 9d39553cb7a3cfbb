//! Comparing a run against TRL's: the reference cases written by `reference/*_reference.py`
//! (config keys, `log_history`, parameter updates) and the per-metric tolerances the issues
//! state. Used by every method crate's parity tests, so the comparison rules live in one place.
//!
//! Every comparison here fails on empty or unequal-length inputs: a fixture that lost its
//! entries, or a run that logged nothing, must never pass by comparing nothing.

mod compare;
mod eval_case;
mod eval_history;
mod forward;
mod weights;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use burn::tensor::{Device, Tensor};

use crate::train::{Method, Sampler, StepContext, StepMetrics, TrainingArguments};

pub use compare::{
    assert_close_slices, assert_log_history_matches, assert_summary_matches, check_close_slices,
    check_lengths, check_log_history, check_summary,
};
pub use eval_case::{assert_eval_run_matches, load_eval_case};
pub use eval_history::{assert_eval_history_matches, check_eval_history, read_case_row_range};
pub use forward::{TokenOutputs, assert_close_rows, check_close_rows, token_outputs};
pub use weights::{
    assert_param_updates_match, assert_run_updates_match, check_param_updates,
    safetensors_update_norms,
};

/// The repository root (the fixtures live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads and parses a JSON file relative to the repository root (panics naming the file).
pub fn read_fixture(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A reference case: the whole JSON, and its TRL config as a key map with the Python-only
/// keys removed and `output_dir` set.
pub fn load_case(
    relative: &str,
    config_key: &str,
    output_dir: &Path,
) -> (Value, BTreeMap<String, Value>) {
    let case = read_fixture(relative);
    let mut map: BTreeMap<String, Value> = case[config_key]
        .as_object()
        .cloned()
        .unwrap_or_else(|| panic!("{relative}: no `{config_key}` object"))
        .into_iter()
        .collect();
    for python_only in [
        "model_init_kwargs",
        "disable_tqdm",
        "dataloader_num_workers",
    ] {
        map.remove(python_only);
    }
    map.insert(
        "output_dir".into(),
        Value::from(output_dir.to_string_lossy().to_string()),
    );
    (case, map)
}

/// JSON-lines rows of a dataset file.
pub fn read_jsonl(relative: &str) -> Vec<serde_json::Map<String, Value>> {
    let path = repo_root().join(relative);
    let rows: Vec<_> = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty(), "{}: no rows", path.display());
    rows
}

/// The rows a reference case trained on: its `dataset` file, cut to the first `dataset_rows`
/// rows when the case names that many (the reference scripts cut the same way).
pub fn read_case_rows(case: &Value) -> Vec<serde_json::Map<String, Value>> {
    let file = case["dataset"]
        .as_str()
        .unwrap_or_else(|| panic!("case {}: no `dataset`", case["case"]));
    let mut rows = read_jsonl(file);
    if let Some(n) = case.get("dataset_rows").and_then(Value::as_u64) {
        assert!(rows.len() as u64 >= n, "{file}: fewer than {n} rows");
        rows.truncate(n as usize);
    }
    rows
}

/// Indices of the rows of the first micro-batch the HF Trainer feeds its model: the first
/// `per_device_train_batch_size` rows of epoch 0's order (sequential or `torch.randperm`).
pub fn first_micro_batch_rows(args: &TrainingArguments, num_rows: usize) -> Vec<usize> {
    Sampler::from_args(args)
        .epoch_order(num_rows, 0)
        .into_iter()
        .take(args.per_device_train_batch_size)
        .collect()
}

/// The loss and metrics of one micro-batch of `examples` as the training loop computes them
/// (prepare, normalise by its own items, loss), for comparing with TRL's first micro-batch.
pub fn micro_batch_loss<M: Method>(
    method: &mut M,
    model: &M::Model,
    examples: Vec<&M::Example>,
    device: &Device,
) -> crate::Result<(Tensor<1>, StepMetrics)> {
    let ctx = StepContext {
        step: 0,
        total_steps: 1,
        device,
    };
    let prepared = method.prepare(model, &[examples], &ctx)?;
    let batch = prepared
        .updates
        .first()
        .and_then(|update| update.first())
        .ok_or_else(|| crate::Error::Data {
            message: "the method prepared no batch".into(),
        })?;
    method.loss(model, batch, method.items_in(batch).max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::args::SamplingStrategy;
    use crate::train::sampler::epoch_order;

    #[test]
    fn case_rows_are_cut_to_dataset_rows() {
        let case =
            serde_json::json!({"case": "x", "dataset": "datasets/text.jsonl", "dataset_rows": 3});
        assert_eq!(read_case_rows(&case).len(), 3);
        let all = serde_json::json!({"case": "x", "dataset": "datasets/text.jsonl"});
        assert_eq!(read_case_rows(&all).len(), 64);
    }

    #[test]
    fn first_micro_batch_follows_the_sampling_strategy() {
        let mut args = TrainingArguments {
            per_device_train_batch_size: 3,
            train_sampling_strategy: SamplingStrategy::Sequential,
            ..TrainingArguments::default()
        };
        assert_eq!(first_micro_batch_rows(&args, 10), vec![0, 1, 2]);
        args.train_sampling_strategy = SamplingStrategy::Random;
        assert_eq!(
            first_micro_batch_rows(&args, 10),
            epoch_order(10, 42, 0)[..3].to_vec()
        );
    }
}
