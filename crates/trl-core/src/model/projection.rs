//! A linear projection of the model that may carry a LoRA adapter or a trainable copy.
//!
//! Every `nn.Linear` of the decoder (q/k/v/o, gate/up/down, `lm_head`, `score`) is a
//! [`Projection`]: without an adapter it is exactly the HF `Linear`; with one (see
//! [`crate::lora`]) it computes peft's `base(x) + lora_B(lora_A(dropout(x))) * scaling`, and
//! with a `modules_to_save` copy it runs the copy instead of the frozen original, as peft's
//! `ModulesToSaveWrapper` does. The original stays in place, so switching adapters off (the
//! reference model of DPO, KTO and GRPO) shares every base tensor instead of copying it.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::lora::LoraAdapter;
use crate::{kernels, precision};

/// An HF `nn.Linear` plus what peft may wrap it with.
#[derive(Module, Debug)]
pub struct Projection {
    /// The frozen (or fully trained, without LoRA) weights, burn layout `[in, out]`.
    pub base: Linear,
    /// peft's LoRA adapter on this projection.
    pub lora: Option<LoraAdapter>,
    /// peft's `modules_to_save`: a trainable copy used instead of `base`.
    pub saved_copy: Option<Linear>,
}

impl Projection {
    /// A plain projection (no adapter).
    pub fn new(base: Linear) -> Self {
        Projection {
            base,
            lora: None,
            saved_copy: None,
        }
    }

    /// The `Linear` the forward starts from: the `modules_to_save` copy when there is one.
    pub fn active_linear(&self) -> &Linear {
        self.saved_copy.as_ref().unwrap_or(&self.base)
    }

    /// `[.., in]` -> `[.., out]`: peft's LoRA `Linear.forward` (unmerged, so the frozen base
    /// weight gets no gradient and dropout applies to the adapter's input only), through
    /// [`kernels::lora_linear`].
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let linear = self.active_linear();
        let Some(adapter) = &self.lora else {
            let weight = linear.weight.val();
            let out = if precision::autocast().is_some() && !precision::cpu_bf16_matmuls() {
                precision::matmul(x, weight)
            } else {
                kernels::linear(x, weight)
            };
            return match &linear.bias {
                Some(bias) => out + bias.val().unsqueeze(),
                None => out,
            };
        };
        let training = crate::lora::adapter::is_training(&x, adapter);
        let dropout = adapter.dropout_active(training).then_some(adapter.dropout);
        let weights = [
            linear.weight.val(),
            adapter.lora_a.weight.val(),
            adapter.lora_b.weight.val(),
        ];
        let out = kernels::lora_linear(x, weights, adapter.scaling, dropout);
        match &linear.bias {
            Some(bias) => out + bias.val().unsqueeze(),
            None => out,
        }
    }

    /// The weight `[in, out]` this projection applies, adapter folded in (`W + scaling * A B`):
    /// what the fused kernels take; gradients reach `A` and `B` through it. Only exact while
    /// the adapter's dropout is inactive (see [`Projection::folds_exactly`]).
    pub fn effective_weight(&self) -> Tensor<2> {
        let weight = self.active_linear().weight.val();
        match &self.lora {
            Some(adapter) => weight + adapter.delta_weight(),
            None => weight,
        }
    }

    /// Whether [`Projection::effective_weight`] computes what [`Projection::forward`] does
    /// (no bias, no dropout drawn for this forward).
    pub fn folds_exactly<const D: usize>(&self, x: &Tensor<D>) -> bool {
        self.active_linear().bias.is_none()
            && self.lora.as_ref().is_none_or(|adapter| {
                !adapter.dropout_active(crate::lora::adapter::is_training(x, adapter))
            })
    }

    /// The projection with adapter and copy removed: the base model's, sharing its tensors.
    pub fn without_adapter(&self) -> Projection {
        Projection::new(self.base.clone())
    }
}

/// What the model's `map_projections` walkers apply to each projection, given its HF path
/// (`model.layers.0.self_attn.q_proj`, `lm_head`, `score`).
pub type ProjectionFn<'a> = dyn FnMut(&str, Projection) -> crate::Result<Projection> + 'a;
