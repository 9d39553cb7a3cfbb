//! The whole SwiGLU MLP, `down(silu(x @ gate) * (x @ up))`, as one operation that keeps its
//! input and its two input projections for the backward.
//!
//! Hand-written because composed ops kept three `[tokens, intermediate]` activations (gate, up
//! and their product) and wrote each twice; this keeps the two projections only (the product
//! is recomputed from them in the backward, an elementwise pass). Recomputing the projections
//! too halved the MLP's memory but cost two of its five products in every backward (9% of a
//! LoRA SFT step); the memory-bounded mode is per-layer gradient checkpointing (on by default,
//! as in TRL), under which what is kept here lives only while its layer's backward runs.

use super::gemm::{Matrix, matmul, product as gemm_product};
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
    let x = matrix(x, s.tokens, s.hidden);
    let [gate, up] = [w.gate, w.up]
        .map(|weight| gemm_product(&x, false, &matrix(weight, s.hidden, s.inter), false));
    Projections { gate, up }
}

/// Forward without a backward to come (inference, a reference model): the output
/// `[tokens, hidden]`, the projections freed before the down projection runs.
pub fn mlp_forward(x: &[f32], w: &MlpWeights<'_>, s: MlpShape) -> (Vec<f32>, ()) {
    let h = activated(&projections(x, w, s), s);
    (down(&h, w, s), ())
}

/// Forward of a recorded graph: the output `[tokens, hidden]` and the projections for the
/// backward.
pub fn mlp_forward_keeping(x: &[f32], w: &MlpWeights<'_>, s: MlpShape) -> (Vec<f32>, Projections) {
    let projections = projections(x, w, s);
    (down(&activated(&projections, s), w, s), projections)
}

/// `silu(gate) * up`, `[tokens, inter]`.
fn activated(projections: &Projections, s: MlpShape) -> Vec<f32> {
    assert_eq!(projections.gate.len(), s.tokens * s.inter);
    swiglu_forward(&projections.gate, &projections.up)
}

/// `h @ down`, `[tokens, hidden]`.
fn down(h: &[f32], w: &MlpWeights<'_>, s: MlpShape) -> Vec<f32> {
    let h = matrix(h, s.tokens, s.inter);
    gemm_product(&h, false, &matrix(w.down, s.inter, s.hidden), false)
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
) -> Option<Vec<f32>> {
    needed.then(|| gemm_product(lhs, lhs_t, rhs, rhs_t))
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
    let g = matrix(grad, s.tokens, s.hidden);
    // d_down = hᵀ @ grad   [inter, hidden]
    let d_down = needs.down.then(|| {
        let h = activated(&projections, s);
        gemm_product(&matrix(&h, s.tokens, s.inter), true, &g, false)
    });
    // dh = grad @ downᵀ   [tokens, inter]
    let dh = gemm_product(&g, false, &matrix(w.down, s.inter, s.hidden), true);
    // gate/up become their gradients
    let Projections { mut gate, mut up } = projections;
    swiglu_backward_in_place(&mut gate, &mut up, &dh);
    drop(dh);
    let x = matrix(x, s.tokens, s.hidden);
    let d_gate_act = matrix(&gate, s.tokens, s.inter);
    let d_up_act = matrix(&up, s.tokens, s.inter);
    // d_weight = xᵀ @ d_act   [hidden, inter]
    let d_gate = product(needs.gate, (&x, true), (&d_gate_act, false));
    let d_up = product(needs.up, (&x, true), (&d_up_act, false));
    // dx = d_gate_act @ gateᵀ + d_up_act @ upᵀ   [tokens, hidden]
    let dx = needs.x.then(|| {
        let gate_w = matrix(w.gate, s.hidden, s.inter);
        let up_w = matrix(w.up, s.hidden, s.inter);
        let mut dx = gemm_product(&d_gate_act, false, &gate_w, true);
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
