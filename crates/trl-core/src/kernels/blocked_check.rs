//! The blocked ops of `blocked.rs` (what wgpu and cuda train with) against the composed
//! reference on any autodiff device: outputs and gradients of attention in blocks smaller
//! than the sequence (causal, left/right padding, grouped kv heads) and of the chunked LM head
//! in both weight layouts. The unit tests of `blocked_tests.rs` run them on flex (through the
//! same extension node the GPU backends record), `tests/wgpu.rs` on wgpu.

use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};

use super::{LmHead, blocked, composed};
use crate::model::mask::{blocked_keys, position_ids_from_mask};
use crate::random_stream::{draw, draw_int};

fn random<const D: usize>(dims: [usize; D], device: &Device) -> Tensor<D> {
    draw(dims, Distribution::Normal(0.0, 1.0), device).require_grad()
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// `[3, 1, seq, seq]`: a right-padded, a left-padded and an unpadded causal row.
fn padded_causal_mask(seq: usize, device: &Device) -> Tensor<4, Bool> {
    let right: Vec<i64> = (0..seq).map(|i| (i + 3 < seq) as i64).collect();
    let left: Vec<i64> = (0..seq).map(|i| (i >= 4) as i64).collect();
    let full = vec![1i64; seq];
    let mut flat = Vec::new();
    for mask in [right, left, full] {
        let positions = position_ids_from_mask(std::slice::from_ref(&mask)).remove(0);
        flat.extend(blocked_keys(&mask, &positions, None));
    }
    Tensor::from_data(TensorData::new(flat, [3, 1, seq, seq]), device)
}

/// The shape of one attention comparison.
#[derive(Clone, Copy, Debug)]
pub struct AttentionCase {
    pub heads: usize,
    pub kv_heads: usize,
    pub seq: usize,
    /// Query rows per block of the blocked op.
    pub rows: usize,
}

/// The attention shapes the CPU and the wgpu tests compare.
pub const ATTENTION_CASES: [AttentionCase; 4] = [
    // grouped kv heads, the last block shorter
    AttentionCase {
        heads: 4,
        kv_heads: 2,
        seq: 11,
        rows: 3,
    },
    AttentionCase {
        heads: 2,
        kv_heads: 2,
        seq: 9,
        rows: 4,
    },
    // one block
    AttentionCase {
        heads: 6,
        kv_heads: 2,
        seq: 7,
        rows: 7,
    },
    // one row per block
    AttentionCase {
        heads: 3,
        kv_heads: 1,
        seq: 5,
        rows: 1,
    },
];

/// Largest absolute differences between the blocked and the composed attention on `device`
/// (an autodiff device): output, then the gradients of q, k and v of `sum(out * w)`.
pub fn attention_differences(case: AttentionCase, device: &Device) -> [f32; 4] {
    let AttentionCase {
        heads,
        kv_heads,
        seq,
        rows,
    } = case;
    let mask = padded_causal_mask(seq, device);
    let head_dim = 8;
    let q = random([3, heads, seq, head_dim], device);
    let k = random([3, kv_heads, seq, head_dim], device);
    let v = random([3, kv_heads, seq, head_dim], device);
    let w = draw([3, heads, seq, head_dim], Distribution::Default, device);
    let run = |blocks: bool| {
        let (q, k, v) = (q.clone(), k.clone(), v.clone());
        let out = match blocks {
            true => blocked::attention(q.clone(), k.clone(), v.clone(), mask.clone(), rows),
            false => composed::grouped_query_attention(q.clone(), k.clone(), v.clone(), &mask),
        };
        let grads = (out.clone() * w.clone()).sum().backward();
        let g = |t: &Tensor<4>| Tensor::<4>::from_inner(t.grad(&grads).unwrap());
        [out.inner(), g(&q), g(&k), g(&v)]
    };
    let (ours, reference) = (run(true), run(false));
    let mut diffs = [0.0; 4];
    for (diff, (a, b)) in diffs.iter_mut().zip(ours.into_iter().zip(reference)) {
        *diff = max_abs_diff(a, b);
    }
    diffs
}

/// The shape of one LM-head comparison.
#[derive(Clone, Copy, Debug)]
pub struct HeadCase {
    /// The weight is `[vocab, hidden]` (an embedding table), else `[hidden, vocab]`.
    pub vocab_major: bool,
    pub temperature: f64,
    /// Tokens per chunk of the chunked op.
    pub chunk: usize,
}

/// The LM-head cases the CPU and the wgpu tests compare.
pub const HEAD_CASES: [HeadCase; 3] = [
    // an embedding table, the last chunk shorter
    HeadCase {
        vocab_major: true,
        temperature: 1.0,
        chunk: 3,
    },
    HeadCase {
        vocab_major: false,
        temperature: 0.7,
        chunk: 4,
    },
    // one chunk
    HeadCase {
        vocab_major: false,
        temperature: 1.0,
        chunk: 100,
    },
];

/// Largest absolute differences between the chunked and the composed head on `device` (an
/// autodiff device): label log-probs; entropy, argmax, `log Σ p²`, mean logit; the gradients
/// of the hidden states and of the weight of `sum(logps * w)`.
pub fn head_differences(case: HeadCase, device: &Device) -> [f32; 7] {
    let HeadCase {
        vocab_major,
        temperature,
        chunk,
    } = case;
    let (batch, seq, width, vocab) = (2, 6, 8, 13);
    let n = batch * (seq - 1);
    let hidden = random([batch, seq, width], device);
    let weight = random(
        if vocab_major {
            [vocab, width]
        } else {
            [width, vocab]
        },
        device,
    );
    let range = Distribution::Uniform(0.0, vocab as f64);
    let labels = draw_int([batch, seq - 1], range, device);
    let w = draw([batch, seq - 1], Distribution::Default, device);
    let run = |chunked: bool| {
        let (hidden, weight) = (hidden.clone(), weight.clone());
        let (logps, stats) = match chunked {
            true => {
                let flat = hidden.clone().narrow(1, 0, seq - 1).reshape([n, width]);
                let labels = labels.clone().reshape([n]);
                let out = blocked::head_logprobs(
                    flat,
                    weight.clone(),
                    labels,
                    vocab_major,
                    temperature,
                    chunk,
                );
                let column = |i: usize| {
                    out.clone()
                        .inner()
                        .narrow(1, i, 1)
                        .reshape([batch, seq - 1])
                };
                (
                    out.clone().narrow(1, 0, 1).reshape([batch, seq - 1]),
                    [1, 2, 3, 4].map(column),
                )
            }
            false => {
                let head = LmHead {
                    weight: weight.clone(),
                    vocab_major,
                };
                let (logps, s) = composed::head_label_log_probs(
                    hidden.clone(),
                    &head,
                    labels.clone(),
                    temperature,
                    n,
                );
                let stats = [
                    s.entropy,
                    s.argmax.float(),
                    s.log_sum_sq_probs,
                    s.mean_logits,
                ];
                (logps, stats.map(|t| t.inner()))
            }
        };
        let grads = (logps.clone() * w.clone()).sum().backward();
        let grad_hidden = Tensor::<3>::from_inner(hidden.grad(&grads).unwrap());
        let grad_weight = Tensor::<2>::from_inner(weight.grad(&grads).unwrap());
        (logps.inner(), stats, grad_hidden, grad_weight)
    };
    let (ours, reference) = (run(true), run(false));
    let [e, a, s, m] = ours.1;
    let [re, ra, rs, rm] = reference.1;
    [
        max_abs_diff(ours.0, reference.0),
        max_abs_diff(e, re),
        max_abs_diff(a, ra),
        max_abs_diff(s, rs),
        max_abs_diff(m, rm),
        max_abs_diff(ours.2, reference.2),
        max_abs_diff(ours.3, reference.3),
    ]
}
