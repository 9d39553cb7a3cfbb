//! Per-token outputs of one forward pass, for comparing with what TRL's fused forward reports
//! on its first micro-batch (`first_batch_forward`, `first_batch_per_token_logps`): the label
//! log-probs and the statistics behind the entropy, logits and accuracy metrics.

use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;

use super::compare::{check_close_slices, check_lengths};
use crate::completions::CompletionBatch;
use crate::host::f32_values;
use crate::kernels;
use crate::logprobs::{IGNORE_INDEX, label_log_probs};
use crate::model::CausalLm;

/// Per-token outputs `[rows][seq - 1]` of a causal LM on a collated batch, each 0 where the
/// label is ignored (as TRL masks them), so they line up with TRL's lists.
#[derive(Debug, Clone)]
pub struct TokenOutputs {
    /// log p(label) of each completion token.
    pub log_probs: Vec<Vec<f64>>,
    /// Entropy of the predicted distribution.
    pub entropy: Vec<Vec<f64>>,
    /// Mean logit over the vocabulary.
    pub mean_logits: Vec<Vec<f64>>,
    /// 1.0 where the label is the most likely token.
    pub is_top1: Vec<Vec<f64>>,
}

/// Runs `model` on `batch` (no autodiff needed) and reads back [`TokenOutputs`].
pub fn token_outputs(model: &CausalLm, batch: &CompletionBatch) -> crate::Result<TokenOutputs> {
    let logits = model.forward(&batch.tokens);
    let device = logits.device();
    let [rows, seq, _] = logits.dims();
    let width = seq.saturating_sub(1);
    let ours = label_log_probs(logits.clone(), &batch.labels);
    // [rows, seq - 1]: the shifted labels, ignored ones as 0 (any id; they are masked below)
    let safe: Vec<i64> = batch
        .labels
        .iter()
        .flat_map(|row| {
            row.get(1..)
                .unwrap_or_default()
                .iter()
                .map(|&l| if l == IGNORE_INDEX { 0 } else { l })
        })
        .collect();
    let safe = Tensor::<2, Int>::from_data(TensorData::new(safe, [rows, width]), &device);
    let (_, stats) = kernels::label_log_probs(logits, safe.clone());
    let mask = ours.mask.clone();
    let read = |t: Tensor<2>, what: &str| -> crate::Result<Vec<Vec<f64>>> {
        let flat = f32_values(t * mask.clone(), what)?;
        Ok(flat
            .chunks(width.max(1))
            .map(|row| row.iter().map(|&v| v as f64).collect())
            .collect())
    };
    Ok(TokenOutputs {
        log_probs: read(ours.logps, "per-token log-probs")?,
        entropy: read(stats.entropy, "per-token entropy")?,
        mean_logits: read(stats.mean_logits, "per-token mean logits")?,
        is_top1: read(stats.argmax.equal(safe).float(), "per-token argmax")?,
    })
}

/// `Ok` when `got` has as many rows as the reference's `want` (`[rows][width]`, numbers or
/// booleans) and every row is within `rtol` plus `floor` of it (see [`check_close_slices`]).
pub fn check_close_rows(
    what: &str,
    got: &[Vec<f64>],
    want: &Value,
    rtol: f64,
    floor: f64,
) -> Result<(), String> {
    let want = want
        .as_array()
        .ok_or_else(|| format!("{what}: the reference holds no list"))?;
    check_lengths(&format!("{what} rows"), got.len(), want.len())?;
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        let want: Vec<f64> = want
            .as_array()
            .ok_or_else(|| format!("{what}[{i}]: the reference row is no list"))?
            .iter()
            .map(|v| {
                v.as_f64()
                    .or(v.as_bool().map(f64::from))
                    .unwrap_or(f64::NAN)
            })
            .collect();
        check_close_slices(&format!("{what}[{i}]"), got, &want, rtol, floor)?;
    }
    Ok(())
}

/// Panicking form of [`check_close_rows`].
pub fn assert_close_rows(what: &str, got: &[Vec<f64>], want: &Value, rtol: f64, floor: f64) {
    if let Err(e) = check_close_rows(what, got, want, rtol, floor) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compare_numbers_and_booleans_and_refuse_missing_rows() {
        let want = serde_json::json!([[0.0, -1.0], [true, false]]);
        let got = vec![vec![0.0, -1.001], vec![1.0, 0.0]];
        assert!(check_close_rows("x", &got, &want, 2e-3, 0.0).is_ok());
        assert!(check_close_rows("x", &got, &want, 1e-4, 0.0).is_err());
        assert!(check_close_rows("x", &got[..1], &want, 2e-3, 0.0).is_err());
        assert!(check_close_rows("x", &[], &serde_json::json!([]), 2e-3, 0.0).is_err());
        let short = vec![vec![0.0], vec![1.0, 0.0]];
        assert!(check_close_rows("x", &short, &want, 2e-3, 0.0).is_err());
    }
}
