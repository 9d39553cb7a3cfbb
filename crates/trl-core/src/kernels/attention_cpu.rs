//! Masked attention with grouped key/value heads on f32 slices for the CPU, fused so that no
//! `[batch, heads, seq, seq]` tensor, nor a `[seq]`-wide row of scores, is ever stored: the
//! forward here, the backward in `attention_backward_cpu`, the row math in `attention_rows`.
//!
//! Hand-written (not composed from burn ops) because attention built from separate matmul,
//! mask, softmax and GQA-copy ops was 44% of a training step on flex. FlashAttention's scheme:
//! the work is split into query tiles (a sequence, a key/value head, [`tile_positions`]
//! consecutive positions) so that every core stays busy even at batch 1 with two kv heads. A
//! tile stacks the rows of all query heads its kv head serves into one `[rows, head_dim]`
//! matrix (so the key and value blocks are packed once for the whole group), walks the keys
//! its rows may see in blocks of [`KEY_BLOCK`] columns with an online softmax (a running max
//! and sum per row), and skips key blocks no row of the tile sees (the upper triangle of a
//! causal mask, other packed samples, left padding). The backward recomputes the
//! probabilities block by block from the saved log-sum-exp of every row.
//!
//! Semantics equal `softmax(mask_fill(q kᵀ / sqrt(d), blocked, f32::MIN)) v` with every kv head
//! serving `heads / kv_heads` consecutive query heads (transformers' `repeat_kv`); a row with
//! no visible key attends uniformly to all keys, as that softmax over equal scores does.

use rayon::prelude::*;

use super::attention_rows::{Block, OnlineRows, RowVisibility, online_softmax_block};
use super::gemm::small_gemm;

pub use super::attention_backward_cpu::{AttentionGradInputs, attention_backward};

/// Rows a query tile stacks over its query heads (positions times group size): enough for the
/// tile's products to run near the GEMM's speed with the key block packed once.
const STACKED_ROWS: usize = 256;

/// Key columns per block: the score tile `[STACKED_ROWS, KEY_BLOCK]` and its gradient stay in
/// a core's L2 cache at any sequence length.
pub(super) const KEY_BLOCK: usize = 128;

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
    pub(super) fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    pub(super) fn scale(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }

    pub(super) fn head_len(&self) -> usize {
        self.seq * self.head_dim
    }

    /// Checks the slice lengths of q, k, v and the mask against the shape.
    pub(super) fn check(&self, q: &[f32], k: &[f32], v: &[f32], blocked: &[u8]) {
        assert!(
            self.kv_heads > 0 && self.heads.is_multiple_of(self.kv_heads),
            "query heads must be a multiple of kv heads"
        );
        assert_eq!(q.len(), self.batch * self.heads * self.head_len());
        assert!(k.len() == self.batch * self.kv_heads * self.head_len() && v.len() == k.len());
        assert_eq!(blocked.len(), self.batch * self.seq * self.seq);
    }
}

/// Query positions per tile for a group of `group` query heads per kv head.
fn tile_positions(group: usize) -> usize {
    (STACKED_ROWS / group).clamp(16, 64)
}

/// The visibility of every query row of every sequence: `[batch * seq]`.
pub(super) fn visibilities(seq: usize, blocked: &[u8]) -> Vec<RowVisibility> {
    blocked
        .par_chunks_exact(seq)
        .map(RowVisibility::of_mask_row)
        .collect()
}

/// One unit of work: query positions `[i0, i0 + positions)` of sequence `b` for every query
/// head kv head `kv_head` serves, and the key columns `[c0, c1)` those rows may see (empty when
/// they see none).
#[derive(Clone, Copy, Debug)]
pub(super) struct QueryTile {
    pub b: usize,
    pub kv_head: usize,
    pub i0: usize,
    pub positions: usize,
    pub c0: usize,
    pub c1: usize,
}

impl QueryTile {
    /// Key blocks `(c, width)` covering `[c0, c1)`.
    pub fn key_blocks(&self) -> impl Iterator<Item = (usize, usize)> {
        let c1 = self.c1;
        (self.c0..c1)
            .step_by(KEY_BLOCK)
            .map(move |c| (c, KEY_BLOCK.min(c1 - c)))
    }

    /// Key block `(c, width)` of the tile's `rows` stacked score rows, over the sequence's
    /// `[seq]` visibilities and `[seq, seq]` mask.
    pub fn block<'a>(
        &self,
        (c, width): (usize, usize),
        rows: usize,
        seq: usize,
        (visibility, mask): (&'a [RowVisibility], &'a [u8]),
    ) -> Block<'a> {
        Block {
            c,
            width,
            stride: KEY_BLOCK,
            i0: self.i0,
            positions: self.positions,
            rows,
            seq,
            visibility,
            mask,
        }
    }
}

/// Every query tile, ordered by sequence, kv head and position.
pub(super) fn query_tiles(shape: &AttentionShape, visibility: &[RowVisibility]) -> Vec<QueryTile> {
    let (seq, positions) = (shape.seq, tile_positions(shape.group()));
    let mut tiles = Vec::new();
    for b in 0..shape.batch {
        for kv_head in 0..shape.kv_heads {
            for i0 in (0..seq).step_by(positions) {
                let n = positions.min(seq - i0);
                let rows = &visibility[b * seq + i0..][..n];
                let seeing = rows.iter().filter(|r| !r.sees_nothing());
                let c0 = seeing.clone().map(|r| r.start).min().unwrap_or(0);
                let c1 = seeing.map(|r| r.end).max().unwrap_or(0);
                let c1 = c1.max(c0);
                tiles.push(QueryTile {
                    b,
                    kv_head,
                    i0,
                    positions: n,
                    c0,
                    c1,
                });
            }
        }
    }
    tiles
}

/// A buffer the parallel tasks share, each writing only its own elements.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub *mut f32);

// SAFETY: tasks write disjoint elements and the buffer outlives the parallel loop using it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The `len` elements from `offset`.
    ///
    /// # Safety
    /// They must lie inside the buffer, and no other thread may touch them meanwhile.
    pub unsafe fn slice<'a>(self, offset: usize, len: usize) -> &'a mut [f32] {
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(offset), len) }
    }
}

/// A matrix operand of [`product`]: its slice from element (0, 0) and (row, column) strides.
pub(super) type Operand<'a> = (&'a [f32], (usize, usize));

/// `dst[m, n] (+)= beta * a[m, k] @ b[k, n]`, `dst` with row stride `dst_stride`; one thread.
pub(super) fn product(
    (m, n, k): (usize, usize, usize),
    (dst, dst_stride): (&mut [f32], usize),
    accumulate: bool,
    (a, b): (Operand<'_>, Operand<'_>),
    beta: f32,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let last =
        |(rows, cols): (usize, usize), (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last((m, n), (dst_stride, 1)) < dst.len());
    assert!(last((m, k), a.1) < a.0.len() && last((k, n), b.1) < b.0.len());
    // SAFETY: the asserts above bound every element the strides reach.
    unsafe {
        small_gemm(
            (m, n, k),
            dst.as_mut_ptr(),
            (dst_stride, 1),
            accumulate,
            a.0.as_ptr(),
            a.1,
            b.0.as_ptr(),
            b.1,
            beta,
        )
    }
}

/// Copies rows `[i0, i0 + positions)` of every query head of a tile's group into `dst`
/// `[group * positions, d]`, from `src` laid out `[batch, heads, seq, d]`.
pub(super) fn gather_head_major(
    shape: &AttentionShape,
    t: &QueryTile,
    src: &[f32],
    dst: &mut [f32],
) {
    let (d, group) = (shape.head_dim, shape.group());
    let block = t.positions * d;
    for member in 0..group {
        let h = t.kv_head * group + member;
        let from = ((t.b * shape.heads + h) * shape.seq + t.i0) * d;
        dst[member * block..][..block].copy_from_slice(&src[from..][..block]);
    }
}

/// Offset of `(b, i, h)` in a `[batch, seq, heads, d]` tensor (the output's layout).
pub(super) fn token_major(shape: &AttentionShape, b: usize, i: usize, h: usize) -> usize {
    ((b * shape.seq + i) * shape.heads + h) * shape.head_dim
}

/// The mean of every kv head's values `[batch * kv_heads, d]`: the output of a row that sees
/// no key. Empty when no row is such.
fn uniform_outputs(shape: &AttentionShape, v: &[f32], visibility: &[RowVisibility]) -> Vec<f32> {
    if !visibility.iter().any(RowVisibility::sees_nothing) {
        return Vec::new();
    }
    let d = shape.head_dim;
    let mut means = vec![0.0f32; shape.batch * shape.kv_heads * d];
    for (mean, head) in means.chunks_mut(d).zip(v.chunks(shape.head_len())) {
        head.chunks(d)
            .for_each(|row| mean.iter_mut().zip(row).for_each(|(m, x)| *m += x));
        mean.iter_mut().for_each(|m| *m /= shape.seq as f32);
    }
    means
}

/// Per-task scratch of the forward: stacked queries `[rows, d]`, scores `[rows, KEY_BLOCK]`,
/// accumulated output `[rows, d]`, running max and sum `[rows]`.
struct ForwardScratch {
    q: Vec<f32>,
    scores: Vec<f32>,
    acc: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
}

impl ForwardScratch {
    fn new(shape: &AttentionShape) -> Self {
        let rows = shape.group() * tile_positions(shape.group());
        ForwardScratch {
            q: vec![0.0; rows * shape.head_dim],
            scores: vec![0.0; rows * KEY_BLOCK],
            acc: vec![0.0; rows * shape.head_dim],
            m: vec![0.0; rows],
            l: vec![0.0; rows],
        }
    }
}

/// The inputs of the forward, as [`attention_forward`] takes them.
struct ForwardInputs<'a> {
    shape: AttentionShape,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    blocked: &'a [u8],
    visibility: &'a [RowVisibility],
    uniform: &'a [f32],
}

/// Forward of one query tile into its rows of `out` and `lse`.
fn forward_tile(
    x: &ForwardInputs<'_>,
    t: &QueryTile,
    s: &mut ForwardScratch,
    outs: [SharedOut; 2],
) {
    let shape = &x.shape;
    let (seq, d, rows) = (shape.seq, shape.head_dim, shape.group() * t.positions);
    let head = (t.b * shape.kv_heads + t.kv_head) * shape.head_len();
    let (keys, values) = (
        &x.k[head..][..shape.head_len()],
        &x.v[head..][..shape.head_len()],
    );
    let sequence = (
        &x.visibility[t.b * seq..][..seq],
        &x.blocked[t.b * seq * seq..][..seq * seq],
    );
    gather_head_major(shape, t, x.q, &mut s.q);
    s.acc[..rows * d].fill(0.0);
    s.m[..rows].fill(f32::NEG_INFINITY);
    s.l[..rows].fill(0.0);
    for (c, width) in t.key_blocks() {
        // scores = q kᵀ / sqrt(d)   [rows, width]
        let (q, k) = ((&s.q[..], (d, 1)), (&keys[c * d..], (1, d)));
        product(
            (rows, width, d),
            (&mut s.scores, KEY_BLOCK),
            false,
            (q, k),
            shape.scale(),
        );
        let state = OnlineRows {
            m: &mut s.m[..rows],
            l: &mut s.l[..rows],
            acc: &mut s.acc[..rows * d],
            d,
        };
        online_softmax_block(
            t.block((c, width), rows, seq, sequence),
            &mut s.scores,
            state,
        );
        // acc += p @ v[c..c + width]   [rows, d]
        let (p, v) = ((&s.scores[..], (KEY_BLOCK, 1)), (&values[c * d..], (d, 1)));
        product((rows, d, width), (&mut s.acc, d), true, (p, v), 1.0);
    }
    write_outputs(x, t, s, outs);
}

/// Normalises a tile's accumulated rows into `out` `[batch, seq, heads, d]` and writes their
/// log-sum-exp into `lse` `[batch, heads, seq]`; rows that see no key get the mean value.
fn write_outputs(
    x: &ForwardInputs<'_>,
    t: &QueryTile,
    s: &ForwardScratch,
    [out, lse]: [SharedOut; 2],
) {
    let (shape, d, group) = (&x.shape, x.shape.head_dim, x.shape.group());
    for member in 0..group {
        let h = t.kv_head * group + member;
        for p in 0..t.positions {
            let (i, r) = (t.i0 + p, member * t.positions + p);
            // SAFETY: (b, i, h) belongs to this tile alone; offsets are inside the buffers
            // (lengths asserted by attention_forward).
            let (o, l) = unsafe {
                (
                    out.slice(token_major(shape, t.b, i, h), d),
                    lse.slice((t.b * shape.heads + h) * shape.seq + i, 1),
                )
            };
            if x.visibility[t.b * shape.seq + i].sees_nothing() {
                o.copy_from_slice(&x.uniform[(t.b * shape.kv_heads + t.kv_head) * d..][..d]);
                l[0] = f32::NAN;
                continue;
            }
            let inv = 1.0 / s.l[r];
            o.iter_mut()
                .zip(&s.acc[r * d..][..d])
                .for_each(|(o, a)| *o = a * inv);
            l[0] = s.m[r] + s.l[r].ln();
        }
    }
}

/// Forward: writes `out` `[batch, seq, heads, head_dim]` (the layout the output projection
/// reads, so no transpose is stored) and the log-sum-exp of every row `lse`
/// `[batch, heads, seq]` (NaN for rows that see no key). Parallel over query tiles.
pub fn attention_forward(
    shape: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    blocked: &[u8],
    out: &mut [f32],
    lse: &mut [f32],
) {
    shape.check(q, k, v, blocked);
    assert!(out.len() == q.len() && lse.len() == shape.batch * shape.heads * shape.seq);
    let visibility = visibilities(shape.seq, blocked);
    let tiles = query_tiles(&shape, &visibility);
    let uniform = uniform_outputs(&shape, v, &visibility);
    let x = ForwardInputs {
        shape,
        q,
        k,
        v,
        blocked,
        visibility: &visibility,
        uniform: &uniform,
    };
    let outs = [SharedOut(out.as_mut_ptr()), SharedOut(lse.as_mut_ptr())];
    tiles.par_iter().for_each_init(
        || ForwardScratch::new(&shape),
        |scratch, t| forward_tile(&x, t, scratch, outs),
    );
}
