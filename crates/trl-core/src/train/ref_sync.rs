//! TRL's `SyncRefModelCallback` (TR-DPO, Gorbatovski et al. 2024, arXiv:2404.09656): every
//! `ref_model_sync_steps` optimizer steps the frozen reference becomes
//! `alpha * policy + (1 - alpha) * reference`. DPO and GRPO/RLOO (`sync_ref_model`) share it.
//! The synced reference changes during training, so every checkpoint keeps it
//! (`checkpoint-N/ref_model/`) and a resume restores it (TRL restarts from the original).

use std::path::Path;

use burn::tensor::Device;

use super::mix::mix_parameters;
use crate::model::{CausalLm, load_frozen_causal_lm, save_causal_lm};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Where a checkpoint keeps the synced reference model (an HF folder).
pub const SYNCED_REFERENCE_DIR: &str = "ref_model";

/// `ref_model_mixup_alpha` and `ref_model_sync_steps` of a run with `sync_ref_model`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSync {
    pub alpha: f64,
    pub every: u64,
}

impl RefSync {
    /// The sync of a run, `None` without `sync_ref_model`.
    pub fn from_config(sync_ref_model: bool, alpha: f64, every: u64) -> Option<Self> {
        sync_ref_model.then_some(RefSync { alpha, every })
    }

    /// Blends `policy` into `reference` when optimizer step `step` (1-based) is a sync step.
    pub fn after_step(
        &self,
        reference: &mut Option<CausalLm>,
        policy: &CausalLm,
        step: u64,
    ) -> Result<()> {
        if !step.is_multiple_of(self.every.max(1)) {
            return Ok(());
        }
        if let Some(current) = reference.take() {
            *reference = Some(mix_parameters(current, policy, self.alpha)?);
        }
        Ok(())
    }

    /// Writes the synced reference into checkpoint folder `dir`.
    pub fn save(
        &self,
        reference: Option<&CausalLm>,
        tokenizer: &Tokenizer,
        dir: &Path,
    ) -> Result<()> {
        match reference {
            Some(reference) => {
                save_causal_lm(reference, tokenizer, &dir.join(SYNCED_REFERENCE_DIR))
            }
            None => Ok(()),
        }
    }

    /// Restores the reference [`RefSync::save`] wrote into `dir`; a checkpoint without one
    /// (written by a run without `sync_ref_model`) is an error, not a silent restart from the
    /// original reference.
    pub fn load(
        &self,
        reference: &mut Option<CausalLm>,
        dir: &Path,
        device: &Device,
    ) -> Result<()> {
        if reference.is_none() {
            return Ok(());
        }
        let saved = dir.join(SYNCED_REFERENCE_DIR);
        if !saved.is_dir() {
            return Err(Error::Config {
                path: dir.to_path_buf(),
                message: "sync_ref_model is set but this checkpoint holds no synced reference \
                          (ref_model/); it was written by a run without sync_ref_model"
                    .into(),
            });
        }
        *reference = Some(load_frozen_causal_lm(&saved, device)?);
        Ok(())
    }
}
