//! `TrainingArguments`: the transformers/TRL keys of the training loop, with their defaults.
//!
//! Config files and flags arrive as one key -> value map; every component (these arguments,
//! a method's config, the model arguments) takes the keys it knows, and whatever is left is
//! an error naming the key. See [`take_known_keys`].

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schedule::SchedulerType;
use crate::{Error, Result};

/// Data order within an epoch (`train_sampling_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingStrategy {
    Random,
    Sequential,
}

/// When checkpoints are written (`save_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveStrategy {
    No,
    Steps,
    Epoch,
    Best,
}

/// When the model is evaluated (`eval_strategy`), as transformers' `IntervalStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalStrategy {
    No,
    Steps,
    Epoch,
}

/// Where metrics go besides `trainer_state.json` (`report_to`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportTo {
    None,
    Tensorboard,
    Jsonl,
}

/// When a run with `push_to_hub` pushes (`hub_strategy`), as transformers' `HubStrategy`:
/// `end` once, when training ends; `every_save` also the model at every checkpoint;
/// `checkpoint` that plus the checkpoint folder as `last-checkpoint/` (resumable);
/// `all_checkpoints` that plus every checkpoint folder under its own name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HubStrategy {
    End,
    EverySave,
    Checkpoint,
    AllCheckpoints,
}

/// A secret (`hub_token`): shown as `<redacted>` by `Debug`, so printing the arguments never
/// prints it. A number is read as its digits.
#[derive(Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Secret(text)),
            Value::Number(number) => Ok(Secret(number.to_string())),
            _ => Err(serde::de::Error::custom("expected a token string")),
        }
    }
}

/// The training-loop arguments every method shares, named and defaulted as in transformers'
/// `TrainingArguments` (a method config may override defaults, as TRL's configs do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingArguments {
    pub output_dir: String,
    pub overwrite_output_dir: bool,
    pub num_train_epochs: f64,
    /// Total optimizer steps; overrides `num_train_epochs` when > 0.
    pub max_steps: i64,
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub lr_scheduler_type: SchedulerType,
    /// `cosine_with_min_lr` takes `min_lr` or `min_lr_rate` here.
    pub lr_scheduler_kwargs: BTreeMap<String, f64>,
    pub warmup_steps: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Seed of the data order only (defaults to `seed`).
    pub data_seed: Option<u64>,
    pub logging_steps: f64,
    pub logging_first_step: bool,
    pub save_strategy: SaveStrategy,
    pub save_steps: f64,
    pub save_total_limit: Option<usize>,
    /// `true`/`false` or a checkpoint path; `true` picks the latest `checkpoint-N` in `output_dir`.
    pub resume_from_checkpoint: Option<Value>,
    pub train_sampling_strategy: SamplingStrategy,
    /// Mixed precision with bf16 matmuls on the GPU backends ([`crate::precision`]) and on
    /// CPUs with AMX-BF16 ([`crate::precision::set_cpu_bf16_matmuls`]); on other CPUs a note
    /// says training stays f32.
    pub bf16: bool,
    /// Mixed precision with fp16 matmuls and a dynamic loss scale on the GPU backends; an
    /// error on the CPU backend, as in transformers.
    pub fp16: bool,
    /// transformers 5's name for gradient checkpointing; resolved with its deprecated alias
    /// `gradient_checkpointing` (the one TRL's configs set) by `checkpointing.rs`.
    pub activation_checkpointing: Option<bool>,
    pub gradient_checkpointing: Option<bool>,
    /// `{"use_reentrant": ..}` etc., checked by `checkpointing.rs` (alias: `gradient_checkpointing_kwargs`).
    pub activation_checkpointing_kwargs: Option<Value>,
    pub gradient_checkpointing_kwargs: Option<Value>,
    pub report_to: Value,
    /// Accepted for config compatibility; the device is chosen with `--device`.
    pub use_cpu: bool,
    pub run_name: Option<String>,
    pub logging_dir: Option<String>,
    /// Push the model (and a model card) to the Hub; the binary does it, not the loop.
    pub push_to_hub: bool,
    /// `namespace/name` (or `name`, under the token's user); defaults to `output_dir`'s name.
    pub hub_model_id: Option<String>,
    pub hub_strategy: HubStrategy,
    /// The new repo's visibility; `None` leaves the Hub's default.
    pub hub_private_repo: Option<bool>,
    /// Else `HF_TOKEN`, else the token file of `hf auth login`.
    pub hub_token: Option<Secret>,
    /// Evaluation keys (see [`super::eval_args`] for how they resolve and are checked).
    pub eval_strategy: EvalStrategy,
    /// Defaults to `logging_steps` (a count, or a ratio of the total steps when < 1).
    pub eval_steps: Option<f64>,
    pub per_device_eval_batch_size: usize,
    /// Accepted as transformers does; our evaluation keeps only per-batch scalars, so it
    /// changes no result.
    pub eval_accumulation_steps: Option<usize>,
    pub eval_on_start: bool,
    pub load_best_model_at_end: bool,
    /// Defaults to `"loss"` when `load_best_model_at_end` or `save_strategy=best`.
    pub metric_for_best_model: Option<String>,
    /// Defaults to "not a loss" (`metric_for_best_model` not ending in `loss`).
    pub greater_is_better: Option<bool>,
    /// Checkpoints hold the model only (no optimizer moments): they cannot be resumed from.
    pub save_only_model: bool,
}

impl Default for TrainingArguments {
    fn default() -> Self {
        TrainingArguments {
            output_dir: "trainer_output".into(),
            overwrite_output_dir: false,
            num_train_epochs: 3.0,
            max_steps: -1,
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 5e-5,
            lr_scheduler_type: SchedulerType::Linear,
            lr_scheduler_kwargs: BTreeMap::new(),
            warmup_steps: 0.0,
            warmup_ratio: 0.0,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            seed: 42,
            data_seed: None,
            logging_steps: 500.0,
            logging_first_step: false,
            save_strategy: SaveStrategy::Steps,
            save_steps: 500.0,
            save_total_limit: None,
            resume_from_checkpoint: None,
            train_sampling_strategy: SamplingStrategy::Random,
            bf16: false,
            fp16: false,
            activation_checkpointing: None,
            gradient_checkpointing: None,
            activation_checkpointing_kwargs: None,
            gradient_checkpointing_kwargs: None,
            report_to: Value::from("none"),
            use_cpu: false,
            run_name: None,
            logging_dir: None,
            push_to_hub: false,
            hub_model_id: None,
            hub_strategy: HubStrategy::EverySave,
            hub_private_repo: None,
            hub_token: None,
            eval_strategy: EvalStrategy::No,
            eval_steps: None,
            per_device_eval_batch_size: 8,
            eval_accumulation_steps: None,
            eval_on_start: false,
            load_best_model_at_end: false,
            metric_for_best_model: None,
            greater_is_better: None,
            save_only_model: false,
        }
    }
}

impl TrainingArguments {
    /// `report_to` as a list of sinks (a string, a list of strings, "all" or "none").
    pub fn report_sinks(&self) -> Result<Vec<ReportTo>> {
        let names: Vec<String> = match &self.report_to {
            Value::Null => vec![],
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            other => {
                return Err(config_error(format!(
                    "report_to: expected a string or list, found {other}"
                )));
            }
        };
        let mut sinks = Vec::new();
        for name in names {
            match name.as_str() {
                "none" => {}
                "all" => sinks.extend([ReportTo::Tensorboard, ReportTo::Jsonl]),
                "tensorboard" => sinks.push(ReportTo::Tensorboard),
                "jsonl" => sinks.push(ReportTo::Jsonl),
                other => {
                    return Err(config_error(format!(
                        "report_to: {other:?} is not supported (supported: none, tensorboard, jsonl)"
                    )));
                }
            }
        }
        Ok(sinks)
    }

    /// An interval given as a count (>= 1) or a ratio of the total (< 1), as transformers
    /// reads `logging_steps` and `save_steps`.
    pub fn interval(value: f64, total_steps: u64) -> u64 {
        if value > 0.0 && value < 1.0 {
            ((total_steps as f64) * value).ceil().max(1.0) as u64
        } else {
            value.max(1.0) as u64
        }
    }
}

fn config_error(message: String) -> Error {
    Error::Config {
        path: "training arguments".into(),
        message,
    }
}

/// Keys a serde struct accepts: the fields its `Default` serializes to.
pub fn known_keys<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Removes from `map` the keys `T` knows and deserializes them into `T` (missing keys take
/// `T`'s defaults); a value of the wrong type is an error naming the key.
pub fn take_known_keys<T: Serialize + DeserializeOwned + Default>(
    map: &mut BTreeMap<String, Value>,
    what: &str,
) -> Result<T> {
    let mut taken = serde_json::Map::new();
    for key in known_keys::<T>() {
        if let Some(value) = map.remove(&key) {
            taken.insert(key, value);
        }
    }
    let keys: Vec<String> = taken.keys().cloned().collect();
    serde_json::from_value(Value::Object(taken.clone())).map_err(|e| {
        // Find the offending key by trying them one at a time, for a precise message.
        let culprit = keys.iter().find(|k| {
            let single = serde_json::Map::from_iter([((*k).clone(), taken[*k].clone())]);
            serde_json::from_value::<T>(Value::Object(single)).is_err()
        });
        match culprit {
            Some(key) => config_error(format!(
                "{what}: invalid value {} for `{key}`: {e}{}",
                // A secret is not repeated back, even when malformed.
                if key == "hub_token" {
                    "<redacted>".to_string()
                } else {
                    taken[key].to_string()
                },
                valid_names::<T>(key, &e.to_string())
            )),
            None => config_error(format!("{what}: {e}")),
        }
    })
}

/// For a key whose values are names (an enum), `" (valid: a, b, ...)"`, found by offering it
/// a name nobody uses and reading serde's "expected one of" list; empty for other keys or when
/// the error already lists them.
fn valid_names<T: DeserializeOwned>(key: &str, error: &str) -> String {
    if error.contains("expected one of") {
        return String::new();
    }
    let probe = serde_json::Map::from_iter([(key.to_string(), Value::from("\u{1}"))]);
    let Err(probe_error) = serde_json::from_value::<T>(Value::Object(probe)) else {
        return String::new();
    };
    let text = probe_error.to_string();
    match text.split_once("expected one of ") {
        Some((_, names)) => {
            let names = names.split(" at line").next().unwrap_or(names);
            format!(" (valid: {})", names.replace('`', ""))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_its_keys_and_leaves_the_rest() {
        let mut map = BTreeMap::from([
            ("learning_rate".to_string(), Value::from(1e-3)),
            ("beta".to_string(), Value::from(0.1)),
        ]);
        let args: TrainingArguments = take_known_keys(&mut map, "training").unwrap();
        assert_eq!(args.learning_rate, 1e-3);
        assert_eq!(args.per_device_train_batch_size, 8);
        assert_eq!(map.keys().collect::<Vec<_>>(), vec!["beta"]);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let mut map = BTreeMap::from([("max_steps".to_string(), Value::from("many"))]);
        let err = take_known_keys::<TrainingArguments>(&mut map, "training")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_steps"), "{err}");
    }

    #[test]
    fn an_invalid_name_lists_the_valid_ones() {
        for value in [Value::from("cosine_annealing"), Value::from(3)] {
            let mut map = BTreeMap::from([("lr_scheduler_type".to_string(), value)]);
            let err = take_known_keys::<TrainingArguments>(&mut map, "training")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("lr_scheduler_type") && err.contains("constant_with_warmup"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_malformed_hub_token_is_not_repeated_in_the_error() {
        let mut map =
            BTreeMap::from([("hub_token".to_string(), serde_json::json!(["hf_a", "hf_b"]))]);
        let err = take_known_keys::<TrainingArguments>(&mut map, "training")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hub_token") && !err.contains("hf_a"), "{err}");
        let mut map = BTreeMap::from([("hub_token".to_string(), Value::from(12345))]);
        let args: TrainingArguments = take_known_keys(&mut map, "training").unwrap();
        assert_eq!(args.hub_token, Some(Secret("12345".into())));
        assert_eq!(format!("{args:?}").matches("12345").count(), 0);
    }

    #[test]
    fn report_to_accepts_strings_and_lists() {
        let mut args = TrainingArguments::default();
        assert!(args.report_sinks().unwrap().is_empty());
        args.report_to = serde_json::json!(["tensorboard", "jsonl"]);
        assert_eq!(
            args.report_sinks().unwrap(),
            vec![ReportTo::Tensorboard, ReportTo::Jsonl]
        );
        args.report_to = Value::from("wandb");
        assert!(
            args.report_sinks()
                .unwrap_err()
                .to_string()
                .contains("wandb")
        );
    }
}
