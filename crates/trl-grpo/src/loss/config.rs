//! The options of TRL 1.16's `GRPOConfig` that the policy loss reads, with TRL's names,
//! defaults and checks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use trl_core::Result;
use trl_core::train::args_check::check::{finite, non_negative, option_error, positive, within};

/// `loss_type`: how per-token policy-gradient terms are formed and normalised (TRL's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// GRPO (Shao et al. 2024, arXiv:2402.03300): clipped ratio, mean over each sequence's
    /// tokens, then over sequences.
    Grpo,
    /// Dr. GRPO (Liu et al. 2025, arXiv:2503.20783): token sum over `B * max_completion_length`.
    DrGrpo,
    /// DAPO (Yu et al. 2025, arXiv:2503.14476): token sum over the generation batch's tokens
    /// (TRL's default).
    Dapo,
    /// BNPO: token sum over this micro-batch's tokens.
    Bnpo,
    /// CISPO (MiniMax-M1, arXiv:2506.13585): detached, upper-clipped ratio times the log-prob.
    Cispo,
    /// SAPO (arXiv:2511.20347): a temperature-controlled sigmoid gate instead of hard clipping.
    Sapo,
    /// LUSPO (arXiv:2602.05261): GSPO's sequence loss summed over tokens (length-scaled).
    Luspo,
    /// VESPO (arXiv:2602.10693): a detached Gamma weight of the sequence ratio times the log-prob.
    Vespo,
}

impl LossType {
    /// Every value, in TRL's order.
    pub const ALL: [LossType; 8] = [
        LossType::Grpo,
        LossType::DrGrpo,
        LossType::Dapo,
        LossType::Bnpo,
        LossType::Cispo,
        LossType::Sapo,
        LossType::Luspo,
        LossType::Vespo,
    ];

    /// TRL's spelling (`"dr_grpo"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LossType::Grpo => "grpo",
            LossType::DrGrpo => "dr_grpo",
            LossType::Dapo => "dapo",
            LossType::Bnpo => "bnpo",
            LossType::Cispo => "cispo",
            LossType::Sapo => "sapo",
            LossType::Luspo => "luspo",
            LossType::Vespo => "vespo",
        }
    }

    /// The types with PPO's two-sided clipping (and TRL's `clip_ratio/*` metrics).
    pub fn is_clipped(self) -> bool {
        matches!(
            self,
            LossType::Grpo | LossType::Bnpo | LossType::DrGrpo | LossType::Dapo | LossType::Luspo
        )
    }
}

impl fmt::Display for LossType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LossType {
    type Err = trl_core::Error;

    fn from_str(s: &str) -> Result<Self> {
        LossType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = LossType::ALL.iter().map(|t| t.as_str()).collect();
                option_error(
                    "loss_type",
                    format!("unknown value {s:?}; valid values: {}", valid.join(", ")),
                )
            })
    }
}

/// `importance_sampling_level`: one ratio per token, or one per sequence (GSPO, Zheng et al.
/// 2025, arXiv:2507.18071: the exponential of the mean token log-ratio).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceSamplingLevel {
    Token,
    Sequence,
}

impl FromStr for ImportanceSamplingLevel {
    type Err = trl_core::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "token" => Ok(Self::Token),
            "sequence" => Ok(Self::Sequence),
            _ => Err(option_error(
                "importance_sampling_level",
                format!("unknown value {s:?}; valid values: token, sequence"),
            )),
        }
    }
}

/// What [`super::policy_loss`] reads from `GRPOConfig`; field names are TRL's option names.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyLossConfig {
    pub loss_type: LossType,
    /// Lower clipping bound `1 - epsilon` (also the upper one unless `epsilon_high` is set).
    pub epsilon: f64,
    /// Upper bound `1 + epsilon_high`; for cispo the ratio cap itself. `None`: `epsilon`.
    pub epsilon_high: Option<f64>,
    /// INTELLECT-2's upper cap on the unclipped ratio (two-sided clipping), clipped family only.
    pub delta: Option<f64>,
    /// KL coefficient (k3 estimator against the reference model); 0 disables the reference.
    pub beta: f64,
    /// Multiply the per-token KL by the (differentiable) importance ratio (DeepSeek-V3.2).
    pub use_bias_correction_kl: bool,
    pub importance_sampling_level: ImportanceSamplingLevel,
    pub sapo_temperature_pos: f64,
    pub sapo_temperature_neg: f64,
    pub vespo_k_pos: f64,
    pub vespo_lambda_pos: f64,
    pub vespo_k_neg: f64,
    pub vespo_lambda_neg: f64,
    /// dr_grpo's constant normaliser (per sequence).
    pub max_completion_length: usize,
    /// Keep only the top quantile of tokens by entropy in the policy term (1.0 keeps all).
    pub top_entropy_quantile: f64,
    /// Static entropy bonus coefficient: loss -= entropy_coef * mean token entropy.
    pub entropy_coef: f64,
    /// Skywork-OR1's adaptive entropy control: not supported (an error in [`Self::validate`]).
    pub use_adaptive_entropy: bool,
}

impl Default for PolicyLossConfig {
    /// `GRPOConfig()`'s values.
    fn default() -> Self {
        PolicyLossConfig {
            loss_type: LossType::Dapo,
            epsilon: 0.2,
            epsilon_high: None,
            delta: None,
            beta: 0.0,
            use_bias_correction_kl: true,
            importance_sampling_level: ImportanceSamplingLevel::Token,
            sapo_temperature_pos: 1.0,
            sapo_temperature_neg: 1.05,
            vespo_k_pos: 2.0,
            vespo_lambda_pos: 3.0,
            vespo_k_neg: 3.0,
            vespo_lambda_neg: 2.0,
            max_completion_length: 512,
            top_entropy_quantile: 1.0,
            entropy_coef: 0.0,
            use_adaptive_entropy: false,
        }
    }
}

impl PolicyLossConfig {
    /// `1 - epsilon_low` is the lower clip bound (TRL's `self.epsilon_low = args.epsilon`).
    pub fn epsilon_low(&self) -> f64 {
        self.epsilon
    }

    /// TRL's `self.epsilon_high`: `epsilon_high` if set, else `epsilon`.
    pub fn epsilon_high(&self) -> f64 {
        self.epsilon_high.unwrap_or(self.epsilon)
    }

    /// Whether the entropy bonus term is added (TRL's `_entropy_bonus_enabled`, static only).
    pub fn entropy_bonus_enabled(&self) -> bool {
        self.entropy_coef != 0.0
    }

    /// Rejects values the loss cannot use (each error names its option) and returns TRL's
    /// warnings (TRL 1.16 only warns, in `GRPOTrainer.__init__`, about level/type mismatches).
    pub fn validate(&self) -> Result<Vec<String>> {
        non_negative("epsilon", self.epsilon)?;
        if let Some(high) = self.epsilon_high {
            non_negative("epsilon_high", high)?;
        }
        if let Some(delta) = self.delta {
            positive("delta", delta)?;
        }
        finite("beta", self.beta)?;
        positive("sapo_temperature_pos", self.sapo_temperature_pos)?;
        positive("sapo_temperature_neg", self.sapo_temperature_neg)?;
        for (name, value) in [
            ("vespo_k_pos", self.vespo_k_pos),
            ("vespo_lambda_pos", self.vespo_lambda_pos),
            ("vespo_k_neg", self.vespo_k_neg),
            ("vespo_lambda_neg", self.vespo_lambda_neg),
        ] {
            finite(name, value)?;
        }
        if self.loss_type == LossType::DrGrpo && self.max_completion_length == 0 {
            return Err(option_error(
                "max_completion_length",
                "0: loss_type dr_grpo divides by it".into(),
            ));
        }
        // torch.quantile(q = 1 - top_entropy_quantile) needs q in [0, 1].
        within("top_entropy_quantile", self.top_entropy_quantile, 0.0, 1.0)?;
        finite("entropy_coef", self.entropy_coef)?;
        if self.use_adaptive_entropy {
            return Err(option_error(
                "use_adaptive_entropy",
                "adaptive entropy control is not supported; use a static entropy_coef".into(),
            ));
        }
        Ok(self.warnings())
    }

    /// TRL 1.16's warnings about `importance_sampling_level` (grpo_trainer.py, `__init__`).
    fn warnings(&self) -> Vec<String> {
        use ImportanceSamplingLevel::{Sequence, Token};
        let (lt, level) = (self.loss_type, self.importance_sampling_level);
        let mut out = Vec::new();
        if lt == LossType::Luspo && level != Sequence {
            out.push(
                "loss_type luspo: importance_sampling_level should be 'sequence' to mirror the \
                 paper's setup"
                    .to_string(),
            );
        }
        if lt == LossType::Vespo && level != Token {
            out.push(
                "loss_type vespo computes sequence-level importance weights internally; \
                 importance_sampling_level should be 'token' (the default)"
                    .to_string(),
            );
        }
        let sums_tokens = matches!(
            lt,
            LossType::Bnpo | LossType::DrGrpo | LossType::Dapo | LossType::Cispo
        );
        if level == Sequence && sums_tokens {
            out.push(format!(
                "importance_sampling_level 'sequence' with loss_type {lt}: the loss sums per-token \
                 contributions, which weights each sequence by its completion length; set \
                 loss_type grpo to reproduce the GSPO paper's setup"
            ));
        }
        out
    }
}
