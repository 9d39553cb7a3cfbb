//! `trl dpo`: Direct Preference Optimization with TRL's `DPOConfig` keys.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_dpo::data::{DpoExample, prepare_examples};
use trl_dpo::{DpoConfig, DpoMethod};

use crate::common::{Mode, PrepareError, print_help, setup_mode, wants_help};
use crate::reference::{RefSlots, cached_reference_logps, reference_dir};
use crate::tokenizer_setup::{TokenizerOverrides, training_tokenizer};

/// Runs `trl dpo` with raw arguments (everything after `dpo`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    run_mode(raw, interrupt, Mode::Train)
}

/// [`run`] in `mode` (`trl eval --method dpo` evaluates instead of training).
pub fn run_mode(raw: &[String], interrupt: Arc<AtomicBool>, mode: Mode) -> Result<()> {
    if wants_help(raw) {
        print_help::<DpoConfig>(
            "dpo",
            "Direct Preference Optimization with TRL's DPOConfig keys and loss variants.",
        );
        return Ok(());
    }
    // Where DPOConfig's defaults differ from TrainingArguments' (TRL 1.16).
    let defaults = [
        ("learning_rate", Value::from(1e-6)),
        ("logging_steps", Value::from(10)),
    ];
    let run = setup_mode::<DpoConfig>("dpo", raw, &defaults, DataMethod::Dpo, mode)?;
    let dpo = run.config.clone();
    let overrides = TokenizerOverrides {
        pad_token: dpo.pad_token.as_deref(),
        ..TokenizerOverrides::default()
    };
    let tokenizer = training_tokenizer(&run.tokenizer_dir, &run.dataset, overrides)?;
    let needs_reference = DpoMethod::needs_reference(&dpo);
    // Checked before the data is tokenized: a mismatched ref_model stops the run at once.
    let reference_dir =
        reference_dir(dpo.ref_model.as_deref(), &run.model_dir, dpo.sync_ref_model)?;
    // Tokenized pairs are cached on disk (see `Setup::cached_examples`).
    let options = serde_json::to_string(&(dpo.max_length, dpo.truncation_mode))?;
    let prepare = |rows: &[trl_core::data::Row]| {
        prepare_examples(rows, &tokenizer, dpo.max_length, dpo.truncation_mode)
            .map_err(PrepareError::from)
    };
    let mut examples =
        run.cached_examples("dpo-prepare-v2", &options, || prepare(run.dataset.rows()))?;
    let mut eval_examples = run.cached_eval_examples("dpo-prepare-v2", &options, prepare)?;
    if examples.is_empty() {
        bail!(
            "every row's prompt fills max_length {:?}; nothing to train on",
            dpo.max_length
        );
    }
    let device = run.device()?;
    let mut model = load_causal_lm(&run.model_dir, &device)?;
    if let Some(plan) = &run.adapter {
        if dpo.sync_ref_model {
            bail!(
                "sync_ref_model=true is not supported with a LoRA adapter (the reference is the base with the adapter off)"
            );
        }
        model = plan.apply(model, &device, run.args.seed)?;
    }
    // The reference runs without autodiff: a frozen copy of the start, or `ref_model`; under
    // LoRA (without `ref_model`) the base with the adapter off, sharing the policy's weights.
    let reference = match (&run.adapter, needs_reference, &dpo.ref_model) {
        (_, false, _) => None,
        (Some(plan), true, None) => Some(plan.reference(&model)?),
        _ => Some(load_frozen_causal_lm(&reference_dir, &device.clone())?),
    };
    let reference_options = match (&run.adapter, &dpo.ref_model) {
        (Some(plan), None) => format!("{}{}", dpo.reference_options(), plan.reference_key()?),
        _ => dpo.reference_options().to_string(),
    };
    let mut method = DpoMethod::new(dpo.clone(), tokenizer.clone(), reference)?;
    if dpo.precompute_ref_log_probs && needs_reference {
        let batch = dpo
            .precompute_ref_batch_size
            .unwrap_or(run.args.per_device_train_batch_size);
        let slots = RefSlots::<DpoExample> {
            fingerprint: |e, key| {
                key.update_ids(&e.prompt_ids);
                key.update_ids(&e.chosen_ids);
                key.update_ids(&e.rejected_ids);
            },
            read: |e| e.ref_logps,
            write: |e, values| e.ref_logps = Some(values),
        };
        cached_reference_logps(
            "dpo-ref-logps-v2",
            &reference_dir,
            &reference_options,
            &mut examples,
            &slots,
            |examples| method.precompute_reference(examples, batch, &device),
        )?;
        if let Some(eval) = eval_examples.as_mut() {
            // TRL precomputes the eval set's too (precompute_ref_batch_size or the eval batch).
            let size = dpo
                .precompute_ref_batch_size
                .unwrap_or(run.args.per_device_eval_batch_size);
            method.precompute_reference(eval, size, &device)?;
        }
        method.drop_reference();
    }
    run.announce(
        "dpo",
        examples.len(),
        "pairs",
        &format!(", losses {:?}", dpo.loss_type.to_vec()),
    );
    run.finish_adapted(
        &mut method,
        model,
        &examples,
        eval_examples.as_deref(),
        &device,
        interrupt,
        &tokenizer,
        Box::new(load_causal_lm),
    )
}
