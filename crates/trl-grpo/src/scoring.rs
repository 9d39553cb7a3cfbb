//! Scoring a generation batch: every reward function on every completion (TRL's
//! `_calculate_rewards`), then advantages and the reward metrics TRL logs.

use serde_json::Value;
use trl_core::{Error, Result};

use crate::advantages::{AdvantageConfig, Advantages, grpo_advantages};
use crate::data::PromptExample;
use crate::rewards::{RewardFunction, RewardInput};

/// A decoded completion with what the reward functions read.
pub struct ScoredCompletion<'a> {
    pub example: &'a PromptExample,
    /// A string, or `[{"role": "assistant", "content": ...}]` for conversations.
    pub completion: Value,
    pub completion_ids: &'a [u32],
}

/// `[rows][functions]` rewards, NaN where a function gave none.
pub fn rewards_per_function(
    functions: &mut [Box<dyn RewardFunction>],
    completions: &[ScoredCompletion],
) -> Result<Vec<Vec<f64>>> {
    let inputs: Vec<RewardInput> = completions
        .iter()
        .map(|c| {
            RewardInput::new(
                c.example.prompt.clone(),
                c.completion.clone(),
                c.completion_ids.to_vec(),
                c.example.columns.clone(),
            )
        })
        .collect();
    let mut table = vec![vec![f64::NAN; functions.len()]; completions.len()];
    for (f, function) in functions.iter_mut().enumerate() {
        let scores = function.score(&inputs)?;
        if scores.len() != completions.len() {
            return Err(Error::Generation {
                message: format!(
                    "reward function '{}' returned {} rewards for {} completions; it must \
                     return one per completion",
                    function.name(),
                    scores.len(),
                    completions.len()
                ),
            });
        }
        for (row, score) in scores.into_iter().enumerate() {
            table[row][f] = score.unwrap_or(f64::NAN);
        }
    }
    Ok(table)
}

/// Advantages of a generation batch and TRL's reward metrics (`rewards/<name>/mean|std`,
/// `reward`, `reward_std`, `frac_reward_zero_std`).
pub fn advantages_and_metrics(
    table: &[Vec<f64>],
    names: &[String],
    config: &AdvantageConfig,
) -> (Advantages, Vec<(String, f64)>) {
    let advantages = grpo_advantages(table, config);
    let mut metrics = Vec::new();
    for (f, name) in names.iter().enumerate() {
        metrics.push((format!("rewards/{name}/mean"), advantages.function_mean[f]));
        metrics.push((format!("rewards/{name}/std"), advantages.function_std[f]));
    }
    metrics.push(("reward".into(), advantages.reward_mean));
    metrics.push(("reward_std".into(), advantages.reward_std));
    metrics.push((
        "frac_reward_zero_std".into(),
        advantages.frac_reward_zero_std,
    ));
    (advantages, metrics)
}
