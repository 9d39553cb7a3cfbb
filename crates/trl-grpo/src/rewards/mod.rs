//! Reward functions for GRPO and RLOO: what scores each completion. Several run at once; the
//! trainer weights them by `reward_weights` and logs each as `rewards/<name>/mean|std`.
//!
//! A `--reward_funcs` entry is one of three things ([`parse_reward_func`]):
//! - a built-in name ([`builtin`]): TRL's `accuracy_reward`, `reasoning_accuracy_reward`,
//!   `think_format_reward`, `get_soft_overlong_punishment`, `get_repetition_penalty_reward`,
//!   `get_cosine_scaled_reward`, each as `trl/rewards` defines it;
//! - `cmd:<command line>`: an external program speaking JSON lines ([`command`]);
//! - anything else: a reward model folder or hub id ([`model`]).
//!
//! Rust users implement [`RewardFunction`] directly. [`rewards_per_func`] runs them all over
//! a batch (TRL's `rewards_per_func`: `[completion][function]`, NaN for "no reward").

pub mod accuracy;
pub mod builtin;
pub mod command;
pub mod error;
pub mod format;
pub mod input;
pub mod length;
pub mod math;
pub mod model;
pub mod table;

#[cfg(test)]
mod command_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod reference_tests;

use std::time::Duration;

use burn::tensor::Device;
use serde_json::{Map, Value};

pub use builtin::{BUILTIN_NAMES, BuiltinParams, builtin, is_builtin};
pub use command::{COMMAND_PREFIX, CommandReward};
pub use error::{Result, RewardError};
pub use input::{Content, RewardInput};
pub use model::RewardModelReward;
pub use table::{rewards_per_func, rows_without_reward};

/// A reward function: scores a batch of completions, one value per completion.
///
/// `None` is TRL's `None`: "no reward for this completion" (NaN in the trainer, ignored by the
/// weighted sum's `nansum`). `score` takes `&mut self` so a function may keep state (a running
/// process, a cache). A returned list must have one entry per input. `Send`, so a trainer may
/// score on another thread (while the policy generates, say).
pub trait RewardFunction: Send {
    /// The name it is logged under (`rewards/<name>/mean`), TRL's `__name__` for built-ins.
    fn name(&self) -> &str;
    /// Rewards of `batch`, in its order.
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>>;
}

/// What building a reward function from a `--reward_funcs` entry may need.
#[derive(Debug, Clone)]
pub struct RewardContext {
    /// Where a reward model runs.
    pub device: Device,
    /// `reward_timeout`: how long an external command may take to answer one batch.
    pub reward_timeout: Duration,
    /// The training config's `chat_template_kwargs`, given to a reward model's chat template.
    pub chat_template_kwargs: Map<String, Value>,
    /// Sequences per reward-model forward pass.
    pub reward_model_batch_size: usize,
    /// The built-ins' parameters.
    pub builtin: BuiltinParams,
}

impl RewardContext {
    /// `reward_timeout` 60 s, no chat template kwargs, 16 sequences per reward-model forward,
    /// TRL's built-in parameters.
    pub fn new(device: Device) -> Self {
        RewardContext {
            device,
            reward_timeout: Duration::from_secs(60),
            chat_template_kwargs: Map::new(),
            reward_model_batch_size: 16,
            builtin: BuiltinParams::default(),
        }
    }
}

/// Builds the reward function a `--reward_funcs` entry names: `cmd:<command line>` starts
/// that program; a built-in name gives the built-in; anything else is loaded as a reward
/// model (a local folder or a hub id). A bare word that is neither a built-in nor an existing
/// folder is an error listing the built-in names.
pub fn parse_reward_func(spec: &str, ctx: &RewardContext) -> Result<Box<dyn RewardFunction>> {
    let spec = spec.trim();
    if let Some(command_line) = spec.strip_prefix(COMMAND_PREFIX) {
        return Ok(Box::new(CommandReward::spawn(
            command_line,
            ctx.reward_timeout,
        )?));
    }
    if is_builtin(spec) {
        return builtin(spec, &ctx.builtin);
    }
    let looks_like_model = std::path::Path::new(spec).exists() || spec.contains('/');
    if !looks_like_model {
        return Err(RewardError::Unknown {
            spec: spec.to_string(),
            known: BUILTIN_NAMES.join(", "),
        });
    }
    Ok(Box::new(RewardModelReward::load(
        spec,
        &ctx.device,
        ctx.chat_template_kwargs.clone(),
        ctx.reward_model_batch_size,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_dispatch_to_builtins_commands_and_errors() {
        let ctx = RewardContext::new(Device::default());
        let builtin = parse_reward_func(" get_soft_overlong_punishment ", &ctx).expect("built-in");
        assert_eq!(builtin.name(), "soft_overlong_punishment_reward");
        let script = "import sys; [print('[0.5]', flush=True) for _ in sys.stdin]";
        let mut command =
            parse_reward_func(&format!("cmd:python3 -c \"{script}\""), &ctx).expect("command");
        let input = RewardInput::new(
            Content::Text("Q".into()),
            Content::Text("A".into()),
            vec![1],
            &Map::new(),
        );
        assert_eq!(command.score(&[input]).expect("score"), vec![Some(0.5)]);
        let error = parse_reward_func("my_lib.rewards.fn", &ctx)
            .err()
            .expect("unknown")
            .to_string();
        assert!(
            error.contains("accuracy_reward") && error.contains("cmd:"),
            "{error}"
        );
    }
}
