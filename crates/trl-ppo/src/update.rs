//! One micro-batch of a PPO update (TRL 1.12, `ppo_trainer.py` l.812-868): policy and value
//! forward over the rows' `query + response`, the clipped losses, and the statistics TRL logs.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use trl_core::Result;

use crate::forward::{host_matrix, matrix_tensor, response_logprobs, response_values, token_batch};
use crate::loss::{
    HostLossInputs, LossInputs, LossSettings, LossStats, PpoLosses, loss_stats, ppo_losses,
};
use crate::model::PolicyAndValue;
use crate::trainer::PpoBatch;

/// What a micro-batch's forward needs besides the rows.
#[derive(Debug, Clone, Copy)]
pub struct UpdateSettings {
    pub loss: LossSettings,
    pub pad_token_id: u32,
    pub temperature: f64,
}

/// The losses of a micro-batch and what it reports.
pub struct MicroBatchOutput {
    pub losses: PpoLosses,
    pub stats: LossStats,
    /// Mean entropy over every response position (`policy/entropy_avg`).
    pub entropy: f64,
    /// Attended tokens of the rows (`num_tokens`).
    pub num_tokens: f64,
}

/// Forward of policy and value on a micro-batch, the PPO losses, and the statistics.
pub fn micro_batch_loss(
    model: &PolicyAndValue,
    batch: &PpoBatch,
    settings: &UpdateSettings,
) -> Result<MicroBatchOutput> {
    let r = &batch.rollout;
    let t = &r.targets;
    let device = model.policy.device();
    let qr: Vec<&[u32]> = batch
        .rows
        .iter()
        .map(|&i| r.query_responses[i].as_slice())
        .collect();
    let tokens = token_batch(&qr, settings.pad_token_id);
    let num_tokens = tokens.attention_mask.iter().flatten().sum::<i64>() as f64;
    let logps = response_logprobs(
        &model.policy,
        &tokens,
        r.context_length,
        settings.temperature,
    );
    let (entropy_sum, entropy_count) = logps.entropy_sum()?;
    let vpred = response_values(&model.value, &tokens, r.context_length);
    let pick =
        |m: &[Vec<f32>]| -> Vec<Vec<f32>> { batch.rows.iter().map(|&i| m[i].clone()).collect() };
    let pick_mask =
        |m: &[Vec<bool>]| -> Vec<Vec<bool>> { batch.rows.iter().map(|&i| m[i].clone()).collect() };
    let (old_lp, old_v, ret, adv) = (
        pick(&t.logprobs),
        pick(&t.values),
        pick(&t.returns),
        pick(&t.advantages),
    );
    let (pm, pm1) = (pick_mask(&t.padding_mask), pick_mask(&t.padding_mask_p1));
    let host_new = host_matrix(logps.logps.clone().without_autodiff())?;
    let host_v = host_matrix(vpred.clone().without_autodiff())?;
    let stats = loss_stats(
        &HostLossInputs {
            new_logprobs: &host_new,
            vpred: &host_v,
            old_logprobs: &old_lp,
            old_values: &old_v,
            returns: &ret,
            advantages: &adv,
            padding_mask: &pm,
            padding_mask_p1: &pm1,
        },
        &settings.loss,
    );
    let tensor =
        |m: &[Vec<f32>]| matrix_tensor(&m.iter().map(Vec::as_slice).collect::<Vec<_>>(), &device);
    let inputs = LossInputs {
        new_logprobs: logps.logps,
        vpred,
        old_logprobs: tensor(&old_lp),
        old_values: tensor(&old_v),
        returns: tensor(&ret),
        advantages: tensor(&adv),
        padding_mask: bool_tensor(&pm, &device),
        padding_mask_p1: bool_tensor(&pm1, &device),
    };
    let entropy = entropy_sum / entropy_count.max(1.0);
    Ok(MicroBatchOutput {
        losses: ppo_losses(inputs, &settings.loss),
        stats,
        entropy,
        num_tokens,
    })
}

fn bool_tensor(rows: &[Vec<bool>], device: &Device) -> Tensor<2, Bool> {
    let cols = rows.first().map_or(0, Vec::len);
    Tensor::from_data(TensorData::new(rows.concat(), [rows.len(), cols]), device)
}
