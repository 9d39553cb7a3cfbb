//! Online RL from rewards with TRL 1.16's `GRPOTrainer` and `RLOOTrainer` semantics: the
//! policy generates `num_generations` completions per prompt, reward functions score them,
//! group-relative advantages weight a clipped policy-gradient loss.
//!
//! - [`config`], [`rloo_config`]: `GRPOConfig` / `RLOOConfig` keys, TRL's defaults and checks.
//! - [`data`]: prompt-only rows -> tokenized prompts (+ the columns rewards read).
//! - [`rollout`], [`generation_batch`], [`logps`]: generation, scoring and log-probs.
//! - [`loss`]: every GRPO loss type (and RLOO's) as a pure function of per-token log-probs.
//! - [`advantages`]: rewards -> advantages (group/batch scaling, multi-objective
//!   aggregation, RLOO's leave-one-out baseline).
//! - [`rewards`]: reward functions (built-in, reward model, external command).
//! - [`trainer`]: the [`trl_core::train::Method`] with the rollout buffer; `eval` its
//!   evaluation (TRL's eval mode, `num_generations_eval`).

pub mod advantages;
pub mod completion_log;
pub mod config;
pub mod data;
mod eval;
mod generation_batch;
pub mod logps;
pub mod loss;
mod loss_options;
pub mod rewards;
pub mod rloo;
pub mod rloo_config;
pub mod rollout;
pub mod rollout_state;
pub mod scoring;
mod shard;
pub mod trainer;

pub use config::GrpoConfig;
pub use rloo_config::{RlooConfig, RlooOptions};
pub use trainer::{GrpoMethod, GrpoParts, Variant};

#[cfg(test)]
mod eval_replay_tests;
#[cfg(test)]
mod learning_tests;
#[cfg(test)]
mod replay_tests;
