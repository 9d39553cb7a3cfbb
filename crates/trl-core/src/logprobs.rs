//! Log-probabilities of label tokens and the token-level metrics every method logs
//! (entropy, accuracy). The one place that shifts logits against labels.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::Result;
use crate::host::scalar;
use crate::kernels::{self, TokenStats};
use crate::model::{CausalLm, TokenBatch};

/// Label value that marks a position as not trained on (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Per-token log-probabilities of the next-token labels.
#[derive(Debug, Clone)]
pub struct LabelLogProbs {
    /// `[batch, seq - 1]`: log p(label[t + 1] | tokens <= t), 0 where the label is ignored.
    pub logps: Tensor<2>,
    /// `[batch, seq - 1]`: 1.0 where the label counts, else 0.0.
    pub mask: Tensor<2>,
    /// `[batch, seq - 1]` statistics of every position's distribution, without autodiff.
    stats: TokenStats,
    /// `[batch, seq - 1]` shifted labels with ignored positions set to 0.
    safe_labels: Tensor<2, Int>,
}

/// Shifts `logits` `[batch, seq, vocab]` against `labels` `[batch][seq]` (position t predicts
/// label t + 1, as transformers' causal-LM loss does) and gathers the label log-probs.
pub fn label_log_probs(logits: Tensor<3>, labels: &[Vec<i64>]) -> LabelLogProbs {
    let device = logits.device();
    let (safe, mask) = shifted_labels(labels, &device);
    // [batch, seq - 1]
    let (gathered, stats) = kernels::label_log_probs(logits, safe.clone());
    LabelLogProbs {
        logps: gathered * mask.clone(),
        mask,
        stats,
        safe_labels: safe,
    }
}

/// [`label_log_probs`] of `model`'s logits `hidden @ lm_head / temperature` (`hidden`
/// `[batch, seq, hidden]` from [`CausalLm::decoder`]) through the fused, chunked head of
/// [`kernels::head_label_log_probs`], so that the `[batch, seq, vocab]` logits are never held;
/// through the logits when the head cannot be folded into one weight (see
/// [`CausalLm::fused_head`]).
pub fn head_label_log_probs(
    model: &CausalLm,
    hidden: Tensor<3>,
    labels: &[Vec<i64>],
    temperature: f64,
) -> LabelLogProbs {
    let Some(head) = model.fused_head(&hidden) else {
        let mut logits = model.logits_from_hidden(hidden);
        if temperature != 1.0 {
            logits = logits.div_scalar(temperature as f32);
        }
        return label_log_probs(logits, labels);
    };
    let device = hidden.device();
    let (safe, mask) = shifted_labels(labels, &device);
    // [batch, seq - 1]
    let (gathered, stats) = kernels::head_label_log_probs(hidden, &head, safe.clone(), temperature);
    LabelLogProbs {
        logps: gathered * mask.clone(),
        mask,
        stats,
        safe_labels: safe,
    }
}

/// [`head_label_log_probs`] of `batch` through the whole model at temperature 1: what
/// `label_log_probs(model.forward(batch), labels)` computes, without the logits.
pub fn model_label_log_probs(
    model: &CausalLm,
    batch: &TokenBatch,
    labels: &[Vec<i64>],
) -> LabelLogProbs {
    head_label_log_probs(model, model.decoder().forward(batch), labels, 1.0)
}

/// `(labels with ignored set to 0, mask)`, both `[batch, seq - 1]`, shifted left by one.
fn shifted_labels(labels: &[Vec<i64>], device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let batch = labels.len();
    // An empty row has no label to shift: width 0 instead of an underflow (callers refuse
    // data that leaves no completion token before it gets here).
    let width = labels.first().map_or(0, Vec::len).saturating_sub(1);
    let mut safe = Vec::with_capacity(batch * width);
    let mut mask = Vec::with_capacity(batch * width);
    for row in labels {
        for &label in row.get(1..).unwrap_or_default() {
            let counted = label != IGNORE_INDEX;
            safe.push(if counted { label } else { 0 });
            mask.push(if counted { 1.0f32 } else { 0.0 });
        }
    }
    (
        Tensor::from_data(TensorData::new(safe, [batch, width]), device),
        Tensor::from_data(TensorData::new(mask, [batch, width]), device),
    )
}

impl LabelLogProbs {
    /// Number of counted label tokens.
    pub fn num_label_tokens(&self) -> Result<f64> {
        scalar(
            self.mask.clone().without_autodiff().sum(),
            "the label token count",
        )
    }

    /// Sum over counted tokens of `-log p` (the numerator of the token-mean NLL).
    pub fn nll_sum(&self) -> Tensor<1> {
        self.logps.clone().sum().neg()
    }

    /// Sum of the label log-probs of each row, `[batch]` (a sequence's log-likelihood).
    pub fn sequence_sums(&self) -> Tensor<1> {
        let [batch, _] = self.logps.dims();
        self.logps.clone().sum_dim(1).reshape([batch])
    }

    /// Counted label tokens of each row, `[batch]`, without autodiff.
    pub fn token_counts(&self) -> Tensor<1> {
        let [batch, _] = self.mask.dims();
        self.mask
            .clone()
            .without_autodiff()
            .sum_dim(1)
            .reshape([batch])
    }

    /// Entropy `-Σ_v p_v log p_v` of every position's distribution, `[batch, seq - 1]`,
    /// without autodiff (GRPO's per-token entropies).
    pub fn entropies(&self) -> Tensor<2> {
        self.stats.entropy.clone()
    }

    /// `log Σ_v p_v²` per position, `[batch, seq - 1]`, without autodiff (WPO weighting).
    pub fn log_sum_sq_probs(&self) -> Tensor<2> {
        self.stats.log_sum_sq_probs.clone()
    }

    /// `(sum of per-token entropy, number of tokens)` over counted positions, without autodiff.
    pub fn entropy_sum(&self) -> Result<(f64, f64)> {
        self.entropy_sum_rows(&self.all_rows())
    }

    /// [`Self::entropy_sum`] over the rows in `rows` only.
    pub fn entropy_sum_rows(&self, rows: &[usize]) -> Result<(f64, f64)> {
        self.masked_sum_rows(self.stats.entropy.clone(), rows)
    }

    /// `(correct argmax predictions, counted tokens)` over counted positions.
    pub fn accuracy_counts(&self) -> Result<(f64, f64)> {
        self.accuracy_counts_rows(&self.all_rows())
    }

    /// [`Self::accuracy_counts`] over the rows in `rows` only.
    pub fn accuracy_counts_rows(&self, rows: &[usize]) -> Result<(f64, f64)> {
        let correct = self
            .stats
            .argmax
            .clone()
            .equal(self.safe_labels.clone())
            .float();
        self.masked_sum_rows(correct, rows)
    }

    /// `(sum of the vocabulary-mean logit, counted tokens)` over the rows in `rows`.
    pub fn mean_logits_sum_rows(&self, rows: &[usize]) -> Result<(f64, f64)> {
        self.masked_sum_rows(self.stats.mean_logits.clone(), rows)
    }

    fn all_rows(&self) -> Vec<usize> {
        (0..self.mask.dims()[0]).collect()
    }

    /// `(sum of values at counted positions, number of counted positions)` over `rows`.
    fn masked_sum_rows(&self, values: Tensor<2>, rows: &[usize]) -> Result<(f64, f64)> {
        if rows.is_empty() {
            return Ok((0.0, 0.0));
        }
        let device = values.device();
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), &device);
        let mask = self
            .mask
            .clone()
            .without_autodiff()
            .select(0, index.clone());
        let values = values.select(0, index);
        Ok((
            scalar((values * mask.clone()).sum(), "a masked token sum")?,
            scalar(mask.sum(), "a masked token count")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_shifted_labels_and_ignores_minus_100() {
        let device = Device::default();
        // vocab 2, seq 3: uniform logits everywhere -> log(0.5) per counted token
        let logits = Tensor::<3>::zeros([1, 3, 2], &device);
        let lp = label_log_probs(logits, &[vec![IGNORE_INDEX, 1, IGNORE_INDEX]]);
        let values = lp.logps.clone().into_data().try_to_vec::<f32>().unwrap();
        assert!((values[0] - 0.5f32.ln()).abs() < 1e-6 && values[1] == 0.0);
        assert_eq!(lp.num_label_tokens().unwrap(), 1.0);
        let (entropy, n) = lp.entropy_sum().unwrap();
        assert!((entropy - 2f64.ln()).abs() < 1e-6 && n == 1.0);
    }

    /// The fused head equals the logits path on a tied (tiny-qwen2) and an untied (tiny-llama)
    /// model, with ignored labels and a temperature.
    #[test]
    fn the_fused_head_equals_the_logits_path() {
        let device = Device::default();
        let ids: Vec<Vec<u32>> = vec![vec![5, 9, 2, 7, 3], vec![1, 4, 4, 8, 6]];
        let batch = TokenBatch::new(ids.clone(), vec![vec![1; 5]; 2]);
        let labels: Vec<Vec<i64>> = vec![vec![5, 9, IGNORE_INDEX, 7, 3], vec![1, 4, 4, 8, 6]];
        for name in ["tiny-qwen2", "tiny-llama"] {
            let dir = format!(
                "{}/../../fixtures/models/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            let model = crate::model::load_causal_lm(std::path::Path::new(&dir), &device).unwrap();
            let hidden = model.decoder().forward(&batch);
            let fused = head_label_log_probs(&model, hidden, &labels, 0.7);
            let reference = label_log_probs(model.forward(&batch) / 0.7, &labels);
            let host = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
            let pairs = [
                (host(fused.logps.clone()), host(reference.logps.clone())),
                (host(fused.entropies()), host(reference.entropies())),
            ];
            for (ours, theirs) in pairs {
                let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = ours
                    .iter()
                    .zip(&theirs)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(worst <= 1e-5 * scale, "{name}: {worst} of {scale}");
            }
            assert_eq!(
                fused.accuracy_counts().unwrap(),
                reference.accuracy_counts().unwrap(),
                "{name}"
            );
        }
    }
}
