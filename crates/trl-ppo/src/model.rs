//! The trained pair: policy and value model as one module under one AdamW (TRL's
//! `PolicyAndValueWrapper`), saved as an HF causal LM with the value model beside it.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use trl_core::Result;
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

impl PolicyAndValue {
    /// Writes the policy (with the tokenizer) into `dir` and the value model into
    /// `dir/value_model`, both as folders `transformers` loads.
    pub fn save(&self, tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
        save_causal_lm(&self.policy, tokenizer, dir)?;
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
