//! Direct Preference Optimization with TRL's `DPOTrainer` semantics and every loss variant
//! TRL 1.16 offers, plus the reference-free SimPO and ORPO objectives.
//!
//! - [`config`]: `DPOConfig`'s keys.
//! - [`data`]: preference rows -> prompt/chosen/rejected ids; pairs -> one concatenated batch.
//! - [`loss`]: every variant as a pure function of sequence log-probs.
//! - [`trainer`]: the [`trl_core::train::Method`] with the reference model.

pub mod config;
pub mod data;
pub mod loss;
pub mod trainer;

pub use config::DpoConfig;
pub use trainer::DpoMethod;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod loss_parity_tests;
#[cfg(test)]
mod parity_forward_tests;
#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod reference_free_tests;
