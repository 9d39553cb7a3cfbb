//! Every reward function over one batch: TRL's `rewards_per_func` (`_calculate_rewards`),
//! one row per completion, one column per function, `None` as NaN.

use super::error::{Result, RewardError};
use super::{RewardFunction, RewardInput};

/// Scores `batch` with each function in turn and returns `[completion][function]` rewards as
/// float32 (TRL's `rewards_per_func` dtype), NaN where a function gave no reward. A function
/// that returns the wrong number of rewards is an error naming it, as in TRL.
pub fn rewards_per_func(
    functions: &mut [Box<dyn RewardFunction>],
    batch: &[RewardInput],
) -> Result<Vec<Vec<f32>>> {
    let mut table = vec![vec![f32::NAN; functions.len()]; batch.len()];
    for (column, function) in functions.iter_mut().enumerate() {
        let rewards = function.score(batch)?;
        if rewards.len() != batch.len() {
            return Err(RewardError::Params {
                function: function.name().to_string(),
                message: format!(
                    "returned {} rewards, but {} were expected (one per prompt-completion pair)",
                    rewards.len(),
                    batch.len()
                ),
            });
        }
        for (row, reward) in rewards.into_iter().enumerate() {
            table[row][column] = reward.map_or(f32::NAN, |r| r as f32);
        }
    }
    Ok(table)
}

/// The rows (completion indices) where every function gave no reward: TRL warns about the
/// first of them, since such a completion's weighted reward is NaN-summed to 0.
pub fn rows_without_reward(table: &[Vec<f32>]) -> Vec<usize> {
    table
        .iter()
        .enumerate()
        .filter(|(_, row)| !row.is_empty() && row.iter().all(|r| r.is_nan()))
        .map(|(index, _)| index)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::rewards::builtin::{BuiltinParams, builtin};
    use crate::rewards::input::Content;

    struct Fixed(Vec<Option<f64>>);

    impl RewardFunction for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn score(&mut self, _batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
            Ok(self.0.clone())
        }
    }

    fn input(completion: &str, solution: &str) -> RewardInput {
        let mut row = Map::new();
        row.insert("solution".into(), json!(solution));
        RewardInput::new(
            Content::Text("Q".into()),
            Content::Text(completion.into()),
            vec![1, 2],
            &row,
        )
    }

    #[test]
    fn columns_follow_the_functions_and_none_is_nan() {
        let params = BuiltinParams::default();
        let mut functions = vec![
            builtin("accuracy_reward", &params).expect("accuracy"),
            builtin("think_format_reward", &params).expect("think"),
        ];
        let batch = [
            input(r"<think>x</think>\boxed{4}", "4"),
            input(r"\boxed{4}", "seven"),
        ];
        let table = rewards_per_func(&mut functions, &batch).expect("scores");
        assert_eq!(table[0], vec![1.0, 1.0]);
        assert!(table[1][0].is_nan());
        assert_eq!(table[1][1], 0.0);
        assert_eq!(rows_without_reward(&table), Vec::<usize>::new());
        assert_eq!(
            rows_without_reward(&[vec![f32::NAN, f32::NAN], vec![1.0, f32::NAN]]),
            vec![0]
        );
    }

    #[test]
    fn a_wrong_count_is_an_error_naming_the_function() {
        let mut functions: Vec<Box<dyn RewardFunction>> = vec![Box::new(Fixed(vec![Some(1.0)]))];
        let error = rewards_per_func(&mut functions, &[input("a", "1"), input("b", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("fixed") && error.contains("returned 1 rewards, but 2"),
            "{error}"
        );
    }
}
