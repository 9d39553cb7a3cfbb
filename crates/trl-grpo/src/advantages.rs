//! Rewards -> advantages, as TRL 1.16's `_generate_and_score_completions` forms them: GRPO's
//! group-relative advantages (group / batch / no scaling, two multi-objective aggregations)
//! and RLOO's leave-one-out baseline (in [`rloo`]). Pure f64 functions over the generation
//! batch, rows in TRL's order: `num_generations` consecutive rows per prompt.
//!
//! A reward of NaN means "this function gave no reward" (TRL's `None`); a row with no reward
//! at all is unscorable: it is left out of every statistic and gets advantage 0.

mod rloo;
mod stats;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use trl_core::Result;
use trl_core::train::args_check::check::option_error;

pub use rloo::{RlooAdvantageConfig, SequenceKl, rloo_advantages};
use stats::{is_close_to_zero, nanmean, nanstd};

/// `scale_rewards`: what a group's centred rewards are divided by (plus 1e-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// The group's standard deviation (GRPO).
    Group,
    /// The whole generation batch's standard deviation (PPO Lite, arXiv:2508.08221).
    Batch,
    /// No scaling (Dr. GRPO, arXiv:2503.20783).
    None,
}

/// `multi_objective_aggregation`: how several reward functions become one advantage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultiObjectiveAggregation {
    /// Weighted sum of the rewards, then group-relative scaling (`scale_rewards`).
    SumThenNormalize,
    /// GDPO (arXiv:2601.05242): each function normalised within its group, weighted sum, then
    /// normalised over the batch (`scale_rewards` only decides nothing here, as in TRL).
    NormalizeThenSum,
}

/// Advantages of a generation batch and TRL's reward metrics for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// `[N]` one per completion (0 for unscorable rows).
    pub advantages: Vec<f64>,
    /// `[N]` weighted reward sums (NaN for unscorable rows): what `completions.jsonl` logs.
    pub rewards: Vec<f64>,
    /// `[N]` whether the scale this row was divided by is zero (`frac_reward_zero_std`).
    pub is_std_zero: Vec<bool>,
    /// Per reward function: nan-mean and nan-std (unbiased) over the batch.
    pub func_mean: Vec<f64>,
    pub func_std: Vec<f64>,
    /// nan-mean and nan-std of `rewards` (TRL's `reward` and `reward_std`).
    pub reward_mean: f64,
    pub reward_std: f64,
    /// Fraction of rows whose scale is zero (TRL's `frac_reward_zero_std`).
    pub frac_reward_zero_std: f64,
    /// RLOO with `beta != 0`: the masked mean per-token KL (TRL's `kl`); `None` otherwise.
    pub kl: Option<f64>,
}

impl Advantages {
    /// TRL's metric names and values: `rewards/<name>/mean|std`, `reward`, `reward_std`,
    /// `frac_reward_zero_std` (and `kl` for RLOO with `beta != 0`). `names` are the reward
    /// functions' names in column order.
    pub fn metrics(&self, names: &[String]) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        if let Some(kl) = self.kl {
            out.push(("kl".to_string(), kl));
        }
        for ((name, mean), std) in names.iter().zip(&self.func_mean).zip(&self.func_std) {
            out.push((format!("rewards/{name}/mean"), *mean));
            out.push((format!("rewards/{name}/std"), *std));
        }
        out.push(("reward".into(), self.reward_mean));
        out.push(("reward_std".into(), self.reward_std));
        out.push(("frac_reward_zero_std".into(), self.frac_reward_zero_std));
        out
    }
}

/// GRPO's advantages. `rewards_per_func`: `[N][F]` (NaN = no reward), `weights`: `[F]`
/// (`reward_weights`, all 1.0 by default). Errors when `N` is not a multiple of
/// `num_generations` or a row / the weights do not have `F` entries.
pub fn grpo_advantages(
    rewards_per_func: &[Vec<f64>],
    weights: &[f64],
    num_generations: usize,
    scale_rewards: ScaleRewards,
    aggregation: MultiObjectiveAggregation,
) -> Result<Advantages> {
    check_table(rewards_per_func, weights, num_generations)?;
    let unscorable = unscorable_rows(rewards_per_func);
    let (advantages, std_rewards) = match aggregation {
        MultiObjectiveAggregation::SumThenNormalize => {
            let rewards = weighted_sums(rewards_per_func, weights, &unscorable);
            sum_then_normalize(&rewards, num_generations, scale_rewards)
        }
        MultiObjectiveAggregation::NormalizeThenSum => {
            normalize_then_sum(rewards_per_func, weights, num_generations, &unscorable)
        }
    };
    let is_std_zero: Vec<bool> = std_rewards.iter().map(|&s| is_close_to_zero(s)).collect();
    let advantages = advantages
        .iter()
        .map(|&a| if a.is_nan() { 0.0 } else { a })
        .collect();
    Ok(summarize(
        rewards_per_func,
        weights,
        &unscorable,
        advantages,
        is_std_zero,
    ))
}

/// Centred on the group mean; divided by the group's or the batch's std unless `None`.
/// Returns the advantages (NaN for unscorable rows) and each row's std.
fn sum_then_normalize(rewards: &[f64], g: usize, scale: ScaleRewards) -> (Vec<f64>, Vec<f64>) {
    let group_means: Vec<f64> = rewards.chunks(g).map(nanmean).collect();
    let std_rewards: Vec<f64> = match scale {
        ScaleRewards::Group | ScaleRewards::None if g > 1 => rewards
            .chunks(g)
            .flat_map(|group| vec![nanstd(group); g])
            .collect(),
        ScaleRewards::Batch if rewards.len() > 1 => vec![nanstd(rewards); rewards.len()],
        _ => vec![0.0; rewards.len()],
    };
    let advantages = rewards
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let centred = r - group_means[i / g];
            match scale {
                ScaleRewards::None => centred,
                _ => centred / (std_rewards[i] + 1e-4),
            }
        })
        .collect();
    (advantages, std_rewards)
}

/// GDPO: per function and group `(r - mean) / (std + 1e-4)`, weighted nan-sum, then
/// `(x - nanmean) / (nanstd + 1e-4)` over the batch.
fn normalize_then_sum(
    table: &[Vec<f64>],
    weights: &[f64],
    g: usize,
    unscorable: &[bool],
) -> (Vec<f64>, Vec<f64>) {
    let funcs = weights.len();
    let mut normalized = vec![vec![0.0; funcs]; table.len()];
    for f in 0..funcs {
        for (start, group) in table.chunks(g).enumerate().map(|(k, c)| (k * g, c)) {
            let column: Vec<f64> = group.iter().map(|row| row[f]).collect();
            let mean = nanmean(&column);
            let std = if g > 1 { nanstd(&column) } else { 0.0 };
            for (i, value) in column.iter().enumerate() {
                normalized[start + i][f] = (value - mean) / (std + 1e-4);
            }
        }
    }
    let rewards = weighted_sums(&normalized, weights, unscorable);
    let std = if rewards.len() > 1 {
        nanstd(&rewards)
    } else {
        0.0
    };
    let mean = nanmean(&rewards);
    let advantages = rewards.iter().map(|r| (r - mean) / (std + 1e-4)).collect();
    (advantages, vec![std; rewards.len()])
}

/// Rows where every function returned no reward.
fn unscorable_rows(table: &[Vec<f64>]) -> Vec<bool> {
    table
        .iter()
        .map(|row| row.iter().all(|r| r.is_nan()))
        .collect()
}

/// `nansum(row * weights)` per row; NaN for unscorable rows.
fn weighted_sums(table: &[Vec<f64>], weights: &[f64], unscorable: &[bool]) -> Vec<f64> {
    table
        .iter()
        .zip(unscorable)
        .map(|(row, &skip)| {
            if skip {
                return f64::NAN;
            }
            row.iter()
                .zip(weights)
                .map(|(r, w)| r * w)
                .filter(|x| !x.is_nan())
                .sum()
        })
        .collect()
}

/// The metrics part shared by GRPO and RLOO.
fn summarize(
    table: &[Vec<f64>],
    weights: &[f64],
    unscorable: &[bool],
    advantages: Vec<f64>,
    is_std_zero: Vec<bool>,
) -> Advantages {
    let column = |f: usize| table.iter().map(|row| row[f]).collect::<Vec<_>>();
    let rewards = weighted_sums(table, weights, unscorable);
    let zero = is_std_zero.iter().filter(|&&z| z).count() as f64;
    Advantages {
        advantages,
        func_mean: (0..weights.len()).map(|f| nanmean(&column(f))).collect(),
        func_std: (0..weights.len()).map(|f| nanstd(&column(f))).collect(),
        reward_mean: nanmean(&rewards),
        reward_std: nanstd(&rewards),
        frac_reward_zero_std: zero / is_std_zero.len().max(1) as f64,
        is_std_zero,
        rewards,
        kl: None,
    }
}

/// The table's shape against `weights` and `num_generations`.
fn check_table(table: &[Vec<f64>], weights: &[f64], num_generations: usize) -> Result<()> {
    if num_generations == 0 || !table.len().is_multiple_of(num_generations) {
        return Err(option_error(
            "num_generations",
            format!(
                "{num_generations} does not divide the {} rewarded completions into whole groups",
                table.len()
            ),
        ));
    }
    if let Some((i, row)) = table
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != weights.len())
    {
        return Err(option_error(
            "reward_weights",
            format!(
                "{} weights for {} reward functions (completion {i} has {} rewards)",
                weights.len(),
                row.len(),
                row.len()
            ),
        ));
    }
    Ok(())
}
