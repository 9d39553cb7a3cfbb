//! RLOO's advantages (TRL 1.16's `RLOOTrainer._generate_and_score_completions`; Ahmadian et
//! al. 2024, arXiv:2402.14740): reward minus the mean reward of the other completions of the
//! same prompt, with the sequence KL to the reference folded into the reward.

use trl_core::train::args_check::check::option_error;
use trl_core::{Error, Result};

use super::stats::{is_close_to_zero, nanmean, nanstd};
use super::{Advantages, check_table, summarize, unscorable_rows, weighted_sums};

/// The `RLOOConfig` options the advantages read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RlooAdvantageConfig {
    /// KL coefficient (RLOOConfig's default 0.05): `reward -= beta * Σ_t (old - ref)`.
    pub beta: f64,
    /// Clamp of the weighted reward sum before the KL penalty, `(min, max)`.
    pub reward_clip_range: Option<(f64, f64)>,
    /// Standardise the advantages over the batch (mean 0, std 1; `+ 1e-4`).
    pub normalize_advantages: bool,
}

impl Default for RlooAdvantageConfig {
    /// `RLOOConfig()`'s values.
    fn default() -> Self {
        RlooAdvantageConfig {
            beta: 0.05,
            reward_clip_range: None,
            normalize_advantages: false,
        }
    }
}

/// Per completion: `Σ_t (old - ref) * mask` (RLOO's first-order KL estimate, which may be
/// negative) and its token count, for the reward penalty and the `kl` metric.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceKl {
    /// `[N]`.
    pub sums: Vec<f64>,
    /// `[N]` completion-mask tokens.
    pub tokens: Vec<f64>,
}

impl SequenceKl {
    /// From row-major `[N, T]` host copies of the generation-time policy log-probs, the
    /// reference log-probs and the completion mask (`width` = `T`).
    pub fn from_token_logps(old: &[f32], reference: &[f32], mask: &[f32], width: usize) -> Self {
        let rows = |values: &[f32]| {
            values
                .chunks(width.max(1))
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
        };
        let (old, reference, mask) = (rows(old), rows(reference), rows(mask));
        let sums = old
            .iter()
            .zip(&reference)
            .zip(&mask)
            .map(|((o, r), m)| {
                o.iter()
                    .zip(r)
                    .zip(m)
                    .map(|((o, r), m)| f64::from((o - r) * m))
                    .sum()
            })
            .collect();
        let tokens = mask
            .iter()
            .map(|m| m.iter().map(|&x| f64::from(x)).sum())
            .collect();
        SequenceKl { sums, tokens }
    }

    /// TRL's `kl` metric: total KL over total tokens (`/ max(tokens, 1)`).
    pub fn mean_per_token(&self) -> f64 {
        self.sums.iter().sum::<f64>() / self.tokens.iter().sum::<f64>().max(1.0)
    }
}

/// RLOO's advantages. `kl` is required iff `cfg.beta != 0` (one entry per completion).
pub fn rloo_advantages(
    rewards_per_func: &[Vec<f64>],
    weights: &[f64],
    num_generations: usize,
    cfg: &RlooAdvantageConfig,
    kl: Option<&SequenceKl>,
) -> Result<Advantages> {
    check_table(rewards_per_func, weights, num_generations)?;
    let g = num_generations;
    let unscorable = unscorable_rows(rewards_per_func);
    let mut rewards = weighted_sums(rewards_per_func, weights, &unscorable);
    if let Some((low, high)) = cfg.reward_clip_range {
        if low > high {
            return Err(option_error(
                "reward_clip_range",
                format!("({low}, {high}): min is above max"),
            ));
        }
        rewards.iter_mut().for_each(|r| *r = r.clamp(low, high));
    }
    let kl = match (cfg.beta != 0.0, kl) {
        (false, _) => None,
        (true, Some(kl)) if kl.sums.len() == rewards.len() => Some(kl),
        (true, _) => {
            return Err(Error::Data {
                message: format!(
                    "RLOO advantages: beta = {} needs one sequence KL per completion ({})",
                    cfg.beta,
                    rewards.len()
                ),
            });
        }
    };
    if let Some(kl) = kl {
        rewards
            .iter_mut()
            .zip(&kl.sums)
            .for_each(|(r, k)| *r -= cfg.beta * k);
    }
    let mut advantages = leave_one_out(&rewards, g);
    if cfg.normalize_advantages {
        let (mean, std) = (nanmean(&advantages), nanstd(&advantages));
        advantages
            .iter_mut()
            .for_each(|a| *a = (*a - mean) / (std + 1e-4));
    }
    advantages
        .iter_mut()
        .filter(|a| a.is_nan())
        .for_each(|a| *a = 0.0);
    let is_std_zero = rewards
        .chunks(g)
        .flat_map(|group| {
            let std = if g > 1 { nanstd(group) } else { 0.0 };
            vec![is_close_to_zero(std); g]
        })
        .collect();
    let mut out = summarize(
        rewards_per_func,
        weights,
        &unscorable,
        advantages,
        is_std_zero,
    );
    out.kl = kl.map(SequenceKl::mean_per_token);
    Ok(out)
}

/// `r_i - mean of the group's other scorable rewards`; NaN for unscorable rows and for the
/// only scorable row of a group (0/0), all zeros when `g == 1`.
fn leave_one_out(rewards: &[f64], g: usize) -> Vec<f64> {
    if g <= 1 {
        return vec![0.0; rewards.len()];
    }
    // In float32, as TRL's tensors are: a reward equal to its siblings' mean must give an
    // advantage of exactly 0 (not ±1e-17), or the clip metrics' `advantages < 0` test differs.
    rewards
        .chunks(g)
        .flat_map(|group| {
            let group: Vec<f32> = group.iter().map(|&r| r as f32).collect();
            let scorable = group.iter().filter(|r| !r.is_nan()).count() as f32;
            let sum: f32 = group.iter().filter(|r| !r.is_nan()).sum();
            group
                .into_iter()
                .map(move |r| f64::from(r - (sum - r) / (scorable - 1.0)))
                .collect::<Vec<_>>()
        })
        .collect()
}
