//! [`super::flex::TrainingKernels::fused_lora_linear`] on flex and on autodiff over flex: the
//! glue between burn's tensors and graph and the kernel of `lora_cpu`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};

use super::flex_tensor::{contiguous, f32s, new_f32};
use super::lora_cpu::{
    Dropout, LoraGradInputs, LoraNeeds, LoraShape, LoraWeights, lora_backward, lora_forward,
};

/// The op's options besides its tensors.
#[derive(Clone, Copy, Debug)]
pub struct LoraOptions {
    pub scaling: f64,
    /// `None`: the adapter sees `x` itself (no dropout drawn for this forward).
    pub dropout: Option<Dropout>,
}

fn lora_shape(x: &FlexTensor, base: &FlexTensor, a: &FlexTensor) -> LoraShape {
    let [tokens, d_in] = x.shape().dims::<2>();
    LoraShape {
        tokens,
        d_in,
        d_out: base.shape().dims::<2>()[1],
        rank: a.shape().dims::<2>()[1],
    }
}

fn weights<'a>(
    base: &'a FlexTensor,
    a: &'a FlexTensor,
    b: &'a FlexTensor,
    scaling: f64,
) -> LoraWeights<'a> {
    LoraWeights {
        base: f32s(base),
        a: f32s(a),
        b: f32s(b),
        scaling: scaling as f32,
    }
}

/// Forward on contiguous tensors: `[tokens, d_out]` and the adapter's scaled hidden
/// `[tokens, rank]`.
fn forward(tensors: &[FlexTensor; 4], options: LoraOptions) -> (FlexTensor, Vec<f32>) {
    let [x, base, a, b] = tensors;
    let shape = lora_shape(x, base, a);
    let (out, hidden) = lora_forward(
        f32s(x),
        &weights(base, a, b, options.scaling),
        shape,
        options.dropout,
    );
    (new_f32(out, &[shape.tokens, shape.d_out]), hidden)
}

/// The op on flex without autodiff.
pub fn lora_linear_flex(tensors: [FlexTensor; 4], options: LoraOptions) -> FlexTensor {
    forward(&tensors.map(|t| contiguous(&t)), options).0
}

/// What the backward reads: x, base, A, B (contiguous; `x` shared with the graph, not
/// copied), the scaled hidden and the options (the mask is recomputed from its seed).
#[derive(Clone, Debug)]
pub struct LoraState {
    tensors: [FlexTensor; 4],
    hidden: Vec<f32>,
    options: LoraOptions,
}

/// Backward of the fused LoRA projection (see `lora_cpu`).
#[derive(Debug)]
struct LoraBackward;

impl Backward<Flex, 4> for LoraBackward {
    type State = LoraState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let LoraState {
            tensors,
            hidden,
            options,
        } = ops.state;
        let [x, base, a, b] = &tensors;
        let [need_x, need_base, need_a, need_b] = ops.parents.each_ref().map(Option::is_some);
        let needs = LoraNeeds {
            x: need_x,
            base: need_base,
            a: need_a,
            b: need_b,
        };
        let inputs = LoraGradInputs {
            x: f32s(x),
            hidden: &hidden,
            grad: f32s(&grad),
        };
        let g = lora_backward(
            inputs,
            &weights(base, a, b, options.scaling),
            lora_shape(x, base, a),
            options.dropout,
            needs,
        );
        let results = [(g.x, x), (g.base, base), (g.a, a), (g.b, b)];
        for (node, (grad, like)) in ops.parents.into_iter().zip(results) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, new_f32(grad, &like.shape().to_vec()));
            }
        }
    }
}

/// The op on autodiff over flex: one graph node keeping `x` (shared), the weights (shared)
/// and `tokens * rank` values.
pub fn lora_linear_autodiff<C: CheckpointStrategy>(
    tensors: [FloatTensor<Autodiff<Flex, C>>; 4],
    options: LoraOptions,
) -> FloatTensor<Autodiff<Flex, C>> {
    let nodes = tensors.each_ref().map(|t| t.node());
    let primitives = tensors.each_ref().map(|t| contiguous(t.primitive()));
    match LoraBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, hidden) = forward(&primitives, options);
            let state = LoraState {
                tensors: primitives,
                hidden,
                options,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&primitives, options).0),
    }
}
