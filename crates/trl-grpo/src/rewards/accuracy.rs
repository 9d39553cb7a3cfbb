//! TRL's answer-checking rewards (`trl/rewards/accuracy_rewards.py`): `accuracy_reward`,
//! `reasoning_accuracy_reward` and `get_cosine_scaled_reward`, over [`super::math`]'s port of
//! math_verify.

use super::error::{Result, RewardError};
use super::math::{parse_answer, parse_gold, verify};
use super::{RewardFunction, RewardInput};

/// The columns the gold answer is read from, in order: TRL's `solution`, then `answer`.
pub const SOLUTION_COLUMNS: [&str; 2] = ["solution", "answer"];

/// `accuracy_reward` of one completion: `None` when the gold answer holds nothing math_verify
/// can find (TRL skips such examples), else 1 when the completion's answer (the last `\boxed{}`,
/// or LaTeX after "answer") equals it, 0 otherwise.
pub fn answer_accuracy(completion: &str, solution: &str) -> Option<f64> {
    let gold = parse_gold(solution);
    if gold.is_empty() {
        return None;
    }
    Some(if verify(&gold, &parse_answer(completion)) {
        1.0
    } else {
        0.0
    })
}

/// `reasoning_accuracy_reward` of one completion: 0 when no delimiter closes the reasoning,
/// else [`answer_accuracy`] of what follows the first delimiter found (its last occurrence).
pub fn reasoning_answer_accuracy(
    completion: &str,
    solution: &str,
    reasoning_delimiters: &[String],
) -> Option<f64> {
    let Some(delimiter) = reasoning_delimiters
        .iter()
        .find(|d| completion.contains(d.as_str()))
    else {
        return Some(0.0);
    };
    let answer = completion.rsplit(delimiter.as_str()).next().unwrap_or("");
    answer_accuracy(answer, solution)
}

/// The gold answer of a row: a string `solution` (or `answer`) column. A non-string value
/// gives `None`, as math_verify's `parse` fails on it and TRL then skips the example.
fn solution<'a>(input: &'a RewardInput, function: &str, row: usize) -> Result<Option<&'a str>> {
    let value = SOLUTION_COLUMNS
        .iter()
        .find_map(|column| input.columns.get(*column))
        .ok_or_else(|| {
            let columns: Vec<&String> = input.columns.keys().collect();
            RewardError::input(
                function,
                row,
                format!(
                    "needs the gold answer in a `solution` (or `answer`) column; the row has {columns:?}"
                ),
            )
        })?;
    Ok(value.as_str())
}

/// `accuracy_reward`: the completion's final answer against the row's `solution`.
#[derive(Debug, Clone, Default)]
pub struct AccuracyReward;

impl AccuracyReward {
    /// TRL's name for this reward in logs.
    pub const NAME: &'static str = "accuracy_reward";
}

impl RewardFunction for AccuracyReward {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        batch
            .iter()
            .enumerate()
            .map(|(row, input)| {
                let completion = input.completion_text(Self::NAME, row)?;
                Ok(solution(input, Self::NAME, row)?
                    .and_then(|gold| answer_accuracy(completion, gold)))
            })
            .collect()
    }
}

/// `reasoning_accuracy_reward`: [`AccuracyReward`] on the text after the reasoning, 0 when the
/// reasoning never ends.
#[derive(Debug, Clone)]
pub struct ReasoningAccuracyReward {
    reasoning_delimiters: Vec<String>,
}

impl ReasoningAccuracyReward {
    /// TRL's name for this reward in logs.
    pub const NAME: &'static str = "reasoning_accuracy_reward";

    /// `reasoning_delimiters` defaults to `["</think>"]`, as TRL's.
    pub fn new(reasoning_delimiters: Option<Vec<String>>) -> Self {
        ReasoningAccuracyReward {
            reasoning_delimiters: reasoning_delimiters.unwrap_or_else(|| vec!["</think>".into()]),
        }
    }
}

impl RewardFunction for ReasoningAccuracyReward {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        batch
            .iter()
            .enumerate()
            .map(|(row, input)| {
                let completion = input.completion_text(Self::NAME, row)?;
                let delimiters = &self.reasoning_delimiters;
                Ok(match solution(input, Self::NAME, row)? {
                    Some(gold) => reasoning_answer_accuracy(completion, gold, delimiters),
                    // An unreadable gold skips the example, but incomplete reasoning scores 0 first.
                    None if delimiters.iter().any(|d| completion.contains(d.as_str())) => None,
                    None => Some(0.0),
                })
            })
            .collect()
    }
}

/// The bounds of `get_cosine_scaled_reward` (Appendix C.1 of
/// <https://huggingface.co/papers/2502.03373>), TRL's defaults in [`Default`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineBounds {
    /// Reward of a wrong completion at the shortest length.
    pub min_value_wrong: f64,
    /// Reward of a wrong completion at the longest length.
    pub max_value_wrong: f64,
    /// Reward of a correct completion at the longest length.
    pub min_value_correct: f64,
    /// Reward of a correct completion at the shortest length.
    pub max_value_correct: f64,
}

impl Default for CosineBounds {
    fn default() -> Self {
        CosineBounds {
            min_value_wrong: -1.0,
            max_value_wrong: -0.5,
            min_value_correct: 0.5,
            max_value_correct: 1.0,
        }
    }
}

/// The cosine-scaled reward of a completion of `length` tokens that is `correct` or not:
/// shorter correct answers earn more, shorter wrong ones lose more; past `max_len` it stays at
/// the long-length bound.
pub fn cosine_scaled(correct: bool, length: usize, max_len: usize, bounds: CosineBounds) -> f64 {
    let progress = (length as f64 / max_len as f64).min(1.0);
    let cosine = (progress * std::f64::consts::PI).cos();
    let (min, max) = if correct {
        (bounds.min_value_correct, bounds.max_value_correct)
    } else {
        (bounds.max_value_wrong, bounds.min_value_wrong)
    };
    min + 0.5 * (max - min) * (1.0 + cosine)
}

/// `get_cosine_scaled_reward(max_len, ...)`, logged as `cosine_scaled_reward`.
#[derive(Debug, Clone)]
pub struct CosineScaledReward {
    max_len: usize,
    bounds: CosineBounds,
}

impl CosineScaledReward {
    /// TRL's name for this reward in logs.
    pub const NAME: &'static str = "cosine_scaled_reward";

    /// `max_len` 0 is refused: TRL would divide by it.
    pub fn new(max_len: usize, bounds: CosineBounds) -> Result<Self> {
        if max_len == 0 {
            return Err(RewardError::Params {
                function: Self::NAME.into(),
                message: "max_len must be at least 1".into(),
            });
        }
        Ok(CosineScaledReward { max_len, bounds })
    }
}

impl RewardFunction for CosineScaledReward {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        let correct = AccuracyReward.score(batch)?;
        Ok(correct
            .into_iter()
            .zip(batch)
            .map(|(correct, input)| {
                let length = input.completion_ids.len();
                correct.map(|c| cosine_scaled(c == 1.0, length, self.max_len, self.bounds))
            })
            .collect())
    }
}
