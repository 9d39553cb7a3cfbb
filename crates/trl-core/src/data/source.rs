//! Where the training split of `--dataset_name` lives: a file, a folder, or a hub dataset
//! (listed and downloaded through [`crate::hub`], which reads local folders too). Which of the
//! files form the split is decided in [`super::splits`], the way `datasets` decides it.
//!
//! A single `.jsonl`, `.json` or `.parquet` file is the `train` split, an addition of trl-rs:
//! `datasets` wants `load_dataset("json", data_files=...)` for a file.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::splits::{parse_readme_configs, select_split};
use crate::hub::{self, HubOptions};
use crate::{Error, Result};

/// What TRL's `ScriptArguments` / `SFTConfig` say about the training data, with TRL's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetArgs {
    /// A `.jsonl`, `.json` or `.parquet` file, a folder of them, or a hub dataset id.
    pub dataset_name: String,
    /// The `name` of `load_dataset`: a config of the README's `configs:` list.
    pub dataset_config: Option<String>,
    /// The split to train on.
    pub dataset_train_split: String,
    /// The column holding the text of standard language-modeling data (SFT).
    pub dataset_text_field: String,
}

impl DatasetArgs {
    /// The `train` split and the `text` column of `dataset_name`, TRL's defaults.
    pub fn new(dataset_name: impl Into<String>) -> Self {
        DatasetArgs {
            dataset_name: dataset_name.into(),
            dataset_config: None,
            dataset_train_split: "train".to_owned(),
            dataset_text_field: "text".to_owned(),
        }
    }
}

/// The files of one split, and how to read the JSON ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitFiles {
    /// Local paths, downloaded into the hub cache when the dataset is on the hub.
    pub files: Vec<PathBuf>,
    /// The config's `field`: JSON files hold `{field: [rows...]}`.
    pub json_field: Option<String>,
}

/// Finds (and for a hub dataset downloads) the files of the split `args` names; the hub is
/// reached as the `HF_*` environment says ([`HubOptions::from_env`]).
pub fn resolve_split_files(args: &DatasetArgs) -> Result<SplitFiles> {
    if Path::new(&args.dataset_name).is_file() {
        return single_file(Path::new(&args.dataset_name), args);
    }
    resolve_split_files_with(args, &HubOptions::from_env()?)
}

/// [`resolve_split_files`] with explicit hub options.
pub fn resolve_split_files_with(args: &DatasetArgs, options: &HubOptions) -> Result<SplitFiles> {
    let name = args.dataset_name.as_str();
    let path = Path::new(name);
    if path.is_file() {
        return single_file(path, args);
    }
    let listed = list_data_files(name, options)?;
    // The README declares the configs (`configs:` in its YAML header), locally or on the hub.
    let readme_path = if path.is_dir() {
        Some(path.join("README.md"))
    } else {
        hub::fetch_dataset_file(name, None, "README.md", options)?
    };
    let readme = match &readme_path {
        Some(file) => read_readme(file)?,
        None => None,
    };
    let configs = match &readme {
        Some(text) => parse_readme_configs(text).map_err(|message| {
            let file = readme_path
                .clone()
                .unwrap_or_else(|| path.join("README.md"));
            data_error(format!("{}: {message}", file.display()))
        })?,
        None => Vec::new(),
    };
    let (wanted, json_field) = select_split(
        &listed,
        &configs,
        args.dataset_config.as_deref(),
        &args.dataset_train_split,
    )
    .map_err(|message| data_error(format!("`{name}`: {message}")))?;
    let keep = |file: &str| wanted.iter().any(|w| w == file);
    let files = hub::resolve_dataset_files_with(name, None, &keep, options)?;
    Ok(SplitFiles { files, json_field })
}

fn single_file(path: &Path, args: &DatasetArgs) -> Result<SplitFiles> {
    if let Some(config) = args.dataset_config.as_deref().filter(|c| *c != "default") {
        return Err(data_error(format!(
            "`{}` is a single file, which has no config `{config}`: drop dataset_config",
            path.display()
        )));
    }
    if args.dataset_train_split != "train" {
        return Err(data_error(format!(
            "`{}` is a single file, which is the split `train`, not `{}`: pass \
             --dataset_train_split train, or a folder whose file names hold the split",
            path.display(),
            args.dataset_train_split
        )));
    }
    Ok(SplitFiles {
        files: vec![path.to_path_buf()],
        json_field: None,
    })
}

/// Every data file of a folder or hub repo, `/`-separated and relative to it. hub.rs lists the
/// files only to filter them, so the filter records them and keeps none; the error it then
/// returns ("nothing asked for") is expected, any other is passed on.
fn list_data_files(name: &str, options: &HubOptions) -> Result<Vec<String>> {
    let seen = RefCell::new(Vec::new());
    let record = |file: &str| {
        seen.borrow_mut().push(file.to_owned());
        false
    };
    let listing = hub::resolve_dataset_files_with(name, None, &record, options);
    let files: Vec<String> = seen
        .into_inner()
        .into_iter()
        // datasets skips `__pycache__`-like parts as well as hidden ones (hub.rs skips those).
        .filter(|file| !file.split('/').any(|part| part.starts_with("__")))
        .collect();
    if files.is_empty() {
        listing?;
        return Err(data_error(format!(
            "`{name}` holds no .jsonl, .json or .parquet files"
        )));
    }
    Ok(files)
}

fn read_readme(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::io(path, error)),
    }
}

fn data_error(message: String) -> Error {
    Error::Data { message }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
