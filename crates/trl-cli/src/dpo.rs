//! `trl dpo`: Direct Preference Optimization with TRL's `DPOConfig` keys.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_core::train::train;
use trl_dpo::data::{DpoExample, prepare_examples};
use trl_dpo::{DpoConfig, DpoMethod};

use crate::common::{load_tokenizer, print_help, report, setup, wants_help};
use crate::precompute_cache::{RefSlots, cached_reference_logps};

/// Runs `trl dpo` with raw arguments (everything after `dpo`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
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
    let run = setup::<DpoConfig>("dpo", raw, &defaults, DataMethod::Dpo, |_| "text".into())?;
    let dpo = run.config.clone();
    dpo.weighted_losses().map_err(anyhow::Error::msg)?;
    let tokenizer = load_tokenizer(&run.model_dir)?;
    // Tokenized pairs are cached on disk (see `Setup::cached_examples`).
    let options = serde_json::to_string(&(dpo.max_length, dpo.truncation_mode))?;
    let mut examples = run.cached_examples("dpo-prepare-v1", &options, || {
        prepare_examples(
            run.dataset.rows(),
            &tokenizer,
            dpo.max_length,
            dpo.truncation_mode,
        )
        .map_err(|(row, message)| trl_core::Error::Data {
            message: format!("{}: {message}", run.dataset.origin(row)),
        })
    })?;
    if examples.is_empty() {
        bail!(
            "every row's prompt fills max_length {:?}; nothing to train on",
            dpo.max_length
        );
    }
    let device = run.device()?;
    let model = load_causal_lm(&run.model_dir, &device)?;
    // The reference runs without autodiff: a frozen copy of the start, or `ref_model`.
    let reference = if DpoMethod::needs_reference(&dpo) {
        let plain = device.clone();
        let dir = match &dpo.ref_model {
            Some(id) => trl_core::hub::resolve_model(id, None)?,
            None => run.model_dir.clone(),
        };
        Some(load_frozen_causal_lm(&dir, &plain)?)
    } else {
        None
    };
    let reference_dir = dpo
        .ref_model
        .clone()
        .unwrap_or_else(|| run.model_dir.display().to_string());
    let mut method = DpoMethod::new(dpo.clone(), tokenizer, reference)?;
    if dpo.precompute_ref_log_probs && DpoMethod::needs_reference(&dpo) {
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
            "dpo-ref-logps-v1",
            Path::new(&reference_dir),
            &mut examples,
            &slots,
            |examples| method.precompute_reference(examples, batch, &device),
        )?;
        method.drop_reference();
    }
    let mut logger = run.logger(interrupt)?;
    run.announce(
        "dpo",
        examples.len(),
        "pairs",
        &format!(", losses {:?}", dpo.loss_type.to_vec()),
    );
    let outcome = train(
        &mut method,
        model,
        &examples,
        &run.args,
        &device,
        &mut logger,
    )?;
    report(&outcome);
    Ok(())
}
