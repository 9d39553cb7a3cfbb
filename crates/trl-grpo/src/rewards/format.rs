//! TRL's `think_format_reward` (`trl/rewards/format_rewards.py`): 1 when the completion's
//! reasoning is enclosed in `<think>...</think>`, else 0.

use super::error::Result;
use super::{RewardFunction, RewardInput};

/// Whether `content` matches TRL's `^<think>(?!.*<think>)(.*?)</think>.*$` (`re.match`, DOTALL):
/// it starts with `<think>`, opens no second `<think>`, and closes with a `</think>`.
pub fn has_think_format(content: &str) -> bool {
    content
        .strip_prefix("<think>")
        .is_some_and(|rest| !rest.contains("<think>") && rest.contains("</think>"))
}

/// `think_format_reward`.
#[derive(Debug, Clone, Default)]
pub struct ThinkFormatReward;

impl ThinkFormatReward {
    /// TRL's name for this reward in logs.
    pub const NAME: &'static str = "think_format_reward";
}

impl RewardFunction for ThinkFormatReward {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        batch
            .iter()
            .enumerate()
            .map(|(row, input)| {
                let content = input.completion_text(Self::NAME, row)?;
                Ok(Some(if has_think_format(content) { 1.0 } else { 0.0 }))
            })
            .collect()
    }
}
