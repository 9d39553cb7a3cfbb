//! What RLOO does differently from GRPO (TRL 1.16's `RLOOTrainer`): the KL to the reference
//! is folded into the reward (per-sequence sum of `old - ref` log-probs, times `beta`), the
//! baseline is the mean reward of the other completions of the prompt, and the loss clips one
//! importance ratio per sequence.

use trl_core::Result;

use crate::advantages::Advantages;
use crate::advantages::{RlooAdvantageConfig, SequenceKl, rloo_advantages};
use crate::rloo_config::RlooOptions;
use crate::rollout::RolloutRow;
use crate::trainer::GrpoMethod;

impl GrpoMethod {
    /// The KL that RLOO folds into the reward (when `beta != 0`), per row of this process;
    /// the reference log-probs served it only, so the rows drop them (the loss does not
    /// read them).
    pub(crate) fn take_sequence_kl(&self, rows: &mut [RolloutRow]) -> Option<SequenceKl> {
        let kl = (self.config.beta != 0.0).then(|| sequence_kl(rows));
        rows.iter_mut().for_each(|r| r.ref_logps = None);
        kl
    }

    /// RLOO's advantages of a generation batch of `num_generations` completions per prompt
    /// (`table` and `kl` cover every process's rows, as TRL gathers both) and its generation
    /// metrics (`kl` when `beta != 0`, and the reward metrics).
    pub(crate) fn rloo_advantages(
        &self,
        table: &[Vec<f64>],
        kl: Option<&SequenceKl>,
        options: RlooOptions,
        num_generations: usize,
    ) -> Result<(Advantages, Vec<(String, f64)>)> {
        let config = RlooAdvantageConfig {
            beta: self.config.beta,
            normalize_advantages: options.normalize_advantages,
            reward_clip_range: options.reward_clip_range,
        };
        let advantages =
            rloo_advantages(table, &self.reward_weights, num_generations, &config, kl)?;
        let metrics = advantages.metrics(&self.reward_names);
        Ok((advantages, metrics))
    }
}

/// Per-sequence sums of the first-order KL estimate `old - ref` over the loss mask (RLOO
/// paper's choice; it can be negative per token) and the masked token counts.
fn sequence_kl(rows: &[RolloutRow]) -> SequenceKl {
    let (sums, tokens) = rows
        .iter()
        .map(|row| match (&row.old_logps, &row.ref_logps, row.trained) {
            (Some(old), Some(reference), true) => (
                old.iter()
                    .zip(reference)
                    .map(|(o, r)| f64::from(*o - *r))
                    .sum(),
                old.len() as f64,
            ),
            _ => (0.0, 0.0),
        })
        .unzip();
    SequenceKl { sums, tokens }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_kl_sums_old_minus_reference() {
        let row = RolloutRow {
            prompt_ids: vec![1],
            completion_ids: vec![2, 3],
            trained: true,
            advantage: 0.0,
            old_logps: Some(vec![-1.0, -2.0]),
            ref_logps: Some(vec![-1.5, -1.0]),
        };
        let kl = sequence_kl(&[row]);
        assert_eq!((kl.sums, kl.tokens), (vec![-0.5], vec![2.0]));
    }
}
