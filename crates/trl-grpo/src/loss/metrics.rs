//! TRL's per-micro-batch loss metrics (`kl`, `entropy`, `clip_ratio/*`, ...) from host values.

use trl_core::train::StepMetrics;

use super::{LossType, PolicyLossConfig};

/// Metric values of one micro-batch under TRL's names. A value may be NaN where TRL's is
/// (`clip_ratio/low_min` when every row is padding): TRL's `log` drops NaN before averaging.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossMetrics {
    pub values: Vec<(String, f64)>,
}

impl LossMetrics {
    /// Adds one value.
    pub fn push(&mut self, name: &str, value: f64) {
        self.values.push((name.to_string(), value));
    }

    /// The value logged as `name`, if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Appends every value to the trainer's step metrics.
    pub fn push_into(&self, metrics: &mut StepMetrics) {
        for (name, value) in &self.values {
            metrics.push(name, *value);
        }
    }
}

/// Host copies of what the metrics read; `[B, T]` slices are row-major with `width` columns.
pub struct HostValues<'a> {
    pub mask: &'a [f32],
    pub width: usize,
    pub entropies: &'a [f32],
    pub advantages: &'a [f32],
    /// The ratio the clip metrics compare: `[B, T]` (token level) or `[B]` (sequence level).
    pub coef_1: &'a [f32],
    pub per_token_kl: Option<&'a [f32]>,
    pub phi_seq: Option<&'a [f32]>,
}

impl HostValues<'_> {
    /// TRL's `global_masked_mean`: over counted tokens for `[B, T]` values, over all rows for
    /// per-sequence values (`[B]`), `/ max(count, 1)`.
    fn global_masked_mean(&self, values: &[f64]) -> f64 {
        if values.len() == self.advantages.len() {
            return values.iter().sum::<f64>() / (values.len() as f64).max(1.0);
        }
        let sum: f64 = values
            .iter()
            .zip(self.mask)
            .map(|(v, &m)| v * m as f64)
            .sum();
        let count: f64 = self.mask.iter().map(|&m| m as f64).sum();
        sum / count.max(1.0)
    }

    /// TRL's `masked_seq_mean`: one value per row (`0/0 = NaN` for an all-padding row).
    fn masked_seq_mean(&self, values: &[f64]) -> Vec<f64> {
        if values.len() == self.advantages.len() {
            return values.to_vec();
        }
        values
            .chunks(self.width)
            .zip(self.mask.chunks(self.width))
            .map(|(v, m)| {
                let sum: f64 = v.iter().zip(m).map(|(x, &w)| x * w as f64).sum();
                sum / m.iter().map(|&w| w as f64).sum::<f64>()
            })
            .collect()
    }

    /// `flag(coef_1, advantage)` per entry of `coef_1`, as 0.0 / 1.0.
    fn flags(&self, flag: impl Fn(f32, f32) -> bool) -> Vec<f64> {
        let per_row = (self.coef_1.len() / self.advantages.len()).max(1);
        self.coef_1
            .iter()
            .enumerate()
            .map(|(i, &c)| f64::from(u8::from(flag(c, self.advantages[i / per_row]))))
            .collect()
    }
}

/// Pushes `kl`, `entropy` and the loss type's clip / weight metrics, as `_compute_loss` logs them.
pub fn policy_metrics(cfg: &PolicyLossConfig, x: &HostValues<'_>, out: &mut LossMetrics) {
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    if let Some(kl) = x.per_token_kl {
        out.push("kl", x.global_masked_mean(&widen(kl)));
    }
    out.push("entropy", x.global_masked_mean(&widen(x.entropies)));
    let (low, high) = (1.0 - cfg.epsilon_low(), 1.0 + cfg.epsilon_high());
    if cfg.loss_type.is_clipped() {
        let (low, high) = (low as f32, high as f32);
        let low_clipped = x.flags(|c, a| c < low && a < 0.0);
        let high_clipped = x.flags(|c, a| c > high && a > 0.0);
        let region: Vec<f64> = low_clipped
            .iter()
            .zip(&high_clipped)
            .map(|(a, b)| a.max(*b))
            .collect();
        out.push("clip_ratio/low_mean", x.global_masked_mean(&low_clipped));
        out.push("clip_ratio/high_mean", x.global_masked_mean(&high_clipped));
        out.push("clip_ratio/region_mean", x.global_masked_mean(&region));
        out.push(
            "clip_ratio/low_min",
            nan_extreme(&x.masked_seq_mean(&low_clipped), f64::min),
        );
        out.push(
            "clip_ratio/high_max",
            nan_extreme(&x.masked_seq_mean(&high_clipped), f64::max),
        );
    } else if cfg.loss_type == LossType::Cispo {
        let cap = cfg.epsilon_high() as f32;
        let clipped = x.flags(|c, a| c > cap && a > 0.0);
        out.push("cispo_clip_ratio", x.global_masked_mean(&clipped));
    } else if let (LossType::Vespo, Some(phi)) = (cfg.loss_type, x.phi_seq) {
        out.push("vespo/phi_seq_mean", x.global_masked_mean(&widen(phi)));
    }
}

/// TRL's `nanmin` / `nanmax`: the extreme of the non-NaN values, NaN if there are none.
pub(crate) fn nan_extreme(values: &[f64], pick: fn(f64, f64) -> f64) -> f64 {
    values
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .reduce(pick)
        .unwrap_or(f64::NAN)
}
