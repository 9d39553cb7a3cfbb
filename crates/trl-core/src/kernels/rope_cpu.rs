//! Rotary embeddings applied in one pass, forward and backward, on every core.
//!
//! Hand-written because the composed form (two narrows, a concatenation, a negation, two
//! multiplies and an add) walks q and k six times and autodiff keeps two copies of each per
//! layer; the fused op keeps none (its backward is the inverse rotation).

use rayon::prelude::*;

use super::fast_math::simd_targets;

/// `x` `[batch, heads, seq, head_dim]` rotated by the tables `cos`/`sin` `[batch, seq, head_dim]`
/// (transformers repeats the frequencies in both halves; any tables work):
/// `y = x * cos + rotate_half(x) * sin` with `rotate_half([a, b]) = [-b, a]`. `transpose`
/// applies the transposed linear map instead, which is the backward of the forward one.
pub fn rope(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    (batch, heads, seq, head_dim): (usize, usize, usize, usize),
    transpose: bool,
    out: &mut [f32],
) {
    assert!(
        head_dim.is_multiple_of(2),
        "rotary embeddings need an even head_dim"
    );
    let head_len = seq * head_dim;
    assert!(x.len() == batch * heads * head_len && out.len() == x.len());
    assert!(cos.len() == batch * head_len && sin.len() == cos.len());
    out.par_chunks_mut(head_len)
        .zip(x.par_chunks(head_len))
        .enumerate()
        .for_each(|(head, (out, x))| {
            let b = head / heads;
            let table = b * head_len..(b + 1) * head_len;
            rotate_head(
                x,
                &cos[table.clone()],
                &sin[table],
                head_dim,
                transpose,
                out,
            );
        });
}

simd_targets! {
    fn rotate_head(x: &[f32], cos: &[f32], sin: &[f32], head_dim: usize, transpose: bool, out: &mut [f32]) {
        let half = head_dim / 2;
        for (((out, x), cos), sin) in out
            .chunks_exact_mut(head_dim)
            .zip(x.chunks_exact(head_dim))
            .zip(cos.chunks_exact(head_dim))
            .zip(sin.chunks_exact(head_dim))
        {
            let (x1, x2) = x.split_at(half);
            let (o1, o2) = out.split_at_mut(half);
            // forward: y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2 (1: first half, 2: second half);
            // its transpose: x1 = y1 c1 + y2 s2, x2 = y2 c2 - y1 s1
            let (c1, c2) = cos.split_at(half);
            let (s1, s2) = sin.split_at(half);
            if transpose {
                for j in 0..half {
                    o1[j] = x1[j] * c1[j] + x2[j] * s2[j];
                    o2[j] = x2[j] * c2[j] - x1[j] * s1[j];
                }
            } else {
                for j in 0..half {
                    o1[j] = x1[j] * c1[j] - x2[j] * s1[j];
                    o2[j] = x2[j] * c2[j] + x1[j] * s2[j];
                }
            }
        }
    }
}
