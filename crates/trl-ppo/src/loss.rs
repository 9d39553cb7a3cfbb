//! PPO's clipped objectives over masked means (TRL 1.12, `ppo_trainer.py` l.824-868): the
//! clipped value loss `0.5 * mean(max((v - R)^2, (clip(v, v_old ± c_v) - R)^2))` over
//! `~padding_mask_p1`, and the clipped policy loss `mean(max(-A r, -A clip(r, 1 ± c)))` over
//! `~padding_mask`, with `r = exp(logp - logp_old)`; plus the statistics TRL logs.

use burn::tensor::{Bool, Tensor};

use crate::gae::INVALID_LOGPROB;

/// The clip ranges and the value coefficient (PPOConfig's names).
#[derive(Debug, Clone, Copy)]
pub struct LossSettings {
    pub cliprange: f64,
    pub cliprange_value: f64,
    pub vf_coef: f64,
}

/// One micro-batch's inputs as tensors on the training device, each `[rows, response_length]`.
#[derive(Debug, Clone)]
pub struct LossInputs {
    /// Log-probs under the current policy (with autodiff).
    pub new_logprobs: Tensor<2>,
    /// Value predictions of the current value model (with autodiff).
    pub vpred: Tensor<2>,
    pub old_logprobs: Tensor<2>,
    pub old_values: Tensor<2>,
    pub returns: Tensor<2>,
    pub advantages: Tensor<2>,
    /// True after each row's last real token.
    pub padding_mask: Tensor<2, Bool>,
    /// True beyond one past each row's last real token.
    pub padding_mask_p1: Tensor<2, Bool>,
}

/// The losses of one micro-batch, each `[1]`.
#[derive(Debug, Clone)]
pub struct PpoLosses {
    /// `pg_loss + vf_coef * vf_loss`, what is back-propagated.
    pub loss: Tensor<1>,
    pub pg_loss: Tensor<1>,
    pub vf_loss: Tensor<1>,
}

/// `(values * mask).sum() / mask.sum()` with `keep` true where an entry counts.
fn masked_mean(values: Tensor<2>, keep: Tensor<2, Bool>) -> Tensor<1> {
    let weights = keep.float();
    (values * weights.clone()).sum() / weights.sum()
}

/// The clipped policy and value losses (TRL's torch ops, in order).
pub fn ppo_losses(inputs: LossInputs, settings: &LossSettings) -> PpoLosses {
    let new_logprobs = inputs
        .new_logprobs
        .mask_fill(inputs.padding_mask.clone(), INVALID_LOGPROB);
    let vpred = inputs.vpred.mask_fill(inputs.padding_mask_p1.clone(), 0.0);
    let c_v = settings.cliprange_value as f32;
    // torch.clamp(v, lo, hi) = min(max(v, lo), hi)
    let vpred_clipped = vpred
        .clone()
        .max_pair(inputs.old_values.clone() - c_v)
        .min_pair(inputs.old_values + c_v);
    let vf_losses1 = (vpred - inputs.returns.clone()).powi_scalar(2);
    let vf_losses2 = (vpred_clipped - inputs.returns).powi_scalar(2);
    let vf_loss = masked_mean(
        vf_losses1.max_pair(vf_losses2),
        inputs.padding_mask_p1.bool_not(),
    ) * 0.5;
    let ratio = (new_logprobs - inputs.old_logprobs).exp();
    let c = settings.cliprange as f32;
    let pg_losses = inputs.advantages.clone().neg() * ratio.clone();
    let pg_losses2 = inputs.advantages.neg() * ratio.clamp(1.0 - c, 1.0 + c);
    let pg_loss = masked_mean(
        pg_losses.max_pair(pg_losses2),
        inputs.padding_mask.bool_not(),
    );
    let loss = pg_loss.clone() + vf_loss.clone() * settings.vf_coef as f32;
    PpoLosses {
        loss,
        pg_loss,
        vf_loss,
    }
}

/// The statistics TRL records per micro-batch, from host values `[rows][cols]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    pub pg_clipfrac: f64,
    pub vf_clipfrac: f64,
    /// `0.5 * mean((logp - logp_old)^2)` over every entry, padding included.
    pub approxkl: f64,
    /// `mean(ratio)` over every entry, padding included.
    pub ratio_mean: f64,
}

/// Host copies of a micro-batch's numbers for [`loss_stats`].
#[derive(Debug, Clone, Copy)]
pub struct HostLossInputs<'a> {
    pub new_logprobs: &'a [Vec<f32>],
    pub vpred: &'a [Vec<f32>],
    pub old_logprobs: &'a [Vec<f32>],
    pub old_values: &'a [Vec<f32>],
    pub returns: &'a [Vec<f32>],
    pub advantages: &'a [Vec<f32>],
    pub padding_mask: &'a [Vec<bool>],
    pub padding_mask_p1: &'a [Vec<bool>],
}

/// `pg_clipfrac`, `vf_clipfrac`, `approxkl` and the mean ratio, as TRL computes them.
pub fn loss_stats(x: &HostLossInputs, settings: &LossSettings) -> LossStats {
    let (c, c_v) = (settings.cliprange as f32, settings.cliprange_value as f32);
    let (mut pg_clip, mut pg_n, mut vf_clip, mut vf_n) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut kl_sum, mut ratio_sum, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for r in 0..x.new_logprobs.len() {
        for t in 0..x.new_logprobs[r].len() {
            let new_lp = if x.padding_mask[r][t] {
                INVALID_LOGPROB
            } else {
                x.new_logprobs[r][t]
            };
            let v = if x.padding_mask_p1[r][t] {
                0.0
            } else {
                x.vpred[r][t]
            };
            let old_v = x.old_values[r][t];
            let clipped = v.max(old_v - c_v).min(old_v + c_v);
            let ret = x.returns[r][t];
            if !x.padding_mask_p1[r][t] {
                vf_n += 1.0;
                vf_clip += f64::from((clipped - ret).powi(2) > (v - ret).powi(2));
            }
            let diff = new_lp - x.old_logprobs[r][t];
            let ratio = diff.exp();
            let a = x.advantages[r][t];
            if !x.padding_mask[r][t] {
                pg_n += 1.0;
                pg_clip += f64::from(-a * ratio.clamp(1.0 - c, 1.0 + c) > -a * ratio);
            }
            kl_sum += 0.5 * (diff as f64).powi(2);
            ratio_sum += ratio as f64;
            n += 1.0;
        }
    }
    LossStats {
        pg_clipfrac: pg_clip / pg_n,
        vf_clipfrac: vf_clip / vf_n,
        approxkl: kl_sum / n,
        ratio_mean: ratio_sum / n,
    }
}
