//! GRPO as a [`Method`] of core's training loop, with TRL 1.16's `GRPOTrainer` flow: every
//! `steps_per_generation * num_iterations` accumulation steps the policy generates a batch of
//! completions (whole groups of `num_generations` per prompt), the reward functions score
//! them, group-relative advantages are computed, and the batch is shuffled and cut into
//! `steps_per_generation` micro-batches that the next accumulation steps train on.
//!
//! Better than TRL: generation runs through trl-rs's KV-cache engine in-process; the
//! rollout buffer is written into every checkpoint, so a resumed run continues on the same
//! completions (TRL regenerates after a resume).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use trl_core::model::{CausalLm, load_causal_lm, save_causal_lm};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::collective::world;
use trl_core::train::ref_sync::RefSync;
use trl_core::train::{
    EvalContext, Method, PreparedStep, RepeatSampler, Sampler, StepContext, StepMetrics,
    TrainingArguments,
};
use trl_core::{Error, Result};

use crate::advantages::{MultiObjectiveAggregation, ScaleRewards};
use crate::config::{GenerationSchedule, GrpoConfig};
use crate::data::PromptExample;
use crate::generation_batch::RolloutPass;
use crate::logps::{collate, completion_logps, host_rows, rows_tensor};
use crate::loss::{
    LossNormalizer, PolicyLoss, PolicyLossConfig, PolicyLossInputs, RlooLossInputs, policy_loss,
    rloo_policy_loss,
};
use crate::rewards::RewardFunction;
use crate::rollout::{CompletionSource, RolloutBatch, RolloutRow};
use crate::rollout_state::RolloutState;

/// Which of TRL's two online trainers runs: they share rollouts, rewards and logging, and
/// differ in advantages and loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variant {
    /// `GRPOTrainer`: group-normalised advantages, per-token clipped loss (`loss_type`).
    Grpo,
    /// `RLOOTrainer`: leave-one-out baseline with the KL folded into the reward, a
    /// sequence-level clipped ratio.
    Rloo(crate::rloo_config::RlooOptions),
}

/// GRPO (or RLOO) on a causal LM.
pub struct GrpoMethod {
    pub(crate) variant: Variant,
    pub config: GrpoConfig,
    pub tokenizer: Tokenizer,
    pub(crate) schedule: GenerationSchedule,
    pub(crate) pad_token_id: u32,
    /// End-of-sequence ids and the pad id: what marks a completion as finished.
    pub(crate) eos_and_pad: Vec<u32>,
    pub(crate) loss_config: PolicyLossConfig,
    pub(crate) per_device_batch: usize,
    pub(crate) accumulation: usize,
    pub(crate) seed: u64,
    /// The frozen reference (`beta != 0`), without autodiff.
    pub(crate) reference: Option<CausalLm>,
    /// `sync_ref_model`: how the reference follows the policy.
    pub(crate) ref_sync: Option<RefSync>,
    pub(crate) rewards: Vec<Box<dyn RewardFunction>>,
    pub(crate) reward_names: Vec<String>,
    pub(crate) reward_weights: Vec<f64>,
    pub(crate) source: Box<dyn CompletionSource>,
    /// Micro-batches of the current generation, counters: what a checkpoint keeps.
    pub(crate) state: RolloutState,
    pub(crate) completion_log: Option<crate::completion_log::CompletionLog>,
    /// `eval_completions.jsonl`: evaluation's completions under `log_completions`.
    pub(crate) eval_completion_log: Option<crate::completion_log::CompletionLog>,
    /// Completions per prompt in evaluation (`num_generations_eval`, else `num_generations`).
    pub(crate) eval_generations: usize,
    pub(crate) logging_steps: u64,
    pub(crate) scale_rewards: ScaleRewards,
    pub(crate) aggregation: MultiObjectiveAggregation,
}

/// What `GrpoMethod::new` needs besides the config.
pub struct GrpoParts {
    pub tokenizer: Tokenizer,
    pub pad_token_id: u32,
    pub eos_token_ids: Vec<u32>,
    pub reference: Option<CausalLm>,
    pub rewards: Vec<Box<dyn RewardFunction>>,
    pub source: Box<dyn CompletionSource>,
    pub variant: Variant,
}

impl GrpoMethod {
    /// Builds the method; checks the generation schedule and the reward weights.
    pub fn new(config: GrpoConfig, args: &TrainingArguments, parts: GrpoParts) -> Result<Self> {
        let schedule = config.generation_schedule(
            args.per_device_train_batch_size,
            args.gradient_accumulation_steps,
            world().size(),
        )?;
        if parts.rewards.is_empty() {
            return Err(Error::Config {
                path: "grpo config".into(),
                message: "no reward function: pass --reward_funcs and/or \
                          --reward_model_name_or_path"
                    .into(),
            });
        }
        let reward_names: Vec<String> =
            parts.rewards.iter().map(|r| r.name().to_string()).collect();
        let reward_weights = config.reward_weights(parts.rewards.len())?;
        let eval_generations = config.eval_generations(args)?;
        let loss_config = config.policy_loss_config()?;
        let (scale_rewards, aggregation) = config.advantage_kinds()?;
        let mut eos_and_pad = parts.eos_token_ids.clone();
        eos_and_pad.push(parts.pad_token_id);
        let output_dir = std::path::PathBuf::from(&args.output_dir);
        let completion_log = config.log_completions.then(|| {
            crate::completion_log::CompletionLog::new(
                &output_dir,
                config.num_completions_to_print,
                config.log_unique_prompts,
            )
        });
        let eval_completion_log = completion_log.as_ref().map(|log| log.for_eval(&output_dir));
        Ok(GrpoMethod {
            variant: parts.variant,
            schedule,
            pad_token_id: parts.pad_token_id,
            eos_and_pad,
            loss_config,
            per_device_batch: args.per_device_train_batch_size.max(1),
            accumulation: args.gradient_accumulation_steps.max(1),
            seed: args.seed,
            reference: parts.reference,
            ref_sync: RefSync::from_config(
                config.sync_ref_model,
                config.ref_model_mixup_alpha,
                config.ref_model_sync_steps,
            ),
            rewards: parts.rewards,
            reward_names,
            reward_weights,
            source: parts.source,
            state: RolloutState {
                processes: world().size(),
                ..RolloutState::default()
            },
            completion_log,
            eval_completion_log,
            eval_generations,
            logging_steps: args.logging_steps.max(1.0) as u64,
            scale_rewards,
            aggregation,
            tokenizer: parts.tokenizer,
            config,
        })
    }

    /// Whether generation and update are out of step, so the policy's log-probs at
    /// generation time must be kept for the importance ratio (TRL's condition).
    pub(crate) fn keeps_old_logps(&self) -> bool {
        matches!(self.variant, Variant::Rloo(_))
            || !self
                .accumulation
                .is_multiple_of(self.schedule.generate_every())
    }

    /// Generates, scores and buffers one generation batch (the examples of a micro-batch).
    fn refill(&mut self, model: &CausalLm, examples: &[&PromptExample], step: u64) -> Result<()> {
        let generation = self.state.generations;
        let batch = self.rollout(model, examples, RolloutPass::Train { step })?;
        self.state.generations += 1;
        // TRL's `shuffle_sequence_dict`, with a permutation seeded per generation batch.
        let rows = &batch.rows;
        let order = self.source.order(rows.len(), generation, self.seed);
        let shuffled: Vec<RolloutRow> = order.iter().map(|&i| rows[i].clone()).collect();
        let parts = self.schedule.steps_per_generation;
        let mut buffer = split_rows(shuffled, parts, batch.loss_tokens);
        buffer[0].generation_metrics = batch.metrics;
        buffer[0].generation_input_tokens = batch.input_tokens;
        self.state.buffer = buffer;
        Ok(())
    }

    /// Per-token log-probs of `rows` under `model` without autodiff, in chunks of the
    /// per-device batch size (TRL's `batch_size` argument).
    pub(crate) fn frozen_logps(
        &self,
        model: &CausalLm,
        rows: &[RolloutRow],
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.per_device_batch) {
            let refs: Vec<&RolloutRow> = chunk.iter().collect();
            let batch = collate(
                &refs,
                self.pad_token_id,
                self.config.pad_to_multiple_of().ok().flatten(),
            );
            let (logps, _) = completion_logps(model, &batch, self.config.temperature);
            let lengths: Vec<usize> = chunk.iter().map(|r| r.completion_ids.len()).collect();
            out.extend(host_rows(logps, &lengths)?);
        }
        Ok(out)
    }
}

impl GrpoMethod {
    /// One batch's loss and metrics under `normalizer` (training: the accumulation window;
    /// evaluation: [`LossNormalizer::evaluation`]); RLOO divides by its accumulation steps.
    pub(crate) fn batch_loss(
        &self,
        model: &CausalLm,
        batch: &RolloutBatch,
        normalizer: &LossNormalizer,
    ) -> Result<(Tensor<1>, StepMetrics)> {
        let rows: Vec<&RolloutRow> = batch.rows.iter().collect();
        let collated = collate(&rows, self.pad_token_id, self.config.pad_to_multiple_of()?);
        let (logps, entropies) = completion_logps(model, &collated, self.config.temperature);
        let device = logps.device();
        let width = collated.completion_width;
        let frozen = |pick: fn(&RolloutRow) -> Option<&Vec<f32>>| -> Option<Tensor<2>> {
            let values: Option<Vec<&[f32]>> =
                rows.iter().map(|r| pick(r).map(Vec::as_slice)).collect();
            values.map(|v| rows_tensor(&v, width, &device))
        };
        let advantages: Vec<f32> = rows.iter().map(|r| r.advantage as f32).collect();
        if let Variant::Rloo(_) = self.variant {
            let old: Vec<f32> = rows
                .iter()
                .map(|r| match (&r.old_logps, r.trained) {
                    (Some(old), true) => old.iter().sum(),
                    _ => 0.0,
                })
                .collect();
            let inputs = RlooLossInputs {
                per_token_logps: logps,
                entropies,
                old_logps: Tensor::from_data(TensorData::new(old, [rows.len()]), &device),
                advantages: Tensor::from_data(TensorData::new(advantages, [rows.len()]), &device),
                mask: collated.mask_tensor(&device),
            };
            let out = rloo_policy_loss(
                self.loss_config.epsilon_low(),
                self.loss_config.epsilon_high(),
                inputs,
                normalizer.current_gradient_accumulation_steps,
            )?;
            return Ok(self.with_generation_metrics(out, batch));
        }
        let inputs = PolicyLossInputs {
            per_token_logps: logps,
            entropies,
            old_per_token_logps: frozen(|r| r.old_logps.as_ref()),
            ref_per_token_logps: frozen(|r| r.ref_logps.as_ref()),
            advantages: Tensor::from_data(TensorData::new(advantages, [rows.len()]), &device),
            mask: collated.mask_tensor(&device),
        };
        let out = policy_loss(&self.loss_config, inputs, normalizer, world())?;
        Ok(self.with_generation_metrics(out, batch))
    }

    /// The loss with its metrics plus, on the first micro-batch of a fresh generation, the
    /// generation's metrics and token count.
    fn with_generation_metrics(
        &self,
        out: PolicyLoss,
        batch: &RolloutBatch,
    ) -> (Tensor<1>, StepMetrics) {
        let mut metrics = StepMetrics::default();
        out.metrics.push_into(&mut metrics);
        for (name, value) in &batch.generation_metrics {
            metrics.push(name, *value);
        }
        metrics.num_tokens = batch.generation_input_tokens;
        (out.loss, metrics)
    }
}

/// Cuts a shuffled generation batch into `parts` equal micro-batches; `generation_tokens`
/// are the loss tokens of the whole (all processes') generation batch.
fn split_rows(rows: Vec<RolloutRow>, parts: usize, generation_tokens: f64) -> Vec<RolloutBatch> {
    let size = rows.len().div_ceil(parts.max(1)).max(1);
    rows.chunks(size)
        .map(|chunk| RolloutBatch {
            rows: chunk.to_vec(),
            generation_tokens,
            ..RolloutBatch::default()
        })
        .collect()
}

impl Method for GrpoMethod {
    type Model = CausalLm;
    type Example = PromptExample;
    type Batch = RolloutBatch;

    /// TRL's `RepeatSampler`: each prompt `num_generations` times in a row, each generation
    /// batch repeated for every micro-step that trains on it.
    fn sampler(&self, args: &TrainingArguments) -> Sampler {
        Sampler::Repeat(RepeatSampler {
            mini_repeat_count: self.config.num_generations,
            batch_size: self.schedule.generation_batch_size / self.config.num_generations,
            repeat_count: self.schedule.generate_every(),
            shuffle: self.config.shuffle_dataset,
            seed: args.seed,
        })
    }

    fn loader_batch_size(&self, _args: &TrainingArguments) -> usize {
        self.per_device_batch * self.schedule.steps_per_generation
    }

    fn prepare(
        &mut self,
        model: &CausalLm,
        micro_batches: &[Vec<&PromptExample>],
        ctx: &StepContext,
    ) -> Result<PreparedStep<RolloutBatch>> {
        let mut batches = Vec::with_capacity(micro_batches.len());
        for examples in micro_batches {
            let micro_step = self.state.micro_steps as usize;
            if micro_step.is_multiple_of(self.schedule.generate_every())
                || self.state.buffer.is_empty()
            {
                self.refill(model, examples, ctx.step)?;
            }
            let slot = micro_step % self.state.buffer.len();
            batches.push(self.state.buffer[slot].clone());
            // Generation metrics and token counts are logged once per generation.
            let taken = &mut self.state.buffer[slot];
            taken.generation_metrics.clear();
            taken.generation_input_tokens = 0.0;
            self.state.micro_steps += 1;
        }
        Ok(PreparedStep::single(batches))
    }

    fn items_in(&self, _batch: &RolloutBatch) -> f64 {
        1.0
    }

    fn loss(
        &self,
        model: &CausalLm,
        batch: &RolloutBatch,
        items_in_update: f64,
    ) -> Result<(Tensor<1>, StepMetrics)> {
        // `items_in_update` is the micro-batches of every process (one item each), so the
        // GA-scaled losses come out divided by the processes too: the loop sums gradients
        // over the ranks where DDP averages them.
        let normalizer = LossNormalizer {
            current_gradient_accumulation_steps: items_in_update as usize,
            steps_per_generation: self.schedule.steps_per_generation,
            num_items_in_batch: batch.generation_tokens,
            processes: world().size(),
        };
        self.batch_loss(model, batch, &normalizer)
    }

    fn supports_eval(&self) -> bool {
        true
    }

    fn eval_sampler(&self) -> Sampler {
        self.eval_order()
    }

    fn eval_batch(
        &mut self,
        model: &CausalLm,
        examples: &[&PromptExample],
        ctx: &EvalContext,
    ) -> Result<(f64, StepMetrics)> {
        self.evaluate_batch(model, examples, ctx)
    }

    fn after_step(&mut self, model: &CausalLm, step: u64) -> Result<()> {
        match &self.ref_sync {
            Some(sync) => sync.after_step(&mut self.reference, model, step),
            None => Ok(()),
        }
    }

    fn save_model(&self, model: &CausalLm, dir: &Path) -> Result<()> {
        save_causal_lm(model, &self.tokenizer, dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> Result<CausalLm> {
        load_causal_lm(dir, device)
    }

    /// The rollout buffer and counters, and a synced reference, go into every checkpoint.
    fn save_state(&self, dir: &Path) -> Result<()> {
        self.state.save(dir, 0)?;
        match &self.ref_sync {
            Some(sync) => sync.save(self.reference.as_ref(), &self.tokenizer, dir),
            None => Ok(()),
        }
    }

    /// Each rank's rollout buffer holds its own completions.
    fn save_rank_state(&self, dir: &Path, rank: usize) -> Result<()> {
        self.state.save(dir, rank)
    }

    fn load_state(&mut self, dir: &Path, device: &Device) -> Result<()> {
        let world = world();
        self.state = RolloutState::load(dir, world.rank(), world.size())?;
        match &self.ref_sync {
            Some(sync) => sync.load(&mut self.reference, dir, device),
            None => Ok(()),
        }
    }
}
