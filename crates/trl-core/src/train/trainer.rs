//! The training loop every method runs. Read top to bottom: set up, resume, then per
//! optimizer step: draw the micro-batches, let the method prepare them, step the optimizer,
//! let the method react, log, evaluate, save, and stop cleanly on Ctrl-C/SIGTERM. A method
//! plugs in through [`Method`]; the step itself lives in [`super::step`], evaluation in
//! [`super::eval`] and [`super::eval_loop`].
//!
//! With several processes ([`super::collective::world`]) every rank runs this same loop on its
//! share of each global batch: parameters start from rank 0's, the step sums gradients and
//! the loss normaliser over the ranks, the logged loss, tokens and metrics are summed or
//! averaged over them, and only rank 0 writes checkpoints, logs and the final model. With one
//! process every collective call returns at once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use super::args::{SaveStrategy, TrainingArguments};
use super::checkpoint::{checkpoint_dir, prune_checkpoints, save_checkpoint};
use super::collective::{Collective, world};
use super::data_parallel::{broadcast_parameters, check_same_parameters};
use super::eval_loop::{eval_due, eval_set, finish_best, note_best_checkpoint, run_eval};
use super::kernel_pool;
use super::logging::RunLogger;
use super::method::{Method, StepContext};
use super::optim::AdamWConfig;
use super::plan::Plan;
use super::resume::{restore, resume_dir};
use super::run_state::RunState;
use super::schedule::{LrSchedule, warmup_steps};
use super::state::{LogEntry, TrainerState};
use super::step::{StepReport, StepSettings, optimizer_step};
use super::summary::summary_entry;
use crate::{Error, Result};
use burn::tensor::Device;

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub state: TrainerState,
    pub output_dir: PathBuf,
}

/// Trains `model` on `examples` with `method` until the plan's last step, writing
/// checkpoints, logs and the final model into `args.output_dir`; no evaluation.
pub fn train<M: Method>(
    method: &mut M,
    model: M::Model,
    examples: &[M::Example],
    args: &TrainingArguments,
    device: &Device,
    logger: &mut RunLogger,
) -> Result<TrainOutcome> {
    train_with_eval(method, model, examples, None, args, device, logger)
}

/// [`train`], evaluating on `eval_examples` as `eval_strategy` / `eval_on_start` ask (and
/// tracking the best checkpoint by `metric_for_best_model`).
pub fn train_with_eval<M: Method>(
    method: &mut M,
    model: M::Model,
    examples: &[M::Example],
    eval_examples: Option<&[M::Example]>,
    args: &TrainingArguments,
    device: &Device,
    logger: &mut RunLogger,
) -> Result<TrainOutcome> {
    let eval_examples = eval_set(method, args, eval_examples)?;
    if examples.is_empty() {
        return Err(Error::Config {
            path: "dataset".into(),
            message: "the training set has no rows".into(),
        });
    }
    let output_dir = PathBuf::from(&args.output_dir);
    std::fs::create_dir_all(&output_dir).map_err(|e| Error::io(&output_dir, e))?;
    let world = world();
    let mut plan = Plan::for_rank(
        args,
        examples.len(),
        method.sampler(args),
        method.loader_batch_size(args),
        world.rank(),
        world.size(),
    );
    let mut run = RunState::new(args, &plan);
    let mut model = model;
    if let Some(dir) = resume_dir(args, &output_dir)? {
        model = restore(method, &dir, device, &mut run.state, &mut run.optimizer)?;
        run.total_tokens = run.state.num_input_tokens_seen as f64;
        logger.note(&format!(
            "resuming from {} at step {}",
            dir.display(),
            run.state.global_step
        ));
    }
    let mut model = broadcast_parameters(model, world);
    let schedule = schedule(args, &plan);
    let start = Instant::now();
    let first_step = run.state.global_step;
    logger.start(plan.total_steps, first_step);
    if let (true, Some(set)) = (args.eval_on_start, eval_examples) {
        // As `eval_on_start`: evaluated, never a candidate for the best checkpoint.
        run_eval(method, &model, set, &mut run, args, device, logger, false)?;
    }
    while run.state.global_step < plan.total_steps {
        let step_start = Instant::now();
        let (next, report, lr) = kernel_pool::run_step(device, || {
            train_step(
                method, model, examples, &mut plan, &mut run, &schedule, args, device, world,
            )
        })?;
        model = next;
        logger.progress(run.state.global_step, report.tokens, report.loss);
        let step_time = step_start.elapsed().as_secs_f64();
        log_if_due(&mut run, args, &report, lr, step_time, logger, world)?;
        let mut new_best = false;
        if let Some(set) = eval_examples.filter(|_| eval_due(args, &plan, &run)) {
            new_best = run_eval(method, &model, set, &mut run, args, device, logger, true)?;
        }
        if save_due(args, &plan, &run.state, new_best) {
            note_best_checkpoint(&mut run, args, &output_dir);
            let dir = write_checkpoint(method, &model, &output_dir, &run, args, true, world)?;
            logger.checkpoint_saved(&dir)?;
        }
        stop_if_interrupted(method, &model, &output_dir, &run, args, logger, world)?;
    }
    logger.finish();
    let steps_run = run.state.global_step - first_step;
    let summary = summary_entry(&mut run, args, examples.len(), &plan, steps_run, start);
    run.state.log_history.push(summary);
    let model = finish_best(method, model, &run, args, device, logger)?;
    check_same_parameters(&model, world)?;
    if world.size() > 1 {
        logger.note(&format!(
            "parameters identical on all {} ranks",
            world.size()
        ));
    }
    if world.is_main() {
        method.save_model(&model, &output_dir)?;
        run.state
            .save(&output_dir.join(super::checkpoint::STATE_FILE))?;
    }
    Ok(TrainOutcome {
        state: run.state,
        output_dir,
    })
}

/// One optimizer step: draw the step's micro-batches, let the method prepare them, update
/// the model, advance the state, and let the method react. Returns the model, the step's
/// report and the learning rate it used.
#[allow(clippy::too_many_arguments)]
fn train_step<M: Method>(
    method: &mut M,
    model: M::Model,
    examples: &[M::Example],
    plan: &mut Plan,
    run: &mut RunState,
    schedule: &LrSchedule,
    args: &TrainingArguments,
    device: &Device,
    world: &dyn Collective,
) -> Result<(M::Model, StepReport, f64)> {
    let step = run.state.global_step;
    let groups: Vec<Vec<&M::Example>> = plan
        .micro_batches(step)
        .iter()
        .map(|indices| indices.iter().map(|&i| &examples[i]).collect())
        .collect();
    let ctx = StepContext {
        step,
        total_steps: plan.total_steps,
        device,
    };
    let prepared = method.prepare(&model, &groups, &ctx)?;
    // fp16: the schedule does not advance on a skipped step (the HF Trainer's
    // `optimizer_step_was_skipped`).
    let skipped = run.optimizer.loss_scale.map_or(0, |s| s.skipped_steps);
    let settings = StepSettings {
        lr: schedule.lr_at(step - skipped),
        adamw: adamw_config(args),
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        step_number: step + 1,
    };
    let (model, mut report) = optimizer_step(
        method,
        model,
        prepared,
        &settings,
        &mut run.optimizer,
        &mut run.window,
        world,
    )?;
    // Each rank's loss is its share of the global batch's (divided by every rank's items).
    let mut sums = [report.loss, report.tokens];
    world.all_reduce_sum_f64(&mut sums);
    (report.loss, report.tokens) = (sums[0], sums[1]);
    run.state.global_step += 1;
    run.state.epoch = plan.epoch_after(run.state.global_step);
    method.after_step(&model, run.state.global_step)?;
    run.record(&report);
    Ok((model, report, settings.lr))
}

/// Ctrl-C or SIGTERM arrived: save a checkpoint after the step just done and stop.
fn stop_if_interrupted<M: Method>(
    method: &M,
    model: &M::Model,
    output_dir: &Path,
    run: &RunState,
    args: &TrainingArguments,
    logger: &RunLogger,
    world: &dyn Collective,
) -> Result<()> {
    // Every rank stops after the same step when any of them was signalled.
    let mut interrupted = [f64::from(u8::from(logger.interrupted()))];
    world.all_reduce_sum_f64(&mut interrupted);
    if interrupted[0] == 0.0 {
        return Ok(());
    }
    let checkpoint = write_checkpoint(method, model, output_dir, run, args, false, world)?;
    Err(Error::Interrupted {
        step: run.state.global_step,
        checkpoint,
    })
}

fn schedule(args: &TrainingArguments, plan: &Plan) -> LrSchedule {
    LrSchedule {
        kind: args.lr_scheduler_type,
        base_lr: args.learning_rate,
        warmup_steps: warmup_steps(plan.total_steps, args.warmup_steps, args.warmup_ratio),
        total_steps: plan.total_steps,
        min_lr_rate: min_lr_rate(args),
    }
}

fn adamw_config(args: &TrainingArguments) -> AdamWConfig {
    AdamWConfig {
        beta1: args.adam_beta1,
        beta2: args.adam_beta2,
        epsilon: args.adam_epsilon,
        weight_decay: args.weight_decay,
    }
}

/// `cosine_with_min_lr`'s floor as a fraction of the base rate (`min_lr_rate` or `min_lr`).
fn min_lr_rate(args: &TrainingArguments) -> f64 {
    if let Some(rate) = args.lr_scheduler_kwargs.get("min_lr_rate") {
        *rate
    } else if let Some(min_lr) = args.lr_scheduler_kwargs.get("min_lr") {
        min_lr / args.learning_rate
    } else {
        0.0
    }
}

/// Appends a `log_history` entry every `logging_steps` (and at step 1 with
/// `logging_first_step`), with TRL's names: the loss averaged since the last entry.
fn log_if_due(
    run: &mut RunState,
    args: &TrainingArguments,
    report: &StepReport,
    lr: f64,
    step_time: f64,
    logger: &mut RunLogger,
    world: &dyn Collective,
) -> Result<()> {
    let step = run.state.global_step;
    let due =
        step.is_multiple_of(run.state.logging_steps) || (args.logging_first_step && step == 1);
    if !due {
        return Ok(());
    }
    run.window.all_reduce(world);
    let mut entry = LogEntry::new();
    let loss = run.loss_since_log / run.steps_since_log as f64;
    entry.insert("loss".into(), Value::from(loss));
    entry.insert("grad_norm".into(), Value::from(report.grad_norm));
    // TRL logs the rate this step used (the scheduler steps after the optimizer).
    entry.insert("learning_rate".into(), Value::from(lr));
    for (name, value) in run.window.drain() {
        entry.insert(name, Value::from(value));
    }
    entry.insert("num_tokens".into(), Value::from(run.total_tokens));
    entry.insert("step_time".into(), Value::from(step_time));
    if world.size() > 1 {
        // Not a TRL key: the share of the step the gradient all-reduce took, for scaling.
        entry.insert(
            "allreduce_time".into(),
            Value::from(report.allreduce_seconds),
        );
    }
    entry.insert("epoch".into(), Value::from(run.state.epoch));
    entry.insert("step".into(), Value::from(step));
    logger.log(&entry)?;
    run.state.log_history.push(entry);
    run.loss_since_log = 0.0;
    run.steps_since_log = 0;
    Ok(())
}

/// As the HF Trainer: every `save_steps` (or epoch), and once more at the last step; with
/// `save_strategy=best`, when the evaluation just made found a new best.
fn save_due(args: &TrainingArguments, plan: &Plan, state: &TrainerState, new_best: bool) -> bool {
    let step = state.global_step;
    let last_step = step == plan.total_steps;
    match args.save_strategy {
        SaveStrategy::Steps => step.is_multiple_of(state.save_steps) || last_step,
        SaveStrategy::Epoch => plan.ends_epoch(step) || last_step,
        SaveStrategy::Best => new_best,
        SaveStrategy::No => false,
    }
}

/// Writes `checkpoint-N` (model, method state, optimizer unless `save_only_model`, trainer
/// state) and, when `prune`, deletes old ones beyond `save_total_limit`, keeping the best.
/// Only rank 0 writes it; then the other ranks add their own method state
/// ([`Method::save_rank_state`]), and every rank waits until all have (a later load sees whole
/// files).
#[allow(clippy::too_many_arguments)]
fn write_checkpoint<M: Method>(
    method: &M,
    model: &M::Model,
    output_dir: &Path,
    run: &RunState,
    args: &TrainingArguments,
    prune: bool,
    world: &dyn Collective,
) -> Result<PathBuf> {
    if !world.is_main() {
        world.barrier();
        let dir = checkpoint_dir(output_dir, run.state.global_step);
        let saved = method.save_rank_state(&dir, world.rank());
        world.barrier();
        return saved.map(|()| dir);
    }
    let dir = write_main_checkpoint(method, model, output_dir, run, args, prune);
    // Rank 0 reaches the barriers whatever happened, so a failed write is its error alone.
    world.barrier();
    world.barrier();
    dir
}

fn write_main_checkpoint<M: Method>(
    method: &M,
    model: &M::Model,
    output_dir: &Path,
    run: &RunState,
    args: &TrainingArguments,
    prune: bool,
) -> Result<PathBuf> {
    let write = |dir: &Path| {
        method.save_model(model, dir)?;
        method.save_state(dir)
    };
    let optimizer = (!args.save_only_model).then_some(&run.optimizer);
    let dir = save_checkpoint(output_dir, &run.state, optimizer, &write)?;
    let best = run
        .state
        .best_model_checkpoint
        .as_ref()
        .and(run.state.best_global_step);
    if prune {
        prune_checkpoints(output_dir, args.save_total_limit, best)?;
    }
    Ok(dir)
}
