//! `RewardConfig`'s reward-specific keys, with TRL 1.16's defaults.
//!
//! Where `RewardConfig` changes a `TrainingArguments` default (`learning_rate` 1e-4,
//! `logging_steps` 10), the CLI supplies it; `model_init_kwargs` and `trust_remote_code` are
//! model keys the CLI takes for every command.

use serde::{Deserialize, Serialize};

use crate::Error;

/// `pad_to_multiple_of`: a number, or TRL's `"auto"` (128 on AWS Neuron, nothing elsewhere,
/// so nothing here), or `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PadToMultipleOf {
    Multiple(usize),
    Named(String),
}

/// The keys of TRL's `RewardConfig` beyond `TrainingArguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// A Jinja file replacing the tokenizer's chat template.
    pub chat_template_path: Option<String>,
    /// Accepted for TRL configs: the decoder has no dropout, so it is always "disabled".
    pub disable_dropout: bool,
    /// Accepted for TRL configs; tokenization runs in one process.
    pub dataset_num_proc: Option<usize>,
    /// Replaces the tokenizer's EOS token (appended to standard chosen/rejected texts).
    pub eos_token: Option<String>,
    /// Pairs whose chosen or rejected sequence is longer are dropped, not truncated (TRL).
    pub max_length: Option<usize>,
    pub pad_to_multiple_of: Option<PadToMultipleOf>,
    /// Adds `coef * mean((r_chosen + r_rejected)^2)` to pull rewards toward zero mean
    /// (Eisenstein et al. 2023, arXiv:2312.09244, eq. 2); TRL recommends 0.01.
    pub center_rewards_coefficient: Option<f64>,
    /// Accepted for TRL configs: activations stay where they are computed.
    pub activation_offloading: bool,
    /// Deprecated in TRL (still honoured): the padding token; default the tokenizer's, else EOS.
    pub pad_token: Option<String>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            chat_template_path: None,
            disable_dropout: true,
            dataset_num_proc: None,
            eos_token: None,
            max_length: Some(1024),
            pad_to_multiple_of: Some(PadToMultipleOf::Named("auto".into())),
            center_rewards_coefficient: None,
            activation_offloading: false,
            pad_token: None,
        }
    }
}

impl RewardConfig {
    /// Range checks on the numeric keys, each error naming its option.
    pub fn validate(&self) -> Result<(), Error> {
        use trl_core::train::args_check::check::{at_least_one, non_negative};
        let checks = at_least_one("max_length", self.max_length)
            .and_then(|()| at_least_one("dataset_num_proc", self.dataset_num_proc))
            .and_then(|()| match self.center_rewards_coefficient {
                Some(c) => non_negative("center_rewards_coefficient", c),
                None => Ok(()),
            });
        checks.map_err(|e| Error::Config(e.to_string()))?;
        self.pad_multiple().map(|_| ())
    }

    /// `pad_to_multiple_of` as TRL's `__post_init__` resolves it off Neuron: `"auto"`, `"none"`
    /// and `null` mean no rounding; a numeric string is a number.
    pub fn pad_multiple(&self) -> Result<Option<usize>, Error> {
        match &self.pad_to_multiple_of {
            None => Ok(None),
            Some(PadToMultipleOf::Multiple(0)) => Err(Error::Config(
                "pad_to_multiple_of must be at least 1 (or null)".into(),
            )),
            Some(PadToMultipleOf::Multiple(m)) => Ok(Some(*m)),
            Some(PadToMultipleOf::Named(name)) => match name.to_ascii_lowercase().as_str() {
                "auto" | "none" | "null" => Ok(None),
                other => other.parse::<usize>().ok().filter(|&m| m > 0).map(Some).ok_or_else(|| {
                    Error::Config(format!(
                        "pad_to_multiple_of {name:?}: expected a positive number, \"auto\" or null"
                    ))
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_name_their_option() {
        RewardConfig::default().validate().unwrap();
        let zero = RewardConfig {
            max_length: Some(0),
            ..RewardConfig::default()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("max_length")
        );
        let negative = RewardConfig {
            center_rewards_coefficient: Some(-0.01),
            ..RewardConfig::default()
        };
        let err = negative.validate().unwrap_err().to_string();
        assert!(err.contains("center_rewards_coefficient"), "{err}");
    }

    #[test]
    fn pad_to_multiple_of_resolves_like_trl_off_neuron() {
        let with = |value: serde_json::Value| {
            let config: RewardConfig =
                serde_json::from_value(serde_json::json!({ "pad_to_multiple_of": value })).unwrap();
            config.pad_multiple()
        };
        assert_eq!(RewardConfig::default().pad_multiple().unwrap(), None);
        assert_eq!(with(serde_json::json!(8)).unwrap(), Some(8));
        assert_eq!(with(serde_json::json!("16")).unwrap(), Some(16));
        assert_eq!(with(serde_json::json!(null)).unwrap(), None);
        assert!(with(serde_json::json!("lots")).is_err());
    }
}
