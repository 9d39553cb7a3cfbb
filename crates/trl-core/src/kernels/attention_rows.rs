//! Row math of the fused CPU attention (`attention_cpu`): what each query row may see, the
//! online softmax of one key block in the forward and the softmax backward of one key block,
//! on score tiles `[rows, width]`.
//!
//! A row whose visible keys form one range (every row of a causal, packed or left-padded
//! mask) never reads the mask: its part of a key block is the block's slice of that range,
//! the rest is zeroed without arithmetic (so the diagonal blocks of a causal mask cost half).
//! Only rows with holes between visible keys read their mask bytes.

use super::fast_math::{exp, simd_targets};

/// Lanes of the manual reductions (max and sum), so that they vectorise.
const LANES: usize = 16;

/// The keys one query row may see: all visible ones lie in `[start, end)` (`end == 0` when it
/// sees none), and `dense` says that none inside that range is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RowVisibility {
    pub start: usize,
    pub end: usize,
    pub dense: bool,
}

impl RowVisibility {
    /// Reads one `[seq]` mask row (1 = blocked).
    pub fn of_mask_row(blocked: &[u8]) -> Self {
        let start = blocked.iter().position(|&b| b == 0).unwrap_or(0);
        let end = blocked.iter().rposition(|&b| b == 0).map_or(0, |j| j + 1);
        let dense = end == 0 || blocked[start..end].iter().all(|&b| b == 0);
        RowVisibility { start, end, dense }
    }

    /// The row sees no key at all (it attends uniformly to every key).
    pub fn sees_nothing(&self) -> bool {
        self.end == 0
    }

    /// No key of `[c, c + width)` is visible.
    fn sees_none_of(&self, c: usize, width: usize) -> bool {
        self.end <= c || c + width <= self.start
    }
}

/// One key block of a stacked query tile: score rows `r` (stride `stride`) belong to query
/// position `i0 + r % positions` of a sequence whose `[seq]` visibilities and `[seq, seq]`
/// mask are given; the block covers key columns `[c, c + width)`.
#[derive(Clone, Copy)]
pub(super) struct Block<'a> {
    pub c: usize,
    pub width: usize,
    pub stride: usize,
    pub i0: usize,
    pub positions: usize,
    pub rows: usize,
    pub seq: usize,
    pub visibility: &'a [RowVisibility],
    pub mask: &'a [u8],
}

/// How one row meets one block.
enum RowCase<'a> {
    /// Sees none: probabilities 0.
    None,
    /// Sees exactly the block's columns `[lo, hi)`, so no mask is read: every row of a causal,
    /// packed or left-padded mask (a dense row), the whole block away from the diagonal.
    Range(usize, usize),
    /// Sees some keys with holes between them: the `[width]` mask bytes of the block.
    Some(&'a [u8]),
}

impl<'a> Block<'a> {
    fn case(&self, r: usize) -> RowCase<'a> {
        let i = self.i0 + r % self.positions;
        let row = self.visibility[i];
        if row.sees_none_of(self.c, self.width) {
            RowCase::None
        } else if row.dense {
            // Not `sees_none_of`: `start < c + width` and `end > c`, so `lo < hi`.
            let lo = row.start.saturating_sub(self.c);
            let hi = (row.end - self.c).min(self.width);
            RowCase::Range(lo, hi)
        } else {
            RowCase::Some(&self.mask[i * self.seq + self.c..][..self.width])
        }
    }
}

/// The visible part of a row `s` for `case` (with the mask bytes it still needs), the rest
/// of `s` zeroed; `None` when the row sees nothing of the block (all of `s` zeroed).
#[inline(always)]
fn visible_part<'s, 'm>(s: &'s mut [f32], case: &RowCase<'m>) -> Option<(&'s mut [f32], &'m [u8])> {
    match *case {
        RowCase::None => {
            s.fill(0.0);
            None
        }
        RowCase::Range(lo, hi) => {
            s[..lo].fill(0.0);
            s[hi..].fill(0.0);
            Some((&mut s[lo..hi], &[][..]))
        }
        RowCase::Some(mask) => Some((s, mask)),
    }
}

#[inline(always)]
fn lanes_max(lanes: [f32; LANES]) -> f32 {
    lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// The values of a row past its last full chunk of [`LANES`], padded to a full chunk so that
/// the tail runs the chunks' vector code (a causal row's visible part of a diagonal key block
/// has any length): `pad` and mask byte 1 in the lanes past the row's end.
struct Tail {
    values: [f32; LANES],
    mask: [u8; LANES],
    len: usize,
}

impl Tail {
    /// The tail of `s` from `body` (`mask` empty: none blocked).
    #[inline(always)]
    fn of(s: &[f32], mask: &[u8], body: usize, pad: f32) -> Self {
        let len = s.len() - body;
        let mut tail = Tail {
            values: [pad; LANES],
            mask: [1; LANES],
            len,
        };
        tail.values[..len].copy_from_slice(&s[body..]);
        if mask.is_empty() {
            tail.mask[..len].fill(0);
        } else {
            tail.mask[..len].copy_from_slice(&mask[body..]);
        }
        tail
    }
}

/// The largest score of a row; keys whose `mask` byte is 1 count as -inf (`mask` empty: none
/// blocked). Lane-wise over `chunks_exact`, so that every loop vectorises.
#[inline(always)]
fn row_max(s: &[f32], mask: &[u8]) -> f32 {
    let body = s.len() / LANES * LANES;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let masked_max = |lanes: &mut [f32; LANES], chunk: &[f32], m: &[u8]| {
        for l in 0..LANES {
            let x = if m[l] == 0 {
                chunk[l]
            } else {
                f32::NEG_INFINITY
            };
            lanes[l] = lanes[l].max(x);
        }
    };
    if mask.is_empty() {
        for chunk in s[..body].chunks_exact(LANES) {
            for l in 0..LANES {
                lanes[l] = lanes[l].max(chunk[l]);
            }
        }
    } else {
        assert_eq!(mask.len(), s.len());
        for (chunk, m) in s[..body].chunks_exact(LANES).zip(mask.chunks_exact(LANES)) {
            masked_max(&mut lanes, chunk, m);
        }
    }
    let tail = Tail::of(s, mask, body, f32::NEG_INFINITY);
    masked_max(&mut lanes, &tail.values, &tail.mask);
    lanes_max(lanes)
}

/// `s[j] = exp(s[j] - shift)`, 0 where the `mask` byte is 1 (`mask` empty: none blocked);
/// returns the row's sum.
#[inline(always)]
fn exp_row(s: &mut [f32], mask: &[u8], shift: f32) -> f32 {
    let body = s.len() / LANES * LANES;
    let mut lanes = [0.0f32; LANES];
    let masked_exp = |lanes: &mut [f32; LANES], chunk: &mut [f32], m: &[u8]| {
        for l in 0..LANES {
            let e = exp(chunk[l] - shift);
            let e = if m[l] == 0 { e } else { 0.0 };
            chunk[l] = e;
            lanes[l] += e;
        }
    };
    if mask.is_empty() {
        for chunk in s[..body].chunks_exact_mut(LANES) {
            for l in 0..LANES {
                let e = exp(chunk[l] - shift);
                chunk[l] = e;
                lanes[l] += e;
            }
        }
    } else {
        assert_eq!(mask.len(), s.len());
        for (chunk, m) in s[..body]
            .chunks_exact_mut(LANES)
            .zip(mask.chunks_exact(LANES))
        {
            masked_exp(&mut lanes, chunk, m);
        }
    }
    let mut tail = Tail::of(s, mask, body, 0.0);
    masked_exp(&mut lanes, &mut tail.values, &tail.mask);
    s[body..].copy_from_slice(&tail.values[..tail.len]);
    lanes.iter().sum()
}

/// Probabilities `exp(s - lse)` in place, 0 where the `mask` byte is 1 (`mask` empty: none
/// blocked), and the score gradients `g = p (g - delta) * scale` of one row.
#[inline(always)]
fn backward_row(
    (s, g): (&mut [f32], &mut [f32]),
    mask: &[u8],
    (lse, delta, scale): (f32, f32, f32),
) {
    assert_eq!(g.len(), s.len());
    assert!(mask.is_empty() || mask.len() == s.len());
    let body = s.len() / LANES * LANES;
    let masked = |s: &mut [f32], g: &mut [f32], m: &[u8]| {
        for l in 0..LANES {
            let p = exp(s[l] - lse);
            let p = if m[l] == 0 { p } else { 0.0 };
            s[l] = p;
            g[l] = p * (g[l] - delta) * scale;
        }
    };
    let chunks = s[..body]
        .chunks_exact_mut(LANES)
        .zip(g[..body].chunks_exact_mut(LANES));
    if mask.is_empty() {
        for (s, g) in chunks {
            for l in 0..LANES {
                let p = exp(s[l] - lse);
                s[l] = p;
                g[l] = p * (g[l] - delta) * scale;
            }
        }
    } else {
        for ((s, g), m) in chunks.zip(mask.chunks_exact(LANES)) {
            masked(s, g, m);
        }
    }
    let mut tail = Tail::of(s, mask, body, 0.0);
    let mut g_tail = Tail::of(g, &[], body, 0.0).values;
    masked(&mut tail.values, &mut g_tail, &tail.mask);
    s[body..].copy_from_slice(&tail.values[..tail.len]);
    g[body..].copy_from_slice(&g_tail[..tail.len]);
}

/// Running softmax state of a stacked tile's rows: max `m`, sum `l` and the accumulated
/// output `acc` `[rows, d]`, all relative to `m`.
pub(super) struct OnlineRows<'a> {
    pub m: &'a mut [f32],
    pub l: &'a mut [f32],
    pub acc: &'a mut [f32],
    pub d: usize,
}

simd_targets! {
    /// Online softmax over one key block: turns the block's scaled scores `[rows, width]` into
    /// `exp(s - m_new)` (0 where blocked), adds them to each row's sum and rescales the row's
    /// sum and accumulated output by `exp(m_old - m_new)`. The caller then adds `p @ v`.
    pub(super) fn online_softmax_block<'a>(b: Block<'a>, scores: &mut [f32], state: OnlineRows<'a>) {
        for r in 0..b.rows {
            let row = &mut scores[r * b.stride..][..b.width];
            let Some((s, mask)) = visible_part(row, &b.case(r)) else {
                continue;
            };
            let block_max = row_max(s, mask);
            if block_max == f32::NEG_INFINITY {
                s.fill(0.0);
                continue;
            }
            let m_new = state.m[r].max(block_max);
            // m_old = -inf before the row's first visible key: exp clamps to ~1e-38, and the
            // sum and output it scales are still 0
            let alpha = exp(state.m[r] - m_new);
            let sum = exp_row(s, mask, m_new);
            state.l[r] = state.l[r] * alpha + sum;
            state.m[r] = m_new;
            if alpha != 1.0 {
                state.acc[r * state.d..][..state.d].iter_mut().for_each(|x| *x *= alpha);
            }
        }
    }
}

simd_targets! {
    /// Backward through the softmax of one key block: `scores` holds the block's scaled scores
    /// and becomes its probabilities `exp(s - lse)`; `grads` holds `dO vᵀ` and becomes the
    /// gradient of the scores before scaling, `p (dp - delta) * scale`, with `delta = <dO, O>`
    /// of the row. Blocked keys, and rows that see no key (constant scores), get 0.
    pub(super) fn softmax_backward_block<'a>(
        b: Block<'a>,
        scores: &mut [f32],
        grads: &mut [f32],
        (lse, delta): (&[f32], &[f32]),
        scale: f32,
    ) {
        for r in 0..b.rows {
            let s = &mut scores[r * b.stride..][..b.width];
            let g = &mut grads[r * b.stride..][..b.width];
            let saved = (lse[r], delta[r], scale);
            let case = b.case(r);
            let (Some((s, mask)), Some((g, _))) = (visible_part(s, &case), visible_part(g, &case))
            else {
                continue;
            };
            backward_row((s, g), mask, saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_of_mask_rows() {
        let causal_row = [0u8, 0, 0, 1, 1];
        let left_padded = [1u8, 1, 0, 0, 1];
        let with_hole = [0u8, 1, 0, 1, 1];
        let nothing = [1u8; 5];
        let v = RowVisibility::of_mask_row(&causal_row);
        assert_eq!((v.start, v.end, v.dense), (0, 3, true));
        assert!(!v.sees_none_of(1, 3) && v.sees_none_of(3, 2));
        let v = RowVisibility::of_mask_row(&left_padded);
        assert_eq!((v.start, v.end, v.dense), (2, 4, true));
        assert!(v.sees_none_of(0, 2) && !v.sees_none_of(1, 2));
        let v = RowVisibility::of_mask_row(&with_hole);
        assert_eq!((v.start, v.end, v.dense), (0, 3, false));
        let v = RowVisibility::of_mask_row(&nothing);
        assert!(v.sees_nothing() && v.sees_none_of(0, 5));
    }

    #[test]
    fn dense_rows_meet_blocks_as_ranges_and_rows_with_holes_read_the_mask() {
        let seq = 5;
        let mut mask = Vec::new();
        for row in [[0u8, 0, 0, 1, 1], [1, 1, 0, 0, 1], [0, 1, 0, 1, 1], [1; 5]] {
            mask.extend_from_slice(&row);
        }
        mask.extend_from_slice(&[0; 5]);
        let visibility: Vec<_> = mask.chunks(seq).map(RowVisibility::of_mask_row).collect();
        let case = |i0: usize, (c, width): (usize, usize)| {
            let block = Block {
                c,
                width,
                stride: width,
                i0,
                positions: 1,
                rows: 1,
                seq,
                visibility: &visibility,
                mask: &mask,
            };
            match block.case(0) {
                RowCase::None => "none".to_string(),
                RowCase::Range(lo, hi) => format!("{lo}..{hi}"),
                RowCase::Some(bytes) => format!("mask {bytes:?}"),
            }
        };
        assert_eq!(
            case(0, (0, 2)),
            "0..2",
            "the causal row sees the whole block"
        );
        assert_eq!(case(0, (2, 3)), "0..1", "the causal row's diagonal block");
        assert_eq!(case(0, (3, 2)), "none");
        assert_eq!(case(1, (0, 3)), "2..3", "left padding");
        assert_eq!(case(1, (1, 4)), "1..3");
        assert_eq!(case(2, (0, 3)), "mask [0, 1, 0]", "a hole");
        assert_eq!(case(3, (0, 5)), "none", "a row that sees nothing");
        assert_eq!(case(4, (1, 3)), "0..3", "an unmasked row");
    }

    #[test]
    fn online_softmax_over_two_blocks_equals_one_pass() {
        let seq = 37;
        let scores: Vec<f32> = (0..seq)
            .map(|j| ((j * 7 % 11) as f32) * 0.9 - 3.0)
            .collect();
        let mut mask = vec![0u8; seq * seq];
        mask[5] = 1; // row 0 does not see key 5
        let visibility: Vec<_> = mask.chunks(seq).map(RowVisibility::of_mask_row).collect();
        let (mut m, mut l, mut acc) = ([f32::NEG_INFINITY], [0.0f32], [0.0f32]);
        let mut weighted = 0.0f32; // sum of p * value, value = column index
        for (c, width) in [(0, 20), (20, 17)] {
            let block = Block {
                c,
                width,
                stride: width,
                i0: 0,
                positions: 1,
                rows: 1,
                seq,
                visibility: &visibility,
                mask: &mask,
            };
            let mut s = scores[c..c + width].to_vec();
            let state = OnlineRows {
                m: &mut m,
                l: &mut l,
                acc: &mut acc,
                d: 1,
            };
            online_softmax_block(block, &mut s, state);
            acc[0] += s
                .iter()
                .enumerate()
                .map(|(j, p)| p * (c + j) as f32)
                .sum::<f32>();
            weighted = acc[0];
        }
        let visible = |j: usize| j != 5;
        let max = (0..seq)
            .filter(|&j| visible(j))
            .map(|j| scores[j])
            .fold(f32::MIN, f32::max);
        let sum: f64 = (0..seq)
            .filter(|&j| visible(j))
            .map(|j| ((scores[j] - max) as f64).exp())
            .sum();
        let mean: f64 = (0..seq)
            .filter(|&j| visible(j))
            .map(|j| ((scores[j] - max) as f64).exp() * j as f64)
            .sum::<f64>()
            / sum;
        assert!(
            (m[0] + l[0].ln() - (max as f64 + sum.ln()) as f32).abs() < 1e-5,
            "lse"
        );
        assert!(
            (weighted / l[0] - mean as f32).abs() < 1e-4,
            "weighted mean"
        );
    }
}
