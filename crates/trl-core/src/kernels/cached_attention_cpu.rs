//! Attention of a few new query rows against a KV cache, on f32 slices: the decoding step.
//!
//! Composed burn ops would repeat the cached keys and values per query head (GQA), store a
//! score row per head, mask it, softmax it and multiply again, each a pass over memory for a
//! row of a few hundred keys. Here one task per sequence walks its heads and keys once,
//! skipping blocked keys (unwritten cache columns, padding) without reading them; the query
//! heads of one kv head share each key and value read. Inference
//! only: there is no backward.
//!
//! Semantics equal [`super::composed::cached_attention`]:
//! `softmax(mask_fill(q kᵀ / sqrt(d), blocked, f32::MIN)) v`, every kv head serving
//! `heads / kv_heads` consecutive query heads.

use rayon::prelude::*;

use super::SharedPrefix;
use super::fast_math::simd_targets;

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

/// Fills `out` with the attention of every query row over its visible cached keys. One task
/// per sequence; the query heads that share a kv head are walked together, so each visible
/// key and value row is read once per group instead of once per head. Columns before
/// `shared.columns` are read from row `shared.source[b]` (a copy of the same prompt holding the
/// same numbers), so the copies of one prompt, next to each other in the batch and walked one
/// after the other by a task, read their prompt's keys and values from one place, warm in
/// cache, instead of each from its own copy in memory.
pub fn cached_attention_forward(
    shape: CachedAttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    blocked: &[u8],
    shared: &SharedPrefix,
    out: &mut [f32],
) {
    let CachedAttentionShape {
        heads,
        kv_heads,
        new,
        capacity,
        head_dim: d,
        ..
    } = shape;
    let group = heads / kv_heads;
    out.par_chunks_mut(new * heads * d)
        .enumerate()
        .for_each(|(b, out_row)| {
            let mut scratch = Scratch {
                visible: Vec::with_capacity(capacity),
                scores: vec![0.0f32; group * capacity],
                max: vec![0.0f32; group],
                sum: vec![0.0f32; group],
            };
            for qi in 0..new {
                let mask = &blocked[(b * new + qi) * capacity..][..capacity];
                scratch.visible.clear();
                scratch
                    .visible
                    .extend((0..capacity).filter(|&j| mask[j] == 0));
                let source = shared.source.get(b).copied().unwrap_or(b);
                for g in 0..kv_heads {
                    let query = |h: usize| &q[((b * heads + h) * new + qi) * d..][..d];
                    let queries: Vec<&[f32]> = (g * group..(g + 1) * group).map(query).collect();
                    let base = (b * kv_heads + g) * capacity * d;
                    let source_base = (source * kv_heads + g) * capacity * d;
                    let cache = HeadCache {
                        k: &k[base..],
                        v: &v[base..],
                        source_k: &k[source_base..],
                        source_v: &v[source_base..],
                        shared: shared.columns,
                    };
                    let outs = &mut out_row[(qi * heads + g * group) * d..][..group * d];
                    attend_group(shape, &queries, &cache, &mut scratch, outs);
                }
            }
        });
}

/// One row's keys and values for one kv head (`[capacity, head_dim]` from the slices' starts),
/// and those of the row its first `shared` columns are read from.
struct HeadCache<'a> {
    k: &'a [f32],
    v: &'a [f32],
    source_k: &'a [f32],
    source_v: &'a [f32],
    shared: usize,
}

impl<'a> HeadCache<'a> {
    #[inline(always)]
    fn key(&self, j: usize, d: usize) -> &'a [f32] {
        self.column(j, d, self.k, self.source_k)
    }

    #[inline(always)]
    fn value(&self, j: usize, d: usize) -> &'a [f32] {
        self.column(j, d, self.v, self.source_v)
    }

    /// Column `j` (`d` values) of this row's cache `own`, or of the source row's `source` for
    /// a shared prompt column.
    #[inline(always)]
    fn column(&self, j: usize, d: usize, own: &'a [f32], source: &'a [f32]) -> &'a [f32] {
        let cache = if j < self.shared { source } else { own };
        &cache[j * d..][..d]
    }
}

/// Per-task buffers: the visible key columns of the current query row, `[group, visible]`
/// scores, and each head's maximum and normaliser.
struct Scratch {
    visible: Vec<usize>,
    scores: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

simd_targets! {
/// The query rows of one kv head's group (`queries[i]`, `head_dim` values each) against that
/// head's keys/values in `cache`, written to
/// `outs` (`[group, head_dim]`). Each head's arithmetic is done in the same order as one
/// head at a time would: the scores in key order, the maximum, `exp(s - max)` summed in key
/// order, then `Σ_j (e_j / sum) v_j` accumulated in key order.
fn attend_group(
    shape: CachedAttentionShape,
    queries: &[&[f32]],
    cache: &HeadCache,
    scratch: &mut Scratch,
    outs: &mut [f32],
) {
    let d = shape.head_dim;
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let Scratch { visible, scores, max, sum } = scratch;
    outs.fill(0.0);
    if visible.is_empty() {
        // A fully masked row attends uniformly to every key, as the masked softmax does.
        for out in outs.chunks_exact_mut(d) {
            for j in 0..shape.capacity {
                axpy(1.0 / shape.capacity as f32, cache.value(j, d), out);
            }
        }
        return;
    }
    let n = visible.len();
    max.fill(f32::NEG_INFINITY);
    for (i, &j) in visible.iter().enumerate() {
        let key = cache.key(j, d);
        for (h, query) in queries.iter().enumerate() {
            let score = dot(query, key) * scale;
            scores[h * n + i] = score;
            max[h] = max[h].max(score);
        }
    }
    for h in 0..queries.len() {
        let mut total = 0.0f32;
        for score in &mut scores[h * n..][..n] {
            *score = (*score - max[h]).exp();
            total += *score;
        }
        sum[h] = total;
    }
    for (h, out) in outs.chunks_exact_mut(d).enumerate() {
        weighted_values(&scores[h * n..][..n], sum[h], visible, cache, d, out);
    }
}
}

/// `out += Σ_i (e_i / sum) v[visible[i]]`, accumulated in `visible` order for every output
/// element (what one `axpy` per key computes), 16 output elements at a time held in registers
/// across the keys instead of stored and reloaded after each key.
#[inline(always)]
fn weighted_values(
    exps: &[f32],
    sum: f32,
    visible: &[usize],
    cache: &HeadCache,
    d: usize,
    out: &mut [f32],
) {
    const LANES: usize = 16;
    let full = d / LANES * LANES;
    for start in (0..full).step_by(LANES) {
        let mut acc: [f32; LANES] = out[start..start + LANES].try_into().expect("16 lanes");
        for (&e, &j) in exps.iter().zip(visible) {
            let alpha = e / sum;
            let value = &cache.value(j, d)[start..][..LANES];
            for l in 0..LANES {
                acc[l] += alpha * value[l];
            }
        }
        out[start..start + LANES].copy_from_slice(&acc);
    }
    if full < d {
        for (&e, &j) in exps.iter().zip(visible) {
            axpy(e / sum, &cache.value(j, d)[full..], &mut out[full..]);
        }
    }
}

/// Dot product in 8 independent lanes, so the compiler can vectorise it.
#[inline(always)]
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
#[inline(always)]
fn axpy(alpha: f32, x: &[f32], out: &mut [f32]) {
    for (o, &xi) in out.iter_mut().zip(x) {
        *o += alpha * xi;
    }
}
