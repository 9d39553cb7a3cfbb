//! peft's `LoraConfig`: the fields trl-rs honours, read from and written to
//! `adapter_config.json` with peft's names, and which modules an adapter wraps.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::targets::{LayerFilter, TargetModules, is_targeted, name_matches};
use crate::model::Family;
use crate::{Error, Result};

/// File name of peft's adapter config.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// `task_type`: which head the adapted model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    /// `CAUSAL_LM`: `*ForCausalLM` (SFT, DPO, KTO, GRPO...).
    CausalLm,
    /// `SEQ_CLS`: `*ForSequenceClassification` (reward models; peft adds `score` to
    /// `modules_to_save`).
    SeqCls,
}

impl TaskType {
    /// peft's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::CausalLm => "CAUSAL_LM",
            TaskType::SeqCls => "SEQ_CLS",
        }
    }

    /// Parses peft's spelling; other task types are an error naming the value.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "CAUSAL_LM" => Ok(TaskType::CausalLm),
            "SEQ_CLS" => Ok(TaskType::SeqCls),
            other => Err(Error::Config {
                path: CONFIG_FILE.into(),
                message: format!(
                    "task_type {other:?} is not supported (supported: CAUSAL_LM, SEQ_CLS)"
                ),
            }),
        }
    }
}

/// The LoRA settings of one adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: TargetModules,
    /// Modules never adapted even when `target_modules` selects them (peft `exclude_modules`).
    pub exclude_modules: Option<TargetModules>,
    /// peft's `layers_to_transform` / `layers_pattern`.
    pub layers: LayerFilter,
    /// Modules trained in full and saved with the adapter (peft `modules_to_save`).
    pub modules_to_save: Vec<String>,
    pub use_rslora: bool,
    pub task_type: TaskType,
    /// The base model (`base_model_name_or_path`): a hub id or a folder.
    pub base_model_name_or_path: String,
}

impl LoraConfig {
    /// peft's scaling: `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Whether the linear layer at `path` (e.g. `model.layers.0.self_attn.q_proj`) gets an
    /// adapter: selected by `target_modules`, not excluded, in a selected layer (the output
    /// layers never do under `all-linear`).
    pub fn targets(&self, path: &str) -> bool {
        is_targeted(
            &self.target_modules,
            self.exclude_modules.as_ref(),
            &self.layers,
            path,
        )
    }

    /// Whether the module at `path` is trained in full and saved with the adapter.
    pub fn saves_module(&self, path: &str) -> bool {
        self.modules_to_save.iter().any(|n| name_matches(n, path))
    }

    /// peft's default targets for a model family when none are given
    /// (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`): `q_proj`, `v_proj` for every
    /// family trl-rs loads.
    pub fn default_targets(_family: Family) -> TargetModules {
        TargetModules::Names(vec!["q_proj".into(), "v_proj".into()])
    }

    /// Reads `dir/adapter_config.json`; refuses what trl-rs cannot reproduce (DoRA, LoRA
    /// biases, other peft types, regex targets) with a message naming the field.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let raw: Value = serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
        Self::from_json(&raw).map_err(|message| Error::Config { path, message })
    }

    fn from_json(raw: &Value) -> std::result::Result<Self, String> {
        let field = |name: &str| raw.get(name).filter(|v| !v.is_null());
        if let Some(kind) = field("peft_type").and_then(Value::as_str)
            && kind != "LORA"
        {
            return Err(format!(
                "peft_type {kind:?} is not supported (supported: LORA)"
            ));
        }
        if field("use_dora").and_then(Value::as_bool) == Some(true) {
            return Err("use_dora=true: DoRA adapters are not supported".into());
        }
        if let Some(bias) = field("bias").and_then(Value::as_str)
            && bias != "none"
        {
            return Err(format!(
                "bias {bias:?} is not supported (supported: \"none\")"
            ));
        }
        for unsupported in ["rank_pattern", "alpha_pattern"] {
            if field(unsupported)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                return Err(format!("{unsupported} is not supported"));
            }
        }
        let r = field("r")
            .and_then(Value::as_u64)
            .ok_or("r must be a positive integer")? as usize;
        if r == 0 {
            return Err("r must be a positive integer".into());
        }
        if field("target_parameters")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty())
        {
            return Err(
                "target_parameters is not supported (adapters on linear layers only)".into(),
            );
        }
        let target_modules = match field("target_modules") {
            Some(value) => selector("target_modules", value)?,
            None => return Err("target_modules is missing".into()),
        };
        let exclude_modules = field("exclude_modules")
            .map(|value| selector("exclude_modules", value))
            .transpose()?;
        let layers = LayerFilter {
            layers_to_transform: match field("layers_to_transform") {
                None => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_u64().map(|i| i as usize))
                    .collect::<Option<_>>()
                    .ok_or("layers_to_transform must hold layer indices")?,
                Some(one) => vec![
                    one.as_u64()
                        .ok_or("layers_to_transform must be a layer index or a list of them")?
                        as usize,
                ],
            },
            layers_pattern: match field("layers_pattern") {
                None => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(value) => strings("layers_pattern", value)?,
            },
        };
        let modules_to_save = match field("modules_to_save") {
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        Ok(LoraConfig {
            r,
            lora_alpha: field("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0),
            lora_dropout: field("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
            target_modules,
            exclude_modules,
            layers,
            modules_to_save,
            use_rslora: field("use_rslora")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            task_type: TaskType::parse(
                field("task_type")
                    .and_then(Value::as_str)
                    .unwrap_or("CAUSAL_LM"),
            )
            .map_err(|e| match e {
                Error::Config { message, .. } => message,
                other => other.to_string(),
            })?,
            base_model_name_or_path: field("base_model_name_or_path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// `adapter_config.json` as peft writes it (the fields `PeftModel.from_pretrained` reads;
    /// the others at peft's defaults). `targeted` are the module paths that got an adapter:
    /// peft also records `all-linear` resolved into them.
    pub fn to_json(&self, targeted: &[String]) -> Value {
        let selector_json = |selector: &TargetModules| match selector {
            TargetModules::Names(names) => json!(names),
            TargetModules::AllLinear => json!(targeted),
            TargetModules::Regex(pattern) => json!(pattern.as_str()),
        };
        let modules_to_save =
            (!self.modules_to_save.is_empty()).then(|| self.modules_to_save.clone());
        let mut map: Map<String, Value> = serde_json::from_value(json!({
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "exclude_modules": self.exclude_modules.as_ref().map(selector_json),
            "layers_pattern": (!self.layers.layers_pattern.is_empty())
                .then_some(&self.layers.layers_pattern),
            "layers_to_transform": (!self.layers.layers_to_transform.is_empty())
                .then_some(&self.layers.layers_to_transform),
            "lora_alpha": self.lora_alpha,
            "lora_bias": false,
            "lora_dropout": self.lora_dropout,
            "modules_to_save": modules_to_save,
            "peft_type": "LORA",
            "r": self.r,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
            "target_modules": selector_json(&self.target_modules),
            "task_type": self.task_type.as_str(),
            "use_dora": false,
            "use_rslora": self.use_rslora,
        }))
        .unwrap_or_default();
        map.sort_keys();
        Value::Object(map)
    }
}

/// A `target_modules` / `exclude_modules` value: a list of names, `all-linear`, or a regular
/// expression (any other string, as peft reads it).
fn selector(key: &str, value: &Value) -> std::result::Result<TargetModules, String> {
    match value {
        Value::String(s) if s == "all-linear" => Ok(TargetModules::AllLinear),
        Value::String(s) => TargetModules::regex(s).map_err(|e| format!("{key}: {e}")),
        other => Ok(TargetModules::Names(strings(key, other)?)),
    }
}

/// A list of strings, or an error naming `key`.
fn strings(key: &str, value: &Value) -> std::result::Result<Vec<String>, String> {
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(|| format!("{key} must be a string or a list of strings"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(targets: TargetModules) -> LoraConfig {
        LoraConfig {
            r: 4,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: targets,
            exclude_modules: None,
            layers: LayerFilter::default(),
            modules_to_save: vec!["lm_head".into()],
            use_rslora: false,
            task_type: TaskType::CausalLm,
            base_model_name_or_path: "base".into(),
        }
    }

    #[test]
    fn scaling_is_alpha_over_r_or_its_root() {
        let mut c = config(TargetModules::AllLinear);
        assert_eq!(c.scaling(), 4.0);
        c.use_rslora = true;
        assert_eq!(c.scaling(), 8.0);
    }

    #[test]
    fn names_match_whole_path_components_as_peft() {
        let c = config(TargetModules::Names(vec!["q_proj".into()]));
        assert!(c.targets("model.layers.0.self_attn.q_proj"));
        assert!(!c.targets("model.layers.0.self_attn.qq_proj"));
        assert!(c.saves_module("lm_head"));
        let all = config(TargetModules::AllLinear);
        assert!(all.targets("model.layers.1.mlp.down_proj") && !all.targets("lm_head"));
    }

    #[test]
    fn config_json_round_trips_and_dora_is_refused() {
        let c = config(TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]));
        let back = LoraConfig::from_json(&c.to_json(&[])).unwrap();
        assert_eq!(back, c);
        let mut filtered = config(TargetModules::regex(r".*\.(q|v)_proj").unwrap());
        filtered.exclude_modules = Some(TargetModules::Names(vec![
            "layers.0.self_attn.q_proj".into(),
        ]));
        filtered.layers.layers_to_transform = vec![0, 2];
        filtered.layers.layers_pattern = vec!["layers".into()];
        let json = filtered.to_json(&[]);
        assert_eq!(json["target_modules"], r".*\.(q|v)_proj");
        assert_eq!(LoraConfig::from_json(&json).unwrap(), filtered);
        let mut raw = c.to_json(&[]);
        raw["use_dora"] = true.into();
        assert!(LoraConfig::from_json(&raw).unwrap_err().contains("DoRA"));
    }

    #[test]
    fn peft_spellings_of_the_layer_filter_are_read() {
        let mut raw = config(TargetModules::AllLinear).to_json(&["q_proj".into()]);
        raw["layers_to_transform"] = 1.into();
        raw["layers_pattern"] = "layers".into();
        let c = LoraConfig::from_json(&raw).unwrap();
        assert!(c.targets("model.layers.1.self_attn.q_proj"));
        assert!(!c.targets("model.layers.0.self_attn.q_proj"));
        raw["target_modules"] = "(bad".into();
        assert!(
            LoraConfig::from_json(&raw)
                .unwrap_err()
                .contains("target_modules")
        );
        raw["target_modules"] = json!(["q_proj"]);
        raw["target_parameters"] = json!(["mlp.experts.down_proj"]);
        assert!(
            LoraConfig::from_json(&raw)
                .unwrap_err()
                .contains("target_parameters")
        );
    }
}
