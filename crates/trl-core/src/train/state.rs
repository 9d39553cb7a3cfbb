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
    pub save_steps: u64,
    pub num_train_epochs: u64,
    pub train_batch_size: usize,
    pub num_input_tokens_seen: u64,
    pub total_flos: f64,
    pub is_local_process_zero: bool,
    pub is_world_process_zero: bool,
    pub is_hyper_param_search: bool,
    pub best_metric: Option<f64>,
    pub best_model_checkpoint: Option<String>,
    pub log_history: Vec<LogEntry>,
    /// trl-rs: cumulative tokens trained on, continued exactly on resume.
    #[serde(default)]
    pub trl_total_tokens: f64,
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
