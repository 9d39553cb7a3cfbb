//! From a scored rollout to PPO's training targets, as TRL 1.12's `PPOTrainer.train()` computes
//! them inline (`ppo_trainer.py` l.757-798): invalid log-probs at padding, the per-token KL
//! penalty (k1 or k3) with the score added at the last real token, optional reward whitening,
//! GAE advantages by a reversed scan, returns, and masked whitening of the advantages.

use crate::config::KlEstimator;
use crate::masked::{Matrix, masked_fill, masked_whiten, not};
use crate::response::padding_mask;
use trl_core::Result;

/// What TRL writes into masked log-prob slots (`INVALID_LOGPROB`).
pub const INVALID_LOGPROB: f32 = 1.0;

/// The reward-shaping and GAE settings (PPOConfig's names).
#[derive(Debug, Clone, Copy)]
pub struct RewardSettings {
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    pub gamma: f64,
    pub lam: f64,
    pub whiten_rewards: bool,
}

/// One rollout's per-token numbers, `[rows][response_length]` each.
#[derive(Debug, Clone)]
pub struct RolloutInputs {
    /// Policy log-probs of the response tokens (at the rollout's temperature).
    pub logprobs: Matrix,
    /// Reference log-probs of the same tokens.
    pub ref_logprobs: Matrix,
    /// Value estimates before each response token.
    pub values: Matrix,
    /// One score per row (missing-EOS penalty already applied).
    pub scores: Vec<f32>,
    /// Index of each row's last real token (`sequence_lengths`, may be -1).
    pub sequence_lengths: Vec<i64>,
}

/// The training targets of a rollout and what the metrics need.
#[derive(Debug, Clone)]
pub struct RolloutTargets {
    /// Log-probs with `INVALID_LOGPROB` after the last real token.
    pub logprobs: Matrix,
    /// Values with 0 beyond one past the last real token.
    pub values: Matrix,
    pub kl: Matrix,
    pub non_score_reward: Matrix,
    pub rewards: Matrix,
    /// Whitened over the real tokens, 0 at padding.
    pub advantages: Matrix,
    pub returns: Matrix,
    /// True after the last real token.
    pub padding_mask: Vec<Vec<bool>>,
    /// True beyond one past the last real token.
    pub padding_mask_p1: Vec<Vec<bool>>,
}

/// The per-token KL estimate from `logr = ref - logprob`: k1 `-logr`, k3 `exp(logr) - 1 - logr`.
pub fn kl_per_token(
    logprobs: &[Vec<f32>],
    ref_logprobs: &[Vec<f32>],
    estimator: KlEstimator,
) -> Matrix {
    logprobs
        .iter()
        .zip(ref_logprobs)
        .map(|(row, refs)| {
            row.iter()
                .zip(refs)
                .map(|(&lp, &rp)| {
                    let logr = rp - lp;
                    match estimator {
                        KlEstimator::K1 => -logr,
                        KlEstimator::K3 => (logr.exp() - 1.0) - logr,
                    }
                })
                .collect()
        })
        .collect()
}

/// `-kl_coef * kl` with each row's score added at `sequence_length + 1` (or at
/// `sequence_length` when that is the last column): TRL's `rewards[actual_start, actual_end]`.
pub fn rewards_with_scores(
    non_score_reward: &[Vec<f32>],
    scores: &[f32],
    sequence_lengths: &[i64],
) -> Matrix {
    let mut rewards = non_score_reward.to_vec();
    for ((row, &score), &len) in rewards.iter_mut().zip(scores).zip(sequence_lengths) {
        let cols = row.len() as i64;
        let end = if len + 1 < cols { len + 1 } else { len };
        // a negative index counts from the end, as torch's advanced indexing
        let at = if end < 0 { end + cols } else { end };
        if let Some(slot) = row.get_mut(at as usize) {
            *slot += score;
        }
    }
    rewards
}

/// GAE by a reversed scan over response positions: `delta_t = r_t + gamma v_{t+1} - v_t`
/// (`v_T = 0`), `A_t = delta_t + gamma lam A_{t+1}`.
pub fn gae(rewards: &[Vec<f32>], values: &[Vec<f32>], gamma: f64, lam: f64) -> Matrix {
    let (gamma, decay) = (gamma as f32, (gamma * lam) as f32);
    rewards
        .iter()
        .zip(values)
        .map(|(r, v)| {
            let mut advantages = vec![0.0f32; r.len()];
            let mut last = 0.0f32;
            for t in (0..r.len()).rev() {
                let next = if t + 1 < r.len() { v[t + 1] } else { 0.0 };
                let delta = r[t] + gamma * next - v[t];
                last = delta + decay * last;
                advantages[t] = last;
            }
            advantages
        })
        .collect()
}

/// Everything `train()` computes between scoring and the PPO epochs.
pub fn rollout_targets(inputs: RolloutInputs, settings: &RewardSettings) -> Result<RolloutTargets> {
    let cols = inputs.logprobs.first().map_or(0, Vec::len);
    let padding = padding_mask(&inputs.sequence_lengths, cols, 0);
    let padding_p1 = padding_mask(&inputs.sequence_lengths, cols, 1);
    let (mut logprobs, mut ref_logprobs, mut values) =
        (inputs.logprobs, inputs.ref_logprobs, inputs.values);
    masked_fill(&mut logprobs, &padding, INVALID_LOGPROB);
    masked_fill(&mut ref_logprobs, &padding, INVALID_LOGPROB);
    masked_fill(&mut values, &padding_p1, 0.0);
    let kl = kl_per_token(&logprobs, &ref_logprobs, settings.kl_estimator);
    let coef = settings.kl_coef as f32;
    let non_score_reward: Matrix = kl
        .iter()
        .map(|row| row.iter().map(|&k| -coef * k).collect())
        .collect();
    let mut rewards =
        rewards_with_scores(&non_score_reward, &inputs.scores, &inputs.sequence_lengths);
    if settings.whiten_rewards {
        rewards = masked_whiten(&rewards, &not(&padding_p1), false)?;
        masked_fill(&mut rewards, &padding_p1, 0.0);
    }
    let raw = gae(&rewards, &values, settings.gamma, settings.lam);
    let returns: Matrix = raw
        .iter()
        .zip(&values)
        .map(|(a, v)| a.iter().zip(v).map(|(a, v)| a + v).collect())
        .collect();
    let mut advantages = masked_whiten(&raw, &not(&padding), true)?;
    masked_fill(&mut advantages, &padding, 0.0);
    Ok(RolloutTargets {
        logprobs,
        values,
        kl,
        non_score_reward,
        rewards,
        advantages,
        returns,
        padding_mask: padding,
        padding_mask_p1: padding_p1,
    })
}
