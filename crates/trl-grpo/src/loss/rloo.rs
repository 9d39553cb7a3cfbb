//! RLOO's policy loss (TRL 1.16's `RLOOTrainer._compute_loss`): PPO clipping on one
//! sequence-level ratio `exp(Σ_t log π_θ - Σ_t log π_old)` per completion, mean over rows.
//! Ahmadian et al. 2024, arXiv:2402.14740. The KL penalty lives in the reward (see
//! [`crate::advantages::rloo_advantages`]), not here.

use burn::tensor::Tensor;
use trl_core::{Error, Result};

use super::metrics::nan_extreme;
use super::{LossMetrics, PolicyLoss, host};

/// One micro-batch. `B` rows, `T` completion positions.
#[derive(Debug, Clone)]
pub struct RlooLossInputs {
    /// `[B, T]` policy log-probs of the sampled tokens (differentiable).
    pub per_token_logps: Tensor<2>,
    /// `[B, T]` policy entropies (for the `entropy` metric).
    pub entropies: Tensor<2>,
    /// `[B]` `Σ_t old_per_token_logps * mask` from generation time (TRL's `old_logps`).
    pub old_logps: Tensor<1>,
    /// `[B]`.
    pub advantages: Tensor<1>,
    /// `[B, T]` completion mask (1.0 / 0.0).
    pub mask: Tensor<2>,
}

/// RLOO's loss, divided by `gradient_accumulation_steps` as the HF Trainer divides it
/// (`RLOOTrainer.loss_is_scaled_for_ga` is False; TRL's `_compute_loss` returns the plain
/// mean). `epsilon_high` is the resolved upper bound (`epsilon` when unset).
pub fn rloo_policy_loss(
    epsilon_low: f64,
    epsilon_high: f64,
    inputs: RlooLossInputs,
    gradient_accumulation_steps: usize,
) -> Result<PolicyLoss> {
    let dims = inputs.per_token_logps.dims();
    if inputs.entropies.dims() != dims
        || inputs.mask.dims() != dims
        || inputs.old_logps.dims() != [dims[0]]
        || inputs.advantages.dims() != [dims[0]]
    {
        return Err(Error::Data {
            message: format!(
                "RLOO loss inputs: per_token_logps {dims:?}, entropies {:?}, mask {:?}, \
                 old_logps {:?}, advantages {:?} do not agree",
                inputs.entropies.dims(),
                inputs.mask.dims(),
                inputs.old_logps.dims(),
                inputs.advantages.dims()
            ),
        });
    }
    let logps: Tensor<1> = (inputs.per_token_logps * inputs.mask.clone())
        .sum_dim(1)
        .squeeze_dim(1); // [B]
    let coef_1 = (logps - inputs.old_logps).exp(); // [B]
    let coef_2 = coef_1.clone().clamp(1.0 - epsilon_low, 1.0 + epsilon_high);
    let adv = inputs.advantages.clone();
    let per_sequence = (coef_1.clone() * adv.clone()).min_pair(coef_2 * adv).neg(); // [B]
    let loss = per_sequence
        .mean()
        .div_scalar(gradient_accumulation_steps as f64);

    let mask = host(inputs.mask)?;
    let entropies = host(inputs.entropies)?;
    let ratios = host(coef_1)?;
    let advantages = host(inputs.advantages)?;
    let mut metrics = LossMetrics::default();
    let tokens: f64 = mask.iter().map(|&m| m as f64).sum();
    let entropy_sum: f64 = entropies
        .iter()
        .zip(&mask)
        .map(|(&e, &m)| (e * m) as f64)
        .sum();
    metrics.push("entropy", entropy_sum / tokens.max(1.0));
    let (low, high) = ((1.0 - epsilon_low) as f32, (1.0 + epsilon_high) as f32);
    let flags = |f: &dyn Fn(f32, f32) -> bool| -> Vec<f64> {
        ratios
            .iter()
            .zip(&advantages)
            .map(|(&c, &a)| f64::from(u8::from(f(c, a))))
            .collect()
    };
    let low_clipped = flags(&|c, a| c < low && a < 0.0);
    let high_clipped = flags(&|c, a| c > high && a > 0.0);
    let region: Vec<f64> = low_clipped
        .iter()
        .zip(&high_clipped)
        .map(|(a, b)| a.max(*b))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    metrics.push("clip_ratio/low_mean", mean(&low_clipped));
    metrics.push("clip_ratio/low_min", nan_extreme(&low_clipped, f64::min));
    metrics.push("clip_ratio/high_mean", mean(&high_clipped));
    metrics.push("clip_ratio/high_max", nan_extreme(&high_clipped, f64::max));
    metrics.push("clip_ratio/region_mean", mean(&region));
    Ok(PolicyLoss { loss, metrics })
}
