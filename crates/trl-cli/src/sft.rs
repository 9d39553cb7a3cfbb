//! `trl sft`: supervised fine-tuning with TRL's `SFTConfig` keys.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::model::load_causal_lm;
use trl_sft::data::{SftExample, prepare_examples};
use trl_sft::{SftConfig, SftMethod};

use crate::common::{Mode, PrepareError, print_help, setup_mode, wants_help};
use crate::tokenizer_setup::{TokenizerOverrides, chat_template_text, training_tokenizer};

/// Runs `trl sft` with raw arguments (everything after `sft`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    run_mode(raw, interrupt, Mode::Train)
}

/// [`run`] in `mode` (`trl eval --method sft` evaluates instead of training).
pub fn run_mode(raw: &[String], interrupt: Arc<AtomicBool>, mode: Mode) -> Result<()> {
    if wants_help(raw) {
        print_help::<SftConfig>("sft", "supervised fine-tuning with TRL's SFTConfig keys.");
        return Ok(());
    }
    // Where SFTConfig's defaults differ from TrainingArguments' (TRL 1.16).
    let defaults = [
        ("learning_rate", Value::from(2e-5)),
        ("logging_steps", Value::from(10)),
    ];
    let run = setup_mode::<SftConfig>("sft", raw, &defaults, DataMethod::Sft, mode)?;
    let sft = &run.config;
    if sft.packing && sft.packing_strategy != "bfd" {
        bail!(
            "packing_strategy {:?} is not supported (supported: bfd)",
            sft.packing_strategy
        );
    }
    let overrides = TokenizerOverrides {
        chat_template_path: sft.chat_template_path.as_deref(),
        eos_token: sft.eos_token.as_deref(),
        pad_token: sft.pad_token.as_deref(),
    };
    let tokenizer = training_tokenizer(&run.tokenizer_dir, &run.dataset, overrides)?;
    // Tokenized rows are cached on disk, keyed by the data's bytes, the tokenizer files and
    // every option that changes them (the chat template's text included).
    let template = chat_template_text(sft.chat_template_path.as_deref())?;
    let options = format!("{}|{template}", serde_json::to_string(sft)?);
    let prepare = |rows: &[trl_core::data::Row]| {
        prepare_examples(rows, &tokenizer, sft).map_err(|e| PrepareError::Row(e.row, e.message))
    };
    let examples: Vec<SftExample> =
        run.cached_examples("sft-prepare-v1", &options, || prepare(run.dataset.rows()))?;
    let eval_examples = run.cached_eval_examples("sft-prepare-v1", &options, prepare)?;
    if examples.is_empty() {
        bail!(
            "no row has a token to train on after truncation to max_length {:?}",
            sft.max_length
        );
    }
    let device = run.device()?;
    let mut model = load_causal_lm(&run.model_dir, &device)?;
    if let Some(plan) = &run.adapter {
        model = plan.apply(model, &device, run.args.seed)?;
    }
    let mut method = SftMethod::new(sft.clone(), tokenizer.clone()).map_err(anyhow::Error::msg)?;
    run.announce("sft", examples.len(), "examples", "");
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
