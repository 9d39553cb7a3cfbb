//! Evaluation as the HF Trainer's `evaluate` / `evaluation_loop` does it: the eval set in
//! order, `per_device_eval_batch_size` rows a batch, through the model without autodiff;
//! `eval_loss` is the mean of the batch losses repeated once per row (the last, shorter batch
//! weighs its rows only, non-finite losses left out as `logging_nan_inf_filter` does), the
//! method's metrics are means over batches (TRL's `log`), all with the `eval_` prefix, plus
//! `eval_runtime`, `eval_samples_per_second` and `eval_steps_per_second` (transformers'
//! `speed_metrics`). And the best-metric bookkeeping of `_determine_best_metric`.

use std::time::Instant;

use serde_json::Value;

use super::args::{SaveStrategy, TrainingArguments};
use super::collective::world;
use super::eval_shard::eval_shards;
use super::gather::all_gather_f64;
use super::method::{EvalContext, Method, StepContext};
use super::metrics::{MetricWindow, StepMetrics};
use super::state::{LogEntry, TrainerState};
use crate::host::scalar;
use crate::{Error, Result};

/// One evaluation's `eval_*` values (no `epoch`/`step`: the loop adds them).
#[derive(Debug, Clone)]
pub struct EvalSummary {
    pub metrics: LogEntry,
}

/// Evaluates `model` on `examples` with `method`, returning the `eval_*` metrics. The batches
/// follow [`Method::eval_sampler`]'s order; the samples and steps of the throughput metrics
/// count the eval set's examples, as transformers does (`len(eval_dataset)`). With several
/// processes each rank evaluates its share of the batches ([`eval_shards`]) and the losses
/// and metrics are gathered before they are combined, so every rank returns the same values.
pub fn evaluate<M: Method>(
    method: &mut M,
    model: &M::Model,
    examples: &[M::Example],
    batch_size: usize,
    ctx: &EvalContext,
) -> Result<EvalSummary> {
    let start = Instant::now();
    let batch_size = batch_size.max(1);
    let world = world();
    let frozen = method.eval_model(model);
    let order = method.eval_sampler().epoch_order(examples.len(), 0);
    let shards = eval_shards(
        &order,
        examples.len(),
        batch_size,
        world.rank(),
        world.size(),
    );
    let mut window = MetricWindow::default();
    // [loss, weight] per batch, for transformers' per-row mean.
    let mut losses = Vec::with_capacity(2 * shards.len());
    for shard in &shards {
        let refs: Vec<&M::Example> = shard.indices.iter().map(|&i| &examples[i]).collect();
        let batch_ctx = EvalContext {
            batch: shard.round,
            ..*ctx
        };
        let (loss, metrics) = method.eval_batch(&frozen, &refs, &batch_ctx)?;
        losses.extend([loss, shard.weight as f64]);
        window.record(&counted(metrics, shard.weight));
    }
    let losses: Vec<(f64, usize)> = all_gather_f64(world, &losses)
        .chunks(2)
        .filter(|pair| pair[1] > 0.0)
        .map(|pair| (pair[0], pair[1] as usize))
        .collect();
    window.all_reduce(world);
    let mut entry = LogEntry::new();
    entry.insert("eval_loss".into(), Value::from(row_weighted_loss(&losses)));
    for (name, value) in window.drain() {
        entry.insert(format!("eval_{name}"), Value::from(value));
    }
    let runtime = start.elapsed().as_secs_f64();
    let steps = examples.len().div_ceil(batch_size * world.size());
    for (name, value) in speed_metrics(runtime, examples.len(), steps) {
        entry.insert(name.into(), Value::from(value));
    }
    Ok(EvalSummary { metrics: entry })
}

/// A batch's metrics as the window records them: a batch of padding (weight 0, see
/// [`eval_shards`]) keeps its metric names, so every rank's window lines up name by name
/// for [`MetricWindow::all_reduce`], with NaN values, which the means leave out.
fn counted(mut metrics: StepMetrics, weight: usize) -> StepMetrics {
    if weight == 0 {
        metrics.values.iter_mut().for_each(|(_, v)| *v = f64::NAN);
    }
    metrics
}

/// How many times each batch's loss enters `eval_loss`'s mean: transformers repeats a batch's
/// loss `per_device_eval_batch_size` times and accelerate's `gather_for_metrics` cuts the last
/// batch's copies to `len(eval_dataset) % batch_size` (when not 0). For a sampler that visits
/// each example once this is the rows of each batch; under GRPO's `RepeatSampler` the
/// remainder counts prompts, not completions, as in TRL.
pub fn batch_loss_weights(dataset_len: usize, batches: usize, batch_size: usize) -> Vec<usize> {
    let remainder = dataset_len % batch_size.max(1);
    (0..batches)
        .map(|i| {
            if i + 1 == batches && remainder > 0 {
                remainder
            } else {
                batch_size
            }
        })
        .collect()
}

/// [`Method::eval_batch`] for an offline method: its own `prepare` of one micro-batch, the
/// loss normalised by the batch's own items (TRL's eval `compute_loss` gets no
/// `num_items_in_batch`: SFT's token mean, the preference methods' row mean), read back to
/// the host, and `num_tokens` = the tokens trained on so far (TRL logs it in eval too).
pub fn offline_eval_batch<M: Method>(
    method: &mut M,
    model: &M::Model,
    examples: &[&M::Example],
    ctx: &EvalContext,
) -> Result<(f64, StepMetrics)> {
    let step = StepContext {
        step: ctx.step,
        total_steps: ctx.step,
        device: ctx.device,
    };
    let prepared = method.prepare(model, &[examples.to_vec()], &step)?;
    let mut total = 0.0;
    let mut metrics = StepMetrics::default();
    for batch in prepared.updates.iter().flatten() {
        let items = method.items_in(batch).max(1.0);
        let (loss, batch_metrics) = method.loss(model, batch, items)?;
        total += scalar(loss.without_autodiff(), "the eval loss")?;
        metrics.values.extend(batch_metrics.values);
    }
    metrics.push("num_tokens", ctx.num_tokens);
    Ok((total, metrics))
}

/// transformers' `eval_loss`: every batch loss repeated once per row, non-finite values
/// dropped when some are finite, then the mean.
pub fn row_weighted_loss(losses: &[(f64, usize)]) -> f64 {
    let any_finite = losses.iter().any(|(l, _)| l.is_finite());
    let (sum, rows) = losses
        .iter()
        .filter(|(l, _)| !any_finite || l.is_finite())
        .fold((0.0, 0usize), |(s, n), (l, r)| (s + l * *r as f64, n + r));
    if rows == 0 {
        f64::NAN
    } else {
        sum / rows as f64
    }
}

/// `speed_metrics("eval", ...)`: runtime rounded to 4 decimals, rates to 3.
fn speed_metrics(runtime: f64, samples: usize, steps: usize) -> [(&'static str, f64); 3] {
    let round = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let runtime = round(runtime, 4).max(1e-4);
    [
        ("eval_runtime", runtime),
        (
            "eval_samples_per_second",
            round(samples as f64 / runtime, 3),
        ),
        ("eval_steps_per_second", round(steps as f64 / runtime, 3)),
    ]
}

/// `_determine_best_metric`: compares the evaluation's `metric_for_best_model` with the best
/// so far and records a new best (value, and the step when checkpoints are saved). Returns
/// whether it is a new best; `false` when no best metric is tracked.
pub fn update_best_metric(
    args: &TrainingArguments,
    state: &mut TrainerState,
    metrics: &LogEntry,
) -> Result<bool> {
    let Some(key) = args.best_metric_key() else {
        return Ok(false);
    };
    let Some(value) = metrics.get(&key).and_then(Value::as_f64) else {
        let available: Vec<&String> = metrics.keys().collect();
        return Err(Error::Config {
            path: "--metric_for_best_model".into(),
            message: format!(
                "`{key}` is not among the evaluation metrics; the available ones are {available:?}"
            ),
        });
    };
    let greater = args.greater_is_better_resolved();
    let best = state.best_metric.unwrap_or(if greater {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    });
    let better = if greater { value > best } else { value < best };
    if state.best_metric.is_none() {
        state.best_metric = Some(best);
    }
    if better {
        state.best_metric = Some(value);
        if args.save_strategy != SaveStrategy::No {
            state.best_global_step = Some(state.global_step);
        }
    }
    Ok(better)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_weights_cut_the_last_batch_to_the_dataset_remainder() {
        // 9 rows in batches of 4: 4, 4, 1 (the rows of each batch).
        assert_eq!(batch_loss_weights(9, 3, 4), vec![4, 4, 1]);
        assert_eq!(batch_loss_weights(8, 2, 4), vec![4, 4]);
        // 5 prompts x 2 generations in batches of 4: batches of 4, 4, 2 completions; the
        // remainder counts prompts (5 % 4), as accelerate's does.
        assert_eq!(batch_loss_weights(5, 3, 4), vec![4, 4, 1]);
    }

    #[test]
    fn eval_loss_weighs_each_batch_by_its_rows_and_drops_non_finite() {
        assert_eq!(row_weighted_loss(&[(1.0, 4), (4.0, 2)]), 2.0);
        assert_eq!(row_weighted_loss(&[(1.0, 4), (f64::NAN, 2)]), 1.0);
        assert!(row_weighted_loss(&[(f64::NAN, 4)]).is_nan());
    }

    #[test]
    fn best_metric_follows_greater_is_better_and_records_the_step() {
        let args = TrainingArguments {
            load_best_model_at_end: true,
            ..TrainingArguments::default()
        };
        let mut state = TrainerState::default();
        let entry = |v: f64| LogEntry::from([("eval_loss".to_string(), Value::from(v))]);
        state.global_step = 2;
        assert!(update_best_metric(&args, &mut state, &entry(1.5)).unwrap());
        state.global_step = 4;
        assert!(!update_best_metric(&args, &mut state, &entry(1.7)).unwrap());
        assert_eq!(
            (state.best_metric, state.best_global_step),
            (Some(1.5), Some(2))
        );
        let missing = LogEntry::from([("eval_other".to_string(), Value::from(1.0))]);
        let err = update_best_metric(&args, &mut state, &missing).unwrap_err();
        assert!(err.to_string().contains("eval_loss"), "{err}");
    }
}
