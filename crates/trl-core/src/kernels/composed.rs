//! The fused operations written with burn's own ops: what runs on backends without a
//! hand-written kernel, and the reference the kernels are tested against.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Tensor};

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
