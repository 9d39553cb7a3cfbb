//! Rewards of the completion's token ids alone: TRL's `get_soft_overlong_punishment` (DAPO's
//! length penalty) and `get_repetition_penalty_reward` (`trl/rewards/other_rewards.py`).

use std::collections::HashSet;

use super::error::{Result, RewardError};
use super::{RewardFunction, RewardInput};

/// DAPO's soft overlong punishment (Eq. 13 of <https://huggingface.co/papers/2503.14476>) for a
/// completion of `length` tokens: 0 up to `max_completion_len - soft_punish_cache`, then falling
/// linearly to -1 at `max_completion_len`, and -1 beyond.
pub fn soft_overlong_punishment(
    length: usize,
    max_completion_len: usize,
    soft_punish_cache: usize,
) -> f64 {
    let (length, max, cache) = (
        length as i64,
        max_completion_len as i64,
        soft_punish_cache as i64,
    );
    if length <= max - cache {
        0.0
    } else if length <= max {
        (max - cache - length) as f64 / cache as f64
    } else {
        -1.0
    }
}

/// The repetition penalty of "Demystifying Long Chain-of-Thought Reasoning" (Appendix C.2,
/// <https://huggingface.co/papers/2502.03373>): `(1 - unique n-grams / n-grams) * max_penalty`
/// over the token ids; 0 for completions shorter than `ngram_size`.
pub fn repetition_penalty(ids: &[u32], ngram_size: usize, max_penalty: f64) -> f64 {
    // Python's `zip(*[ids[i:] for i in range(0)])` is empty: a 0-gram "completion" is not
    // repetitive; `len(ids) < 0` never holds, so TRL would divide by zero there instead.
    if ids.len() < ngram_size || ngram_size == 0 {
        return 0.0;
    }
    let ngrams: Vec<&[u32]> = ids.windows(ngram_size).collect();
    let unique: HashSet<&[u32]> = ngrams.iter().copied().collect();
    let scaling = 1.0 - unique.len() as f64 / ngrams.len() as f64;
    if scaling == 0.0 {
        0.0
    } else {
        scaling * max_penalty
    }
}

/// `get_soft_overlong_punishment(max_completion_len, soft_punish_cache)`, logged as TRL logs it:
/// `soft_overlong_punishment_reward`.
#[derive(Debug, Clone)]
pub struct SoftOverlongPunishment {
    max_completion_len: usize,
    soft_punish_cache: usize,
}

impl SoftOverlongPunishment {
    /// TRL's name for this reward in logs (`rewards/<name>/mean`).
    pub const NAME: &'static str = "soft_overlong_punishment_reward";

    /// The two lengths of DAPO's penalty (TRL's `trl grpo` script uses 1280 and 256). A
    /// `soft_punish_cache` of 0 makes it a hard cut: 0 up to `max_completion_len`, -1 beyond.
    pub fn new(max_completion_len: usize, soft_punish_cache: usize) -> Self {
        SoftOverlongPunishment {
            max_completion_len,
            soft_punish_cache,
        }
    }
}

impl RewardFunction for SoftOverlongPunishment {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        Ok(batch
            .iter()
            .map(|input| {
                Some(soft_overlong_punishment(
                    input.completion_ids.len(),
                    self.max_completion_len,
                    self.soft_punish_cache,
                ))
            })
            .collect())
    }
}

/// `get_repetition_penalty_reward(ngram_size, max_penalty)`, logged as
/// `repetition_penalty_reward`.
#[derive(Debug, Clone)]
pub struct RepetitionPenalty {
    ngram_size: usize,
    max_penalty: f64,
}

impl RepetitionPenalty {
    /// TRL's name for this reward in logs.
    pub const NAME: &'static str = "repetition_penalty_reward";

    /// A positive `max_penalty` is refused, as TRL refuses it; so is an `ngram_size` of 0.
    pub fn new(ngram_size: usize, max_penalty: f64) -> Result<Self> {
        let refuse = |message: String| RewardError::Params {
            function: Self::NAME.into(),
            message,
        };
        if max_penalty > 0.0 || max_penalty.is_nan() {
            return Err(refuse(format!(
                "max_penalty {max_penalty} should not be positive"
            )));
        }
        if ngram_size == 0 {
            return Err(refuse("ngram_size must be at least 1".into()));
        }
        Ok(RepetitionPenalty {
            ngram_size,
            max_penalty,
        })
    }
}

impl RewardFunction for RepetitionPenalty {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        Ok(batch
            .iter()
            .map(|input| {
                Some(repetition_penalty(
                    &input.completion_ids,
                    self.ngram_size,
                    self.max_penalty,
                ))
            })
            .collect())
    }
}
