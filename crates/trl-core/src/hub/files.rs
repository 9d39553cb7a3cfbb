//! Which files make a model (config, tokenizer, weights and their shards) and which make a
//! dataset (data files, not the metadata `datasets` writes beside them), in a repo or a folder.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::cache::list_files;
use super::hub_error;
use crate::{Error, Result};

/// The model's architecture: the first file a model folder must have.
pub(super) const CONFIG_FILE: &str = "config.json";
/// The files trl-rs builds a model and its tokenizer from.
pub(super) const REQUIRED_MODEL_FILES: [&str; 3] =
    [CONFIG_FILE, "tokenizer.json", "tokenizer_config.json"];
/// Fetched when the repo has them (the model card for its license, which a push's card repeats).
pub(super) const OPTIONAL_MODEL_FILES: [&str; 4] = [
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "README.md",
];
pub(super) const SINGLE_WEIGHTS: &str = "model.safetensors";
/// peft's adapter files: a repo holding only an adapter has these instead of `config.json`.
pub(super) const ADAPTER_FILES: [&str; 2] = [ADAPTER_CONFIG, crate::lora::ADAPTER_FILE];
/// The adapter's `adapter_config.json`, which marks a repo as holding an adapter.
pub(super) const ADAPTER_CONFIG: &str = crate::lora::CONFIG_FILE;
/// Fetched with an adapter when its repo has them (peft saves the tokenizer beside the adapter
/// when it was extended; the base's is used otherwise).
pub(super) const OPTIONAL_ADAPTER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "README.md",
];
pub(super) const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// Extensions of the data files a dataset repo is read from.
pub(super) const DATA_EXTENSIONS: [&str; 3] = ["jsonl", "json", "parquet"];
/// JSON files `datasets` writes next to the data, which are not data.
pub(super) const DATASET_METADATA_FILES: [&str; 4] = [
    "dataset_info.json",
    "dataset_infos.json",
    "dataset_dict.json",
    "state.json",
];

/// The names in a `model.safetensors.index.json`'s `weight_map`, each once, sorted.
pub(super) fn shard_files(index: &Path) -> Result<BTreeSet<String>> {
    let bytes = fs::read(index).map_err(|source| Error::io(index, source))?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::json(index, source))?;
    let shape_error = || Error::Hub {
        message: format!(
            "{}: expected a `weight_map` object mapping tensor names to shard file names",
            index.display()
        ),
    };
    let weight_map = parsed
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(shape_error)?;
    let shards = weight_map
        .values()
        .map(|shard| shard.as_str().map(str::to_owned).ok_or_else(shape_error))
        .collect::<Result<BTreeSet<_>>>()?;
    if shards.is_empty() {
        return Err(shape_error());
    }
    Ok(shards)
}

/// A local model folder, checked for `config.json` first: it says what to build, so its
/// absence is the first thing to report (before the tokenizer files or the weights).
pub(super) fn local_model(path: PathBuf) -> Result<PathBuf> {
    if !path.is_dir() {
        return Err(hub_error(format!(
            "`{}` is a file: pass the model folder that holds config.json",
            path.display()
        )));
    }
    if !path.join(CONFIG_FILE).is_file() {
        return Err(hub_error(format!(
            "model folder `{}` has no {CONFIG_FILE}: pass a folder written by `save_pretrained` \
             (config.json, tokenizer.json, model.safetensors)",
            path.display()
        )));
    }
    Ok(path)
}

pub(super) fn local_dataset_files(
    path: PathBuf,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path]);
    }
    let files: Vec<PathBuf> = list_files(&path)?
        .into_iter()
        .filter(|file| is_data_file(file) && keep(file))
        .map(|file| path.join(file))
        .collect();
    if files.is_empty() {
        return Err(hub_error(format!(
            "folder `{}` holds no .jsonl, .json or .parquet data files that were asked for",
            path.display()
        )));
    }
    Ok(files)
}

pub(super) fn is_data_file(repo_path: &str) -> bool {
    let name = repo_path.rsplit('/').next().unwrap_or(repo_path);
    let has_data_extension = name.rsplit_once('.').is_some_and(|(_, extension)| {
        DATA_EXTENSIONS
            .iter()
            .any(|data| extension.eq_ignore_ascii_case(data))
    });
    has_data_extension
        && !DATASET_METADATA_FILES.contains(&name)
        && !repo_path.split('/').any(|part| part.starts_with('.'))
}
