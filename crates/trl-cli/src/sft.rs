//! `trl sft`: supervised fine-tuning with TRL's `SFTConfig` keys.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use trl_core::data::{DatasetArgs, Method as DataMethod, load_dataset};
use trl_core::model::load_causal_lm;
use trl_core::tokenizer::Tokenizer;
use trl_core::train::args::{ReportTo, known_keys};
use trl_core::train::{RunLogger, TrainingArguments, take_known_keys, train};
use trl_sft::data::prepare_examples;
use trl_sft::{SftConfig, SftMethod};

use crate::config::{parse_args, reject_unknown_keys};
use crate::device::{default_device_spec, parse_device};
use crate::model_args::ModelAndDataArgs;

/// Defaults where `SFTConfig` differs from `TrainingArguments` (TRL 1.16).
const SFT_DEFAULTS: [(&str, f64); 2] = [("learning_rate", 2e-5), ("logging_steps", 10.0)];

/// Runs `trl sft` with raw arguments (everything after `sft`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    if raw.iter().any(|a| a == "--help" || a == "-h") {
        print_help();
        return Ok(());
    }
    let mut map = parse_args(raw)?;
    for (key, value) in SFT_DEFAULTS {
        map.entry(key.to_string()).or_insert(Value::from(value));
    }
    let inputs: ModelAndDataArgs = take_known_keys(&mut map, "sft")?;
    let args: TrainingArguments = take_known_keys(&mut map, "sft")?;
    let sft: SftConfig = take_known_keys(&mut map, "sft")?;
    reject_unknown_keys(&map, "sft")?;
    inputs.check()?;
    if sft.packing && sft.packing_strategy != "bfd" {
        bail!(
            "packing_strategy {:?} is not supported (supported: bfd)",
            sft.packing_strategy
        );
    }
    let sinks = args.report_sinks()?;
    if args.bf16 {
        eprintln!(
            "note: bf16=true: trl-rs keeps fp32 weights and computes in fp32 on this backend"
        );
    }
    let model_id = inputs
        .model_name_or_path
        .clone()
        .context("--model_name_or_path is required")?;
    let dataset_name = inputs
        .dataset_name
        .clone()
        .context("--dataset_name is required")?;

    // Data first: bad rows stop the run before any model loads or any output is written.
    let data_args = DatasetArgs {
        dataset_name,
        dataset_config: inputs.dataset_config.clone(),
        dataset_train_split: inputs.dataset_train_split.clone(),
        dataset_text_field: sft.dataset_text_field.clone(),
    };
    let dataset = load_dataset(&data_args, DataMethod::Sft)?;
    let model_dir = trl_core::hub::resolve_model(&model_id, inputs.model_revision.as_deref())?;
    let mut tokenizer = Tokenizer::from_dir(&model_dir)?;
    if let Some(path) = &sft.chat_template_path {
        tokenizer.set_chat_template_from_file(path)?;
    }
    if let Some(eos) = &sft.eos_token {
        tokenizer.set_eos_token(eos)?;
    }
    let examples = prepare_examples(dataset.rows(), &tokenizer, &sft)
        .map_err(|e| anyhow::anyhow!("{}: {}", dataset.origin(e.row), e.message))?;
    if examples.is_empty() {
        bail!(
            "no row has a token to train on after truncation to max_length {:?}",
            sft.max_length
        );
    }

    let spec = inputs
        .device
        .clone()
        .unwrap_or_else(|| default_device_spec().to_string());
    let device = parse_device(&spec)?.autodiff();
    let model = load_causal_lm(&model_dir, &device)?;
    let method = SftMethod::new(sft, tokenizer).map_err(anyhow::Error::msg)?;
    let output_dir = PathBuf::from(&args.output_dir);
    let jsonl = sinks
        .contains(&ReportTo::Jsonl)
        .then(|| output_dir.join("log_history.jsonl"));
    let mut logger = RunLogger::new(jsonl, interrupt, false);
    if sinks.contains(&ReportTo::Tensorboard) {
        // transformers' default logging_dir is OUTPUT_DIR/runs/...
        let log_dir = args
            .logging_dir
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| output_dir.join("runs"));
        logger = logger.with_tensorboard(&log_dir)?;
    }
    eprintln!(
        "trl sft: {} examples ({} rows, format {}), model {model_id}, device {spec}",
        examples.len(),
        dataset.len(),
        dataset.format
    );
    let outcome = train(&method, model, &examples, &args, &device, &mut logger)?;
    if let Some(summary) = outcome.state.log_history.last() {
        eprintln!("{}", serde_json::to_string(summary).unwrap_or_default());
    }
    eprintln!("saved {}", outcome.output_dir.display());
    Ok(())
}

fn print_help() {
    let keys = |list: Vec<String>| list.join(", ");
    println!(
        "trl sft: supervised fine-tuning with TRL's SFTConfig keys.\n\n\
         usage: trl sft [--config FILE.yaml] --model_name_or_path M --dataset_name D [--key value ...]\n\n\
         Flags override the YAML file; an unsupported key is an error.\n\n\
         model and data keys: {}\n\ntraining keys: {}\n\nSFT keys: {}",
        keys(known_keys::<ModelAndDataArgs>()),
        keys(known_keys::<TrainingArguments>()),
        keys(known_keys::<SftConfig>()),
    );
}
