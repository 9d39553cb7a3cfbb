//! The operations a training step spends its time in, with hand-written fused CPU kernels
//! where burn's composed ops were slow (see BENCHMARKS.md).
//!
//! [`attention`], [`swiglu_mlp`], [`rms_norm`], [`rope`] and [`label_log_probs`] are what model
//! and loss code call. On the flex backend (f32, with or
//! without autodiff) they run the fused kernels of the `*_cpu` modules through a
//! burn backend extension with their own backward; on every other backend, and as the
//! reference the kernels are tested against, they run [`composed`]'s plain burn ops.

#[cfg(all(feature = "flex", target_arch = "x86_64", target_os = "linux"))]
mod amx;
#[cfg(feature = "flex")]
mod attention_backward_cpu;
#[cfg(feature = "flex")]
mod attention_cpu;
#[cfg(feature = "flex")]
mod attention_rows;
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
pub mod blocked;
pub mod blocked_attention;
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
pub mod blocked_check;
#[cfg(all(test, feature = "flex"))]
mod blocked_tests;
#[cfg(feature = "flex")]
mod buffer;
#[cfg(feature = "flex")]
mod cached_attention_cpu;
pub mod chunked_head;
pub mod composed;
#[cfg(feature = "flex")]
mod fast_math;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod flex_autodiff;
#[cfg(feature = "flex")]
mod flex_backward;
#[cfg(feature = "flex")]
mod flex_forward;
#[cfg(feature = "flex")]
mod flex_head;
#[cfg(feature = "flex")]
mod flex_lora;
#[cfg(feature = "flex")]
mod flex_tensor;
#[cfg(feature = "flex")]
mod gemm;
#[cfg(all(feature = "flex", target_arch = "x86_64", target_os = "linux"))]
mod gemm_bf16;
#[cfg(feature = "flex")]
mod head_logprobs_cpu;
#[cfg(all(test, feature = "flex"))]
mod head_tests;
#[cfg(feature = "flex")]
mod logprobs_cpu;
#[cfg(feature = "flex")]
mod lora_cpu;
#[cfg(all(test, feature = "flex"))]
mod lora_tests;
#[cfg(feature = "flex")]
mod mlp_cpu;
#[cfg(feature = "flex")]
mod rms_norm_cpu;
#[cfg(feature = "flex")]
mod rope_cpu;
#[cfg(feature = "flex")]
mod swiglu_cpu;
#[cfg(all(test, feature = "flex"))]
mod tests;

use burn::tensor::{Bool, Int, Tensor};

/// Whether the CPU backend can run `--bf16 true`'s products in bf16 (flex on an x86_64 CPU
/// with AMX-BF16, under Linux): what `trl-cli` asks before it sets
/// [`crate::precision::set_cpu_bf16_matmuls`].
pub fn cpu_bf16_matmuls_supported() -> bool {
    #[cfg(all(feature = "flex", target_arch = "x86_64", target_os = "linux"))]
    return gemm_bf16::supported();
    #[allow(unreachable_code)]
    false
}

/// Whether every tensor is f32: the fused kernels take f32 only (others run composed).
#[cfg(feature = "flex")]
fn all_f32<const D: usize>(tensors: &[&Tensor<D>]) -> bool {
    tensors
        .iter()
        .all(|t| t.dtype() == burn::tensor::DType::F32)
}

/// Masked softmax attention with grouped key/value heads, after RoPE:
/// `q` `[batch, heads, seq, head_dim]`, `k`/`v` `[batch, kv_heads, seq, head_dim]`, `blocked`
/// `[batch, 1, seq, seq]` (`true` = masked) -> `[batch, seq, heads, head_dim]` (heads next to
/// each other, as the output projection reads them).
///
/// Semantics of [`composed::grouped_query_attention`] (transformers' eager attention with
/// `repeat_kv`); on flex a fused kernel that never stores the score matrix, on the CubeCL
/// backends (wgpu, cuda) [`blocked::attention`], which builds the scores a block of query
/// rows at a time and keeps none of them for the backward.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, blocked: &Tensor<4, Bool>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    let [batch, _, seq, _] = q.dims();
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&q) && all_f32(&[&k, &v]) && blocked.dims() == [batch, 1, seq, seq] {
        return flex::attention(q, k, v, blocked.clone());
    }
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if blocked::runs_on_cube(&q) && blocked.dims() == [q.dims()[0], 1, q.dims()[2], q.dims()[2]] {
        let [batch, heads, seq, _] = q.dims();
        let rows = blocked_attention::rows_per_block(batch, heads, seq);
        return blocked::attention(q, k, v, blocked.clone(), rows).swap_dims(1, 2);
    }
    composed::grouped_query_attention(q, k, v, blocked).swap_dims(1, 2)
}

/// Which rows of a KV cache hold the same keys and values in their first `columns` columns (the
/// copies of one prompt, filled once by the prefill): row `b` may read those columns from row
/// `source[b]`; rows past the end of `source` read their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedPrefix {
    pub source: Vec<usize>,
    pub columns: usize,
}

/// Attention of new query rows against a KV cache (decoding; no gradient on flex):
/// `q` `[batch, heads, new, head_dim]`, `k`/`v` `[batch, kv_heads, capacity, head_dim]`,
/// `blocked` `[batch, 1, new, capacity]` (`true` = masked) -> `[batch, new, heads, head_dim]`.
///
/// Semantics of [`composed::cached_attention`]; on flex a fused kernel that reads only the
/// visible cache columns, and the `shared` prompt columns from one copy per prompt (the same
/// numbers, so the result is the same bit for bit).
pub fn cached_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: &Tensor<4, Bool>,
    shared: &SharedPrefix,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&q) && all_f32(&[&k, &v]) {
        return flex::cached_attention(q, k, v, blocked.clone(), shared);
    }
    let _ = shared;
    composed::cached_attention(q, k, v, blocked)
}

/// The SwiGLU MLP without biases, `down(silu(gate(x)) * up(x))`: `x` `[batch, seq, hidden]`,
/// `gate`/`up` `[hidden, inter]`, `down` `[inter, hidden]` (burn's `Linear` layout) ->
/// `[batch, seq, hidden]`. Fused on flex, where `x` and the two input projections are kept for
/// the backward.
pub fn swiglu_mlp(x: Tensor<3>, gate: Tensor<2>, up: Tensor<2>, down: Tensor<2>) -> Tensor<3> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) && all_f32(&[&gate, &up, &down]) {
        return flex::mlp(x, gate, up, down);
    }
    composed::swiglu_mlp(x, gate, up, down)
}

/// peft's LoRA `Linear` without bias, `x @ base + scaling * (dropout(x) @ a) @ b`: `x`
/// `[.., in]`, `base` `[in, out]` (frozen under LoRA), `a` `[in, r]`, `b` `[r, out]` (burn's
/// `Linear` layout) -> `[.., out]`; `dropout` is the rate when a mask is drawn for this forward.
///
/// On flex one fused op whose backward computes only the gradients the graph needs (never the
/// frozen base's) and whose mask, seeded from the device's random stream, is a hash of the
/// element's index, recomputed in the backward; elsewhere [`composed::lora_linear`].
pub fn lora_linear<const D: usize>(
    x: Tensor<D>,
    weights: [Tensor<2>; 3],
    scaling: f64,
    dropout: Option<f64>,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) && all_f32(&weights.each_ref()) {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let tokens = dims[..D - 1].iter().product();
        let d_out = weights[0].dims()[1];
        let dropout = dropout.map(|rate| lora_cpu::Dropout {
            keep: 1.0 - rate,
            seed: draw_seed(&x.device()),
        });
        let mut out_dims = dims;
        out_dims[D - 1] = d_out;
        let out = flex::lora_linear(x.reshape([tokens, d_in]), weights, scaling, dropout);
        return out.reshape(out_dims);
    }
    composed::lora_linear(x, weights, scaling, dropout)
}

/// `x @ weight` (`x` `[.., in]`, `weight` `[in, out]`, burn's `Linear` layout) -> `[.., out]`:
/// a projection without adapter. On flex it runs as the LoRA op with an empty (rank 0)
/// adapter, so its products go through the fused kernels' GEMM (bf16 on AMX tiles under
/// [`crate::precision::cpu_bf16_matmuls`]) and its backward computes only the gradients asked
/// for; elsewhere it is burn's matmul.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) && all_f32(&[&weight]) {
        let [d_in, d_out] = weight.dims();
        let device = x.device();
        let empty_a = Tensor::<2>::zeros([d_in, 0], &device);
        let empty_b = Tensor::<2>::zeros([0, d_out], &device);
        return lora_linear(x, [weight, empty_a, empty_b], 0.0, None);
    }
    x.matmul(weight.unsqueeze())
}

/// A 64-bit seed from the device's random stream (seeded per step by trl-cli, so a resumed
/// run draws the same masks).
#[cfg(feature = "flex")]
fn draw_seed(device: &burn::tensor::Device) -> u64 {
    let draws = Tensor::<1, Int>::random([2], burn::tensor::Distribution::Default, device);
    draws
        .into_data()
        .iter::<i64>()
        .fold(0u64, |seed, draw| seed.rotate_left(32) ^ draw as u64)
}

/// RMSNorm over the last axis, `x / sqrt(mean(x²) + eps) * weight` (`weight` `[width]`), as
/// burn's `RmsNorm` and transformers' `*RMSNorm` compute it in f32; fused on flex.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) && all_f32(&[&weight]) {
        return flex::rms_norm(x, weight, eps);
    }
    composed::rms_norm(x, weight, eps)
}

/// Rotary embedding of `x` `[batch, heads, seq, head_dim]` with the tables `cos`/`sin`
/// `[batch, 1, seq, head_dim]`: `x * cos + rotate_half(x) * sin`; fused on flex.
pub fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) && all_f32(&[cos, sin]) && cos.dims() == tables_shape(&x) {
        return flex::rope(x, cos.clone(), sin.clone());
    }
    composed::rope(x, cos, sin)
}

/// `[batch, 1, seq, head_dim]` of `x` `[batch, heads, seq, head_dim]`: the RoPE tables the
/// fused kernel takes (others broadcast through the composed ops).
#[cfg(feature = "flex")]
fn tables_shape(x: &Tensor<4>) -> [usize; 4] {
    let [batch, _, seq, head_dim] = x.dims();
    [batch, 1, seq, head_dim]
}

/// Statistics of the next-token distribution at every predicting position, `[batch, seq - 1]`
/// each, without autodiff: what the methods log besides the loss.
#[derive(Debug, Clone)]
pub struct TokenStats {
    /// `-Σ_v p_v log p_v`
    pub entropy: Tensor<2>,
    /// The most likely token.
    pub argmax: Tensor<2, Int>,
    /// `log Σ_v p_v²` (WPO's weighting).
    pub log_sum_sq_probs: Tensor<2>,
    /// Mean of the logits over the vocabulary (TRL's `logits/chosen` metrics).
    pub mean_logits: Tensor<2>,
}

/// Log-probs `[batch, seq - 1]` of `labels` `[batch, seq - 1]` (inside the vocabulary) under
/// `logits` `[batch, seq, vocab]` shifted by one (position `t` predicts `labels[:, t]`), and
/// the [`TokenStats`] of those positions. On flex fused passes over each position's logits
/// that keep only the logits and a log-sum-exp for the backward; elsewhere log-softmax and
/// gather.
pub fn label_log_probs(logits: Tensor<3>, labels: Tensor<2, Int>) -> (Tensor<2>, TokenStats) {
    #[cfg(feature = "flex")]
    let integer_labels = {
        use burn::tensor::DType;
        matches!(labels.dtype(), DType::I64 | DType::I32 | DType::U32)
    };
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&logits) && integer_labels {
        let [batch, seq, _] = logits.dims();
        let stats = flex::token_stats_of(logits.clone().inner());
        let column = |i: usize| stats.clone().narrow(2, i, 1).reshape([batch, seq - 1]);
        let stats_of = TokenStats {
            entropy: column(0),
            argmax: column(1).int(),
            log_sum_sq_probs: column(2),
            mean_logits: column(3),
        };
        return (flex::label_logprobs(logits, labels), stats_of);
    }
    composed::label_log_probs(logits, labels)
}

/// The output projection as [`head_label_log_probs`] takes it: a tied embedding table or the
/// `lm_head` weight (adapter folded in), in whichever layout the model stores it, so that no
/// transposed copy of a `[vocab, hidden]` matrix is made.
#[derive(Debug, Clone)]
pub struct LmHead {
    /// `[vocab, hidden]` when `vocab_major`, else `[hidden, vocab]` (burn's `Linear` layout).
    pub weight: Tensor<2>,
    /// Whether `weight` is `[vocab, hidden]` (an embedding table).
    pub vocab_major: bool,
}

/// Tokens per chunk of the composed [`head_label_log_probs`]: about 16M logits.
const COMPOSED_CHUNK_ELEMENTS: usize = 1 << 24;

/// [`label_log_probs`] of the logits `hidden @ W / temperature` (`hidden` `[batch, seq,
/// hidden]`, `labels` `[batch, seq - 1]`) without the `[batch, seq, vocab]` logits: one op
/// that computes and differentiates the head a chunk of tokens at a time, keeping only the
/// hidden states and one log-sum-exp per token for the backward (on flex a fused kernel, on
/// the CubeCL backends [`blocked::head_logprobs`]); elsewhere burn ops over token chunks
/// ([`composed::head_label_log_probs`]).
pub fn head_label_log_probs(
    hidden: Tensor<3>,
    head: &LmHead,
    labels: Tensor<2, Int>,
    temperature: f64,
) -> (Tensor<2>, TokenStats) {
    #[cfg(feature = "flex")]
    let integer_labels = {
        use burn::tensor::DType;
        matches!(labels.dtype(), DType::I64 | DType::I32 | DType::U32)
    };
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&hidden) && all_f32(&[&head.weight]) && integer_labels {
        let [batch, seq, width] = hidden.dims();
        let n = batch * (seq - 1);
        // [n, hidden] -> [n, 1 + STATS]
        let flat = hidden.narrow(1, 0, seq - 1).reshape([n, width]);
        let out = flex::head_logprobs(
            flat,
            head.weight.clone(),
            labels.reshape([n]),
            head.vocab_major,
            temperature,
        );
        return split_head_output(out, batch, seq - 1);
    }
    // (Sequences of one token have no predicting position: the composed path handles that.)
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if blocked::runs_on_cube(&hidden) && hidden.dims()[1] > 1 && hidden.dims()[0] > 0 {
        return cube_head_label_log_probs(hidden, head, labels, temperature);
    }
    let vocab = head.weight.dims()[if head.vocab_major { 0 } else { 1 }];
    let chunk = (COMPOSED_CHUNK_ELEMENTS / vocab.max(1)).max(16);
    composed::head_label_log_probs(hidden, head, labels, temperature, chunk)
}

/// [`head_label_log_probs`] on a CubeCL device: [`blocked::head_logprobs`] over the flattened
/// predicting positions.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn cube_head_label_log_probs(
    hidden: Tensor<3>,
    head: &LmHead,
    labels: Tensor<2, Int>,
    temperature: f64,
) -> (Tensor<2>, TokenStats) {
    let [batch, seq, width] = hidden.dims();
    let n = batch * (seq - 1);
    let vocab = head.weight.dims()[if head.vocab_major { 0 } else { 1 }];
    // [n, hidden] -> [n, chunked_head::COLUMNS]
    let flat = hidden.narrow(1, 0, seq - 1).reshape([n, width]);
    let out = blocked::head_logprobs(
        flat,
        head.weight.clone(),
        labels.reshape([n]),
        head.vocab_major,
        temperature,
        chunked_head::tokens_per_chunk(vocab),
    );
    split_head_output(out, batch, seq - 1)
}

/// A fused head's output `[batch * n, 5]` (label log-prob, entropy, argmax, `log Σ p²`, mean
/// logit) as the log-probs `[batch, n]` (with their gradient) and the detached statistics.
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
fn split_head_output(out: Tensor<2>, batch: usize, n: usize) -> (Tensor<2>, TokenStats) {
    let stats = out.clone().inner();
    let column = |i: usize| stats.clone().narrow(1, i + 1, 1).reshape([batch, n]);
    let stats_of = TokenStats {
        entropy: column(0),
        argmax: column(1).int(),
        log_sum_sq_probs: column(2),
        mean_logits: column(3),
    };
    (out.narrow(1, 0, 1).reshape([batch, n]), stats_of)
}
