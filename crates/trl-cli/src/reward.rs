//! `trl reward`: reward-model training with TRL's `RewardConfig` keys.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::model::{HeadKind, load_sequence_classifier, read_config};
use trl_core::train::train;
use trl_reward::data::prepare_examples;
use trl_reward::trainer::resolve_pad_token;
use trl_reward::{Error as RewardError, RewardConfig, RewardMethod};

use crate::common::{load_tokenizer, print_help, report, setup, wants_help};

/// Runs `trl reward` with raw arguments (everything after `reward`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    if wants_help(raw) {
        print_help::<RewardConfig>(
            "reward",
            "reward-model training (Bradley-Terry on preference pairs) with TRL's RewardConfig keys.",
        );
        return Ok(());
    }
    // Where RewardConfig's defaults differ from TrainingArguments' (TRL 1.16).
    let defaults = [
        ("learning_rate", Value::from(1e-4)),
        ("logging_steps", Value::from(10)),
    ];
    let run = setup::<RewardConfig>("reward", raw, &defaults, DataMethod::Reward, |_| {
        "text".into()
    })?;
    let config = run.config.clone();
    config.pad_multiple()?;

    let mut tokenizer = load_tokenizer(&run.model_dir)?;
    if let Some(path) = &config.chat_template_path {
        tokenizer.set_chat_template_from_file(path)?;
    }
    if let Some(eos) = &config.eos_token {
        tokenizer.set_eos_token(eos)?;
    }
    let pad_token_id = resolve_pad_token(&mut tokenizer, config.pad_token.as_deref())?;
    // Tokenized pairs are cached on disk (see `Setup::cached_examples`), keyed by every
    // setting that changes them: the chat template's text included.
    let template = match &config.chat_template_path {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => String::new(),
    };
    let options = serde_json::to_string(&(config.max_length, &config.eos_token, template))?;
    let examples = run.cached_examples("reward-prepare-v1", &options, || {
        prepare_examples(run.dataset.rows(), &tokenizer, config.max_length).map_err(|e| match e {
            RewardError::Row { row, message } => trl_core::Error::Data {
                message: format!("{}: {message}", run.dataset.origin(row)),
            },
            RewardError::Model(e) => e,
            other => trl_core::Error::Data {
                message: other.to_string(),
            },
        })
    })?;
    let dropped = run.dataset.len() - examples.len();
    let max_length = config
        .max_length
        .map_or_else(|| "none".to_string(), |m| m.to_string());
    if examples.is_empty() {
        bail!(
            "every pair has a chosen or rejected sequence longer than max_length {max_length} \
             (TRL drops such pairs); raise max_length"
        );
    }
    if dropped > 0 {
        eprintln!(
            "note: {dropped} of {} pairs dropped: chosen or rejected longer than max_length {max_length} (as TRL)",
            run.dataset.len()
        );
    }

    let source = read_config(&run.model_dir)?;
    if source.head == HeadKind::SequenceClassification && source.num_labels != 1 {
        bail!(
            "{} has num_labels={}; a reward model outputs one score (num_labels=1)",
            run.model_dir.display(),
            source.num_labels
        );
    }
    if source.head == HeadKind::CausalLm {
        eprintln!(
            "note: {} is a causal LM: its lm_head is dropped and a new `score` head is initialised \
             (normal, std = initializer_range, seed {})",
            source.architecture_name(),
            run.args.seed
        );
    }
    let device = run.device()?;
    // TRL seeds before loading, so a fresh score head is reproducible.
    device.seed(run.args.seed);
    let mut model = load_sequence_classifier(&run.model_dir, 1, &device)?;
    model.set_pad_token_id(pad_token_id);
    if config.eos_token.is_some()
        && let Some(eos) = tokenizer.eos_token_id()
    {
        model.set_eos_token_id(eos);
    }
    let mut method = RewardMethod::new(config, tokenizer)?;
    let mut logger = run.logger(interrupt)?;
    run.announce("reward", examples.len(), "pairs", "");
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
