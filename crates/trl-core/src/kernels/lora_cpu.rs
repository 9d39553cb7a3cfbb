//! A projection with a LoRA adapter, `y = x @ W + scaling * (dropout(x) @ A) @ B`, as one
//! operation whose backward computes only the gradients asked for: under LoRA `dx`, `dA` and
//! `dB`, never the `[in, out]` gradient of the frozen `W`.
//!
//! Hand-written because peft's composition in burn ops (a Bernoulli tensor drawn element by
//! element on one core, the masked copy of `x`, two rank-`r` matmuls, a scale and a sum, each
//! a graph node with its own backward and buffers) cost more than the projection itself. Here
//! the dropout mask is a counter-based hash of `(seed, element)`: drawn on every core, and
//! recomputed in the backward instead of stored.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::buffer::{written, zeroed};
use super::fast_math::simd_targets;
use super::gemm::{Matrix, matmul, product};

/// Sizes of one call: `tokens` rows of `d_in` features to `d_out`, adapter rank `rank`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraShape {
    pub tokens: usize,
    pub d_in: usize,
    pub d_out: usize,
    pub rank: usize,
}

/// The weights in burn's `Linear` layout (`[in, out]`, row-major).
pub struct LoraWeights<'a> {
    /// `[d_in, d_out]`
    pub base: &'a [f32],
    /// `[d_in, rank]`
    pub a: &'a [f32],
    /// `[rank, d_out]`
    pub b: &'a [f32],
    /// peft's `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    pub scaling: f32,
}

/// Inverted dropout on the adapter's input: element `i` is kept with probability `keep`
/// (then scaled by `1 / keep`) when `hash(seed, i)` falls below `keep`, as `nn.Dropout` in
/// train mode does with its own random stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub keep: f64,
    pub seed: u64,
}

impl Dropout {
    /// The kept elements' threshold on a 32-bit hash, so that `P(hash < threshold) = keep`
    /// up to 2^-32 (a `keep` of 1 or more keeps everything without drawing).
    fn threshold(self) -> u32 {
        (self.keep.clamp(0.0, 1.0) * 4_294_967_296.0).min(u32::MAX as f64) as u32
    }
}

/// Whether element `index` is kept: murmur3's 32-bit finaliser of the index, with the seed's
/// halves mixed in before each multiplication.
///
/// 32-bit lanes on purpose: AVX2 has no 64-bit multiply, and a 64-bit (splitmix) hash ran one
/// element at a time, about a millisecond per `[2048, 256]` mask on two cores, 4% of a LoRA
/// step that draws three masks per adapted projection. The index wraps at 2^32 elements.
#[inline(always)]
fn kept(keys: (u32, u32), threshold: u32, index: u32) -> bool {
    let mut z = index.wrapping_mul(0x9E37_79B9).wrapping_add(keys.0);
    z ^= z >> 16;
    z = z.wrapping_mul(0x85EB_CA6B) ^ keys.1;
    z ^= z >> 13;
    z = z.wrapping_mul(0xC2B2_AE35);
    z ^= z >> 16;
    z < threshold
}

/// One drawn mask's constants: the hash keys (the seed's halves), the kept threshold and the
/// kept elements' factor `1 / keep`.
#[derive(Clone, Copy)]
struct Mask {
    keys: (u32, u32),
    threshold: u32,
    scale: f32,
}

impl Mask {
    fn new(dropout: Dropout) -> Self {
        Mask {
            keys: (dropout.seed as u32, (dropout.seed >> 32) as u32),
            threshold: dropout.threshold(),
            scale: (1.0 / dropout.keep) as f32,
        }
    }

    /// `value`, element `index` of the tensor, times its mask factor.
    #[inline(always)]
    fn apply(self, value: f32, index: u32) -> f32 {
        if kept(self.keys, self.threshold, index) {
            value * self.scale
        } else {
            0.0
        }
    }
}

simd_targets! {
    /// `values[i] *= mask(start + i) / keep` for one chunk.
    fn dropout_chunk(values: &mut [f32], mask: Mask, start: u32) {
        for (offset, v) in (0u32..).zip(values.iter_mut()) {
            *v = mask.apply(*v, start.wrapping_add(offset));
        }
    }
}

simd_targets! {
    /// `dst[i] = src[i] * mask(start + i) / keep` for one chunk.
    fn dropped_chunk(src: &[f32], dst: &mut [MaybeUninit<f32>], mask: Mask, start: u32) {
        for ((offset, d), &v) in (0u32..).zip(dst.iter_mut()).zip(src) {
            d.write(mask.apply(v, start.wrapping_add(offset)));
        }
    }
}

/// Elements per parallel task of the mask passes.
const CHUNK: usize = 16 * 1024;

/// `values[i] *= mask_i / keep` on every core (the mask of element `i` of the whole tensor).
pub fn apply_dropout(values: &mut [f32], dropout: Dropout) {
    if dropout.keep >= 1.0 {
        return;
    }
    let mask = Mask::new(dropout);
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, values)| dropout_chunk(values, mask, (chunk * CHUNK) as u32));
}

/// `dropout(x)` as a new buffer, read and written in one pass on every core.
fn dropped(x: &[f32], dropout: Dropout) -> Vec<f32> {
    let mask = Mask::new(dropout);
    // SAFETY: `dropped_chunk` writes every value of each chunk (`src` is as long as `dst`).
    unsafe {
        written(x.len(), CHUNK, |chunk, dst| {
            let start = chunk * CHUNK;
            dropped_chunk(&x[start..start + dst.len()], dst, mask, start as u32)
        })
    }
}

/// The `{0, 1 / keep}` factors [`apply_dropout`] multiplies `len` elements by: the mask as a
/// tensor, for the composed reference.
#[cfg(test)]
pub fn dropout_factors(len: usize, dropout: Dropout) -> Vec<f32> {
    let mut factors = vec![1.0f32; len];
    apply_dropout(&mut factors, dropout);
    factors
}

fn matrix(data: &[f32], rows: usize, cols: usize) -> Matrix<'_> {
    Matrix { data, rows, cols }
}

/// The adapter's input `[tokens, d_in]`: `x` itself, or its dropped-out copy.
fn adapter_input(x: &[f32], dropout: Option<Dropout>) -> std::borrow::Cow<'_, [f32]> {
    match dropout {
        None => x.into(),
        Some(dropout) if dropout.keep < 1.0 => dropped(x, dropout).into(),
        Some(_) => x.into(),
    }
}

/// Forward: the output `[tokens, d_out]` and `scaling * dropout(x) @ A` `[tokens, rank]`
/// (what the backward needs for `dB`; `rank` values per token).
pub fn lora_forward(
    x: &[f32],
    w: &LoraWeights<'_>,
    s: LoraShape,
    dropout: Option<Dropout>,
) -> (Vec<f32>, Vec<f32>) {
    let xm = matrix(x, s.tokens, s.d_in);
    let mut out = product(&xm, false, &matrix(w.base, s.d_in, s.d_out), false);
    if s.rank == 0 {
        return (out, Vec::new()); // a plain projection (`kernels::linear`)
    }
    let input = adapter_input(x, dropout);
    let mut hidden = zeroed::<f32>(s.tokens * s.rank);
    let input = matrix(&input, s.tokens, s.d_in);
    matmul(
        &input,
        false,
        &matrix(w.a, s.d_in, s.rank),
        false,
        &mut hidden,
        false,
    );
    hidden.iter_mut().for_each(|h| *h *= w.scaling);
    let hm = matrix(&hidden, s.tokens, s.rank);
    matmul(
        &hm,
        false,
        &matrix(w.b, s.rank, s.d_out),
        false,
        &mut out,
        true,
    );
    (out, hidden)
}

/// Which gradients the backward computes (a parent outside the graph needs none).
#[derive(Clone, Copy, Debug)]
pub struct LoraNeeds {
    pub x: bool,
    pub base: bool,
    pub a: bool,
    pub b: bool,
}

/// Gradients of the input and weights (`None` where not needed).
pub struct LoraGrads {
    /// `[tokens, d_in]`
    pub x: Option<Vec<f32>>,
    /// `[d_in, d_out]`
    pub base: Option<Vec<f32>>,
    /// `[d_in, rank]`
    pub a: Option<Vec<f32>>,
    /// `[rank, d_out]`
    pub b: Option<Vec<f32>>,
}

/// What the backward reads besides the weights.
pub struct LoraGradInputs<'a> {
    /// The forward's input `[tokens, d_in]` (before dropout).
    pub x: &'a [f32],
    /// The forward's `scaling * dropout(x) @ A` `[tokens, rank]`.
    pub hidden: &'a [f32],
    /// The output's gradient `[tokens, d_out]`.
    pub grad: &'a [f32],
}

/// Backward: with `g` the output gradient and `u = scaling * g @ Bᵀ` `[tokens, rank]`,
/// `dB = hiddenᵀ @ g`, `dA = dropout(x)ᵀ @ u`, `dx = g @ Wᵀ + dropout(u @ Aᵀ)` (the same
/// mask, recomputed from the seed) and `dW = xᵀ @ g`, each only when `needs` asks for it.
pub fn lora_backward(
    inputs: LoraGradInputs<'_>,
    w: &LoraWeights<'_>,
    s: LoraShape,
    dropout: Option<Dropout>,
    needs: LoraNeeds,
) -> LoraGrads {
    let g = matrix(inputs.grad, s.tokens, s.d_out);
    let hidden = matrix(inputs.hidden, s.tokens, s.rank);
    let d_b = needs.b.then(|| product(&hidden, true, &g, false));
    let x = matrix(inputs.x, s.tokens, s.d_in);
    let d_base = needs.base.then(|| product(&x, true, &g, false));
    let mut u = zeroed::<f32>(s.tokens * s.rank);
    let adapted = s.rank > 0;
    if adapted && (needs.a || needs.x) {
        matmul(
            &g,
            false,
            &matrix(w.b, s.rank, s.d_out),
            true,
            &mut u,
            false,
        );
        u.iter_mut().for_each(|v| *v *= w.scaling);
    }
    let um = matrix(&u, s.tokens, s.rank);
    let d_a = needs.a.then(|| {
        let input = adapter_input(inputs.x, dropout);
        let input = matrix(&input, s.tokens, s.d_in);
        product(&input, true, &um, false)
    });
    let d_x = needs.x.then(|| {
        let base = matrix(w.base, s.d_in, s.d_out);
        if !adapted {
            return product(&g, false, &base, true);
        }
        let mut d_x = product(&um, false, &matrix(w.a, s.d_in, s.rank), true);
        if let Some(dropout) = dropout {
            apply_dropout(&mut d_x, dropout);
        }
        matmul(&g, false, &base, true, &mut d_x, true);
        d_x
    });
    LoraGrads {
        x: d_x,
        base: d_base,
        a: d_a,
        b: d_b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_keeps_about_keep_of_the_elements_and_scales_them() {
        let dropout = Dropout {
            keep: 0.95,
            seed: 7,
        };
        let factors = dropout_factors(200_000, dropout);
        let kept = factors.iter().filter(|&&f| f != 0.0).count() as f64 / 200_000.0;
        assert!((kept - 0.95).abs() < 0.003, "kept {kept}");
        let scale = (1.0 / 0.95) as f32;
        assert!(factors.iter().all(|&f| f == 0.0 || f == scale));
    }

    #[test]
    fn a_dropped_copy_is_the_input_times_the_mask_factors() {
        let dropout = Dropout {
            keep: 0.7,
            seed: 0x1234_5678_9ABC,
        };
        let x: Vec<f32> = (0..2 * CHUNK + 9).map(|i| (i % 97) as f32 - 48.0).collect();
        let factors = dropout_factors(x.len(), dropout);
        let expected: Vec<f32> = x.iter().zip(&factors).map(|(x, f)| x * f).collect();
        assert_eq!(dropped(&x, dropout), expected);
    }

    #[test]
    fn the_mask_depends_on_the_seed_and_not_on_chunking() {
        let dropout = |seed| Dropout { keep: 0.5, seed };
        let whole = dropout_factors(3 * CHUNK + 5, dropout(1));
        assert_eq!(whole, dropout_factors(3 * CHUNK + 5, dropout(1)));
        assert_ne!(whole, dropout_factors(3 * CHUNK + 5, dropout(2)));
        assert_ne!(whole, dropout_factors(3 * CHUNK + 5, dropout(1 | 1 << 40)));
        // a prefix draws the same mask: element i's draw is a function of (seed, i) alone
        assert_eq!(&whole[..100], &dropout_factors(100, dropout(1))[..]);
    }
}
