//! `KTOConfig`'s KTO-specific keys with TRL 1.16's defaults (plus trl-rs's `ref_model` key).

use serde::{Deserialize, Serialize};

use crate::loss::KtoLossType;

/// The keys of TRL's `KTOConfig` beyond `TrainingArguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KtoConfig {
    pub beta: f64,
    pub loss_type: KtoLossType,
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
    pub max_length: Option<usize>,
    pub pad_to_multiple_of: Option<usize>,
    pub precompute_ref_log_probs: bool,
    pub precompute_ref_batch_size: Option<usize>,
    /// Path or hub id of the reference model; default: a frozen copy of the starting policy.
    pub ref_model: Option<String>,
    pub disable_dropout: bool,
    pub dataset_num_proc: Option<usize>,
}

impl Default for KtoConfig {
    fn default() -> Self {
        KtoConfig {
            beta: 0.1,
            loss_type: KtoLossType::Kto,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
            max_length: Some(1024),
            pad_to_multiple_of: None,
            precompute_ref_log_probs: false,
            precompute_ref_batch_size: None,
            ref_model: None,
            disable_dropout: true,
            dataset_num_proc: None,
        }
    }
}
