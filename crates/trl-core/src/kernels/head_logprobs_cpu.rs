//! The LM head and the label log-probs as one operation ("fused linear cross-entropy"):
//! hidden states and the output projection in, per-token label log-probs and
//! [`super::TokenStats`] out, computed a chunk of tokens at a time in the forward and again in
//! the backward, so that no `[tokens, vocab]` logits tensor is ever held for the whole batch.
//!
//! With a 151k vocabulary the logits of 2048 tokens take 1.2 GB in f32, and autodiff keeps
//! them (or their log-softmax) until the backward; here the largest temporary is one chunk of
//! about [`CHUNK_ELEMENTS`] logits, and the backward recomputes each chunk's logits from the
//! saved hidden states and one log-sum-exp per token.

use rayon::prelude::*;

use super::buffer::zeroed;
use super::fast_math::{exp, simd_targets};
use super::gemm::{Matrix, PreparedRhs, matmul, matmul_prepared};
use super::logprobs_cpu::{STATS, label_logp, max_and_sum, row_stats};

/// Logits per chunk (64 MB of f32): large enough that each pass over the weight does
/// `CHUNK_ELEMENTS / vocab` rows of work per weight element, small next to a model's weights.
pub const CHUNK_ELEMENTS: usize = 1 << 24;

/// Columns of the forward output: the label log-prob, then the [`STATS`] statistics.
pub const OUTPUT_COLUMNS: usize = 1 + STATS;

/// Sizes and options of one head application.
#[derive(Clone, Copy, Debug)]
pub struct HeadShape {
    pub tokens: usize,
    pub hidden: usize,
    pub vocab: usize,
    /// The weight is `[vocab, hidden]` (an embedding table, tied heads) rather than
    /// `[hidden, vocab]` (burn's `Linear` layout).
    pub vocab_major: bool,
    /// Logits are `hidden @ weight / temperature` (GRPO/PPO sample at a temperature).
    pub temperature: f32,
    /// Tokens per chunk.
    pub chunk: usize,
}

impl HeadShape {
    /// Tokens per chunk for a vocabulary of `vocab`: about [`CHUNK_ELEMENTS`] logits.
    pub fn chunk_for(vocab: usize) -> usize {
        (CHUNK_ELEMENTS / vocab.max(1)).max(16)
    }

    fn weight<'a>(&self, weight: &'a [f32]) -> Matrix<'a> {
        let (rows, cols) = if self.vocab_major {
            (self.vocab, self.hidden)
        } else {
            (self.hidden, self.vocab)
        };
        Matrix {
            data: weight,
            rows,
            cols,
        }
    }

    /// The weight as the right-hand side of the logits' products, `[hidden, vocab]`.
    fn logits_rhs<'a>(&self, weight: &'a [f32]) -> PreparedRhs<'a> {
        PreparedRhs::new(self.weight(weight), self.vocab_major)
    }

    /// `logits[rows, vocab] = hidden_rows @ W / temperature` (`weight` from
    /// [`HeadShape::logits_rhs`]).
    fn logits(&self, hidden_rows: &[f32], weight: &PreparedRhs<'_>, logits: &mut [f32]) {
        let rows = hidden_rows.len() / self.hidden;
        let lhs = Matrix {
            data: hidden_rows,
            rows,
            cols: self.hidden,
        };
        let out = &mut logits[..rows * self.vocab];
        matmul_prepared(&lhs, false, weight, out, false);
        if self.temperature != 1.0 {
            let t = self.temperature;
            out.par_chunks_mut(self.vocab)
                .for_each(|row| row.iter_mut().for_each(|x| *x /= t));
        }
    }
}

/// Writes `out` `[tokens, OUTPUT_COLUMNS]` (label log-prob, entropy, argmax, `log Σ p²`, mean
/// logit; NaN log-prob for a label outside the vocabulary) and `lse` `[tokens]` from `hidden`
/// `[tokens, hidden]`, the weight and `labels` `[tokens]`.
pub fn head_logprobs_forward(
    hidden: &[f32],
    weight: &[f32],
    labels: &[i64],
    shape: HeadShape,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let HeadShape {
        tokens,
        vocab,
        hidden: width,
        ..
    } = shape;
    assert!(labels.len() == tokens && lse.len() == tokens);
    assert!(hidden.len() == tokens * width && weight.len() == width * vocab);
    assert_eq!(out.len(), tokens * OUTPUT_COLUMNS);
    let chunk = shape.chunk.clamp(1, tokens.max(1));
    let mut logits = zeroed::<f32>(chunk * vocab);
    let weight = shape.logits_rhs(weight);
    for start in (0..tokens).step_by(chunk) {
        let rows = chunk.min(tokens - start);
        shape.logits(
            &hidden[start * width..(start + rows) * width],
            &weight,
            &mut logits,
        );
        logits[..rows * vocab]
            .par_chunks(vocab)
            .zip(out[start * OUTPUT_COLUMNS..].par_chunks_mut(OUTPUT_COLUMNS))
            .zip(&mut lse[start..start + rows])
            .zip(&labels[start..start + rows])
            .for_each(|(((row, out), lse), &label)| {
                let (max, sum) = max_and_sum(row);
                *lse = max + sum.ln();
                out[0] = label_logp(row, label, *lse);
                out[1..].copy_from_slice(&row_stats(row));
            });
    }
}

/// What the backward needs besides the shape.
pub struct HeadGradInputs<'a> {
    pub hidden: &'a [f32],
    pub weight: &'a [f32],
    pub labels: &'a [i64],
    pub lse: &'a [f32],
    /// `[tokens]`: the gradient of the label log-probs.
    pub grad: &'a [f32],
}

/// Accumulates the gradients of `Σ grad · logp` into `d_hidden` `[tokens, hidden]` and
/// `d_weight` (the weight's layout), each when asked for. Tokens whose gradient is 0 (ignored
/// labels, masked positions) are skipped: the logits are recomputed for the others only,
/// gathered into chunks.
pub fn head_logprobs_backward(
    inputs: HeadGradInputs<'_>,
    shape: HeadShape,
    mut d_hidden: Option<&mut [f32]>,
    mut d_weight: Option<&mut [f32]>,
) {
    let HeadShape {
        hidden: width,
        vocab,
        ..
    } = shape;
    let active: Vec<usize> = (0..shape.tokens)
        .filter(|&t| inputs.grad[t] != 0.0)
        .collect();
    let chunk = shape.chunk.clamp(1, active.len().max(1));
    let mut logits = zeroed::<f32>(chunk * vocab);
    let mut rows_hidden = zeroed::<f32>(chunk * width);
    let mut rows_d_hidden = zeroed::<f32>(chunk * width);
    let for_logits = shape.logits_rhs(inputs.weight);
    // `[vocab, hidden]`: what `d_logits` multiplies into `d_hidden`.
    let for_d_hidden = d_hidden
        .is_some()
        .then(|| PreparedRhs::new(shape.weight(inputs.weight), !shape.vocab_major));
    for part in active.chunks(chunk) {
        let rows = part.len();
        for (dst, &t) in rows_hidden.chunks_exact_mut(width).zip(part) {
            dst.copy_from_slice(&inputs.hidden[t * width..(t + 1) * width]);
        }
        let rows_hidden = &rows_hidden[..rows * width];
        shape.logits(rows_hidden, &for_logits, &mut logits);
        let d_logits = &mut logits[..rows * vocab];
        d_logits
            .par_chunks_mut(vocab)
            .zip(part)
            .for_each(|(row, &t)| logits_grad_row(row, &inputs, t, shape.temperature));
        let d_logits = &logits[..rows * vocab];
        let d_matrix = Matrix {
            data: d_logits,
            rows,
            cols: vocab,
        };
        if let (Some(d_hidden), Some(weight)) = (d_hidden.as_deref_mut(), &for_d_hidden) {
            let out = &mut rows_d_hidden[..rows * width];
            matmul_prepared(&d_matrix, false, weight, out, false);
            for (src, &t) in out.chunks_exact(width).zip(part) {
                d_hidden[t * width..(t + 1) * width]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &s)| *d += s);
            }
        }
        if let Some(d_weight) = d_weight.as_deref_mut() {
            let h = Matrix {
                data: rows_hidden,
                rows,
                cols: width,
            };
            if shape.vocab_major {
                // [vocab, hidden] += d_logits^T @ h
                matmul(&d_matrix, true, &h, false, d_weight, true);
            } else {
                // [hidden, vocab] += h^T @ d_logits
                matmul(&h, true, &d_matrix, false, d_weight, true);
            }
        }
    }
}

/// Turns one row of logits into the gradient of `g · logp` with respect to the pre-temperature
/// logits: `g (onehot(label) - softmax) / temperature`.
fn logits_grad_row(row: &mut [f32], inputs: &HeadGradInputs<'_>, t: usize, temperature: f32) {
    let g = inputs.grad[t] / temperature;
    softmax_grad_in_place(row, inputs.lse[t], g);
    if let Some(d) = usize::try_from(inputs.labels[t])
        .ok()
        .and_then(|l| row.get_mut(l))
    {
        *d += g;
    }
}

simd_targets! {
    /// `row = -g * softmax(row)` with the row's log-sum-exp.
    fn softmax_grad_in_place(row: &mut [f32], lse: f32, g: f32) {
        for x in row.iter_mut() {
            *x = -g * exp(*x - lse);
        }
    }
}
