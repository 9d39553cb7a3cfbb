//! Criterion benchmarks of the kernels a training step spends its time in, forward and
//! backward, at the benchmark model's shapes (hidden 256, 8 query / 4 key-value heads of 32,
//! intermediate 1024, vocab 512; batch 8 x 256 tokens), on the compiled-in CPU backend, and
//! attention at a long row (`attention_long`: 4096 tokens at Qwen2.5-0.5B's head shape).
//!
//! Run through `cargo xtask bench` (which also collects the estimates into
//! `target/bench/results.json`), or alone: `cargo bench --bench kernels [-- --quick]`.
//!
//! Each benchmark times one forward pass, `.sum().backward()` and nothing else: inputs and
//! weights are made once outside the timed closure. The attention, RoPE and log-prob cases
//! call the same trl-core pieces, or the same burn ops in the same order, as
//! `crates/trl-core/src/model/layers.rs` does. Matmul and attention report their throughput as
//! FLOPs ("elem/s" in criterion's output is FLOP/s); the others as elements of their input
//! (the mask and RoPE tables: of their output).

use std::hint::black_box;
use std::time::Duration;

use burn::module::{Module, Param};
use burn::nn::RmsNormConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use trl_core::kernels::{self, composed};
use trl_core::logprobs::label_log_probs;
use trl_core::model::RopeScaling;
use trl_core::model::mask::{attention_block_mask, position_ids_from_mask};
use trl_core::model::rope::{RotaryTables, inverse_frequencies};
use trl_core::train::optim::{AdamWConfig, AdamWState, adamw_step};

const BATCH: usize = 8;
const SEQ: usize = 256;
const TOKENS: usize = BATCH * SEQ;
const HIDDEN: usize = 256;
const HEADS: usize = 8;
const KV_HEADS: usize = 4;
const HEAD_DIM: usize = 32;
const INTERMEDIATE: usize = 1024;
const VOCAB: usize = 512;
const LAYERS: usize = 4;

/// The `trl` binary's allocator (src/main.rs), so kernels allocate as they do in training.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn device() -> Device {
    Device::default().autodiff()
}

fn normal<const D: usize>(shape: [usize; D], std: f64, device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, std), device).require_grad()
}

/// `[tokens, k] @ [k, n]` at every projection shape of the model, and attention's batched
/// `[batch * heads, seq, head_dim] @ [batch * heads, head_dim, seq]`.
fn matmul(c: &mut Criterion) {
    let device = device();
    let mut group = c.benchmark_group("matmul");
    for (name, k, n) in [
        ("qo_proj_256x256", HIDDEN, HIDDEN),
        ("kv_proj_256x128", HIDDEN, KV_HEADS * HEAD_DIM),
        ("gate_up_256x1024", HIDDEN, INTERMEDIATE),
        ("down_1024x256", INTERMEDIATE, HIDDEN),
        ("lm_head_256x512", HIDDEN, VOCAB),
    ] {
        // [tokens, k], [k, n]
        let x = normal([TOKENS, k], 1.0, &device);
        let w = normal([k, n], 0.02, &device);
        // forward 2*t*k*n; backward two more of the same size (dx, dw)
        group.throughput(Throughput::Elements((6 * TOKENS * k * n) as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(x.clone().matmul(w.clone()).sum().backward()))
        });
    }
    // [batch * heads, seq, head_dim] @ [batch * heads, head_dim, seq] (attention scores)
    let q = normal([BATCH * HEADS, SEQ, HEAD_DIM], 1.0, &device);
    let k = normal([BATCH * HEADS, SEQ, HEAD_DIM], 1.0, &device);
    group.throughput(Throughput::Elements(
        (6 * BATCH * HEADS * SEQ * SEQ * HEAD_DIM) as u64,
    ));
    group.bench_function("attn_scores_64x256x32x256", |b| {
        b.iter(|| black_box(q.clone().matmul(k.clone().swap_dims(1, 2)).sum().backward()))
    });
    group.finish();
}

/// A right-padded batch: row `i` has `SEQ - 16 * i` real tokens.
fn padded_attention_mask() -> Vec<Vec<i64>> {
    (0..BATCH)
        .map(|i| (0..SEQ).map(|t| (t < SEQ - 16 * i) as i64).collect())
        .collect()
}

fn attention_masked(c: &mut Criterion) {
    let device = device();
    let mask = padded_attention_mask();
    let positions = position_ids_from_mask(&mask);
    // [batch, 1, seq, seq]
    let blocked = attention_block_mask(&mask, &positions, None, &device);
    // [batch, heads | kv_heads, seq, head_dim]
    let q = normal([BATCH, HEADS, SEQ, HEAD_DIM], 1.0, &device);
    let k = normal([BATCH, KV_HEADS, SEQ, HEAD_DIM], 1.0, &device);
    let v = normal([BATCH, KV_HEADS, SEQ, HEAD_DIM], 1.0, &device);
    let mut group = c.benchmark_group("attention");
    // two [seq, seq, head_dim] matmuls per head forward, twice that backward
    group.throughput(Throughput::Elements(
        (12 * BATCH * HEADS * SEQ * SEQ * HEAD_DIM) as u64,
    ));
    // the model's fused kernel, then the same attention from burn ops (the lever's baseline)
    group.bench_function("causal_padding_gqa_8x8x256x32/fused", |b| {
        b.iter(|| {
            let out = kernels::attention(q.clone(), k.clone(), v.clone(), &blocked);
            black_box(out.sum().backward())
        })
    });
    group.bench_function("causal_padding_gqa_8x8x256x32/composed", |b| {
        b.iter(|| {
            let out = composed::grouped_query_attention(q.clone(), k.clone(), v.clone(), &blocked);
            black_box(out.sum().backward())
        })
    });
    group.throughput(Throughput::Elements((BATCH * SEQ * SEQ) as u64));
    group.bench_function("mask_build_host_8x256x256", |b| {
        b.iter(|| black_box(attention_block_mask(&mask, &positions, None, &device)))
    });
    group.finish();
}

/// Attention over one causal row of 4096 tokens at Qwen2.5-0.5B's head shape: one of its two
/// kv groups (7 query heads sharing a kv head, head_dim 64), fused kernel only (composed ops
/// would hold the [7, 4096, 4096] scores several times over). Flat sampling: ten runs of about
/// a second each, so the case takes seconds.
fn attention_long(c: &mut Criterion) {
    const LONG_SEQ: usize = 4096;
    const GROUP_HEADS: usize = 7;
    const LONG_HEAD_DIM: usize = 64;
    let device = device();
    let mask = vec![vec![1i64; LONG_SEQ]];
    let positions = position_ids_from_mask(&mask);
    // [1, 1, seq, seq]
    let blocked = attention_block_mask(&mask, &positions, None, &device);
    // [1, heads | 1, seq, head_dim]
    let q = normal([1, GROUP_HEADS, LONG_SEQ, LONG_HEAD_DIM], 1.0, &device);
    let k = normal([1, 1, LONG_SEQ, LONG_HEAD_DIM], 1.0, &device);
    let v = normal([1, 1, LONG_SEQ, LONG_HEAD_DIM], 1.0, &device);
    let mut group = c.benchmark_group("attention_long");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    // the causal half of the 12 seq^2 head_dim FLOPs per head counted above
    group.throughput(Throughput::Elements(
        (6 * GROUP_HEADS * LONG_SEQ * LONG_SEQ * LONG_HEAD_DIM) as u64,
    ));
    group.bench_function("causal_gqa_1x7x4096x64/fused", |b| {
        b.iter(|| {
            let out = kernels::attention(q.clone(), k.clone(), v.clone(), &blocked);
            black_box(out.sum().backward())
        })
    });
    group.finish();
}

/// The SwiGLU MLP over [batch, seq, hidden]: the fused op (projections recomputed in the
/// backward, so its FLOPs are 8/9 more than the count below) and burn's composed ops.
fn mlp(c: &mut Criterion) {
    let device = device();
    let x = normal([BATCH, SEQ, HIDDEN], 1.0, &device);
    let gate = normal([HIDDEN, INTERMEDIATE], 0.02, &device);
    let up = normal([HIDDEN, INTERMEDIATE], 0.02, &device);
    let down = normal([INTERMEDIATE, HIDDEN], 0.02, &device);
    let mut group = c.benchmark_group("mlp");
    // three [tokens, hidden] x [hidden, inter] products, each 2 t h i forward and twice that back
    group.throughput(Throughput::Elements(
        (18 * TOKENS * HIDDEN * INTERMEDIATE) as u64,
    ));
    let weights = || (gate.clone(), up.clone(), down.clone());
    group.bench_function("swiglu_8x256_256x1024/fused", |b| {
        b.iter(|| {
            let (g, u, d) = weights();
            black_box(kernels::swiglu_mlp(x.clone(), g, u, d).sum().backward())
        })
    });
    group.bench_function("swiglu_8x256_256x1024/composed", |b| {
        b.iter(|| {
            let (g, u, d) = weights();
            black_box(composed::swiglu_mlp(x.clone(), g, u, d).sum().backward())
        })
    });
    group.finish();
}

fn elementwise(c: &mut Criterion) {
    let device = device();
    let mut group = c.benchmark_group("elementwise");

    // RMSNorm over [batch, seq, hidden]
    let norm = RmsNormConfig::new(HIDDEN).with_epsilon(1e-6).init(&device);
    let x = normal([BATCH, SEQ, HIDDEN], 1.0, &device);
    group.throughput(Throughput::Elements((TOKENS * HIDDEN) as u64));
    let (gamma, eps) = (norm.gamma.val(), norm.epsilon);
    group.bench_function("rms_norm_8x256x256/fused", |b| {
        b.iter(|| {
            black_box(
                kernels::rms_norm(x.clone(), gamma.clone(), eps)
                    .sum()
                    .backward(),
            )
        })
    });
    group.bench_function("rms_norm_8x256x256/composed", |b| {
        b.iter(|| {
            black_box(
                composed::rms_norm(x.clone(), gamma.clone(), eps)
                    .sum()
                    .backward(),
            )
        })
    });

    // RoPE on the queries [batch, heads, seq, head_dim], tables built once per forward
    let mask = vec![vec![1i64; SEQ]; BATCH];
    let positions = position_ids_from_mask(&mask);
    let flat: Vec<i64> = positions.iter().flatten().copied().collect();
    let position_ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [BATCH, SEQ]), &device);
    let inv_freq = inverse_frequencies(HEAD_DIM, 10000.0, &RopeScaling::None);
    let rope = RotaryTables::new(&position_ids, &inv_freq, &device);
    let q = normal([BATCH, HEADS, SEQ, HEAD_DIM], 1.0, &device);
    group.throughput(Throughput::Elements((TOKENS * HEADS * HEAD_DIM) as u64));
    group.bench_function("rope_q_8x8x256x32/fused", |b| {
        b.iter(|| black_box(rope.apply(q.clone()).sum().backward()))
    });
    let (cos, sin) = rope.tables();
    group.bench_function("rope_q_8x8x256x32/composed", |b| {
        b.iter(|| black_box(composed::rope(q.clone(), cos, sin).sum().backward()))
    });
    group.throughput(Throughput::Elements((TOKENS * HEAD_DIM) as u64));
    group.bench_function("rope_tables_8x256", |b| {
        b.iter(|| black_box(RotaryTables::new(&position_ids, &inv_freq, &device)))
    });

    // log-softmax + gather of the label log-probs (the cross-entropy of every method)
    let logits = normal([BATCH, SEQ, VOCAB], 1.0, &device);
    let labels: Vec<Vec<i64>> = (0..BATCH)
        .map(|row| {
            (0..SEQ)
                .map(|t| ((row * 131 + t * 7) % VOCAB) as i64)
                .collect()
        })
        .collect();
    group.throughput(Throughput::Elements((TOKENS * VOCAB) as u64));
    // trl-core's label log-probs (fused on flex), then log-softmax + gather in burn ops
    group.bench_function("label_logprobs_8x256x512/fused", |b| {
        b.iter(|| {
            black_box(
                label_log_probs(logits.clone(), &labels)
                    .logps
                    .sum()
                    .backward(),
            )
        })
    });
    let shifted: Vec<i64> = labels.iter().flat_map(|row| row[1..].to_vec()).collect();
    let shifted = Tensor::<2, Int>::from_data(TensorData::new(shifted, [BATCH, SEQ - 1]), &device);
    group.bench_function("label_logprobs_8x256x512/composed", |b| {
        b.iter(|| {
            let (logps, _) = composed::label_log_probs(logits.clone(), shifted.clone());
            black_box(logps.sum().backward())
        })
    });
    group.finish();
}

/// Parameters shaped as the benchmark model's (embeddings, lm_head, four layers' projections,
/// biases and norms), for the optimizer benchmark.
#[derive(Module, Debug)]
struct ModelShapedParams {
    matrices: Vec<Param<Tensor<2>>>,
    vectors: Vec<Param<Tensor<1>>>,
}

impl ModelShapedParams {
    fn new(device: &Device) -> Self {
        let kv = KV_HEADS * HEAD_DIM;
        let mut matrices = vec![[VOCAB, HIDDEN], [HIDDEN, VOCAB]];
        let mut vectors = vec![HIDDEN];
        for _ in 0..LAYERS {
            matrices.extend([
                [HIDDEN, HIDDEN],
                [HIDDEN, kv],
                [HIDDEN, kv],
                [HIDDEN, HIDDEN],
                [HIDDEN, INTERMEDIATE],
                [HIDDEN, INTERMEDIATE],
                [INTERMEDIATE, HIDDEN],
            ]);
            vectors.extend([HIDDEN, kv, kv, HIDDEN, HIDDEN]);
        }
        ModelShapedParams {
            matrices: matrices
                .into_iter()
                .map(|shape| Param::from_tensor(normal(shape, 0.02, device)))
                .collect(),
            vectors: vectors
                .into_iter()
                .map(|n| Param::from_tensor(normal([n], 0.02, device)))
                .collect(),
        }
    }

    /// Gradients of `sum(p^2)` for every parameter.
    fn grads(&self) -> GradientsParams {
        let mut loss = Tensor::<1>::zeros([1], &self.vectors[0].device());
        for p in &self.matrices {
            loss = loss + (p.val() * p.val()).sum();
        }
        for p in &self.vectors {
            loss = loss + (p.val() * p.val()).sum();
        }
        GradientsParams::from_grads(loss.backward(), self)
    }
}

fn optimizer(c: &mut Criterion) {
    let device = device();
    let params = ModelShapedParams::new(&device);
    let config = AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.01,
    };
    let mut state = AdamWState::default();
    let mut group = c.benchmark_group("optimizer");
    group.throughput(Throughput::Elements(params.num_params() as u64));
    group.bench_function("adamw_step_4.2M_params", |b| {
        b.iter_batched(
            || (params.clone(), params.grads()),
            |(module, mut grads)| {
                black_box(adamw_step(module, &mut grads, 1e-5, &config, &mut state))
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = kernels;
    config = config();
    targets = matmul, attention_masked, attention_long, mlp, elementwise, optimizer
}
criterion_main!(kernels);
