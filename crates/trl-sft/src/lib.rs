//! Supervised fine-tuning with TRL's `SFTTrainer` semantics: the same config keys and
//! defaults, the same tokenization and labels, the same loss and metrics.
//!
//! - [`config`]: `SFTConfig`'s method-specific keys.
//! - [`data`]: rows -> token ids and labels (EOS, completion-only and assistant-only loss,
//!   truncation, BFD packing).
//! - [`loss`]: the pure NLL / DFT loss over label log-probs.
//! - [`trainer`]: the [`trl_core::train::Method`] that plugs these into core's loop.

pub mod config;
pub mod data;
pub mod loss;
pub mod trainer;

pub use config::SftConfig;
pub use trainer::SftMethod;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod parity_tests;
