//! The fused flex kernels against the composed reference: outputs and gradients of attention
//! (causal, padding, packing and fully-blocked masks), the MLP, RMSNorm, RoPE and the label
//! log-probs with their statistics.

use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};

use super::{SharedPrefix, attention, cached_attention, composed};
use crate::model::mask::blocked_keys;
use crate::random_stream::draw;

fn device() -> Device {
    Device::flex().autodiff()
}

fn random<const D: usize>(dims: [usize; D]) -> Tensor<D> {
    draw(dims, Distribution::Normal(0.0, 1.0), &device()).require_grad()
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// `[batch, 1, seq, seq]` from per-row attention masks and position ids.
fn mask(rows: &[(Vec<i64>, Vec<i64>)], seq: usize) -> Tensor<4, Bool> {
    let mut flat = Vec::new();
    for (attention_mask, positions) in rows {
        flat.extend(blocked_keys(attention_mask, positions, None));
    }
    Tensor::from_data(TensorData::new(flat, [rows.len(), 1, seq, seq]), &device())
}

/// Compares forward values and the gradients of `sum(out * w)` for both implementations.
fn check(heads: usize, kv_heads: usize, seq: usize, head_dim: usize, blocked: Tensor<4, Bool>) {
    let batch = blocked.dims()[0];
    let q = random([batch, heads, seq, head_dim]);
    let k = random([batch, kv_heads, seq, head_dim]);
    let v = random([batch, kv_heads, seq, head_dim]);
    let w = draw(
        [batch, seq, heads, head_dim],
        Distribution::Default,
        &device(),
    );
    assert!(
        super::flex::runs_on_flex(&q),
        "the fused kernel must be the one under test"
    );
    let run = |fused: bool| {
        let (q, k, v) = (q.clone(), k.clone(), v.clone());
        let out = if fused {
            attention(q.clone(), k.clone(), v.clone(), &blocked)
        } else {
            composed::grouped_query_attention(q.clone(), k.clone(), v.clone(), &blocked)
                .swap_dims(1, 2)
        };
        let grads = (out.clone() * w.clone()).sum().backward();
        let g = |t: &Tensor<4>| Tensor::<4>::from_inner(t.grad(&grads).unwrap());
        (out.inner(), g(&q), g(&k), g(&v))
    };
    let (fused, reference) = (run(true), run(false));
    assert!(max_abs_diff(fused.0, reference.0) < 2e-5, "forward");
    assert!(max_abs_diff(fused.1, reference.1) < 1e-4, "grad q");
    assert!(max_abs_diff(fused.2, reference.2) < 1e-4, "grad k");
    assert!(max_abs_diff(fused.3, reference.3) < 1e-4, "grad v");
}

#[test]
fn causal_with_right_and_left_padding_matches_reference() {
    let seq = 70; // not a multiple of the tile or of the SIMD lanes
    let right: Vec<i64> = (0..seq).map(|i| (i < 50) as i64).collect();
    let left: Vec<i64> = (0..seq).map(|i| (i >= 9) as i64).collect();
    let full = vec![1i64; seq];
    let rows: Vec<_> = [right, left, full]
        .into_iter()
        .map(|m| {
            let p = crate::model::mask::position_ids_from_mask(std::slice::from_ref(&m)).remove(0);
            (m, p)
        })
        .collect();
    check(4, 2, seq, 8, mask(&rows, seq));
    check(3, 3, seq, 16, mask(&rows, seq));
}

#[test]
fn packed_samples_match_reference() {
    let seq = 96;
    let positions: Vec<i64> = (0..seq as i64)
        .map(|i| if i < 40 { i } else { i - 40 })
        .collect();
    check(4, 1, seq, 8, mask(&[(vec![1; seq], positions)], seq));
}

/// Rows of `seq` tokens with the attention masks given and positions counted from each row's
/// first real token.
fn padded_rows(masks: Vec<Vec<i64>>) -> Vec<(Vec<i64>, Vec<i64>)> {
    masks
        .into_iter()
        .map(|m| {
            let p = crate::model::mask::position_ids_from_mask(std::slice::from_ref(&m)).remove(0);
            (m, p)
        })
        .collect()
}

#[test]
fn long_rows_over_several_key_blocks_with_gqa_match_reference() {
    // 300 keys: three key blocks (128, 128, 44) and query tiles of 36 positions for a group
    // of 7 query heads per kv head (Qwen2.5-0.5B's 14 / 2), neither dividing the length
    let seq = 300;
    let right: Vec<i64> = (0..seq).map(|i| (i < 261) as i64).collect();
    let left: Vec<i64> = (0..seq).map(|i| (i >= 137) as i64).collect();
    let rows = padded_rows(vec![right, left, vec![1; seq]]);
    check(7, 1, seq, 16, mask(&rows, seq));
    // one query head per kv head: tiles of 64 positions
    check(2, 2, seq, 8, mask(&rows[2..], seq));
}

#[test]
fn packed_samples_across_key_blocks_match_reference() {
    // three samples packed in one row, boundaries inside key blocks and query tiles
    let seq = 290;
    let positions: Vec<i64> = (0..seq as i64)
        .map(|i| match i {
            0..100 => i,
            100..230 => i - 100,
            _ => i - 230,
        })
        .collect();
    check(4, 2, seq, 8, mask(&[(vec![1; seq], positions)], seq));
}

#[test]
fn rows_that_see_no_key_attend_uniformly_like_the_reference() {
    let (batch, seq) = (2, 40);
    let mut flat = vec![false; batch * seq * seq];
    for q in 0..seq {
        for k in 0..seq {
            flat[q * seq + k] = k > q || q % 7 == 3; // rows 3, 10, ... see nothing
        }
    }
    let blocked = Tensor::from_data(TensorData::new(flat, [batch, 1, seq, seq]), &device());
    check(2, 1, seq, 8, blocked);
}

#[test]
fn rows_with_holes_between_visible_keys_match_the_reference() {
    // 150 keys over two key blocks; every row misses keys 2, 7, 12, ... before it (a mask no
    // causal or packed batch makes, so these rows read their mask bytes)
    let seq = 150;
    let mut flat = vec![false; seq * seq];
    for q in 0..seq {
        for k in 0..seq {
            flat[q * seq + k] = k > q || (k % 5 == 2 && k < q);
        }
    }
    let blocked = Tensor::from_data(TensorData::new(flat, [1, 1, seq, seq]), &device());
    check(4, 2, seq, 8, blocked);
}

#[test]
fn inference_without_autodiff_matches_reference() {
    let device = Device::flex();
    let q = draw([2, 4, 33, 8], Distribution::Default, &device);
    let k = draw([2, 2, 33, 8], Distribution::Default, &device);
    let v = draw([2, 2, 33, 8], Distribution::Default, &device);
    let m = mask(
        &[
            (vec![1; 33], (0..33).collect()),
            (vec![1; 33], (0..33).collect()),
        ],
        33,
    );
    let m = Tensor::<4, Bool>::from_data(m.into_data(), &device);
    let fused = attention(q.clone(), k.clone(), v.clone(), &m);
    let reference = composed::grouped_query_attention(q, k, v, &m).swap_dims(1, 2);
    assert!(max_abs_diff(fused, reference) < 2e-5);
}

#[test]
fn rms_norm_matches_reference_values_and_gradients() {
    let x = random([2, 37, 48]);
    let weight = random([48]);
    let w = draw([2, 37, 48], Distribution::Default, &device());
    let run = |fused: bool| {
        let out = if fused {
            super::rms_norm(x.clone(), weight.clone(), 1e-6)
        } else {
            composed::rms_norm(x.clone(), weight.clone(), 1e-6)
        };
        let grads = (out.clone() * w.clone()).sum().backward();
        let gx = Tensor::<3>::from_inner(x.grad(&grads).unwrap());
        let gw = Tensor::<1>::from_inner(weight.grad(&grads).unwrap());
        (out.inner(), gx, gw)
    };
    assert!(super::flex::runs_on_flex(&x));
    let (fused, reference) = (run(true), run(false));
    assert!(max_abs_diff(fused.0, reference.0) < 1e-5);
    assert!(max_abs_diff(fused.1, reference.1) < 1e-4);
    assert!(max_abs_diff(fused.2, reference.2) < 1e-3);
}

#[test]
fn rope_matches_reference_values_and_gradients() {
    let (batch, heads, seq, d) = (2, 3, 21, 16);
    let x = random([batch, heads, seq, d]);
    // halves with different angles: the backward must be the exact transpose for any tables
    let angles = draw([batch, 1, seq, d], Distribution::Default, &device()) * 6.0;
    let (cos, sin) = (angles.clone().cos(), angles.sin());
    let w = draw([batch, heads, seq, d], Distribution::Default, &device());
    let run = |fused: bool| {
        let out = if fused {
            super::rope(x.clone(), &cos, &sin)
        } else {
            composed::rope(x.clone(), &cos, &sin)
        };
        let grads = (out.clone() * w.clone()).sum().backward();
        (
            out.inner(),
            Tensor::<4>::from_inner(x.grad(&grads).unwrap()),
        )
    };
    let (fused, reference) = (run(true), run(false));
    assert!(max_abs_diff(fused.0, reference.0) < 1e-5);
    assert!(max_abs_diff(fused.1, reference.1) < 1e-5);
}

#[test]
fn mlp_matches_reference_values_and_gradients() {
    let x = random([2, 19, 24]);
    let gate = random([24, 40]);
    let up = random([24, 40]);
    let down = random([40, 24]);
    let w = draw([2, 19, 24], Distribution::Default, &device());
    let run = |fused: bool| {
        let (g, u, d) = (gate.clone(), up.clone(), down.clone());
        let out = if fused {
            super::swiglu_mlp(x.clone(), g, u, d)
        } else {
            composed::swiglu_mlp(x.clone(), g, u, d)
        };
        let grads = (out.clone() * w.clone()).sum().backward();
        let g2 = |t: &Tensor<2>| Tensor::<2>::from_inner(t.grad(&grads).unwrap());
        let gx = Tensor::<3>::from_inner(x.grad(&grads).unwrap());
        (out.inner(), gx, g2(&gate), g2(&up), g2(&down))
    };
    assert!(super::flex::runs_on_flex(&x));
    let (fused, reference) = (run(true), run(false));
    assert!(max_abs_diff(fused.0, reference.0) < 1e-4);
    assert!(max_abs_diff(fused.1, reference.1) < 1e-3);
    assert!(max_abs_diff(fused.2, reference.2) < 1e-3);
    assert!(max_abs_diff(fused.3, reference.3) < 1e-3);
    assert!(max_abs_diff(fused.4, reference.4) < 1e-3);
}

/// Frozen weights (LoRA, a reference model) get no gradient, and the input's is unchanged.
#[test]
fn mlp_with_frozen_weights_gives_the_input_gradient_only() {
    let x = random([2, 11, 16]);
    let [gate, up, down] =
        [[16, 24], [16, 24], [24, 16]].map(|d| draw(d, Distribution::Normal(0.0, 1.0), &device()));
    let w = draw([2, 11, 16], Distribution::Default, &device());
    let run = |fused: bool| {
        let (g, u, d) = (gate.clone(), up.clone(), down.clone());
        let out = if fused {
            super::swiglu_mlp(x.clone(), g, u, d)
        } else {
            composed::swiglu_mlp(x.clone(), g, u, d)
        };
        let grads = (out * w.clone()).sum().backward();
        assert!([&gate, &up, &down].iter().all(|t| t.grad(&grads).is_none()));
        Tensor::<3>::from_inner(x.grad(&grads).unwrap())
    };
    assert!(max_abs_diff(run(true), run(false)) < 1e-3);
}

#[test]
fn label_log_probs_and_stats_match_reference() {
    let (batch, seq, vocab) = (3, 9, 37); // vocab not a multiple of the SIMD lanes
    let logits = random([batch, seq, vocab]) * 3.0;
    let logits = logits.detach().require_grad();
    let labels: Vec<i64> = (0..batch * (seq - 1))
        .map(|i| ((i * 7) % vocab) as i64)
        .collect();
    let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [batch, seq - 1]), &device());
    let w = draw([batch, seq - 1], Distribution::Default, &device());
    let run = |fused: bool| {
        let (logps, stats) = if fused {
            super::label_log_probs(logits.clone(), labels.clone())
        } else {
            composed::label_log_probs(logits.clone(), labels.clone())
        };
        let grads = (logps.clone() * w.clone()).sum().backward();
        let g = Tensor::<3>::from_inner(logits.grad(&grads).unwrap());
        (logps.inner(), g, stats)
    };
    assert!(super::flex::runs_on_flex(&logits));
    let (fused, reference) = (run(true), run(false));
    assert!(max_abs_diff(fused.0, reference.0) < 1e-5, "log-probs");
    assert!(max_abs_diff(fused.1, reference.1) < 1e-5, "gradient");
    let (a, b) = (fused.2, reference.2);
    assert!(
        max_abs_diff(a.entropy.inner(), b.entropy.inner()) < 1e-5,
        "entropy"
    );
    assert!(max_abs_diff(a.log_sum_sq_probs.inner(), b.log_sum_sq_probs.inner()) < 1e-5);
    assert!(max_abs_diff(a.mean_logits.inner(), b.mean_logits.inner()) < 1e-5);
    assert_eq!(a.argmax.into_data(), b.argmax.into_data());
}

/// The decoding kernel against the composed version: two new queries per row over a cache of
/// 37 columns, with padding, unwritten columns and a row whose keys are all blocked.
#[test]
fn cached_attention_matches_reference() {
    let device = Device::flex();
    let (batch, heads, kv_heads, new, capacity, d) = (3, 4, 2, 2, 37, 8);
    let q = draw([batch, heads, new, d], Distribution::Default, &device);
    let k = draw(
        [batch, kv_heads, capacity, d],
        Distribution::Default,
        &device,
    );
    let v = draw(
        [batch, kv_heads, capacity, d],
        Distribution::Default,
        &device,
    );
    let mut flat = vec![true; batch * new * capacity];
    for b in 0..batch {
        for q in 0..new {
            for k in 0..capacity {
                let visible = match b {
                    0 => k <= 20 + q,
                    1 => (5..=20 + q).contains(&k),
                    _ => false,
                };
                flat[(b * new + q) * capacity + k] = !visible;
            }
        }
    }
    let blocked =
        Tensor::<4, Bool>::from_data(TensorData::new(flat, [batch, 1, new, capacity]), &device);
    let fused = cached_attention(
        q.clone(),
        k.clone(),
        v.clone(),
        &blocked,
        &SharedPrefix::default(),
    );
    let reference = composed::cached_attention(q, k, v, &blocked);
    assert!(max_abs_diff(fused, reference) < 2e-5);
}

/// Rows 1 and 2 copy row 0's first 15 cache columns (a prompt's copies): reading those columns
/// from row 0 gives the same output bit for bit; the kernel does read them from row 0 (a row
/// whose own prefix differs gets row 0's answer).
#[test]
fn cached_attention_reads_shared_prompt_columns_from_the_source_row() {
    let device = Device::flex();
    let (batch, heads, kv_heads, capacity, d, prefix) = (3, 4, 2, 37, 8, 15);
    let q = draw([batch, heads, 1, d], Distribution::Default, &device);
    let cache = |_| {
        let t = draw(
            [batch, kv_heads, capacity, d],
            Distribution::Default,
            &device,
        );
        let first = t.clone().slice([0..1, 0..kv_heads, 0..prefix, 0..d]);
        t.slice_assign([1..2, 0..kv_heads, 0..prefix, 0..d], first.clone())
            .slice_assign([2..3, 0..kv_heads, 0..prefix, 0..d], first)
    };
    let (k, v) = (cache(0), cache(1));
    let flat: Vec<bool> = (0..batch * capacity).map(|i| i % capacity > 30).collect();
    let blocked =
        Tensor::<4, Bool>::from_data(TensorData::new(flat, [batch, 1, 1, capacity]), &device);
    let shared = SharedPrefix {
        source: vec![0, 0, 0],
        columns: prefix,
    };
    let own = cached_attention(
        q.clone(),
        k.clone(),
        v.clone(),
        &blocked,
        &SharedPrefix::default(),
    );
    let from_source = cached_attention(q.clone(), k.clone(), v.clone(), &blocked, &shared);
    assert_eq!(own.into_data(), from_source.clone().into_data());
    // Row 1's own prompt columns changed: with sharing it still reads row 0's.
    let changed = k.clone().slice_assign(
        [1..2, 0..kv_heads, 0..prefix, 0..d],
        draw([1, kv_heads, prefix, d], Distribution::Default, &device),
    );
    let read = cached_attention(q, changed, v, &blocked, &shared);
    assert_eq!(read.into_data(), from_source.into_data());
}
