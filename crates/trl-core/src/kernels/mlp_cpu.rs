//! The whole SwiGLU MLP, `down(silu(x @ gate) * (x @ up))`, as one operation that keeps its
//! input and its two input projections for the backward.
//!
//! Hand-written because composed ops kept three `[tokens, intermediate]` activations (gate, up
//! and their product) and wrote each twice; this keeps the two projections only (the product
//! is recomputed from them in the backward, an elementwise pass). Recomputing the projections
//! too halved the MLP's memory but cost two of its five products in every backward (9% of a
//! LoRA SFT step); the memory-bounded mode is per-layer gradient checkpointing (on by default,
//! as in TRL), under which what is kept here lives only while its layer's backward runs.

use super::buffer::zeroed;
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

/// The MLP's input projections `x @ gate` and `x @ up`, each `[tokens, inter]`: what the
/// forward hands to the backward.
#[derive(Clone)]
pub struct Projections {
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Projections({} + {} values)",
            self.gate.len(),
            self.up.len()
        )
    }
}

/// `(x @ gate, x @ up)`, each `[tokens, inter]`.
fn projections(x: &[f32], w: &MlpWeights<'_>, s: MlpShape) -> Projections {
    let x = Matrix {
        data: x,
        rows: s.tokens,
        cols: s.hidden,
    };
    let mut out = [
        zeroed::<f32>(s.tokens * s.inter),
        zeroed::<f32>(s.tokens * s.inter),
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
    Projections { gate, up }
}

/// Forward without a backward to come (inference, a reference model): `out`
/// `[tokens, hidden]`, the projections freed before the down projection runs.
pub fn mlp_forward(x: &[f32], w: &MlpWeights<'_>, s: MlpShape, out: &mut [f32]) {
    let h = activated(&projections(x, w, s), s);
    down_into(&h, w, s, out);
}

/// Forward of a recorded graph: `out` `[tokens, hidden]`; returns the projections for the
/// backward.
pub fn mlp_forward_keeping(
    x: &[f32],
    w: &MlpWeights<'_>,
    s: MlpShape,
    out: &mut [f32],
) -> Projections {
    let projections = projections(x, w, s);
    down_into(&activated(&projections, s), w, s, out);
    projections
}

/// `silu(gate) * up`, `[tokens, inter]`.
fn activated(projections: &Projections, s: MlpShape) -> Vec<f32> {
    let mut h = zeroed::<f32>(s.tokens * s.inter);
    swiglu_forward(&projections.gate, &projections.up, &mut h);
    h
}

/// `out = h @ down`, `[tokens, hidden]`.
fn down_into(h: &[f32], w: &MlpWeights<'_>, s: MlpShape, out: &mut [f32]) {
    let h = Matrix {
        data: h,
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

/// Which gradients the backward computes: a frozen weight (LoRA, a reference model) or an
/// input outside the graph needs none, and each skipped weight saves a
/// `[hidden, tokens] x [tokens, inter]` product, a quarter of the MLP's backward.
#[derive(Clone, Copy, Debug)]
pub struct MlpNeeds {
    pub x: bool,
    pub gate: bool,
    pub up: bool,
    pub down: bool,
}

/// Gradients of the MLP's input and weights (`None` where not needed).
pub struct MlpGrads {
    /// `[tokens, hidden]`
    pub x: Option<Vec<f32>>,
    /// `[hidden, inter]`
    pub gate: Option<Vec<f32>>,
    /// `[hidden, inter]`
    pub up: Option<Vec<f32>>,
    /// `[inter, hidden]`
    pub down: Option<Vec<f32>>,
}

fn matrix(data: &[f32], rows: usize, cols: usize) -> Matrix<'_> {
    Matrix { data, rows, cols }
}

/// `op(lhs) @ op(rhs)` into a new `[rows, cols]` buffer when `needed`.
fn product(
    needed: bool,
    (lhs, lhs_t): (&Matrix<'_>, bool),
    (rhs, rhs_t): (&Matrix<'_>, bool),
    len: usize,
) -> Option<Vec<f32>> {
    needed.then(|| {
        let mut out = zeroed::<f32>(len);
        matmul(lhs, lhs_t, rhs, rhs_t, &mut out, false);
        out
    })
}

/// Backward given `grad` `[tokens, hidden]` of the output and the forward's projections: the
/// chain rule through the down projection, SwiGLU and the two input projections, computing
/// only the gradients in `needs`.
pub fn mlp_backward(
    x: &[f32],
    w: &MlpWeights<'_>,
    s: MlpShape,
    grad: &[f32],
    needs: MlpNeeds,
    projections: Projections,
) -> MlpGrads {
    let Projections { mut gate, mut up } = projections;
    let mut buffer = zeroed::<f32>(s.tokens * s.inter);
    let g = matrix(grad, s.tokens, s.hidden);
    // d_down = hᵀ @ grad   [inter, hidden]
    let d_down = needs.down.then(|| {
        swiglu_forward(&gate, &up, &mut buffer);
        let h = matrix(&buffer, s.tokens, s.inter);
        let mut d = zeroed::<f32>(s.inter * s.hidden);
        matmul(&h, true, &g, false, &mut d, false);
        d
    });
    // dh = grad @ downᵀ   [tokens, inter]
    let down = matrix(w.down, s.inter, s.hidden);
    matmul(&g, false, &down, true, &mut buffer, false);
    // gate/up become their gradients
    swiglu_backward_in_place(&mut gate, &mut up, &buffer);
    drop(buffer);
    let x = matrix(x, s.tokens, s.hidden);
    let d_gate_act = matrix(&gate, s.tokens, s.inter);
    let d_up_act = matrix(&up, s.tokens, s.inter);
    // d_weight = xᵀ @ d_act   [hidden, inter]
    let weight_len = s.hidden * s.inter;
    let d_gate = product(needs.gate, (&x, true), (&d_gate_act, false), weight_len);
    let d_up = product(needs.up, (&x, true), (&d_up_act, false), weight_len);
    // dx = d_gate_act @ gateᵀ + d_up_act @ upᵀ   [tokens, hidden]
    let dx = needs.x.then(|| {
        let mut dx = zeroed::<f32>(s.tokens * s.hidden);
        let gate_w = matrix(w.gate, s.hidden, s.inter);
        let up_w = matrix(w.up, s.hidden, s.inter);
        matmul(&d_gate_act, false, &gate_w, true, &mut dx, false);
        matmul(&d_up_act, false, &up_w, true, &mut dx, true);
        dx
    });
    MlpGrads {
        x: dx,
        gate: d_gate,
        up: d_up,
        down: d_down,
    }
}
