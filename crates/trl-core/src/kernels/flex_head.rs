//! [`super::flex::TrainingKernels::fused_head_logprobs`] on flex and on autodiff over flex:
//! the glue between burn's tensors and graph and the kernel of `head_logprobs_cpu`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};

use super::buffer::zeroed;
use super::flex_tensor::{contiguous, f32s, labels_i64, new_f32};
use super::head_logprobs_cpu::{
    HeadGradInputs, HeadShape, OUTPUT_COLUMNS, head_logprobs_backward, head_logprobs_forward,
};

/// The head's options besides its tensors.
#[derive(Clone, Copy, Debug)]
pub struct HeadOptions {
    pub vocab_major: bool,
    pub temperature: f64,
}

fn head_shape(hidden: &FlexTensor, weight: &FlexTensor, options: HeadOptions) -> HeadShape {
    let [tokens, width] = hidden.shape().dims::<2>();
    let [rows, cols] = weight.shape().dims::<2>();
    let vocab = if options.vocab_major { rows } else { cols };
    HeadShape {
        tokens,
        hidden: width,
        vocab,
        vocab_major: options.vocab_major,
        temperature: options.temperature as f32,
        chunk: HeadShape::chunk_for(vocab),
    }
}

/// Forward on contiguous tensors: `[tokens, OUTPUT_COLUMNS]` and the log-sum-exp per token.
fn forward(
    hidden: &FlexTensor,
    weight: &FlexTensor,
    labels: &[i64],
    options: HeadOptions,
) -> (FlexTensor, Vec<f32>) {
    let shape = head_shape(hidden, weight, options);
    let mut out = zeroed::<f32>(shape.tokens * OUTPUT_COLUMNS);
    let mut lse = zeroed::<f32>(shape.tokens);
    head_logprobs_forward(
        f32s(hidden),
        f32s(weight),
        labels,
        shape,
        &mut out,
        &mut lse,
    );
    (new_f32(out, &[shape.tokens, OUTPUT_COLUMNS]), lse)
}

/// The op on flex without autodiff.
pub fn head_logprobs_flex(
    hidden: FlexTensor,
    weight: FlexTensor,
    labels: FlexTensor,
    options: HeadOptions,
) -> FlexTensor {
    let (hidden, weight) = (contiguous(&hidden), contiguous(&weight));
    forward(&hidden, &weight, &labels_i64(&labels), options).0
}

/// What the backward recomputes the logits from.
#[derive(Clone, Debug)]
pub struct HeadState {
    hidden: FlexTensor,
    weight: FlexTensor,
    labels: Vec<i64>,
    lse: Vec<f32>,
    options: HeadOptions,
}

/// Backward of the fused head: recomputes each chunk's logits (see `head_logprobs_cpu`).
#[derive(Debug)]
struct HeadBackward;

impl Backward<Flex, 2> for HeadBackward {
    type State = HeadState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_hidden, node_weight] = ops.parents;
        let out_grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let state = ops.state;
        // Only the log-prob column carries a gradient; the statistics are detached.
        let grad: Vec<f32> = f32s(&out_grad)
            .chunks_exact(OUTPUT_COLUMNS)
            .map(|row| row[0])
            .collect();
        let shape = head_shape(&state.hidden, &state.weight, state.options);
        let mut d_hidden = node_hidden
            .as_ref()
            .map(|_| zeroed::<f32>(shape.tokens * shape.hidden));
        let mut d_weight = node_weight
            .as_ref()
            .map(|_| zeroed::<f32>(shape.hidden * shape.vocab));
        let inputs = HeadGradInputs {
            hidden: f32s(&state.hidden),
            weight: f32s(&state.weight),
            labels: &state.labels,
            lse: &state.lse,
            grad: &grad,
        };
        head_logprobs_backward(
            inputs,
            shape,
            d_hidden.as_deref_mut(),
            d_weight.as_deref_mut(),
        );
        if let (Some(node), Some(d)) = (node_hidden, d_hidden) {
            let dims = state.hidden.shape().to_vec();
            grads.register::<Flex>(node.id, new_f32(d, &dims));
        }
        if let (Some(node), Some(d)) = (node_weight, d_weight) {
            let dims = state.weight.shape().to_vec();
            grads.register::<Flex>(node.id, new_f32(d, &dims));
        }
    }
}

/// The op on autodiff over flex: records one graph node keeping the hidden states, the
/// weight (shared, not copied, when contiguous) and one log-sum-exp per token.
pub fn head_logprobs_autodiff<C: CheckpointStrategy>(
    hidden: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    labels: FlexTensor,
    options: HeadOptions,
) -> FloatTensor<Autodiff<Flex, C>> {
    let labels = labels_i64(&labels);
    match HeadBackward
        .prepare::<C>([hidden.node(), weight.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (hidden, weight) = (
                contiguous(hidden.primitive()),
                contiguous(weight.primitive()),
            );
            let (out, lse) = forward(&hidden, &weight, &labels, options);
            let state = HeadState {
                hidden,
                weight,
                labels,
                lse,
                options,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => {
            let (hidden, weight) = (
                contiguous(hidden.primitive()),
                contiguous(weight.primitive()),
            );
            prep.finish(forward(&hidden, &weight, &labels, options).0)
        }
    }
}
