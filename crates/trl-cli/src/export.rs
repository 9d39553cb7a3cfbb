//! `trl export gguf`: a model folder (or hub id) as one GGUF file for llama.cpp, Ollama and
//! LM Studio, in any of the usual file types, without llama.cpp's Python converter.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use trl_gguf::{ExportOptions, OutType, export};

/// The formats `trl export` writes.
#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// A GGUF file for llama.cpp (f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k).
    Gguf(GgufArgs),
}

/// Arguments of `trl export gguf`, with llama.cpp's converter's names where it has them.
#[derive(Args, Debug)]
pub struct GgufArgs {
    /// A causal LM (llama, mistral, qwen2, qwen3): a folder (e.g. a training run's output_dir)
    /// or a hub id, or a peft LoRA adapter folder (merged into its base first).
    #[arg(long = "model_name_or_path")]
    model_name_or_path: String,
    /// The model revision on the hub (branch, tag or commit).
    #[arg(long = "model_revision")]
    model_revision: Option<String>,
    /// The GGUF file to write (default: <model folder name>-<outtype>.gguf in the current
    /// folder).
    #[arg(long = "outfile")]
    outfile: Option<PathBuf>,
    /// The file type: f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k.
    #[arg(long = "outtype", default_value = "f16", value_parser = parse_outtype)]
    outtype: OutType,
    /// `general.name` in the file (default: the model folder's name).
    #[arg(long = "model_name")]
    model_name: Option<String>,
}

fn parse_outtype(value: &str) -> Result<OutType, String> {
    value.parse()
}

/// Runs `trl export <format>`.
pub fn run(command: &ExportCommand) -> Result<()> {
    match command {
        ExportCommand::Gguf(args) => run_gguf(args),
    }
}

fn run_gguf(args: &GgufArgs) -> Result<()> {
    let local = Path::new(&args.model_name_or_path);
    // A peft adapter folder is merged into its base first (into a scratch folder removed
    // afterwards), as `trl merge` would; the file is named after the adapter folder.
    let merged = local
        .join("adapter_config.json")
        .is_file()
        .then(|| MergedAdapter::new(local))
        .transpose()?;
    let model_dir = match &merged {
        Some(merged) => merged.dir.clone(),
        None => {
            trl_core::hub::resolve_model(&args.model_name_or_path, args.model_revision.as_deref())?
        }
    };
    let named_dir = if merged.is_some() {
        local.to_path_buf()
    } else {
        model_dir.clone()
    };
    let outfile = args
        .outfile
        .clone()
        .unwrap_or_else(|| default_outfile(&named_dir, args.outtype));
    let name = args.model_name.clone().or_else(|| {
        merged
            .is_some()
            .then(|| {
                named_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .flatten()
    });
    let options = ExportOptions {
        model_dir,
        outfile: outfile.clone(),
        outtype: args.outtype,
        name,
    };
    let summary = export(&options).with_context(|| {
        format!(
            "exporting {} to {}",
            args.model_name_or_path,
            outfile.display()
        )
    })?;
    let types: Vec<String> = summary
        .types
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!(
        "wrote {} ({} {}, {} tensors: {}, {:.1} MB)",
        outfile.display(),
        summary.arch,
        args.outtype.name(),
        summary.tensors,
        types.join(", "),
        summary.bytes as f64 / 1e6
    );
    Ok(())
}

/// An adapter merged into its base in a scratch folder, removed when dropped.
struct MergedAdapter {
    dir: PathBuf,
}

impl MergedAdapter {
    fn new(adapter_dir: &Path) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("trl-rs-merge-{}", std::process::id()));
        let merged = MergedAdapter { dir };
        crate::merge::merge_adapter(adapter_dir, &merged.dir)?;
        Ok(merged)
    }
}

impl Drop for MergedAdapter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `<folder name>-<outtype>.gguf` in the current folder (never inside the model folder, which
/// may be the hub cache).
fn default_outfile(model_dir: &Path, outtype: OutType) -> PathBuf {
    let name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    PathBuf::from(format!("{name}-{}.gguf", outtype.name()))
}
