//! fp16's dynamic loss scale, torch's `GradScaler` with its defaults (what the HF Trainer
//! uses under `--fp16`): the loss is multiplied by the scale before the backward so that
//! small gradients survive fp16, the gradients are divided by it before clipping; a step
//! whose gradients overflowed (inf/NaN) is skipped and the scale halved, and after 2000
//! steps in a row without overflow the scale doubles. As in the HF Trainer, the learning-rate
//! schedule does not advance on a skipped step. Saved with the optimizer state so a resumed run
//! continues with the same scale.

/// torch.amp.GradScaler's `init_scale`.
const INIT_SCALE: f64 = 65536.0;
/// `growth_factor`
const GROWTH_FACTOR: f64 = 2.0;
/// `backoff_factor`
const BACKOFF_FACTOR: f64 = 0.5;
/// `growth_interval`
const GROWTH_INTERVAL: u64 = 2000;

/// The scale, how many steps in a row it has gone without overflow, and how many steps were
/// skipped (the schedule runs that many steps behind the step count).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScale {
    pub scale: f64,
    pub good_steps: u64,
    pub skipped_steps: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale {
            scale: INIT_SCALE,
            good_steps: 0,
            skipped_steps: 0,
        }
    }
}

impl LossScale {
    /// After a step: `overflowed` when its gradients held an inf or NaN (the step was
    /// skipped), which halves the scale; else counts towards doubling it.
    pub fn update(&mut self, overflowed: bool) {
        if overflowed {
            self.scale *= BACKOFF_FACTOR;
            self.good_steps = 0;
            self.skipped_steps += 1;
            return;
        }
        self.good_steps += 1;
        if self.good_steps == GROWTH_INTERVAL {
            self.scale *= GROWTH_FACTOR;
            self.good_steps = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_2000_clean_steps() {
        let mut scale = LossScale::default();
        scale.update(true);
        assert_eq!(scale.scale, 32768.0);
        for _ in 0..1999 {
            scale.update(false);
        }
        assert_eq!(scale.scale, 32768.0);
        scale.update(false);
        assert_eq!((scale.scale, scale.good_steps), (65536.0, 0));
        for _ in 0..10 {
            scale.update(false);
        }
        scale.update(true);
        assert_eq!((scale.scale, scale.good_steps), (32768.0, 0));
        assert_eq!(scale.skipped_steps, 2);
    }
}
