//! The keys of TRL's `ScriptArguments` and `ModelConfig` that every training command takes:
//! which model, which data, which device.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Model, dataset and device keys, with TRL's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelAndDataArgs {
    pub model_name_or_path: Option<String>,
    pub model_revision: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_config: Option<String>,
    pub dataset_train_split: String,
    /// trl-rs: `cpu`, `cuda`, `cuda:N`, `wgpu`.
    pub device: Option<String>,
    /// Accepted for TRL configs: our attention is exact for every value ("eager", "sdpa", ...).
    pub attn_implementation: Option<String>,
    /// Weights are trained in float32; "auto", "float32" and "bfloat16"/"float16" checkpoints load.
    pub dtype: Option<String>,
    pub trust_remote_code: bool,
    /// TRL's `model_init_kwargs` (only `dtype` and `attn_implementation`, as above).
    pub model_init_kwargs: Option<Value>,
}

impl Default for ModelAndDataArgs {
    fn default() -> Self {
        ModelAndDataArgs {
            model_name_or_path: None,
            model_revision: None,
            dataset_name: None,
            dataset_config: None,
            dataset_train_split: "train".into(),
            device: None,
            attn_implementation: None,
            dtype: None,
            trust_remote_code: false,
            model_init_kwargs: None,
        }
    }
}

impl ModelAndDataArgs {
    /// Rejects values we cannot honour instead of ignoring them.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.trust_remote_code {
            anyhow::bail!(
                "trust_remote_code=true: trl-rs runs no Python model code; only the built-in architectures load"
            );
        }
        if let Some(kwargs) = &self.model_init_kwargs {
            let Value::Object(map) = kwargs else {
                anyhow::bail!("model_init_kwargs must be a mapping");
            };
            for key in map.keys() {
                if key != "dtype" && key != "attn_implementation" && key != "torch_dtype" {
                    anyhow::bail!(
                        "model_init_kwargs.{key} is not supported (supported: dtype, attn_implementation)"
                    );
                }
            }
        }
        Ok(())
    }
}
