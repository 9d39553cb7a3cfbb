//! Rotary embeddings applied in one pass, forward and backward, on every core.
//!
//! Hand-written because the composed form (two narrows, a concatenation, a negation, two
//! multiplies and an add) walks q and k six times and autodiff keeps two copies of each per
//! layer; the fused op keeps none (its backward is the inverse rotation).

use rayon::prelude::*;

use super::fast_math::simd_targets;

/// `x` `[batch, heads, seq, head_dim]` rotated by the tables `cos`/`sin` `[batch, seq, head_dim]`
/// (each half of a row repeats the same frequencies, as transformers builds them):
/// `y = x * cos + rotate_half(x) * sin` with `rotate_half([a, b]) = [-b, a]`. `inverse`
/// rotates the other way, which is the backward of the forward rotation.
pub fn rope(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    (batch, heads, seq, head_dim): (usize, usize, usize, usize),
    inverse: bool,
    out: &mut [f32],
) {
    let head_len = seq * head_dim;
    assert!(x.len() == batch * heads * head_len && out.len() == x.len());
    assert!(cos.len() == batch * head_len && sin.len() == cos.len());
    out.par_chunks_mut(head_len)
        .zip(x.par_chunks(head_len))
        .enumerate()
        .for_each(|(head, (out, x))| {
            let b = head / heads;
            let table = b * head_len..(b + 1) * head_len;
            rotate_head(x, &cos[table.clone()], &sin[table], head_dim, inverse, out);
        });
}

simd_targets! {
    fn rotate_head(x: &[f32], cos: &[f32], sin: &[f32], head_dim: usize, inverse: bool, out: &mut [f32]) {
        let half = head_dim / 2;
        let sign = if inverse { -1.0f32 } else { 1.0 };
        for (((out, x), cos), sin) in out
            .chunks_exact_mut(head_dim)
            .zip(x.chunks_exact(head_dim))
            .zip(cos.chunks_exact(head_dim))
            .zip(sin.chunks_exact(head_dim))
        {
            let (x1, x2) = x.split_at(half);
            let (o1, o2) = out.split_at_mut(half);
            for j in 0..half {
                o1[j] = x1[j] * cos[j] - sign * x2[j] * sin[j];
                o2[j] = x2[j] * cos[half + j] + sign * x1[j] * sin[half + j];
            }
        }
    }
}
