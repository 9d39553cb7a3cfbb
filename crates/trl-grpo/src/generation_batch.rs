//! One generation batch of GRPO, as TRL's `_generate_and_score_completions` builds it:
//! generate, decode, mask truncated completions if asked, keep old/reference log-probs when
//! the loss needs them, score, compute advantages, log completions. Training and evaluation
//! (see `eval.rs`) run the same code; a [`RolloutPass`] says which.

use burn::module::Module;
use serde_json::{Map, Value, json};
use trl_core::Result;
use trl_core::model::CausalLm;

use crate::completion_log::CompletionRecord;
use crate::data::PromptExample;
use crate::rollout::{RolloutRow, is_truncated, length_metrics};
use crate::scoring::{
    AdvantageConfig, ScoredCompletion, advantages_and_metrics, rewards_per_function,
};
use crate::shard::RowShard;
use crate::trainer::{GrpoMethod, Variant};

/// Which rollout runs: a training generation batch, or one eval batch (TRL's eval mode:
/// `num_generations_eval` completions per prompt, its own seeds, nothing buffered).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RolloutPass {
    /// The generation batch prepared for optimizer step `step` (0-based).
    Train { step: u64 },
    /// Eval batch `batch` of the evaluation after `step` optimizer steps.
    Eval { step: u64, batch: usize },
}

/// A scored generation batch before it is shuffled and split.
pub(crate) struct GenerationBatch {
    pub rows: Vec<RolloutRow>,
    /// Completion-length and reward metrics, logged once.
    pub metrics: Vec<(String, f64)>,
    /// Prompt + completion tokens of this process's rows (`num_tokens`; the loop sums it).
    pub input_tokens: f64,
    /// Loss tokens of every process's rows (TRL's `num_items_in_batch`, gathered).
    pub loss_tokens: f64,
}

impl GrpoMethod {
    /// One generation batch for `examples` (prompts repeated `num_generations` times in a
    /// row, `num_generations_eval` in evaluation); in training the caller shuffles and splits
    /// it (see `GrpoMethod::refill`). With several processes `examples` are this rank's share
    /// of the global batch: rewards are gathered for the advantages and metrics, and the
    /// rows keep this rank's advantages (see [`RowShard`]).
    pub(crate) fn rollout(
        &mut self,
        model: &CausalLm,
        examples: &[&PromptExample],
        pass: RolloutPass,
    ) -> Result<GenerationBatch> {
        let shard = RowShard::new(examples.len());
        let completions = self.complete(model, examples, pass, shard.first_row())?;
        let decoded = self.decode(examples, &completions)?;
        let scored: Vec<ScoredCompletion> = examples
            .iter()
            .zip(&decoded)
            .zip(&completions)
            .map(|((example, completion), ids)| ScoredCompletion {
                example,
                completion: completion.clone(),
                completion_ids: ids,
            })
            .collect();
        let table = rewards_per_function(&mut self.rewards, &scored)?;
        let mut rows = self.rows_with_logps(model, examples, &completions)?;
        let kl = match self.variant {
            Variant::Grpo => None,
            Variant::Rloo(_) => self.take_sequence_kl(&mut rows),
        };
        let global = shard.gather_scores(&completions, &self.eos_and_pad, &table, kl);
        let mut metrics = length_metrics(&global.lengths, &global.truncated).values;
        let groups = self.generations_of(pass);
        let (advantages, reward_metrics) = match self.variant {
            Variant::Grpo => {
                let mut config = self.advantage_config();
                config.num_generations = groups;
                advantages_and_metrics(&global.table, &self.reward_names, &config)?
            }
            Variant::Rloo(options) => {
                self.rloo_advantages(&global.table, global.kl.as_ref(), options, groups)?
            }
        };
        metrics.extend(reward_metrics);
        for (row, advantage) in rows.iter_mut().zip(shard.local(&advantages.advantages)) {
            row.advantage = *advantage;
        }
        let weighted = shard.local(&advantages.rewards);
        self.log_completions(pass, &shard, &scored, &table, weighted, &rows)?;
        let input_tokens: usize = rows
            .iter()
            .map(|r| r.prompt_ids.len() + r.completion_ids.len())
            .sum();
        let loss_tokens = rows.iter().map(RolloutRow::loss_tokens).sum::<usize>();
        Ok(GenerationBatch {
            loss_tokens: shard.sum(loss_tokens as f64),
            rows,
            metrics,
            input_tokens: input_tokens as f64,
        })
    }

    /// The policy's completions of `examples`, row `i` sampled as global row `first_row + i`.
    fn complete(
        &mut self,
        model: &CausalLm,
        examples: &[&PromptExample],
        pass: RolloutPass,
        first_row: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let policy = model.valid();
        let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt_ids.clone()).collect();
        match pass {
            RolloutPass::Train { .. } => {
                let generation = self.state.generations;
                self.source
                    .complete(&policy, &prompts, generation, first_row)
            }
            RolloutPass::Eval { step, batch } => {
                (self.source).complete_eval(&policy, &prompts, step, batch, first_row)
            }
        }
    }

    /// The rows of a generation batch with the old (when off-policy) and reference
    /// log-probs the loss needs, computed without autodiff; advantages come later.
    fn rows_with_logps(
        &self,
        model: &CausalLm,
        examples: &[&PromptExample],
        completions: &[Vec<u32>],
    ) -> Result<Vec<RolloutRow>> {
        let mut rows: Vec<RolloutRow> = examples
            .iter()
            .zip(completions)
            .map(|(example, ids)| RolloutRow {
                prompt_ids: example.prompt_ids.clone(),
                completion_ids: ids.clone(),
                trained: !(self.config.mask_truncated_completions
                    && is_truncated(ids, &self.eos_and_pad)),
                advantage: 0.0,
                old_logps: None,
                ref_logps: None,
            })
            .collect();
        if self.keeps_old_logps() {
            // The training forward's own path without autodiff (not `valid()`'s inner
            // backend, whose kernels round differently): on-policy ratios are then exactly 1
            // and RLOO's KL to an identical reference exactly 0, as in TRL.
            let frozen = model.clone().no_grad();
            let old = self.frozen_logps(&frozen, &rows)?;
            rows.iter_mut()
                .zip(old)
                .for_each(|(r, l)| r.old_logps = Some(l));
        }
        if let Some(reference) = &self.reference {
            let logps = self.frozen_logps(reference, &rows)?;
            rows.iter_mut()
                .zip(logps)
                .for_each(|(r, l)| r.ref_logps = Some(l));
        }
        Ok(rows)
    }

    /// Completions per prompt in `pass`: `num_generations`, or `num_generations_eval`.
    fn generations_of(&self, pass: RolloutPass) -> usize {
        match pass {
            RolloutPass::Train { .. } => self.config.num_generations,
            RolloutPass::Eval { .. } => self.eval_generations,
        }
    }

    /// TRL's advantage settings from the config.
    pub(crate) fn advantage_config(&self) -> AdvantageConfig {
        AdvantageConfig {
            weights: self.reward_weights.clone(),
            num_generations: self.config.num_generations,
            scale_rewards: self.scale_rewards,
            aggregation: self.aggregation,
        }
    }

    /// Completions as the reward functions see them: decoded without special tokens; for a
    /// conversation, one assistant message.
    fn decode(&self, examples: &[&PromptExample], completions: &[Vec<u32>]) -> Result<Vec<Value>> {
        examples
            .iter()
            .zip(completions)
            .map(|(example, ids)| {
                let text = self.tokenizer.decode(ids, true)?;
                Ok(if example.is_conversational() {
                    json!([{"role": "assistant", "content": text}])
                } else {
                    Value::String(text)
                })
            })
            .collect()
    }

    /// Appends the batch to `completions.jsonl` (training, printing a few on logged steps) or
    /// `eval_completions.jsonl` (evaluation, stamped with the steps done): every process's
    /// rows, written by rank 0 (TRL's `gather_object`).
    fn log_completions(
        &self,
        pass: RolloutPass,
        shard: &RowShard,
        scored: &[ScoredCompletion],
        table: &[Vec<f64>],
        weighted: &[f64],
        rows: &[RolloutRow],
    ) -> Result<()> {
        let (log, step) = match pass {
            RolloutPass::Train { step } => (self.completion_log.as_ref(), step + 1),
            RolloutPass::Eval { step, .. } => (self.eval_completion_log.as_ref(), step),
        };
        let Some(log) = log else {
            return Ok(());
        };
        let records: Vec<CompletionRecord> = scored
            .iter()
            .enumerate()
            .map(|(i, s)| CompletionRecord {
                step,
                prompt: s.example.prompt.clone(),
                completion: s.completion.clone(),
                completion_ids: s.completion_ids.to_vec(),
                rewards: self
                    .reward_names
                    .iter()
                    .zip(&table[i])
                    .map(|(name, &r)| {
                        (
                            name.clone(),
                            if r.is_nan() { Value::Null } else { json!(r) },
                        )
                    })
                    .collect::<Map<String, Value>>(),
                reward: weighted[i],
                advantage: rows[i].advantage,
            })
            .collect();
        let records = shard.gather_records(&records)?;
        if !shard.is_main() {
            return Ok(());
        }
        log.append(&records)?;
        if matches!(pass, RolloutPass::Train { .. }) && step.is_multiple_of(self.logging_steps) {
            log.print(&records);
        }
        Ok(())
    }
}
