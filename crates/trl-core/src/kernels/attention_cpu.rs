//! Masked attention with grouped key/value heads on f32 slices: forward and backward for the
//! CPU, fused so that no `[batch, heads, seq, seq]` tensor is ever stored.
//!
//! Hand-written (not composed from burn ops) because attention built from separate matmul,
//! mask, softmax and GQA-copy ops was 44% of a training step on flex: each op walks the full
//! score matrix in memory and autodiff keeps four of them per layer. Here one task per
//! (sequence, key/value head) walks its query heads in tiles of [`TILE_ROWS`] rows, keeps one
//! tile of scores in cache, multiplies through the `gemm` crate and skips key columns that no
//! row of the tile can see (the upper triangle of a causal mask, other packed samples). The
//! backward recomputes the probabilities from the saved log-sum-exp of every row, like
//! FlashAttention.
//!
//! Semantics equal `softmax(mask_fill(q kᵀ / sqrt(d), blocked, f32::MIN)) v` with every kv head
//! serving `heads / kv_heads` consecutive query heads (transformers' `repeat_kv`); a row with
//! no visible key attends uniformly to all keys, as that softmax over equal scores does.

use rayon::prelude::*;

use super::fast_math::{exp, simd_targets};
use super::gemm::small_gemm;

/// Query rows per tile: small enough that a causal mask skips most of the upper triangle,
/// large enough for the tile's matmuls to run near the GEMM's speed.
const TILE_ROWS: usize = 32;

/// Lanes of the manual reductions (max and sum), so that they vectorise.
const LANES: usize = 16;

/// Sizes of one attention call: q is `[batch, heads, seq, head_dim]`, k and v
/// `[batch, kv_heads, seq, head_dim]`, the mask `[batch, seq, seq]` (1 = blocked), the output
/// `[batch, seq, heads, head_dim]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seq: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn scale(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }

    fn head_len(&self) -> usize {
        self.seq * self.head_dim
    }
}

/// The keys a query row may see lie in `[start, end)`; `end == 0` when it sees none.
#[derive(Clone, Copy, Debug)]
struct VisibleRange {
    start: usize,
    end: usize,
}

/// One range per query row of every sequence: `[batch * seq]`.
fn visible_ranges(shape: &AttentionShape, blocked: &[u8]) -> Vec<VisibleRange> {
    blocked
        .chunks_exact(shape.seq)
        .map(|row| VisibleRange {
            start: row.iter().position(|&b| b == 0).unwrap_or(0),
            end: row.iter().rposition(|&b| b == 0).map_or(0, |j| j + 1),
        })
        .collect()
}

/// Key columns `[start, end)` a tile of rows needs: the union of its rows' ranges, all keys
/// when one row sees none (it attends uniformly).
fn tile_columns(rows: &[VisibleRange], seq: usize) -> (usize, usize) {
    if rows.iter().any(|r| r.end == 0) {
        return (0, seq);
    }
    let start = rows.iter().map(|r| r.start).min().unwrap_or(0);
    let end = rows.iter().map(|r| r.end).max().unwrap_or(seq);
    (start, end)
}

/// The output buffer shared by the forward's tasks, each writing only its own heads' columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: tasks write disjoint elements (their own heads' columns of each row) and the buffer
// outlives the parallel loop that uses it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Pointer to element `offset`.
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the buffer (checked by the length asserts).
        unsafe { self.0.add(offset) }
    }
}

/// The tiles of one head: query rows `[i0, i0 + rows)` and the key columns they need.
fn tiles(ranges: &[VisibleRange], seq: usize) -> impl Iterator<Item = Tile> + '_ {
    (0..seq).step_by(TILE_ROWS).map(move |i0| {
        let rows = TILE_ROWS.min(seq - i0);
        let (c0, c1) = tile_columns(&ranges[i0..i0 + rows], seq);
        Tile {
            i0,
            rows,
            c0,
            width: c1 - c0,
            seq,
        }
    })
}

/// Rows `a[i0 + r]` of a head (`d` values each, `stride` apart) times the tile's keys:
/// `dst[r, c] = beta * a[i0 + r] . keys[c0 + c]`, `[rows, width]` with row stride `seq`, for
/// `keys` `[seq, d]`. The scores `q kᵀ` and the backward's `dO vᵀ`.
fn rows_times_keys(
    t: Tile,
    (a, stride): (&[f32], usize),
    keys: &[f32],
    d: usize,
    beta: f32,
    dst: &mut [f32],
) {
    assert!((t.i0 + t.rows - 1) * stride + d <= a.len() && (t.c0 + t.width) * d <= keys.len());
    assert!((t.rows - 1) * t.seq + t.width <= dst.len());
    // SAFETY: the asserts above bound every element the strides reach.
    unsafe {
        small_gemm(
            (t.rows, t.width, d),
            dst.as_mut_ptr(),
            (t.seq, 1),
            false,
            a[t.i0 * stride..].as_ptr(),
            (stride, 1),
            keys[t.c0 * d..].as_ptr(),
            (1, d),
            beta,
        );
    }
}

/// The tile `[rows, width]` (row stride `seq`) times the rows `values[c0..c0 + width]` of a
/// `[seq, d]` head: `dst[i0 + r] = tile[r] @ values[c0..]`, `dst` rows `stride` apart. The
/// forward's `p v` and the backward's `ds k`.
///
/// # Safety
/// `dst` must point at row 0 of a buffer holding `(i0 + rows - 1) * stride + d` elements that
/// no other thread writes meanwhile.
unsafe fn tile_times_values(
    t: Tile,
    tile: &[f32],
    values: &[f32],
    d: usize,
    (dst, stride): (*mut f32, usize),
) {
    assert!((t.rows - 1) * t.seq + t.width <= tile.len() && (t.c0 + t.width) * d <= values.len());
    // SAFETY: the assert bounds the operands; the caller vouches for `dst`.
    unsafe {
        small_gemm(
            (t.rows, d, t.width),
            dst.add(t.i0 * stride),
            (stride, 1),
            false,
            tile.as_ptr(),
            (t.seq, 1),
            values[t.c0 * d..].as_ptr(),
            (d, 1),
            1.0,
        );
    }
}

/// Adds the transposed tile times rows of a head: `dst[c0 + c] += Σ_r tile[r, c] a[i0 + r]`,
/// `dst` a `[seq, d]` head, `a` rows `stride` apart. The backward's `pᵀ dO` and `dsᵀ q`.
fn add_tile_t_times_rows(
    t: Tile,
    tile: &[f32],
    (a, stride): (&[f32], usize),
    d: usize,
    dst: &mut [f32],
) {
    assert!((t.rows - 1) * t.seq + t.width <= tile.len() && (t.c0 + t.width) * d <= dst.len());
    assert!((t.i0 + t.rows - 1) * stride + d <= a.len());
    // SAFETY: the asserts above bound every element the strides reach.
    unsafe {
        small_gemm(
            (t.width, d, t.rows),
            dst[t.c0 * d..].as_mut_ptr(),
            (d, 1),
            true,
            tile.as_ptr(),
            (1, t.seq),
            a[t.i0 * stride..].as_ptr(),
            (stride, 1),
            1.0,
        );
    }
}

/// Turns one row of scaled scores into probabilities in place and returns its log-sum-exp.
/// `blocked` covers the same columns as `scores`.
#[inline(always)]
fn softmax_row(scores: &mut [f32], blocked: &[u8], range: VisibleRange, seq: usize) -> f32 {
    if range.end == 0 {
        scores.fill(1.0 / seq as f32);
        return f32::NAN;
    }
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let (body, tail) = (scores.len() / LANES * LANES, scores.len());
    for (chunk, mask) in scores[..body]
        .chunks_exact(LANES)
        .zip(blocked[..body].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let s = if mask[l] == 0 {
                chunk[l]
            } else {
                f32::NEG_INFINITY
            };
            lane_max[l] = lane_max[l].max(s);
        }
    }
    let mut max = lane_max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for j in body..tail {
        if blocked[j] == 0 {
            max = max.max(scores[j]);
        }
    }
    let mut lane_sum = [0.0f32; LANES];
    for (chunk, mask) in scores[..body]
        .chunks_exact_mut(LANES)
        .zip(blocked[..body].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let e = exp(chunk[l] - max);
            let e = if mask[l] == 0 { e } else { 0.0 };
            chunk[l] = e;
            lane_sum[l] += e;
        }
    }
    let mut sum: f32 = lane_sum.iter().sum();
    for j in body..tail {
        let e = if blocked[j] == 0 {
            exp(scores[j] - max)
        } else {
            0.0
        };
        scores[j] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    scores.iter_mut().for_each(|p| *p *= inv);
    max + sum.ln()
}

/// Recomputes one row's probabilities from its scaled scores and saved log-sum-exp.
#[inline(always)]
fn probabilities_row(
    scores: &mut [f32],
    blocked: &[u8],
    lse: f32,
    range: VisibleRange,
    seq: usize,
) {
    if range.end == 0 {
        scores.fill(1.0 / seq as f32);
        return;
    }
    for (s, &b) in scores.iter_mut().zip(blocked) {
        let p = exp(*s - lse);
        *s = if b == 0 { p } else { 0.0 };
    }
}

/// A tile of query rows `[i0, i0 + rows)` and the key columns `[c0, c0 + width)` it needs;
/// tile buffers hold `rows` rows of stride `seq`.
#[derive(Clone, Copy)]
struct Tile {
    i0: usize,
    rows: usize,
    c0: usize,
    width: usize,
    seq: usize,
}

simd_targets! {
    /// Scores of a tile to probabilities, in place, and each row's log-sum-exp into `lse`
    /// (indexed by query row). `mask` and `ranges` are the sequence's `[seq, seq]` / `[seq]`.
    fn softmax_tile(
        t: Tile,
        scores: &mut [f32],
        mask: &[u8],
        ranges: &[VisibleRange],
        lse: &mut [f32],
    ) {
        for r in 0..t.rows {
            let i = t.i0 + r;
            lse[i] = softmax_row(
                &mut scores[r * t.seq..][..t.width],
                &mask[i * t.seq + t.c0..][..t.width],
                ranges[i],
                t.seq,
            );
        }
    }
}

/// What the backward of one head reads per query row.
#[derive(Clone, Copy)]
struct RowsSaved<'a> {
    /// Forward output and its gradient: row `i` at `[i * row_stride..][..d]`.
    out: &'a [f32],
    grad_out: &'a [f32],
    row_stride: usize,
    /// `[seq]` log-sum-exp of every row.
    lse: &'a [f32],
    d: usize,
    scale: f32,
}

simd_targets! {
    /// Backward through the softmax of one tile: `probs` holds the tile's scaled scores and
    /// becomes its probabilities; `grads` holds `dO vᵀ` and becomes the gradient of the
    /// scores before scaling, `p (dp - <dO, O>) * scale`. A row that sees no key had constant
    /// scores: no gradient.
    fn softmax_backward_tile<'a>(
        t: Tile,
        probs: &mut [f32],
        grads: &mut [f32],
        mask: &[u8],
        ranges: &[VisibleRange],
        saved: RowsSaved<'a>,
    ) {
        let d = saved.d;
        for r in 0..t.rows {
            let i = t.i0 + r;
            let p = &mut probs[r * t.seq..][..t.width];
            probabilities_row(p, &mask[i * t.seq + t.c0..][..t.width], saved.lse[i], ranges[i], t.seq);
            let g = &mut grads[r * t.seq..][..t.width];
            if ranges[i].end == 0 {
                g.fill(0.0);
                continue;
            }
            let o = &saved.out[i * saved.row_stride..][..d];
            let go = &saved.grad_out[i * saved.row_stride..][..d];
            let delta: f32 = o.iter().zip(go).map(|(a, b)| a * b).sum();
            for (g, &p) in g.iter_mut().zip(p.iter()) {
                *g = p * (*g - delta) * saved.scale;
            }
        }
    }
}

/// Forward: writes `out` `[batch, seq, heads, head_dim]` (the layout the output projection
/// reads, so no transpose is stored) and the log-sum-exp of every row `lse`
/// `[batch, heads, seq]`. One parallel task per (sequence, key/value head).
pub fn attention_forward(
    shape: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    blocked: &[u8],
    out: &mut [f32],
    lse: &mut [f32],
) {
    let AttentionShape {
        seq,
        head_dim: d,
        heads,
        kv_heads,
        ..
    } = shape;
    assert!(
        kv_heads > 0 && heads.is_multiple_of(kv_heads),
        "query heads must be a multiple of kv heads"
    );
    let (group, head_len, scale) = (shape.group(), shape.head_len(), shape.scale());
    assert_eq!(q.len(), shape.batch * heads * head_len);
    assert!(k.len() == shape.batch * kv_heads * head_len && v.len() == k.len());
    assert!(out.len() == q.len() && lse.len() == shape.batch * heads * seq);
    assert_eq!(blocked.len(), shape.batch * seq * seq);
    let ranges = visible_ranges(&shape, blocked);
    let row_stride = heads * d;
    let out_base = SharedOut(out.as_mut_ptr());
    // one task per (sequence, kv head): its query heads' lse rows are contiguous, their output
    // columns interleave with other tasks' in each row and are written through `out_base`
    lse.par_chunks_mut(group * seq)
        .enumerate()
        .for_each(|(task, lse_group)| {
            let b = task / kv_heads;
            let rows_of = &ranges[b * seq..][..seq];
            let mask_of = &blocked[b * seq * seq..][..seq * seq];
            let kv = &k[task * head_len..][..head_len];
            let vv = &v[task * head_len..][..head_len];
            let mut scores = vec![0.0f32; TILE_ROWS * seq];
            for member in 0..group {
                let h = task % kv_heads * group + member;
                let q_head = &q[(b * heads + h) * head_len..][..head_len];
                // first element of head h's rows in out; row i at `i * row_stride`
                let out_head = out_base.at(b * heads * head_len + h * d);
                let lse_head = &mut lse_group[member * seq..][..seq];
                for tile in tiles(rows_of, seq) {
                    rows_times_keys(tile, (q_head, d), kv, d, scale, &mut scores);
                    softmax_tile(tile, &mut scores, mask_of, rows_of, lse_head);
                    // out[i0 + r] = p[r] @ v[c0..c1]   [rows, d]
                    // SAFETY: out_head starts head h's columns of this sequence's
                    // [seq, heads * d] output (length asserted above); this task alone writes them.
                    unsafe { tile_times_values(tile, &scores, vv, d, (out_head, row_stride)) };
                }
            }
        });
}

/// Saved forward values and the output gradient of one attention call, all f32 slices in the
/// layouts of [`attention_forward`] (`out` and `grad_out` `[batch, seq, heads, head_dim]`).
pub struct AttentionGradInputs<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub blocked: &'a [u8],
    pub out: &'a [f32],
    pub lse: &'a [f32],
    pub grad_out: &'a [f32],
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
    let AttentionShape {
        seq,
        head_dim: d,
        heads,
        kv_heads,
        ..
    } = shape;
    let (group, head_len, scale) = (shape.group(), shape.head_len(), shape.scale());
    assert!(x.out.len() == dq.len() && x.grad_out.len() == dq.len() && x.q.len() == dq.len());
    assert!(dk.len() == x.k.len() && dv.len() == x.v.len());
    let ranges = visible_ranges(&shape, x.blocked);
    let row_stride = heads * d;
    dk.fill(0.0);
    dv.fill(0.0);
    // one task per (sequence, kv head): it owns its query heads' dq and its dk, dv
    dq.par_chunks_mut(group * head_len)
        .zip(dk.par_chunks_mut(head_len))
        .zip(dv.par_chunks_mut(head_len))
        .enumerate()
        .for_each(|(task, ((dq_group, dk_head), dv_head))| {
            let b = task / kv_heads;
            let rows_of = &ranges[b * seq..][..seq];
            let mask_of = &x.blocked[b * seq * seq..][..seq * seq];
            let out_seq = &x.out[b * heads * head_len..][..heads * head_len];
            let go_seq = &x.grad_out[b * heads * head_len..][..heads * head_len];
            let kv = &x.k[task * head_len..][..head_len];
            let vv = &x.v[task * head_len..][..head_len];
            let mut probs = vec![0.0f32; TILE_ROWS * seq];
            let mut grads = vec![0.0f32; TILE_ROWS * seq];
            for member in 0..group {
                let h = task % kv_heads * group + member;
                let q_head = &x.q[(b * heads + h) * head_len..][..head_len];
                let lse_head = &x.lse[(b * heads + h) * seq..][..seq];
                let dq_head = &mut dq_group[member * head_len..][..head_len];
                // rows of head h: [i * row_stride..][..d]
                let (out_head, go_head) = (&out_seq[h * d..], &go_seq[h * d..]);
                for tile in tiles(rows_of, seq) {
                    // probs: the forward's scores, then probabilities   [rows, width]
                    rows_times_keys(tile, (q_head, d), kv, d, scale, &mut probs);
                    // grads = dO @ vᵀ   [rows, width]
                    rows_times_keys(tile, (go_head, row_stride), vv, d, 1.0, &mut grads);
                    let saved = RowsSaved {
                        out: out_head,
                        grad_out: go_head,
                        row_stride,
                        lse: lse_head,
                        d,
                        scale,
                    };
                    softmax_backward_tile(tile, &mut probs, &mut grads, mask_of, rows_of, saved);
                    // dv[c0..c1] += pᵀ @ dO   [width, d]
                    add_tile_t_times_rows(tile, &probs, (go_head, row_stride), d, dv_head);
                    // dq[i0 + r] = ds[r] @ k[c0..c1]   [rows, d]
                    // SAFETY: dq_head is this task's own [seq, d] slice.
                    unsafe { tile_times_values(tile, &grads, kv, d, (dq_head.as_mut_ptr(), d)) };
                    // dk[c0..c1] += dsᵀ @ q[i0..]   [width, d]
                    add_tile_t_times_rows(tile, &grads, (q_head, d), d, dk_head);
                }
            }
        });
}
