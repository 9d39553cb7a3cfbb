//! Where evaluation enters the training loop (transformers' `_maybe_log_save_evaluate`, the
//! `DefaultFlowCallback`'s eval decisions, `_save_checkpoint`'s best-checkpoint path and the
//! end of `train`'s `load_best_model_at_end`): small pieces [`super::trainer`] calls in order.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;

use super::args::{EvalStrategy, SaveStrategy, TrainingArguments};
use super::checkpoint::{checkpoint_dir, list_checkpoints};
use super::eval::{evaluate, update_best_metric};
use super::logging::RunLogger;
use super::method::{EvalContext, Method, eval_unsupported};
use super::plan::Plan;
use super::run_state::RunState;
use crate::{Error, Result};

/// The eval set the loop uses: `None` when nothing is evaluated. Evaluation asked for without
/// an eval set, or by a method that cannot evaluate, is an error before the first step (as
/// the HF Trainer refuses `eval_strategy` without an `eval_dataset` at init).
pub(super) fn eval_set<'a, M: Method>(
    method: &M,
    args: &TrainingArguments,
    examples: Option<&'a [M::Example]>,
) -> Result<Option<&'a [M::Example]>> {
    if !args.evaluates() {
        return Ok(None);
    }
    if !method.supports_eval() {
        return Err(eval_unsupported());
    }
    match examples {
        Some(set) if !set.is_empty() => Ok(Some(set)),
        Some(_) => Err(config("eval dataset", "the evaluation set has no rows")),
        None => Err(config(
            "--eval_strategy",
            "evaluation needs an eval dataset: pass --dataset_test_split (a split beside the \
             train files) or --eval_dataset_name",
        )),
    }
}

/// Whether the step just done is evaluated: every `eval_steps` and at the last step
/// (`steps`), or at each epoch's end and the last step (`epoch`).
pub(super) fn eval_due(args: &TrainingArguments, plan: &Plan, run: &RunState) -> bool {
    let step = run.state.global_step;
    let last = step == plan.total_steps;
    match args.eval_strategy {
        EvalStrategy::No => false,
        EvalStrategy::Steps => step.is_multiple_of(run.state.eval_steps.max(1)) || last,
        EvalStrategy::Epoch => plan.ends_epoch(step) || last,
    }
}

/// Evaluates, appends the `eval_*` entry (with `epoch` and `step`) to `log_history`, and, when
/// `track_best`, updates the best metric. Returns whether this evaluation is a new best.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_eval<M: Method>(
    method: &mut M,
    model: &M::Model,
    set: &[M::Example],
    run: &mut RunState,
    args: &TrainingArguments,
    device: &Device,
    logger: &mut RunLogger,
    track_best: bool,
) -> Result<bool> {
    let ctx = EvalContext {
        step: run.state.global_step,
        num_tokens: run.total_tokens,
        device,
        batch: 0,
    };
    let summary = evaluate(method, model, set, args.per_device_eval_batch_size, &ctx)?;
    let mut entry = summary.metrics.clone();
    entry.insert("epoch".into(), Value::from(run.state.epoch));
    entry.insert("step".into(), Value::from(run.state.global_step));
    logger.log(&entry)?;
    run.state.log_history.push(entry);
    if !track_best {
        return Ok(false);
    }
    update_best_metric(args, &mut run.state, &summary.metrics)
}

/// Before a checkpoint's state is written: `best_model_checkpoint` names the best step's
/// folder once it exists (it is the one being written when the best is this step).
pub(super) fn note_best_checkpoint(
    run: &mut RunState,
    args: &TrainingArguments,
    output_dir: &Path,
) {
    if args.save_strategy == SaveStrategy::No {
        return;
    }
    if let Some(best) = run.state.best_global_step {
        let dir = checkpoint_dir(output_dir, best);
        if best == run.state.global_step || dir.is_dir() {
            run.state.best_model_checkpoint = Some(dir.to_string_lossy().into_owned());
        }
    }
}

/// The end of training: with `load_best_model_at_end`, the best checkpoint's model replaces
/// the trained one; with `save_total_limit=1`, every checkpoint but the best is deleted.
pub(super) fn finish_best<M: Method>(
    method: &M,
    model: M::Model,
    run: &RunState,
    args: &TrainingArguments,
    device: &Device,
    logger: &RunLogger,
) -> Result<M::Model> {
    let Some(best) = run.state.best_model_checkpoint.as_ref().map(PathBuf::from) else {
        return Ok(model);
    };
    let model = if args.load_best_model_at_end {
        logger.note(&format!(
            "loading the best model from {} ({} = {:?})",
            best.display(),
            args.best_metric_key().unwrap_or_default(),
            run.state.best_metric
        ));
        method.load_model(&best, device)?
    } else {
        model
    };
    if args.save_total_limit == Some(1) {
        for (_, dir) in list_checkpoints(Path::new(&args.output_dir)) {
            if dir.file_name() != best.file_name() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            }
        }
    }
    Ok(model)
}

fn config(path: &str, message: &str) -> Error {
    Error::Config {
        path: path.into(),
        message: message.into(),
    }
}
