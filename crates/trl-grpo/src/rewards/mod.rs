//! Reward functions (filled in by the rewards work).
