//! Which files hold the training split, found the way `datasets.load_dataset(dataset_name,
//! name=dataset_config)[dataset_train_split]` finds them (datasets 5.x `data_files.py` and
//! `utils/metadata.py`):
//!
//! - a `.jsonl`, `.json` or `.parquet` file is the `train` split (an addition of trl-rs:
//!   `datasets` wants `load_dataset("json", data_files=...)` for a file);
//! - a folder or a hub dataset whose `README.md` has a YAML `configs:` list uses the config named
//!   by `dataset_config` (else the one marked `default: true`, the one named `default`, or the
//!   only one), its `data_files` per split and its `data_dir`;
//! - otherwise the splits come from the file names: `data/{split}-00000-of-00001.*` shards, else
//!   folders named after a split (`train/`, `data/training-set/`), else file names holding a
//!   split keyword (`train.jsonl`, `my_train_set.jsonl`), else every file is `train`.
//!   The keywords: train/training, validation/valid/dev/val, test/testing/eval/evaluation.
//!
//! Listing and downloading go through [`crate::hub`], which reads local folders too.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::glob::glob_match;
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
    let readme = if path.is_dir() {
        read_readme(&path.join("README.md"))?
    } else {
        None
    };
    if readme.is_none()
        && !path.is_dir()
        && args
            .dataset_config
            .as_deref()
            .is_some_and(|c| c != "default")
    {
        // TODO(hub): hub.rs offers no call that fetches README.md, so the configs of a hub
        // dataset cannot be read yet; say so rather than guess.
        return Err(data_error(format!(
            "dataset_config `{}`: the configs of hub dataset `{name}` are declared in its README.md, \
             which trl cannot read yet; download the dataset (`hf download {name} --repo-type \
             dataset --local-dir DIR`) and pass the folder as dataset_name",
            args.dataset_config.as_deref().unwrap_or_default()
        )));
    }
    let configs = match &readme {
        Some(text) => parse_readme_configs(text).map_err(|message| {
            data_error(format!("{}: {message}", path.join("README.md").display()))
        })?,
        None => Vec::new(),
    };
    let (wanted, json_field) = select_split(&listed, &configs, args)
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

/// One entry of a README's `configs:` list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigSpec {
    name: String,
    default: bool,
    data_dir: Option<String>,
    /// `(split, patterns)`; `None` when the config leaves the files to the default rules.
    data_files: Option<Vec<(String, Vec<String>)>>,
    field: Option<String>,
}

/// The `configs:` of a README's YAML front matter (`---` lines around it).
fn parse_readme_configs(readme: &str) -> std::result::Result<Vec<ConfigSpec>, String> {
    let readme = readme.strip_prefix('\u{feff}').unwrap_or(readme);
    let Some(rest) = readme
        .strip_prefix("---\n")
        .or_else(|| readme.strip_prefix("---\r\n"))
    else {
        return Ok(Vec::new());
    };
    let end = rest
        .find("\n---")
        .ok_or("the YAML header opened by `---` is never closed")?;
    let header: Value = serde_yaml_ng::from_str(&rest[..end])
        .map_err(|error| format!("the YAML header is not valid YAML: {error}"))?;
    let configs = match header.get("configs") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(configs)) => configs,
        Some(other) => return Err(format!("expected `configs` to be a list, found {other}")),
    };
    configs.iter().map(parse_config).collect()
}

fn parse_config(config: &Value) -> std::result::Result<ConfigSpec, String> {
    let name = config
        .get("config_name")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("each config needs a `config_name` string, found {config}"))?;
    let string = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
    let patterns = |value: &Value| -> Option<Vec<String>> {
        match value {
            Value::String(pattern) => Some(vec![pattern.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        }
    };
    let invalid = || {
        format!(
            "config `{name}`: expected data_files to be a string, a list of strings, or a list of \
             {{split, path}} entries"
        )
    };
    let data_files = match config.get("data_files") {
        None | Some(Value::Null) => None,
        Some(Value::Array(entries)) if entries.iter().all(Value::is_object) => Some(
            entries
                .iter()
                .map(|entry| {
                    let split = entry
                        .get("split")
                        .and_then(Value::as_str)
                        .ok_or_else(invalid)?;
                    let paths = entry.get("path").and_then(patterns).ok_or_else(invalid)?;
                    Ok((split.to_owned(), paths))
                })
                .collect::<std::result::Result<Vec<_>, String>>()?,
        ),
        Some(value) => Some(vec![(
            "train".to_owned(),
            patterns(value).ok_or_else(invalid)?,
        )]),
    };
    Ok(ConfigSpec {
        name: name.to_owned(),
        default: config
            .get("default")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        data_dir: string("data_dir"),
        data_files,
        field: string("field"),
    })
}

/// The files of the requested split among `files`, and the JSON field to read.
fn select_split(
    files: &[String],
    configs: &[ConfigSpec],
    args: &DatasetArgs,
) -> std::result::Result<(Vec<String>, Option<String>), String> {
    let config = choose_config(configs, args.dataset_config.as_deref())?;
    let data_dir = config
        .and_then(|c| c.data_dir.as_deref())
        .map(|d| d.trim_matches('/'));
    let under_dir: Vec<String> = match data_dir {
        Some(dir) => files
            .iter()
            .filter_map(|f| f.strip_prefix(dir).and_then(|rest| rest.strip_prefix('/')))
            .map(str::to_owned)
            .collect(),
        None => files.to_vec(),
    };
    let splits = match config.and_then(|c| c.data_files.as_ref()) {
        Some(declared) => declared
            .iter()
            .map(|(split, patterns)| {
                let matched = under_dir
                    .iter()
                    .filter(|file| {
                        patterns
                            .iter()
                            .any(|p| glob_match(p.trim_start_matches("./"), file))
                    })
                    .cloned()
                    .collect();
                (split.clone(), matched)
            })
            .collect(),
        None => default_splits(&under_dir),
    };
    let split = &args.dataset_train_split;
    let available: Vec<&str> = splits.iter().map(|(name, _)| name.as_str()).collect();
    let Some((_, matched)) = splits.iter().find(|(name, _)| name == split) else {
        return Err(format!(
            "no split `{split}` (found: {}); pass one with --dataset_train_split",
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            }
        ));
    };
    if matched.is_empty() {
        return Err(format!(
            "split `{split}` matches no .jsonl, .json or .parquet file"
        ));
    }
    let full = |file: &String| match data_dir {
        Some(dir) => format!("{dir}/{file}"),
        None => file.clone(),
    };
    Ok((
        matched.iter().map(full).collect(),
        config.and_then(|c| c.field.clone()),
    ))
}

fn choose_config<'a>(
    configs: &'a [ConfigSpec],
    requested: Option<&str>,
) -> std::result::Result<Option<&'a ConfigSpec>, String> {
    let names = || {
        configs
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if configs.is_empty() {
        return match requested {
            None | Some("default") => Ok(None),
            Some(other) => Err(format!(
                "no config `{other}`: the dataset declares no configs in a README.md, so its only \
                 config is `default`"
            )),
        };
    }
    if let Some(requested) = requested {
        return configs
            .iter()
            .find(|c| c.name == requested)
            .map(Some)
            .ok_or_else(|| format!("no config `{requested}` (found: {})", names()));
    }
    let defaults: Vec<&ConfigSpec> = configs
        .iter()
        .filter(|c| configs.len() == 1 || c.name == "default" || c.default)
        .collect();
    match defaults.as_slice() {
        [config] => Ok(Some(config)),
        [] => Err(format!(
            "the dataset has several configs ({}): pick one with --dataset_config",
            names()
        )),
        _ => Err(format!(
            "the dataset marks several configs as default ({}): pick one with --dataset_config",
            names()
        )),
    }
}

const SPLIT_KEYWORDS: [(&str, &[&str]); 3] = [
    ("train", &["train", "training"]),
    ("validation", &["validation", "valid", "dev", "val"]),
    ("test", &["test", "testing", "eval", "evaluation"]),
];
/// `datasets`' `KEYWORDS_IN_DIR_NAME_BASE_PATTERNS`, `{sep}` being `[-._ 0-9]`.
const DIR_PATTERNS: [&str; 4] = [
    "**/{k}/**",
    "**/{k}[-._ 0-9]*/**",
    "**/*[-._ 0-9]{k}/**",
    "**/*[-._ 0-9]{k}[-._ 0-9]*/**",
];
/// `datasets`' `KEYWORDS_IN_FILENAME_BASE_PATTERNS`.
const FILE_PATTERNS: [&str; 2] = ["**/{k}[-._ 0-9]*", "**/*[-._ 0-9]{k}[-._ 0-9]*"];
const SHARD_PATTERN: &str = "data/*-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]*.*";

/// The splits `datasets` finds in files that no config describes, in its order.
fn default_splits(files: &[String]) -> Vec<(String, Vec<String>)> {
    let shards: Vec<&String> = files
        .iter()
        .filter(|f| glob_match(SHARD_PATTERN, f))
        .collect();
    if !shards.is_empty() {
        let mut splits: Vec<(String, Vec<String>)> = Vec::new();
        for shard in shards {
            let split = shard_split(shard);
            match splits.iter_mut().find(|(name, _)| *name == split) {
                Some((_, files)) => files.push(shard.clone()),
                None => splits.push((split, vec![shard.clone()])),
            }
        }
        let rank = |name: &str| {
            SPLIT_KEYWORDS
                .iter()
                .position(|(split, _)| *split == name)
                .unwrap_or(3)
        };
        splits.sort_by(|(a, _), (b, _)| (rank(a), a).cmp(&(rank(b), b)));
        return splits;
    }
    for base_patterns in [&DIR_PATTERNS[..], &FILE_PATTERNS[..]] {
        let splits: Vec<(String, Vec<String>)> = SPLIT_KEYWORDS
            .iter()
            .map(|(split, keywords)| {
                let patterns: Vec<String> = keywords
                    .iter()
                    .flat_map(|k| base_patterns.iter().map(move |p| p.replace("{k}", k)))
                    .collect();
                let matched = files
                    .iter()
                    .filter(|f| patterns.iter().any(|p| glob_match(p, f)))
                    .cloned()
                    .collect();
                (split.to_string(), matched)
            })
            .filter(|(_, matched): &(String, Vec<String>)| !matched.is_empty())
            .collect();
        if !splits.is_empty() {
            return splits;
        }
    }
    vec![("train".to_owned(), files.to_vec())]
}

/// `train` of `data/train-00000-of-00002.parquet` (the longest name before `-NNNNN-of-NNNNN`).
fn shard_split(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let is_shard_tail = |tail: &str| {
        glob_match(
            "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]*.*",
            tail,
        )
    };
    let cut = name
        .char_indices()
        .rfind(|&(i, c)| c == '-' && i > 0 && is_shard_tail(&name[i..]))
        .map_or(name.len(), |(i, _)| i);
    name[..cut].to_owned()
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
