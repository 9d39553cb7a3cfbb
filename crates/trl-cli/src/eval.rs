//! `trl eval --method sft|dpo|kto|reward`: evaluates a finished model as `trainer.evaluate()`
//! does, on the `dataset_test_split` of a folder or hub dataset (a single file whole), with
//! the method's config keys; prints the `eval_*` metrics as one JSON line (and writes
//! `eval_results.json` into `--output_dir` when given). The data preparation is the training
//! command's own, run in [`Mode::Evaluate`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};

use crate::common::{Mode, wants_help};

/// Methods that evaluate, in the order the help lists them.
const METHODS: [&str; 4] = ["sft", "dpo", "kto", "reward"];

/// Runs `trl eval` with raw arguments (everything after `eval`).
pub fn run(raw: &[String], interrupt: Arc<AtomicBool>) -> Result<()> {
    if wants_help(raw) {
        println!(
            "trl eval: evaluate a model with a method's eval metrics (TRL's trainer.evaluate()).\n\n\
             usage: trl eval --method {} --model_name_or_path M --dataset_name D \
             [--dataset_test_split test] [--per_device_eval_batch_size 8] [--output_dir DIR] \
             [--key value ...]\n\n\
             The method's keys (`trl <method> --help`) shape the data as in training.",
            METHODS.join("|")
        );
        return Ok(());
    }
    let (method, rest) = take_method(raw)?;
    match method.as_str() {
        "sft" => crate::sft::run_mode(&rest, interrupt, Mode::Evaluate),
        "dpo" => crate::dpo::run_mode(&rest, interrupt, Mode::Evaluate),
        "kto" => crate::kto::run_mode(&rest, interrupt, Mode::Evaluate),
        "reward" => crate::reward::run_mode(&rest, interrupt, Mode::Evaluate),
        other => bail!(
            "--method {other:?} cannot be evaluated (supported: {})",
            METHODS.join(", ")
        ),
    }
}

/// Splits `--method NAME` (or `--method=NAME`) off the arguments.
fn take_method(raw: &[String]) -> Result<(String, Vec<String>)> {
    let mut method = None;
    let mut rest = Vec::with_capacity(raw.len());
    let mut args = raw.iter();
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--method=") {
            method = Some(value.to_string());
        } else if arg == "--method" {
            match args.next() {
                Some(value) => method = Some(value.clone()),
                None => bail!("--method needs a value ({})", METHODS.join(", ")),
            }
        } else {
            rest.push(arg.clone());
        }
    }
    match method {
        Some(method) => Ok((method, rest)),
        None => bail!("--method is required ({})", METHODS.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_is_taken_out_of_the_arguments() {
        let raw: Vec<String> = ["--method", "dpo", "--beta", "0.2"]
            .map(String::from)
            .into();
        let (method, rest) = take_method(&raw).unwrap();
        assert_eq!(
            (method.as_str(), rest),
            ("dpo", vec!["--beta".into(), "0.2".into()])
        );
        let raw: Vec<String> = vec!["--method=kto".into()];
        assert_eq!(take_method(&raw).unwrap().0, "kto");
        assert!(
            take_method(&["--beta".into()])
                .unwrap_err()
                .to_string()
                .contains("--method")
        );
    }
}
