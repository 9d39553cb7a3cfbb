//! The fused operations trl-rs adds to burn, as a backend extension (`#[backend_extension]`),
//! and the functions that call them on high-level tensors. The implementations live beside it:
//! `flex_forward` (the flex backend), `flex_autodiff` (autodiff over flex, with the `Backward`
//! structs of `flex_backward`), so a training step on CPU records one graph node per fused op
//! instead of one per elementary op.

use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension};
use burn::tensor::{Bool, DType, Int, Tensor};

use super::lora_cpu::Dropout;

/// The fused operations trl-rs adds to burn. Model and loss code call them through the
/// functions of [`super`] ([`super::attention`], [`super::swiglu_mlp`], [`super::rms_norm`],
/// [`super::rope`], [`super::label_log_probs`]), which check that the tensors suit them.
#[backend_extension(Autodiff, Flex)]
pub trait TrainingKernels: Backend {
    /// q `[batch, heads, seq, head_dim]`, k/v `[batch, kv_heads, seq, head_dim]`, blocked
    /// `[batch, 1, seq, seq]` -> `[batch, seq, heads, head_dim]`.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: BoolTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The SwiGLU MLP without biases, `(silu(x @ gate) * (x @ up)) @ down`: x
    /// `[batch, seq, hidden]`, gate/up `[hidden, inter]`, down `[inter, hidden]` (burn's
    /// `Linear` layout) -> `[batch, seq, hidden]`.
    fn fused_mlp(
        x: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        down: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Log-probs `[batch, seq - 1]` of `labels` `[batch, seq - 1]` (in the vocabulary) under
    /// `logits` `[batch, seq, vocab]`, position `t` predicting `labels[:, t]`.
    fn fused_label_logprobs(
        logits: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The LM head and label log-probs in one chunked pass: `hidden` `[tokens, hidden]`,
    /// `weight` `[vocab, hidden]` when `vocab_major` (an embedding table) else `[hidden, vocab]`,
    /// `labels` `[tokens]` (in the vocabulary) -> `[tokens, 1 + STATS]`: column 0 is the label's
    /// log-prob under `softmax(hidden @ W / temperature)` (the only column with a gradient),
    /// the others the statistics of [`super::label_log_probs`].
    fn fused_head_logprobs(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        labels: IntTensor<Self>,
        vocab_major: bool,
        temperature: f64,
    ) -> FloatTensor<Self>;

    /// Per predicting position of `logits` `[batch, seq, vocab]`: entropy, argmax, `log Σ p²`
    /// and mean logit, `[batch, seq - 1, 4]`, without gradient.
    fn fused_token_stats(logits: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Decoding attention (no gradient): q `[batch, heads, new, head_dim]` against the KV
    /// cache k/v `[batch, kv_heads, capacity, head_dim]`, blocked `[batch, 1, new, capacity]`
    /// -> `[batch, new, heads, head_dim]`.
    /// Columns before `shared_columns` of row `b` may be read from row `shared_source[b]`.
    fn fused_cached_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: BoolTensor<Self>,
        shared_source: Vec<usize>,
        shared_columns: usize,
    ) -> FloatTensor<Self>;

    /// A projection with a LoRA adapter, `x @ base + scaling * (dropout(x) @ a) @ b`: x
    /// `[tokens, in]`, base `[in, out]`, a `[in, r]`, b `[r, out]` -> `[tokens, out]`; the
    /// dropout keeps an element with probability `keep` (none drawn when `keep >= 1`), its
    /// mask a hash of `seed` and the element's index.
    fn fused_lora_linear(
        x: FloatTensor<Self>,
        base: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scaling: f64,
        keep: f64,
        seed: u64,
    ) -> FloatTensor<Self>;

    /// RMSNorm of `x` `[.., width]` over its last axis, scaled by `weight` `[width]`.
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// `x` `[batch, heads, seq, head_dim]` rotated by `cos`/`sin` `[batch, 1, seq, head_dim]`
    /// (constants: no gradient flows to them).
    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// True when `tensor` is an f32 tensor of the flex backend (with or without autodiff): the
/// only case these kernels handle.
pub fn runs_on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(
        tensor.device().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    ) && tensor.dtype() == DType::F32
}

/// [`TrainingKernels::fused_attention`] on high-level tensors.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, blocked: Tensor<4, Bool>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        blocked.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_cached_attention`] on high-level tensors.
pub fn cached_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Tensor<4, Bool>,
    shared: &super::SharedPrefix,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_cached_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        blocked.into_dispatch(),
        shared.source.clone(),
        shared.columns,
    ))
}

/// [`TrainingKernels::fused_mlp`] on high-level tensors.
pub fn mlp(x: Tensor<3>, gate: Tensor<2>, up: Tensor<2>, down: Tensor<2>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_mlp(
        x.into_dispatch(),
        gate.into_dispatch(),
        up.into_dispatch(),
        down.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_lora_linear`] on high-level tensors.
pub fn lora_linear(
    x: Tensor<2>,
    [base, a, b]: [Tensor<2>; 3],
    scaling: f64,
    dropout: Option<Dropout>,
) -> Tensor<2> {
    let (keep, seed) = dropout.map_or((1.0, 0), |d| (d.keep, d.seed));
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_lora_linear(
        x.into_dispatch(),
        base.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        scaling,
        keep,
        seed,
    ))
}

/// [`TrainingKernels::fused_label_logprobs`] on high-level tensors.
pub fn label_logprobs(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_label_logprobs(
        logits.into_dispatch(),
        labels.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_head_logprobs`] on high-level tensors.
pub fn head_logprobs(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    labels: Tensor<1, Int>,
    vocab_major: bool,
    temperature: f64,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_head_logprobs(
        hidden.into_dispatch(),
        weight.into_dispatch(),
        labels.into_dispatch(),
        vocab_major,
        temperature,
    ))
}

/// [`TrainingKernels::fused_token_stats`] on high-level tensors.
pub fn token_stats_of(logits: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_token_stats(
        logits.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_rms_norm`] on high-level tensors.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_rms_norm(
        x.into_dispatch(),
        weight.into_dispatch(),
        eps,
    ))
}

/// [`TrainingKernels::fused_rope`] on high-level tensors.
pub fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    ))
}
