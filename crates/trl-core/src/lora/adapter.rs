//! One LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"),
//! with peft's exact semantics: `delta(x) = lora_B(lora_A(dropout(x))) * scaling`, `scaling =
//! lora_alpha / r` (or `lora_alpha / sqrt(r)` with rsLoRA, Kalajdzievski 2023), `lora_A`
//! Kaiming-uniform (`a = sqrt(5)`, i.e. `U(-1/sqrt(in), 1/sqrt(in))`), `lora_B` zeros, so a
//! fresh adapter changes nothing.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor};

/// `lora_A` and `lora_B` of one projection, in burn's `[in, out]` layout.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `[in, r]` (peft stores `lora_A.weight` as `[r, in]`).
    pub lora_a: Linear,
    /// `[r, out]` (peft stores `lora_B.weight` as `[out, r]`).
    pub lora_b: Linear,
    #[module(skip)]
    pub scaling: f64,
    #[module(skip)]
    pub dropout: f64,
}

impl LoraAdapter {
    /// A fresh adapter as peft initialises it (`init_lora_weights=True`), from the device's
    /// random stream (seed it for reproducible runs).
    pub fn init(
        d_in: usize,
        d_out: usize,
        r: usize,
        scaling: f64,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::<2>::random([d_in, r], Distribution::Uniform(-bound, bound), device);
        let b = Tensor::<2>::zeros([r, d_out], device);
        Self::from_factors(a, b, scaling, dropout)
    }

    /// An adapter from `a` `[in, r]` and `b` `[r, out]` (trainable).
    pub fn from_factors(a: Tensor<2>, b: Tensor<2>, scaling: f64, dropout: f64) -> Self {
        let linear = |weight: Tensor<2>| Linear {
            weight: Param::from_tensor(weight),
            bias: None,
        };
        LoraAdapter {
            lora_a: linear(a),
            lora_b: linear(b),
            scaling,
            dropout,
        }
    }

    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.weight.dims()[1]
    }

    /// Whether this forward draws a dropout mask: a positive rate, and a training forward
    /// (an autodiff device with the adapter trainable), as `nn.Dropout` in train mode.
    pub fn dropout_active(&self, training: bool) -> bool {
        self.dropout > 0.0 && training
    }

    /// `scaling * A B` `[in, out]`: the adapter folded into a weight (merging, fused kernels).
    pub fn delta_weight(&self) -> Tensor<2> {
        self.lora_a.weight.val().matmul(self.lora_b.weight.val()) * self.scaling
    }
}

/// A training forward: on an autodiff device with the adapter's parameters tracked, or the
/// graph-free first pass of a checkpointed layer of one ([`as_training`]).
pub fn is_training<const D: usize>(x: &Tensor<D>, adapter: &LoraAdapter) -> bool {
    GRAPH_FREE_TRAINING.get()
        || (x.device().is_autodiff() && adapter.lora_a.weight.val().is_require_grad())
}

thread_local! {
    /// Set while [`as_training`] runs.
    static GRAPH_FREE_TRAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `forward` as a training forward although its tensors record no graph: the first pass
/// of a checkpointed layer (`model::recompute`), whose dropout must draw what the rerun in the
/// backward draws.
pub fn as_training<T>(forward: impl FnOnce() -> T) -> T {
    let before = GRAPH_FREE_TRAINING.replace(true);
    let out = forward();
    GRAPH_FREE_TRAINING.set(before);
    out
}
