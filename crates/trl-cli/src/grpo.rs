//! `trl grpo`: Group Relative Policy Optimization with TRL 1.16's `GRPOConfig` keys and
//! its script's `--reward_funcs` / `--reward_model_name_or_path`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use burn::tensor::Device;
use serde_json::{Map, Value};
use trl_core::data::Method as DataMethod;
use trl_core::generate::{GenerationOptions, generation_config_eos_ids, merge_ids};
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_core::tokenizer::{Tokenizer, pad_token_id};
use trl_core::train::TrainingArguments;
use trl_grpo::config::refused_key_reason;
use trl_grpo::data::prepare_prompts;
use trl_grpo::rewards::{RewardContext, RewardFunction, parse_reward_func};
use trl_grpo::rollout::PolicySampler;
use trl_grpo::{GrpoConfig, GrpoMethod, GrpoParts, Variant};

use crate::common::{PrepareError, Setup, print_help, setup, wants_help};
use crate::tokenizer_setup::{TokenizerOverrides, training_tokenizer};

/// Where GRPOConfig's defaults differ from TrainingArguments' (TRL 1.16).
pub const GRPO_DEFAULTS: [(&str, f64); 2] = [("learning_rate", 1e-6), ("logging_steps", 10.0)];

/// Runs `trl grpo` with raw arguments (everything after `grpo`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    if wants_help(raw) {
        print_help::<GrpoConfig>(
            "grpo",
            "Group Relative Policy Optimization: the policy samples num_generations completions \
             per prompt, reward functions score them, group-relative advantages train it.",
        );
        return Ok(());
    }
    refuse_keys("grpo", raw)?;
    let defaults: Vec<(&str, Value)> = GRPO_DEFAULTS
        .iter()
        .map(|(k, v)| (*k, Value::from(*v)))
        .collect();
    let run = setup::<GrpoConfig>("grpo", raw, &defaults, DataMethod::Grpo)?;
    // TRL's batch rules, checked before any model loads.
    run.config.generation_schedule(
        run.args.per_device_train_batch_size,
        run.args.gradient_accumulation_steps,
        trl_core::train::collective::world().size(),
    )?;
    run.config.eval_generations(&run.args)?;
    let online = OnlineSetup::new(&run, &run.config)?;
    let mut model = load_causal_lm(&run.model_dir, &online.device)?;
    // With beta != 0 the reference is a frozen copy of the start; under LoRA the base with the
    // adapter off, sharing the policy's weights.
    let reference = match (&run.adapter, run.config.beta != 0.0) {
        (Some(plan), true) => {
            if run.config.sync_ref_model {
                bail!("sync_ref_model=true is not supported with a LoRA adapter");
            }
            model = plan.apply(model, &online.device, run.args.seed)?;
            Some(plan.reference(&model)?)
        }
        (Some(plan), false) => {
            model = plan.apply(model, &online.device, run.args.seed)?;
            None
        }
        (None, true) => Some(load_frozen_causal_lm(&run.model_dir, &online.device)?),
        (None, false) => None,
    };
    let parts = GrpoParts {
        tokenizer: online.tokenizer.clone(),
        pad_token_id: online.pad_token_id,
        eos_token_ids: online.eos_token_ids.clone(),
        reference,
        rewards: online.rewards(&run.config, &run.args)?,
        source: Box::new(online.sampler(&run.config, &run.args)),
        variant: Variant::Grpo,
    };
    let mut method = GrpoMethod::new(run.config.clone(), &run.args, parts)?;
    run.announce(
        "grpo",
        online.examples.len(),
        "prompts",
        &format!(
            ", loss {}, {} generations per prompt",
            run.config.loss_type, run.config.num_generations
        ),
    );
    run.finish_adapted(
        &mut method,
        model,
        &online.examples,
        online.eval_examples.as_deref(),
        &online.device,
        interrupt,
        &online.tokenizer,
        Box::new(load_causal_lm),
    )
}

/// Refuses, with a reason, TRL keys trl-rs does not take (vLLM's and a few others), before
/// the generic "unsupported key" check.
pub fn refuse_keys(command: &str, raw: &[String]) -> Result<()> {
    let map = crate::config::parse_args(raw)?;
    for key in map.keys() {
        if let Some(reason) = refused_key_reason(key) {
            bail!("`trl {command}` does not support --{key}: {reason}");
        }
    }
    Ok(())
}

/// What GRPO and RLOO set up the same way: tokenizer, prompts, device, rewards, sampler.
pub struct OnlineSetup {
    pub tokenizer: Tokenizer,
    pub pad_token_id: u32,
    pub eos_token_ids: Vec<u32>,
    pub examples: Vec<trl_grpo::data::PromptExample>,
    /// The eval prompts when the run evaluates (`--dataset_test_split` / `--eval_dataset_name`).
    pub eval_examples: Option<Vec<trl_grpo::data::PromptExample>>,
    pub device: Device,
}

impl OnlineSetup {
    /// Tokenizes the train and eval prompts (through the on-disk cache) and picks the device.
    pub fn new<C>(run: &Setup<C>, config: &GrpoConfig) -> Result<Self> {
        let tokenizer = training_tokenizer(
            &run.tokenizer_dir,
            &run.dataset,
            TokenizerOverrides::default(),
        )?;
        let kwargs: Map<String, Value> = config.chat_template_kwargs.clone().unwrap_or_default();
        let options = serde_json::to_string(&kwargs)?;
        let mut examples = run.cached_examples("grpo-prompts-v1", &options, || {
            prepare_prompts(run.dataset.rows(), &tokenizer, &kwargs).map_err(PrepareError::from)
        })?;
        let mut eval_examples = run.cached_eval_examples("grpo-prompts-v1", &options, |rows| {
            prepare_prompts(rows, &tokenizer, &kwargs).map_err(PrepareError::from)
        })?;
        // TRL keeps only the `prompt` column then (its signature columns), so reward
        // functions see no other column.
        if config.remove_unused_columns {
            let eval = eval_examples.iter_mut().flatten();
            examples
                .iter_mut()
                .chain(eval)
                .for_each(|e| e.columns.clear());
        }
        let pad_token_id = pad_token_id(&tokenizer, None)?;
        let mut eos_token_ids: Vec<u32> = tokenizer.eos_token_id().into_iter().collect();
        merge_ids(
            &mut eos_token_ids,
            generation_config_eos_ids(&run.model_dir)?,
        );
        Ok(OnlineSetup {
            tokenizer,
            pad_token_id,
            eos_token_ids,
            examples,
            eval_examples,
            device: run.device()?,
        })
    }

    /// The reward functions of `--reward_model_name_or_path` and `--reward_funcs`.
    pub fn rewards(
        &self,
        config: &GrpoConfig,
        args: &TrainingArguments,
    ) -> Result<Vec<Box<dyn RewardFunction>>> {
        let specs = config.reward_specs();
        if specs.is_empty() {
            bail!(
                "no reward: pass --reward_funcs (a built-in name, a reward model folder, or \
                 cmd:<program>) and/or --reward_model_name_or_path"
            );
        }
        let mut context = RewardContext::new(self.device.clone());
        context.reward_timeout = std::time::Duration::from_secs_f64(config.reward_timeout);
        context.chat_template_kwargs = config.chat_template_kwargs.clone().unwrap_or_default();
        context.reward_model_batch_size = args.per_device_train_batch_size.max(1);
        specs
            .iter()
            .map(|spec| Ok(parse_reward_func(spec, &context)?))
            .collect()
    }

    /// The policy's sampler with GRPOConfig's generation keys.
    pub fn sampler(&self, config: &GrpoConfig, args: &TrainingArguments) -> PolicySampler {
        PolicySampler {
            options: GenerationOptions {
                max_new_tokens: config.max_completion_length,
                do_sample: true,
                temperature: config.temperature as f32,
                top_k: config.top_k,
                top_p: config.top_p as f32,
                min_p: config.min_p.map(|p| p as f32),
                repetition_penalty: config.repetition_penalty as f32,
                seed: args.seed,
                eos_token_ids: self.eos_token_ids.clone(),
                pad_token_id: self.pad_token_id,
                ..GenerationOptions::default()
            },
        }
    }
}
