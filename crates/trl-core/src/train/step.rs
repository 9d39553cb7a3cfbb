//! One optimizer step: forward and backward of every micro-batch of each update, gradient
//! accumulation, clipping and AdamW. Pure with respect to the loop's bookkeeping (logging,
//! saving), which [`super::trainer`] does with what this returns. With several processes the
//! loss normaliser is summed over the ranks and the gradients all-reduced before clipping
//! ([`super::data_parallel`]); with one both are no-ops. Under `--fp16` the loss is scaled for
//! the backward and a step whose gradients overflow is skipped ([`super::loss_scale`]).

use burn::module::Module;
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
        let update = Update {
            grads,
            overflowed,
            settings,
        };
        (model, report.grad_norm) = apply_update(model, update, optimizer, world)?;
    }
    Ok((model, report))
}

/// One update's summed gradients, before unscaling and clipping.
struct Update<'a> {
    grads: GradientsParams,
    /// A micro-batch's loss was not finite (fp16 only; otherwise that is an error).
    overflowed: bool,
    settings: &'a StepSettings,
}

/// Unscales (fp16), clips and applies `update` to `module`, returning it and the gradient
/// norm; under fp16 an update whose loss or gradients overflowed on any rank leaves the
/// module and AdamW as they were and halves the loss scale (torch's `GradScaler.step`).
fn apply_update<M: Module>(
    module: M,
    mut update: Update,
    optimizer: &mut AdamWState,
    world: &dyn Collective,
) -> Result<(M, f64)> {
    let settings = update.settings;
    let scale = optimizer.loss_scale.map(|s| s.scale);
    if let Some(scale) = scale {
        scale_gradients(&module, &mut update.grads, 1.0 / scale);
    }
    let grad_norm = clip_grad_norm(&module, &mut update.grads, settings.max_grad_norm)?;
    if let Some(loss_scale) = optimizer.loss_scale.as_mut() {
        // Every rank takes the same decision (the norm is of the all-reduced gradients).
        let mut any = [f64::from(u8::from(update.overflowed))];
        world.all_reduce_sum_f64(&mut any);
        let overflowed = any[0] > 0.0 || !grad_norm.is_finite();
        loss_scale.update(overflowed);
        if overflowed {
            return Ok((module, grad_norm));
        }
    }
    let module = adamw_step(
        module,
        &mut update.grads,
        settings.lr,
        &settings.adamw,
        optimizer,
    );
    Ok((module, grad_norm))
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;
    use crate::train::collective::SingleProcess;
    use crate::train::loss_scale::LossScale;

    #[derive(Module, Debug)]
    struct Toy {
        weight: Param<Tensor<1>>,
    }

    fn toy() -> Toy {
        let device = Device::default().autodiff();
        let values = TensorData::new(vec![1.0f32, -2.0], [2]);
        Toy {
            weight: Param::from_tensor(Tensor::from_data(values, &device)),
        }
    }

    fn settings() -> StepSettings {
        StepSettings {
            lr: 0.1,
            adamw: AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.0,
            },
            max_grad_norm: Some(1.0),
            step_number: 1,
        }
    }

    /// The gradients of `factor * sum(weight * [3, 4])`.
    fn update<'a>(
        model: &Toy,
        factor: f32,
        overflowed: bool,
        settings: &'a StepSettings,
    ) -> Update<'a> {
        let device = model.weight.val().device();
        let slope = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 4.0], [2]), &device);
        let loss = (model.weight.val() * slope).sum() * factor;
        let grads = GradientsParams::from_grads(loss.backward(), model);
        Update {
            grads,
            overflowed,
            settings,
        }
    }

    fn weights(model: &Toy) -> Vec<f32> {
        model.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    /// fp16: gradients of a loss scaled by 1024 are unscaled before clipping and AdamW, so the
    /// update equals the unscaled run's; an overflow skips the update and halves the scale.
    #[test]
    fn a_scaled_update_equals_the_plain_one_and_an_overflow_is_skipped() {
        let settings = settings();
        let model = toy();
        let mut plain = AdamWState::default();
        let step = update(&model, 1.0, false, &settings);
        let (expected, expected_norm) =
            apply_update(model.clone(), step, &mut plain, &SingleProcess).unwrap();
        assert!((expected_norm - 5.0).abs() < 1e-6, "{expected_norm}");

        let mut scaled = AdamWState {
            loss_scale: Some(LossScale {
                scale: 1024.0,
                ..LossScale::default()
            }),
            ..AdamWState::default()
        };
        let step = update(&model, 1024.0, false, &settings);
        let (mut ours, norm) =
            apply_update(model.clone(), step, &mut scaled, &SingleProcess).unwrap();
        assert!((norm - expected_norm).abs() < 1e-6, "{norm}");
        assert_eq!(weights(&ours), weights(&expected));
        assert_eq!((scaled.step, scaled.loss_scale.unwrap().good_steps), (1, 1));

        for (factor, overflowed) in [(f32::INFINITY, false), (1024.0, true)] {
            let step = update(&ours, factor, overflowed, &settings);
            let before = weights(&ours);
            let scale = scaled.loss_scale.unwrap().scale;
            let (after, _) = apply_update(ours, step, &mut scaled, &SingleProcess).unwrap();
            assert_eq!(weights(&after), before, "a skipped update moves nothing");
            assert_eq!(scaled.step, 1, "AdamW's step count stays");
            assert_eq!(scaled.loss_scale.unwrap().scale, scale / 2.0);
            assert!(scaled.loss_scale.unwrap().skipped_steps > 0);
            ours = after;
        }
    }
}
