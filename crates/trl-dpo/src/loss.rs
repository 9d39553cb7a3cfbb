//! DPO and its variants as pure functions of sequence log-probabilities (TRL 1.16's
//! `DPOTrainer._compute_loss`), plus the reference-free SimPO and ORPO objectives.
//!
//! Every variant maps the same typed inputs ([`PairLogps`]) to a per-pair loss `[batch]`; the
//! trainer takes the mean and combines variants with `loss_weights`.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, relu, sigmoid};
use serde::{Deserialize, Serialize};

/// `loss_type` values, spelled as TRL spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLossType {
    /// DPO (Rafailov et al. 2023, arXiv:2305.18290): `-log σ(β Δ)`.
    Sigmoid,
    /// SLiC hinge (Zhao et al. 2023, arXiv:2305.10425): `relu(1 - β Δ)`.
    Hinge,
    /// IPO (Azar et al. 2023, arXiv:2310.12036) on per-token averages: `(Δ̄ - 1/2β)²`.
    Ipo,
    /// EXO (Ji et al. 2024, arXiv:2402.00856), pairwise form with `label_smoothing` as ε.
    ExoPair,
    /// NCA (Chen et al. 2024, arXiv:2402.05369), pairwise.
    NcaPair,
    /// Robust DPO (Chowdhury et al. 2024, arXiv:2403.00409) with `label_smoothing` as flip rate.
    Robust,
    /// BCO (Jung et al. 2024, arXiv:2404.04656), pairwise without the running shift.
    BcoPair,
    /// SPPO with hard probabilities (Wu et al. 2024, arXiv:2405.00675).
    SppoHard,
    /// AOT (Melnyk et al. 2024, arXiv:2406.05882), paired: sorted policy vs reference margins.
    Aot,
    /// AOT, unpaired: sorted chosen vs rejected log-ratios.
    AotUnpaired,
    /// APO-zero (D'Oosterlinck et al. 2024, arXiv:2408.06266, eq. 7).
    ApoZero,
    /// APO-down (same paper, eq. 8).
    ApoDown,
    /// DiscoPOP (Chan et al. 2024, arXiv:2406.08414, eq. 5) with `discopop_tau`.
    Discopop,
    /// Negative log-likelihood of the chosen completions (token mean over the batch).
    Sft,
    /// DPO on per-token average scores.
    SigmoidNorm,
    /// SimPO (Meng et al. 2024, arXiv:2405.14734): reference-free, length-normalised, margin γ.
    Simpo,
    /// ORPO (Hong et al. 2024, arXiv:2403.07691): NLL of the whole chosen sequence (prompt
    /// included, as TRL's ORPOTrainer) plus the `β`-weighted odds-ratio term; reference-free.
    Orpo,
}

impl DpoLossType {
    /// SimPO and ORPO: TRL runs them in CPOTrainer / ORPOTrainer, which log length-averaged
    /// log-probs and rewards without a reference model.
    pub fn is_reference_free_objective(self) -> bool {
        matches!(self, DpoLossType::Simpo | DpoLossType::Orpo)
    }

    /// Whether the variant reads reference log-probs (if none does, no reference model runs).
    pub fn needs_reference(self) -> bool {
        !matches!(
            self,
            DpoLossType::Simpo | DpoLossType::Orpo | DpoLossType::Sft
        )
    }
}

/// `f_divergence_type`: how a log-ratio becomes a score (Wang et al. 2023, arXiv:2309.16240).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FDivergence {
    ReverseKl,
    ForwardKl,
    JsDivergence,
    AlphaDivergence,
}

/// Hyper-parameters the variants read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossParams {
    pub beta: f64,
    pub label_smoothing: f64,
    pub f_divergence: FDivergence,
    pub f_alpha_divergence_coef: f64,
    pub discopop_tau: f64,
    pub simpo_gamma: f64,
}

/// Sequence-level inputs of one batch of pairs; every tensor is `[batch]` except `sft_nll`.
#[derive(Debug, Clone)]
pub struct PairLogps {
    /// Policy log p(chosen completion | prompt), summed over its tokens.
    pub chosen: Tensor<1>,
    pub rejected: Tensor<1>,
    /// Reference model's sums (zeros for reference-free variants).
    pub ref_chosen: Tensor<1>,
    pub ref_rejected: Tensor<1>,
    /// Completion token counts (at least 1), for the length-normalised variants.
    pub chosen_tokens: Tensor<1>,
    pub rejected_tokens: Tensor<1>,
    /// `[1]`: mean negative log-likelihood over all chosen completion tokens of the batch.
    pub sft_nll: Tensor<1>,
    /// `[1]`: mean negative log-likelihood over every token of the chosen rows, prompt
    /// included (ORPO's NLL term); zeros when ORPO is not used.
    pub chosen_full_nll: Tensor<1>,
}

/// Per-pair loss `[batch]` of one variant.
pub fn pair_loss(kind: DpoLossType, x: &PairLogps, p: &LossParams) -> Tensor<1> {
    let beta = p.beta;
    let chosen_logratios = x.chosen.clone() - x.ref_chosen.clone();
    let rejected_logratios = x.rejected.clone() - x.ref_rejected.clone();
    let chosen_scores = score(chosen_logratios.clone(), p);
    let rejected_scores = score(rejected_logratios.clone(), p);
    let delta = chosen_scores.clone() - rejected_scores.clone();
    let smoothed = |z: Tensor<1>| {
        log_sigmoid(z.clone()).neg() * (1.0 - p.label_smoothing)
            - log_sigmoid(z.neg()) * p.label_smoothing
    };
    let avg_delta = || {
        chosen_scores.clone() / x.chosen_tokens.clone()
            - rejected_scores.clone() / x.rejected_tokens.clone()
    };
    match kind {
        DpoLossType::Sigmoid => log_sigmoid(delta * beta).neg(),
        DpoLossType::Hinge => relu((delta * beta).neg() + 1.0),
        DpoLossType::Ipo => (avg_delta() - 1.0 / (2.0 * beta)).powi_scalar(2),
        DpoLossType::ExoPair => {
            let eps = p.label_smoothing;
            let z = delta * beta;
            let (qw, log_qw) = (sigmoid(z.clone()), log_sigmoid(z.clone()));
            let (ql, log_ql) = (sigmoid(z.clone().neg()), log_sigmoid(z.neg()));
            qw * (log_qw - (-eps).ln_1p()) + ql * (log_ql - eps.ln())
        }
        DpoLossType::NcaPair => {
            let (c, r) = (chosen_logratios * beta, rejected_logratios * beta);
            log_sigmoid(c.clone()).neg() - log_sigmoid(c.neg()) * 0.5 - log_sigmoid(r.neg()) * 0.5
        }
        DpoLossType::Robust => {
            let z = delta * beta;
            let clean = log_sigmoid(z.clone()).neg() * (1.0 - p.label_smoothing);
            let flipped = log_sigmoid(z.neg()).neg() * p.label_smoothing;
            (clean - flipped) / (1.0 - 2.0 * p.label_smoothing)
        }
        DpoLossType::BcoPair => {
            log_sigmoid(chosen_logratios * beta).neg()
                - log_sigmoid((rejected_logratios * beta).neg())
        }
        DpoLossType::SppoHard => {
            (chosen_logratios - 0.5 / beta).powi_scalar(2)
                + (rejected_logratios + 0.5 / beta).powi_scalar(2)
        }
        DpoLossType::Aot => {
            let policy = (x.chosen.clone() - x.rejected.clone()).sort(0);
            let reference = (x.ref_chosen.clone() - x.ref_rejected.clone()).sort(0);
            smoothed((policy - reference) * beta)
        }
        DpoLossType::AotUnpaired => {
            smoothed((chosen_logratios.sort(0) - rejected_logratios.sort(0)) * beta)
        }
        DpoLossType::ApoZero => {
            sigmoid(chosen_logratios * beta).neg() + 1.0 + sigmoid(rejected_logratios * beta)
        }
        DpoLossType::ApoDown => {
            sigmoid(chosen_logratios.clone() * beta) + 1.0
                - sigmoid((chosen_logratios - rejected_logratios) * beta)
        }
        DpoLossType::Discopop => {
            let logits = delta * beta;
            let modulation = sigmoid(logits.clone() / p.discopop_tau);
            let logistic = log_sigmoid(logits.clone()).neg();
            let exponential = logits.neg().exp();
            logistic * (modulation.clone().neg() + 1.0) + exponential * modulation
        }
        DpoLossType::Sft => x.sft_nll.clone().expand([x.chosen.dims()[0]]),
        DpoLossType::SigmoidNorm => log_sigmoid(avg_delta() * beta).neg(),
        DpoLossType::Simpo => {
            let margin = x.chosen.clone() / x.chosen_tokens.clone()
                - x.rejected.clone() / x.rejected_tokens.clone();
            smoothed((margin - p.simpo_gamma / beta) * beta)
        }
        DpoLossType::Orpo => {
            x.chosen_full_nll.clone().expand([x.chosen.dims()[0]])
                - log_sigmoid(orpo_log_odds(x)) * beta
        }
    }
}

/// ORPO's log odds ratio of each pair, `[batch]`: `log odds(chosen) - log odds(rejected)` with
/// `log odds(y) = log p - log(1 - p)` and `p` the per-token average probability (TRL's
/// `log_odds_chosen` metric; ORPO's loss is `nll - β log σ(·)` of it).
pub fn orpo_log_odds(x: &PairLogps) -> Tensor<1> {
    let avg_chosen = x.chosen.clone() / x.chosen_tokens.clone();
    let avg_rejected = x.rejected.clone() / x.rejected_tokens.clone();
    (avg_chosen.clone() - avg_rejected.clone()) - (log1m_exp(avg_chosen) - log1m_exp(avg_rejected))
}

/// What a step logs per pair as `rewards/*` and `logps/*`.
pub struct LoggedRewards {
    pub chosen: Tensor<1>,
    pub rejected: Tensor<1>,
    pub chosen_logps: Tensor<1>,
    pub rejected_logps: Tensor<1>,
}

/// DPOTrainer's `β (log p - log p_ref)` on summed log-probs; or, when every configured loss is
/// reference-free (`reference_free`: SimPO, ORPO), what TRL's CPOTrainer / ORPOTrainer log:
/// the log-probs averaged over each completion's tokens and `β` times that average as reward.
pub fn logged_rewards(x: &PairLogps, beta: f64, reference_free: bool) -> LoggedRewards {
    if reference_free {
        let chosen = x.chosen.clone() / x.chosen_tokens.clone();
        let rejected = x.rejected.clone() / x.rejected_tokens.clone();
        return LoggedRewards {
            chosen: chosen.clone() * beta,
            rejected: rejected.clone() * beta,
            chosen_logps: chosen,
            rejected_logps: rejected,
        };
    }
    LoggedRewards {
        chosen: (x.chosen.clone() - x.ref_chosen.clone()) * beta,
        rejected: (x.rejected.clone() - x.ref_rejected.clone()) * beta,
        chosen_logps: x.chosen.clone(),
        rejected_logps: x.rejected.clone(),
    }
}

/// LD-DPO (Liu et al. 2024, arXiv:2409.06411) token weights `[rows][seq - 1]` flattened: 1 on
/// the first `min(len_chosen, len_rejected)` completion tokens of each row of a pair, `alpha`
/// on the longer side's tail, 0 off the completion. `shift_mask` is the completion mask
/// shifted like the labels; rows `0..pairs` are chosen, `pairs..2 * pairs` rejected.
pub fn ld_token_weights(shift_mask: &[Vec<i64>], pairs: usize, alpha: f64) -> Vec<f32> {
    let counts: Vec<usize> = shift_mask
        .iter()
        .map(|r| r.iter().filter(|&&m| m == 1).count())
        .collect();
    let mut weights = Vec::with_capacity(shift_mask.len() * shift_mask.first().map_or(0, Vec::len));
    for (row, mask) in shift_mask.iter().enumerate() {
        let pair = row % pairs;
        let shared = counts[pair].min(counts[pair + pairs]);
        let mut seen = 0;
        for &m in mask {
            seen += (m == 1) as usize;
            weights.push(if m != 1 {
                0.0
            } else if seen <= shared {
                1.0
            } else {
                alpha as f32
            });
        }
    }
    weights
}

/// WPO (Zhou et al. 2024, arXiv:2406.11827, eq. 2) weight of each pair `[pairs]`:
/// `exp(mean aligned log p(chosen)) * exp(mean aligned log p(rejected))`, where a token's
/// aligned log-prob is `log p - log Σ_v p_v²`; all inputs `[2 * pairs, seq - 1]`, no autodiff.
pub fn wpo_weights(
    token_logps: Tensor<2>,
    log_sum_sq_probs: Tensor<2>,
    shift_mask: Tensor<2>,
) -> Tensor<1> {
    let [rows, _] = token_logps.dims();
    let pairs = rows / 2;
    let aligned = (token_logps - log_sum_sq_probs) * shift_mask.clone();
    let counts = shift_mask.sum_dim(1).clamp_min(1.0);
    let weights = (aligned.sum_dim(1) / counts).exp().reshape([rows]);
    weights.clone().narrow(0, 0, pairs) * weights.narrow(0, pairs, pairs)
}

/// `log(1 - exp(x))` for `x < 0`.
fn log1m_exp(x: Tensor<1>) -> Tensor<1> {
    (x.exp().neg() + 1.0).log()
}

/// The f-divergence's `f'` applied to a log-ratio.
fn score(logratio: Tensor<1>, p: &LossParams) -> Tensor<1> {
    match p.f_divergence {
        FDivergence::ReverseKl => logratio,
        FDivergence::ForwardKl => logratio.neg().exp().neg() + 1.0,
        FDivergence::JsDivergence => log_sigmoid(logratio) + std::f64::consts::LN_2,
        FDivergence::AlphaDivergence => {
            let alpha = p.f_alpha_divergence_coef;
            if (alpha - 1.0).abs() < 1e-6 {
                logratio
            } else {
                ((logratio * (alpha - 1.0)).clamp_max(80.0).exp() - 1.0) / (alpha - 1.0)
            }
        }
    }
}
