//! `config.json` of a Hugging Face decoder, resolved into the one config our model code uses.
//!
//! Llama, Mistral, Qwen2 and Qwen3 differ only in data (biases, q/k norms, head_dim, tying,
//! RoPE scaling, sliding window), so one [`DecoderConfig`] covers all four.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// The architectures we build, as named in `config.json`'s `architectures` / `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl Family {
    /// The `model_type` string transformers writes for this family.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    /// The class-name prefix transformers uses (`LlamaForCausalLM`, ...).
    pub fn class_prefix(self) -> &'static str {
        match self {
            Family::Llama => "Llama",
            Family::Mistral => "Mistral",
            Family::Qwen2 => "Qwen2",
            Family::Qwen3 => "Qwen3",
        }
    }

    fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "llama" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            _ => None,
        }
    }
}

/// Which head sits on the decoder's hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// `*ForCausalLM`: `lm_head` (or the tied embedding) to vocabulary logits.
    CausalLm,
    /// `*ForSequenceClassification`: `score` to `num_labels` logits at the last non-pad token.
    SequenceClassification,
}

/// How RoPE frequencies are rescaled (`rope_scaling` / `rope_parameters.rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (transformers' "linear").
    Linear { factor: f64 },
    /// Llama 3.1's frequency-band rescaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Everything the decoder code needs, with defaults already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub family: Family,
    pub head: HeadKind,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Bias on q/k/v projections (Qwen2 always; Llama/Mistral with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias` covers o_proj too).
    pub o_bias: bool,
    /// Bias on gate/up/down (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// Qwen3's RMSNorm on each query and key head.
    pub qk_norm: bool,
    /// Mistral's sliding attention window, when set and active.
    pub sliding_window: Option<usize>,
    pub tie_word_embeddings: bool,
    pub num_labels: usize,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub max_position_embeddings: usize,
    /// The original `config.json`, kept so saving writes back every key we do not model.
    pub raw: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    tie_word_embeddings: Option<bool>,
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, Value>>,
    pad_token_id: Option<Value>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
}

fn default_rms_eps() -> f64 {
    1e-6
}

fn default_max_positions() -> usize {
    2048
}

impl DecoderConfig {
    /// Reads and resolves `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::json(path, e))?;
        Self::from_json(value, path)
    }

    /// Resolves an already-parsed `config.json`; `path` only names the file in errors.
    pub fn from_json(value: Value, path: &Path) -> Result<Self> {
        let config_error = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let Value::Object(raw_map) = value.clone() else {
            return Err(config_error("expected a JSON object".into()));
        };
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| Error::json(path, e))?;

        let (family, head) = resolve_architecture(&raw).map_err(config_error)?;
        if let Some(act) = raw.hidden_act.as_deref()
            && act != "silu"
        {
            return Err(config_error(format!(
                "hidden_act {act:?} is not supported (expected \"silu\")"
            )));
        }
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if !raw.num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(config_error(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({num_key_value_heads})",
                raw.num_attention_heads
            )));
        }
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if !head_dim.is_multiple_of(2) {
            return Err(config_error(format!(
                "head_dim {head_dim} must be even for RoPE"
            )));
        }
        let (rope_theta, rope_scaling) = resolve_rope(&raw).map_err(config_error)?;
        let sliding_window = match family {
            Family::Mistral => raw.sliding_window,
            Family::Qwen2 | Family::Qwen3 if raw.use_sliding_window == Some(true) => {
                return Err(config_error(
                    "use_sliding_window=true is not supported for Qwen models".into(),
                ));
            }
            _ => None,
        };
        let num_labels = raw
            .num_labels
            .or_else(|| raw.id2label.as_ref().map(|m| m.len()))
            .unwrap_or(2);

        Ok(DecoderConfig {
            family,
            head,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            qkv_bias: family == Family::Qwen2 || raw.attention_bias,
            o_bias: raw.attention_bias,
            mlp_bias: raw.mlp_bias,
            qk_norm: family == Family::Qwen3,
            sliding_window,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            num_labels,
            pad_token_id: first_token_id(raw.pad_token_id.as_ref()),
            bos_token_id: first_token_id(raw.bos_token_id.as_ref()),
            eos_token_ids: token_ids(raw.eos_token_id.as_ref()),
            max_position_embeddings: raw.max_position_embeddings,
            raw: raw_map,
        })
    }

    /// The transformers class name of this model, e.g. `Qwen2ForSequenceClassification`.
    pub fn architecture_name(&self) -> String {
        let suffix = match self.head {
            HeadKind::CausalLm => "ForCausalLM",
            HeadKind::SequenceClassification => "ForSequenceClassification",
        };
        format!("{}{}", self.family.class_prefix(), suffix)
    }

    /// The `config.json` to write next to saved weights: the original keys, with the
    /// architecture, labels and dtype made to describe what we saved.
    pub fn to_json(&self, dtype: &str) -> Value {
        let mut map = self.raw.clone();
        map.insert(
            "architectures".into(),
            Value::from(vec![self.architecture_name()]),
        );
        map.insert("model_type".into(), Value::from(self.family.model_type()));
        map.insert("dtype".into(), Value::from(dtype));
        map.remove("torch_dtype");
        map.insert(
            "tie_word_embeddings".into(),
            Value::from(self.tie_word_embeddings),
        );
        if self.head == HeadKind::SequenceClassification {
            map.insert("num_labels".into(), Value::from(self.num_labels));
            let labels = |f: &dyn Fn(usize) -> (String, Value)| {
                Value::Object((0..self.num_labels).map(f).collect())
            };
            map.insert(
                "id2label".into(),
                labels(&|i| (i.to_string(), Value::from(format!("LABEL_{i}")))),
            );
            map.insert(
                "label2id".into(),
                labels(&|i| (format!("LABEL_{i}"), Value::from(i))),
            );
            if let Some(pad) = self.pad_token_id {
                map.insert("pad_token_id".into(), Value::from(pad));
            }
        }
        Value::Object(map)
    }
}

fn resolve_architecture(raw: &RawConfig) -> Result<(Family, HeadKind), String> {
    let supported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM \
                     and their *ForSequenceClassification heads";
    if let Some(arch) = raw.architectures.as_ref().and_then(|a| a.first()) {
        for family in [Family::Llama, Family::Mistral, Family::Qwen2, Family::Qwen3] {
            let prefix = family.class_prefix();
            if let Some(rest) = arch.strip_prefix(prefix) {
                match rest {
                    "ForCausalLM" => return Ok((family, HeadKind::CausalLm)),
                    "ForSequenceClassification" => {
                        return Ok((family, HeadKind::SequenceClassification));
                    }
                    _ => {}
                }
            }
        }
        return Err(format!(
            "architecture {arch:?} is not supported; supported: {supported}"
        ));
    }
    match raw.model_type.as_deref().and_then(Family::from_model_type) {
        Some(family) => Ok((family, HeadKind::CausalLm)),
        None => Err(format!(
            "model_type {:?} is not supported; supported: {supported}",
            raw.model_type
        )),
    }
}

/// Reads RoPE settings from either transformers 5's `rope_parameters` or the older
/// `rope_theta` + `rope_scaling` pair; both appear on the hub.
fn resolve_rope(raw: &RawConfig) -> Result<(f64, RopeScaling), String> {
    let params = raw.rope_parameters.as_ref().filter(|v| v.is_object());
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or(raw.rope_theta)
        .unwrap_or(10000.0);
    let scaling = params.or(raw.rope_scaling.as_ref().filter(|v| v.is_object()));
    let Some(scaling) = scaling else {
        return Ok((theta, RopeScaling::None));
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |key: &str| -> Result<f64, String> {
        scaling
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("rope scaling {kind:?} needs a numeric {key:?}"))
    };
    if let Some(partial) = scaling.get("partial_rotary_factor").and_then(Value::as_f64)
        && partial != 1.0
    {
        return Err(format!("partial_rotary_factor {partial} is not supported"));
    }
    let rope = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => {
            return Err(format!(
                "rope type {other:?} is not supported (supported: default, linear, llama3)"
            ));
        }
    };
    Ok((theta, rope))
}

fn token_ids(value: Option<&Value>) -> Vec<u32> {
    match value {
        Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_u64)
            .map(|v| v as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn first_token_id(value: Option<&Value>) -> Option<u32> {
    token_ids(value).first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2
        })
    }

    fn resolve(value: Value) -> Result<DecoderConfig> {
        DecoderConfig::from_json(value, Path::new("config.json"))
    }

    #[test]
    fn reads_old_and_new_rope_keys_alike() {
        let mut old = base();
        old["rope_theta"] = json!(500000.0);
        old["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        let mut new = base();
        new["rope_parameters"] =
            json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0});
        let (a, b) = (resolve(old).unwrap(), resolve(new).unwrap());
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        assert_eq!(
            (a.rope_theta, a.rope_scaling),
            (b.rope_theta, b.rope_scaling)
        );
    }

    #[test]
    fn unsupported_architecture_names_it() {
        let mut cfg = base();
        cfg["architectures"] = json!(["GPT2LMHeadModel"]);
        let err = resolve(cfg).unwrap_err().to_string();
        assert!(
            err.contains("GPT2LMHeadModel") && err.contains("config.json"),
            "{err}"
        );
    }

    #[test]
    fn qwen_variants_are_data() {
        let mut cfg = base();
        cfg["architectures"] = json!(["Qwen3ForSequenceClassification"]);
        cfg["head_dim"] = json!(8);
        let c = resolve(cfg).unwrap();
        assert!(c.qk_norm && !c.qkv_bias && c.head_dim == 8);
        assert_eq!(c.head, HeadKind::SequenceClassification);
        assert_eq!(c.architecture_name(), "Qwen3ForSequenceClassification");
    }

    #[test]
    fn unknown_rope_type_is_an_error() {
        let mut cfg = base();
        cfg["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        assert!(resolve(cfg).unwrap_err().to_string().contains("yarn"));
    }
}
