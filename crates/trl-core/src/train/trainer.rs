//! The training loop every method runs: data order, gradient accumulation, clipping, AdamW,
//! the LR schedule, logging, checkpoints and resume. A method plugs in through [`Method`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use serde_json::Value;

use super::args::{SamplingStrategy, SaveStrategy, TrainingArguments};
use super::checkpoint::{list_checkpoints, load_optimizer, prune_checkpoints, save_checkpoint};
use super::logging::RunLogger;
use super::metrics::{MetricWindow, StepMetrics};
use super::optim::{AdamWConfig, AdamWState, adamw_step, clip_grad_norm};
use super::sampler::{epoch_order, sampler_seed};
use super::schedule::{LrSchedule, warmup_steps};
use super::state::{LogEntry, TrainerState};
use crate::{Error, Result};

/// What a method supplies to the loop: how to batch examples, how to compute the loss of a
/// micro-batch, and how to save/load its model.
pub trait Method {
    /// The trained module (a causal LM, a sequence classifier...).
    type Model: Module;
    /// A tokenized training example.
    type Example;

    /// Collates examples into a micro-batch and returns the number of loss items it holds
    /// (label tokens for token losses, rows for sequence losses), so the loop can normalise
    /// across gradient accumulation as transformers does with `num_items_in_batch`.
    fn items_in(&self, examples: &[&Self::Example]) -> f64;

    /// The loss of one micro-batch, already divided by `items_in_step` (the items of every
    /// micro-batch of this optimizer step), and its metrics.
    fn loss(
        &self,
        model: &Self::Model,
        examples: &[&Self::Example],
        items_in_step: f64,
    ) -> Result<(Tensor<1>, StepMetrics)>;

    /// Writes the model (and tokenizer) in HF layout into `dir`.
    fn save_model(&self, model: &Self::Model, dir: &Path) -> Result<()>;

    /// Reads a model written by [`Method::save_model`] (for resuming).
    fn load_model(&self, dir: &Path, device: &Device) -> Result<Self::Model>;

    /// Called after every optimizer step with the updated model (e.g. to sync a reference
    /// model); `step` is the number of steps done.
    fn after_step(&self, _model: &Self::Model, _step: u64) -> Result<()> {
        Ok(())
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub state: TrainerState,
    pub output_dir: PathBuf,
}

/// Runs training to the end (or to `stop_after`, used by tests to simulate a crash).
pub fn train<M: Method>(
    method: &M,
    mut model: M::Model,
    examples: &[M::Example],
    args: &TrainingArguments,
    device: &Device,
    logger: &mut RunLogger,
) -> Result<TrainOutcome> {
    if examples.is_empty() {
        return Err(Error::Config {
            path: "dataset".into(),
            message: "the training set has no rows".into(),
        });
    }
    let output_dir = PathBuf::from(&args.output_dir);
    std::fs::create_dir_all(&output_dir).map_err(|e| Error::io(&output_dir, e))?;
    let plan = Plan::new(args, examples.len());
    let schedule = LrSchedule {
        kind: args.lr_scheduler_type,
        base_lr: args.learning_rate,
        warmup_steps: warmup_steps(plan.total_steps, args.warmup_steps, args.warmup_ratio),
        total_steps: plan.total_steps,
        min_lr_rate: min_lr_rate(args),
    };
    let adamw = AdamWConfig {
        beta1: args.adam_beta1,
        beta2: args.adam_beta2,
        epsilon: args.adam_epsilon,
        weight_decay: args.weight_decay,
    };
    let logging_steps = TrainingArguments::interval(args.logging_steps, plan.total_steps);
    let save_steps = TrainingArguments::interval(args.save_steps, plan.total_steps);

    let mut state = TrainerState {
        max_steps: plan.total_steps,
        logging_steps,
        save_steps,
        num_train_epochs: plan.epochs,
        train_batch_size: args.per_device_train_batch_size,
        is_local_process_zero: true,
        is_world_process_zero: true,
        ..TrainerState::default()
    };
    let mut optimizer = AdamWState::default();
    if let Some(dir) = resume_dir(args, &output_dir)? {
        model = method.load_model(&dir, device)?;
        optimizer = load_optimizer(&dir, device)?;
        let saved = TrainerState::load(&dir.join(super::checkpoint::STATE_FILE))?;
        state.global_step = saved.global_step;
        state.epoch = saved.epoch;
        state.log_history = saved.log_history;
        state.trl_total_tokens = saved.trl_total_tokens;
        state.num_input_tokens_seen = saved.num_input_tokens_seen;
        logger.note(&format!(
            "resuming from {} at step {}",
            dir.display(),
            state.global_step
        ));
    }

    // Test hook: slows every step so an end-to-end test can SIGKILL a run between checkpoints.
    let step_delay = std::env::var("TRL_RS_TEST_STEP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    let start = Instant::now();
    let first_step = state.global_step;
    let mut window = MetricWindow::default();
    let mut loss_since_log = 0.0;
    let mut steps_since_log = 0u64;
    let mut total_loss = 0.0;
    logger.start(plan.total_steps, first_step);
    while state.global_step < plan.total_steps {
        let step_start = Instant::now();
        let micro_batches =
            plan.micro_batches(state.global_step, sampler_seed(args.seed, args.data_seed));
        let groups: Vec<Vec<&M::Example>> = micro_batches
            .iter()
            .map(|idx| idx.iter().map(|&i| &examples[i]).collect())
            .collect();
        let items_in_step: f64 = groups
            .iter()
            .map(|g| method.items_in(g))
            .sum::<f64>()
            .max(1.0);
        let mut accumulator = GradientsAccumulator::<M::Model>::new();
        let mut step_loss = 0.0;
        let mut step_tokens = 0.0;
        for group in &groups {
            let (loss, metrics) = method.loss(&model, group, items_in_step)?;
            let loss_value = loss.clone().without_autodiff().into_scalar::<f64>();
            if !loss_value.is_finite() {
                return Err(Error::Config {
                    path: output_dir.clone(),
                    message: format!(
                        "loss became {loss_value} at step {}; training stopped (earlier checkpoints are intact). \
                         Lower learning_rate or check the data",
                        state.global_step + 1
                    ),
                });
            }
            step_loss += loss_value;
            step_tokens += metrics.num_tokens;
            window.record(&metrics);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let mut grads = accumulator.grads();
        let max_norm = (args.max_grad_norm > 0.0).then_some(args.max_grad_norm);
        let grad_norm = clip_grad_norm(&model, &mut grads, max_norm);
        let lr = schedule.lr_at(state.global_step);
        model = adamw_step(model, &mut grads, lr, &adamw, &mut optimizer);

        state.global_step += 1;
        method.after_step(&model, state.global_step)?;
        state.epoch = state.global_step as f64 / plan.steps_per_epoch as f64;
        state.trl_total_tokens += step_tokens;
        state.num_input_tokens_seen = state.trl_total_tokens as u64;
        loss_since_log += step_loss;
        steps_since_log += 1;
        total_loss += step_loss;
        let step_time = step_start.elapsed().as_secs_f64();
        logger.progress(state.global_step, step_tokens, step_loss);

        let log_now = state.global_step % logging_steps == 0
            || (args.logging_first_step && state.global_step == 1);
        if log_now {
            let mut entry = LogEntry::new();
            entry.insert(
                "loss".into(),
                Value::from(loss_since_log / steps_since_log as f64),
            );
            entry.insert("grad_norm".into(), Value::from(grad_norm));
            // TRL logs the rate this step used (the scheduler steps after the optimizer).
            entry.insert("learning_rate".into(), Value::from(lr));
            for (name, value) in window.drain() {
                entry.insert(name, Value::from(value));
            }
            entry.insert("num_tokens".into(), Value::from(state.trl_total_tokens));
            entry.insert("step_time".into(), Value::from(step_time));
            entry.insert("epoch".into(), Value::from(state.epoch));
            entry.insert("step".into(), Value::from(state.global_step));
            logger.log(&entry)?;
            state.log_history.push(entry);
            loss_since_log = 0.0;
            steps_since_log = 0;
        }

        // As the HF Trainer: every `save_steps` (or epoch), and once more at the last step.
        let last_step = state.global_step == plan.total_steps;
        let save_now = match args.save_strategy {
            SaveStrategy::Steps => state.global_step % save_steps == 0 || last_step,
            SaveStrategy::Epoch => state.global_step % plan.steps_per_epoch == 0 || last_step,
            SaveStrategy::No | SaveStrategy::Best => false,
        };
        if save_now {
            let write_model = |dir: &Path| method.save_model(&model, dir);
            save_checkpoint(&output_dir, &state, &optimizer, &write_model)?;
            prune_checkpoints(&output_dir, args.save_total_limit)?;
        }
        if let Some(delay) = step_delay {
            std::thread::sleep(delay);
        }
        if logger.interrupted() {
            let write_model = |dir: &Path| method.save_model(&model, dir);
            let dir = save_checkpoint(&output_dir, &state, &optimizer, &write_model)?;
            return Err(Error::Config {
                path: output_dir.clone(),
                message: format!(
                    "interrupted at step {}; saved {} (resume with --resume_from_checkpoint true)",
                    state.global_step,
                    dir.display()
                ),
            });
        }
    }
    logger.finish();

    let runtime = start.elapsed().as_secs_f64();
    let steps_run = (state.global_step - first_step).max(1) as f64;
    let mut summary = LogEntry::new();
    summary.insert("train_runtime".into(), Value::from(runtime));
    summary.insert(
        "train_steps_per_second".into(),
        Value::from(steps_run / runtime.max(1e-9)),
    );
    // As the HF Trainer: samples = max_steps * batch * accumulation, else rows * epochs.
    let samples = if args.max_steps > 0 {
        steps_run * (args.per_device_train_batch_size * args.gradient_accumulation_steps) as f64
    } else {
        examples.len() as f64 * args.num_train_epochs * steps_run / plan.total_steps.max(1) as f64
    };
    summary.insert(
        "train_samples_per_second".into(),
        Value::from(samples / runtime.max(1e-9)),
    );
    summary.insert("train_loss".into(), Value::from(total_loss / steps_run));
    // TRL's log() adds the metrics of steps not logged yet to the summary entry.
    if steps_since_log > 0 {
        for (name, value) in window.drain() {
            summary.insert(name, Value::from(value));
        }
        summary.insert("num_tokens".into(), Value::from(state.trl_total_tokens));
    }
    summary.insert("epoch".into(), Value::from(state.epoch));
    summary.insert("step".into(), Value::from(state.global_step));
    state.log_history.push(summary);

    method.save_model(&model, &output_dir)?;
    state.save(&output_dir.join(super::checkpoint::STATE_FILE))?;
    Ok(TrainOutcome { state, output_dir })
}

fn min_lr_rate(args: &TrainingArguments) -> f64 {
    if let Some(rate) = args.lr_scheduler_kwargs.get("min_lr_rate") {
        *rate
    } else if let Some(min_lr) = args.lr_scheduler_kwargs.get("min_lr") {
        min_lr / args.learning_rate
    } else {
        0.0
    }
}

fn resume_dir(args: &TrainingArguments, output_dir: &Path) -> Result<Option<PathBuf>> {
    match &args.resume_from_checkpoint {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => match list_checkpoints(output_dir).pop() {
            Some((_, dir)) => Ok(Some(dir)),
            None => Err(Error::Config {
                path: output_dir.to_path_buf(),
                message: "resume_from_checkpoint=true but no checkpoint-N folder with a trainer_state.json is here"
                    .into(),
            }),
        },
        Some(Value::String(path)) if path == "true" || path == "True" => {
            resume_dir(&TrainingArguments { resume_from_checkpoint: Some(Value::Bool(true)), ..args.clone() }, output_dir)
        }
        Some(Value::String(path)) => {
            let dir = PathBuf::from(path);
            if dir.join(super::checkpoint::STATE_FILE).is_file() {
                Ok(Some(dir))
            } else {
                Err(Error::Config {
                    path: dir,
                    message: "resume_from_checkpoint: not a checkpoint folder (no trainer_state.json)".into(),
                })
            }
        }
        Some(other) => Err(Error::Config {
            path: "resume_from_checkpoint".into(),
            message: format!("expected true, false or a path, found {other}"),
        }),
    }
}

/// The data schedule of a run: which examples each micro-batch of each step holds.
#[derive(Debug, Clone)]
struct Plan {
    num_examples: usize,
    batch_size: usize,
    accumulation: usize,
    batches_per_epoch: usize,
    steps_per_epoch: u64,
    total_steps: u64,
    epochs: u64,
    sampling: SamplingStrategy,
}

impl Plan {
    fn new(args: &TrainingArguments, num_examples: usize) -> Self {
        let batch_size = args.per_device_train_batch_size.max(1);
        let accumulation = args.gradient_accumulation_steps.max(1);
        let batches_per_epoch = num_examples.div_ceil(batch_size);
        let steps_per_epoch = (batches_per_epoch / accumulation).max(1) as u64;
        let total_steps = if args.max_steps > 0 {
            args.max_steps as u64
        } else {
            (args.num_train_epochs * steps_per_epoch as f64).ceil() as u64
        };
        Plan {
            num_examples,
            batch_size,
            accumulation,
            batches_per_epoch,
            steps_per_epoch,
            total_steps,
            epochs: total_steps.div_ceil(steps_per_epoch),
            sampling: args.train_sampling_strategy,
        }
    }

    /// Example indices of every micro-batch of optimizer step `step` (0-based).
    fn micro_batches(&self, step: u64, seed: u64) -> Vec<Vec<usize>> {
        let epoch = step / self.steps_per_epoch;
        let step_in_epoch = (step % self.steps_per_epoch) as usize;
        let order = self.epoch_order(epoch, seed);
        let first_batch = step_in_epoch * self.accumulation;
        // The last step of an epoch also takes the batches left over by the accumulation.
        let last_batch = if step_in_epoch as u64 + 1 == self.steps_per_epoch {
            self.batches_per_epoch
        } else {
            first_batch + self.accumulation
        };
        (first_batch..last_batch.min(self.batches_per_epoch))
            .map(|b| {
                order[b * self.batch_size..((b + 1) * self.batch_size).min(self.num_examples)]
                    .to_vec()
            })
            .collect()
    }

    /// The HF Trainer's order: `torch.randperm(n)` seeded with `seed + epoch` (random), or
    /// the file order (sequential).
    fn epoch_order(&self, epoch: u64, seed: u64) -> Vec<usize> {
        match self.sampling {
            SamplingStrategy::Random => epoch_order(self.num_examples, seed, epoch),
            SamplingStrategy::Sequential => (0..self.num_examples).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_example_once_per_epoch() {
        let args = TrainingArguments {
            per_device_train_batch_size: 2,
            gradient_accumulation_steps: 2,
            num_train_epochs: 1.0,
            ..TrainingArguments::default()
        };
        let plan = Plan::new(&args, 9);
        assert_eq!(plan.total_steps, 2);
        let mut seen: Vec<usize> = (0..2)
            .flat_map(|s| plan.micro_batches(s, 42))
            .flatten()
            .collect();
        seen.sort();
        assert_eq!(seen, (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn sequential_order_is_the_file_order() {
        let args = TrainingArguments {
            per_device_train_batch_size: 2,
            train_sampling_strategy: SamplingStrategy::Sequential,
            max_steps: 3,
            ..TrainingArguments::default()
        };
        let plan = Plan::new(&args, 4);
        assert_eq!(plan.micro_batches(0, 1), vec![vec![0, 1]]);
        assert_eq!(plan.micro_batches(2, 1), vec![vec![0, 1]]);
    }
}
