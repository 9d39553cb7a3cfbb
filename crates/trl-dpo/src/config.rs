//! `DPOConfig`'s DPO-specific keys with TRL 1.16's defaults, plus trl-rs's `simpo_gamma` and
//! `ref_model` (TRL takes the reference model as a trainer argument; the CLI needs a key).

use serde::{Deserialize, Serialize};

use crate::loss::{DpoLossType, FDivergence, LossParams};
use trl_core::completions::TruncationMode;

/// `loss_type` accepts one name or a list, as TRL's YAML files write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LossTypes {
    One(DpoLossType),
    Many(Vec<DpoLossType>),
}

impl LossTypes {
    /// The variants as a list.
    pub fn to_vec(&self) -> Vec<DpoLossType> {
        match self {
            LossTypes::One(kind) => vec![*kind],
            LossTypes::Many(kinds) => kinds.clone(),
        }
    }
}

/// The keys of TRL's `DPOConfig` beyond `TrainingArguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    pub beta: f64,
    pub loss_type: LossTypes,
    pub loss_weights: Option<Vec<f64>>,
    pub f_divergence_type: FDivergence,
    pub f_alpha_divergence_coef: f64,
    pub label_smoothing: f64,
    pub use_weighting: bool,
    /// LD-DPO (Liu et al. 2024, arXiv:2409.06411): weight of completion tokens beyond the
    /// shorter completion's length.
    pub ld_alpha: Option<f64>,
    pub discopop_tau: f64,
    /// SimPO's target margin γ (trl-rs; TRL keeps SimPO in its CPO trainer).
    pub simpo_gamma: f64,
    pub max_length: Option<usize>,
    pub truncation_mode: TruncationMode,
    /// Run the model on real tokens only (TRL 1.16 accepts the key but falls back to padding).
    pub padding_free: bool,
    pub pad_to_multiple_of: Option<usize>,
    pub precompute_ref_log_probs: bool,
    pub precompute_ref_batch_size: Option<usize>,
    /// Path or hub id of the reference model; default: a frozen copy of the starting policy.
    pub ref_model: Option<String>,
    pub sync_ref_model: bool,
    pub ref_model_mixup_alpha: f64,
    pub ref_model_sync_steps: u64,
    pub disable_dropout: bool,
    pub dataset_num_proc: Option<usize>,
    pub pad_token: Option<String>,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            beta: 0.1,
            loss_type: LossTypes::Many(vec![DpoLossType::Sigmoid]),
            loss_weights: None,
            f_divergence_type: FDivergence::ReverseKl,
            f_alpha_divergence_coef: 0.5,
            label_smoothing: 0.0,
            use_weighting: false,
            ld_alpha: None,
            discopop_tau: 0.05,
            simpo_gamma: 0.5,
            max_length: Some(1024),
            truncation_mode: TruncationMode::KeepStart,
            padding_free: false,
            pad_to_multiple_of: None,
            precompute_ref_log_probs: false,
            precompute_ref_batch_size: None,
            ref_model: None,
            sync_ref_model: false,
            ref_model_mixup_alpha: 0.6,
            ref_model_sync_steps: 512,
            disable_dropout: true,
            dataset_num_proc: None,
            pad_token: None,
        }
    }
}

impl DpoConfig {
    /// The hyper-parameters the loss functions read.
    pub fn loss_params(&self) -> LossParams {
        LossParams {
            beta: self.beta,
            label_smoothing: self.label_smoothing,
            f_divergence: self.f_divergence_type,
            f_alpha_divergence_coef: self.f_alpha_divergence_coef,
            discopop_tau: self.discopop_tau,
            simpo_gamma: self.simpo_gamma,
        }
    }

    /// `(variant, weight)` pairs; checks `loss_weights` has one weight per variant and that
    /// combinations TRL rejects are rejected.
    pub fn weighted_losses(&self) -> Result<Vec<(DpoLossType, f64)>, String> {
        let kinds = self.loss_type.to_vec();
        if kinds.is_empty() {
            return Err("loss_type is empty".into());
        }
        let weights = match &self.loss_weights {
            None => vec![1.0; kinds.len()],
            Some(w) if w.len() == kinds.len() => w.clone(),
            Some(w) => {
                return Err(format!(
                    "loss_weights has {} weights for {} loss types; give one per loss_type",
                    w.len(),
                    kinds.len()
                ));
            }
        };
        let kinds_used: Vec<DpoLossType> = self.loss_type.to_vec();
        if kinds_used.contains(&DpoLossType::ExoPair) && self.label_smoothing <= 0.0 {
            return Err(
                "loss_type exo_pair needs label_smoothing > 0 (the EXO paper recommends 1e-3)"
                    .into(),
            );
        }
        let f_supported = [
            DpoLossType::Discopop,
            DpoLossType::ExoPair,
            DpoLossType::Hinge,
            DpoLossType::Ipo,
            DpoLossType::Robust,
            DpoLossType::Sft,
            DpoLossType::Sigmoid,
            DpoLossType::SigmoidNorm,
        ];
        if self.f_divergence_type != FDivergence::ReverseKl
            && let Some(kind) = kinds_used.iter().find(|k| !f_supported.contains(k))
        {
            return Err(format!(
                "f_divergence_type {:?} is only supported for discopop, exo_pair, hinge, ipo, robust, sft, sigmoid \
                 and sigmoid_norm; {kind:?} needs reverse_kl",
                self.f_divergence_type
            ));
        }
        if self.use_weighting
            && let Some(kind) = kinds_used.iter().find(|k| {
                matches!(
                    k,
                    DpoLossType::Aot | DpoLossType::AotUnpaired | DpoLossType::Sft
                )
            })
        {
            return Err(format!(
                "use_weighting is not supported with loss_type {kind:?} (as in TRL)"
            ));
        }
        if self.sync_ref_model && self.precompute_ref_log_probs {
            return Err(
                "sync_ref_model=true cannot be combined with precompute_ref_log_probs=true: \
                        precomputed reference log-probs would go stale"
                    .into(),
            );
        }
        Ok(kinds.into_iter().zip(weights).collect())
    }
}
