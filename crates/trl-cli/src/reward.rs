//! `trl reward`: reward-model training with TRL's `RewardConfig` keys.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::Value;
use trl_core::data::Method as DataMethod;
use trl_core::model::{HeadKind, load_sequence_classifier, read_config};
use trl_reward::data::prepare_examples;
use trl_reward::trainer::resolve_pad_token;
use trl_reward::{Error as RewardError, RewardConfig, RewardMethod};

use crate::common::{Mode, PrepareError, print_help, setup_mode, wants_help};
use crate::lora::AdapterPlan;
use crate::tokenizer_setup::{TokenizerOverrides, chat_template_text, training_tokenizer};

/// Runs `trl reward` with raw arguments (everything after `reward`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    run_mode(raw, interrupt, Mode::Train)
}

/// [`run`] in `mode` (`trl eval --method reward` evaluates instead of training).
pub fn run_mode(raw: &[String], interrupt: Arc<AtomicBool>, mode: Mode) -> Result<()> {
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
    let mut run = setup_mode::<RewardConfig>("reward", raw, &defaults, DataMethod::Reward, mode)?;
    // A reward model's adapter is peft's SEQ_CLS: the `score` head trains in full with it.
    run.adapter = run
        .adapter
        .take()
        .map(AdapterPlan::for_sequence_classification);
    let config = run.config.clone();
    let overrides = TokenizerOverrides {
        chat_template_path: config.chat_template_path.as_deref(),
        eos_token: config.eos_token.as_deref(),
        pad_token: config.pad_token.as_deref(),
    };
    let mut tokenizer = training_tokenizer(&run.tokenizer_dir, &run.dataset, overrides)?;
    let pad_token_id = resolve_pad_token(&mut tokenizer, config.pad_token.as_deref())?;
    // Tokenized pairs are cached on disk (see `Setup::cached_examples`), keyed by every
    // setting that changes them: the chat template's text included.
    let template = chat_template_text(config.chat_template_path.as_deref())?;
    let options = serde_json::to_string(&(config.max_length, &config.eos_token, template))?;
    let prepare = |rows: &[trl_core::data::Row]| {
        prepare_examples(rows, &tokenizer, config.max_length).map_err(|e| match e {
            RewardError::Row { row, message } => PrepareError::Row(row, message),
            RewardError::Model(e) => PrepareError::Other(e),
            RewardError::Config(message) => PrepareError::Other(trl_core::Error::Data { message }),
        })
    };
    let examples = run.cached_examples("reward-prepare-v1", &options, || {
        prepare(run.dataset.rows())
    })?;
    let eval_examples = run.cached_eval_examples("reward-prepare-v1", &options, prepare)?;
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
    if let Some(plan) = &run.adapter {
        model = plan.apply(model, &device, run.args.seed)?;
    }
    let mut method = RewardMethod::new(config.clone(), tokenizer.clone())?;
    run.announce("reward", examples.len(), "pairs", "");
    // Resuming an adapter run rebuilds the base exactly as above (pad and eos ids included).
    let eos = config
        .eos_token
        .is_some()
        .then(|| tokenizer.eos_token_id())
        .flatten();
    let load_base = Box::new(
        move |dir: &std::path::Path, device: &burn::tensor::Device| {
            let mut model = load_sequence_classifier(dir, 1, device)?;
            model.set_pad_token_id(pad_token_id);
            if let Some(eos) = eos {
                model.set_eos_token_id(eos);
            }
            Ok(model)
        },
    );
    run.finish_adapted(
        &mut method,
        model,
        &examples,
        eval_examples.as_deref(),
        &device,
        interrupt,
        &tokenizer,
        load_base,
    )
}
