//! The whole SwiGLU MLP, `down(silu(x @ gate) * (x @ up))`, as one operation that keeps only
//! its input for the backward.
//!
//! Hand-written because the MLP's `[tokens, intermediate]` activations (gate, up and their
//! product) were three quarters of what a training step keeps alive: recomputing the two
//! input projections in the backward costs about a tenth of a step and halves peak memory.

use super::gemm::{Matrix, matmul};
use super::swiglu_cpu::{swiglu_backward_in_place, swiglu_forward};

/// Sizes of one MLP call: `tokens` rows of `hidden` features, `inter` intermediate features.
#[derive(Clone, Copy, Debug)]
pub struct MlpShape {
    pub tokens: usize,
    pub hidden: usize,
    pub inter: usize,
}

/// The MLP's weights in burn's `Linear` layout (`[in, out]`, row-major).
pub struct MlpWeights<'a> {
    /// `[hidden, inter]`
    pub gate: &'a [f32],
    /// `[hidden, inter]`
    pub up: &'a [f32],
    /// `[inter, hidden]`
    pub down: &'a [f32],
}

/// `(x @ gate, x @ up)`, each `[tokens, inter]`.
fn projections(x: &[f32], w: &MlpWeights<'_>, s: MlpShape) -> (Vec<f32>, Vec<f32>) {
    let x = Matrix {
        data: x,
        rows: s.tokens,
        cols: s.hidden,
    };
    let mut out = [
        vec![0.0f32; s.tokens * s.inter],
        vec![0.0f32; s.tokens * s.inter],
    ];
    for (weight, out) in [w.gate, w.up].into_iter().zip(&mut out) {
        let weight = Matrix {
            data: weight,
            rows: s.hidden,
            cols: s.inter,
        };
        matmul(&x, false, &weight, false, out, false);
    }
    let [gate, up] = out;
    (gate, up)
}

/// Forward: `out` `[tokens, hidden]`.
pub fn mlp_forward(x: &[f32], w: &MlpWeights<'_>, s: MlpShape, out: &mut [f32]) {
    let (gate, up) = projections(x, w, s);
    let mut h = vec![0.0f32; s.tokens * s.inter];
    swiglu_forward(&gate, &up, &mut h);
    drop((gate, up));
    let h = Matrix {
        data: &h,
        rows: s.tokens,
        cols: s.inter,
    };
    let down = Matrix {
        data: w.down,
        rows: s.inter,
        cols: s.hidden,
    };
    matmul(&h, false, &down, false, out, false);
}

/// Gradients of the MLP's input and weights.
pub struct MlpGrads {
    /// `[tokens, hidden]`
    pub x: Vec<f32>,
    /// `[hidden, inter]`
    pub gate: Vec<f32>,
    /// `[hidden, inter]`
    pub up: Vec<f32>,
    /// `[inter, hidden]`
    pub down: Vec<f32>,
}

/// Backward given `grad` `[tokens, hidden]` of the output: recomputes the projections, then
/// runs the chain rule through the down projection, SwiGLU and the two input projections.
pub fn mlp_backward(x: &[f32], w: &MlpWeights<'_>, s: MlpShape, grad: &[f32]) -> MlpGrads {
    let (mut gate, mut up) = projections(x, w, s);
    let mut buffer = vec![0.0f32; s.tokens * s.inter];
    swiglu_forward(&gate, &up, &mut buffer);
    let g = Matrix {
        data: grad,
        rows: s.tokens,
        cols: s.hidden,
    };
    // d_down = hᵀ @ grad   [inter, hidden]
    let mut d_down = vec![0.0f32; s.inter * s.hidden];
    let h = Matrix {
        data: &buffer,
        rows: s.tokens,
        cols: s.inter,
    };
    matmul(&h, true, &g, false, &mut d_down, false);
    // dh = grad @ downᵀ   [tokens, inter]
    let down = Matrix {
        data: w.down,
        rows: s.inter,
        cols: s.hidden,
    };
    matmul(&g, false, &down, true, &mut buffer, false);
    // gate/up become their gradients
    swiglu_backward_in_place(&mut gate, &mut up, &buffer);
    drop(buffer);
    let x = Matrix {
        data: x,
        rows: s.tokens,
        cols: s.hidden,
    };
    let d_gate_act = Matrix {
        data: &gate,
        rows: s.tokens,
        cols: s.inter,
    };
    let d_up_act = Matrix {
        data: &up,
        rows: s.tokens,
        cols: s.inter,
    };
    // d_weight = xᵀ @ d_act   [hidden, inter]
    let mut d_gate = vec![0.0f32; s.hidden * s.inter];
    let mut d_up = vec![0.0f32; s.hidden * s.inter];
    matmul(&x, true, &d_gate_act, false, &mut d_gate, false);
    matmul(&x, true, &d_up_act, false, &mut d_up, false);
    // dx = d_gate_act @ gateᵀ + d_up_act @ upᵀ   [tokens, hidden]
    let mut dx = vec![0.0f32; s.tokens * s.hidden];
    let gate_w = Matrix {
        data: w.gate,
        rows: s.hidden,
        cols: s.inter,
    };
    let up_w = Matrix {
        data: w.up,
        rows: s.hidden,
        cols: s.inter,
    };
    matmul(&d_gate_act, false, &gate_w, true, &mut dx, false);
    matmul(&d_up_act, false, &up_w, true, &mut dx, true);
    MlpGrads {
        x: dx,
        gate: d_gate,
        up: d_up,
        down: d_down,
    }
}
