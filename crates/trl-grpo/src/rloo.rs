//! What RLOO does differently from GRPO (TRL 1.16's `RLOOTrainer`): the KL to the reference
//! is folded into the reward (per-sequence sum of `old - ref` log-probs, times `beta`), the
//! baseline is the mean reward of the other completions of the prompt, and the loss clips one
//! importance ratio per sequence.

use burn::tensor::{Tensor, TensorData};
use trl_core::train::StepMetrics;

use crate::advantages::{Advantages, RlooAdvantageConfig, rloo_advantages};
use crate::rloo_config::RlooOptions;
use crate::rollout::RolloutRow;
use crate::trainer::GrpoMethod;

impl GrpoMethod {
    /// RLOO's advantages of a generation batch (rows carry old and reference log-probs) and
    /// its generation metrics (`kl` when `beta != 0`, and the reward metrics).
    pub(crate) fn rloo_advantages(
        &self,
        table: &[Vec<f64>],
        rows: &mut [RolloutRow],
        options: RlooOptions,
    ) -> (Advantages, Vec<(String, f64)>) {
        let mut metrics = Vec::new();
        let kl: Option<Vec<f64>> = (self.config.beta != 0.0).then(|| {
            let (sum, count, per_sequence) = sequence_kl(rows);
            metrics.push(("kl".to_string(), sum / count.max(1.0)));
            per_sequence
        });
        // The reference log-probs served the KL only: the loss does not read them.
        rows.iter_mut().for_each(|r| r.ref_logps = None);
        let config = RlooAdvantageConfig {
            weights: self.reward_weights.clone(),
            num_generations: self.config.num_generations,
            beta: self.config.beta,
            normalize_advantages: options.normalize_advantages,
            reward_clip_range: options.reward_clip_range,
        };
        let advantages = rloo_advantages(table, kl.as_deref(), &config);
        for (f, name) in self.reward_names.iter().enumerate() {
            metrics.push((format!("rewards/{name}/mean"), advantages.function_mean[f]));
            metrics.push((format!("rewards/{name}/std"), advantages.function_std[f]));
        }
        metrics.push(("reward".into(), advantages.reward_mean));
        metrics.push(("reward_std".into(), advantages.reward_std));
        metrics.push(("frac_reward_zero_std".into(), advantages.frac_reward_zero_std));
        (advantages, metrics)
    }
}

/// `(Σ kl over masked tokens, masked tokens, per-sequence KL sums)` with the first-order
/// estimate `old - ref` (RLOO paper's choice; it can be negative per token).
fn sequence_kl(rows: &[RolloutRow]) -> (f64, f64, Vec<f64>) {
    let mut total = 0.0;
    let mut count = 0.0;
    let per_sequence = rows
        .iter()
        .map(|row| {
            let (Some(old), Some(reference)) = (&row.old_logps, &row.ref_logps) else {
                return 0.0;
            };
            if !row.trained {
                return 0.0;
            }
            let kl: f64 = old
                .iter()
                .zip(reference)
                .map(|(o, r)| f64::from(*o - *r))
                .sum();
            total += kl;
            count += old.len() as f64;
            kl
        })
        .collect();
    (total, count, per_sequence)
}

/// RLOO's loss on a micro-batch: `-min(r A, clip(r, 1 - ε_low, 1 + ε_high) A)` averaged over
/// sequences, with `r = exp(Σ_t logp - Σ_t old_logp)` per sequence, divided by the
/// accumulation steps (TRL returns it unscaled and the HF Trainer divides). Returns the loss
/// and TRL's `entropy` and `clip_ratio/*` metrics.
pub fn rloo_loss(
    per_token_logps: Tensor<2>,
    entropies: Tensor<2>,
    old_sequence_logps: &[f32],
    advantages: &[f32],
    mask: Tensor<2>,
    (epsilon_low, epsilon_high): (f64, f64),
    accumulation_steps: f64,
) -> (Tensor<1>, StepMetrics) {
    let [rows, _] = per_token_logps.dims();
    let device = per_token_logps.device();
    let logps = (per_token_logps * mask.clone()).sum_dim(1).reshape([rows]);
    let old = Tensor::<1>::from_data(TensorData::new(old_sequence_logps.to_vec(), [rows]), &device);
    let adv = Tensor::<1>::from_data(TensorData::new(advantages.to_vec(), [rows]), &device);
    let coef_1 = (logps - old).exp();
    let coef_2 = coef_1
        .clone()
        .clamp((1.0 - epsilon_low) as f32, (1.0 + epsilon_high) as f32);
    let loss1 = coef_1.clone() * adv.clone();
    let loss2 = coef_2 * adv;
    let per_sequence = loss1.clone().min_pair(loss2).neg();
    let loss = per_sequence.mean().div_scalar(accumulation_steps as f32);
    let mut metrics = StepMetrics::default();
    let mask_host: Vec<f32> = mask.into_data().convert::<f32>().to_vec().unwrap_or_default();
    let entropy_host: Vec<f32> = entropies.into_data().convert::<f32>().to_vec().unwrap_or_default();
    let tokens: f64 = mask_host.iter().map(|m| f64::from(*m)).sum();
    let entropy: f64 = entropy_host
        .iter()
        .zip(&mask_host)
        .map(|(e, m)| f64::from(e * m))
        .sum();
    metrics.push("entropy", entropy / tokens.max(1.0));
    let ratio: Vec<f32> = coef_1.into_data().convert::<f32>().to_vec().unwrap_or_default();
    let clip = clip_metrics(&ratio, advantages, epsilon_low, epsilon_high);
    for (name, value) in clip {
        metrics.push(&name, value);
    }
    (loss, metrics)
}

/// TRL's `clip_ratio/*` of one ratio per sequence.
fn clip_metrics(ratio: &[f32], advantages: &[f32], low: f64, high: f64) -> Vec<(String, f64)> {
    let n = ratio.len().max(1) as f64;
    let flags = |f: &dyn Fn(f64, f64) -> bool| -> Vec<f64> {
        ratio
            .iter()
            .zip(advantages)
            .map(|(r, a)| f64::from(u8::from(f(f64::from(*r), f64::from(*a)))))
            .collect()
    };
    let is_low = flags(&|r, a| r < 1.0 - low && a < 0.0);
    let is_high = flags(&|r, a| r > 1.0 + high && a > 0.0);
    let region: Vec<f64> = is_low.iter().zip(&is_high).map(|(l, h)| l.max(*h)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
    vec![
        ("clip_ratio/low_mean".into(), mean(&is_low)),
        ("clip_ratio/low_min".into(), is_low.iter().copied().fold(f64::INFINITY, f64::min)),
        ("clip_ratio/high_mean".into(), mean(&is_high)),
        ("clip_ratio/high_max".into(), is_high.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        ("clip_ratio/region_mean".into(), mean(&region)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_metrics_flag_low_and_high_sides() {
        let m = clip_metrics(&[0.5, 1.5, 1.0, 0.5], &[-1.0, 1.0, 1.0, 1.0], 0.2, 0.2);
        let get = |name: &str| m.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(get("clip_ratio/low_mean"), 0.25);
        assert_eq!(get("clip_ratio/high_max"), 1.0);
        assert_eq!(get("clip_ratio/region_mean"), 0.5);
    }

    #[test]
    fn sequence_kl_sums_old_minus_reference() {
        let row = RolloutRow {
            prompt_ids: vec![1],
            completion_ids: vec![2, 3],
            trained: true,
            advantage: 0.0,
            old_logps: Some(vec![-1.0, -2.0]),
            ref_logps: Some(vec![-1.5, -1.0]),
        };
        let (sum, count, per) = sequence_kl(&[row]);
        assert_eq!((sum, count), (-0.5, 2.0));
        assert_eq!(per, vec![-0.5]);
    }
}
