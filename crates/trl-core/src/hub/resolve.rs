//! The public entry points: a model or dataset argument resolved to local files, from disk or
//! through the cache.

use std::path::PathBuf;

use super::cache::RepoKind;
use super::files::{
    ADAPTER_CONFIG, ADAPTER_FILES, CONFIG_FILE, OPTIONAL_ADAPTER_FILES, OPTIONAL_MODEL_FILES,
    REQUIRED_MODEL_FILES, SINGLE_WEIGHTS, WEIGHTS_INDEX, is_data_file, local_dataset_files,
    local_model, shard_files,
};
use super::ids::{Location, locate};
use super::options::HubOptions;
use super::snapshot::Snapshot;
use crate::Result;

const DEFAULT_REVISION: &str = "main";

/// Returns the folder of a model: `id_or_path` itself when it is an existing folder (`revision`
/// is then ignored), else the cache snapshot of hub repo `id_or_path` at `revision` (default
/// `main`) holding `config.json`, the tokenizer files, `model.safetensors` or the index and every
/// shard it lists, and whichever of `generation_config.json`, `special_tokens_map.json`,
/// `chat_template.jinja` and `README.md` the repo has; for a repo holding a peft adapter
/// instead (no `config.json`), its adapter and tokenizer files. Offline (`HF_HUB_OFFLINE`), or when the hub cannot be
/// reached at all, the cached snapshot of the revision is used. Options come from the
/// environment ([`HubOptions::from_env`]).
pub fn resolve_model(id_or_path: &str, revision: Option<&str>) -> Result<PathBuf> {
    match locate(id_or_path)? {
        Location::Local(path) => local_model(path),
        Location::Hub => download_model(id_or_path, revision, &HubOptions::from_env()?),
    }
}

/// [`resolve_model`] with explicit options instead of the environment.
pub fn resolve_model_with(
    id_or_path: &str,
    revision: Option<&str>,
    options: &HubOptions,
) -> Result<PathBuf> {
    match locate(id_or_path)? {
        Location::Local(path) => local_model(path),
        Location::Hub => download_model(id_or_path, revision, options),
    }
}

/// Returns the data files (`.jsonl`, `.json`, `.parquet`, sorted by path) of a dataset: an
/// existing file as is, the data files under an existing folder, or those of hub dataset repo
/// `id_or_path` at `revision` (default `main`), downloaded into the cache. Offline, only the files
/// already cached are returned. Options come from the environment ([`HubOptions::from_env`]).
pub fn resolve_dataset_files(id_or_path: &str, revision: Option<&str>) -> Result<Vec<PathBuf>> {
    match locate(id_or_path)? {
        Location::Local(path) => local_dataset_files(path, &|_| true),
        Location::Hub => {
            download_dataset_files(id_or_path, revision, &|_| true, &HubOptions::from_env()?)
        }
    }
}

/// [`resolve_dataset_files`] with explicit options, keeping only the data files for which `keep`
/// (given the path inside the repo or folder, `/`-separated, e.g. `data/train-00000.parquet`)
/// is true, so that a split can be chosen without downloading the others.
pub fn resolve_dataset_files_with(
    id_or_path: &str,
    revision: Option<&str>,
    keep: &dyn Fn(&str) -> bool,
    options: &HubOptions,
) -> Result<Vec<PathBuf>> {
    match locate(id_or_path)? {
        Location::Local(path) => local_dataset_files(path, keep),
        Location::Hub => download_dataset_files(id_or_path, revision, keep, options),
    }
}

/// One named file of a hub dataset repo (its `README.md`, which declares the dataset's
/// `configs:`), downloaded into the cache; `None` when the repo has no such file.
pub fn fetch_dataset_file(
    id: &str,
    revision: Option<&str>,
    file: &str,
    options: &HubOptions,
) -> Result<Option<PathBuf>> {
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let snapshot = Snapshot::open(RepoKind::Dataset, id, revision, options)?;
    if !snapshot.has(file) {
        return Ok(None);
    }
    let path = snapshot.fetch(file)?;
    snapshot.record_revision()?;
    Ok(Some(path))
}

fn download_model(id: &str, revision: Option<&str>, options: &HubOptions) -> Result<PathBuf> {
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let snapshot = Snapshot::open(RepoKind::Model, id, revision, options)?;
    if !snapshot.has(CONFIG_FILE) && snapshot.has(ADAPTER_CONFIG) {
        return download_adapter(&snapshot);
    }
    for file in REQUIRED_MODEL_FILES {
        snapshot.fetch(file)?;
    }
    for file in OPTIONAL_MODEL_FILES {
        if snapshot.has(file) {
            snapshot.fetch(file)?;
        }
    }
    if snapshot.has(SINGLE_WEIGHTS) {
        snapshot.fetch(SINGLE_WEIGHTS)?;
    } else if snapshot.has(WEIGHTS_INDEX) {
        let index = snapshot.fetch(WEIGHTS_INDEX)?;
        for shard in shard_files(&index)? {
            snapshot.fetch(&shard)?;
        }
    } else {
        return Err(snapshot.missing_weights());
    }
    snapshot.record_revision()?;
    snapshot
        .dir()
        .ok_or_else(|| snapshot.missing(SINGLE_WEIGHTS))
}

/// A repo holding a peft adapter (`adapter_config.json`, no `config.json`), as TRL accepts one
/// for `--model_name_or_path`: the adapter's files, and its tokenizer files when it has them;
/// the base model is resolved from `base_model_name_or_path` by whoever reads the adapter.
fn download_adapter(snapshot: &Snapshot) -> Result<PathBuf> {
    for file in ADAPTER_FILES {
        snapshot.fetch(file)?;
    }
    for file in OPTIONAL_ADAPTER_FILES {
        if snapshot.has(file) {
            snapshot.fetch(file)?;
        }
    }
    snapshot.record_revision()?;
    snapshot
        .dir()
        .ok_or_else(|| snapshot.missing(ADAPTER_CONFIG))
}

fn download_dataset_files(
    id: &str,
    revision: Option<&str>,
    keep: &dyn Fn(&str) -> bool,
    options: &HubOptions,
) -> Result<Vec<PathBuf>> {
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let snapshot = Snapshot::open(RepoKind::Dataset, id, revision, options)?;
    let wanted: Vec<String> = snapshot
        .files()?
        .into_iter()
        .filter(|file| is_data_file(file) && keep(file))
        .collect();
    if wanted.is_empty() {
        let message = if options.offline {
            format!(
                "no data files of dataset `{id}` (revision `{revision}`) are in the cache at {}, and \
                 HF_HUB_OFFLINE is set so nothing is downloaded: unset it to download them once",
                snapshot.repo_dir.display()
            )
        } else {
            format!(
                "dataset `{id}` (revision `{revision}`) has no .jsonl, .json or .parquet data files \
                 that were asked for"
            )
        };
        return Err(snapshot.error(message));
    }
    let paths = wanted
        .iter()
        .map(|file| snapshot.fetch(file))
        .collect::<Result<Vec<_>>>()?;
    snapshot.record_revision()?;
    Ok(paths)
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
