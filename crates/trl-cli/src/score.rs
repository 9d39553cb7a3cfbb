//! `trl score`: the reward a trained reward model gives every row of a dataset, as JSON lines
//! that keep the row's columns (`chosen_score` and `rejected_score` for preference rows, `score`
//! for prompt-completion, conversational `messages` or text rows).

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use trl_core::data::{DatasetArgs, FormatKind, Method, load_dataset, validate};
use trl_core::model::{HeadKind, SequenceClassifier, WeightReader, read_config};
use trl_reward::Error as RewardError;
use trl_reward::score::{score_rows, with_scores};

use crate::device::{default_device_spec, parse_device};
use crate::tokenizer_setup::load_tokenizer;

/// Arguments of `trl score`, spelled as TRL spells its keys.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// A `*ForSequenceClassification` reward model with one label: a folder or hub id.
    #[arg(long = "model_name_or_path")]
    model_name_or_path: String,
    /// A .jsonl, .json or .parquet file, a folder of them, or a hub dataset id.
    #[arg(long = "dataset_name")]
    dataset_name: String,
    /// The dataset config (`name` of `datasets.load_dataset`).
    #[arg(long = "dataset_config")]
    dataset_config: Option<String>,
    /// The split to score.
    #[arg(long = "dataset_train_split", default_value = "train")]
    dataset_train_split: String,
    /// The column holding standard text (language-modeling data).
    #[arg(long = "dataset_text_field", default_value = "text")]
    dataset_text_field: String,
    /// Where to write the JSON lines (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Sequences per forward pass (a preference row is two).
    #[arg(
        long = "batch_size",
        default_value_t = 8,
        allow_negative_numbers = true
    )]
    batch_size: usize,
    /// Longer sequences are scored on their first `max_length` tokens (default: no limit).
    #[arg(long = "max_length", allow_negative_numbers = true)]
    max_length: Option<usize>,
    /// `cpu`, `cuda`, `cuda:N` or `wgpu` (default: CUDA if compiled in, else the CPU).
    #[arg(long)]
    device: Option<String>,
}

/// Scores every row and writes one JSON object per line.
pub fn run(args: &ScoreArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch_size must be at least 1");
    }
    if args.max_length == Some(0) {
        bail!("--max_length 0 leaves no token to score: give at least 1 (or leave it out)");
    }
    let data_args = DatasetArgs {
        dataset_name: args.dataset_name.clone(),
        dataset_config: args.dataset_config.clone(),
        dataset_train_split: args.dataset_train_split.clone(),
        dataset_text_field: args.dataset_text_field.clone(),
    };
    // Preference data is checked as reward training checks it; anything else as SFT data
    // (text, messages, prompt-completion), which a reward model scores as one sequence.
    let report = validate(&data_args, Method::Reward, None)?;
    let method = match report.format.map(|f| f.kind) {
        Some(FormatKind::Preference | FormatKind::ImplicitPreference) => Method::Reward,
        Some(FormatKind::LanguageModeling | FormatKind::PromptCompletion) | None => Method::Sft,
        Some(other) => bail!(
            "{} holds {other} data; trl score scores preference, prompt-completion, messages or text rows",
            args.dataset_name
        ),
    };
    let dataset = load_dataset(&data_args, method)?;

    let model_dir = trl_core::hub::resolve_model(&args.model_name_or_path, None)?;
    let config = read_config(&model_dir)?;
    if config.head != HeadKind::SequenceClassification {
        bail!(
            "{} is a {}; trl score needs a reward model (*ForSequenceClassification with one label), \
             e.g. the output of `trl reward`",
            model_dir.display(),
            config.architecture_name()
        );
    }
    if config.num_labels != 1 {
        bail!(
            "{} has num_labels={}; a reward model outputs one score (num_labels=1)",
            model_dir.display(),
            config.num_labels
        );
    }
    let tokenizer = load_tokenizer(&model_dir)?;
    // The pad id training wrote into config.json, else TRL's choice (tokenizer pad, else EOS).
    let pad_token_id = match config.pad_token_id {
        Some(pad) => pad,
        None => trl_core::tokenizer::pad_token_id(&tokenizer, None)?,
    };
    let spec = args
        .device
        .clone()
        .unwrap_or_else(|| default_device_spec().to_string());
    let device = parse_device(&spec)?;
    let mut reader = WeightReader::open(&model_dir)?;
    let mut model = SequenceClassifier::load(&mut reader, &config, &device)?;
    model.set_pad_token_id(pad_token_id);

    eprintln!(
        "trl score: {} rows (format {}), model {}, device {spec}",
        dataset.len(),
        dataset.format,
        model_dir.display()
    );
    let (scores, truncated) = score_rows(
        &model,
        &tokenizer,
        dataset.rows(),
        &args.dataset_text_field,
        pad_token_id,
        args.batch_size,
        args.max_length,
    )
    .map_err(|e| match e {
        RewardError::Row { row, message } => anyhow::anyhow!("{}: {message}", dataset.origin(row)),
        other => other.into(),
    })?;
    if let (true, Some(max)) = (truncated > 0, args.max_length) {
        eprintln!(
            "note: {truncated} sequence(s) longer than max_length {max} were scored on their first {max} tokens"
        );
    }

    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    for (row, score) in dataset.rows().iter().zip(scores) {
        serde_json::to_writer(&mut out, &with_scores(row, score))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if let Some(path) = &args.output {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
