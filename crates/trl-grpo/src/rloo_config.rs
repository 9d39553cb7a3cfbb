//! `RLOOConfig`'s keys (TRL 1.16) beyond `TrainingArguments`. RLOO shares GRPO's rollout
//! machinery, so the config converts into a [`GrpoConfig`] plus RLOO's own options.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trl_core::train::args_check::check::option_error;

use crate::config::{GrpoConfig, OneOrMany};

/// RLOO's own advantage options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RlooOptions {
    /// Whiten the advantages over the batch.
    pub normalize_advantages: bool,
    /// Clamp the summed rewards into `[low, high]` before the baseline.
    pub reward_clip_range: Option<(f64, f64)>,
}

/// The keys of TRL's `RLOOConfig` that trl-rs supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlooConfig {
    pub reward_model_name_or_path: Option<String>,
    pub reward_funcs: Option<OneOrMany<String>>,
    pub reward_timeout: f64,
    pub num_generations: usize,
    pub num_generations_eval: Option<usize>,
    pub max_completion_length: usize,
    pub shuffle_dataset: bool,
    pub pad_to_multiple_of: Option<Value>,
    pub generation_batch_size: Option<usize>,
    pub steps_per_generation: Option<usize>,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub min_p: Option<f64>,
    pub repetition_penalty: f64,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    pub beta: f64,
    pub num_iterations: usize,
    pub epsilon: f64,
    pub epsilon_high: Option<f64>,
    pub reward_weights: Option<OneOrMany<f64>>,
    pub normalize_advantages: bool,
    pub reward_clip_range: Option<Vec<f64>>,
    pub mask_truncated_completions: bool,
    pub sync_ref_model: bool,
    pub ref_model_mixup_alpha: f64,
    pub ref_model_sync_steps: u64,
    pub log_completions: bool,
    pub num_completions_to_print: Option<usize>,
    pub log_unique_prompts: bool,
    pub disable_dropout: bool,
    pub remove_unused_columns: bool,
}

impl Default for RlooConfig {
    fn default() -> Self {
        let g = GrpoConfig::default();
        RlooConfig {
            reward_model_name_or_path: None,
            reward_funcs: None,
            reward_timeout: g.reward_timeout,
            num_generations: 2,
            num_generations_eval: None,
            max_completion_length: 512,
            shuffle_dataset: true,
            pad_to_multiple_of: None,
            generation_batch_size: None,
            steps_per_generation: None,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: None,
            repetition_penalty: 1.0,
            chat_template_kwargs: None,
            beta: 0.05,
            num_iterations: 1,
            epsilon: 0.2,
            epsilon_high: None,
            reward_weights: None,
            normalize_advantages: false,
            reward_clip_range: None,
            mask_truncated_completions: false,
            sync_ref_model: false,
            ref_model_mixup_alpha: 0.6,
            ref_model_sync_steps: 512,
            log_completions: false,
            num_completions_to_print: None,
            log_unique_prompts: false,
            disable_dropout: false,
            remove_unused_columns: false,
        }
    }
}

impl RlooConfig {
    /// The shared rollout settings as a [`GrpoConfig`] (loss keys at GRPO's defaults; RLOO's
    /// loss reads only `epsilon`/`epsilon_high`), and RLOO's own options.
    pub fn split(&self) -> trl_core::Result<(GrpoConfig, RlooOptions)> {
        let reward_clip_range = match self.reward_clip_range.as_deref() {
            None => None,
            Some([low, high]) if low <= high => Some((*low, *high)),
            Some(other) => {
                return Err(option_error(
                    "reward_clip_range",
                    format!("expected two numbers [low, high] with low <= high, got {other:?}"),
                ));
            }
        };
        if self.sync_ref_model && self.beta == 0.0 {
            return Err(option_error(
                "sync_ref_model",
                "sync_ref_model=True with beta=0.0: the reference model is not used, so there is \
                 nothing to synchronize; set beta > 0 or sync_ref_model false"
                    .into(),
            ));
        }
        let grpo = GrpoConfig {
            reward_model_name_or_path: self.reward_model_name_or_path.clone(),
            reward_funcs: self.reward_funcs.clone(),
            reward_timeout: self.reward_timeout,
            num_generations: self.num_generations,
            num_generations_eval: self.num_generations_eval,
            max_completion_length: self.max_completion_length,
            shuffle_dataset: self.shuffle_dataset,
            pad_to_multiple_of: self.pad_to_multiple_of.clone(),
            generation_batch_size: self.generation_batch_size,
            steps_per_generation: self.steps_per_generation,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            chat_template_kwargs: self.chat_template_kwargs.clone(),
            beta: self.beta,
            num_iterations: self.num_iterations,
            epsilon: self.epsilon,
            epsilon_high: self.epsilon_high,
            reward_weights: self.reward_weights.clone(),
            mask_truncated_completions: self.mask_truncated_completions,
            sync_ref_model: self.sync_ref_model,
            ref_model_mixup_alpha: self.ref_model_mixup_alpha,
            ref_model_sync_steps: self.ref_model_sync_steps,
            log_completions: self.log_completions,
            num_completions_to_print: self.num_completions_to_print,
            log_unique_prompts: self.log_unique_prompts,
            disable_dropout: self.disable_dropout,
            remove_unused_columns: self.remove_unused_columns,
            ..GrpoConfig::default()
        };
        grpo.validate()?;
        Ok((
            grpo,
            RlooOptions {
                normalize_advantages: self.normalize_advantages,
                reward_clip_range,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_trl_1_16() {
        let c = RlooConfig::default();
        assert_eq!((c.num_generations, c.beta), (2, 0.05));
        assert!(!c.normalize_advantages);
    }

    #[test]
    fn reward_clip_range_needs_two_ordered_numbers() {
        let c = RlooConfig {
            reward_clip_range: Some(vec![1.0, -1.0]),
            ..RlooConfig::default()
        };
        assert!(
            c.split()
                .unwrap_err()
                .to_string()
                .contains("reward_clip_range")
        );
        let c = RlooConfig {
            reward_clip_range: Some(vec![-1.0, 1.0]),
            ..RlooConfig::default()
        };
        assert_eq!(c.split().unwrap().1.reward_clip_range, Some((-1.0, 1.0)));
    }
}
