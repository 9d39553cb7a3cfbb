//! The fused operations written with burn's own ops: what runs on backends without a
//! hand-written kernel, and the reference the kernels are tested against.

use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::{Bool, DType, Distribution, Int, Tensor};

use super::{LmHead, TokenStats};
use crate::precision;

/// Masked softmax attention with grouped key/value heads, after RoPE:
/// `q` `[batch, heads, seq, head_dim]`, `k`/`v` `[batch, kv_heads, seq, head_dim]`, `blocked`
/// `[batch, 1, seq, seq]` (`true` = masked) -> `[batch, heads, seq, head_dim]`.
///
/// Each kv head serves `heads / kv_heads` consecutive query heads; k and v are repeated per
/// query head.
pub fn grouped_query_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: &Tensor<4, Bool>,
) -> Tensor<4> {
    let [batch, heads, seq, d] = q.dims();
    let kv_heads = k.dims()[1];
    let group = heads / kv_heads;
    // [batch, kv_heads, seq, head_dim] -> [batch, heads, seq, head_dim]
    let repeat = |t: Tensor<4>| {
        if group == 1 {
            return t;
        }
        t.reshape([batch, kv_heads, 1, seq, d])
            .expand([batch, kv_heads, group, seq, d])
            .reshape([batch, heads, seq, d])
    };
    let (k, v) = (repeat(k), repeat(v));
    // [batch, heads, seq, seq]
    let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (d as f64).sqrt());
    let scores = scores.mask_fill(blocked.clone().expand([batch, heads, seq, seq]), f32::MIN);
    softmax(scores, 3).matmul(v)
}

/// `silu(gate) * up`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    silu(gate) * up
}

/// `(silu(x @ gate) * (x @ up)) @ down` for weights in burn's `Linear` layout.
/// The matmuls run in the mixed-precision format when one is on ([`crate::precision`]).
pub fn swiglu_mlp(x: Tensor<3>, gate: Tensor<2>, up: Tensor<2>, down: Tensor<2>) -> Tensor<3> {
    let gate = precision::matmul(x.clone(), gate);
    let up = precision::matmul(x, up);
    precision::matmul(swiglu(gate, up), down)
}

/// peft's LoRA `Linear` without bias, `x @ base + scaling * (dropout(x) @ a) @ b`, for
/// weights in burn's `Linear` layout (`base` `[in, out]`, `a` `[in, r]`, `b` `[r, out]`); the
/// dropout (rate `dropout`, when given) draws a Bernoulli mask from the device's random stream.
/// The matmuls run in the mixed-precision format when one is on ([`crate::precision`]).
pub fn lora_linear<const D: usize>(
    x: Tensor<D>,
    [base, a, b]: [Tensor<2>; 3],
    scaling: f64,
    dropout: Option<f64>,
) -> Tensor<D> {
    let out = precision::matmul(x.clone(), base);
    let x = match dropout {
        Some(rate) => {
            let keep = 1.0 - rate;
            let mask = x.random_like(Distribution::Bernoulli(keep));
            x * mask / keep
        }
        None => x,
    };
    out + precision::matmul(precision::matmul(x, a), b) * scaling
}

/// `x / sqrt(mean(x²) + eps) * weight` over the last axis (burn's `RmsNorm::forward`).
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let rms = (x.clone().cast(DType::F32).square().mean_dim(D - 1) + eps).sqrt();
    (x / rms.cast(dtype)) * weight.unsqueeze()
}

/// `x * cos + rotate_half(x) * sin`, `rotate_half([a, b]) = [-b, a]` over the last axis.
pub fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, head_dim] = x.dims();
    let half = head_dim / 2;
    let first = x.clone().narrow(3, 0, half);
    let second = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// Log-softmax over the vocabulary, the labels' entries gathered; the statistics from the
/// detached log-softmax. `logits` `[batch, seq, vocab]` shifted by one against `labels`
/// `[batch, seq - 1]`.
pub fn label_log_probs(logits: Tensor<3>, labels: Tensor<2, Int>) -> (Tensor<2>, TokenStats) {
    let seq = logits.dims()[1];
    position_log_probs(logits.narrow(1, 0, seq - 1), labels)
}

/// [`label_log_probs`] without the shift: `logits` `[batch, n, vocab]`, `labels` `[batch, n]`.
fn position_log_probs(logits: Tensor<3>, labels: Tensor<2, Int>) -> (Tensor<2>, TokenStats) {
    let [batch, n, _] = logits.dims();
    let mean_logits = logits
        .clone()
        .without_autodiff()
        .mean_dim(2)
        .reshape([batch, n]);
    let log_probs = log_softmax(logits, 2);
    let logps = log_probs
        .clone()
        .gather(2, labels.reshape([batch, n, 1]))
        .reshape([batch, n]);
    let log_probs = log_probs.without_autodiff();
    let entropy = (log_probs.clone().exp() * log_probs.clone())
        .sum_dim(2)
        .reshape([batch, n])
        .neg();
    // log Σ p² = log-sum-exp of 2 log p, stabilised by the row maximum
    let doubled = log_probs.clone() * 2.0;
    let max = doubled.clone().max_dim(2);
    let log_sum_sq_probs =
        ((doubled - max.clone()).exp().sum_dim(2).log() + max).reshape([batch, n]);
    let argmax = log_probs.argmax(2).reshape([batch, n]);
    let stats = TokenStats {
        entropy,
        argmax,
        log_sum_sq_probs,
        mean_logits,
    };
    (logps, stats)
}

/// The LM head and [`label_log_probs`] a chunk of `chunk` tokens at a time: `hidden`
/// `[batch, seq, hidden]`, labels `[batch, seq - 1]` -> what [`label_log_probs`] returns for
/// the logits `hidden @ W / temperature`, without the concatenated `[tokens, vocab]` logits.
///
/// Without autodiff (reference and rollout log-probs) at most one chunk of logits is alive;
/// under autodiff each chunk's log-softmax stays in the graph until the backward (burn has no
/// per-op recomputation off flex), so a training step still holds them all.
pub fn head_label_log_probs(
    hidden: Tensor<3>,
    head: &LmHead,
    labels: Tensor<2, Int>,
    temperature: f64,
    chunk: usize,
) -> (Tensor<2>, TokenStats) {
    let [batch, seq, width] = hidden.dims();
    let n = batch * (seq - 1);
    // [1, n, hidden], [1, n]
    let hidden = hidden.narrow(1, 0, seq - 1).reshape([1, n, width]);
    let labels = labels.reshape([1, n]);
    // [1, hidden, vocab]
    let weight = match head.vocab_major {
        true => head.weight.clone().transpose(),
        false => head.weight.clone(),
    }
    .unsqueeze::<3>();
    let chunk = chunk.max(1);
    let parts: Vec<(Tensor<2>, TokenStats)> = (0..n.max(1))
        .step_by(chunk)
        .map(|start| {
            let rows = chunk.min(n - start);
            let mut logits = hidden.clone().narrow(1, start, rows).matmul(weight.clone());
            if temperature != 1.0 {
                logits = logits.div_scalar(temperature as f32);
            }
            position_log_probs(logits, labels.clone().narrow(1, start, rows))
        })
        .collect();
    let cat = |f: &dyn Fn(&(Tensor<2>, TokenStats)) -> Tensor<2>| {
        Tensor::cat(parts.iter().map(f).collect(), 1).reshape([batch, seq - 1])
    };
    let logps = cat(&|p| p.0.clone());
    let stats = TokenStats {
        entropy: cat(&|p| p.1.entropy.clone()),
        argmax: Tensor::cat(parts.iter().map(|p| p.1.argmax.clone()).collect(), 1)
            .reshape([batch, seq - 1]),
        log_sum_sq_probs: cat(&|p| p.1.log_sum_sq_probs.clone()),
        mean_logits: cat(&|p| p.1.mean_logits.clone()),
    };
    (logps, stats)
}

/// Attention of new query rows against a KV cache: `q` `[batch, heads, new, head_dim]`,
/// `k`/`v` `[batch, kv_heads, capacity, head_dim]`, `blocked` `[batch, 1, new, capacity]`
/// (`true` = masked) -> `[batch, new, heads, head_dim]`.
pub fn cached_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: &Tensor<4, Bool>,
) -> Tensor<4> {
    let [batch, heads, new, d] = q.dims();
    let [_, kv_heads, capacity, _] = k.dims();
    let group = heads / kv_heads;
    // [batch, kv_heads, capacity, head_dim] -> [batch, heads, capacity, head_dim]
    let repeat = |t: Tensor<4>| {
        t.reshape([batch, kv_heads, 1, capacity, d])
            .expand([batch, kv_heads, group, capacity, d])
            .reshape([batch, heads, capacity, d])
    };
    let (k, v) = (repeat(k), repeat(v));
    // [batch, heads, new, capacity]
    let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (d as f64).sqrt());
    let blocked = blocked.clone().expand([batch, heads, new, capacity]);
    let scores = scores.mask_fill(blocked, f32::MIN);
    softmax(scores, 3).matmul(v).swap_dims(1, 2)
}
