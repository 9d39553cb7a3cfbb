//! Each loss type's normaliser: how the masked per-token terms of one micro-batch become the
//! scalar loss TRL back-propagates (already divided for gradient accumulation).

use burn::tensor::Tensor;

use super::{LossType, PolicyLossConfig};

/// The batch-level counts TRL's normalisers read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossNormalizer {
    /// Micro-batches in this optimizer step (TRL's `current_gradient_accumulation_steps`: the
    /// last window of an epoch may be shorter), summed over the processes: each process's
    /// loss is then TRL's per-process loss divided by the processes, so the gradient sum over
    /// the ranks is DDP's average.
    pub current_gradient_accumulation_steps: usize,
    /// Micro-batches one generation batch is split into (`steps_per_generation`).
    pub steps_per_generation: usize,
    /// Completion-mask tokens of the whole generation batch (TRL's `num_items_in_batch`, all
    /// processes); only cispo, dapo and vespo read it.
    pub num_items_in_batch: f64,
    /// Processes whose losses are summed (training's world size; 1 in evaluation, where each
    /// process's loss is TRL's own and the eval loop averages them).
    pub processes: usize,
}

impl LossNormalizer {
    /// Evaluation: TRL neither splits the batch across steps nor accumulates (`/ 1`), and
    /// cispo / dapo / vespo divide by `tokens_per_process`, the eval batch's tokens over all
    /// processes divided by their number (TRL's `num_items_in_batch / num_processes`).
    pub fn evaluation(tokens_per_process: f64) -> Self {
        LossNormalizer {
            current_gradient_accumulation_steps: 1,
            steps_per_generation: 1,
            num_items_in_batch: tokens_per_process,
            processes: 1,
        }
    }

    /// What `Σ per_token_loss * mask` is divided by for cispo / dapo / vespo: TRL's
    /// `num_items_in_batch / num_processes` rescaled to one accumulation window, times the
    /// processes (the loop sums what DDP averages). With `current_gradient_accumulation_steps`
    /// counting every process's micro-batches this is `tokens * GA / steps_per_generation`.
    pub fn token_normalizer(&self) -> f64 {
        self.num_items_in_batch.max(1.0) * self.current_gradient_accumulation_steps as f64
            / (self.steps_per_generation * self.processes.max(1)) as f64
    }

    /// TRL's `policy_loss` metric is one process's loss before the accumulation division:
    /// `loss *` this.
    pub fn policy_loss_factor(&self, loss_type: LossType) -> f64 {
        match loss_type {
            LossType::Cispo | LossType::Dapo | LossType::Vespo => self.processes.max(1) as f64,
            _ => self.current_gradient_accumulation_steps as f64,
        }
    }
}

/// `[1]` loss from the masked per-token loss `[B, T]` and the mask `[B, T]`:
/// - grpo, sapo: mean over rows of each row's token mean (`/ max(tokens, 1)`), `/ GA`;
/// - bnpo: token sum `/ max(all tokens, 1)`, `/ GA`;
/// - dr_grpo: token sum `/ (B * max_completion_length)`, `/ GA`;
/// - luspo: mean over rows of each row's token sum, `/ GA`;
/// - cispo, dapo, vespo: token sum `/` [`LossNormalizer::token_normalizer`].
pub fn aggregate(
    cfg: &PolicyLossConfig,
    norm: &LossNormalizer,
    per_token_loss: Tensor<2>,
    mask: Tensor<2>,
) -> Tensor<1> {
    let rows = per_token_loss.dims()[0] as f64;
    let ga = norm.current_gradient_accumulation_steps as f64;
    let masked = per_token_loss * mask.clone(); // [B, T]
    match cfg.loss_type {
        LossType::Grpo | LossType::Sapo => {
            let tokens = mask.sum_dim(1).clamp_min(1.0); // [B, 1]
            let per_row = masked.sum_dim(1) / tokens; // [B, 1]
            per_row.mean().div_scalar(ga)
        }
        LossType::Bnpo => (masked.sum() / mask.sum().clamp_min(1.0)).div_scalar(ga),
        LossType::DrGrpo => masked
            .sum()
            .div_scalar(rows * cfg.max_completion_length as f64)
            .div_scalar(ga),
        LossType::Luspo => masked.sum_dim(1).mean().div_scalar(ga),
        LossType::Cispo | LossType::Dapo | LossType::Vespo => {
            masked.sum().div_scalar(norm.token_normalizer())
        }
    }
}
