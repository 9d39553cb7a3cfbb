//! SwiGLU's gate, `silu(gate) * up`, and its gradients in one pass over f32 slices on every
//! core.
//!
//! Hand-written because burn composes it from `sigmoid`, two multiplies and their backward
//! ops, each a separate walk over `[tokens, intermediate]` values (10% of an SFT step on flex,
//! one core); here forward is one pass and backward one more.

use rayon::prelude::*;

use super::fast_math::{sigmoid, simd_targets};
use super::gemm::{Matrix, matmul};

/// Elements per parallel task: big enough to amortise scheduling, small enough to split the
/// benchmark model's 2M-value activations over every core.
const CHUNK: usize = 16 * 1024;

/// `out = silu(gate) * up`, elementwise.
pub fn swiglu_forward(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && up.len() == out.len());
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(out, (gate, up))| forward_chunk(gate, up, out));
}

/// Given `grad` of `silu(gate) * up`, writes `d_gate = grad * up * silu'(gate)` with
/// `silu'(g) = s (1 + g (1 - s))`, `s = sigmoid(g)`, and `d_up = grad * silu(gate)`.
pub fn swiglu_backward(
    gate: &[f32],
    up: &[f32],
    grad: &[f32],
    d_gate: &mut [f32],
    d_up: &mut [f32],
) {
    let n = gate.len();
    assert!(up.len() == n && grad.len() == n && d_gate.len() == n && d_up.len() == n);
    d_gate
        .par_chunks_mut(CHUNK)
        .zip(d_up.par_chunks_mut(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((d_gate, d_up), (gate, up)), grad)| {
            backward_chunk(gate, up, grad, d_gate, d_up)
        });
}

/// Sizes of the MLP's down projection: `tokens` rows, `inter` (intermediate) columns in,
/// `hidden` columns out.
#[derive(Clone, Copy, Debug)]
pub struct DownShape {
    pub tokens: usize,
    pub inter: usize,
    pub hidden: usize,
}

/// `out` `[tokens, hidden]` = `silu(gate) * up` `[tokens, inter]` @ `weight` `[inter, hidden]`.
/// The product is never stored: the backward recomputes it, so autodiff keeps only `gate` and
/// `up` for the MLP (a third of its activations saved).
pub fn swiglu_down_forward(
    gate: &[f32],
    up: &[f32],
    weight: &[f32],
    shape: DownShape,
    out: &mut [f32],
) {
    let DownShape { tokens, inter, hidden } = shape;
    let mut h = vec![0.0f32; tokens * inter];
    swiglu_forward(gate, up, &mut h);
    let h = Matrix { data: &h, rows: tokens, cols: inter };
    let w = Matrix { data: weight, rows: inter, cols: hidden };
    matmul(&h, false, &w, false, out);
}

/// Backward of [`swiglu_down_forward`] given `grad` `[tokens, hidden]`: writes `d_gate`, `d_up`
/// `[tokens, inter]` and `d_weight` `[inter, hidden]`.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_down_backward(
    gate: &[f32],
    up: &[f32],
    weight: &[f32],
    grad: &[f32],
    shape: DownShape,
    d_gate: &mut [f32],
    d_up: &mut [f32],
    d_weight: &mut [f32],
) {
    let DownShape { tokens, inter, hidden } = shape;
    let mut buffer = vec![0.0f32; tokens * inter];
    swiglu_forward(gate, up, &mut buffer);
    let g = Matrix { data: grad, rows: tokens, cols: hidden };
    // d_weight = hᵀ @ grad   [inter, hidden]
    matmul(&Matrix { data: &buffer, rows: tokens, cols: inter }, true, &g, false, d_weight);
    // dh = grad @ weightᵀ   [tokens, inter], into the same buffer
    let w = Matrix { data: weight, rows: inter, cols: hidden };
    matmul(&g, false, &w, true, &mut buffer);
    swiglu_backward(gate, up, &buffer, d_gate, d_up);
}

simd_targets! {
    fn forward_chunk(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g * sigmoid(g) * u;
        }
    }
}

simd_targets! {
    fn backward_chunk(gate: &[f32], up: &[f32], grad: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
        let n = gate.len();
        let (up, grad, d_gate, d_up) = (&up[..n], &grad[..n], &mut d_gate[..n], &mut d_up[..n]);
        for i in 0..n {
            let (g, u, dy) = (gate[i], up[i], grad[i]);
            let s = sigmoid(g);
            d_up[i] = dy * g * s;
            d_gate[i] = dy * u * s * (1.0 + g * (1.0 - s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_match_the_definition() {
        let n = 40_000;
        let gate: Vec<f32> = (0..n).map(|i| ((i * 37 % 1000) as f32 - 500.0) / 60.0).collect();
        let up: Vec<f32> = (0..n).map(|i| ((i * 91 % 777) as f32 - 388.0) / 100.0).collect();
        let grad: Vec<f32> = (0..n).map(|i| ((i * 13 % 311) as f32 - 155.0) / 70.0).collect();
        let mut out = vec![0.0; n];
        swiglu_forward(&gate, &up, &mut out);
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        swiglu_backward(&gate, &up, &grad, &mut dg, &mut du);
        for i in 0..n {
            let (g, u, dy) = (gate[i] as f64, up[i] as f64, grad[i] as f64);
            let silu = |g: f64| g / (1.0 + (-g).exp());
            assert!((out[i] as f64 - silu(g) * u).abs() < 1e-5 * (1.0 + (silu(g) * u).abs()));
            // central difference of silu
            let h = 1e-6;
            let dsilu = (silu(g + h) - silu(g - h)) / (2.0 * h);
            assert!((dg[i] as f64 - dy * u * dsilu).abs() < 1e-4 * (1.0 + (dy * u).abs()));
            assert!((du[i] as f64 - dy * silu(g)).abs() < 1e-5 * (1.0 + (dy * silu(g)).abs()));
        }
    }
}
