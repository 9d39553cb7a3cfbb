//! SwiGLU's gate, `silu(gate) * up`, and its gradients in one pass over f32 slices on every
//! core (the elementwise part of the fused MLP).
//!
//! Hand-written because burn composes it from `sigmoid`, two multiplies and their backward
//! ops, each a separate walk over `[tokens, intermediate]` values (10% of an SFT step on flex,
//! one core); here forward is one pass and backward one more.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::written;
use super::fast_math::{sigmoid, simd_targets};

/// Elements per parallel task: big enough to amortise scheduling, small enough to split the
/// benchmark model's 2M-value activations over every core.
const CHUNK: usize = 16 * 1024;

/// `silu(gate) * up`, elementwise, into a new buffer (written once, not zeroed first).
pub fn swiglu_forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len());
    // SAFETY: `forward_chunk` writes every value of its chunk.
    unsafe {
        written(gate.len(), CHUNK, |index, out| {
            let range = index * CHUNK..index * CHUNK + out.len();
            forward_chunk(&gate[range.clone()], &up[range], out);
        })
    }
}

/// Given `grad` of `silu(gate) * up`, turns `gate` into `d_gate = grad * up * silu'(gate)`
/// with `silu'(g) = s (1 + g (1 - s))`, `s = sigmoid(g)`, and `up` into
/// `d_up = grad * silu(gate)`, in place (the MLP's backward needs no other copy).
pub fn swiglu_backward_in_place(gate: &mut [f32], up: &mut [f32], grad: &[f32]) {
    assert!(gate.len() == up.len() && up.len() == grad.len());
    gate.par_chunks_mut(CHUNK)
        .zip(up.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|((gate, up), grad)| backward_chunk_in_place(gate, up, grad));
}

simd_targets! {
    fn backward_chunk_in_place(gate: &mut [f32], up: &mut [f32], grad: &[f32]) {
        let n = gate.len();
        let (up, grad) = (&mut up[..n], &grad[..n]);
        for i in 0..n {
            let (g, u, dy) = (gate[i], up[i], grad[i]);
            let s = sigmoid(g);
            up[i] = dy * g * s;
            gate[i] = dy * u * s * (1.0 + g * (1.0 - s));
        }
    }
}

simd_targets! {
    fn forward_chunk(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
        assert!(gate.len() == out.len() && up.len() == out.len());
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            o.write(g * sigmoid(g) * u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_match_the_definition() {
        let n = 40_000;
        let gate: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 1000) as f32 - 500.0) / 60.0)
            .collect();
        let up: Vec<f32> = (0..n)
            .map(|i| ((i * 91 % 777) as f32 - 388.0) / 100.0)
            .collect();
        let grad: Vec<f32> = (0..n)
            .map(|i| ((i * 13 % 311) as f32 - 155.0) / 70.0)
            .collect();
        let out = swiglu_forward(&gate, &up);
        let (mut dg, mut du) = (gate.clone(), up.clone());
        swiglu_backward_in_place(&mut dg, &mut du, &grad);
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
