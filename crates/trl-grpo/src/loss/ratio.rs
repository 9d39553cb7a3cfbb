//! Importance ratios and the KL estimate the policy loss is built from.

use burn::tensor::Tensor;

use super::ImportanceSamplingLevel;

/// Log importance weights from the per-token log-ratio `log π_θ - log π_old` `[B, T]`:
/// token level keeps it (`[B, T]`); sequence level (GSPO) takes its masked mean per row
/// (`[B, 1]`, an all-masked row divides by 1 as TRL's `clamp(min=1)`).
pub fn log_importance_weights(
    log_ratio: Tensor<2>,
    mask: Tensor<2>,
    level: ImportanceSamplingLevel,
) -> Tensor<2> {
    match level {
        ImportanceSamplingLevel::Token => log_ratio,
        ImportanceSamplingLevel::Sequence => {
            let tokens = mask.clone().sum_dim(1).clamp_min(1.0); // [B, 1]
            (log_ratio * mask).sum_dim(1) / tokens // [B, 1]
        }
    }
}

/// Schulman's k3 estimator of KL(π_θ || π_ref) per token, `[B, T]`:
/// `exp(ref - logp) - (ref - logp) - 1` (always >= 0; differentiable in `per_token_logps`).
pub fn k3_kl(per_token_logps: Tensor<2>, ref_per_token_logps: Tensor<2>) -> Tensor<2> {
    let diff = ref_per_token_logps - per_token_logps; // [B, T]
    diff.clone().exp() - diff - 1.0
}
