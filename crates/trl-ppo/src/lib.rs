//! Proximal Policy Optimization with a reward model and a value model, following TRL 1.12's
//! `PPOTrainer` (TRL removed PPO after 1.12; `trl/experimental/ppo/ppo_trainer.py`).
//!
//! - [`config`]: `PPOConfig`'s keys and the batch-size arithmetic.
//! - [`response`]: truncation after the stop token, sequence lengths, padding masks.
//! - [`masked`]: masked mean / variance / whitening.
//! - [`gae`]: KL-shaped rewards, GAE advantages and returns.
//! - [`loss`]: the clipped policy and value losses and their statistics.
//! - [`data`]: prompt-only rows -> prompt ids.
//! - [`forward`]: the policy / value / reward forwards over `query + response` rows.
//! - [`rollout`]: generation and scoring of one rollout batch.
//! - [`shard`]: a data-parallel rank's share of a rollout batch, gathered into the global one.
//! - [`stats`]: the per-rollout metrics.
//! - [`model`]: policy + value as one trained module, saved side by side.
//! - [`order`]: replaying recorded mini-batch permutations.
//! - [`update`]: one micro-batch's forward, losses and statistics.
//! - [`trainer`]: the [`trl_core::train::Method`].

pub mod config;
pub mod data;
pub mod forward;
pub mod gae;
pub mod loss;
pub mod masked;
pub mod model;
pub mod order;
pub mod response;
pub mod rollout;
pub mod shard;
pub mod stats;
pub mod trainer;
pub mod update;

pub use config::{BatchSizes, KlEstimator, PpoConfig, StopToken};
pub use model::{PolicyAdapter, PolicyAndValue};
pub use trainer::{PpoBatch, PpoMethod, PpoParts};

#[cfg(test)]
mod math_parity_tests;
#[cfg(test)]
mod replay_tests;
