//! Learning-rate schedules with transformers' formulas (`get_scheduler`): the multiplier for
//! optimizer step `k` (0-based) of `total` steps, `warmup` of them warm-up.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// `lr_scheduler_type` values we support, spelled as transformers spells them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    Linear,
    Cosine,
    Constant,
    ConstantWithWarmup,
    CosineWithMinLr,
}

/// A schedule resolved against the run's length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub kind: SchedulerType,
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    /// `cosine_with_min_lr`'s floor as a fraction of `base_lr` (`min_lr_rate`, or `min_lr / lr`).
    pub min_lr_rate: f64,
}

impl LrSchedule {
    /// The learning rate used by optimizer step `step` (0-based); after `n` steps the HF Trainer
    /// logs `lr_at(n)`, the value the scheduler holds once it has stepped.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier(step)
    }

    fn multiplier(&self, step: u64) -> f64 {
        let (s, w, t) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        let warming = step < self.warmup_steps;
        let warm = s / w.max(1.0);
        let progress = (s - w) / (t - w).max(1.0);
        match self.kind {
            SchedulerType::Constant => 1.0,
            SchedulerType::ConstantWithWarmup => {
                if warming {
                    warm
                } else {
                    1.0
                }
            }
            SchedulerType::Linear => {
                if warming {
                    warm
                } else {
                    ((t - s) / (t - w).max(1.0)).max(0.0)
                }
            }
            SchedulerType::Cosine => {
                if warming {
                    warm
                } else {
                    (0.5 * (1.0 + (PI * progress).cos())).max(0.0)
                }
            }
            SchedulerType::CosineWithMinLr => {
                if warming {
                    warm
                } else {
                    let cosine = 0.5 * (1.0 + (PI * progress).cos());
                    cosine * (1.0 - self.min_lr_rate) + self.min_lr_rate
                }
            }
        }
    }
}

/// transformers' `get_warmup_steps`: `warmup_ratio` if set, else `warmup_steps`, where a value
/// below 1 is a ratio of the total (transformers 5 accepts ratios there too).
pub fn warmup_steps(total_steps: u64, warmup_steps: f64, warmup_ratio: f64) -> u64 {
    if warmup_ratio > 0.0 {
        (total_steps as f64 * warmup_ratio).ceil() as u64
    } else if warmup_steps > 0.0 && warmup_steps < 1.0 {
        (total_steps as f64 * warmup_steps).ceil() as u64
    } else {
        warmup_steps as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: SchedulerType, warmup: u64) -> LrSchedule {
        LrSchedule {
            kind,
            base_lr: 1.0,
            warmup_steps: warmup,
            total_steps: 10,
            min_lr_rate: 0.1,
        }
    }

    #[test]
    fn linear_warms_up_then_decays_to_zero() {
        let s = schedule(SchedulerType::Linear, 2);
        let lrs: Vec<f64> = (0..=10).map(|k| s.lr_at(k)).collect();
        assert_eq!(&lrs[..3], &[0.0, 0.5, 1.0]);
        assert!((lrs[6] - 0.5).abs() < 1e-12 && lrs[10] == 0.0);
    }

    #[test]
    fn cosine_variants_reach_their_floor() {
        let s = schedule(SchedulerType::Cosine, 0);
        assert!((s.lr_at(5) - 0.5).abs() < 1e-12 && s.lr_at(10).abs() < 1e-12);
        let m = schedule(SchedulerType::CosineWithMinLr, 0);
        assert!((m.lr_at(10) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn warmup_ratio_rounds_up() {
        assert_eq!(warmup_steps(10, 0.0, 0.15), 2);
        assert_eq!(warmup_steps(10, 0.25, 0.0), 3);
        assert_eq!(warmup_steps(10, 4.0, 0.0), 4);
    }
}
