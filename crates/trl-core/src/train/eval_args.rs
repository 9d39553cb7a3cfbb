//! The evaluation keys of [`TrainingArguments`] resolved and checked as transformers'
//! `TrainingArguments.__post_init__` does: `eval_steps` falls back to `logging_steps`,
//! `metric_for_best_model` to `"loss"` when a best model is wanted, `greater_is_better` to
//! "the metric is not a loss"; `load_best_model_at_end` needs matching save and eval
//! strategies and `save_steps` a multiple of `eval_steps`.

use super::args::{EvalStrategy, SaveStrategy, TrainingArguments};
use super::args_check::check::{at_least_one, option_error};
use crate::Result;

impl TrainingArguments {
    /// Whether the loop evaluates at all (`eval_strategy != no` or `eval_on_start`).
    pub fn evaluates(&self) -> bool {
        self.eval_strategy != EvalStrategy::No || self.eval_on_start
    }

    /// `eval_steps` as the raw value transformers keeps (`logging_steps` when unset or 0).
    fn eval_steps_value(&self) -> f64 {
        match self.eval_steps {
            Some(steps) if steps != 0.0 => steps,
            _ => self.logging_steps,
        }
    }

    /// `eval_steps` in optimizer steps for a run of `total_steps` (a ratio rounds up).
    pub fn resolved_eval_steps(&self, total_steps: u64) -> u64 {
        Self::interval(self.eval_steps_value(), total_steps)
    }

    /// The `log_history` key the best checkpoint is chosen by (`eval_` + the metric), or
    /// `None` when no best model is tracked.
    pub fn best_metric_key(&self) -> Option<String> {
        let wanted = self.load_best_model_at_end || self.save_strategy == SaveStrategy::Best;
        let metric = match &self.metric_for_best_model {
            Some(metric) => metric.clone(),
            None if wanted => "loss".into(),
            None => return None,
        };
        Some(if metric.starts_with("eval_") {
            metric
        } else {
            format!("eval_{metric}")
        })
    }

    /// `greater_is_better`, defaulting to "the metric does not end in `loss`".
    pub fn greater_is_better_resolved(&self) -> bool {
        self.greater_is_better.unwrap_or_else(|| {
            !self
                .best_metric_key()
                .is_some_and(|metric| metric.ends_with("loss"))
        })
    }

    /// The checks transformers makes on the evaluation keys, each naming its option.
    pub(super) fn validate_eval(&self) -> Result<()> {
        if self.per_device_eval_batch_size == 0 {
            return Err(option_error(
                "per_device_eval_batch_size",
                "0: batch_size should be a positive integer value (as torch's DataLoader)".into(),
            ));
        }
        at_least_one("eval_accumulation_steps", self.eval_accumulation_steps)?;
        let steps = self.eval_steps_value();
        if self.eval_strategy == EvalStrategy::Steps {
            if !(steps > 0.0 && steps.is_finite()) {
                return Err(option_error(
                    "eval_steps",
                    format!(
                        "{steps}: evaluation strategy steps requires a non-zero, positive eval_steps or logging_steps"
                    ),
                ));
            }
            if steps > 1.0 && steps.fract() != 0.0 {
                return Err(option_error(
                    "eval_steps",
                    format!("{steps} must be an integer if bigger than 1"),
                ));
            }
        }
        if self.save_strategy == SaveStrategy::Best && self.eval_strategy == EvalStrategy::No {
            return Err(option_error(
                "save_strategy",
                "best: checkpoints are chosen by evaluation, which eval_strategy no never runs"
                    .into(),
            ));
        }
        self.validate_load_best()
    }

    /// `load_best_model_at_end`: the save strategy matches the eval strategy (unless `best`)
    /// and, by steps, `save_steps` is a multiple of `eval_steps`.
    fn validate_load_best(&self) -> Result<()> {
        if !self.load_best_model_at_end || self.save_strategy == SaveStrategy::Best {
            return Ok(());
        }
        let same = matches!(
            (self.eval_strategy, self.save_strategy),
            (EvalStrategy::Steps, SaveStrategy::Steps) | (EvalStrategy::Epoch, SaveStrategy::Epoch)
        );
        if !same {
            return Err(option_error(
                "load_best_model_at_end",
                format!(
                    "requires the save and eval strategy to match, except when save_strategy=best, \
                     but found eval_strategy {:?} and save_strategy {:?}",
                    self.eval_strategy, self.save_strategy
                )
                .to_lowercase(),
            ));
        }
        let (save, eval) = (self.save_steps, self.eval_steps_value());
        let mixed = (save < 1.0) != (eval < 1.0);
        let multiple = ((save * 1e6).round() as i64) % ((eval * 1e6).round() as i64).max(1) == 0;
        if self.eval_strategy == EvalStrategy::Steps && (mixed || !multiple) {
            return Err(option_error(
                "load_best_model_at_end",
                format!(
                    "requires the saving steps to be a round multiple of the evaluation steps, \
                     but found save_steps {save} and eval_steps {eval}"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_steps_and_best_metric_take_transformers_defaults() {
        let mut args = TrainingArguments {
            logging_steps: 4.0,
            eval_strategy: EvalStrategy::Steps,
            ..TrainingArguments::default()
        };
        assert_eq!(args.resolved_eval_steps(100), 4);
        assert_eq!(args.best_metric_key(), None);
        args.load_best_model_at_end = true;
        assert_eq!(args.best_metric_key().as_deref(), Some("eval_loss"));
        assert!(!args.greater_is_better_resolved());
        args.metric_for_best_model = Some("mean_token_accuracy".into());
        assert_eq!(
            args.best_metric_key().as_deref(),
            Some("eval_mean_token_accuracy")
        );
        assert!(args.greater_is_better_resolved());
    }

    #[test]
    fn load_best_needs_matching_strategies_and_multiples() {
        let mut args = TrainingArguments {
            eval_strategy: EvalStrategy::Steps,
            eval_steps: Some(3.0),
            save_steps: 4.0,
            load_best_model_at_end: true,
            ..TrainingArguments::default()
        };
        let err = args.validate_eval().unwrap_err().to_string();
        assert!(err.contains("multiple"), "{err}");
        args.save_steps = 6.0;
        assert!(args.validate_eval().is_ok());
        args.eval_strategy = EvalStrategy::Epoch;
        let err = args.validate_eval().unwrap_err().to_string();
        assert!(err.contains("match"), "{err}");
        args.per_device_eval_batch_size = 0;
        assert!(
            args.validate_eval()
                .unwrap_err()
                .to_string()
                .contains("per_device_eval_batch_size")
        );
    }
}
