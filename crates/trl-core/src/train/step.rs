//! One optimizer step: forward and backward of every micro-batch of each update, gradient
//! accumulation, clipping and AdamW. Pure with respect to the loop's bookkeeping (logging,
//! saving), which [`super::trainer`] does with what this returns. With several processes the
//! loss normaliser is summed over the ranks and the gradients all-reduced before clipping
//! ([`super::data_parallel`]); with one both are no-ops. Under `--fp16` the loss is scaled for
//! the backward and a step whose gradients overflow is skipped ([`super::loss_scale`]).

use burn::optim::{GradientsAccumulator, GradientsParams};

use super::collective::Collective;
use super::data_parallel::all_reduce_gradients;
use super::method::{Method, PreparedStep};
use super::metrics::MetricWindow;
use super::optim::{AdamWConfig, AdamWState, adamw_step, clip_grad_norm, scale_gradients};
use crate::host::scalar;
use crate::{Error, Result};

/// The optimizer settings a step applies.
#[derive(Debug, Clone, Copy)]
pub struct StepSettings {
    pub lr: f64,
    pub adamw: AdamWConfig,
    /// `None` when `max_grad_norm` is 0 (no clipping; the norm is still measured).
    pub max_grad_norm: Option<f64>,
    /// 1-based number of this step, for error messages.
    pub step_number: u64,
}

/// What a step reports to the loop (this rank's share: the loop sums it over the ranks).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepReport {
    /// Sum of the micro-batch losses of an update (averaged over updates).
    pub loss: f64,
    /// Tokens trained on (summed over micro-batches).
    pub tokens: f64,
    /// Total gradient norm before clipping, of the last update.
    pub grad_norm: f64,
    /// Seconds spent summing gradients over the ranks (0 in one process).
    pub allreduce_seconds: f64,
}

/// Runs every update of `prepared` on `model` and returns the updated model; `world` holds
/// the other ranks' shares of the same global batch.
pub fn optimizer_step<M: Method>(
    method: &M,
    mut model: M::Model,
    prepared: PreparedStep<M::Batch>,
    settings: &StepSettings,
    optimizer: &mut AdamWState,
    window: &mut MetricWindow,
    world: &dyn Collective,
) -> Result<(M::Model, StepReport)> {
    let mut report = StepReport::default();
    let updates = prepared.updates.len().max(1) as f64;
    for batches in &prepared.updates {
        // fp16: the loss is scaled up for the backward, the gradients down before clipping.
        let scale = optimizer.loss_scale.map(|s| s.scale);
        let mut overflowed = false;
        // transformers' num_items_in_batch: the items of every micro-batch of the update, on
        // every rank (`average_tokens_across_devices`, true by default).
        let mut items = [batches.iter().map(|b| method.items_in(b)).sum::<f64>()];
        world.all_reduce_sum_f64(&mut items);
        let items = items[0].max(1.0);
        let mut accumulator = GradientsAccumulator::<M::Model>::new();
        for batch in batches {
            let (loss, metrics) = method.loss(&model, batch, items)?;
            // A host sync point: the loss value is needed for the NaN check and the log.
            let value = scalar(loss.clone().without_autodiff(), "the loss")?;
            report.loss += value / updates;
            report.tokens += metrics.num_tokens;
            window.record(&metrics);
            if !value.is_finite() {
                // Under fp16 an overflow skips the step (GradScaler); otherwise it is an error.
                if scale.is_none() {
                    return Err(Error::NonFiniteLoss {
                        step: settings.step_number,
                        value,
                    });
                }
                overflowed = true;
                continue;
            }
            let loss = match scale {
                Some(scale) => loss * scale,
                None => loss,
            };
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let mut grads = accumulator.grads();
        let started = std::time::Instant::now();
        all_reduce_gradients(&model, &mut grads, world)?;
        report.allreduce_seconds += started.elapsed().as_secs_f64();
        if let Some(scale) = scale {
            scale_gradients(&model, &mut grads, 1.0 / scale);
        }
        report.grad_norm = clip_grad_norm(&model, &mut grads, settings.max_grad_norm)?;
        if let Some(loss_scale) = optimizer.loss_scale.as_mut() {
            // Every rank takes the same decision (the norm is of the all-reduced gradients).
            let mut any = [f64::from(u8::from(overflowed))];
            world.all_reduce_sum_f64(&mut any);
            let overflowed = any[0] > 0.0 || !report.grad_norm.is_finite();
            loss_scale.update(overflowed);
            if overflowed {
                continue;
            }
        }
        model = adamw_step(model, &mut grads, settings.lr, &settings.adamw, optimizer);
    }
    Ok((model, report))
}
