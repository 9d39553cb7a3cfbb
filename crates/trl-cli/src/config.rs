//! TRL-style configuration: a YAML file (`--config`, the files TRL's `trl` CLI takes) merged
//! with `--key value` flags that override it, into one key -> value map that each component
//! takes its keys from. Keys nobody takes are an error naming them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use trl_core::train::args::known_keys;
use trl_core::train::take_known_keys;

/// Parses `args` (everything after the subcommand) into a key -> value map.
///
/// Accepted spellings, as transformers' `HfArgumentParser`: `--key value`, `--key=value`,
/// a bare `--flag` (true), and several values after one key (a list, e.g.
/// `--loss_type sigmoid sft`). Values are read as YAML scalars: `1e-4`, `true`, `null`, `8`.
pub fn parse_args(args: &[String]) -> Result<BTreeMap<String, Value>> {
    let mut map = BTreeMap::new();
    let mut config_file = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(body) = arg.strip_prefix("--") else {
            bail!("unexpected argument {arg:?}: options look like --key value (see --help)");
        };
        let (key, inline) = match body.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let key = key.replace('-', "_");
        i += 1;
        let mut values: Vec<String> = inline.into_iter().collect();
        if values.is_empty() {
            while i < args.len() && !args[i].starts_with("--") {
                values.push(args[i].clone());
                i += 1;
            }
        }
        let value = match values.len() {
            0 => Value::Bool(true),
            1 => scalar(&values[0]),
            _ => Value::Array(values.iter().map(|v| scalar(v)).collect()),
        };
        if key == "config" {
            config_file = Some(
                value
                    .as_str()
                    .map(str::to_string)
                    .context("--config takes a file path")?,
            );
        } else {
            map.insert(key, value);
        }
    }
    let mut merged = match config_file {
        Some(path) => read_yaml(Path::new(&path))?,
        None => BTreeMap::new(),
    };
    merged.extend(map);
    parse_dict_strings(&mut merged)?;
    Ok(merged)
}

/// The dict-valued keys of transformers' `TrainingArguments._VALID_DICT_FIELDS` and TRL's
/// configs (`model_init_kwargs`, `ref_model_init_kwargs`, `chat_template_kwargs`, ...).
const DICT_KEYS: [&str; 10] = [
    "lr_scheduler_kwargs",
    "model_init_kwargs",
    "ref_model_init_kwargs",
    "chat_template_kwargs",
    "dataset_kwargs",
    "gradient_checkpointing_kwargs",
    "activation_checkpointing_kwargs",
    "accelerator_config",
    "fsdp_config",
    "deepspeed",
];

/// As `TrainingArguments.__post_init__`: a dict-valued key given as a string that starts with
/// `{` (`--lr_scheduler_kwargs '{"min_lr_rate": 0.1}'`) is read as JSON.
fn parse_dict_strings(map: &mut BTreeMap<String, Value>) -> Result<()> {
    for key in DICT_KEYS {
        let Some(Value::String(text)) = map.get(key) else {
            continue;
        };
        if !text.trim_start().starts_with('{') {
            continue;
        }
        let parsed: Value = serde_json::from_str(text)
            .with_context(|| format!("--{key}: {text:?} is not a valid JSON object"))?;
        map.insert(key.to_string(), parsed);
    }
    Ok(())
}

/// A command-line value read as YAML would read it.
fn scalar(text: &str) -> Value {
    serde_yaml_ng::from_str::<Value>(text)
        .ok()
        .filter(|v| !v.is_object() && !v.is_array())
        .unwrap_or_else(|| Value::String(text.to_string()))
}

/// Reads a TRL YAML config (a flat mapping of keys to values).
pub fn read_yaml(path: &Path) -> Result<BTreeMap<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let value: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}: invalid YAML", path.display()))?;
    match value {
        Value::Object(map) => Ok(map.into_iter().collect()),
        Value::Null => Ok(BTreeMap::new()),
        other => bail!(
            "{}: expected a mapping of keys to values, found {other}",
            path.display()
        ),
    }
}

/// Fails if any key was left untaken, naming them all.
pub fn reject_unknown_keys(map: &BTreeMap<String, Value>, command: &str) -> Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    bail!(
        "`trl {command}` does not support {}: {} (see `trl {command} --help` for the supported keys)",
        if keys.len() == 1 {
            "this key"
        } else {
            "these keys"
        },
        keys.join(", ")
    )
}

/// [`trl_core::train::take_known_keys`], except that an option given without a value is named
/// as such: a bare `--beta` reads as `true` (how boolean flags are switched on), and serde's
/// "invalid type: boolean `true`, expected f64" would not say that a number was missing.
pub fn take_keys<T: Serialize + DeserializeOwned + Default>(
    map: &mut BTreeMap<String, Value>,
    command: &str,
) -> Result<T> {
    for key in known_keys::<T>() {
        if map.get(&key) != Some(&Value::Bool(true)) {
            continue;
        }
        let alone = serde_json::Map::from_iter([(key.clone(), Value::Bool(true))]);
        if let Err(error) = serde_json::from_value::<T>(Value::Object(alone)) {
            bail!(
                "`--{key}` needs a value: it takes {} (`--{key}` alone means true, for \
                 on/off options only)",
                expected_kind(&error.to_string())
            );
        }
    }
    Ok(take_known_keys(map, command)?)
}

/// What serde's "invalid type: ..., expected X" says an option takes, in words.
fn expected_kind(serde_message: &str) -> String {
    let expected = serde_message
        .split_once("expected ")
        .map_or("a value", |(_, expected)| expected);
    match expected {
        "f64" | "f32" => "a number".to_owned(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" | "isize" => {
            "a whole number".to_owned()
        }
        "a sequence" => "a list of values".to_owned(),
        "a map" => "a mapping of keys to values".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_override_the_yaml_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "learning_rate: 2.0e-5\nmax_steps: 4\npacking: false\n",
        )
        .unwrap();
        let map = parse_args(&strings(&[
            "--config",
            path.to_str().unwrap(),
            "--max_steps=8",
            "--packing",
        ]))
        .unwrap();
        assert_eq!(map["learning_rate"], Value::from(2.0e-5));
        assert_eq!(map["max_steps"], Value::from(8));
        assert_eq!(map["packing"], Value::Bool(true));
    }

    #[test]
    fn several_values_make_a_list() {
        let map = parse_args(&strings(&[
            "--loss_type",
            "sigmoid",
            "sft",
            "--beta",
            "0.1",
        ]))
        .unwrap();
        assert_eq!(map["loss_type"], serde_json::json!(["sigmoid", "sft"]));
        assert_eq!(map["beta"], Value::from(0.1));
    }

    #[test]
    fn an_option_without_its_value_is_named() {
        #[derive(serde::Serialize, serde::Deserialize, Default)]
        #[serde(default)]
        struct Options {
            beta: f64,
            max_length: Option<usize>,
            packing: bool,
        }
        let mut map = parse_args(&strings(&["--beta", "--packing"])).unwrap();
        let err = take_keys::<Options>(&mut map, "dpo")
            .err()
            .expect("a bare --beta is refused")
            .to_string();
        assert!(
            err.starts_with("`--beta` needs a value: it takes a number"),
            "{err}"
        );
        assert!(!err.contains("invalid type"), "{err}");
        let mut map = parse_args(&strings(&["--max_length", "--beta", "0.5"])).unwrap();
        let err = take_keys::<Options>(&mut map, "dpo")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`--max_length` needs a value: it takes a whole number"),
            "{err}"
        );
        let mut map = parse_args(&strings(&["--packing", "--beta", "0.5"])).unwrap();
        let options = take_keys::<Options>(&mut map, "dpo").unwrap();
        assert!(options.packing && options.beta == 0.5);
    }

    #[test]
    fn dict_options_given_as_json_strings_are_objects() {
        let map = parse_args(&strings(&[
            "--lr_scheduler_kwargs",
            r#"{"min_lr_rate": 0.1}"#,
            "--model_init_kwargs={\"dtype\": \"float32\"}",
            "--chat_template_kwargs",
            r#"{"enable_thinking": false}"#,
        ]))
        .unwrap();
        assert_eq!(
            map["lr_scheduler_kwargs"],
            serde_json::json!({"min_lr_rate": 0.1})
        );
        assert_eq!(
            map["model_init_kwargs"],
            serde_json::json!({"dtype": "float32"})
        );
        assert_eq!(
            map["chat_template_kwargs"],
            serde_json::json!({"enable_thinking": false})
        );
        let err = parse_args(&strings(&["--lr_scheduler_kwargs", "{min_lr_rate: }"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lr_scheduler_kwargs"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let map = BTreeMap::from([("lora_r".to_string(), Value::from(8))]);
        let err = reject_unknown_keys(&map, "sft").unwrap_err().to_string();
        assert!(err.contains("lora_r"), "{err}");
    }
}
