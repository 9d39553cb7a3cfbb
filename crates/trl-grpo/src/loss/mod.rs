//! GRPO's eight policy losses and RLOO's loss as pure functions of per-token log-probs (TRL
//! 1.16's `GRPOTrainer._compute_loss` and `RLOOTrainer._compute_loss`).
//!
//! [`policy_loss`] follows TRL's order: importance ratio (token or sequence level) -> optional
//! k3 KL to the reference -> the loss type's per-token term -> high-entropy mask -> `+ beta *
//! KL` -> the loss type's normaliser (already divided for gradient accumulation, as TRL's
//! loss is) -> static entropy bonus; plus TRL's metrics under TRL's names.

mod config;
mod entropy;
mod metrics;
mod normalize;
mod per_token;
mod ratio;
mod rloo;

#[cfg(test)]
pub(crate) mod tests;

use burn::tensor::{Tensor, TensorData};
use trl_core::train::collective::Collective;
use trl_core::{Error, Result};

pub use config::{ImportanceSamplingLevel, LossType, PolicyLossConfig};
pub use metrics::LossMetrics;
pub use normalize::LossNormalizer;
pub use rloo::{RlooLossInputs, rloo_policy_loss};

/// One micro-batch's tensors. `B` rows (completions), `T` completion positions.
#[derive(Debug, Clone)]
pub struct PolicyLossInputs {
    /// `[B, T]` log-probs of the sampled tokens under the policy being trained (differentiable).
    pub per_token_logps: Tensor<2>,
    /// `[B, T]` entropy of the policy's distribution at each position (no gradient needed).
    pub entropies: Tensor<2>,
    /// `[B, T]` log-probs when the completions were generated (`num_iterations > 1` or
    /// generation ahead of the optimizer); `None`: `per_token_logps.detach()`, as TRL.
    pub old_per_token_logps: Option<Tensor<2>>,
    /// `[B, T]` reference-model log-probs; required when `beta != 0`, ignored when it is 0.
    pub ref_per_token_logps: Option<Tensor<2>>,
    /// `[B]` one advantage per completion.
    pub advantages: Tensor<1>,
    /// `[B, T]` 1.0 on completion tokens that count, 0.0 on padding (TRL's completion mask).
    pub mask: Tensor<2>,
}

/// The loss to back-propagate and what TRL logs for it.
#[derive(Debug, Clone)]
pub struct PolicyLoss {
    /// `[1]`: the micro-batch's loss, already divided as TRL divides it (see
    /// [`LossNormalizer`]); summing it over the accumulation window gives the step's loss.
    pub loss: Tensor<1>,
    pub metrics: LossMetrics,
}

/// GRPO's loss for one micro-batch (`GRPOTrainer._compute_loss`, train mode); `world` holds
/// the other processes, whose tokens' entropies `top_entropy_quantile` takes its threshold
/// over (TRL gathers them).
///
/// Errors on tensors of the wrong shape and on a missing `ref_per_token_logps` when
/// `cfg.beta != 0`; `cfg` is expected to have passed [`PolicyLossConfig::validate`].
pub fn policy_loss(
    cfg: &PolicyLossConfig,
    inputs: PolicyLossInputs,
    norm: &LossNormalizer,
    world: &dyn Collective,
) -> Result<PolicyLoss> {
    let [b, t] = check_shapes(&inputs, cfg.beta != 0.0)?;
    let device = inputs.per_token_logps.device();
    let mask_host = host(inputs.mask.clone())?;
    let entropies_host = host(inputs.entropies.clone())?;
    let advantages_host = host(inputs.advantages.clone())?;
    let entropy_keep = (cfg.top_entropy_quantile < 1.0).then(|| {
        let q = 1.0 - cfg.top_entropy_quantile;
        entropy::high_entropy_mask(world, &entropies_host, &mask_host, q)
    });
    let ratios = importance_and_kl(cfg, &inputs);

    let terms = per_token::policy_terms(
        cfg,
        per_token::TermInputs {
            coef_1: ratios.coef_1,
            log_ratio: ratios.log_ratio,
            per_token_logps: inputs.per_token_logps,
            advantages: inputs.advantages.reshape([b, 1]),
            advantages_host: &advantages_host,
            mask_host: &mask_host,
            width: t,
        },
    )?;
    let mut per_token_loss = terms.per_token_loss.expand([b, t]); // [B, T]
    if let Some(keep) = &entropy_keep {
        per_token_loss = per_token_loss * float_tensor(keep, [b, t], &device);
    }
    if let Some(kl) = &ratios.per_token_kl {
        per_token_loss = per_token_loss + kl.clone().mul_scalar(cfg.beta);
    }
    let mut loss = normalize::aggregate(cfg, norm, per_token_loss, inputs.mask);

    let mut metrics = LossMetrics::default();
    if cfg.entropy_bonus_enabled() {
        let policy_loss = host(loss.clone())?[0] as f64 * norm.policy_loss_factor(cfg.loss_type);
        let bonus = entropy::mean_entropy(&entropies_host, &mask_host, entropy_keep.as_deref())
            / norm.current_gradient_accumulation_steps as f64;
        loss = loss.sub_scalar(cfg.entropy_coef * bonus);
        metrics.push("policy_loss", policy_loss);
        metrics.push("entropy_coef", cfg.entropy_coef);
    }
    let coef_1_host = host(terms.coef_for_metrics)?;
    let kl_host = ratios.per_token_kl.map(host).transpose()?;
    let host_values = metrics::HostValues {
        mask: &mask_host,
        width: t,
        entropies: &entropies_host,
        advantages: &advantages_host,
        coef_1: &coef_1_host,
        per_token_kl: kl_host.as_deref(),
        phi_seq: terms.phi_seq.as_deref(),
    };
    metrics::policy_metrics(cfg, &host_values, &mut metrics);
    Ok(PolicyLoss { loss, metrics })
}

/// The per-token log-ratio `[B, T]`, the importance ratio `coef_1` (`[B, T]` or `[B, 1]`)
/// and, with a reference, the per-token KL `[B, T]` (times `coef_1` with bias correction).
struct Ratios {
    log_ratio: Tensor<2>,
    coef_1: Tensor<2>,
    per_token_kl: Option<Tensor<2>>,
}

fn importance_and_kl(cfg: &PolicyLossConfig, inputs: &PolicyLossInputs) -> Ratios {
    let logps = &inputs.per_token_logps;
    let old = (inputs.old_per_token_logps.clone()).unwrap_or_else(|| logps.clone().detach());
    let log_ratio = logps.clone() - old; // [B, T]
    let level = cfg.importance_sampling_level;
    let coef_1 = ratio::log_importance_weights(log_ratio.clone(), inputs.mask.clone(), level).exp();
    // TRL ignores reference log-probs when beta is 0 (no `kl` metric either).
    let reference = inputs
        .ref_per_token_logps
        .clone()
        .filter(|_| cfg.beta != 0.0);
    let per_token_kl = reference.map(|reference| {
        let kl = ratio::k3_kl(logps.clone(), reference); // [B, T]
        if cfg.use_bias_correction_kl {
            kl * coef_1.clone()
        } else {
            kl
        }
    });
    Ratios {
        log_ratio,
        coef_1,
        per_token_kl,
    }
}

/// `[B, T]` of the inputs after checking every tensor against it.
fn check_shapes(inputs: &PolicyLossInputs, needs_reference: bool) -> Result<[usize; 2]> {
    let dims = inputs.per_token_logps.dims();
    let named = [
        ("entropies", Some(&inputs.entropies)),
        ("old_per_token_logps", inputs.old_per_token_logps.as_ref()),
        ("ref_per_token_logps", inputs.ref_per_token_logps.as_ref()),
        ("mask", Some(&inputs.mask)),
    ];
    for (name, tensor) in named {
        if let Some(tensor) = tensor
            && tensor.dims() != dims
        {
            return Err(shape_error(format!(
                "{name} has shape {:?}, per_token_logps {dims:?}",
                tensor.dims()
            )));
        }
    }
    if inputs.advantages.dims() != [dims[0]] {
        return Err(shape_error(format!(
            "advantages has shape {:?}, expected [{}]",
            inputs.advantages.dims(),
            dims[0]
        )));
    }
    if needs_reference && inputs.ref_per_token_logps.is_none() {
        return Err(shape_error(
            "beta != 0 needs ref_per_token_logps (the reference model's log-probs)".into(),
        ));
    }
    Ok(dims)
}

fn shape_error(message: String) -> Error {
    Error::Data {
        message: format!("GRPO loss inputs: {message}"),
    }
}

/// Host copy of a tensor's values (row-major, f32).
pub(crate) fn host<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    trl_core::host::f32_values(tensor.without_autodiff(), "a GRPO loss tensor")
}

/// A constant float tensor from host 0/1 flags.
fn float_tensor(flags: &[bool], shape: [usize; 2], device: &burn::tensor::Device) -> Tensor<2> {
    let values: Vec<f32> = flags.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}
