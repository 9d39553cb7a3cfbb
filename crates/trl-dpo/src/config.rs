//! `DPOConfig`'s DPO-specific keys with TRL 1.16's defaults, plus trl-rs's `simpo_gamma` and
//! `ref_model` (TRL takes the reference model as a trainer argument; the CLI needs a key).

use serde::{Deserialize, Serialize};

use crate::loss::{DpoLossType, FDivergence, LossParams};
use trl_core::completions::TruncationMode;
use trl_core::train::args_check::check::{at_least_one, finite, option_error, positive, within};

/// `loss_type` accepts one name or a list, as TRL's YAML files write it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LossTypes {
    One(DpoLossType),
    Many(Vec<DpoLossType>),
}

/// Written out (not `untagged`) so that an unknown name says which names are valid instead
/// of serde's "data did not match any variant of untagged enum".
impl<'de> Deserialize<'de> for LossTypes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(serde_json::from_value::<DpoLossType>)
                .collect::<Result<Vec<_>, _>>()
                .map(LossTypes::Many)
                .map_err(D::Error::custom),
            one => serde_json::from_value::<DpoLossType>(one)
                .map(LossTypes::One)
                .map_err(D::Error::custom),
        }
    }
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
    /// Range checks on the numeric keys, each error naming its option.
    pub fn validate(&self) -> trl_core::Result<()> {
        positive("beta", self.beta)?;
        within("label_smoothing", self.label_smoothing, 0.0, 0.5)?;
        if self.loss_type.to_vec().contains(&DpoLossType::Robust) && self.label_smoothing >= 0.5 {
            return Err(option_error(
                "label_smoothing",
                "0.5 makes the robust loss divide by 1 - 2 * label_smoothing = 0".into(),
            ));
        }
        positive("f_alpha_divergence_coef", self.f_alpha_divergence_coef)?;
        positive("discopop_tau", self.discopop_tau)?;
        finite("simpo_gamma", self.simpo_gamma)?;
        if let Some(alpha) = self.ld_alpha {
            within("ld_alpha", alpha, 0.0, 1.0)?;
        }
        for weight in self.loss_weights.iter().flatten() {
            finite("loss_weights", *weight)?;
        }
        at_least_one("max_length", self.max_length)?;
        at_least_one("pad_to_multiple_of", self.pad_to_multiple_of)?;
        at_least_one("precompute_ref_batch_size", self.precompute_ref_batch_size)?;
        at_least_one("dataset_num_proc", self.dataset_num_proc)?;
        within(
            "ref_model_mixup_alpha",
            self.ref_model_mixup_alpha,
            0.0,
            1.0,
        )?;
        if self.sync_ref_model {
            at_least_one(
                "ref_model_sync_steps",
                Some(self.ref_model_sync_steps as usize),
            )?;
        }
        self.weighted_losses()
            .map(|_| ())
            .map_err(|message| option_error("loss_type", message))
    }

    /// Every key that changes the reference model's log-probs of a tokenized pair (how the
    /// pair is cut, how the model runs over it, LD-DPO's length weighting): what a cache of
    /// precomputed reference log-probs is keyed on besides the token ids and the model.
    pub fn reference_options(&self) -> serde_json::Value {
        serde_json::json!({
            "max_length": self.max_length,
            "truncation_mode": self.truncation_mode,
            "ld_alpha": self.ld_alpha,
            "padding_free": self.padding_free,
            "pad_to_multiple_of": self.pad_to_multiple_of,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_loss_type_lists_the_valid_ones() {
        for value in [
            serde_json::json!("sigmod"),
            serde_json::json!(["sigmoid", "hing"]),
        ] {
            let err = serde_json::from_value::<LossTypes>(value)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("expected one of") && err.contains("`ipo`"),
                "{err}"
            );
        }
        let many: LossTypes =
            serde_json::from_value(serde_json::json!(["sigmoid", "sft"])).unwrap();
        assert_eq!(many.to_vec(), vec![DpoLossType::Sigmoid, DpoLossType::Sft]);
    }

    #[test]
    fn reference_options_change_with_every_key_that_changes_reference_logps() {
        let base = DpoConfig::default().reference_options();
        let changed = [
            DpoConfig {
                max_length: Some(24),
                ..DpoConfig::default()
            },
            DpoConfig {
                truncation_mode: TruncationMode::KeepEnd,
                ..DpoConfig::default()
            },
            DpoConfig {
                ld_alpha: Some(0.5),
                ..DpoConfig::default()
            },
            DpoConfig {
                padding_free: true,
                ..DpoConfig::default()
            },
        ];
        for config in changed {
            assert_ne!(config.reference_options(), base, "{config:?}");
        }
        let beta = DpoConfig {
            beta: 0.5,
            ..DpoConfig::default()
        };
        assert_eq!(
            beta.reference_options(),
            base,
            "beta does not change reference log-probs"
        );
    }

    #[test]
    fn invalid_values_name_their_option() {
        DpoConfig::default().validate().unwrap();
        let cases = [
            (
                "beta",
                DpoConfig {
                    beta: 0.0,
                    ..DpoConfig::default()
                },
            ),
            (
                "label_smoothing",
                DpoConfig {
                    label_smoothing: -0.1,
                    ..DpoConfig::default()
                },
            ),
            (
                "ld_alpha",
                DpoConfig {
                    ld_alpha: Some(1.5),
                    ..DpoConfig::default()
                },
            ),
            (
                "max_length",
                DpoConfig {
                    max_length: Some(0),
                    ..DpoConfig::default()
                },
            ),
            (
                "discopop_tau",
                DpoConfig {
                    discopop_tau: 0.0,
                    ..DpoConfig::default()
                },
            ),
            (
                "ref_model_mixup_alpha",
                DpoConfig {
                    ref_model_mixup_alpha: 2.0,
                    ..DpoConfig::default()
                },
            ),
            (
                "ref_model_sync_steps",
                DpoConfig {
                    sync_ref_model: true,
                    ref_model_sync_steps: 0,
                    ..DpoConfig::default()
                },
            ),
        ];
        for (name, config) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }
}
