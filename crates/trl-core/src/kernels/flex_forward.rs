//! [`TrainingKernels`] on the flex backend: the glue between flex tensors and the slice kernels
//! of the `*_cpu` modules. The forward functions here also serve `flex_autodiff`, which saves
//! what they return for the backward.

use burn::backend::flex::FlexTensor;
use burn::backend::{Flex, TensorMetadata};

use super::SharedPrefix;
use super::attention_cpu::{AttentionShape, attention_forward};
use super::buffer::zeroed;
use super::cached_attention_cpu::{CachedAttentionShape, cached_attention_forward};
use super::flex::TrainingKernels;
use super::flex_head::{HeadOptions, head_logprobs_flex};
use super::flex_lora::{LoraOptions, lora_linear_flex};
use super::flex_tensor::{contiguous, f32s, labels_i64, new_f32};
use super::logprobs_cpu::{LogitsShape, STATS, label_logprobs_forward, token_stats};
use super::lora_cpu::Dropout;
use super::mlp_cpu::{MlpShape, MlpWeights, Projections, mlp_forward, mlp_forward_keeping};
use super::rms_norm_cpu::rms_norm_forward;
use super::rope_cpu;

/// The options of the LoRA op from its scalar arguments.
pub(super) fn lora_options(scaling: f64, keep: f64, seed: u64) -> LoraOptions {
    LoraOptions {
        scaling,
        dropout: (keep < 1.0).then_some(Dropout { keep, seed }),
    }
}

/// The dimensions of an attention call from q `[batch, heads, seq, head_dim]` and k
/// `[batch, kv_heads, seq, head_dim]`.
pub(super) fn attention_shape(q: &FlexTensor, k: &FlexTensor) -> AttentionShape {
    let [batch, heads, seq, head_dim] = q.shape().dims::<4>();
    let kv_heads = k.shape().dims::<4>()[1];
    AttentionShape {
        batch,
        heads,
        kv_heads,
        seq,
        head_dim,
    }
}

/// Forward on flex: the output and the log-sum-exp of every row `[batch, heads, seq]`.
pub(super) fn attention_flex(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    blocked: &FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let shape = attention_shape(q, k);
    let (q, k, v, blocked) = (
        contiguous(q),
        contiguous(k),
        contiguous(v),
        contiguous(blocked),
    );
    let dims = [shape.batch, shape.seq, shape.heads, shape.head_dim];
    let mut out = zeroed::<f32>(q.shape().num_elements());
    let mut lse = zeroed::<f32>(shape.batch * shape.heads * shape.seq);
    attention_forward(
        shape,
        f32s(&q),
        f32s(&k),
        f32s(&v),
        blocked.storage::<u8>(),
        &mut out,
        &mut lse,
    );
    (
        new_f32(out, &dims),
        new_f32(lse, &[shape.batch, shape.heads, shape.seq]),
    )
}

/// The decoding attention on flex (inference only).
pub(super) fn cached_attention_flex(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    blocked: &FlexTensor,
    shared: &SharedPrefix,
) -> FlexTensor {
    let [batch, heads, new, head_dim] = q.shape().dims::<4>();
    let [_, kv_heads, capacity, _] = k.shape().dims::<4>();
    let shape = CachedAttentionShape {
        batch,
        heads,
        kv_heads,
        new,
        capacity,
        head_dim,
    };
    let (q, k, v, blocked) = (
        contiguous(q),
        contiguous(k),
        contiguous(v),
        contiguous(blocked),
    );
    let mut out = zeroed::<f32>(q.shape().num_elements());
    cached_attention_forward(
        shape,
        f32s(&q),
        f32s(&k),
        f32s(&v),
        blocked.storage::<u8>(),
        shared,
        &mut out,
    );
    new_f32(out, &[batch, new, heads, head_dim])
}

/// The dimensions of an MLP call from x `[batch, seq, hidden]` and gate `[hidden, inter]`.
pub(super) fn mlp_shape(x: &FlexTensor, gate: &FlexTensor) -> MlpShape {
    let [batch, seq, hidden] = x.shape().dims::<3>();
    MlpShape {
        tokens: batch * seq,
        hidden,
        inter: gate.shape().dims::<2>()[1],
    }
}

/// The MLP's weights as slices (all contiguous).
pub(super) fn mlp_weights<'a>(
    gate: &'a FlexTensor,
    up: &'a FlexTensor,
    down: &'a FlexTensor,
) -> MlpWeights<'a> {
    MlpWeights {
        gate: f32s(gate),
        up: f32s(up),
        down: f32s(down),
    }
}

/// The fused MLP forward on flex: `[batch, seq, hidden]` like `x`.
pub(super) fn mlp_flex(
    x: &FlexTensor,
    gate: &FlexTensor,
    up: &FlexTensor,
    down: &FlexTensor,
) -> FlexTensor {
    mlp_flex_with([x, gate, up, down], mlp_forward).0
}

/// [`mlp_flex`] for a recorded graph: also the input projections its backward starts from.
pub(super) fn mlp_flex_keeping(
    x: &FlexTensor,
    gate: &FlexTensor,
    up: &FlexTensor,
    down: &FlexTensor,
) -> (FlexTensor, Projections) {
    mlp_flex_with([x, gate, up, down], mlp_forward_keeping)
}

/// The MLP on contiguous copies of `[x, gate, up, down]` through `forward`.
fn mlp_flex_with<T>(
    [x, gate, up, down]: [&FlexTensor; 4],
    forward: impl FnOnce(&[f32], &MlpWeights<'_>, MlpShape) -> (Vec<f32>, T),
) -> (FlexTensor, T) {
    let (x, gate, up, down) = (
        contiguous(x),
        contiguous(gate),
        contiguous(up),
        contiguous(down),
    );
    let shape = mlp_shape(&x, &gate);
    let (out, kept) = forward(f32s(&x), &mlp_weights(&gate, &up, &down), shape);
    (new_f32(out, &x.shape().to_vec()), kept)
}

/// The dimensions of logits `[batch, seq, vocab]`.
pub(super) fn logits_shape(logits: &FlexTensor) -> LogitsShape {
    let [batch, seq, vocab] = logits.shape().dims::<3>();
    LogitsShape { batch, seq, vocab }
}

/// Forward on flex: the log-probs and the log-sum-exp of every predicting position.
pub(super) fn label_logprobs_flex(logits: &FlexTensor, labels: &[i64]) -> (FlexTensor, FlexTensor) {
    let logits = contiguous(logits);
    let shape = logits_shape(&logits);
    let n = shape.positions();
    let (mut logps, mut lse) = (zeroed::<f32>(n), zeroed::<f32>(n));
    label_logprobs_forward(f32s(&logits), labels, shape, &mut logps, &mut lse);
    let dims = [shape.batch, shape.seq - 1];
    (new_f32(logps, &dims), new_f32(lse, &dims))
}

/// The per-position statistics of logits `[batch, seq, vocab]` -> `[batch, seq - 1, STATS]`.
pub(super) fn token_stats_flex(logits: &FlexTensor) -> FlexTensor {
    let logits = contiguous(logits);
    let shape = logits_shape(&logits);
    let mut out = zeroed::<f32>(shape.positions() * STATS);
    token_stats(f32s(&logits), shape, &mut out);
    new_f32(out, &[shape.batch, shape.seq - 1, STATS])
}

/// Forward on flex: the output and the reciprocal RMS of every row.
pub(super) fn rms_norm_flex(
    x: &FlexTensor,
    weight: &FlexTensor,
    eps: f64,
) -> (FlexTensor, FlexTensor) {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let dims = x.shape().to_vec();
    let rows = x.shape().num_elements() / dims[dims.len() - 1];
    let mut out = zeroed::<f32>(x.shape().num_elements());
    let mut inv_rms = zeroed::<f32>(rows);
    rms_norm_forward(f32s(&x), f32s(&weight), eps as f32, &mut out, &mut inv_rms);
    (new_f32(out, &dims), new_f32(inv_rms, &[rows]))
}

/// Rotation on flex (`transpose` for the backward).
pub(super) fn rope_flex(
    x: &FlexTensor,
    cos: &FlexTensor,
    sin: &FlexTensor,
    transpose: bool,
) -> FlexTensor {
    let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(sin));
    let dims = x.shape().dims::<4>();
    let mut out = zeroed::<f32>(x.shape().num_elements());
    rope_cpu::rope(
        f32s(&x),
        f32s(&cos),
        f32s(&sin),
        (dims[0], dims[1], dims[2], dims[3]),
        transpose,
        &mut out,
    );
    new_f32(out, &dims)
}

impl TrainingKernels for Flex {
    fn fused_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        blocked: FlexTensor,
    ) -> FlexTensor {
        attention_flex(&q, &k, &v, &blocked).0
    }

    fn fused_cached_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        blocked: FlexTensor,
        shared_source: Vec<usize>,
        shared_columns: usize,
    ) -> FlexTensor {
        let shared = SharedPrefix {
            source: shared_source,
            columns: shared_columns,
        };
        cached_attention_flex(&q, &k, &v, &blocked, &shared)
    }

    fn fused_mlp(x: FlexTensor, gate: FlexTensor, up: FlexTensor, down: FlexTensor) -> FlexTensor {
        mlp_flex(&x, &gate, &up, &down)
    }

    fn fused_label_logprobs(logits: FlexTensor, labels: FlexTensor) -> FlexTensor {
        label_logprobs_flex(&logits, &labels_i64(&labels)).0
    }

    fn fused_head_logprobs(
        hidden: FlexTensor,
        weight: FlexTensor,
        labels: FlexTensor,
        vocab_major: bool,
        temperature: f64,
    ) -> FlexTensor {
        let options = HeadOptions {
            vocab_major,
            temperature,
        };
        head_logprobs_flex(hidden, weight, labels, options)
    }

    fn fused_token_stats(logits: FlexTensor) -> FlexTensor {
        token_stats_flex(&logits)
    }

    fn fused_lora_linear(
        x: FlexTensor,
        base: FlexTensor,
        a: FlexTensor,
        b: FlexTensor,
        scaling: f64,
        keep: f64,
        seed: u64,
    ) -> FlexTensor {
        lora_linear_flex([x, base, a, b], lora_options(scaling, keep, seed))
    }

    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        rms_norm_flex(&x, &weight, eps).0
    }

    fn fused_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        rope_flex(&x, &cos, &sin, false)
    }
}
