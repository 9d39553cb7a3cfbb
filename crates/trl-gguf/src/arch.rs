//! The architectures we export and what llama.cpp expects of each: the GGUF architecture name,
//! the hyperparameter keys `convert_hf_to_gguf.py` writes from config.json, Hugging Face tensor
//! names mapped to llama.cpp's, and the Llama family's q/k row permutation.

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::metadata::Value;

/// A model's config.json, reduced to what the GGUF file needs.
#[derive(Debug, Clone)]
pub struct ArchConfig {
    /// llama.cpp's architecture name: `llama` (also Mistral), `qwen2` or `qwen3`.
    pub arch: &'static str,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// `head_dim` when config.json states it (then written as key/value length).
    pub head_dim: Option<usize>,
    pub intermediate_size: usize,
    pub context_length: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope: Rope,
}

/// RoPE scaling as llama.cpp represents it.
#[derive(Debug, Clone, PartialEq)]
pub enum Rope {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor` (`rope.scaling.type = linear`).
    Linear { factor: f64 },
    /// Llama 3's per-frequency factors, written as the `rope_freqs.weight` tensor.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_context: f64,
    },
}

/// The architectures in config.json's `architectures` we know, with their GGUF names.
const ARCHITECTURES: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("MistralForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
    ("Qwen3ForCausalLM", "qwen3"),
];

fn num(config: &Json, key: &str) -> Option<f64> {
    config.get(key).and_then(Json::as_f64)
}

fn count(config: &Json, key: &str, file: &str) -> Result<usize> {
    config
        .get(key)
        .and_then(Json::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| Error::Invalid(format!("{file}: no integer {key:?}")))
}

impl ArchConfig {
    /// Reads config.json's fields; `file` names it in errors.
    pub fn from_json(config: &Json, file: &str) -> Result<ArchConfig> {
        let names: Vec<&str> = config
            .get("architectures")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let arch = names
            .iter()
            .find_map(|n| {
                ARCHITECTURES
                    .iter()
                    .find(|(hf, _)| hf == n)
                    .map(|(_, g)| *g)
            })
            .ok_or_else(|| {
                let known: Vec<&str> = ARCHITECTURES.iter().map(|(hf, _)| *hf).collect();
                Error::Unsupported(format!(
                    "{file}: architectures {names:?} cannot be exported to GGUF yet; supported: {}",
                    known.join(", ")
                ))
            })?;
        let n_heads = count(config, "num_attention_heads", file)?;
        let rope_params = config
            .get("rope_parameters")
            .filter(|v| v.is_object())
            .or_else(|| config.get("rope_scaling").filter(|v| v.is_object()));
        let rope_theta = rope_params
            .and_then(|p| num(p, "rope_theta"))
            .or_else(|| num(config, "rope_theta"))
            .unwrap_or(10_000.0);
        Ok(ArchConfig {
            arch,
            vocab_size: count(config, "vocab_size", file)?,
            hidden_size: count(config, "hidden_size", file)?,
            n_layers: count(config, "num_hidden_layers", file)?,
            n_heads,
            n_kv_heads: count(config, "num_key_value_heads", file).unwrap_or(n_heads),
            head_dim: config
                .get("head_dim")
                .and_then(Json::as_u64)
                .map(|v| v as usize),
            intermediate_size: count(config, "intermediate_size", file)?,
            context_length: config
                .get("max_position_embeddings")
                .and_then(Json::as_u64)
                .map(|v| v as usize),
            rms_norm_eps: num(config, "rms_norm_eps").unwrap_or(1e-6),
            rope_theta,
            rope: parse_rope(rope_params, config, file)?,
        })
    }

    /// The head dimension: `head_dim`, else hidden size / heads.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.n_heads)
    }

    /// The `{arch}.*` hyperparameters, as `convert_hf_to_gguf.py` writes them.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let key = |k: &str| format!("{}.{k}", self.arch);
        let u32v = |v: usize| Value::U32(v as u32);
        let mut kv = vec![(key("block_count"), u32v(self.n_layers))];
        if let Some(n_ctx) = self.context_length {
            kv.push((key("context_length"), u32v(n_ctx)));
        }
        kv.push((key("embedding_length"), u32v(self.hidden_size)));
        kv.push((key("feed_forward_length"), u32v(self.intermediate_size)));
        kv.push((key("attention.head_count"), u32v(self.n_heads)));
        kv.push((key("attention.head_count_kv"), u32v(self.n_kv_heads)));
        kv.push((key("rope.freq_base"), Value::F32(self.rope_theta as f32)));
        kv.push((
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(self.rms_norm_eps as f32),
        ));
        if let Some(head_dim) = self.head_dim {
            kv.push((key("attention.key_length"), u32v(head_dim)));
            kv.push((key("attention.value_length"), u32v(head_dim)));
        }
        if self.arch == "llama" {
            kv.push((key("vocab_size"), u32v(self.vocab_size)));
            kv.push((key("rope.dimension_count"), u32v(self.head_dim())));
        }
        if let Rope::Linear { factor } = self.rope {
            kv.push((key("rope.scaling.type"), Value::String("linear".into())));
            kv.push((key("rope.scaling.factor"), Value::F32(factor as f32)));
        }
        kv
    }

    /// Whether q/k projection rows are permuted (the Llama family: llama.cpp's RoPE rotates
    /// interleaved pairs where transformers rotates the two halves of a head).
    pub fn permutes_qk(&self) -> bool {
        self.arch == "llama"
    }

    /// Llama 3's `rope_freqs.weight` (head_dim / 2 values), when the model uses it. Computed in
    /// f32 like the converter's torch code.
    pub fn rope_freqs(&self) -> Option<Vec<f32>> {
        let Rope::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } = self.rope
        else {
            return None;
        };
        let dim = self.head_dim();
        let base = self.rope_theta as f32;
        let low_wavelen = (original_context / low_freq_factor) as f32;
        let high_wavelen = (original_context / high_freq_factor) as f32;
        let factors = (0..dim)
            .step_by(2)
            .map(|i| {
                let freq = 1.0 / base.powf(i as f32 / dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor as f32
                } else {
                    let smooth = (original_context as f32 / wavelen - low_freq_factor as f32)
                        / (high_freq_factor - low_freq_factor) as f32;
                    1.0 / ((1.0 - smooth) / factor as f32 + smooth)
                }
            })
            .collect();
        Some(factors)
    }
}

fn parse_rope(params: Option<&Json>, config: &Json, file: &str) -> Result<Rope> {
    let Some(params) = params else {
        return Ok(Rope::Default);
    };
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Json::as_str)
        .unwrap_or("default");
    let get = |key: &str, default: f64| num(params, key).unwrap_or(default);
    match kind {
        "default" => Ok(Rope::Default),
        "linear" => Ok(Rope::Linear {
            factor: get("factor", 1.0),
        }),
        "llama3" => Ok(Rope::Llama3 {
            factor: get("factor", 8.0),
            low_freq_factor: get("low_freq_factor", 1.0),
            high_freq_factor: get("high_freq_factor", 4.0),
            original_context: num(params, "original_max_position_embeddings")
                .or_else(|| num(config, "original_max_position_embeddings"))
                .unwrap_or(8192.0),
        }),
        other => Err(Error::Unsupported(format!(
            "{file}: rope type {other:?} cannot be exported to GGUF yet (supported: default, linear, llama3)"
        ))),
    }
}

/// llama.cpp's name for a Hugging Face tensor; `Ok(None)` for tensors the converter drops.
pub fn gguf_name(hf: &str) -> Result<Option<String>> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Ok(Some(name.to_string()));
    }
    if hf.ends_with("rotary_emb.inv_freq") {
        return Ok(None);
    }
    let unknown = || Error::Unsupported(format!("tensor {hf:?} has no GGUF name (cannot map it)"));
    let rest = hf.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (layer, part) = rest.split_once('.').ok_or_else(unknown)?;
    let layer: usize = layer.parse().map_err(|_| unknown())?;
    let (module, suffix) = part.rsplit_once('.').ok_or_else(unknown)?;
    let mapped = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return Err(unknown()),
    };
    if suffix != "weight" && suffix != "bias" {
        return Err(unknown());
    }
    Ok(Some(format!("blk.{layer}.{mapped}.{suffix}")))
}

/// `LlamaModel.permute`: within each head, rows `[t*half + j]` move to `[2*j + t]` (the two
/// halves interleaved). `data` is row-major `[rows, cols]`, `rows = n_head * head_dim`.
pub fn permute_rows(data: &[f32], rows: usize, n_head: usize) -> Vec<f32> {
    let cols = data.len() / rows;
    let head = rows / n_head;
    let half = head / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for j in 0..half {
            for t in 0..2 {
                let src = (h * head + t * half + j) * cols;
                let dst = (h * head + 2 * j + t) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_layer_tensors_and_refuses_unknown_ones() {
        let name = gguf_name("model.layers.3.self_attn.k_proj.bias").unwrap();
        assert_eq!(name.as_deref(), Some("blk.3.attn_k.bias"));
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq").unwrap(),
            None
        );
        let err = gguf_name("model.layers.0.mlp.experts.0.w1.weight")
            .unwrap_err()
            .to_string();
        assert!(err.contains("experts.0.w1"), "{err}");
    }

    #[test]
    fn permute_interleaves_the_halves_of_each_head() {
        // 2 heads of 4 rows, 1 column: head rows [a0 a1 b0 b1] -> [a0 b0 a1 b1].
        let data: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(
            permute_rows(&data, 8, 2),
            vec![0., 2., 1., 3., 4., 6., 5., 7.]
        );
    }

    #[test]
    fn an_unknown_architecture_is_named_in_the_error() {
        let config = serde_json::json!({"architectures": ["GPT2LMHeadModel"]});
        let err = ArchConfig::from_json(&config, "config.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GPT2LMHeadModel") && err.contains("Qwen3ForCausalLM"),
            "{err}"
        );
    }
}
