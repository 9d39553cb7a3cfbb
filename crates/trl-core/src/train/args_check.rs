//! The checks transformers' `TrainingArguments.__post_init__`, the HF Trainer and
//! `torch.optim.AdamW` make on the training-loop keys, so a value they reject is an error
//! naming the option before anything loads (instead of training uphill or for "0 steps").
//! [`check`] holds the small range helpers the method configs use too.

use super::args::TrainingArguments;
use super::schedule::SchedulerType;
use crate::{Error, Result};

/// Range checks on single option values; each error names the option and its value.
pub mod check {
    use super::*;

    /// An error about option `name`.
    pub fn option_error(name: &str, message: String) -> Error {
        Error::Config {
            path: format!("--{name}").into(),
            message,
        }
    }

    /// `value` must be finite and `> 0`.
    pub fn positive(name: &str, value: f64) -> Result<()> {
        if value.is_finite() && value > 0.0 {
            return Ok(());
        }
        Err(option_error(name, format!("{value} must be a number > 0")))
    }

    /// `value` must be finite and `>= 0`.
    pub fn non_negative(name: &str, value: f64) -> Result<()> {
        if value.is_finite() && value >= 0.0 {
            return Ok(());
        }
        Err(option_error(name, format!("{value} must be a number >= 0")))
    }

    /// `value` must be finite.
    pub fn finite(name: &str, value: f64) -> Result<()> {
        if value.is_finite() {
            return Ok(());
        }
        Err(option_error(
            name,
            format!("{value} must be a finite number"),
        ))
    }

    /// `low <= value <= high`.
    pub fn within(name: &str, value: f64, low: f64, high: f64) -> Result<()> {
        if (low..=high).contains(&value) {
            return Ok(());
        }
        Err(option_error(
            name,
            format!("{value} must lie in [{low}, {high}]"),
        ))
    }

    /// A count that must be at least 1 when given (`max_length 0`, `pad_to_multiple_of 0`).
    pub fn at_least_one(name: &str, value: Option<usize>) -> Result<()> {
        match value {
            Some(0) => Err(option_error(
                name,
                "0 must be at least 1 (or left unset)".into(),
            )),
            _ => Ok(()),
        }
    }
}

use check::{at_least_one, non_negative, option_error, positive, within};

impl TrainingArguments {
    /// Rejects what transformers/torch reject, naming the option.
    pub fn validate(&self) -> Result<()> {
        if self.per_device_train_batch_size == 0 {
            return Err(option_error(
                "per_device_train_batch_size",
                "0: batch_size should be a positive integer value (as torch's DataLoader)".into(),
            ));
        }
        at_least_one(
            "gradient_accumulation_steps",
            Some(self.gradient_accumulation_steps),
        )?;
        if !(self.learning_rate >= 0.0 && self.learning_rate.is_finite()) {
            return Err(option_error(
                "learning_rate",
                format!(
                    "Invalid learning rate: {} (torch.optim.AdamW needs lr >= 0)",
                    self.learning_rate
                ),
            ));
        }
        non_negative("adam_epsilon", self.adam_epsilon)?;
        if self.bf16 && self.fp16 {
            return Err(option_error(
                "fp16",
                "true with --bf16 true: at most one of fp16 and bf16 can be true (as \
                 transformers' TrainingArguments requires)"
                    .into(),
            ));
        }
        for (name, beta) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return Err(option_error(
                    name,
                    format!("Invalid beta parameter: {beta} (torch needs 0 <= beta < 1)"),
                ));
            }
        }
        non_negative("weight_decay", self.weight_decay)?;
        check::finite("max_grad_norm", self.max_grad_norm)?;
        if self.max_steps <= 0 {
            positive("num_train_epochs", self.num_train_epochs).map_err(|_| {
                option_error(
                    "num_train_epochs",
                    format!(
                        "{} must be > 0 when max_steps is not set (> 0): the run would train \
                         for no step",
                        self.num_train_epochs
                    ),
                )
            })?;
        }
        non_negative("warmup_steps", self.warmup_steps)?;
        within("warmup_ratio", self.warmup_ratio, 0.0, 1.0)?;
        self.validate_intervals()?;
        self.validate_eval()?;
        self.activation_checkpointing()?;
        self.validate_scheduler_kwargs()
    }

    /// `logging_steps` and `save_steps`: > 0, and whole numbers when above 1.
    fn validate_intervals(&self) -> Result<()> {
        let save = self.save_strategy == super::args::SaveStrategy::Steps;
        for (name, value, checked) in [
            ("logging_steps", self.logging_steps, true),
            ("save_steps", self.save_steps, save),
        ] {
            if !checked {
                continue;
            }
            if !(value > 0.0 && value.is_finite()) {
                return Err(option_error(
                    name,
                    format!("{value}: the steps strategy requires a non-zero, positive {name}"),
                ));
            }
            if value > 1.0 && value.fract() != 0.0 {
                return Err(option_error(
                    name,
                    format!("{value} must be an integer if bigger than 1"),
                ));
            }
        }
        Ok(())
    }

    /// `lr_scheduler_kwargs`: the keys our schedules read, with transformers' rules.
    fn validate_scheduler_kwargs(&self) -> Result<()> {
        let kwargs = &self.lr_scheduler_kwargs;
        if let Some(key) = kwargs
            .keys()
            .find(|k| *k != "min_lr" && *k != "min_lr_rate")
        {
            return Err(option_error(
                "lr_scheduler_kwargs",
                format!("`{key}` is not supported (supported: min_lr, min_lr_rate)"),
            ));
        }
        if kwargs.contains_key("min_lr") && kwargs.contains_key("min_lr_rate") {
            return Err(option_error(
                "lr_scheduler_kwargs",
                "Only one of min_lr or min_lr_rate should be set".into(),
            ));
        }
        if let Some(&rate) = kwargs.get("min_lr_rate") {
            within("lr_scheduler_kwargs.min_lr_rate", rate, 0.0, 1.0)?;
        }
        if let Some(&min_lr) = kwargs.get("min_lr") {
            non_negative("lr_scheduler_kwargs.min_lr", min_lr)?;
        }
        if self.lr_scheduler_type == SchedulerType::CosineWithMinLr && kwargs.is_empty() {
            return Err(option_error(
                "lr_scheduler_kwargs",
                "lr_scheduler_type cosine_with_min_lr: one of min_lr or min_lr_rate should be \
                 set through the `lr_scheduler_kwargs`, e.g. '{\"min_lr_rate\": 0.1}'"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(change: impl FnOnce(&mut TrainingArguments)) -> String {
        let mut args = TrainingArguments::default();
        change(&mut args);
        args.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_pass() {
        TrainingArguments::default().validate().unwrap();
    }

    #[test]
    fn values_torch_and_transformers_reject_name_the_option() {
        let cases: Vec<(&str, Box<dyn FnOnce(&mut TrainingArguments)>)> = vec![
            (
                "per_device_train_batch_size",
                Box::new(|a| a.per_device_train_batch_size = 0),
            ),
            (
                "gradient_accumulation_steps",
                Box::new(|a| a.gradient_accumulation_steps = 0),
            ),
            (
                "Invalid learning rate",
                Box::new(|a| a.learning_rate = -1.0),
            ),
            ("num_train_epochs", Box::new(|a| a.num_train_epochs = -1.0)),
            ("adam_beta1", Box::new(|a| a.adam_beta1 = 1.0)),
            ("adam_beta2", Box::new(|a| a.adam_beta2 = -0.1)),
            ("adam_epsilon", Box::new(|a| a.adam_epsilon = -1e-8)),
            (
                "at most one of fp16 and bf16",
                Box::new(|a| (a.fp16, a.bf16) = (true, true)),
            ),
            ("weight_decay", Box::new(|a| a.weight_decay = -0.1)),
            ("warmup_steps", Box::new(|a| a.warmup_steps = -2.0)),
            ("warmup_ratio", Box::new(|a| a.warmup_ratio = 1.5)),
            ("logging_steps", Box::new(|a| a.logging_steps = 0.0)),
            ("save_steps", Box::new(|a| a.save_steps = 2.5)),
            ("max_grad_norm", Box::new(|a| a.max_grad_norm = f64::NAN)),
            (
                "min_lr_rate",
                Box::new(|a| a.lr_scheduler_type = SchedulerType::CosineWithMinLr),
            ),
            (
                "Only one",
                Box::new(|a| {
                    a.lr_scheduler_kwargs = [
                        ("min_lr".to_string(), 0.1),
                        ("min_lr_rate".to_string(), 0.1),
                    ]
                    .into()
                }),
            ),
        ];
        for (needle, change) in cases {
            let err = error_of(change);
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn epochs_do_not_matter_when_max_steps_is_set() {
        let mut args = TrainingArguments {
            num_train_epochs: -1.0,
            max_steps: 3,
            ..TrainingArguments::default()
        };
        args.validate().unwrap();
        args.save_strategy = super::super::args::SaveStrategy::No;
        args.save_steps = 0.0;
        args.validate().unwrap();
    }
}
