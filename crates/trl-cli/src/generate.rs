//! `trl generate`: completions for every prompt of a dataset (prompt-only rows, standard or
//! conversational) or of standard input (one prompt a line), as JSON lines: the row's columns
//! plus `completion` and `completion_ids`.

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use trl_core::data::{DatasetArgs, Method, Row, Style, load_dataset};
use trl_core::generate::{Completion, generate};

use crate::sampling_args::{Generator, SamplingArgs};

/// Arguments of `trl generate`, with transformers' and TRL's names.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A causal LM: a folder or hub id.
    #[arg(long = "model_name_or_path")]
    model_name_or_path: String,
    /// Prompt-only rows (`prompt`: text or messages) in a .jsonl/.json/.parquet file, folder or
    /// hub dataset; `-` reads standard input, one prompt a line.
    #[arg(long = "dataset_name")]
    dataset_name: String,
    /// The dataset config (`name` of `datasets.load_dataset`).
    #[arg(long = "dataset_config")]
    dataset_config: Option<String>,
    /// The split to read.
    #[arg(long = "dataset_train_split", default_value = "train")]
    dataset_train_split: String,
    /// Where to write the JSON lines (default: standard output).
    #[arg(long = "output_file")]
    output_file: Option<PathBuf>,
    /// Completions per prompt.
    #[arg(long = "num_return_sequences", default_value_t = 1)]
    num_return_sequences: usize,
    /// Prompts per batch (each with its `num_return_sequences` sequences).
    #[arg(long = "batch_size", default_value_t = 8)]
    batch_size: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// The rows to complete and whether they are conversational.
struct Prompts {
    rows: Vec<Row>,
    conversational: bool,
}

/// Generates for every row and writes one JSON object per sequence.
pub fn run(args: &GenerateArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch_size must be at least 1");
    }
    let prompts = read_prompts(args)?;
    let mut generator = args.sampling.load(&args.model_name_or_path)?;
    generator.options.num_return_sequences = args.num_return_sequences;
    generator.options.validate()?;
    let ids = prompts
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            prompt_ids(&generator, row, prompts.conversational)
                .with_context(|| format!("row {}", i + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "trl generate: {} prompts x {} sequences, model {}, device {}",
        ids.len(),
        args.num_return_sequences,
        generator.model_dir.display(),
        generator.device_spec
    );
    let sink: Box<dyn Write> = match &args.output_file {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let bar = progress_bar(ids.len() as u64);
    for (batch_index, (batch_ids, batch_rows)) in ids
        .chunks(args.batch_size)
        .zip(prompts.rows.chunks(args.batch_size))
        .enumerate()
    {
        // Each batch draws from its own streams: the output depends on seed and batch_size.
        let mut options = generator.options.clone();
        options.seed =
            generator.options.seed ^ (batch_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let completions = generate(
            &generator.model,
            batch_ids,
            &options,
            Some(&generator.tokenizer),
            &mut |_, _| {},
        )?;
        for completion in completions {
            let row = &batch_rows[completion.prompt_index];
            let line = output_row(&generator, row, &completion, prompts.conversational)?;
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        bar.inc(batch_ids.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(path) = &args.output_file {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Prompt-only rows from the dataset, or `{"prompt": line}` rows from standard input.
fn read_prompts(args: &GenerateArgs) -> Result<Prompts> {
    if args.dataset_name == "-" {
        let mut rows = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading standard input")?;
            if !line.trim().is_empty() {
                rows.push(Row::from_iter([(
                    "prompt".to_string(),
                    Value::String(line),
                )]));
            }
        }
        if rows.is_empty() {
            bail!("--dataset_name -: standard input holds no prompt (one prompt a line)");
        }
        return Ok(Prompts {
            rows,
            conversational: false,
        });
    }
    let data_args = DatasetArgs {
        dataset_name: args.dataset_name.clone(),
        dataset_config: args.dataset_config.clone(),
        dataset_train_split: args.dataset_train_split.clone(),
        dataset_text_field: "text".into(),
    };
    let dataset = load_dataset(&data_args, Method::Grpo).with_context(|| {
        format!(
            "{}: trl generate reads prompt-only rows (a `prompt` column)",
            args.dataset_name
        )
    })?;
    let conversational = dataset.format.style == Style::Conversational;
    Ok(Prompts {
        rows: dataset.into_rows(),
        conversational,
    })
}

/// A row's prompt as token ids: standard text encoded as is, messages through the chat
/// template with the assistant header appended (as TRL's online trainers prompt).
fn prompt_ids(generator: &Generator, row: &Row, conversational: bool) -> Result<Vec<u32>> {
    let prompt = row.get("prompt").context("the row has no `prompt`")?;
    if !conversational && !prompt.is_string() {
        anyhow::bail!("`prompt` is not a string");
    }
    Ok(generator
        .tokenizer
        .prompt_ids(prompt, &serde_json::Map::new(), false)?)
}

/// The row with `completion` (text, or one assistant message) and `completion_ids`.
fn output_row(
    generator: &Generator,
    row: &Row,
    completion: &Completion,
    conversational: bool,
) -> Result<Value> {
    let text = generator.tokenizer.decode(&completion.token_ids, true)?;
    let mut out = row.clone();
    let completion_value = if conversational {
        json!([{"role": "assistant", "content": text}])
    } else {
        Value::String(text)
    };
    out.insert("completion".into(), completion_value);
    out.insert("completion_ids".into(), json!(completion.token_ids));
    Ok(Value::Object(out))
}

/// A bar of prompts done on stderr (hidden when stderr is not a terminal).
fn progress_bar(prompts: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(prompts);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} prompts [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
