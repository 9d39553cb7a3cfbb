//! Rewards -> advantages (filled in by the grpo-loss work).
