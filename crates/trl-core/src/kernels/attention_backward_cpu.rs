//! Backward of the fused CPU attention of `attention_cpu`, tile by tile and key block by key
//! block as its forward, with the probabilities recomputed from the saved log-sum-exp of
//! every row (FlashAttention's backward).
//!
//! A query tile owns its rows of `dq`; the key and value gradients of one kv head collect the
//! contributions of all its tiles, so the tiles of a head are cut into a few chunks of equal
//! work (enough for every core at batch 1), each chunk adds into its own `[seq, head_dim]`
//! partial `dk` and `dv`, and the partials are summed at the end.

use std::ops::Range;

use rayon::prelude::*;

use super::attention_cpu::{
    AttentionShape, KEY_BLOCK, QueryTile, SharedOut, gather_head_major, product, query_tiles,
    token_major, visibilities,
};
use super::attention_rows::{RowVisibility, softmax_backward_block};

/// Saved forward values and the output gradient of one attention call, all f32 slices in the
/// layouts of [`super::attention_cpu::attention_forward`] (`out` and `grad_out`
/// `[batch, seq, heads, head_dim]`, `lse` `[batch, heads, seq]`).
pub struct AttentionGradInputs<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub blocked: &'a [u8],
    pub out: &'a [f32],
    pub lse: &'a [f32],
    pub grad_out: &'a [f32],
}

/// A run of consecutive query tiles of one (sequence, kv head), `head` indexing
/// `[batch * kv_heads]`.
struct Chunk {
    head: usize,
    tiles: Range<usize>,
}

/// Cuts each (sequence, kv head)'s tiles into runs of about equal work (rows times visible
/// keys), enough runs that every core has two at batch 1.
fn chunks(shape: &AttentionShape, tiles: &[QueryTile]) -> Vec<Chunk> {
    let heads = shape.batch * shape.kv_heads;
    let per_head = tiles.len() / heads;
    let wanted = (2 * rayon::current_num_threads())
        .div_ceil(heads)
        .clamp(1, per_head.max(1));
    let work = |t: &QueryTile| (t.positions * (t.c1 - t.c0 + 1)) as f64;
    let mut out = Vec::new();
    if per_head == 0 {
        return out;
    }
    for (head, own) in tiles.chunks(per_head).enumerate() {
        let total: f64 = own.iter().map(work).sum();
        let (base, mut start, mut done, mut made) = (head * per_head, 0, 0.0, 0);
        for (n, t) in own.iter().enumerate() {
            done += work(t);
            if n + 1 == own.len() || done >= total * (made + 1) as f64 / wanted as f64 {
                out.push(Chunk {
                    head,
                    tiles: base + start..base + n + 1,
                });
                (start, made) = (n + 1, made + 1);
            }
        }
    }
    out
}

/// Per-task scratch of the backward: stacked queries, output gradients and `dq` `[rows, d]`,
/// scores and their gradients `[rows, KEY_BLOCK]`, log-sum-exp and `<dO, O>` `[rows]`.
struct BackwardScratch {
    q: Vec<f32>,
    go: Vec<f32>,
    dq: Vec<f32>,
    scores: Vec<f32>,
    grads: Vec<f32>,
    lse: Vec<f32>,
    delta: Vec<f32>,
}

impl BackwardScratch {
    fn new(shape: &AttentionShape, rows: usize) -> Self {
        let d = shape.head_dim;
        BackwardScratch {
            q: vec![0.0; rows * d],
            go: vec![0.0; rows * d],
            dq: vec![0.0; rows * d],
            scores: vec![0.0; rows * KEY_BLOCK],
            grads: vec![0.0; rows * KEY_BLOCK],
            lse: vec![0.0; rows],
            delta: vec![0.0; rows],
        }
    }
}

/// Reads a tile's rows of the output gradient `[rows, d]`, their log-sum-exp and
/// `delta = <dO, O>` into the scratch.
fn gather_rows(
    shape: &AttentionShape,
    x: &AttentionGradInputs<'_>,
    t: &QueryTile,
    s: &mut BackwardScratch,
) {
    let (d, group) = (shape.head_dim, shape.group());
    for member in 0..group {
        let h = t.kv_head * group + member;
        for p in 0..t.positions {
            let (i, r) = (t.i0 + p, member * t.positions + p);
            let at = token_major(shape, t.b, i, h);
            let (go, o) = (&x.grad_out[at..][..d], &x.out[at..][..d]);
            s.go[r * d..][..d].copy_from_slice(go);
            s.delta[r] = go.iter().zip(o).map(|(a, b)| a * b).sum();
            s.lse[r] = x.lse[(t.b * shape.heads + h) * shape.seq + i];
        }
    }
}

/// Backward of one query tile: adds its key and value gradients into the chunk's partial
/// `dk`, `dv` `[seq, d]` and writes its rows of `dq` `[batch, heads, seq, d]`.
fn backward_tile(
    (shape, x, visibility): (&AttentionShape, &AttentionGradInputs<'_>, &[RowVisibility]),
    t: &QueryTile,
    s: &mut BackwardScratch,
    (dk, dv): (&mut [f32], &mut [f32]),
    dq: SharedOut,
) {
    let (seq, d, rows) = (shape.seq, shape.head_dim, shape.group() * t.positions);
    let head = (t.b * shape.kv_heads + t.kv_head) * shape.head_len();
    let (keys, values) = (
        &x.k[head..][..shape.head_len()],
        &x.v[head..][..shape.head_len()],
    );
    let sequence = (
        &visibility[t.b * seq..][..seq],
        &x.blocked[t.b * seq * seq..][..seq * seq],
    );
    gather_head_major(shape, t, x.q, &mut s.q);
    gather_rows(shape, x, t, s);
    s.dq[..rows * d].fill(0.0);
    for (c, width) in t.key_blocks() {
        let (q, go) = ((&s.q[..], (d, 1)), (&s.go[..], (d, 1)));
        // scores = q kᵀ / sqrt(d), grads = dO vᵀ   [rows, width]
        let k_t = (&keys[c * d..], (1, d));
        product(
            (rows, width, d),
            (&mut s.scores, KEY_BLOCK),
            false,
            (q, k_t),
            shape.scale(),
        );
        let v_t = (&values[c * d..], (1, d));
        product(
            (rows, width, d),
            (&mut s.grads, KEY_BLOCK),
            false,
            (go, v_t),
            1.0,
        );
        let block = t.block((c, width), rows, seq, sequence);
        let saved = (&s.lse[..], &s.delta[..]);
        softmax_backward_block(block, &mut s.scores, &mut s.grads, saved, shape.scale());
        // dv[c..] += pᵀ dO, dk[c..] += dsᵀ q   [width, d]
        let (p_t, ds_t) = (
            (&s.scores[..], (1, KEY_BLOCK)),
            (&s.grads[..], (1, KEY_BLOCK)),
        );
        product(
            (width, d, rows),
            (&mut dv[c * d..], d),
            true,
            (p_t, go),
            1.0,
        );
        product(
            (width, d, rows),
            (&mut dk[c * d..], d),
            true,
            (ds_t, q),
            1.0,
        );
        // dq += ds k[c..]   [rows, d]
        let (ds, k) = ((&s.grads[..], (KEY_BLOCK, 1)), (&keys[c * d..], (d, 1)));
        product((rows, d, width), (&mut s.dq, d), true, (ds, k), 1.0);
    }
    let block = t.positions * d;
    for member in 0..shape.group() {
        let h = t.kv_head * shape.group() + member;
        let at = ((t.b * shape.heads + h) * seq + t.i0) * d;
        // SAFETY: these dq rows belong to this tile alone and lie inside dq (length asserted).
        let rows_of_dq = unsafe { dq.slice(at, block) };
        rows_of_dq.copy_from_slice(&s.dq[member * block..][..block]);
    }
}

/// Adds the value gradient of rows that see no key: they attend uniformly, so every value
/// row of their kv head gets `grad_out / seq`. `dv` is one `[seq, d]` head.
fn add_uniform_value_grads(
    shape: &AttentionShape,
    head: usize,
    (grad_out, visibility): (&[f32], &[RowVisibility]),
    dv: &mut [f32],
) {
    let (b, kv_head, d, group) = (
        head / shape.kv_heads,
        head % shape.kv_heads,
        shape.head_dim,
        shape.group(),
    );
    let mut total = vec![0.0f32; d];
    for i in (0..shape.seq).filter(|&i| visibility[b * shape.seq + i].sees_nothing()) {
        for h in kv_head * group..(kv_head + 1) * group {
            let go = &grad_out[token_major(shape, b, i, h)..][..d];
            total
                .iter_mut()
                .zip(go)
                .for_each(|(t, g)| *t += g / shape.seq as f32);
        }
    }
    if total.iter().any(|&t| t != 0.0) {
        for row in dv.chunks_mut(d) {
            row.iter_mut().zip(&total).for_each(|(r, t)| *r += t);
        }
    }
}

/// Backward: writes `dq` `[batch, heads, seq, head_dim]`, `dk` and `dv`
/// `[batch, kv_heads, seq, head_dim]` (summed over the query heads each kv head serves).
pub fn attention_backward(
    shape: AttentionShape,
    x: AttentionGradInputs<'_>,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    shape.check(x.q, x.k, x.v, x.blocked);
    assert!(x.out.len() == dq.len() && x.grad_out.len() == dq.len() && x.q.len() == dq.len());
    assert!(dk.len() == x.k.len() && dv.len() == x.v.len());
    assert_eq!(x.lse.len(), shape.batch * shape.heads * shape.seq);
    if dq.is_empty() {
        return; // no query row (seq 0): nothing to differentiate
    }
    let visibility = visibilities(shape.seq, x.blocked);
    let tiles = query_tiles(&shape, &visibility);
    let chunks = chunks(&shape, &tiles);
    let head_len = shape.head_len();
    let rows = tiles.iter().map(|t| t.positions).max().unwrap_or(0) * shape.group();
    // [chunks, 2 (dk, dv), seq, d]
    let mut parts = vec![0.0f32; chunks.len() * 2 * head_len];
    let dq_out = SharedOut(dq.as_mut_ptr());
    let inputs = (&shape, &x, &visibility[..]);
    parts
        .par_chunks_mut(2 * head_len)
        .zip(chunks.par_iter())
        .for_each_init(
            || BackwardScratch::new(&shape, rows),
            |scratch, (part, chunk)| {
                let (dk_part, dv_part) = part.split_at_mut(head_len);
                for t in &tiles[chunk.tiles.clone()] {
                    backward_tile(inputs, t, scratch, (dk_part, dv_part), dq_out);
                }
            },
        );
    dk.par_chunks_mut(head_len)
        .zip(dv.par_chunks_mut(head_len))
        .enumerate()
        .for_each(|(head, (dk_head, dv_head))| {
            dk_head.fill(0.0);
            dv_head.fill(0.0);
            for (n, _) in chunks.iter().enumerate().filter(|(_, c)| c.head == head) {
                let (dk_part, dv_part) =
                    parts[n * 2 * head_len..][..2 * head_len].split_at(head_len);
                dk_head.iter_mut().zip(dk_part).for_each(|(a, b)| *a += b);
                dv_head.iter_mut().zip(dv_part).for_each(|(a, b)| *a += b);
            }
            add_uniform_value_grads(&shape, head, (x.grad_out, &visibility), dv_head);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_tile_once_and_split_causal_work() {
        let shape = AttentionShape {
            batch: 1,
            heads: 14,
            kv_heads: 2,
            seq: 1000,
            head_dim: 64,
        };
        let causal: Vec<u8> = (0..shape.seq)
            .flat_map(|i| (0..shape.seq).map(move |j| (j > i) as u8))
            .collect();
        let tiles = query_tiles(&shape, &visibilities(shape.seq, &causal));
        let chunks = chunks(&shape, &tiles);
        let covered: Vec<usize> = chunks.iter().flat_map(|c| c.tiles.clone()).collect();
        assert_eq!(covered, (0..tiles.len()).collect::<Vec<_>>());
        for c in &chunks {
            assert!(tiles[c.tiles.clone()].iter().all(|t| t.kv_head == c.head));
        }
        let per_head = chunks.iter().filter(|c| c.head == 0).count();
        assert!(
            per_head >= rayon::current_num_threads().min(2),
            "{per_head} chunks"
        );
        // causal: later tiles are heavier, so the last chunk holds fewer tiles than the first
        let first = &chunks[0].tiles;
        let last = &chunks[per_head - 1].tiles;
        if per_head > 1 {
            assert!(last.len() < first.len(), "{first:?} {last:?}");
        }
    }
}
