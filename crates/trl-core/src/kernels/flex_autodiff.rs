//! [`TrainingKernels`] on autodiff over flex: each op runs its flex forward (`flex_forward`)
//! and, when the graph tracks one of its inputs, records one node whose `Backward`
//! (`flex_backward`) computes the gradients with the hand-written kernels.

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;

use super::SharedPrefix;
use super::flex::TrainingKernels;
use super::flex_backward::{
    AttentionBackward, LabelLogprobsBackward, MlpBackward, RmsNormBackward, RopeBackward,
};
use super::flex_forward::{
    attention_flex, cached_attention_flex, label_logprobs_flex, lora_options, mlp_flex,
    mlp_flex_keeping, rms_norm_flex, rope_flex, token_stats_flex,
};
use super::flex_head::{HeadOptions, head_logprobs_autodiff};
use super::flex_lora::lora_linear_autodiff;
use super::flex_tensor::{contiguous, labels_i64};

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
                let tensors = [&x, &gate, &up, &down].map(|t| contiguous(t.primitive()));
                let [x, gate, up, down] = &tensors;
                let (out, projections) = mlp_flex_keeping(x, gate, up, down);
                prep.finish((tensors, projections), out)
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
        shared_source: Vec<usize>,
        shared_columns: usize,
    ) -> FloatTensor<Self> {
        let shared = SharedPrefix {
            source: shared_source,
            columns: shared_columns,
        };
        FloatTensor::<Self>::new(cached_attention_flex(
            q.primitive(),
            k.primitive(),
            v.primitive(),
            &blocked,
            &shared,
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
