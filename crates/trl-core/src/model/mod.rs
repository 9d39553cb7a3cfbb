//! Decoder-only language models built from a Hugging Face folder, and saving them back.
//!
//! Llama, Mistral, Qwen2 and Qwen3 share one implementation: their differences are data in
//! [`DecoderConfig`]. Tensor names are the HF ones at every step, so loading and saving need no
//! renaming table.

pub mod config;
pub mod decoder;
pub mod kv_cache;
pub mod layers;
pub mod mask;
pub mod projection;
pub mod recompute;
pub mod rope;
pub mod weights;

use std::path::Path;

use burn::tensor::Device;

pub use config::{DecoderConfig, Family, HeadKind, RopeScaling};
pub use decoder::{CausalLm, Decoder, SequenceClassifier, TokenBatch};
pub use kv_cache::KvCache;
pub use projection::Projection;
pub use weights::{WeightReader, WeightWriter};

use crate::{Error, Result};

/// Reads `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<DecoderConfig> {
    DecoderConfig::from_file(&dir.join("config.json"))
}

/// Loads a causal LM from a local HF folder (config.json + safetensors).
pub fn load_causal_lm(dir: &Path, device: &Device) -> Result<CausalLm> {
    let config = read_config(dir)?;
    if config.head != HeadKind::CausalLm {
        return Err(Error::Config {
            path: dir.join("config.json"),
            message: format!(
                "{} is not a causal language model",
                config.architecture_name()
            ),
        });
    }
    let mut reader = WeightReader::open(dir)?;
    CausalLm::load(&mut reader, &config, device)
}

/// Loads a frozen causal LM to serve as a reference model: on the training device, so its
/// forward pass runs the very kernels the policy's does (policy and reference agree bit for bit
/// while their weights do, as in TRL, where step-1 rewards are exactly 0), with every parameter
/// marked `no_grad`, so no autodiff graph is recorded for it.
pub fn load_frozen_causal_lm(dir: &Path, device: &Device) -> Result<CausalLm> {
    use burn::module::Module;
    Ok(load_causal_lm(dir, device)?.no_grad())
}

/// Loads a `*ForSequenceClassification` checkpoint; a causal-LM checkpoint gets a freshly
/// initialised `score` head with `num_labels` outputs instead of its `lm_head`.
pub fn load_sequence_classifier(
    dir: &Path,
    num_labels: usize,
    device: &Device,
) -> Result<SequenceClassifier> {
    let config = read_config(dir)?;
    let mut reader = WeightReader::open(dir)?;
    match config.head {
        HeadKind::SequenceClassification => SequenceClassifier::load(&mut reader, &config, device),
        HeadKind::CausalLm => {
            let std = config
                .raw
                .get("initializer_range")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.02);
            SequenceClassifier::load_with_new_head(&mut reader, &config, num_labels, std, device)
        }
    }
}

/// Writes a causal LM and its tokenizer (with chat template) as a folder `transformers` loads.
pub fn save_causal_lm(
    model: &CausalLm,
    tokenizer: &crate::tokenizer::Tokenizer,
    dir: &Path,
) -> Result<()> {
    let mut writer = WeightWriter::default();
    model.save_weights(&mut writer)?;
    save_pretrained(dir, model.config(), &writer)?;
    tokenizer.save(dir)
}

/// The dtype a checkpoint with `config` stores its weights in (what `config.json`'s `dtype` or
/// `torch_dtype` says; float32 when it says nothing else).
pub fn stored_dtype(config: &DecoderConfig) -> weights::Dtype {
    let named = config
        .raw
        .get("dtype")
        .or_else(|| config.raw.get("torch_dtype"))
        .and_then(|v| v.as_str());
    match named {
        Some("bfloat16") => weights::Dtype::BF16,
        Some("float16") => weights::Dtype::F16,
        _ => weights::Dtype::F32,
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash never
/// leaves a half-written file where a good one was.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    // A name of this process and call: two writers of one path (ranks sharing a cache) never
    // write into each other's temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-write-{}-{call}", std::process::id()));
    std::fs::write(&tmp, contents).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes `config.json`, `generation_config.json` and `model.safetensors` for `config` and the
/// tensors in `weights` into `dir` (created if missing). The tokenizer is saved separately.
pub fn save_pretrained(dir: &Path, config: &DecoderConfig, weights: &WeightWriter) -> Result<()> {
    save_pretrained_as(dir, config, weights, weights::Dtype::F32)
}

/// [`save_pretrained`] with the tensors stored as `dtype` (F32, BF16 or F16) and
/// `config.json` saying so: `trl merge` keeps the base checkpoint's dtype.
pub fn save_pretrained_as(
    dir: &Path,
    config: &DecoderConfig,
    weights: &WeightWriter,
    dtype: weights::Dtype,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let weights_tmp = dir.join("model.safetensors.tmp-write");
    weights.write_as(&weights_tmp, dtype)?;
    std::fs::rename(&weights_tmp, dir.join(weights::SINGLE_FILE)).map_err(|e| Error::io(dir, e))?;
    // A sharded index left from an earlier save would shadow nothing but confuse readers.
    let _ = std::fs::remove_file(dir.join(weights::INDEX_FILE));
    let pretty = |value: &serde_json::Value| serde_json::to_vec_pretty(value).unwrap_or_default();
    write_atomically(
        &dir.join("config.json"),
        &pretty(&config.to_json(match dtype {
            weights::Dtype::BF16 => "bfloat16",
            weights::Dtype::F16 => "float16",
            _ => "float32",
        })),
    )?;
    if config.head == HeadKind::CausalLm {
        write_atomically(
            &dir.join("generation_config.json"),
            &pretty(&generation_config(config)),
        )?;
    }
    Ok(())
}

fn generation_config(config: &DecoderConfig) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(bos) = config.bos_token_id {
        map.insert("bos_token_id".into(), bos.into());
    }
    match config.eos_token_ids.as_slice() {
        [] => {}
        [one] => {
            map.insert("eos_token_id".into(), (*one).into());
        }
        many => {
            map.insert("eos_token_id".into(), many.to_vec().into());
        }
    }
    if let Some(pad) = config.pad_token_id {
        map.insert("pad_token_id".into(), pad.into());
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
pub(crate) mod parity_tests;
