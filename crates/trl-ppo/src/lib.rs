//! Proximal Policy Optimization with a reward model and a value model, following TRL 1.12's
//! `PPOTrainer` (TRL removed PPO after 1.12; `trl/experimental/ppo/ppo_trainer.py`).
//!
//! - [`config`]: `PPOConfig`'s keys and the batch-size arithmetic.
//! - [`response`]: truncation after the stop token, sequence lengths, padding masks.
//! - [`masked`]: masked mean / variance / whitening.
//! - [`gae`]: KL-shaped rewards, GAE advantages and returns.
//! - [`loss`]: the clipped policy and value losses and their statistics.

pub mod config;
pub mod gae;
pub mod loss;
pub mod masked;
pub mod response;

pub use config::{KlEstimator, PpoConfig};

#[cfg(test)]
mod math_parity_tests;
