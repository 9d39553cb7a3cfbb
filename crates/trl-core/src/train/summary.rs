//! The last `log_history` entry of a run, as the HF Trainer writes it after training:
//! runtime, throughput, the mean training loss, and TRL's metrics of steps not logged yet.

use std::time::Instant;

use serde_json::Value;

use super::args::TrainingArguments;
use super::plan::Plan;
use super::run_state::RunState;
use super::state::LogEntry;

/// The summary entry of a run that made `steps_run` steps since `start` (this process).
pub(super) fn summary_entry(
    run: &mut RunState,
    args: &TrainingArguments,
    num_examples: usize,
    plan: &Plan,
    steps_run: u64,
    start: Instant,
) -> LogEntry {
    let runtime = start.elapsed().as_secs_f64();
    let steps = steps_run.max(1) as f64;
    let mut summary = LogEntry::new();
    summary.insert("train_runtime".into(), Value::from(runtime));
    summary.insert(
        "train_steps_per_second".into(),
        Value::from(steps / runtime.max(1e-9)),
    );
    // As the HF Trainer: samples = max_steps * batch * accumulation * processes (its
    // total_train_batch_size), else rows * epochs.
    let processes = super::collective::world().size();
    let samples = if args.max_steps > 0 {
        steps
            * (args.per_device_train_batch_size * args.gradient_accumulation_steps * processes)
                as f64
    } else {
        num_examples as f64 * args.num_train_epochs * steps / plan.total_steps.max(1) as f64
    };
    summary.insert(
        "train_samples_per_second".into(),
        Value::from(samples / runtime.max(1e-9)),
    );
    summary.insert("train_loss".into(), Value::from(run.total_loss / steps));
    // TRL's log() adds the metrics of steps not logged yet to the summary entry.
    if run.steps_since_log > 0 {
        for (name, value) in run.window.drain() {
            summary.insert(name, Value::from(value));
        }
        summary.insert("num_tokens".into(), Value::from(run.total_tokens));
    }
    summary.insert("epoch".into(), Value::from(run.state.epoch));
    summary.insert("step".into(), Value::from(run.state.global_step));
    summary
}
