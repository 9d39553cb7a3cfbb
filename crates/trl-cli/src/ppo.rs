//! `trl ppo`: Proximal Policy Optimization with TRL 1.12's `PPOConfig` keys (TRL removed PPO
//! after 1.12): the policy (`--model_name_or_path`) and a value model (`--value_model_path`,
//! the reward model by default) are trained together against a frozen reward model
//! (`--reward_model_path`) and a frozen reference (`--sft_model_path`, the policy's start by
//! default), on prompt-only data; with `--use_peft` the policy trains a LoRA adapter (the
//! reference is then the policy with its adapters off).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::generate::GenerationOptions;
use trl_core::hub::resolve_model;
use trl_core::model::config::HeadKind;
use trl_core::model::{
    CausalLm, load_causal_lm, load_frozen_causal_lm, load_sequence_classifier, read_config,
};
use trl_core::tokenizer::{Tokenizer, pad_token_id};
use trl_core::train::TrainingArguments;
use trl_core::train::schedule::{LrSchedule, warmup_steps};
use trl_ppo::data::prepare_prompts;
use trl_ppo::gae::RewardSettings;
use trl_ppo::rollout::{PolicySampler, RolloutSettings};
use trl_ppo::{PolicyAdapter, PolicyAndValue, PpoConfig, PpoMethod, PpoParts, StopToken};

use crate::common::{CommandConfig, PrepareError, Setup, print_help, setup, wants_help};
use crate::lora::AdapterPlan;
use crate::tokenizer_setup::{TokenizerOverrides, training_tokenizer};

impl CommandConfig for PpoConfig {
    fn validate(&self) -> Result<()> {
        Ok(PpoConfig::validate(self)?)
    }
}

/// Runs `trl ppo` with raw arguments (everything after `ppo`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    if wants_help(raw) {
        print_help::<PpoConfig>(
            "ppo",
            "Proximal Policy Optimization (TRL 1.12's PPOTrainer): policy + value model trained \
             against a reward model, with a KL penalty to the reference.",
        );
        return Ok(());
    }
    // Where PPOConfig's defaults differ from TrainingArguments' (TRL 1.12). PPOTrainer logs
    // every rollout batch whatever logging_steps says, so 1 is the default here; its loop
    // never clips gradients (no clip_grad_norm_ call), so max_grad_norm defaults to 0 (off).
    let defaults = [
        ("learning_rate", Value::from(3e-6)),
        ("logging_steps", Value::from(1)),
        ("max_grad_norm", Value::from(0.0)),
    ];
    let mut run = setup::<PpoConfig>("ppo", raw, &defaults, DataMethod::Ppo)?;
    let ppo = run.config.clone();
    let reward_id = ppo.reward_model_path.clone().context(
        "--reward_model_path is required (a sequence classifier, e.g. from `trl reward`)",
    )?;
    let tokenizer = training_tokenizer(
        &run.tokenizer_dir,
        &run.dataset,
        TokenizerOverrides::default(),
    )?;
    let examples = run.cached_examples("ppo-prompts-v1", "", || {
        prepare_prompts(run.dataset.rows(), &tokenizer).map_err(PrepareError::from)
    })?;
    let args = &run.args;
    let sizes = ppo.batch_sizes(
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        args.num_train_epochs,
        examples.len(),
        trl_core::train::collective::world().size(),
    )?;
    if args.max_steps > 0 {
        bail!(
            "--max_steps: PPO counts its steps in rollout batches from --total_episodes (TRL 1.12); set that instead"
        );
    }
    run.args.max_steps = sizes.num_total_batches as i64;
    let dirs = ModelDirs::resolve(&ppo, &reward_id, &run.model_dir)?;
    let device = run.device()?;
    let (policy, reference, adapter) = policy_and_reference(&run, &dirs, &device)?;
    let model = PolicyAndValue {
        policy,
        value: load_sequence_classifier(&dirs.value, 1, &device)?,
    };
    let parts = PpoParts {
        reference,
        adapter,
        reward: load_sequence_classifier(&dirs.reward, 1, &device)?,
        source: Box::new(PolicySampler {
            options: generation_options(&ppo, &run.args, &tokenizer)?,
        }),
        rollout: rollout_settings(&ppo, &tokenizer)?,
        schedule: schedule(&run.args, sizes.num_total_batches as u64),
        tokenizer,
    };
    let mut method = PpoMethod::new(ppo.clone(), sizes, &run.args, parts)?;
    let plan = format!(
        ", {} rollout batches of {} prompts, {} PPO epochs x {} mini-batches, reward model {}",
        sizes.num_total_batches,
        sizes.batch_size(),
        ppo.num_ppo_epochs,
        ppo.num_mini_batches,
        dirs.reward.display()
    );
    run.announce("ppo", examples.len(), "prompts", &plan);
    run.train(&mut method, model, &examples, &device, interrupt)
}

/// The policy, its reference and, under `--use_peft` (or an adapter folder as the model), its
/// LoRA adapter, as TRL 1.12 does with `peft_config`: the adapter wraps the policy only (the
/// value model trains in full), PPOTrainer's `disable_dropout_in_model` zeroes `lora_dropout`
/// too, and without `--sft_model_path` the reference is the policy with its adapters off (a
/// loaded adapter: the policy as loaded, frozen), sharing the base weights.
fn policy_and_reference(
    run: &Setup<PpoConfig>,
    dirs: &ModelDirs,
    device: &Device,
) -> Result<(CausalLm, CausalLm, Option<PolicyAdapter>)> {
    let policy = load_causal_lm(&run.model_dir, device)?;
    let Some(plan) = &run.adapter else {
        let reference = load_frozen_causal_lm(&dirs.reference, device)?;
        return Ok((policy, reference, None));
    };
    let adapter = PolicyAdapter {
        config: plan.config.clone(),
        base_dir: run.model_dir.clone(),
    };
    let training = AdapterPlan {
        config: adapter.training_config(),
        source: plan.source.clone(),
    };
    let policy = training.apply(policy, device, run.args.seed)?;
    let reference = match &run.config.sft_model_path {
        Some(_) => load_frozen_causal_lm(&dirs.reference, device)?,
        None => training.reference(&policy)?,
    };
    Ok((policy, reference, Some(adapter)))
}

/// The folders of the three models besides the policy.
struct ModelDirs {
    /// The frozen reward model: must be a sequence classifier (a causal LM would get a random
    /// score head and train the policy on noise).
    reward: PathBuf,
    /// The value model's start: `value_model_path`, else the reward model (TRL's example).
    value: PathBuf,
    /// The frozen reference: `sft_model_path`, else the policy's start.
    reference: PathBuf,
}

impl ModelDirs {
    fn resolve(ppo: &PpoConfig, reward_id: &str, policy_dir: &Path) -> Result<Self> {
        let reward = resolve_model(reward_id, None)?;
        if read_config(&reward)?.head != HeadKind::SequenceClassification {
            bail!(
                "--reward_model_path {reward_id}: not a sequence classifier (config.json's \
                 architecture should end in ForSequenceClassification; train one with `trl reward`)"
            );
        }
        let value = match &ppo.value_model_path {
            Some(id) => resolve_model(id, None)?,
            None => reward.clone(),
        };
        let reference = match &ppo.sft_model_path {
            Some(id) => resolve_model(id, None)?,
            None => policy_dir.to_path_buf(),
        };
        Ok(ModelDirs {
            reward,
            value,
            reference,
        })
    }
}

/// The stop token TRL truncates at and generation stops on: the tokenizer's EOS for
/// `stop_token: eos`, else `stop_token_id` (none by default).
fn stop_token_id(ppo: &PpoConfig, tokenizer: &Tokenizer) -> Result<Option<u32>> {
    match ppo.stop_token {
        Some(StopToken::Eos) => {
            Ok(Some(tokenizer.eos_token_id().context(
                "--stop_token eos: the tokenizer has no EOS token",
            )?))
        }
        None => Ok(ppo.stop_token_id),
    }
}

/// TRL's rollout sampling: `response_length` new tokens at `temperature + 1e-7`, no top-k.
fn generation_options(
    ppo: &PpoConfig,
    args: &TrainingArguments,
    tokenizer: &Tokenizer,
) -> Result<GenerationOptions> {
    Ok(GenerationOptions {
        max_new_tokens: ppo.response_length,
        do_sample: true,
        temperature: (ppo.temperature + 1e-7) as f32,
        top_k: 0,
        top_p: 1.0,
        seed: args.seed,
        eos_token_ids: stop_token_id(ppo, tokenizer)?.into_iter().collect(),
        pad_token_id: pad_token_id(tokenizer, None)?,
        ..GenerationOptions::default()
    })
}

fn rollout_settings(ppo: &PpoConfig, tokenizer: &Tokenizer) -> Result<RolloutSettings> {
    Ok(RolloutSettings {
        pad_token_id: pad_token_id(tokenizer, None)?,
        eos_token_id: tokenizer.eos_token_id(),
        stop_token_id: stop_token_id(ppo, tokenizer)?,
        temperature: ppo.temperature,
        missing_eos_penalty: ppo.missing_eos_penalty,
        forward_batch_size: ppo.local_rollout_forward_batch_size,
        rewards: RewardSettings {
            kl_coef: ppo.kl_coef,
            kl_estimator: ppo.kl_estimator,
            gamma: ppo.gamma,
            lam: ppo.lam,
            whiten_rewards: ppo.whiten_rewards,
        },
    })
}

/// The run's LR schedule over `total` rollout batches (what the loop builds), for `lr`.
fn schedule(args: &TrainingArguments, total: u64) -> LrSchedule {
    let min_lr_rate = match args.lr_scheduler_kwargs.get("min_lr_rate") {
        Some(rate) => *rate,
        None => args
            .lr_scheduler_kwargs
            .get("min_lr")
            .map_or(0.0, |m| m / args.learning_rate),
    };
    LrSchedule {
        kind: args.lr_scheduler_type,
        base_lr: args.learning_rate,
        warmup_steps: warmup_steps(total, args.warmup_steps, args.warmup_ratio),
        total_steps: total,
        min_lr_rate,
    }
}
