//! `SFTConfig`'s SFT-specific keys, with TRL 1.16's defaults.

use serde::{Deserialize, Serialize};
use trl_core::train::args_check::check::at_least_one;

/// `loss_type`: plain token NLL, or DFT (each token's NLL weighted by its detached probability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SftLossType {
    Nll,
    Dft,
    /// Deprecated TRL alias of `nll`.
    ChunkedNll,
}

/// `truncation_mode`: which end of a too-long sequence survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationMode {
    KeepStart,
    KeepEnd,
}

/// The keys of TRL's `SFTConfig` beyond `TrainingArguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    pub dataset_text_field: String,
    pub max_length: Option<usize>,
    pub truncation_mode: TruncationMode,
    pub packing: bool,
    /// Only "bfd" is implemented (TRL's default); others are rejected by the CLI.
    pub packing_strategy: String,
    pub padding_free: bool,
    pub pad_to_multiple_of: Option<usize>,
    /// `None`: on for prompt-completion data, as TRL decides from the first row.
    pub completion_only_loss: Option<bool>,
    pub assistant_only_loss: bool,
    pub loss_type: SftLossType,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub chat_template_path: Option<String>,
    pub shuffle_dataset: bool,
    pub dataset_num_proc: Option<usize>,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            dataset_text_field: "text".into(),
            max_length: Some(1024),
            truncation_mode: TruncationMode::KeepStart,
            packing: false,
            packing_strategy: "bfd".into(),
            padding_free: false,
            pad_to_multiple_of: None,
            completion_only_loss: None,
            assistant_only_loss: false,
            loss_type: SftLossType::Nll,
            eos_token: None,
            pad_token: None,
            chat_template_path: None,
            shuffle_dataset: false,
            dataset_num_proc: None,
        }
    }
}

impl SftConfig {
    /// Range checks on the numeric keys, each error naming its option.
    pub fn validate(&self) -> trl_core::Result<()> {
        at_least_one("max_length", self.max_length)?;
        at_least_one("pad_to_multiple_of", self.pad_to_multiple_of)?;
        at_least_one("dataset_num_proc", self.dataset_num_proc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_lengths_name_their_option() {
        SftConfig::default().validate().unwrap();
        let zero_length = SftConfig {
            max_length: Some(0),
            ..SftConfig::default()
        };
        let err = zero_length.validate().unwrap_err().to_string();
        assert!(err.contains("max_length"), "{err}");
        let zero_multiple = SftConfig {
            pad_to_multiple_of: Some(0),
            ..SftConfig::default()
        };
        let err = zero_multiple.validate().unwrap_err().to_string();
        assert!(err.contains("pad_to_multiple_of"), "{err}");
    }
}
