//! The fused LM head + label log-probs (flex kernel, its autodiff op, and the composed chunked
//! loop) against the composed reference on full logits: values, statistics and the gradients
//! with respect to the hidden states and the weight, in both weight layouts, with a
//! temperature, chunks that do not divide the token count and ignored (zero-gradient) tokens.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::head_logprobs_cpu::{
    HeadGradInputs, HeadShape, OUTPUT_COLUMNS, head_logprobs_backward, head_logprobs_forward,
};
use super::{LmHead, TokenStats, composed, head_label_log_probs};
use crate::random_stream::draw;

const BATCH: usize = 2;
const SEQ: usize = 6;
const HIDDEN: usize = 8;
/// Not a multiple of any chunk below, nor of the kernels' SIMD lanes.
const VOCAB: usize = 37;
const TOKENS: usize = BATCH * (SEQ - 1);

fn device() -> Device {
    Device::flex().autodiff()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// `max |a - b| / max |b|`.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Random inputs: hidden `[BATCH, SEQ, HIDDEN]`, weight in the asked layout, labels
/// `[BATCH, SEQ - 1]` and per-token gradient weights with zeros (ignored tokens).
struct Case {
    hidden: Tensor<3>,
    weight: Tensor<2>,
    vocab_major: bool,
    labels: Vec<i64>,
    grad: Vec<f32>,
}

impl Case {
    fn new(vocab_major: bool) -> Case {
        let dims = if vocab_major {
            [VOCAB, HIDDEN]
        } else {
            [HIDDEN, VOCAB]
        };
        let labels = (0..TOKENS).map(|i| ((i * 7 + 3) % VOCAB) as i64).collect();
        let grad = (0..TOKENS)
            .map(|i| {
                if i % 4 == 1 {
                    0.0
                } else {
                    0.5 + i as f32 * 0.1
                }
            })
            .collect();
        Case {
            hidden: draw(
                [BATCH, SEQ, HIDDEN],
                Distribution::Normal(0.0, 1.0),
                &device(),
            )
            .require_grad(),
            weight: draw(dims, Distribution::Normal(0.0, 1.0), &device()).require_grad(),
            vocab_major,
            labels,
            grad,
        }
    }

    fn labels(&self) -> Tensor<2, Int> {
        Tensor::from_data(
            TensorData::new(self.labels.clone(), [BATCH, SEQ - 1]),
            &device(),
        )
    }

    fn grad(&self) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.grad.clone(), [BATCH, SEQ - 1]),
            &device(),
        )
    }

    fn head(&self) -> LmHead {
        LmHead {
            weight: self.weight.clone(),
            vocab_major: self.vocab_major,
        }
    }

    /// The reference: full logits, then the composed log-softmax. Returns log-probs, stats,
    /// and the gradients of `Σ grad · logp` for hidden and weight.
    fn reference(&self, temperature: f64) -> (Vec<f32>, TokenStats, Vec<f32>, Vec<f32>) {
        let weight = match self.vocab_major {
            true => self.weight.clone().transpose(),
            false => self.weight.clone(),
        };
        let logits = self.hidden.clone().matmul(weight.unsqueeze::<3>()) / temperature;
        let (logps, stats) = composed::label_log_probs(logits, self.labels());
        self.with_grads(logps, stats)
    }

    fn with_grads(
        &self,
        logps: Tensor<2>,
        stats: TokenStats,
    ) -> (Vec<f32>, TokenStats, Vec<f32>, Vec<f32>) {
        let grads = (logps.clone() * self.grad()).sum().backward();
        let g = |t: Tensor<3>| host(Tensor::<3>::from_inner(t.grad(&grads).unwrap()));
        let gw = host(Tensor::<2>::from_inner(self.weight.grad(&grads).unwrap()));
        (host(logps), stats, g(self.hidden.clone()), gw)
    }
}

fn assert_stats_match(a: &TokenStats, b: &TokenStats) {
    assert!(
        relative(&host(a.entropy.clone()), &host(b.entropy.clone())) < 1e-5,
        "entropy"
    );
    assert_eq!(
        host(a.argmax.clone().float()),
        host(b.argmax.clone().float()),
        "argmax"
    );
    let (sq_a, sq_b) = (
        host(a.log_sum_sq_probs.clone()),
        host(b.log_sum_sq_probs.clone()),
    );
    assert!(relative(&sq_a, &sq_b) < 1e-5, "log Σ p²");
    let (mean_a, mean_b) = (host(a.mean_logits.clone()), host(b.mean_logits.clone()));
    assert!(relative(&mean_a, &mean_b) < 1e-5, "mean logit");
}

/// The fused op through burn's autodiff (the path methods take) equals the reference.
#[test]
fn fused_op_matches_composed_values_and_gradients() {
    for (vocab_major, temperature) in [(true, 1.0), (false, 1.0), (true, 0.7), (false, 1.3)] {
        let case = Case::new(vocab_major);
        let (logps, stats) = head_label_log_probs(
            case.hidden.clone(),
            &case.head(),
            case.labels(),
            temperature,
        );
        assert!(
            super::flex::runs_on_flex(&case.hidden),
            "the fused op must be the one under test"
        );
        let fused = case.with_grads(logps, stats);
        let reference = case.reference(temperature);
        assert!(relative(&fused.0, &reference.0) < 1e-5, "log-probs");
        assert_stats_match(&fused.1, &reference.1);
        assert!(relative(&fused.2, &reference.2) < 1e-5, "grad hidden");
        assert!(relative(&fused.3, &reference.3) < 1e-5, "grad weight");
    }
}

/// The composed chunked loop (other backends) equals the reference, chunk 3 of 10 tokens.
#[test]
fn composed_chunks_match_full_logits() {
    for vocab_major in [true, false] {
        let case = Case::new(vocab_major);
        let (logps, stats) = composed::head_label_log_probs(
            case.hidden.clone(),
            &case.head(),
            case.labels(),
            0.7,
            3,
        );
        let chunked = case.with_grads(logps, stats);
        let reference = case.reference(0.7);
        assert!(relative(&chunked.0, &reference.0) < 1e-5, "log-probs");
        assert_stats_match(&chunked.1, &reference.1);
        assert!(relative(&chunked.2, &reference.2) < 1e-5, "grad hidden");
        assert!(relative(&chunked.3, &reference.3) < 1e-5, "grad weight");
    }
}

/// The CPU kernel itself with chunks of 3 and 4 tokens (10 tokens, or 7 with a gradient),
/// against the reference's values and gradients.
#[test]
fn kernel_chunks_match_reference() {
    for (vocab_major, chunk) in [(true, 3), (false, 4), (true, 1)] {
        let case = Case::new(vocab_major);
        let (logps, _, d_hidden, d_weight) = case.reference(0.7);
        let hidden = host(case.hidden.clone().narrow(1, 0, SEQ - 1));
        let weight = host(case.weight.clone());
        let shape = HeadShape {
            tokens: TOKENS,
            hidden: HIDDEN,
            vocab: VOCAB,
            vocab_major,
            temperature: 0.7,
            chunk,
        };
        let mut out = vec![0.0; TOKENS * OUTPUT_COLUMNS];
        let mut lse = vec![0.0; TOKENS];
        head_logprobs_forward(&hidden, &weight, &case.labels, shape, &mut out, &mut lse);
        let ours: Vec<f32> = out.chunks_exact(OUTPUT_COLUMNS).map(|r| r[0]).collect();
        assert!(relative(&ours, &logps) < 1e-5, "log-probs");
        let mut dh = vec![0.0; TOKENS * HIDDEN];
        let mut dw = vec![0.0; VOCAB * HIDDEN];
        let inputs = HeadGradInputs {
            hidden: &hidden,
            weight: &weight,
            labels: &case.labels,
            lse: &lse,
            grad: &case.grad,
        };
        head_logprobs_backward(inputs, shape, Some(&mut dh), Some(&mut dw));
        // The reference's hidden gradient has a zero row at each sequence's last position.
        let reference_dh: Vec<f32> = d_hidden
            .chunks_exact(HIDDEN)
            .enumerate()
            .filter(|(i, _)| i % SEQ != SEQ - 1)
            .flat_map(|(_, row)| row.to_vec())
            .collect();
        assert!(relative(&dh, &reference_dh) < 1e-5, "grad hidden");
        assert!(relative(&dw, &d_weight) < 1e-5, "grad weight");
        // Ignored tokens get no gradient.
        assert!(dh[HIDDEN..2 * HIDDEN].iter().all(|&v| v == 0.0));
    }
}
