//! Attention a block of query rows at a time, forward and backward, in burn's own ops: the
//! memory-bounded attention of backends without a hand-written kernel (wgpu, cuda). Only one
//! block's scores `[batch, heads, rows, seq]` are alive at a time, and the backward
//! recomputes them from q, k, v and two numbers per row (the row maximum and the sum of
//! exponentials), so no `[batch, heads, seq, seq]` tensor is built or kept: what
//! FlashAttention does per tile, at the granularity of burn ops.
//!
//! Pure functions of plain tensors (no autodiff inside): `blocked.rs` records them as one
//! graph node. Semantics of [`super::composed::grouped_query_attention`]: scores scaled by
//! `1/sqrt(head_dim)`, masked entries set to `f32::MIN` (a fully masked row averages v, as
//! transformers' eager attention does), kv head `j / group` serving query head `j`.

use burn::tensor::{Bool, Tensor};

/// Elements of one block's score tensor: 16M (64 MiB in f32), whatever the sequence.
pub const BLOCK_SCORE_ELEMENTS: usize = 1 << 24;

/// Query rows per block for `batch` x `heads` rows of `seq` keys: as many as fit in
/// [`BLOCK_SCORE_ELEMENTS`], at least one, at most `seq`.
pub fn rows_per_block(batch: usize, heads: usize, seq: usize) -> usize {
    (BLOCK_SCORE_ELEMENTS / (batch * heads * seq).max(1)).clamp(1, seq.max(1))
}

/// What the backward recomputes the attention from.
#[derive(Clone, Debug)]
pub struct AttentionSaved {
    /// `[batch, heads, seq, head_dim]`
    pub q: Tensor<4>,
    /// `[batch, kv_heads, seq, head_dim]`
    pub k: Tensor<4>,
    /// `[batch, kv_heads, seq, head_dim]`
    pub v: Tensor<4>,
    /// `[batch, 1, seq, seq]`, `true` = masked
    pub blocked: Tensor<4, Bool>,
    /// The output, `[batch, heads, seq, head_dim]` (heads before positions).
    pub out: Tensor<4>,
    /// Each row's maximum score, `[batch, heads, seq, 1]`.
    pub max: Tensor<4>,
    /// Each row's `Σ exp(score - max)`, `[batch, heads, seq, 1]`.
    pub sum: Tensor<4>,
    /// Query rows per block.
    pub rows: usize,
}

/// The shape names of one attention call.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq: usize,
    head_dim: usize,
}

impl Geometry {
    fn of(q: &Tensor<4>, k: &Tensor<4>) -> Self {
        let [batch, heads, seq, head_dim] = q.dims();
        Self {
            batch,
            heads,
            kv_heads: k.dims()[1],
            seq,
            head_dim,
        }
    }

    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// `[batch, heads, rows, x]` -> `[batch, kv_heads, group * rows, x]`: each kv head's query
    /// heads side by side, so that one matmul against that kv head serves them all.
    fn grouped(&self, t: Tensor<4>) -> Tensor<4> {
        let [_, _, rows, width] = t.dims();
        t.reshape([self.batch, self.kv_heads, self.group() * rows, width])
    }

    /// The inverse of [`Self::grouped`] for `rows` query rows.
    fn ungrouped(&self, t: Tensor<4>, rows: usize) -> Tensor<4> {
        let width = t.dims()[3];
        t.reshape([self.batch, self.heads, rows, width])
    }

    /// Masked, scaled scores of query rows `start..start + rows` against every key:
    /// `[batch, heads, rows, seq]`.
    fn scores(
        &self,
        q: &Tensor<4>,
        k: &Tensor<4>,
        blocked: &Tensor<4, Bool>,
        start: usize,
        rows: usize,
    ) -> Tensor<4> {
        let q = self.grouped(q.clone().narrow(2, start, rows));
        // [batch, kv_heads, group * rows, seq]
        let scores = q.matmul(k.clone().swap_dims(2, 3)) * self.scale();
        let mask = blocked.clone().narrow(2, start, rows);
        let shape = [self.batch, self.heads, rows, self.seq];
        self.ungrouped(scores, rows)
            .mask_fill(mask.expand(shape), f32::MIN)
    }
}

/// The block starts and lengths covering `seq` rows.
fn blocks(seq: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..seq)
        .step_by(rows.max(1))
        .map(move |start| (start, rows.min(seq - start)))
}

/// Forward: `q` `[batch, heads, seq, head_dim]`, `k`/`v` `[batch, kv_heads, seq, head_dim]`,
/// `blocked` `[batch, 1, seq, seq]`, `rows` query rows per block -> the output and what the
/// backward needs.
pub fn forward(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Tensor<4, Bool>,
    rows: usize,
) -> AttentionSaved {
    let geometry = Geometry::of(&q, &k);
    let (mut outs, mut maxes, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    for (start, n) in blocks(geometry.seq, rows) {
        let scores = geometry.scores(&q, &k, &blocked, start, n);
        // [batch, heads, n, 1] each
        let max = scores.clone().max_dim(3);
        let exp = (scores - max.clone()).exp();
        let sum = exp.clone().sum_dim(3);
        let probs = geometry.grouped(exp / sum.clone());
        outs.push(geometry.ungrouped(probs.matmul(v.clone()), n));
        maxes.push(max);
        sums.push(sum);
    }
    AttentionSaved {
        out: Tensor::cat(outs, 2),
        max: Tensor::cat(maxes, 2),
        sum: Tensor::cat(sums, 2),
        q,
        k,
        v,
        blocked,
        rows,
    }
}

/// Backward: the gradients of q, k and v for `grad` `[batch, heads, seq, head_dim]`, the
/// gradient of [`AttentionSaved::out`].
///
/// Per block, with `P` the recomputed probabilities and `D = rowsum(grad * out)`:
/// `dV += Pᵀ dO`, `dS = P * (dO Vᵀ - D)`, `dQ = scale dS K`, `dK += scale dSᵀ Q`; the
/// sums over each kv head's query heads fall out of the grouped layout's matmuls.
pub fn backward(saved: &AttentionSaved, grad: Tensor<4>) -> [Tensor<4>; 3] {
    let geometry = Geometry::of(&saved.q, &saved.k);
    // [batch, heads, seq, 1]
    let row_dot = (grad.clone() * saved.out.clone()).sum_dim(3);
    let mut dk = saved.k.zeros_like();
    let mut dv = saved.v.zeros_like();
    let mut dqs = Vec::new();
    for (start, n) in blocks(geometry.seq, saved.rows) {
        let block = |t: &Tensor<4>| geometry.grouped(t.clone().narrow(2, start, n));
        let scores = geometry.scores(&saved.q, &saved.k, &saved.blocked, start, n);
        let max = saved.max.clone().narrow(2, start, n);
        let sum = saved.sum.clone().narrow(2, start, n);
        // [batch, kv_heads, group * n, seq]
        let probs = geometry.grouped((scores - max).exp() / sum);
        let d_out = block(&grad);
        dv = dv + probs.clone().swap_dims(2, 3).matmul(d_out.clone());
        let d_probs = d_out.matmul(saved.v.clone().swap_dims(2, 3));
        let d_scores = probs * (d_probs - block(&row_dot)) * geometry.scale();
        dqs.push(geometry.ungrouped(d_scores.clone().matmul(saved.k.clone()), n));
        dk = dk + d_scores.swap_dims(2, 3).matmul(block(&saved.q));
    }
    [Tensor::cat(dqs, 2), dk, dv]
}
