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
    /// The split evaluated when `eval_strategy` is not `no` (TRL's `ScriptArguments`).
    pub dataset_test_split: String,
    /// trl-rs: evaluate on this file, folder or hub dataset instead of a split of
    /// `dataset_name` (a folder or hub dataset gives its `dataset_test_split`).
    pub eval_dataset_name: Option<String>,
    /// trl-rs: `cpu`, `cuda`, `cuda:N`, `wgpu`.
    pub device: Option<String>,
    /// Accepted for TRL configs: our attention is exact for every value; other than eager/sdpa a
    /// warning says so.
    pub attn_implementation: Option<String>,
    /// Weights are trained and saved in float32 (a warning says so for bfloat16/float16); checkpoints
    /// of any of these dtypes load.
    pub dtype: Option<String>,
    pub trust_remote_code: bool,
    /// TRL's `model_init_kwargs` (only `dtype` and `attn_implementation`, as above).
    pub model_init_kwargs: Option<Value>,
    /// Train a LoRA adapter (peft) instead of every weight; the base model stays frozen.
    pub use_peft: bool,
    pub lora_r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Module names (`q_proj v_proj`) or `all-linear`; unset: peft's default per family
    /// (`q_proj`, `v_proj` for Llama, Mistral, Qwen2, Qwen3).
    pub lora_target_modules: Option<Value>,
    /// Modules trained in full and saved with the adapter (`lm_head`, `score`).
    pub lora_modules_to_save: Option<Value>,
    /// `CAUSAL_LM` or `SEQ_CLS` (reward models use `SEQ_CLS` whatever is given).
    pub lora_task_type: String,
    pub use_rslora: bool,
    /// DoRA: not supported (an error says so).
    pub use_dora: bool,
}

impl Default for ModelAndDataArgs {
    fn default() -> Self {
        ModelAndDataArgs {
            model_name_or_path: None,
            model_revision: None,
            dataset_name: None,
            dataset_config: None,
            dataset_train_split: "train".into(),
            dataset_test_split: "test".into(),
            eval_dataset_name: None,
            device: None,
            attn_implementation: None,
            dtype: None,
            trust_remote_code: false,
            model_init_kwargs: None,
            use_peft: false,
            lora_r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            lora_target_modules: None,
            lora_modules_to_save: None,
            lora_task_type: "CAUSAL_LM".into(),
            use_rslora: false,
            use_dora: false,
        }
    }
}

/// `dtype` values transformers accepts that a checkpoint can be stored in.
const DTYPES: [&str; 5] = ["auto", "float32", "bfloat16", "float16", "float"];

/// `attn_implementation` values transformers knows.
const ATTENTION: [&str; 6] = [
    "eager",
    "sdpa",
    "flash_attention_2",
    "flash_attention_3",
    "flex_attention",
    "paged_attention",
];

impl ModelAndDataArgs {
    /// Rejects values we cannot honour instead of ignoring them; returns a note (to print)
    /// for each accepted value trl-rs does not apply as transformers would.
    pub fn check(&self) -> anyhow::Result<Vec<String>> {
        if self.trust_remote_code {
            anyhow::bail!(
                "trust_remote_code=true: trl-rs runs no Python model code; only the built-in architectures load"
            );
        }
        let mut dtype = self.dtype.clone();
        let mut attention = self.attn_implementation.clone();
        if let Some(kwargs) = &self.model_init_kwargs {
            let Value::Object(map) = kwargs else {
                anyhow::bail!("model_init_kwargs must be a mapping");
            };
            for (key, value) in map {
                let text = value.as_str().map(str::to_string);
                match key.as_str() {
                    "dtype" | "torch_dtype" => dtype = dtype.or(text),
                    "attn_implementation" => attention = attention.or(text),
                    _ => anyhow::bail!(
                        "model_init_kwargs.{key} is not supported (supported: dtype, attn_implementation)"
                    ),
                }
            }
        }
        let mut notes = Vec::new();
        if let Some(dtype) = dtype {
            let name = dtype.strip_prefix("torch.").unwrap_or(&dtype);
            if !DTYPES.contains(&name) {
                anyhow::bail!(
                    "--dtype {dtype:?} is not a valid dtype (valid: {})",
                    DTYPES.join(", ")
                );
            }
            if !matches!(name, "auto" | "float32" | "float") {
                notes.push(format!(
                    "warning: --dtype {name}: trl-rs loads the weights (any stored dtype), trains \
                     them in float32 and saves float32 (config.json says float32); for \
                     half-precision matmuls over float32 weights use --bf16 true or --fp16 true \
                     on a GPU backend"
                ));
            }
        }
        if let Some(attention) = attention {
            if !ATTENTION.contains(&attention.as_str()) {
                anyhow::bail!(
                    "--attn_implementation {attention:?} is not valid (valid: {})",
                    ATTENTION.join(", ")
                );
            }
            if !matches!(attention.as_str(), "eager" | "sdpa") {
                notes.push(format!(
                    "warning: --attn_implementation {attention}: trl-rs always runs its own exact \
                     attention (the fused kernel where the backend has one), with the results of \
                     eager/sdpa"
                ));
            }
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_and_attention_say_what_trl_rs_does_instead() {
        let args = ModelAndDataArgs {
            dtype: Some("bfloat16".into()),
            attn_implementation: Some("flash_attention_2".into()),
            ..ModelAndDataArgs::default()
        };
        let notes = args.check().unwrap();
        assert!(notes[0].contains("--dtype bfloat16") && notes[0].contains("float32"));
        assert!(notes[1].contains("--attn_implementation flash_attention_2"));
        let plain = ModelAndDataArgs {
            dtype: Some("float32".into()),
            attn_implementation: Some("sdpa".into()),
            ..ModelAndDataArgs::default()
        };
        assert!(plain.check().unwrap().is_empty());
        let via_kwargs = ModelAndDataArgs {
            model_init_kwargs: Some(serde_json::json!({"torch_dtype": "float16"})),
            ..ModelAndDataArgs::default()
        };
        assert_eq!(via_kwargs.check().unwrap().len(), 1);
        let typo = ModelAndDataArgs {
            dtype: Some("bf16".into()),
            ..ModelAndDataArgs::default()
        };
        let err = typo.check().unwrap_err().to_string();
        assert!(err.contains("bf16") && err.contains("bfloat16"), "{err}");
    }
}
