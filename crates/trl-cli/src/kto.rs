//! `trl kto`: Kahneman-Tversky Optimization with TRL's `KTOConfig` keys.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_core::train::args::SamplingStrategy;
use trl_kto::data::{KtoExample, prepare_examples};
use trl_kto::{KtoConfig, KtoMethod};

use crate::common::{Mode, PrepareError, print_help, setup_mode, wants_help};
use crate::reference::{RefSlots, cached_reference_logps, reference_dir};
use crate::tokenizer_setup::{TokenizerOverrides, training_tokenizer};

/// Runs `trl kto` with raw arguments (everything after `kto`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    run_mode(raw, interrupt, Mode::Train)
}

/// [`run`] in `mode` (`trl eval --method kto` evaluates instead of training).
pub fn run_mode(raw: &[String], interrupt: Arc<AtomicBool>, mode: Mode) -> Result<()> {
    if wants_help(raw) {
        print_help::<KtoConfig>(
            "kto",
            "Kahneman-Tversky Optimization with TRL's KTOConfig keys.",
        );
        return Ok(());
    }
    // Where KTOConfig's defaults differ from TrainingArguments' (TRL 1.16).
    let defaults = [
        ("learning_rate", Value::from(1e-6)),
        ("logging_steps", Value::from(10)),
        ("train_sampling_strategy", Value::from("sequential")),
    ];
    let run = setup_mode::<KtoConfig>("kto", raw, &defaults, DataMethod::Kto, mode)?;
    let kto = run.config.clone();
    let batch = run.args.per_device_train_batch_size;
    if kto.loss_type.uses_kl() {
        if run.args.train_sampling_strategy != SamplingStrategy::Sequential {
            bail!(
                "loss_type kto estimates its KL baseline from neighbours in a fixed-order batch and needs \
                 train_sampling_strategy sequential"
            );
        }
        if batch <= 1 {
            bail!(
                "loss_type kto needs per_device_train_batch_size > 1: the KL baseline pairs each prompt with \
                 another example's completion in the same batch"
            );
        }
    }
    let tokenizer = training_tokenizer(
        &run.tokenizer_dir,
        &run.dataset,
        TokenizerOverrides::default(),
    )?;
    // Checked before the data is tokenized: a mismatched ref_model stops the run at once.
    let reference_dir = reference_dir(kto.ref_model.as_deref(), &run.model_dir, false)?;
    let kl_block = kto.loss_type.uses_kl().then_some(batch);
    // Tokenized examples are cached on disk (see `Setup::cached_examples`).
    let options = serde_json::to_string(&(kto.max_length, kl_block))?;
    let prepare = |rows: &[trl_core::data::Row]| {
        prepare_examples(rows, &tokenizer, kto.max_length, kl_block).map_err(PrepareError::from)
    };
    let mut examples =
        run.cached_examples("kto-prepare-v2", &options, || prepare(run.dataset.rows()))?;
    let mut eval_examples = run.cached_eval_examples("kto-prepare-v2", &options, prepare)?;
    if examples.is_empty() {
        bail!(
            "every row's prompt fills max_length {:?}; nothing to train on",
            kto.max_length
        );
    }
    let device = run.device()?;
    let mut model = load_causal_lm(&run.model_dir, &device)?;
    let plain = device.clone();
    // Under LoRA (without `ref_model`) the reference is the base with the adapter off,
    // sharing the policy's weights.
    let (reference, reference_options) = match (&run.adapter, &kto.ref_model) {
        (Some(plan), None) => {
            model = plan.apply(model, &device, run.args.seed)?;
            let options = format!("{}{}", kto.reference_options(), plan.reference_key()?);
            (plan.reference(&model)?, options)
        }
        (plan, _) => {
            if let Some(plan) = plan {
                model = plan.apply(model, &device, run.args.seed)?;
            }
            let reference = load_frozen_causal_lm(&reference_dir, &plain)?;
            (reference, kto.reference_options().to_string())
        }
    };
    let mut method = KtoMethod::new(kto.clone(), tokenizer.clone(), Some(reference))?;
    if kto.precompute_ref_log_probs {
        let size = kto.precompute_ref_batch_size.unwrap_or(batch);
        let slots = RefSlots::<KtoExample> {
            fingerprint: |e, key| {
                key.update_ids(&e.prompt_ids);
                key.update_ids(&e.completion_ids);
                key.update_ids(e.kl_completion_ids.as_deref().unwrap_or_default());
            },
            read: |e| e.ref_logps,
            write: |e, values| e.ref_logps = Some(values),
        };
        cached_reference_logps(
            "kto-ref-logps-v2",
            &reference_dir,
            &reference_options,
            &mut examples,
            &slots,
            |examples| method.precompute_reference(examples, size, &plain),
        )?;
        if let Some(eval) = eval_examples.as_mut() {
            // TRL precomputes the eval set's too (precompute_ref_batch_size or the eval batch).
            let size = kto
                .precompute_ref_batch_size
                .unwrap_or(run.args.per_device_eval_batch_size);
            method.precompute_reference(eval, size, &plain)?;
        }
        method.drop_reference();
    }
    run.announce(
        "kto",
        examples.len(),
        "examples",
        &format!(", loss {:?}", kto.loss_type),
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
