//! Scoring a generation batch: every reward function on every completion (TRL's
//! `_calculate_rewards`), then advantages and the reward metrics TRL logs.

use serde_json::Value;
use trl_core::Result;

use crate::advantages::{Advantages, MultiObjectiveAggregation, ScaleRewards, grpo_advantages};
use crate::data::PromptExample;
use crate::rewards::{Content, RewardFunction, RewardInput, rewards_per_func, rows_without_reward};

/// A decoded completion with what the reward functions read.
pub struct ScoredCompletion<'a> {
    pub example: &'a PromptExample,
    /// A string, or `[{"role": "assistant", "content": ...}]` for conversations.
    pub completion: Value,
    pub completion_ids: &'a [u32],
}

/// `[rows][functions]` rewards (float32 values, as TRL's table), NaN where a function gave
/// none; warns, as TRL does, when every function gave none for a completion.
pub fn rewards_per_function(
    functions: &mut [Box<dyn RewardFunction>],
    completions: &[ScoredCompletion],
) -> Result<Vec<Vec<f64>>> {
    let inputs: Vec<RewardInput> = completions
        .iter()
        .map(|c| {
            RewardInput::new(
                content(&c.example.prompt),
                content(&c.completion),
                c.completion_ids.to_vec(),
                &c.example.columns,
            )
        })
        .collect();
    let table = rewards_per_func(functions, &inputs)?;
    if let Some(&row) = rows_without_reward(&table).first() {
        eprintln!(
            "warning: every reward function returned None for completion {row} ({:?}); such a \
             completion gets advantage 0",
            completions[row].completion
        );
    }
    Ok(table
        .into_iter()
        .map(|row| row.into_iter().map(f64::from).collect())
        .collect())
}

/// A prompt or completion as the reward functions take it.
fn content(value: &Value) -> Content {
    match value {
        Value::Array(messages) => Content::Messages(messages.clone()),
        Value::String(text) => Content::Text(text.clone()),
        other => Content::Text(other.to_string()),
    }
}

/// Advantages of a generation batch and TRL's reward metrics (`rewards/<name>/mean|std`,
/// `reward`, `reward_std`, `frac_reward_zero_std`).
pub fn advantages_and_metrics(
    table: &[Vec<f64>],
    names: &[String],
    config: &AdvantageConfig,
) -> Result<(Advantages, Vec<(String, f64)>)> {
    let advantages = grpo_advantages(
        table,
        &config.weights,
        config.num_generations,
        config.scale_rewards,
        config.aggregation,
    )?;
    let metrics = advantages.metrics(names);
    Ok((advantages, metrics))
}

/// GRPO's advantage settings.
#[derive(Debug, Clone)]
pub struct AdvantageConfig {
    pub weights: Vec<f64>,
    pub num_generations: usize,
    pub scale_rewards: ScaleRewards,
    pub aggregation: MultiObjectiveAggregation,
}
