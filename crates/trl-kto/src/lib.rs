//! Kahneman-Tversky Optimization with TRL's `KTOTrainer` semantics: unpaired (or unpaired
//! from paired) preference data, the in-batch KL baseline, desirable/undesirable weights.
//!
//! - [`config`]: `KTOConfig`'s keys.
//! - [`data`]: rows -> prompt/completion ids with labels and KL completions.
//! - [`loss`]: the pure loss.
//! - [`trainer`]: the [`trl_core::train::Method`].

pub mod config;
pub mod data;
pub mod loss;
pub mod trainer;

pub use config::KtoConfig;
pub use trainer::KtoMethod;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod loss_parity_tests;
#[cfg(test)]
mod parity_tests;
