//! Evaluation of GRPO and RLOO as TRL 1.16's trainers do it: the eval dataloader is a
//! `RepeatSampler` over the eval prompts (shuffled with `seed`, each prompt
//! `num_generations_eval` times in a row, `per_device_eval_batch_size` completions a batch);
//! each batch is generated and scored in eval mode (`_generate_and_score_completions`: no
//! buffer, no shuffle, advantages over groups of `num_generations_eval`), and
//! `prediction_step` computes the loss on it without gradients, normalised as one batch
//! (no accumulation). The metrics are training's (`reward`, `rewards/<name>/mean`,
//! `completions/*`, `entropy`, `kl`, `clip_ratio/*`...), which the loop prefixes `eval_`.
//!
//! Unlike TRL, evaluation samples from seeds of its own (step, batch), so a run with
//! evaluation trains exactly as one without.

use trl_core::model::CausalLm;
use trl_core::train::args_check::check::option_error;
use trl_core::train::{EvalContext, RepeatSampler, Sampler, StepMetrics, TrainingArguments};
use trl_core::{Error, Result};

use crate::config::GrpoConfig;
use crate::data::PromptExample;
use crate::generation_batch::RolloutPass;
use crate::loss::LossNormalizer;
use crate::rollout::RolloutBatch;
use crate::trainer::GrpoMethod;

impl GrpoConfig {
    /// `num_generations_eval` resolved (unset: `num_generations`) and checked: at least 1,
    /// and, when the run evaluates, dividing `per_device_eval_batch_size` (TRL's
    /// `GRPOConfig.__post_init__`: an eval batch holds whole groups).
    pub fn eval_generations(&self, args: &TrainingArguments) -> Result<usize> {
        let generations = match self.num_generations_eval {
            Some(0) => {
                return Err(option_error(
                    "num_generations_eval",
                    "0: evaluation needs at least 1 completion per prompt (leave it unset to \
                     use num_generations)"
                        .into(),
                ));
            }
            Some(n) => n,
            None => self.num_generations,
        };
        let batch = args.per_device_eval_batch_size;
        if args.evaluates() && !batch.is_multiple_of(generations) {
            return Err(option_error(
                "per_device_eval_batch_size",
                format!(
                    "the eval batch size ({batch}) must be divisible by the number of \
                     generations used for evaluation ({generations}, num_generations_eval or \
                     else num_generations): an eval batch holds whole groups"
                ),
            ));
        }
        Ok(generations)
    }
}

impl GrpoMethod {
    /// TRL's `_get_eval_sampler`: `RepeatSampler(eval_dataset, num_generations_eval,
    /// seed=seed)`, shuffled, made afresh (so in the same order) at every evaluation.
    pub(crate) fn eval_order(&self) -> Sampler {
        Sampler::Repeat(RepeatSampler {
            mini_repeat_count: self.eval_generations,
            batch_size: 1,
            repeat_count: 1,
            shuffle: true,
            seed: self.seed,
        })
    }

    /// One eval batch (`examples`: whole groups of `num_generations_eval` rows): generated
    /// and scored in eval mode, its loss computed as one unaccumulated batch, with the
    /// generation's metrics and `num_tokens` (the tokens trained on so far).
    pub(crate) fn evaluate_batch(
        &mut self,
        model: &CausalLm,
        examples: &[&PromptExample],
        ctx: &EvalContext,
    ) -> Result<(f64, StepMetrics)> {
        if !examples.len().is_multiple_of(self.eval_generations) {
            return Err(Error::Data {
                message: format!(
                    "eval batch {} has {} completions, not whole groups of {}",
                    ctx.batch,
                    examples.len(),
                    self.eval_generations
                ),
            });
        }
        let pass = RolloutPass::Eval {
            step: ctx.step,
            batch: ctx.batch,
        };
        let generated = self.rollout(model, examples, pass)?;
        let batch = RolloutBatch {
            rows: generated.rows,
            generation_tokens: generated.loss_tokens,
            generation_metrics: generated.metrics,
            generation_input_tokens: 0.0,
        };
        let processes = trl_core::train::collective::world().size() as f64;
        let normalizer = LossNormalizer::evaluation(batch.generation_tokens / processes);
        let (loss, mut metrics) = self.batch_loss(model, &batch, &normalizer)?;
        let loss = trl_core::host::scalar(loss.without_autodiff(), "the eval loss")?;
        metrics.push("num_tokens", ctx.num_tokens);
        Ok((loss, metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trl_core::train::args::EvalStrategy;

    fn evaluating(per_device_eval_batch_size: usize) -> TrainingArguments {
        TrainingArguments {
            eval_strategy: EvalStrategy::Steps,
            per_device_eval_batch_size,
            ..TrainingArguments::default()
        }
    }

    #[test]
    fn eval_generations_default_to_num_generations_and_must_fill_eval_batches() {
        let config = GrpoConfig {
            num_generations: 4,
            ..GrpoConfig::default()
        };
        assert_eq!(config.eval_generations(&evaluating(8)).unwrap(), 4);
        let err = config
            .eval_generations(&evaluating(6))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("per_device_eval_batch_size") && err.contains("(4"),
            "{err}"
        );
        // Without evaluation the eval batch size is not checked.
        assert!(
            config
                .eval_generations(&TrainingArguments::default())
                .is_ok()
        );
        let config = GrpoConfig {
            num_generations_eval: Some(3),
            ..config
        };
        assert_eq!(config.eval_generations(&evaluating(6)).unwrap(), 3);
        let zero = GrpoConfig {
            num_generations_eval: Some(0),
            ..config
        };
        let err = zero
            .eval_generations(&evaluating(6))
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_generations_eval"), "{err}");
    }
}
