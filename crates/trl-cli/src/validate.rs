//! `trl validate`: reads a training split the way the method would and checks every row, so
//! that bad data is found before a run starts rather than hours into it.

use anyhow::{Result, bail};
use clap::Args;
use trl_core::data::{DatasetArgs, Method, validate};
use trl_core::tokenizer::Tokenizer;

/// Arguments of `trl validate`, spelled as TRL spells them.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The method the data is for: sft, dpo, kto, reward, grpo or rloo.
    #[arg(long)]
    method: Method,
    /// A .jsonl, .json or .parquet file, a folder of them, or a hub dataset id.
    #[arg(long = "dataset_name")]
    dataset_name: String,
    /// The dataset config (`name` of `datasets.load_dataset`), from the README's `configs:`.
    #[arg(long = "dataset_config")]
    dataset_config: Option<String>,
    /// The split to check.
    #[arg(long = "dataset_train_split", default_value = "train")]
    dataset_train_split: String,
    /// The column holding standard language-modeling text (SFT).
    #[arg(long = "dataset_text_field", default_value = "text")]
    dataset_text_field: String,
    /// A model folder or hub id: its tokenizer and chat template measure each row in tokens.
    #[arg(long = "model_name_or_path")]
    model_name_or_path: Option<String>,
    /// Rows longer than this many tokens are counted (default: the method's TRL default, 1024
    /// for sft, dpo, kto and reward). Needs --model_name_or_path.
    #[arg(long = "max_length", allow_negative_numbers = true)]
    max_length: Option<usize>,
}

/// Prints the report; fails (non-zero exit) when any row has a problem, after listing them.
pub fn run(args: &ValidateArgs) -> Result<()> {
    let dataset = DatasetArgs {
        dataset_name: args.dataset_name.clone(),
        dataset_config: args.dataset_config.clone(),
        dataset_train_split: args.dataset_train_split.clone(),
        dataset_text_field: args.dataset_text_field.clone(),
    };
    if args.max_length.is_some() && args.model_name_or_path.is_none() {
        bail!("--max_length counts tokens: pass --model_name_or_path too, for its tokenizer");
    }
    let tokenizer = match &args.model_name_or_path {
        Some(model) => Some(load_tokenizer(model)?),
        None => None,
    };
    let max_length = args.max_length.or(args.method.default_max_length());
    let report = validate(
        &dataset,
        args.method,
        tokenizer.as_ref().map(|t| (t, max_length)),
    )?;
    println!("{report}");
    if !report.is_valid() {
        bail!(
            "{} is not valid for {}: {} problem(s), listed above",
            args.dataset_name,
            args.method,
            report.problem_count
        );
    }
    Ok(())
}

/// The tokenizer of a local model folder, or of a hub model (resolved through the cache).
fn load_tokenizer(model: &str) -> Result<Tokenizer> {
    let folder = if std::path::Path::new(model).is_dir() {
        std::path::PathBuf::from(model)
    } else {
        trl_core::hub::resolve_model(model, None)?
    };
    Ok(Tokenizer::from_dir(folder)?)
}
