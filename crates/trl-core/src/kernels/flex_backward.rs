//! The `Backward` steps of the fused ops recorded by `flex_autodiff`: each takes the state its
//! forward saved and registers the gradients of the parents the graph tracks.

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;

use super::attention_cpu::{AttentionGradInputs, attention_backward};
use super::buffer::zeroed;
use super::flex_forward::{attention_shape, logits_shape, mlp_shape, mlp_weights, rope_flex};
use super::flex_tensor::{contiguous, f32s, new_f32};
use super::logprobs_cpu::label_logprobs_backward;
use super::mlp_cpu::{MlpNeeds, Projections, mlp_backward};
use super::rms_norm_cpu::rms_norm_backward;

/// Backward of the fused MLP, from the projections its forward kept.
#[derive(Debug)]
pub(super) struct MlpBackward;

impl Backward<Flex, 4> for MlpBackward {
    /// x, gate, up, down (contiguous), and the input projections.
    type State = ([FlexTensor; 4], Projections);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let ([x, gate, up, down], projections) = ops.state;
        let shape = mlp_shape(&x, &gate);
        let [need_x, need_gate, need_up, need_down] = ops.parents.each_ref().map(Option::is_some);
        let needs = MlpNeeds {
            x: need_x,
            gate: need_gate,
            up: need_up,
            down: need_down,
        };
        let g = mlp_backward(
            f32s(&x),
            &mlp_weights(&gate, &up, &down),
            shape,
            f32s(&grad),
            needs,
            projections,
        );
        let results = [(g.x, &x), (g.gate, &gate), (g.up, &up), (g.down, &down)];
        for (node, (grad, like)) in ops.parents.into_iter().zip(results) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, new_f32(grad, &like.shape().to_vec()));
            }
        }
    }
}

/// Backward of the fused label log-probs: `grad * (onehot - softmax)` from the saved logits
/// and log-sum-exp.
#[derive(Debug)]
pub(super) struct LabelLogprobsBackward;

impl Backward<Flex, 1> for LabelLogprobsBackward {
    /// logits (contiguous), labels, log-sum-exp per position.
    type State = (FlexTensor, Vec<i64>, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_logits] = ops.parents;
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let (logits, labels, lse) = ops.state;
        if let Some(node) = node_logits {
            let shape = logits_shape(&logits);
            let mut d_logits = zeroed::<f32>(logits.shape().num_elements());
            label_logprobs_backward(
                f32s(&logits),
                &labels,
                f32s(&lse),
                f32s(&grad),
                shape,
                &mut d_logits,
            );
            let dims = [shape.batch, shape.seq, shape.vocab];
            grads.register::<Flex>(node.id, new_f32(d_logits, &dims));
        }
    }
}

/// Backward of the fused RMSNorm.
#[derive(Debug)]
pub(super) struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// x, weight, inverse RMS per row (contiguous).
    type State = [FlexTensor; 3];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let [x, weight, inv_rms] = ops.state;
        let mut dx = zeroed::<f32>(x.shape().num_elements());
        let d_weight = rms_norm_backward(
            f32s(&x),
            f32s(&weight),
            f32s(&inv_rms),
            f32s(&grad),
            &mut dx,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, new_f32(dx, &x.shape().to_vec()));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, new_f32(d_weight, &weight.shape().to_vec()));
        }
    }
}

/// Backward of the fused RoPE: the transposed rotation of the output gradient.
#[derive(Debug)]
pub(super) struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    /// cos, sin.
    type State = [FlexTensor; 2];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let [cos, sin] = ops.state;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, rope_flex(&grad, &cos, &sin, true));
        }
    }
}

/// Backward of the fused attention: recomputes probabilities tile by tile (see
/// `attention_cpu`).
#[derive(Debug)]
pub(super) struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// q, k, v, blocked, out, lse (contiguous).
    type State = [FlexTensor; 6];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad_out = contiguous(&grads.consume::<Flex>(&ops.node));
        let [q, k, v, blocked, out, lse] = ops.state;
        let shape = attention_shape(&q, &k);
        let mut dq = zeroed::<f32>(q.shape().num_elements());
        let mut dk = zeroed::<f32>(k.shape().num_elements());
        let mut dv = zeroed::<f32>(v.shape().num_elements());
        let inputs = AttentionGradInputs {
            q: f32s(&q),
            k: f32s(&k),
            v: f32s(&v),
            blocked: blocked.storage::<u8>(),
            out: f32s(&out),
            lse: f32s(&lse),
            grad_out: f32s(&grad_out),
        };
        attention_backward(shape, inputs, &mut dq, &mut dk, &mut dv);
        for (node, grad, like) in [(node_q, dq, &q), (node_k, dk, &k), (node_v, dv, &v)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, new_f32(grad, &like.shape().to_vec()));
            }
        }
    }
}
