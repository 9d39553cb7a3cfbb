//! GRPO policy losses (filled in by the grpo-loss work).
