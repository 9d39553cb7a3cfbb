//! `trl merge`: folds a peft LoRA adapter into its base model (peft's `merge_and_unload`) and
//! writes a plain Hugging Face checkpoint, in the base checkpoint's dtype, with the tokenizer.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use trl_core::lora::{self, LoraConfig, TaskType, is_adapter_dir};
use trl_core::model::{
    WeightWriter, load_causal_lm, load_sequence_classifier, read_config, save_pretrained_as,
    stored_dtype,
};

use crate::tokenizer_setup::load_tokenizer;

/// Arguments of `trl merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// A peft adapter folder (`adapter_config.json` + `adapter_model.safetensors`); its
    /// `base_model_name_or_path` names the base model (a folder or hub id).
    #[arg(long = "model_name_or_path")]
    model_name_or_path: PathBuf,
    /// Where to write the merged checkpoint.
    #[arg(long = "output_dir")]
    output_dir: PathBuf,
}

/// Loads base + adapter, merges, and saves.
pub fn run(args: &MergeArgs) -> Result<()> {
    merge_adapter(&args.model_name_or_path, &args.output_dir)
}

/// Folds the peft adapter in `adapter_dir` into its base and writes the merged checkpoint
/// (base dtype, with the tokenizer) into `output_dir`: `trl merge`, and what `trl export
/// gguf` does first with an adapter folder.
pub fn merge_adapter(adapter_dir: &std::path::Path, output_dir: &std::path::Path) -> Result<()> {
    if !is_adapter_dir(adapter_dir) {
        bail!(
            "{}: no adapter_config.json; --model_name_or_path must be a peft adapter folder",
            adapter_dir.display()
        );
    }
    let config = LoraConfig::read(adapter_dir)?;
    let base_dir = trl_core::hub::resolve_model(&config.base_model_name_or_path, None)
        .with_context(|| {
            format!(
                "{}: base_model_name_or_path {:?}",
                adapter_dir.display(),
                config.base_model_name_or_path
            )
        })?;
    let tokenizer_dir = if adapter_dir.join("tokenizer.json").is_file() {
        adapter_dir
    } else {
        base_dir.as_path()
    };
    let tokenizer = load_tokenizer(tokenizer_dir)?;
    let dtype = stored_dtype(&read_config(&base_dir)?);
    let device = Device::default();
    let mut writer = WeightWriter::default();
    let model_config = match config.task_type {
        TaskType::CausalLm => {
            let base = load_causal_lm(&base_dir, &device)?;
            let merged = lora::merge(lora::load_adapter(base, &config, adapter_dir, &device)?)?;
            merged.save_weights(&mut writer)?;
            merged.config().clone()
        }
        TaskType::SeqCls => {
            let base = load_sequence_classifier(&base_dir, 1, &device)?;
            let merged = lora::merge(lora::load_adapter(base, &config, adapter_dir, &device)?)?;
            merged.save_weights(&mut writer)?;
            merged.config().clone()
        }
    };
    save_pretrained_as(output_dir, &model_config, &writer, dtype)?;
    tokenizer.save(output_dir)?;
    eprintln!(
        "merged {} into {} -> {} ({dtype:?})",
        adapter_dir.display(),
        base_dir.display(),
        output_dir.display()
    );
    Ok(())
}
