//! Online RL from rewards with TRL 1.16's `GRPOTrainer` and `RLOOTrainer` semantics: the
//! policy generates `num_generations` completions per prompt, reward functions score them,
//! group-relative advantages weight a clipped policy-gradient loss.
//!
//! - [`loss`]: every GRPO loss type as a pure function of per-token log-probs.
//! - [`advantages`]: rewards -> advantages (group/batch scaling, multi-objective
//!   aggregation, RLOO's leave-one-out baseline).
//! - [`rewards`]: reward functions (built-in, reward model, external command).

pub mod advantages;
pub mod loss;
pub mod rewards;
