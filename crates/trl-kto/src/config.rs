//! `KTOConfig`'s KTO-specific keys with TRL 1.16's defaults (plus trl-rs's `ref_model` key).

use serde::{Deserialize, Serialize};

use crate::loss::KtoLossType;
use trl_core::train::args_check::check::{at_least_one, positive};

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

impl KtoConfig {
    /// Every key that changes the reference model's log-probs of a tokenized example (how it
    /// is cut and padded, whether a KL completion is scored): what a cache of precomputed
    /// reference log-probs is keyed on besides the token ids and the model.
    pub fn reference_options(&self) -> serde_json::Value {
        serde_json::json!({
            "max_length": self.max_length,
            "pad_to_multiple_of": self.pad_to_multiple_of,
            "kl": self.loss_type.uses_kl(),
        })
    }

    /// Range checks on the numeric keys, each error naming its option.
    pub fn validate(&self) -> trl_core::Result<()> {
        positive("beta", self.beta)?;
        positive("desirable_weight", self.desirable_weight)?;
        positive("undesirable_weight", self.undesirable_weight)?;
        at_least_one("max_length", self.max_length)?;
        at_least_one("pad_to_multiple_of", self.pad_to_multiple_of)?;
        at_least_one("precompute_ref_batch_size", self.precompute_ref_batch_size)?;
        at_least_one("dataset_num_proc", self.dataset_num_proc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_name_their_option() {
        KtoConfig::default().validate().unwrap();
        let cases = [
            (
                "beta",
                KtoConfig {
                    beta: -0.1,
                    ..KtoConfig::default()
                },
            ),
            (
                "desirable_weight",
                KtoConfig {
                    desirable_weight: 0.0,
                    ..KtoConfig::default()
                },
            ),
            (
                "max_length",
                KtoConfig {
                    max_length: Some(0),
                    ..KtoConfig::default()
                },
            ),
            (
                "precompute_ref_batch_size",
                KtoConfig {
                    precompute_ref_batch_size: Some(0),
                    ..KtoConfig::default()
                },
            ),
        ];
        for (name, config) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }
}
