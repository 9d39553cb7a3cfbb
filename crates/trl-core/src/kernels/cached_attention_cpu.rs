//! Attention of a few new query rows against a KV cache, on f32 slices: the decoding step.
//!
//! Composed burn ops would repeat the cached keys and values per query head (GQA), store a
//! score row per head, mask it, softmax it and multiply again, each a pass over memory for a
//! row of a few hundred keys. Here one task per sequence walks its heads and keys once,
//! skipping blocked keys (unwritten cache columns, padding) without reading them. Inference
//! only: there is no backward.
//!
//! Semantics equal [`super::composed::cached_attention`]:
//! `softmax(mask_fill(q kᵀ / sqrt(d), blocked, f32::MIN)) v`, every kv head serving
//! `heads / kv_heads` consecutive query heads.

use rayon::prelude::*;

/// Sizes of one call: q `[batch, heads, new, head_dim]`, k/v `[batch, kv_heads, capacity,
/// head_dim]`, blocked `[batch, new, capacity]` (1 = blocked), out `[batch, new, heads,
/// head_dim]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedAttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub new: usize,
    pub capacity: usize,
    pub head_dim: usize,
}

/// Fills `out` with the attention of every query row over its visible cached keys.
pub fn cached_attention_forward(
    shape: CachedAttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    blocked: &[u8],
    out: &mut [f32],
) {
    let CachedAttentionShape {
        heads,
        new,
        head_dim: d,
        ..
    } = shape;
    out.par_chunks_mut(new * heads * d)
        .enumerate()
        .for_each(|(b, out_row)| {
            let mut scores = vec![0.0f32; shape.capacity];
            for qi in 0..new {
                let mask = &blocked[(b * new + qi) * shape.capacity..][..shape.capacity];
                for h in 0..heads {
                    let query = &q[((b * heads + h) * new + qi) * d..][..d];
                    let out = &mut out_row[(qi * heads + h) * d..][..d];
                    attend_one(shape, b, h, query, k, v, mask, &mut scores, out);
                }
            }
        });
}

/// One query row of head `h` in sequence `b` against the cached keys its mask lets through.
#[allow(clippy::too_many_arguments)]
fn attend_one(
    shape: CachedAttentionShape,
    b: usize,
    h: usize,
    query: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[u8],
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = shape.head_dim;
    let kv_head = h / (shape.heads / shape.kv_heads);
    let base = (b * shape.kv_heads + kv_head) * shape.capacity * d;
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let mut max = f32::NEG_INFINITY;
    let mut visible = 0usize;
    for (j, score) in scores.iter_mut().enumerate() {
        if mask[j] != 0 {
            continue;
        }
        let key = &k[base + j * d..][..d];
        *score = dot(query, key) * scale;
        max = max.max(*score);
        visible += 1;
    }
    out.fill(0.0);
    if visible == 0 {
        // A fully masked row attends uniformly to every key, as the masked softmax does.
        for j in 0..shape.capacity {
            axpy(1.0 / shape.capacity as f32, &v[base + j * d..][..d], out);
        }
        return;
    }
    let mut sum = 0.0f32;
    for (j, score) in scores.iter_mut().enumerate() {
        if mask[j] == 0 {
            *score = (*score - max).exp();
            sum += *score;
        }
    }
    for (j, &score) in scores.iter().enumerate() {
        if mask[j] == 0 {
            axpy(score / sum, &v[base + j * d..][..d], out);
        }
    }
}

/// Dot product in 8 independent lanes, so the compiler can vectorise it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            lanes[i] += ca[i] * cb[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `out += alpha * x`.
fn axpy(alpha: f32, x: &[f32], out: &mut [f32]) {
    for (o, &xi) in out.iter_mut().zip(x) {
        *o += alpha * xi;
    }
}
