//! The trained pair: policy and value model as one module under one AdamW (TRL's
//! `PolicyAndValueWrapper`), saved as an HF causal LM (or, under `--use_peft`, the policy's
//! peft adapter folder) with the value model beside it.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use trl_core::Result;
use trl_core::lora::{self, LoraConfig};
use trl_core::model::{
    CausalLm, SequenceClassifier, WeightWriter, load_causal_lm, load_sequence_classifier,
    save_causal_lm, save_pretrained,
};
use trl_core::tokenizer::Tokenizer;

/// Where the value model is saved inside an output or checkpoint folder.
pub const VALUE_MODEL_DIR: &str = "value_model";

/// Policy and value model, trained together; they share no parameters.
#[derive(Module, Debug)]
pub struct PolicyAndValue {
    pub policy: CausalLm,
    pub value: SequenceClassifier,
}

/// The policy's LoRA adapter (TRL 1.12's `peft_config`: `get_peft_model` on the policy only;
/// the value model trains in full): the policy is saved as a peft folder over `base_dir`.
#[derive(Debug, Clone)]
pub struct PolicyAdapter {
    /// What `adapter_config.json` says (the user's settings).
    pub config: LoraConfig,
    /// The base model's folder, loaded under the adapter when resuming.
    pub base_dir: PathBuf,
}

impl PolicyAdapter {
    /// The settings the adapter trains with: PPOTrainer disables every dropout module of the
    /// policy after wrapping it, peft's `lora_dropout` included (the saved config keeps it).
    pub fn training_config(&self) -> LoraConfig {
        LoraConfig {
            lora_dropout: 0.0,
            ..self.config.clone()
        }
    }
}

impl PolicyAndValue {
    /// Writes the policy (with the tokenizer) into `dir` and the value model into
    /// `dir/value_model`, both as folders `transformers` loads.
    pub fn save(&self, tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
        save_causal_lm(&self.policy, tokenizer, dir)?;
        self.save_value(tokenizer, dir)
    }

    /// [`PolicyAndValue::save`] with the policy as `adapter`'s peft folder (adapter weights,
    /// `adapter_config.json`, tokenizer) when there is one.
    pub fn save_as(
        &self,
        tokenizer: &Tokenizer,
        adapter: Option<&PolicyAdapter>,
        dir: &Path,
    ) -> Result<()> {
        let Some(adapter) = adapter else {
            return self.save(tokenizer, dir);
        };
        lora::save_adapter(&self.policy, &adapter.config, dir)?;
        tokenizer.save(dir)?;
        self.save_value(tokenizer, dir)
    }

    /// Reads what [`PolicyAndValue::save_as`] wrote.
    pub fn load_as(adapter: Option<&PolicyAdapter>, dir: &Path, device: &Device) -> Result<Self> {
        let Some(adapter) = adapter else {
            return Self::load(dir, device);
        };
        let base = load_causal_lm(&adapter.base_dir, device)?;
        Ok(PolicyAndValue {
            policy: lora::load_adapter(base, &adapter.training_config(), dir, device)?,
            value: load_sequence_classifier(&dir.join(VALUE_MODEL_DIR), 1, device)?,
        })
    }

    /// The value model into `dir/value_model`.
    fn save_value(&self, tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
        let value_dir = dir.join(VALUE_MODEL_DIR);
        let mut writer = WeightWriter::default();
        self.value.save_weights(&mut writer)?;
        save_pretrained(&value_dir, self.value.config(), &writer)?;
        tokenizer.save(&value_dir)
    }

    /// Reads what [`PolicyAndValue::save`] wrote.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Ok(PolicyAndValue {
            policy: load_causal_lm(dir, device)?,
            value: load_sequence_classifier(&dir.join(VALUE_MODEL_DIR), 1, device)?,
        })
    }
}
