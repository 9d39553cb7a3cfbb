//! Reward-model training with TRL's `RewardTrainer` semantics, and scoring with a trained model.
//!
//! A reward model is a `*ForSequenceClassification` model with one label: its score at the
//! last non-pad token of a conversation is the reward. Training uses preference pairs and the
//! Bradley–Terry objective, chosen and rejected scored in one concatenated forward pass.
//!
//! - [`config`]: `RewardConfig`'s keys.
//! - [`data`]: preference rows -> chosen/rejected token ids (over-long pairs dropped, as TRL);
//!   pairs -> one `[chosen..., rejected...]` batch.
//! - [`loss`]: the Bradley–Terry loss and the logged reward statistics, as pure functions.
//! - [`trainer`]: the [`trl_core::train::Method`] that plugs these into core's loop.
//! - [`score`]: rewards of tokenized sequences with a trained model (`trl score`).

pub mod config;
pub mod data;
pub mod error;
pub mod loss;
pub mod score;
pub mod trainer;

pub use config::RewardConfig;
pub use error::Error;
pub use trainer::RewardMethod;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod parity_tests;
