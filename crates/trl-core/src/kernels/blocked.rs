//! Attention and the LM head's log-probs with their own backward, for the backends without
//! hand-written kernels (the CubeCL ones: wgpu, cuda), as a burn backend extension: burn's
//! autodiff records composed attention as a `[batch, heads, seq, seq]` softmax kept until the
//! backward (its fused `attention` op has no backward of its own in 0.22), and a log-softmax
//! over the vocabulary per token. Here each is one graph node whose forward and backward run
//! `blocked_attention` / `chunked_head` (burn ops a block of rows at a time) on the inner
//! backend and keep only the inputs and a few numbers per row.
//!
//! Flex is routed too so that the node (forward, saved state, backward, gradient
//! registration) is unit-tested on the CPU; flex itself trains with the fused kernels of
//! `flex.rs`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchKindConversion, DispatchTensor, backend_extension,
};
use burn::tensor::{BackendPrimitive, Bool, Float, Int, Tensor};

use super::blocked_attention::{self, AttentionSaved};
use super::chunked_head::{self, Head};

/// The memory-bounded ops (see the module doc). Called through [`attention`] and
/// [`head_logprobs`].
#[backend_extension(
    Autodiff,
    Flex: cfg(feature = "flex"),
    Cube: cfg(any(feature = "wgpu", feature = "cuda"))
)]
pub trait BlockedKernels: Backend {
    /// q `[batch, heads, seq, head_dim]`, k/v `[batch, kv_heads, seq, head_dim]`, blocked
    /// `[batch, 1, seq, seq]`, `rows` query rows per block -> `[batch, heads, seq, head_dim]`.
    fn blocked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: BoolTensor<Self>,
        rows: usize,
    ) -> FloatTensor<Self>;

    /// hidden `[tokens, hidden]`, weight `[vocab, hidden]` when `vocab_major` else
    /// `[hidden, vocab]`, labels `[tokens]` -> `[tokens, 5]`: the label's log-prob (the only
    /// column with a gradient), entropy, argmax, `log Σ p²`, mean logit.
    fn chunked_head_logprobs(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        labels: IntTensor<Self>,
        vocab_major: bool,
        temperature: f64,
        chunk: usize,
    ) -> FloatTensor<Self>;
}

/// True when `tensor` lives on a CubeCL device (wgpu, cuda), with or without autodiff.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn runs_on_cube<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(
        tensor.device().inner().as_dispatch(),
        burn::backend::DispatchDevice::Cube(_)
    )
}

/// [`BlockedKernels::blocked_attention`] on high-level tensors.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Tensor<4, Bool>,
    rows: usize,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as BlockedKernels>::blocked_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        blocked.into_dispatch(),
        rows,
    ))
}

/// [`BlockedKernels::chunked_head_logprobs`] on high-level tensors.
pub fn head_logprobs(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    labels: Tensor<1, Int>,
    vocab_major: bool,
    temperature: f64,
    chunk: usize,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as BlockedKernels>::chunked_head_logprobs(
        hidden.into_dispatch(),
        weight.into_dispatch(),
        labels.into_dispatch(),
        vocab_major,
        temperature,
        chunk,
    ))
}

/// A primitive of the concrete backend `B` as a plain (untracked) high-level tensor.
fn wrap<B: Backend, const D: usize, K: BackendPrimitive<B> + burn::tensor::kind::Basic>(
    primitive: K::Primitive,
) -> Tensor<D, K>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    Tensor::from_primitive::<B>(primitive)
}

/// The inverse of [`wrap`] for float tensors.
fn unwrap<B: Backend, const D: usize>(tensor: Tensor<D>) -> FloatTensor<B>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    tensor
        .try_into_primitive::<B>()
        .expect("the blocked ops compute on their inputs' backend")
}

/// The forward of either op without a graph, on the concrete backend `B`.
fn attention_untracked<B: Backend>(
    [q, k, v]: [FloatTensor<B>; 3],
    blocked: BoolTensor<B>,
    rows: usize,
) -> FloatTensor<B>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let saved = blocked_attention::forward(
        wrap::<B, 4, Float>(q),
        wrap::<B, 4, Float>(k),
        wrap::<B, 4, Float>(v),
        wrap::<B, 4, Bool>(blocked),
        rows,
    );
    unwrap::<B, 4>(saved.out)
}

fn head_untracked<B: Backend>(
    [hidden, weight]: [FloatTensor<B>; 2],
    labels: IntTensor<B>,
    options: HeadOptions,
) -> FloatTensor<B>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let head = options.head(wrap::<B, 2, Float>(weight), wrap::<B, 1, Int>(labels));
    unwrap::<B, 2>(chunked_head::forward(&wrap::<B, 2, Float>(hidden), &head).0)
}

/// The head's arguments besides its tensors.
#[derive(Clone, Copy, Debug)]
struct HeadOptions {
    vocab_major: bool,
    temperature: f64,
    chunk: usize,
}

impl HeadOptions {
    fn head(self, weight: Tensor<2>, labels: Tensor<1, Int>) -> Head {
        Head::new(
            weight,
            labels,
            self.vocab_major,
            self.temperature,
            self.chunk,
        )
    }
}

/// The forward-only implementations on the concrete backends.
macro_rules! untracked_impl {
    ($backend:ty, $cfg:meta) => {
        #[cfg($cfg)]
        impl BlockedKernels for $backend {
            fn blocked_attention(
                q: FloatTensor<Self>,
                k: FloatTensor<Self>,
                v: FloatTensor<Self>,
                blocked: BoolTensor<Self>,
                rows: usize,
            ) -> FloatTensor<Self> {
                attention_untracked::<Self>([q, k, v], blocked, rows)
            }

            fn chunked_head_logprobs(
                hidden: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                labels: IntTensor<Self>,
                vocab_major: bool,
                temperature: f64,
                chunk: usize,
            ) -> FloatTensor<Self> {
                let options = HeadOptions {
                    vocab_major,
                    temperature,
                    chunk,
                };
                head_untracked::<Self>([hidden, weight], labels, options)
            }
        }
    };
}

untracked_impl!(burn::backend::Flex, feature = "flex");
untracked_impl!(burn::backend::Cube, any(feature = "wgpu", feature = "cuda"));

/// Backward of [`BlockedKernels::blocked_attention`].
#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend> Backward<B, 3> for AttentionBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    type State = AttentionSaved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = wrap::<B, 4, Float>(grads.consume::<B>(&ops.node));
        let gradients = blocked_attention::backward(&ops.state, grad);
        for (node, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = node {
                grads.register::<B>(node.id, unwrap::<B, 4>(gradient));
            }
        }
    }
}

/// What the head's backward recomputes the logits from.
#[derive(Clone, Debug)]
struct HeadSaved {
    hidden: Tensor<2>,
    head: Head,
    /// `[tokens, 1]`
    lse: Tensor<2>,
}

/// Backward of [`BlockedKernels::chunked_head_logprobs`].
#[derive(Debug)]
struct HeadBackward;

impl<B: Backend> Backward<B, 2> for HeadBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    type State = HeadSaved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let out_grad = wrap::<B, 2, Float>(grads.consume::<B>(&ops.node));
        // Only the log-prob column carries a gradient; the statistics are detached.
        let grad = out_grad.narrow(1, 0, 1);
        let saved = ops.state;
        let [node_hidden, node_weight] = ops.parents;
        let needs = [node_hidden.is_some(), node_weight.is_some()];
        let (d_hidden, d_weight) =
            chunked_head::backward(&saved.hidden, &saved.head, &saved.lse, grad, needs);
        if let (Some(node), Some(d)) = (node_hidden, d_hidden) {
            grads.register::<B>(node.id, unwrap::<B, 2>(d));
        }
        if let (Some(node), Some(d)) = (node_weight, d_weight) {
            grads.register::<B>(node.id, unwrap::<B, 2>(d));
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> BlockedKernels for Autodiff<B, C>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    fn blocked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: BoolTensor<Self>,
        rows: usize,
    ) -> FloatTensor<Self> {
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = blocked_attention::forward(
                    wrap::<B, 4, Float>(q.into_primitive()),
                    wrap::<B, 4, Float>(k.into_primitive()),
                    wrap::<B, 4, Float>(v.into_primitive()),
                    wrap::<B, 4, Bool>(blocked),
                    rows,
                );
                let out = unwrap::<B, 4>(saved.out.clone());
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => {
                let qkv = [q, k, v].map(|t| t.into_primitive());
                prep.finish(attention_untracked::<B>(qkv, blocked, rows))
            }
        }
    }

    fn chunked_head_logprobs(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        labels: IntTensor<Self>,
        vocab_major: bool,
        temperature: f64,
        chunk: usize,
    ) -> FloatTensor<Self> {
        let options = HeadOptions {
            vocab_major,
            temperature,
            chunk,
        };
        match HeadBackward
            .prepare::<C>([hidden.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let hidden = wrap::<B, 2, Float>(hidden.into_primitive());
                let head = options.head(
                    wrap::<B, 2, Float>(weight.into_primitive()),
                    wrap::<B, 1, Int>(labels),
                );
                let (out, lse) = chunked_head::forward(&hidden, &head);
                let out = unwrap::<B, 2>(out);
                prep.finish(HeadSaved { hidden, head, lse }, out)
            }
            OpsKind::UnTracked(prep) => {
                let tensors = [hidden, weight].map(|t| t.into_primitive());
                prep.finish(head_untracked::<B>(tensors, labels, options))
            }
        }
    }
}
