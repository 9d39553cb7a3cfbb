//! LoRA adapters with peft's semantics and file layout, on every trl-rs model.
//!
//! An adapter sits inside a model [`Projection`]; the base weights are frozen (`no_grad`: no
//! gradient, hence no AdamW state) and only `lora_A`/`lora_B` (and `modules_to_save` copies)
//! train. Switching adapters off ([`without_adapters`]) gives the base model back while sharing
//! its tensors: the reference model of DPO, KTO and GRPO costs no second copy of the weights.
//!
//! Forward: unmerged, `base(x) + lora_B(lora_A(dropout(x))) * scaling` as peft's `Linear`, so
//! the frozen base weight never gets a gradient ([`crate::kernels::lora_linear`]: one fused op
//! on flex). The fused SwiGLU kernel takes whole weights: while no dropout mask is drawn
//! (`lora_dropout = 0`, or not training) the adapter is folded into them (`W + scaling * A B`,
//! gradients reach `A` and `B` through the fold); with dropout the MLP runs its projections one
//! by one. Dropout masks come from the device's random stream (trl-cli seeds it from `--seed`
//! and the step number before every step, so a resumed run draws the same masks).
//!
//! Files: `adapter_model.safetensors` holds `base_model.model.<path>.lora_A.weight` `[r, in]`,
//! `...lora_B.weight` `[out, r]` and `base_model.model.<path>.weight` for modules to save;
//! `adapter_config.json` is peft's `LoraConfig` ([`LoraConfig::to_json`]).

pub mod adapter;
pub mod config;
mod files;
pub mod targets;

pub use adapter::LoraAdapter;
pub use config::{CONFIG_FILE, LoraConfig, TaskType};
pub use files::{ADAPTER_FILE, is_adapter_dir, load_adapter, save_adapter};
pub use targets::{LayerFilter, TargetModules};

use burn::module::Module;
use burn::tensor::Device;

use crate::model::projection::ProjectionFn;
use crate::model::{CausalLm, Projection, SequenceClassifier};
use crate::{Error, Result};

/// A model whose projections can carry adapters: [`CausalLm`] and [`SequenceClassifier`].
pub trait Adaptable: Module + Sized {
    /// Replaces every projection by `f(hf_path, projection)`.
    fn map_projections(self, f: &mut ProjectionFn) -> Result<Self>;
    /// Every projection with its HF path.
    fn projections(&self) -> Vec<(String, &Projection)>;
}

impl Adaptable for CausalLm {
    fn map_projections(self, f: &mut ProjectionFn) -> Result<Self> {
        CausalLm::map_projections(self, f)
    }
    fn projections(&self) -> Vec<(String, &Projection)> {
        CausalLm::projections(self)
    }
}

impl Adaptable for SequenceClassifier {
    fn map_projections(self, f: &mut ProjectionFn) -> Result<Self> {
        SequenceClassifier::map_projections(self, f)
    }
    fn projections(&self) -> Vec<(String, &Projection)> {
        SequenceClassifier::projections(self)
    }
}

/// Freezes `model` and attaches fresh adapters (peft's init: `lora_B = 0`, so the logits are
/// unchanged) to every projection `config` targets, and trainable copies of its modules to
/// save. Errors when nothing matches (peft refuses that too) or a module to save is missing.
pub fn attach_new<M: Adaptable>(model: M, config: &LoraConfig, device: &Device) -> Result<M> {
    let model = model.no_grad();
    let (scaling, dropout) = (config.scaling(), config.lora_dropout);
    let mut matched = 0;
    let model = model.map_projections(&mut |path, mut p| {
        if config.saves_module(path) {
            p.saved_copy = Some(trainable_copy(&p.base));
            return Ok(p);
        }
        if config.targets(path) {
            let [d_in, d_out] = p.base.weight.dims();
            p.lora = Some(LoraAdapter::init(
                d_in, d_out, config.r, scaling, dropout, device,
            ));
            matched += 1;
        }
        Ok(p)
    })?;
    check_attached(&model, config, matched)?;
    Ok(model)
}

/// A trainable copy of `linear` under new parameter ids (the frozen original keeps its own,
/// so gradients and optimizer state never mix the two).
fn trainable_copy(linear: &burn::nn::Linear) -> burn::nn::Linear {
    use burn::module::Param;
    burn::nn::Linear {
        weight: Param::from_tensor(linear.weight.val()),
        bias: linear.bias.as_ref().map(|b| Param::from_tensor(b.val())),
    }
}

fn check_attached<M: Adaptable>(model: &M, config: &LoraConfig, matched: usize) -> Result<()> {
    let paths: Vec<String> = model.projections().into_iter().map(|(p, _)| p).collect();
    let error = |message: String| Error::Config {
        path: CONFIG_FILE.into(),
        message,
    };
    if matched == 0 {
        return Err(error(format!(
            "target_modules {:?} match no linear layer of the model (its layers: {}, ...)",
            config.target_modules,
            paths.iter().take(7).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    for name in &config.modules_to_save {
        if !paths
            .iter()
            .any(|p| p == name || p.ends_with(&format!(".{name}")))
        {
            return Err(error(format!(
                "modules_to_save {name:?} is not a linear layer of the model (tied embeddings \
                 have no separate lm_head)"
            )));
        }
    }
    Ok(())
}

/// The model with every adapter and module copy removed: the base model, sharing its
/// tensors with `model` (no copy), frozen. DPO/KTO/GRPO's reference under LoRA.
pub fn without_adapters<M: Adaptable>(model: &M) -> Result<M> {
    model
        .clone()
        .map_projections(&mut |_, p| Ok(p.without_adapter()))
        .map(Module::no_grad)
}

/// The model with every adapter folded into its base weight (`W + scaling * A B`) and every
/// module copy in place of the original: peft's `merge_and_unload`, ready to save as a plain
/// checkpoint.
pub fn merge<M: Adaptable>(model: M) -> Result<M> {
    model.map_projections(&mut |_, p| {
        let mut base = p.saved_copy.clone().unwrap_or_else(|| p.base.clone());
        base.weight = burn::module::Param::from_tensor(p.effective_weight());
        Ok(Projection::new(base))
    })
}

/// The paths of the projections that carry an adapter, in module order.
pub fn adapted_paths<M: Adaptable>(model: &M) -> Vec<String> {
    model
        .projections()
        .into_iter()
        .filter(|(_, p)| p.lora.is_some())
        .map(|(path, _)| path)
        .collect()
}

/// Whether `model` carries any adapter or module copy.
pub fn has_adapters<M: Adaptable>(model: &M) -> bool {
    model
        .projections()
        .iter()
        .any(|(_, p)| p.lora.is_some() || p.saved_copy.is_some())
}

#[cfg(test)]
mod parity_tests;
