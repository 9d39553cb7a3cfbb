//! RMSNorm `x / sqrt(mean(x²) + eps) * weight` over the last axis, forward and backward, in
//! one pass per row on every core.
//!
//! Hand-written because burn's composed form (square, mean, add, sqrt, divide, multiply) walks
//! the activations six times and autodiff keeps two copies of them per norm; the fused op
//! keeps its input and one reciprocal RMS per row.

use rayon::prelude::*;

use super::fast_math::simd_targets;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// Writes `out` `[rows, width]` and the reciprocal RMS of every row `inv_rms` `[rows]`.
pub fn rms_norm_forward(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], inv_rms: &mut [f32]) {
    let width = weight.len();
    assert!(
        x.len().is_multiple_of(width) && out.len() == x.len() && inv_rms.len() == x.len() / width
    );
    out.par_chunks_mut(ROWS_PER_TASK * width)
        .zip(x.par_chunks(ROWS_PER_TASK * width))
        .zip(inv_rms.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|((out, x), inv_rms)| forward_rows(x, weight, eps, out, inv_rms));
}

simd_targets! {
    fn forward_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], inv_rms: &mut [f32]) {
        let width = weight.len();
        for ((out, x), r) in out.chunks_exact_mut(width).zip(x.chunks_exact(width)).zip(inv_rms) {
            *r = 1.0 / (mean_square(x) + eps).sqrt();
            for ((o, &x), &w) in out.iter_mut().zip(x).zip(weight) {
                *o = w * (x * *r);
            }
        }
    }
}

/// Mean of squares with eight partial sums, so the loop vectorises.
#[inline(always)]
fn mean_square(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let body = x.len() / 8 * 8;
    for chunk in x[..body].chunks_exact(8) {
        for l in 0..8 {
            lanes[l] += chunk[l] * chunk[l];
        }
    }
    let tail: f32 = x[body..].iter().map(|v| v * v).sum();
    (lanes.iter().sum::<f32>() + tail) / x.len() as f32
}

/// Given `grad` of the output, writes `dx` `[rows, width]` and returns `d_weight` `[width]`:
/// with `n = x * inv_rms`, `d_weight = Σ_rows grad * n` and
/// `dx = inv_rms * (grad * w - n * mean(grad * w * n))`.
pub fn rms_norm_backward(
    x: &[f32],
    weight: &[f32],
    inv_rms: &[f32],
    grad: &[f32],
    dx: &mut [f32],
) -> Vec<f32> {
    let width = weight.len();
    assert!(x.len().is_multiple_of(width) && grad.len() == x.len() && dx.len() == x.len());
    assert_eq!(inv_rms.len(), x.len() / width);
    // per-task partial sums added in task order, so d_weight is the same on every run
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(ROWS_PER_TASK * width)
        .zip(x.par_chunks(ROWS_PER_TASK * width))
        .zip(grad.par_chunks(ROWS_PER_TASK * width))
        .zip(inv_rms.par_chunks(ROWS_PER_TASK))
        .map(|(((dx, x), grad), inv_rms)| {
            let mut d_weight = vec![0.0f32; width];
            backward_rows(x, weight, inv_rms, grad, dx, &mut d_weight);
            d_weight
        })
        .collect();
    let mut d_weight = vec![0.0f32; width];
    for partial in partials {
        d_weight.iter_mut().zip(partial).for_each(|(a, b)| *a += b);
    }
    d_weight
}

simd_targets! {
    fn backward_rows(
        x: &[f32],
        weight: &[f32],
        inv_rms: &[f32],
        grad: &[f32],
        dx: &mut [f32],
        d_weight: &mut [f32],
    ) {
        let width = weight.len();
        for (((dx, x), grad), &r) in dx
            .chunks_exact_mut(width)
            .zip(x.chunks_exact(width))
            .zip(grad.chunks_exact(width))
            .zip(inv_rms)
        {
            let mut lanes = [0.0f32; 8];
            for j in 0..width {
                let n = x[j] * r;
                d_weight[j] += grad[j] * n;
                lanes[j % 8] += grad[j] * weight[j] * n;
            }
            let mean = lanes.iter().sum::<f32>() / width as f32;
            for j in 0..width {
                dx[j] = r * (grad[j] * weight[j] - x[j] * r * mean);
            }
        }
    }
}
