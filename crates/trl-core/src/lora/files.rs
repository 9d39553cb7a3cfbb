//! peft's adapter folder: `adapter_model.safetensors` + `adapter_config.json`.

use std::path::Path;

use burn::tensor::Device;

use super::config::{CONFIG_FILE, LoraConfig};
use super::{Adaptable, LoraAdapter, adapted_paths, check_attached};
use crate::model::{WeightReader, WeightWriter, write_atomically};
use crate::{Error, Result};

/// File name of peft's adapter weights.
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";

/// Prefix peft puts before every module path (`PeftModel.base_model.model`).
const PREFIX: &str = "base_model.model.";

/// Whether `dir` is a peft adapter folder (it holds `adapter_config.json`).
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// Writes `model`'s adapters and module copies as peft does (`save_pretrained` of a
/// `PeftModel`), with `config` as `adapter_config.json`.
pub fn save_adapter<M: Adaptable>(model: &M, config: &LoraConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut w = WeightWriter::default();
    for (path, p) in model.projections() {
        if let Some(adapter) = &p.lora {
            w.linear(&format!("{PREFIX}{path}.lora_A"), &adapter.lora_a)?;
            w.linear(&format!("{PREFIX}{path}.lora_B"), &adapter.lora_b)?;
        }
        if let Some(copy) = &p.saved_copy {
            w.linear(&format!("{PREFIX}{path}"), copy)?;
        }
    }
    let tmp = dir.join("adapter_model.safetensors.tmp-write");
    w.write(&tmp)?;
    std::fs::rename(&tmp, dir.join(ADAPTER_FILE)).map_err(|e| Error::io(dir, e))?;
    let json = config.to_json(&adapted_paths(model));
    let text = serde_json::to_vec_pretty(&json).unwrap_or_default();
    write_atomically(&dir.join(CONFIG_FILE), &text)
}

/// Freezes `model` (the base) and attaches the adapter saved in `dir` with `config` (read
/// from `dir` by the caller): peft's `PeftModel.from_pretrained(base, dir, is_trainable=True)`.
/// A tensor the adapter lacks, or one left over, is an error naming it.
pub fn load_adapter<M: Adaptable>(
    model: M,
    config: &LoraConfig,
    dir: &Path,
    device: &Device,
) -> Result<M> {
    let mut r = WeightReader::open_file(&dir.join(ADAPTER_FILE))?;
    let model = model.no_grad();
    let (scaling, dropout) = (config.scaling(), config.lora_dropout);
    let mut matched = 0;
    let model = model.map_projections(&mut |path, mut p| {
        let [d_in, d_out] = p.base.weight.dims();
        let bias = p.base.bias.is_some();
        if config.saves_module(path) {
            p.saved_copy = Some(r.linear(&format!("{PREFIX}{path}"), d_in, d_out, bias, device)?);
        } else if config.targets(path) {
            let a_name = format!("{PREFIX}{path}.lora_A.weight");
            let rank = r.numel(&a_name) / d_in.max(1);
            if rank != config.r {
                return Err(Error::Weights {
                    message: format!(
                        "{}: {a_name} holds {} values; r = {} and in_features = {d_in} imply {}",
                        dir.join(ADAPTER_FILE).display(),
                        r.numel(&a_name),
                        config.r,
                        config.r * d_in
                    ),
                });
            }
            let a = r.linear(&format!("{PREFIX}{path}.lora_A"), d_in, rank, false, device)?;
            let b = r.linear(
                &format!("{PREFIX}{path}.lora_B"),
                rank,
                d_out,
                false,
                device,
            )?;
            p.lora = Some(LoraAdapter::from_factors(
                a.weight.val(),
                b.weight.val(),
                scaling,
                dropout,
            ));
            matched += 1;
        }
        Ok(p)
    })?;
    check_attached(&model, config, matched)?;
    let unused = r.unused();
    if !unused.is_empty() {
        return Err(Error::Weights {
            message: format!(
                "{}: tensors no module of the model takes: {} (does adapter_config.json name \
                 another base model?)",
                dir.join(ADAPTER_FILE).display(),
                unused.join(", ")
            ),
        });
    }
    Ok(model)
}
