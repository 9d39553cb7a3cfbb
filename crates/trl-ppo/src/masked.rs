//! Masked statistics over `[rows][cols]` host matrices, as TRL 1.12's `masked_mean`,
//! `masked_var` and `masked_whiten` (`trl/experimental/ppo/ppo_trainer.py`): the mean and
//! the (Bessel-corrected) variance of the entries whose mask is true, and whitening by them.

use trl_core::{Error, Result};

/// A host matrix `[rows][cols]`.
pub type Matrix = Vec<Vec<f32>>;

/// Mean of the entries of `values` where `mask` is true (`(values * mask).sum() / mask.sum()`;
/// NaN when the mask is empty, as torch's 0/0).
pub fn masked_mean(values: &[Vec<f32>], mask: &[Vec<bool>]) -> f64 {
    let (mut sum, mut count) = (0.0f64, 0.0f64);
    for (row, keep) in values.iter().zip(mask) {
        for (&v, &k) in row.iter().zip(keep) {
            if k {
                sum += v as f64;
                count += 1.0;
            }
        }
    }
    sum / count
}

/// Variance of the masked entries; `unbiased` multiplies by `n / (n - 1)` as TRL does (so a
/// single entry gives a non-finite value). An empty mask is the error TRL raises.
pub fn masked_var(values: &[Vec<f32>], mask: &[Vec<bool>], unbiased: bool) -> Result<f64> {
    let mean = masked_mean(values, mask);
    let (mut sum, mut count) = (0.0f64, 0.0f64);
    for (row, keep) in values.iter().zip(mask) {
        for (&v, &k) in row.iter().zip(keep) {
            if k {
                let centered = v as f64 - mean;
                sum += centered * centered;
                count += 1.0;
            }
        }
    }
    let variance = sum / count;
    if !unbiased {
        return Ok(variance);
    }
    if count == 0.0 {
        return Err(Error::Config {
            path: "ppo".into(),
            message: "a masked variance over no tokens (every response is empty); increase \
                      the mini-batch size or response_length"
                .into(),
        });
    }
    Ok(variance * count / (count - 1.0))
}

/// `(values - mean) / sqrt(var + 1e-8)` over the masked entries' statistics, applied to every
/// entry; with `shift_mean` false the mean is added back (TRL's reward whitening).
pub fn masked_whiten(values: &[Vec<f32>], mask: &[Vec<bool>], shift_mean: bool) -> Result<Matrix> {
    let mean = masked_mean(values, mask);
    let var = masked_var(values, mask, true)?;
    let scale = 1.0 / (var + 1e-8).sqrt();
    let back = if shift_mean { 0.0 } else { mean };
    Ok(values
        .iter()
        .map(|row| {
            row.iter()
                .map(|&v| ((v as f64 - mean) * scale + back) as f32)
                .collect()
        })
        .collect())
}

/// Sets the entries where `mask` is true to `value` (`torch.masked_fill`).
pub fn masked_fill(values: &mut [Vec<f32>], mask: &[Vec<bool>], value: f32) {
    for (row, fill) in values.iter_mut().zip(mask) {
        for (v, &f) in row.iter_mut().zip(fill) {
            if f {
                *v = value;
            }
        }
    }
}

/// The complement of a mask (`~mask`).
pub fn not(mask: &[Vec<bool>]) -> Vec<Vec<bool>> {
    mask.iter()
        .map(|row| row.iter().map(|&b| !b).collect())
        .collect()
}
