//! Label log-probabilities of a causal LM's logits, their gradient and the per-position
//! statistics every method logs, in one pass per position over the vocabulary.
//!
//! Hand-written because the composed form materialises a `[tokens, vocab]` log-softmax that
//! autodiff keeps for the backward and the metrics walk again (entropy, argmax, WPO's
//! `log Σ p²`): with a real vocabulary (151k for Qwen2.5) that tensor is the largest one of a
//! step. Here only the logits and one log-sum-exp per position are kept.

use rayon::prelude::*;

use super::fast_math::{exp, simd_targets};

/// Positions per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Lanes of the manual reductions, so that they vectorise.
const LANES: usize = 16;

/// Sizes: logits are `[batch, seq, vocab]`; position `t < seq - 1` of row `b` predicts
/// `labels[b * (seq - 1) + t]`.
#[derive(Clone, Copy, Debug)]
pub struct LogitsShape {
    pub batch: usize,
    pub seq: usize,
    pub vocab: usize,
}

impl LogitsShape {
    /// Predicting positions: `batch * (seq - 1)`.
    pub fn positions(&self) -> usize {
        self.batch * self.seq.saturating_sub(1)
    }

    /// The logits row of predicting position `p`.
    fn row<'a>(&self, logits: &'a [f32], p: usize) -> &'a [f32] {
        let (b, t) = (p / (self.seq - 1), p % (self.seq - 1));
        &logits[(b * self.seq + t) * self.vocab..][..self.vocab]
    }
}

simd_targets! {
    /// `(max, Σ exp(x - max))` of one row.
    pub(super) fn max_and_sum(x: &[f32]) -> (f32, f32) {
        let body = x.len() / LANES * LANES;
        let mut lanes = [f32::NEG_INFINITY; LANES];
        for chunk in x[..body].chunks_exact(LANES) {
            for l in 0..LANES {
                lanes[l] = lanes[l].max(chunk[l]);
            }
        }
        let max = x[body..].iter().fold(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max), |m, &v| m.max(v));
        let mut sums = [0.0f32; LANES];
        for chunk in x[..body].chunks_exact(LANES) {
            for l in 0..LANES {
                sums[l] += exp(chunk[l] - max);
            }
        }
        let tail: f32 = x[body..].iter().map(|&v| exp(v - max)).sum();
        (max, sums.iter().sum::<f32>() + tail)
    }
}

/// Log-prob of the label at one position, NaN for a label outside the vocabulary.
pub(super) fn label_logp(row: &[f32], label: i64, lse: f32) -> f32 {
    usize::try_from(label)
        .ok()
        .and_then(|l| row.get(l))
        .map_or(f32::NAN, |&x| x - lse)
}

/// Writes `logps` and `lse`, each `[batch * (seq - 1)]`.
pub fn label_logprobs_forward(
    logits: &[f32],
    labels: &[i64],
    shape: LogitsShape,
    logps: &mut [f32],
    lse: &mut [f32],
) {
    let n = shape.positions();
    assert!(labels.len() == n && logps.len() == n && lse.len() == n);
    assert_eq!(logits.len(), shape.batch * shape.seq * shape.vocab);
    logps
        .par_chunks_mut(ROWS_PER_TASK)
        .zip(lse.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(task, (logps, lse))| {
            for (i, (logp, lse)) in logps.iter_mut().zip(lse).enumerate() {
                let p = task * ROWS_PER_TASK + i;
                let row = shape.row(logits, p);
                let (max, sum) = max_and_sum(row);
                *lse = max + sum.ln();
                *logp = label_logp(row, labels[p], *lse);
            }
        });
}

/// Given `grad` `[batch * (seq - 1)]` of the log-probs, writes `d_logits` `[batch, seq, vocab]`:
/// `grad * (onehot(label) - softmax)` on predicting positions, 0 on each row's last position.
pub fn label_logprobs_backward(
    logits: &[f32],
    labels: &[i64],
    lse: &[f32],
    grad: &[f32],
    shape: LogitsShape,
    d_logits: &mut [f32],
) {
    let LogitsShape { seq, vocab, .. } = shape;
    assert_eq!(d_logits.len(), logits.len());
    d_logits
        .par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .enumerate()
        .for_each(|(row_index, (d_row, row))| {
            let (b, t) = (row_index / seq, row_index % seq);
            if t + 1 == seq {
                d_row.fill(0.0);
                return;
            }
            let p = b * (seq - 1) + t;
            softmax_grad_row(row, lse[p], grad[p], d_row);
            if let Some(d) = usize::try_from(labels[p])
                .ok()
                .and_then(|l| d_row.get_mut(l))
            {
                *d += grad[p];
            }
        });
}

simd_targets! {
    /// `d_row = -g * softmax(row)` with the row's log-sum-exp.
    fn softmax_grad_row(row: &[f32], lse: f32, g: f32, d_row: &mut [f32]) {
        for (d, &x) in d_row.iter_mut().zip(row) {
            *d = -g * exp(x - lse);
        }
    }
}

/// Statistics of one predicting position's distribution, the order of [`token_stats`]'s
/// columns.
pub const STATS: usize = 4;

/// Writes `[batch * (seq - 1), STATS]`: entropy, argmax (as f32; exact below 2^24 tokens),
/// `log Σ p²` and the mean logit of every predicting position.
pub fn token_stats(logits: &[f32], shape: LogitsShape, out: &mut [f32]) {
    assert_eq!(out.len(), shape.positions() * STATS);
    out.par_chunks_mut(ROWS_PER_TASK * STATS)
        .enumerate()
        .for_each(|(task, out)| {
            for (i, stats) in out.chunks_exact_mut(STATS).enumerate() {
                let row = shape.row(logits, task * ROWS_PER_TASK + i);
                stats.copy_from_slice(&row_stats(row));
            }
        });
}

simd_targets! {
    /// [entropy, argmax, log Σ p², mean] of one row of logits.
    pub(super) fn row_stats(row: &[f32]) -> [f32; STATS] {
        let (max, sum) = max_and_sum(row);
        let (mut weighted, mut squares, mut total) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        let body = row.len() / LANES * LANES;
        for chunk in row[..body].chunks_exact(LANES) {
            for l in 0..LANES {
                let e = exp(chunk[l] - max);
                weighted[l] += e * (chunk[l] - max);
                squares[l] += e * e;
                total[l] += chunk[l];
            }
        }
        let (mut w, mut sq, mut t): (f32, f32, f32) =
            (weighted.iter().sum(), squares.iter().sum(), total.iter().sum());
        for &x in &row[body..] {
            let e = exp(x - max);
            w += e * (x - max);
            sq += e * e;
            t += x;
        }
        let argmax = row
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) })
            .0;
        // entropy = lse - Σ p x = log Σ e - Σ e (x - max) / Σ e with e = exp(x - max), shifted so
        // that large logits do not cancel; log Σ p² = log Σ e² - 2 log Σ e
        [sum.ln() - w / sum, argmax as f32, sq.ln() - 2.0 * sum.ln(), t / row.len() as f32]
    }
}
