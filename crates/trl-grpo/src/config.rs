//! `GRPOConfig`'s keys beyond `TrainingArguments`, with TRL 1.16's defaults and its checks
//! (`GRPOConfig.__post_init__`), plus the two script arguments of TRL's `trl grpo`
//! (`reward_model_name_or_path`, `reward_funcs`) and trl-rs's `reward_timeout`.
//!
//! Names of loss types and scalings stay strings here: [`crate::loss`] and
//! [`crate::advantages`] parse them (their errors list the valid names).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trl_core::train::args_check::check::{non_negative, option_error, positive, within};

/// A key that takes one value or a list (`--reward_funcs a b` or YAML lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(value) => vec![value.clone()],
            OneOrMany::Many(values) => values.clone(),
        }
    }
}

/// `scale_rewards`: a name, or a boolean as older TRL configs wrote it (true = group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScaleRewardsValue {
    Flag(bool),
    Name(String),
}

impl ScaleRewardsValue {
    /// The scaling's name: `group`, `batch` or `none` (TRL maps true/false to group/none).
    pub fn name(&self) -> String {
        match self {
            ScaleRewardsValue::Flag(true) => "group".into(),
            ScaleRewardsValue::Flag(false) => "none".into(),
            ScaleRewardsValue::Name(name) => name.clone(),
        }
    }
}

/// The keys of TRL's `GRPOConfig` (and RLOO's shared ones) that trl-rs supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpoConfig {
    /// A reward model folder or hub id (scored first, before `reward_funcs`).
    pub reward_model_name_or_path: Option<String>,
    /// Built-in reward names, reward model folders, or `cmd:<command line>` programs.
    pub reward_funcs: Option<OneOrMany<String>>,
    /// Seconds an external reward command may take to answer one batch (trl-rs).
    pub reward_timeout: f64,
    pub num_generations: usize,
    /// Completions per prompt during evaluation (`None`: `num_generations`).
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
    pub delta: Option<f64>,
    pub epsilon_high: Option<f64>,
    pub sapo_temperature_neg: f64,
    pub sapo_temperature_pos: f64,
    pub vespo_k_pos: f64,
    pub vespo_lambda_pos: f64,
    pub vespo_k_neg: f64,
    pub vespo_lambda_neg: f64,
    pub importance_sampling_level: String,
    pub reward_weights: Option<OneOrMany<f64>>,
    pub multi_objective_aggregation: String,
    pub scale_rewards: ScaleRewardsValue,
    pub loss_type: String,
    pub mask_truncated_completions: bool,
    pub sync_ref_model: bool,
    pub ref_model_mixup_alpha: f64,
    pub ref_model_sync_steps: u64,
    pub top_entropy_quantile: f64,
    pub entropy_coef: f64,
    pub use_bias_correction_kl: bool,
    pub log_completions: bool,
    pub num_completions_to_print: Option<usize>,
    pub log_unique_prompts: bool,
    pub disable_dropout: bool,
    pub remove_unused_columns: bool,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            reward_model_name_or_path: None,
            reward_funcs: None,
            reward_timeout: 60.0,
            num_generations: 8,
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
            beta: 0.0,
            num_iterations: 1,
            epsilon: 0.2,
            delta: None,
            epsilon_high: None,
            sapo_temperature_neg: 1.05,
            sapo_temperature_pos: 1.0,
            vespo_k_pos: 2.0,
            vespo_lambda_pos: 3.0,
            vespo_k_neg: 3.0,
            vespo_lambda_neg: 2.0,
            importance_sampling_level: "token".into(),
            reward_weights: None,
            multi_objective_aggregation: "sum_then_normalize".into(),
            scale_rewards: ScaleRewardsValue::Name("group".into()),
            loss_type: "dapo".into(),
            mask_truncated_completions: false,
            sync_ref_model: false,
            ref_model_mixup_alpha: 0.6,
            ref_model_sync_steps: 512,
            top_entropy_quantile: 1.0,
            entropy_coef: 0.0,
            use_bias_correction_kl: true,
            log_completions: false,
            num_completions_to_print: None,
            log_unique_prompts: false,
            disable_dropout: false,
            remove_unused_columns: false,
        }
    }
}

/// How a run's generation batches are cut (TRL's resolution of `generation_batch_size` and
/// `steps_per_generation`, one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationSchedule {
    /// Completions generated at once (prompts × `num_generations`).
    pub generation_batch_size: usize,
    /// Accumulation steps served by one generation batch.
    pub steps_per_generation: usize,
    /// Optimization passes over each generation batch.
    pub num_iterations: usize,
}

impl GenerationSchedule {
    /// Micro-steps between two generations (`steps_per_generation * num_iterations`).
    pub fn generate_every(&self) -> usize {
        self.steps_per_generation * self.num_iterations
    }
}

impl GrpoConfig {
    /// Range checks on every key, each error naming its option.
    pub fn validate(&self) -> trl_core::Result<()> {
        if self.num_generations < 2 {
            return Err(option_error(
                "num_generations",
                format!(
                    "GRPO needs at least 2 generations per prompt to compute advantages; got {}",
                    self.num_generations
                ),
            ));
        }
        if self.max_completion_length == 0 {
            return Err(option_error(
                "max_completion_length",
                "must be at least 1".into(),
            ));
        }
        positive("temperature", self.temperature)?;
        within("top_p", self.top_p, 0.0, 1.0)?;
        positive("top_p", self.top_p)?;
        if let Some(min_p) = self.min_p {
            within("min_p", min_p, 0.0, 1.0)?;
        }
        positive("repetition_penalty", self.repetition_penalty)?;
        positive("reward_timeout", self.reward_timeout)?;
        non_negative("beta", self.beta)?;
        if self.num_iterations == 0 {
            return Err(option_error("num_iterations", "must be at least 1".into()));
        }
        non_negative("epsilon", self.epsilon)?;
        within(
            "ref_model_mixup_alpha",
            self.ref_model_mixup_alpha,
            0.0,
            1.0,
        )?;
        within("top_entropy_quantile", self.top_entropy_quantile, 0.0, 1.0)?;
        non_negative("entropy_coef", self.entropy_coef)?;
        if self.sync_ref_model && self.ref_model_sync_steps == 0 {
            return Err(option_error(
                "ref_model_sync_steps",
                "must be at least 1".into(),
            ));
        }
        self.pad_to_multiple_of()?;
        if !matches!(
            self.scale_rewards.name().as_str(),
            "group" | "batch" | "none"
        ) {
            return Err(option_error(
                "scale_rewards",
                format!(
                    "{:?} is not one of group, batch, none",
                    self.scale_rewards.name()
                ),
            ));
        }
        Ok(())
    }

    /// `pad_to_multiple_of`: `None` for `auto`/`null` (CPU), else the multiple.
    pub fn pad_to_multiple_of(&self) -> trl_core::Result<Option<usize>> {
        let bad = |shown: String| {
            option_error(
                "pad_to_multiple_of",
                format!("{shown} is not a positive integer, auto or null"),
            )
        };
        match &self.pad_to_multiple_of {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s))
                if matches!(s.to_lowercase().as_str(), "auto" | "none" | "null") =>
            {
                Ok(None)
            }
            Some(Value::Number(n)) => match n.as_u64() {
                Some(m) if m >= 1 => Ok(Some(m as usize)),
                _ => Err(bad(n.to_string())),
            },
            Some(other) => Err(bad(other.to_string())),
        }
    }

    /// The generation schedule for `processes` processes with `per_device_train_batch_size`
    /// and `gradient_accumulation_steps`, with TRL's rules and error texts: the global batch
    /// is `per_device_train_batch_size * processes`, and `generation_batch_size` counts the
    /// completions of all processes (each generates its `1 / processes` share).
    pub fn generation_schedule(
        &self,
        per_device_train_batch_size: usize,
        gradient_accumulation_steps: usize,
        processes: usize,
    ) -> trl_core::Result<GenerationSchedule> {
        let global = per_device_train_batch_size.max(1) * processes.max(1);
        let (generation_batch_size, steps_per_generation) =
            match (self.generation_batch_size, self.steps_per_generation) {
                (None, None) => {
                    let steps = gradient_accumulation_steps.max(1);
                    (global * steps, steps)
                }
                (Some(size), None) => {
                    if size == 0 || size % global != 0 {
                        return Err(option_error(
                            "generation_batch_size",
                            format!("{size} must be divisible by the global batch size ({global})"),
                        ));
                    }
                    (size, size / global)
                }
                (None, Some(steps)) => {
                    if steps == 0 {
                        return Err(option_error(
                            "steps_per_generation",
                            "must be at least 1".into(),
                        ));
                    }
                    (global * steps, steps)
                }
                (Some(_), Some(_)) => {
                    return Err(option_error(
                        "generation_batch_size",
                        "'generation_batch_size' and 'steps_per_generation' can not be both \
                         configured at the same time"
                            .into(),
                    ));
                }
            };
        if generation_batch_size % self.num_generations != 0 {
            return Err(option_error(
                "generation_batch_size",
                format!(
                    "generation_batch_size ({generation_batch_size}) must be divisible by \
                     num_generations ({}): per_device_train_batch_size × processes × \
                     steps_per_generation must hold whole groups of num_generations completions",
                    self.num_generations
                ),
            ));
        }
        Ok(GenerationSchedule {
            generation_batch_size,
            steps_per_generation,
            num_iterations: self.num_iterations,
        })
    }

    /// The reward functions in TRL's order: the reward model first, then `reward_funcs`.
    pub fn reward_specs(&self) -> Vec<String> {
        let mut specs: Vec<String> = self.reward_model_name_or_path.iter().cloned().collect();
        specs.extend(self.reward_funcs.iter().flat_map(OneOrMany::to_vec));
        specs
    }

    /// One weight per reward function (all 1 by default); a count mismatch names the option.
    pub fn reward_weights(&self, num_funcs: usize) -> trl_core::Result<Vec<f64>> {
        match &self.reward_weights {
            None => Ok(vec![1.0; num_funcs]),
            Some(weights) => {
                let weights = weights.to_vec();
                if weights.len() != num_funcs {
                    return Err(option_error(
                        "reward_weights",
                        format!(
                            "has {} weights for {num_funcs} reward functions; give one per \
                             reward function",
                            weights.len()
                        ),
                    ));
                }
                Ok(weights)
            }
        }
    }
}

/// TRL keys that trl-rs refuses with a reason (instead of the generic "unsupported key").
pub fn refused_key_reason(key: &str) -> Option<&'static str> {
    if key == "use_vllm" || key.starts_with("vllm_") {
        return Some(
            "trl-rs generates with its own KV-cache engine in the training process; there is \
             no vLLM server or colocated vLLM to configure",
        );
    }
    match key {
        "use_transformers_continuous_batching" | "use_transformers_paged" => {
            Some("trl-rs's generation engine already batches and drops finished sequences")
        }
        "use_adaptive_entropy"
        | "entropy_coef_min"
        | "entropy_coef_max"
        | "entropy_coef_delta"
        | "entropy_target" => {
            Some("adaptive entropy control is not supported; use a static entropy_coef")
        }
        "off_policy_mask_threshold" => Some("the off-policy sequence mask is not supported"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(
        config: &GrpoConfig,
        batch: usize,
        accumulation: usize,
    ) -> trl_core::Result<GenerationSchedule> {
        config.generation_schedule(batch, accumulation, 1)
    }

    #[test]
    fn defaults_follow_trl_1_16() {
        let c = GrpoConfig::default();
        assert_eq!((c.num_generations, c.max_completion_length), (8, 512));
        assert_eq!(
            (c.beta, c.epsilon, c.loss_type.as_str()),
            (0.0, 0.2, "dapo")
        );
        assert_eq!((c.temperature, c.top_p, c.top_k), (1.0, 1.0, 0));
        assert!(c.use_bias_correction_kl && c.shuffle_dataset);
    }

    #[test]
    fn generation_batch_follows_trl_rules() {
        let mut c = GrpoConfig {
            num_generations: 4,
            ..GrpoConfig::default()
        };
        let s = schedule(&c, 4, 2).unwrap();
        assert_eq!((s.generation_batch_size, s.steps_per_generation), (8, 2));
        c.generation_batch_size = Some(12);
        let s = schedule(&c, 4, 1).unwrap();
        assert_eq!((s.generation_batch_size, s.steps_per_generation), (12, 3));
        c.generation_batch_size = Some(10);
        assert!(
            schedule(&c, 4, 1)
                .unwrap_err()
                .to_string()
                .contains("divisible")
        );
        c.steps_per_generation = Some(2);
        assert!(schedule(&c, 4, 1).unwrap_err().to_string().contains("both"));
        let c = GrpoConfig {
            num_generations: 3,
            ..GrpoConfig::default()
        };
        assert!(
            schedule(&c, 4, 1)
                .unwrap_err()
                .to_string()
                .contains("num_generations")
        );
    }

    #[test]
    fn scale_rewards_takes_names_and_booleans() {
        let c: GrpoConfig =
            serde_json::from_value(serde_json::json!({"scale_rewards": false})).unwrap();
        assert_eq!(c.scale_rewards.name(), "none");
        let c: GrpoConfig =
            serde_json::from_value(serde_json::json!({"scale_rewards": "sideways"})).unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("scale_rewards")
        );
    }

    #[test]
    fn reward_specs_put_the_reward_model_first() {
        let c: GrpoConfig = serde_json::from_value(serde_json::json!({
            "reward_model_name_or_path": "rm",
            "reward_funcs": ["accuracy_reward", "cmd:python3 r.py"],
            "reward_weights": [1.0, 0.5],
        }))
        .unwrap();
        assert_eq!(
            c.reward_specs(),
            ["rm", "accuracy_reward", "cmd:python3 r.py"]
        );
        assert!(
            c.reward_weights(3)
                .unwrap_err()
                .to_string()
                .contains("reward_weights")
        );
    }

    #[test]
    fn vllm_keys_are_refused_with_a_reason() {
        assert!(refused_key_reason("vllm_mode").unwrap().contains("vLLM"));
        assert!(refused_key_reason("beta").is_none());
    }
}
