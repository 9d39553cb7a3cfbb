//! The built-in reward functions by the names a user passes in `--reward_funcs`: TRL's
//! `trl.rewards` exports (and the registry of its `trl grpo` script).

use super::RewardFunction;
use super::accuracy::{AccuracyReward, CosineBounds, CosineScaledReward, ReasoningAccuracyReward};
use super::error::{Result, RewardError};
use super::format::ThinkFormatReward;
use super::length::{RepetitionPenalty, SoftOverlongPunishment};

/// The names [`builtin`] knows.
pub const BUILTIN_NAMES: [&str; 6] = [
    "accuracy_reward",
    "reasoning_accuracy_reward",
    "think_format_reward",
    "get_soft_overlong_punishment",
    "get_repetition_penalty_reward",
    "get_cosine_scaled_reward",
];

/// The parameters of the built-ins that take some (TRL's factory arguments). The defaults are
/// those of TRL: its `trl grpo` script's `get_soft_overlong_punishment(max_completion_len=1280,
/// soft_punish_cache=256)`, and the factories' own defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinParams {
    /// `get_soft_overlong_punishment`'s `max_completion_len` (L_max).
    pub max_completion_len: usize,
    /// `get_soft_overlong_punishment`'s `soft_punish_cache` (L_cache).
    pub soft_punish_cache: usize,
    /// `get_repetition_penalty_reward`'s `ngram_size`.
    pub ngram_size: usize,
    /// `get_repetition_penalty_reward`'s `max_penalty` (not positive).
    pub max_penalty: f64,
    /// `get_cosine_scaled_reward`'s `max_len`: required by TRL, so `None` makes that reward an
    /// error.
    pub cosine_max_len: Option<usize>,
    /// `get_cosine_scaled_reward`'s four bounds.
    pub cosine_bounds: CosineBounds,
    /// `reasoning_accuracy_reward`'s `reasoning_delimiters` (`None`: `["</think>"]`).
    pub reasoning_delimiters: Option<Vec<String>>,
}

impl Default for BuiltinParams {
    fn default() -> Self {
        BuiltinParams {
            max_completion_len: 1280,
            soft_punish_cache: 256,
            ngram_size: 3,
            max_penalty: -1.0,
            cosine_max_len: None,
            cosine_bounds: CosineBounds::default(),
            reasoning_delimiters: None,
        }
    }
}

/// Whether `name` is a built-in reward function's name.
pub fn is_builtin(name: &str) -> bool {
    BUILTIN_NAMES.contains(&name)
}

/// The built-in reward function called `name`; an unknown name is an error listing the known
/// ones. The function's [`RewardFunction::name`] is TRL's `__name__` for it (for example
/// `soft_overlong_punishment_reward` for `get_soft_overlong_punishment`).
pub fn builtin(name: &str, params: &BuiltinParams) -> Result<Box<dyn RewardFunction>> {
    Ok(match name {
        "accuracy_reward" => Box::new(AccuracyReward),
        "reasoning_accuracy_reward" => Box::new(ReasoningAccuracyReward::new(
            params.reasoning_delimiters.clone(),
        )),
        "think_format_reward" => Box::new(ThinkFormatReward),
        "get_soft_overlong_punishment" => Box::new(SoftOverlongPunishment::new(
            params.max_completion_len,
            params.soft_punish_cache,
        )),
        "get_repetition_penalty_reward" => Box::new(RepetitionPenalty::new(
            params.ngram_size,
            params.max_penalty,
        )?),
        "get_cosine_scaled_reward" => {
            let max_len = params.cosine_max_len.ok_or_else(|| RewardError::Params {
                function: CosineScaledReward::NAME.into(),
                message: "get_cosine_scaled_reward needs max_len (the completion length its \
                          cosine schedule spans); none was given"
                    .into(),
            })?;
            Box::new(CosineScaledReward::new(max_len, params.cosine_bounds)?)
        }
        _ => {
            return Err(RewardError::Unknown {
                spec: name.to_string(),
                known: BUILTIN_NAMES.join(", "),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trls() {
        let params = BuiltinParams {
            cosine_max_len: Some(10),
            ..BuiltinParams::default()
        };
        let names: Vec<String> = BUILTIN_NAMES
            .iter()
            .map(|name| builtin(name, &params).map(|f| f.name().to_string()))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            names,
            [
                "accuracy_reward",
                "reasoning_accuracy_reward",
                "think_format_reward",
                "soft_overlong_punishment_reward",
                "repetition_penalty_reward",
                "cosine_scaled_reward"
            ]
        );
    }

    #[test]
    fn unknown_names_and_bad_params_are_clear_errors() {
        let error = builtin("acuracy_reward", &BuiltinParams::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("acuracy_reward") && error.contains("think_format_reward"),
            "{error}"
        );
        let error = builtin("get_cosine_scaled_reward", &BuiltinParams::default())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("max_len"), "{error}");
        let positive = BuiltinParams {
            max_penalty: 0.5,
            ..BuiltinParams::default()
        };
        let error = builtin("get_repetition_penalty_reward", &positive)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("should not be positive"), "{error}");
    }
}
