//! The hand-written CPU kernels plugged into burn as a backend extension: implemented for the
//! flex backend, and for autodiff over flex with their own backward, so a training step on
//! CPU records one graph node per fused op instead of one per elementary op.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};

use super::attention_cpu::{
    AttentionGradInputs, AttentionShape, attention_backward, attention_forward,
};
use super::cached_attention_cpu::{CachedAttentionShape, cached_attention_forward};
use super::flex_head::{HeadOptions, head_logprobs_autodiff, head_logprobs_flex};
use super::flex_lora::{LoraOptions, lora_linear_autodiff, lora_linear_flex};
use super::logprobs_cpu::{
    LogitsShape, STATS, label_logprobs_backward, label_logprobs_forward, token_stats,
};
use super::lora_cpu::Dropout;
use super::mlp_cpu::{MlpNeeds, MlpShape, MlpWeights, mlp_backward, mlp_forward};
use super::rms_norm_cpu::{rms_norm_backward, rms_norm_forward};
use super::rope_cpu;

/// The fused operations trl-rs adds to burn. Model and loss code call them through the
/// functions of [`super`] ([`super::attention`], [`super::swiglu_mlp`], [`super::rms_norm`],
/// [`super::rope`], [`super::label_log_probs`]), which check that the tensors suit them.
#[backend_extension(Autodiff, Flex)]
pub trait TrainingKernels: Backend {
    /// q `[batch, heads, seq, head_dim]`, k/v `[batch, kv_heads, seq, head_dim]`, blocked
    /// `[batch, 1, seq, seq]` -> `[batch, seq, heads, head_dim]`.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: BoolTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The SwiGLU MLP without biases, `(silu(x @ gate) * (x @ up)) @ down`: x
    /// `[batch, seq, hidden]`, gate/up `[hidden, inter]`, down `[inter, hidden]` (burn's
    /// `Linear` layout) -> `[batch, seq, hidden]`.
    fn fused_mlp(
        x: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        down: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Log-probs `[batch, seq - 1]` of `labels` `[batch, seq - 1]` (in the vocabulary) under
    /// `logits` `[batch, seq, vocab]`, position `t` predicting `labels[:, t]`.
    fn fused_label_logprobs(
        logits: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The LM head and label log-probs in one chunked pass: `hidden` `[tokens, hidden]`,
    /// `weight` `[vocab, hidden]` when `vocab_major` (an embedding table) else `[hidden, vocab]`,
    /// `labels` `[tokens]` (in the vocabulary) -> `[tokens, 1 + STATS]`: column 0 is the label's
    /// log-prob under `softmax(hidden @ W / temperature)` (the only column with a gradient),
    /// the others the statistics of [`super::label_log_probs`].
    fn fused_head_logprobs(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        labels: IntTensor<Self>,
        vocab_major: bool,
        temperature: f64,
    ) -> FloatTensor<Self>;

    /// Per predicting position of `logits` `[batch, seq, vocab]`: entropy, argmax, `log Σ p²`
    /// and mean logit, `[batch, seq - 1, 4]`, without gradient.
    fn fused_token_stats(logits: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Decoding attention (no gradient): q `[batch, heads, new, head_dim]` against the KV
    /// cache k/v `[batch, kv_heads, capacity, head_dim]`, blocked `[batch, 1, new, capacity]`
    /// -> `[batch, new, heads, head_dim]`.
    fn fused_cached_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: BoolTensor<Self>,
    ) -> FloatTensor<Self>;

    /// A projection with a LoRA adapter, `x @ base + scaling * (dropout(x) @ a) @ b`: x
    /// `[tokens, in]`, base `[in, out]`, a `[in, r]`, b `[r, out]` -> `[tokens, out]`; the
    /// dropout keeps an element with probability `keep` (none drawn when `keep >= 1`), its
    /// mask a hash of `seed` and the element's index.
    fn fused_lora_linear(
        x: FloatTensor<Self>,
        base: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scaling: f64,
        keep: f64,
        seed: u64,
    ) -> FloatTensor<Self>;

    /// RMSNorm of `x` `[.., width]` over its last axis, scaled by `weight` `[width]`.
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// `x` `[batch, heads, seq, head_dim]` rotated by `cos`/`sin` `[batch, 1, seq, head_dim]`
    /// (constants: no gradient flows to them).
    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// True when `tensor` is an f32 tensor of the flex backend (with or without autodiff): the
/// only case these kernels handle.
pub fn runs_on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(
        tensor.device().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    ) && tensor.dtype() == DType::F32
}

/// [`TrainingKernels::fused_attention`] on high-level tensors.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, blocked: Tensor<4, Bool>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        blocked.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_cached_attention`] on high-level tensors.
pub fn cached_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Tensor<4, Bool>,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_cached_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        blocked.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_mlp`] on high-level tensors.
pub fn mlp(x: Tensor<3>, gate: Tensor<2>, up: Tensor<2>, down: Tensor<2>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_mlp(
        x.into_dispatch(),
        gate.into_dispatch(),
        up.into_dispatch(),
        down.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_lora_linear`] on high-level tensors.
pub fn lora_linear(
    x: Tensor<2>,
    [base, a, b]: [Tensor<2>; 3],
    scaling: f64,
    dropout: Option<Dropout>,
) -> Tensor<2> {
    let (keep, seed) = dropout.map_or((1.0, 0), |d| (d.keep, d.seed));
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_lora_linear(
        x.into_dispatch(),
        base.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        scaling,
        keep,
        seed,
    ))
}

/// The options of the LoRA op from its scalar arguments.
fn lora_options(scaling: f64, keep: f64, seed: u64) -> LoraOptions {
    LoraOptions {
        scaling,
        dropout: (keep < 1.0).then_some(Dropout { keep, seed }),
    }
}

/// [`TrainingKernels::fused_label_logprobs`] on high-level tensors.
pub fn label_logprobs(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_label_logprobs(
        logits.into_dispatch(),
        labels.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_head_logprobs`] on high-level tensors.
pub fn head_logprobs(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    labels: Tensor<1, Int>,
    vocab_major: bool,
    temperature: f64,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_head_logprobs(
        hidden.into_dispatch(),
        weight.into_dispatch(),
        labels.into_dispatch(),
        vocab_major,
        temperature,
    ))
}

/// [`TrainingKernels::fused_token_stats`] on high-level tensors.
pub fn token_stats_of(logits: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_token_stats(
        logits.into_dispatch(),
    ))
}

/// [`TrainingKernels::fused_rms_norm`] on high-level tensors.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_rms_norm(
        x.into_dispatch(),
        weight.into_dispatch(),
        eps,
    ))
}

/// [`TrainingKernels::fused_rope`] on high-level tensors.
pub fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as TrainingKernels>::fused_rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    ))
}

/// A contiguous copy (or the tensor itself when it already is one) whose storage is exactly
/// its elements.
pub(super) fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// Cannot fail on user data: `kernels/mod.rs` dispatches to the fused kernels only after
/// `all_f32` (other dtypes run composed), and every caller passes a `contiguous` copy.
pub(super) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("fused kernels take contiguous f32 tensors")
}

pub(super) fn new_f32(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims.to_vec()))
}

fn attention_shape(q: &FlexTensor, k: &FlexTensor) -> AttentionShape {
    let [batch, heads, seq, head_dim] = q.shape().dims::<4>();
    let kv_heads = k.shape().dims::<4>()[1];
    AttentionShape {
        batch,
        heads,
        kv_heads,
        seq,
        head_dim,
    }
}

/// Forward on flex: the output and the log-sum-exp of every row `[batch, heads, seq]`.
fn attention_flex(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    blocked: &FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let shape = attention_shape(q, k);
    let (q, k, v, blocked) = (
        contiguous(q),
        contiguous(k),
        contiguous(v),
        contiguous(blocked),
    );
    let dims = [shape.batch, shape.seq, shape.heads, shape.head_dim];
    let mut out = vec![0.0f32; q.shape().num_elements()];
    let mut lse = vec![0.0f32; shape.batch * shape.heads * shape.seq];
    attention_forward(
        shape,
        f32s(&q),
        f32s(&k),
        f32s(&v),
        blocked.storage::<u8>(),
        &mut out,
        &mut lse,
    );
    (
        new_f32(out, &dims),
        new_f32(lse, &[shape.batch, shape.heads, shape.seq]),
    )
}

/// The decoding attention on flex (inference only).
fn cached_attention_flex(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    blocked: &FlexTensor,
) -> FlexTensor {
    let [batch, heads, new, head_dim] = q.shape().dims::<4>();
    let [_, kv_heads, capacity, _] = k.shape().dims::<4>();
    let shape = CachedAttentionShape {
        batch,
        heads,
        kv_heads,
        new,
        capacity,
        head_dim,
    };
    let (q, k, v, blocked) = (
        contiguous(q),
        contiguous(k),
        contiguous(v),
        contiguous(blocked),
    );
    let mut out = vec![0.0f32; q.shape().num_elements()];
    cached_attention_forward(
        shape,
        f32s(&q),
        f32s(&k),
        f32s(&v),
        blocked.storage::<u8>(),
        &mut out,
    );
    new_f32(out, &[batch, new, heads, head_dim])
}

fn mlp_shape(x: &FlexTensor, gate: &FlexTensor) -> MlpShape {
    let [batch, seq, hidden] = x.shape().dims::<3>();
    MlpShape {
        tokens: batch * seq,
        hidden,
        inter: gate.shape().dims::<2>()[1],
    }
}

/// The MLP's weights as slices (all contiguous).
fn mlp_weights<'a>(
    gate: &'a FlexTensor,
    up: &'a FlexTensor,
    down: &'a FlexTensor,
) -> MlpWeights<'a> {
    MlpWeights {
        gate: f32s(gate),
        up: f32s(up),
        down: f32s(down),
    }
}

fn mlp_flex(x: &FlexTensor, gate: &FlexTensor, up: &FlexTensor, down: &FlexTensor) -> FlexTensor {
    let (x, gate, up, down) = (
        contiguous(x),
        contiguous(gate),
        contiguous(up),
        contiguous(down),
    );
    let shape = mlp_shape(&x, &gate);
    let mut out = vec![0.0f32; x.shape().num_elements()];
    mlp_forward(f32s(&x), &mlp_weights(&gate, &up, &down), shape, &mut out);
    new_f32(out, &x.shape().to_vec())
}

fn logits_shape(logits: &FlexTensor) -> LogitsShape {
    let [batch, seq, vocab] = logits.shape().dims::<3>();
    LogitsShape { batch, seq, vocab }
}

/// Integer labels of any integer dtype as i64.
pub(super) fn labels_i64(labels: &FlexTensor) -> Vec<i64> {
    let labels = contiguous(labels);
    match labels.dtype() {
        DType::I64 => labels.storage::<i64>().to_vec(),
        DType::I32 => labels.storage::<i32>().iter().map(|&l| l as i64).collect(),
        DType::U32 => labels.storage::<u32>().iter().map(|&l| l as i64).collect(),
        other => panic!("label log-probs take integer labels, not {other:?}"),
    }
}

/// Forward on flex: the log-probs and the log-sum-exp of every predicting position.
fn label_logprobs_flex(logits: &FlexTensor, labels: &[i64]) -> (FlexTensor, FlexTensor) {
    let logits = contiguous(logits);
    let shape = logits_shape(&logits);
    let n = shape.positions();
    let (mut logps, mut lse) = (vec![0.0f32; n], vec![0.0f32; n]);
    label_logprobs_forward(f32s(&logits), labels, shape, &mut logps, &mut lse);
    let dims = [shape.batch, shape.seq - 1];
    (new_f32(logps, &dims), new_f32(lse, &dims))
}

fn token_stats_flex(logits: &FlexTensor) -> FlexTensor {
    let logits = contiguous(logits);
    let shape = logits_shape(&logits);
    let mut out = vec![0.0f32; shape.positions() * STATS];
    token_stats(f32s(&logits), shape, &mut out);
    new_f32(out, &[shape.batch, shape.seq - 1, STATS])
}

/// Forward on flex: the output and the reciprocal RMS of every row.
fn rms_norm_flex(x: &FlexTensor, weight: &FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let dims = x.shape().to_vec();
    let rows = x.shape().num_elements() / dims[dims.len() - 1];
    let mut out = vec![0.0f32; x.shape().num_elements()];
    let mut inv_rms = vec![0.0f32; rows];
    rms_norm_forward(f32s(&x), f32s(&weight), eps as f32, &mut out, &mut inv_rms);
    (new_f32(out, &dims), new_f32(inv_rms, &[rows]))
}

/// Rotation on flex (`transpose` for the backward).
fn rope_flex(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor, transpose: bool) -> FlexTensor {
    let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(sin));
    let dims = x.shape().dims::<4>();
    let mut out = vec![0.0f32; x.shape().num_elements()];
    rope_cpu::rope(
        f32s(&x),
        f32s(&cos),
        f32s(&sin),
        (dims[0], dims[1], dims[2], dims[3]),
        transpose,
        &mut out,
    );
    new_f32(out, &dims)
}

impl TrainingKernels for Flex {
    fn fused_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        blocked: FlexTensor,
    ) -> FlexTensor {
        attention_flex(&q, &k, &v, &blocked).0
    }

    fn fused_cached_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        blocked: FlexTensor,
    ) -> FlexTensor {
        cached_attention_flex(&q, &k, &v, &blocked)
    }

    fn fused_mlp(x: FlexTensor, gate: FlexTensor, up: FlexTensor, down: FlexTensor) -> FlexTensor {
        mlp_flex(&x, &gate, &up, &down)
    }

    fn fused_label_logprobs(logits: FlexTensor, labels: FlexTensor) -> FlexTensor {
        label_logprobs_flex(&logits, &labels_i64(&labels)).0
    }

    fn fused_head_logprobs(
        hidden: FlexTensor,
        weight: FlexTensor,
        labels: FlexTensor,
        vocab_major: bool,
        temperature: f64,
    ) -> FlexTensor {
        let options = HeadOptions {
            vocab_major,
            temperature,
        };
        head_logprobs_flex(hidden, weight, labels, options)
    }

    fn fused_token_stats(logits: FlexTensor) -> FlexTensor {
        token_stats_flex(&logits)
    }

    fn fused_lora_linear(
        x: FlexTensor,
        base: FlexTensor,
        a: FlexTensor,
        b: FlexTensor,
        scaling: f64,
        keep: f64,
        seed: u64,
    ) -> FlexTensor {
        lora_linear_flex([x, base, a, b], lora_options(scaling, keep, seed))
    }

    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        rms_norm_flex(&x, &weight, eps).0
    }

    fn fused_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        rope_flex(&x, &cos, &sin, false)
    }
}

/// Backward of the fused MLP (recomputes its projections).
#[derive(Debug)]
struct MlpBackward;

impl Backward<Flex, 4> for MlpBackward {
    /// x, gate, up, down (contiguous).
    type State = [FlexTensor; 4];

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let [x, gate, up, down] = ops.state;
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
struct LabelLogprobsBackward;

impl Backward<Flex, 1> for LabelLogprobsBackward {
    /// logits (contiguous), labels, log-sum-exp per position.
    type State = (FlexTensor, Vec<i64>, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_logits] = ops.parents;
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let (logits, labels, lse) = ops.state;
        if let Some(node) = node_logits {
            let shape = logits_shape(&logits);
            let mut d_logits = vec![0.0f32; logits.shape().num_elements()];
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
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// x, weight, inverse RMS per row (contiguous).
    type State = [FlexTensor; 3];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let [x, weight, inv_rms] = ops.state;
        let mut dx = vec![0.0f32; x.shape().num_elements()];
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
struct RopeBackward;

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
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// q, k, v, blocked, out, lse (contiguous).
    type State = [FlexTensor; 6];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad_out = contiguous(&grads.consume::<Flex>(&ops.node));
        let [q, k, v, blocked, out, lse] = ops.state;
        let shape = attention_shape(&q, &k);
        let mut dq = vec![0.0f32; q.shape().num_elements()];
        let mut dk = vec![0.0f32; k.shape().num_elements()];
        let mut dv = vec![0.0f32; v.shape().num_elements()];
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

impl<C: CheckpointStrategy> TrainingKernels for Autodiff<Flex, C> {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: FlexTensor,
    ) -> FloatTensor<Self> {
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (
                    contiguous(q.primitive()),
                    contiguous(k.primitive()),
                    contiguous(v.primitive()),
                );
                let blocked = contiguous(&blocked);
                let (out, lse) = attention_flex(&q, &k, &v, &blocked);
                prep.finish([q, k, v, blocked, out.clone(), lse], out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(attention_flex(q.primitive(), k.primitive(), v.primitive(), &blocked).0)
            }
        }
    }

    fn fused_mlp(
        x: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        down: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match MlpBackward
            .prepare::<C>([x.node(), gate.node(), up.node(), down.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = [&x, &gate, &up, &down].map(|t| contiguous(t.primitive()));
                let [x, gate, up, down] = &state;
                let out = mlp_flex(x, gate, up, down);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(mlp_flex(
                x.primitive(),
                gate.primitive(),
                up.primitive(),
                down.primitive(),
            )),
        }
    }

    fn fused_label_logprobs(logits: FloatTensor<Self>, labels: FlexTensor) -> FloatTensor<Self> {
        let labels = labels_i64(&labels);
        match LabelLogprobsBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let logits = contiguous(logits.primitive());
                let (logps, lse) = label_logprobs_flex(&logits, &labels);
                prep.finish((logits, labels, lse), logps)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(label_logprobs_flex(logits.primitive(), &labels).0)
            }
        }
    }

    fn fused_head_logprobs(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        labels: FlexTensor,
        vocab_major: bool,
        temperature: f64,
    ) -> FloatTensor<Self> {
        let options = HeadOptions {
            vocab_major,
            temperature,
        };
        head_logprobs_autodiff::<C>(hidden, weight, labels, options)
    }

    fn fused_token_stats(logits: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(token_stats_flex(logits.primitive()))
    }

    /// Inference only: the output carries no gradient.
    fn fused_cached_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: FlexTensor,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(cached_attention_flex(
            q.primitive(),
            k.primitive(),
            v.primitive(),
            &blocked,
        ))
    }

    fn fused_lora_linear(
        x: FloatTensor<Self>,
        base: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scaling: f64,
        keep: f64,
        seed: u64,
    ) -> FloatTensor<Self> {
        lora_linear_autodiff::<C>([x, base, a, b], lora_options(scaling, keep, seed))
    }

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        match RmsNormBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (contiguous(x.primitive()), contiguous(weight.primitive()));
                let (out, inv_rms) = rms_norm_flex(&x, &weight, eps);
                prep.finish([x, weight, inv_rms], out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(rms_norm_flex(x.primitive(), weight.primitive(), eps).0)
            }
        }
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (cos, sin) = (contiguous(cos.primitive()), contiguous(sin.primitive()));
        let out = rope_flex(x.primitive(), &cos, &sin, false);
        match RopeBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish([cos, sin], out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
