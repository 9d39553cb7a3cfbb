//! PPO as a [`Method`]: each optimizer-schedule step is one rollout batch (TRL 1.12's
//! `for update in range(1, num_total_batches + 1)`): [`Method::prepare`] generates and scores
//! it ([`crate::rollout`]) and returns `num_ppo_epochs` passes over seeded permutations of its
//! rows, cut into mini-batches and micro-batches; every `gradient_accumulation_steps`
//! micro-batches make one AdamW update, as accelerate's `accumulate` groups them. The LR
//! scheduler advances once per rollout batch.
//!
//! With several data-parallel processes every rank generates and scores its share of the
//! global rollout batch, and every rank then holds the whole scored batch ([`crate::shard`]):
//! the advantages (and, with `whiten_rewards`, the rewards) are whitened over the GLOBAL
//! batch, where TRL 1.12 whitens each process's rows on their own, so a run's numbers do not
//! depend on how many processes share it. The mini-batch permutations run over the global
//! batch; each rank trains its own slice of every global mini-batch, each micro-batch's loss
//! divided by `gradient_accumulation_steps * processes`, and the summed gradients of policy
//! and value model (one trained module) make the same AdamW step on every rank. N ranks thus
//! train as one process with `gradient_accumulation_steps` N times larger (same micro-batches,
//! same updates), except at the last rollout batch of a pass, where (as TRL under accelerate)
//! each update takes one micro-batch per rank.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use trl_core::Result;
use trl_core::model::{CausalLm, SequenceClassifier};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::collective::{Collective, world};
use trl_core::train::gather::all_gather_f64;
use trl_core::train::sampler::torch_randperm;
use trl_core::train::schedule::LrSchedule;
use trl_core::train::{
    Method, PreparedStep, RepeatSampler, Sampler, StepContext, StepMetrics, TrainingArguments,
};

use crate::config::{BatchSizes, PpoConfig};
use crate::data::PromptExample;
use crate::loss::LossSettings;
use crate::model::{PolicyAdapter, PolicyAndValue};
use crate::order::RecordedOrders;
use crate::rollout::{ResponseSource, Rollout, RolloutModels, RolloutSettings, step_seed};
use crate::shard::{RolloutShard, global_rollout};
use crate::stats::{rollout_metrics, unbiased_var};
use crate::update::{MicroBatchOutput, UpdateSettings, micro_batch_loss};

/// The per-micro-batch statistics TRL averages over its stats tensors.
const STAT_NAMES: [&str; 7] = [
    "policy/approxkl_avg",
    "policy/clipfrac_avg",
    "loss/policy_avg",
    "loss/value_avg",
    "val/clipfrac_avg",
    "policy/entropy_avg",
    "val/ratio",
];

/// One micro-batch: rows of a shared rollout.
#[derive(Debug, Clone)]
pub struct PpoBatch {
    pub rollout: Arc<Rollout>,
    /// Row indices into the rollout.
    pub rows: Vec<usize>,
    /// The rollout's metrics, carried by the step's first micro-batch only.
    pub rollout_metrics: Vec<(String, f64)>,
    /// The step's last micro-batch reports `val/ratio_var` over the step's micro-batches.
    pub last_of_step: bool,
    /// Statistics slots TRL averages over but never fills (its stats tensors are
    /// `num_ppo_epochs x num_mini_batches x gradient_accumulation_steps`, while a mini-batch
    /// holds only `gradient_accumulation_steps / num_mini_batches` micro-batches): that many
    /// zeros are logged with the last micro-batch so the means and the ratio variance match.
    pub empty_slots: usize,
}

/// What the method is built from besides the config.
pub struct PpoParts {
    pub tokenizer: Tokenizer,
    /// Frozen reference policy (TRL: the SFT model).
    pub reference: CausalLm,
    /// Frozen reward model.
    pub reward: SequenceClassifier,
    pub source: Box<dyn ResponseSource>,
    pub rollout: RolloutSettings,
    /// The run's LR schedule, for TRL's `lr` metric.
    pub schedule: LrSchedule,
    /// The policy's LoRA adapter (`--use_peft`): saved and resumed as a peft folder.
    pub adapter: Option<PolicyAdapter>,
}

/// TRL 1.12's PPOTrainer semantics on the training loop.
pub struct PpoMethod {
    config: PpoConfig,
    sizes: BatchSizes,
    seed: u64,
    tokenizer: Tokenizer,
    reference: CausalLm,
    reward: SequenceClassifier,
    source: Box<dyn ResponseSource>,
    rollout: RolloutSettings,
    schedule: LrSchedule,
    adapter: Option<PolicyAdapter>,
    started: Instant,
    /// Mini-batch permutations to replay instead of drawing them (replay tests).
    recorded_orders: Option<RecordedOrders>,
    /// `ratio.mean()` of every micro-batch of the current step (for `val/ratio_var`).
    ratios: RefCell<Vec<f64>>,
    /// The processes sharing every rollout batch.
    world: &'static dyn Collective,
}

impl PpoMethod {
    /// A method for `config` under `args`; reference and reward lose their autodiff state here.
    pub fn new(
        config: PpoConfig,
        sizes: BatchSizes,
        args: &TrainingArguments,
        parts: PpoParts,
    ) -> Result<Self> {
        config.validate()?;
        let world = world();
        if sizes.processes != world.size() {
            return Err(trl_core::Error::Config {
                path: "ppo".into(),
                message: format!(
                    "batch sizes computed for {} processes, but {} run",
                    sizes.processes,
                    world.size()
                ),
            });
        }
        Ok(PpoMethod {
            config,
            sizes,
            seed: args.seed,
            tokenizer: parts.tokenizer,
            reference: parts.reference.no_grad().valid(),
            reward: parts.reward.no_grad().valid(),
            source: parts.source,
            rollout: parts.rollout,
            schedule: parts.schedule,
            adapter: parts.adapter,
            started: Instant::now(),
            recorded_orders: None,
            ratios: RefCell::new(Vec::new()),
            world,
        })
    }

    /// Replays another trainer's mini-batch permutations instead of drawing seeded ones.
    pub fn with_recorded_orders(mut self, orders: RecordedOrders) -> Self {
        self.recorded_orders = Some(orders);
        self
    }

    /// The frozen reference and reward model (no autodiff state: `valid()` copies).
    pub fn frozen_models(&self) -> (&CausalLm, &SequenceClassifier) {
        (&self.reference, &self.reward)
    }

    /// Row indices (into the global rollout) of this rank's micro-batches of a step, in TRL's
    /// order: per PPO epoch a fresh permutation of the global batch (seeded by the run's seed,
    /// the step and the epoch), cut into global mini-batches; rank `r` takes the `r`-th
    /// `mini_batch_size` rows of each, cut into micro-batches.
    pub fn micro_batch_rows(&self, step: u64, queries: &[Vec<u32>]) -> Result<Vec<Vec<usize>>> {
        let s = self.sizes;
        let mine =
            self.world.rank() * s.mini_batch_size..(self.world.rank() + 1) * s.mini_batch_size;
        let mut out = Vec::new();
        for epoch in 0..self.config.num_ppo_epochs {
            let order = match &self.recorded_orders {
                Some(recorded) => recorded.order(step, epoch, queries)?,
                None => {
                    torch_randperm(s.batch_size(), step_seed(self.seed, step, 1 + epoch as u64))
                }
            };
            for mini in order.chunks(s.mini_batch_size * s.processes) {
                let share = &mini[mine.start.min(mini.len())..mine.end.min(mini.len())];
                out.extend(share.chunks(s.micro_batch_size).map(<[usize]>::to_vec));
            }
        }
        Ok(out)
    }

    /// The scored global rollout batch of `step` and its queries ([`global_rollout`]).
    fn rollout_for(
        &mut self,
        current: &PolicyAndValue,
        queries: Vec<Vec<u32>>,
        step: u64,
    ) -> Result<(Vec<Vec<u32>>, Rollout)> {
        let models = RolloutModels {
            policy: &current.policy,
            reference: &self.reference,
            value: &current.value,
            reward: &self.reward,
        };
        let shard = RolloutShard::new(self.world, self.sizes.micro_batch_size);
        let source = self.source.as_mut();
        global_rollout(&shard, source, &models, queries, step, &self.rollout)
    }

    /// `gradient_accumulation_steps`: micro-batches per rollout batch and PPO epoch.
    fn accumulation(&self) -> usize {
        (self.sizes.local_batch_size / self.sizes.micro_batch_size.max(1)).max(1)
    }

    /// Whether rollout batch `step` is the last of a pass over the data. accelerate then syncs
    /// on every micro-batch (`GradientState.end_of_dataloader` stays set while the cycled
    /// dataloader waits after its last batch), so TRL steps AdamW once per micro-batch, each
    /// loss still divided by `gradient_accumulation_steps`.
    fn ends_pass(&self, step: u64) -> bool {
        (step + 1).is_multiple_of(self.sizes.batches_per_pass.max(1) as u64)
    }

    /// `num_ppo_epochs * num_mini_batches * gradient_accumulation_steps - micro_batches`.
    fn empty_slots(&self, micro_batches: usize) -> usize {
        let s = self.sizes;
        let accumulation = s.local_batch_size / s.micro_batch_size.max(1);
        (self.config.num_ppo_epochs * self.config.num_mini_batches * accumulation)
            .saturating_sub(micro_batches)
    }

    fn step_metrics(&self, rollout: &Rollout, step: u64) -> Vec<(String, f64)> {
        let episode = (step + 1) * self.sizes.batch_size() as u64;
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut metrics = vec![("eps".to_string(), (episode as f64 / elapsed).floor())];
        metrics.extend(rollout_metrics(rollout, self.rollout.eos_token_id));
        metrics.push(("lr".into(), self.schedule.lr_at(step)));
        metrics.push(("episode".into(), episode as f64));
        metrics
    }

    /// Prints the first rows of a rollout, `num_sample_generations` times over the run.
    fn print_samples(&self, rollout: &Rollout, step: u64) -> Result<()> {
        if self.config.num_sample_generations == 0 || !self.world.is_main() {
            return Ok(());
        }
        let freq =
            (self.sizes.num_total_batches / self.config.num_sample_generations).max(1) as u64;
        if !step.is_multiple_of(freq) {
            return Ok(());
        }
        for r in 0..rollout.query_responses.len().min(2) {
            let query = &rollout.query_responses[r][..rollout.context_length];
            let query: Vec<u32> = query
                .iter()
                .copied()
                .filter(|&t| t != self.rollout.pad_token_id)
                .collect();
            eprintln!(
                "sample (step {}): query {:?} | response {:?} | score {:.4}",
                step + 1,
                self.tokenizer.decode(&query, true)?,
                self.tokenizer.decode(rollout.response(r), false)?,
                rollout.scores[r]
            );
        }
        Ok(())
    }
}

impl Method for PpoMethod {
    type Model = PolicyAndValue;
    type Example = PromptExample;
    type Batch = PpoBatch;

    /// TRL's dataloader: shuffled each pass, incomplete batches dropped.
    fn sampler(&self, args: &TrainingArguments) -> Sampler {
        Sampler::Repeat(RepeatSampler {
            mini_repeat_count: 1,
            batch_size: self.sizes.batch_size(),
            repeat_count: 1,
            shuffle: true,
            seed: args.seed,
        })
    }

    fn prepare(
        &mut self,
        model: &PolicyAndValue,
        micro_batches: &[Vec<&PromptExample>],
        ctx: &StepContext,
    ) -> Result<PreparedStep<PpoBatch>> {
        let queries: Vec<Vec<u32>> = micro_batches
            .iter()
            .flatten()
            .map(|e| e.prompt_ids.clone())
            .collect();
        let (queries, rollout) = self.rollout_for(&model.valid(), queries, ctx.step)?;
        let rollout = Arc::new(rollout);
        self.print_samples(&rollout, ctx.step)?;
        let mut metrics = Some(self.step_metrics(&rollout, ctx.step));
        self.ratios.borrow_mut().clear();
        let rows = self.micro_batch_rows(ctx.step, &queries)?;
        let count = rows.len();
        let batches: Vec<PpoBatch> = rows
            .into_iter()
            .enumerate()
            .map(|(i, rows)| PpoBatch {
                rollout: rollout.clone(),
                rows,
                rollout_metrics: metrics.take().unwrap_or_default(),
                last_of_step: i + 1 == count,
                empty_slots: if i + 1 == count {
                    self.empty_slots(count)
                } else {
                    0
                },
            })
            .collect();
        let per_update = if self.ends_pass(ctx.step) {
            1
        } else {
            self.accumulation()
        };
        let mut updates = Vec::new();
        let mut iter = batches.into_iter().peekable();
        while iter.peek().is_some() {
            updates.push(iter.by_ref().take(per_update).collect());
        }
        Ok(PreparedStep { updates })
    }

    /// One item per micro-batch (unused: [`Method::loss`] divides by
    /// `gradient_accumulation_steps` itself, as accelerate does even when it syncs early).
    fn items_in(&self, _batch: &PpoBatch) -> f64 {
        1.0
    }

    fn loss(
        &self,
        model: &PolicyAndValue,
        batch: &PpoBatch,
        _items: f64,
    ) -> Result<(Tensor<1>, StepMetrics)> {
        let settings = UpdateSettings {
            loss: LossSettings {
                cliprange: self.config.cliprange,
                cliprange_value: self.config.cliprange_value,
                vf_coef: self.config.vf_coef,
            },
            pad_token_id: self.rollout.pad_token_id,
            temperature: self.rollout.temperature,
        };
        let MicroBatchOutput {
            losses,
            stats,
            entropy,
            num_tokens: tokens,
        } = micro_batch_loss(model, batch, &settings)?;
        let mut metrics = StepMetrics::default();
        for (name, value) in &batch.rollout_metrics {
            metrics.push(name, *value);
        }
        let value =
            |t: &Tensor<1>| trl_core::host::scalar(t.clone().without_autodiff(), "a PPO loss");
        metrics.push("policy/approxkl_avg", stats.approxkl);
        metrics.push("policy/clipfrac_avg", stats.pg_clipfrac);
        metrics.push("loss/policy_avg", value(&losses.pg_loss)?);
        metrics.push("loss/value_avg", value(&losses.vf_loss)?);
        metrics.push("val/clipfrac_avg", stats.vf_clipfrac);
        metrics.push("policy/entropy_avg", entropy);
        metrics.push("val/ratio", stats.ratio_mean);
        self.ratios.borrow_mut().push(stats.ratio_mean);
        for _ in 0..batch.empty_slots {
            for name in STAT_NAMES {
                metrics.push(name, 0.0);
            }
            self.ratios.borrow_mut().push(0.0);
        }
        if batch.last_of_step {
            // every rank's ratios: the variance over the global step's micro-batches
            let ratios = all_gather_f64(self.world, &self.ratios.borrow());
            metrics.push("val/ratio_var", unbiased_var(&ratios));
        }
        metrics.num_tokens = tokens;
        // summed over the ranks: the gradient of N times `gradient_accumulation_steps`
        let divisor = (self.accumulation() * self.sizes.processes) as f32;
        Ok((losses.loss / divisor, metrics))
    }

    /// The number of processes: each rank's rows, and so every step, depend on it.
    fn save_state(&self, dir: &Path) -> Result<()> {
        crate::shard::save_processes(dir, self.sizes.processes)
    }

    /// Refuses a checkpoint written by a run on another number of processes.
    fn load_state(&mut self, dir: &Path, _device: &Device) -> Result<()> {
        crate::shard::check_processes(dir, self.sizes.processes)
    }

    fn save_model(&self, model: &PolicyAndValue, dir: &Path) -> Result<()> {
        model.save_as(&self.tokenizer, self.adapter.as_ref(), dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> Result<PolicyAndValue> {
        PolicyAndValue::load_as(self.adapter.as_ref(), dir, device)
    }
}
