//! `trl rloo`: REINFORCE Leave-One-Out with TRL 1.16's `RLOOConfig` keys; it shares
//! GRPO's rollouts, rewards and logging (see `grpo.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_grpo::{GrpoMethod, GrpoParts, RlooConfig, Variant};

use crate::common::{print_help, setup, wants_help};
use crate::grpo::{GRPO_DEFAULTS, OnlineSetup, refuse_keys};

/// Runs `trl rloo` with raw arguments (everything after `rloo`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    if wants_help(raw) {
        print_help::<RlooConfig>(
            "rloo",
            "REINFORCE Leave-One-Out: each completion's baseline is the mean reward of the \
             other completions of its prompt; the KL to the reference is part of the reward.",
        );
        return Ok(());
    }
    refuse_keys("rloo", raw)?;
    // RLOOConfig overrides the same TrainingArguments defaults as GRPOConfig.
    let defaults: Vec<(&str, Value)> = GRPO_DEFAULTS
        .iter()
        .map(|(k, v)| (*k, Value::from(*v)))
        .collect();
    let run = setup::<RlooConfig>("rloo", raw, &defaults, DataMethod::Rloo)?;
    let (config, options) = run.config.split()?;
    // TRL's batch rules, checked before any model loads.
    config.generation_schedule(
        run.args.per_device_train_batch_size,
        run.args.gradient_accumulation_steps,
        trl_core::train::collective::world().size(),
    )?;
    config.eval_generations(&run.args)?;
    let online = OnlineSetup::new(&run, &config)?;
    let mut model = load_causal_lm(&run.model_dir, &online.device)?;
    // With beta != 0 the reference is a frozen copy of the start; under LoRA the base with the
    // adapter off, sharing the policy's weights.
    let reference = match (&run.adapter, config.beta != 0.0) {
        (Some(plan), true) => {
            if config.sync_ref_model {
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
        rewards: online.rewards(&config, &run.args)?,
        source: Box::new(online.sampler(&config, &run.args)),
        variant: Variant::Rloo(options),
    };
    let mut method = GrpoMethod::new(config.clone(), &run.args, parts)?;
    run.announce(
        "rloo",
        online.examples.len(),
        "prompts",
        &format!(
            ", {} generations per prompt, beta {}",
            config.num_generations, config.beta
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
