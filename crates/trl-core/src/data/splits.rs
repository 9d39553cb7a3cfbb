//! Which files hold the training split, found the way `datasets.load_dataset(dataset_name,
//! name=dataset_config)[dataset_train_split]` finds them (datasets 5.x `data_files.py` and
//! `utils/metadata.py`):
//!
//! - a folder or a hub dataset whose `README.md` has a YAML `configs:` list uses the config named
//!   by `dataset_config` (else the one marked `default: true`, the one named `default`, or the
//!   only one), its `data_files` per split and its `data_dir`;
//! - otherwise the splits come from the file names: `data/{split}-00000-of-00001.*` shards, else
//!   folders named after a split (`train/`, `data/training-set/`), else file names holding a
//!   split keyword (`train.jsonl`, `my_train_set.jsonl`), else every file is `train`.
//!   The keywords: train/training, validation/valid/dev/val, test/testing/eval/evaluation.

use serde_json::Value;

use super::glob::glob_match;

/// One entry of a README's `configs:` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigSpec {
    name: String,
    default: bool,
    data_dir: Option<String>,
    /// `(split, patterns)`; `None` when the config leaves the files to the default rules.
    data_files: Option<Vec<(String, Vec<String>)>>,
    field: Option<String>,
}

/// The `configs:` of a README's YAML front matter (`---` lines around it).
pub(crate) fn parse_readme_configs(readme: &str) -> std::result::Result<Vec<ConfigSpec>, String> {
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
pub(crate) fn select_split(
    files: &[String],
    configs: &[ConfigSpec],
    config: Option<&str>,
    split: &str,
) -> std::result::Result<(Vec<String>, Option<String>), String> {
    let config = choose_config(configs, config)?;
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
#[path = "splits_tests.rs"]
mod tests;
