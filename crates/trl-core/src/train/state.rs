//! `trainer_state.json` as the HF Trainer writes it, so tools that read TRL runs read ours.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// One `log_history` entry: metric name -> value, plus `step` and `epoch`.
pub type LogEntry = BTreeMap<String, Value>;

/// The subset of the HF `TrainerState` fields that describe a run and its progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub epoch: f64,
    pub global_step: u64,
    pub max_steps: u64,
    pub logging_steps: u64,
    /// `eval_steps` resolved against the run (written even when nothing is evaluated, as
    /// transformers does).
    #[serde(default)]
    pub eval_steps: u64,
    pub save_steps: u64,
    pub num_train_epochs: u64,
    pub train_batch_size: usize,
    pub num_input_tokens_seen: u64,
    pub total_flos: f64,
    pub is_local_process_zero: bool,
    pub is_world_process_zero: bool,
    pub is_hyper_param_search: bool,
    pub best_metric: Option<f64>,
    /// The step of the best evaluation (transformers 5's `best_global_step`).
    #[serde(default)]
    pub best_global_step: Option<u64>,
    pub best_model_checkpoint: Option<String>,
    pub log_history: Vec<LogEntry>,
}

impl TrainerState {
    /// Writes the state as pretty JSON through a temporary file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::json(path, e))?;
        crate::model::write_atomically(path, &text)
    }

    /// Reads a state written by us (or by the HF Trainer).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::json(path, e))
    }
}

#[cfg(test)]
mod field_tests {
    use super::*;

    /// transformers' `TrainerState.load_from_json` is `TrainerState(**json)`: a key that is
    /// not one of its dataclass fields (transformers 5.23, `trainer_callback.py`) makes the
    /// HF Trainer unable to resume from our checkpoints.
    #[test]
    fn every_written_key_is_a_transformers_trainer_state_field() {
        const HF_FIELDS: [&str; 20] = [
            "epoch",
            "global_step",
            "max_steps",
            "logging_steps",
            "eval_steps",
            "save_steps",
            "train_batch_size",
            "num_train_epochs",
            "num_input_tokens_seen",
            "total_flos",
            "log_history",
            "best_metric",
            "best_global_step",
            "best_model_checkpoint",
            "is_local_process_zero",
            "is_world_process_zero",
            "is_hyper_param_search",
            "trial_name",
            "trial_params",
            "stateful_callbacks",
        ];
        let written = serde_json::to_value(TrainerState::default()).unwrap();
        let keys: Vec<&String> = written.as_object().unwrap().keys().collect();
        assert!(keys.len() >= 15, "{keys:?}");
        for key in keys {
            assert!(
                HF_FIELDS.contains(&key.as_str()),
                "{key} is not a TrainerState field"
            );
        }
    }
}
