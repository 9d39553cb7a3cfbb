//! The per-token policy-gradient term of each loss type (before masking and normalising).

use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData};

use trl_core::Result;

use super::{LossType, PolicyLossConfig};

/// What every loss type may read. `coef_1` is `exp(log importance weight)`: `[B, T]` at token
/// level, `[B, 1]` at sequence level.
pub struct TermInputs<'a> {
    pub coef_1: Tensor<2>,
    /// `[B, T]` `log π_θ - log π_old` per token (VESPO's sequence weight).
    pub log_ratio: Tensor<2>,
    /// `[B, T]` differentiable log-probs (cispo and vespo multiply them directly).
    pub per_token_logps: Tensor<2>,
    /// `[B, 1]`.
    pub advantages: Tensor<2>,
    pub advantages_host: &'a [f32],
    pub mask_host: &'a [f32],
    pub width: usize,
}

/// A loss type's per-token term and what its metrics read.
pub struct Terms {
    /// `[B, T]` or `[B, 1]` (broadcast over tokens by the caller).
    pub per_token_loss: Tensor<2>,
    /// The ratio TRL's clip metrics compare (after `delta`'s cap, as TRL reassigns `coef_1`).
    pub coef_for_metrics: Tensor<2>,
    /// VESPO's per-sequence Gamma weights `[B]`.
    pub phi_seq: Option<Vec<f32>>,
}

/// The term of `cfg.loss_type` (errors only if VESPO's log-ratios cannot be read back).
pub fn policy_terms(cfg: &PolicyLossConfig, x: TermInputs<'_>) -> Result<Terms> {
    let device = x.coef_1.device();
    let rows = x.advantages_host.len();
    let column =
        |values: Vec<f32>| Tensor::<2>::from_data(TensorData::new(values, [rows, 1]), &device);
    let coef_1 = x.coef_1;
    let adv = x.advantages;
    Ok(match cfg.loss_type {
        LossType::Cispo => {
            // CISPO: the capped ratio is a constant weight on the log-prob's gradient.
            let weight = coef_1.clone().clamp_max(cfg.epsilon_high()).detach();
            Terms {
                per_token_loss: (weight * adv * x.per_token_logps).neg(),
                coef_for_metrics: coef_1,
                phi_seq: None,
            }
        }
        LossType::Sapo => {
            let temps: Vec<f32> = x
                .advantages_host
                .iter()
                .map(|&a| {
                    let t = if a > 0.0 {
                        cfg.sapo_temperature_pos
                    } else {
                        cfg.sapo_temperature_neg
                    };
                    t as f32
                })
                .collect();
            let temps = column(temps); // [B, 1]
            let gate = sigmoid(temps.clone() * (coef_1.clone() - 1.0)) * 4.0 / temps;
            Terms {
                per_token_loss: (gate * adv).neg(),
                coef_for_metrics: coef_1,
                phi_seq: None,
            }
        }
        LossType::Vespo => {
            let log_ratio = super::host(x.log_ratio.detach())?;
            let phi = gamma_weights(cfg, &log_ratio, x.mask_host, x.advantages_host, x.width);
            let weight = column(phi.clone());
            Terms {
                per_token_loss: (weight * adv * x.per_token_logps).neg(),
                coef_for_metrics: coef_1,
                phi_seq: Some(phi),
            }
        }
        _ => clipped(cfg, coef_1, adv),
    })
}

/// PPO's clipped surrogate `-min(r A, clip(r, 1-ε_low, 1+ε_high) A)`, with `delta` capping
/// the unclipped `r` from above (INTELLECT-2's two-sided clipping).
fn clipped(cfg: &PolicyLossConfig, coef_1: Tensor<2>, adv: Tensor<2>) -> Terms {
    let coef_2 = coef_1
        .clone()
        .clamp(1.0 - cfg.epsilon_low(), 1.0 + cfg.epsilon_high());
    let coef_1 = match cfg.delta {
        Some(delta) => coef_1.clamp_max(delta),
        None => coef_1,
    };
    let unclipped = coef_1.clone() * adv.clone();
    let clipped = coef_2 * adv;
    Terms {
        per_token_loss: unclipped.min_pair(clipped).neg(),
        coef_for_metrics: coef_1,
        phi_seq: None,
    }
}

/// VESPO's detached Gamma weights `φ(w) = exp(λ + k log w - λ w)` of the sequence ratio
/// `w = exp(Σ_t clamp(log_ratio, ±20) * mask)` (log w clamped to [ln 1e-8, 20]); `k`, `λ`
/// by the advantage's sign; NaN and ±inf become 0 (TRL's `get_gamma_weights`, in f32).
pub fn gamma_weights(
    cfg: &PolicyLossConfig,
    log_ratio: &[f32],
    mask: &[f32],
    advantages: &[f32],
    width: usize,
) -> Vec<f32> {
    let lower = 1e-8f64.ln() as f32;
    advantages
        .iter()
        .enumerate()
        .map(|(row, &adv)| {
            let cells = row * width..(row + 1) * width;
            let seq: f32 = log_ratio[cells.clone()]
                .iter()
                .zip(&mask[cells])
                .map(|(&r, &m)| r.clamp(-20.0, 20.0) * m)
                .sum();
            let log_w = seq.clamp(lower, 20.0);
            let (k, lambda) = if adv >= 0.0 {
                (cfg.vespo_k_pos, cfg.vespo_lambda_pos)
            } else {
                (cfg.vespo_k_neg, cfg.vespo_lambda_neg)
            };
            let (k, lambda) = (k as f32, (lambda as f32).max(1e-4));
            let phi = (lambda + k * log_w - lambda * log_w.exp()).exp();
            if phi.is_finite() { phi } else { 0.0 }
        })
        .collect()
}
