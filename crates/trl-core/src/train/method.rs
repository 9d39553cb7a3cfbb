//! What a method supplies to the training loop ([`super::train`]).
//!
//! One shape serves offline and online methods. Each optimizer step the loop hands the
//! method the examples of its micro-batches (in the order of the method's [`Sampler`]);
//! [`Method::prepare`] turns them into batches: collation for SFT, DPO, KTO and reward
//! modeling; generation and scoring for online methods, which may keep a buffer across steps
//! and ask for several optimizer updates per step (PPO's epochs over mini-batches). The loop
//! then normalises, runs forward and backward per batch, clips, steps AdamW, and calls
//! [`Method::after_step`]. Method state that changes during training (TR-DPO's synced
//! reference, a rollout buffer) is written into every checkpoint and restored on resume.
//!
//! More than one trained model (PPO's policy and value) is one [`Method::Model`] holding
//! both: one AdamW keeps separate moments per parameter, as TRL's `PolicyAndValueWrapper`
//! trains both under one optimizer.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::args::TrainingArguments;
use super::data_order::Sampler;
use super::metrics::StepMetrics;
use crate::{Error, Result};

/// Where the loop is when it asks a method to prepare a step.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// The optimizer step being prepared (0-based; `global_step` before it runs).
    pub step: u64,
    /// Optimizer steps of the whole run.
    pub total_steps: u64,
    /// The device the trained model lives on.
    pub device: &'a Device,
}

/// What a method's evaluation sees besides the batch: where the run is.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// Optimizer steps done when the evaluation runs.
    pub step: u64,
    /// Tokens trained on so far (TRL's `num_tokens`, which SFT logs in eval too).
    pub num_tokens: f64,
    /// The device the model lives on.
    pub device: &'a Device,
    /// The eval batch's index within this evaluation (0-based; an online method seeds its
    /// eval generation with it and `step`).
    pub batch: usize,
}

/// The batches of one optimizer step: usually one update made of its micro-batches; an
/// online method may ask for several updates, each its own AdamW step at the step's LR.
#[derive(Debug)]
pub struct PreparedStep<B> {
    /// `updates[u]` = the micro-batches whose gradients are accumulated for update `u`.
    pub updates: Vec<Vec<B>>,
}

impl<B> PreparedStep<B> {
    /// One update over `batches` (what every offline method does).
    pub fn single(batches: Vec<B>) -> Self {
        PreparedStep {
            updates: vec![batches],
        }
    }
}

/// A training method plugged into the loop. `Send`, with examples `Sync`, because the loop
/// runs each step on a worker of the rayon pool the kernels use (see `trainer.rs`).
pub trait Method: Send {
    /// The trained module (a causal LM, a sequence classifier, policy + value...).
    type Model: Module;
    /// A training example, as the data preparation produced it.
    type Example: Sync;
    /// A micro-batch ready for the loss (collated tensors, generated completions, rewards).
    type Batch;

    /// The order examples are drawn in; by default the HF Trainer's (`train_sampling_strategy`).
    fn sampler(&self, args: &TrainingArguments) -> Sampler {
        Sampler::from_args(args)
    }

    /// Examples per micro-batch the loop hands to [`Method::prepare`] (the HF dataloader's
    /// batch size): `per_device_train_batch_size`, except for GRPO-style methods whose
    /// dataloader yields a whole generation batch (`per_device_train_batch_size *
    /// steps_per_generation`) at every accumulation step. Epochs are counted in these batches.
    fn loader_batch_size(&self, args: &TrainingArguments) -> usize {
        args.per_device_train_batch_size
    }

    /// Turns the examples of one optimizer step's micro-batches into batches (`model` is the
    /// current policy, for online methods that generate with it).
    fn prepare(
        &mut self,
        model: &Self::Model,
        micro_batches: &[Vec<&Self::Example>],
        ctx: &StepContext,
    ) -> Result<PreparedStep<Self::Batch>>;

    /// The loss items of a batch (label tokens for token losses, rows for sequence losses);
    /// the loop sums them over an update and passes the sum to [`Method::loss`], as
    /// transformers normalises with `num_items_in_batch`.
    fn items_in(&self, batch: &Self::Batch) -> f64;

    /// The loss of one batch, already divided by `items_in_update`, and its metrics.
    fn loss(
        &self,
        model: &Self::Model,
        batch: &Self::Batch,
        items_in_update: f64,
    ) -> Result<(Tensor<1>, StepMetrics)>;

    /// Called after every optimizer step with the updated model (e.g. to sync a reference
    /// model); `step` is the number of steps done.
    fn after_step(&mut self, _model: &Self::Model, _step: u64) -> Result<()> {
        Ok(())
    }

    /// Writes the model (and tokenizer) in HF layout into `dir`.
    fn save_model(&self, model: &Self::Model, dir: &Path) -> Result<()>;

    /// Reads a model written by [`Method::save_model`] (for resuming).
    fn load_model(&self, dir: &Path, device: &Device) -> Result<Self::Model>;

    /// Writes the method's own changing state into checkpoint folder `dir`.
    fn save_state(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// With several processes, called on every rank but 0 once rank 0 has written checkpoint
    /// folder `dir`: a method whose state differs between ranks (GRPO's rollout buffer holds
    /// each rank's own completions) writes this rank's part there; [`Method::load_state`]
    /// then reads it back on the same rank.
    fn save_rank_state(&self, _dir: &Path, _rank: usize) -> Result<()> {
        Ok(())
    }

    /// Restores what [`Method::save_state`] wrote, when resuming from `dir`.
    fn load_state(&mut self, _dir: &Path, _device: &Device) -> Result<()> {
        Ok(())
    }

    /// Whether [`Method::eval_batch`] is implemented; the loop refuses `eval_strategy` and
    /// `eval_on_start` up front for a method that says no.
    fn supports_eval(&self) -> bool {
        false
    }

    /// The order the eval dataloader visits the eval examples in, cut into
    /// `per_device_eval_batch_size` batches: the file order by default (the HF Trainer's
    /// sequential eval sampler); GRPO/RLOO: TRL's `RepeatSampler` (shuffled with `seed`, each
    /// prompt `num_generations_eval` times in a row). Evaluated as its first epoch.
    fn eval_sampler(&self) -> Sampler {
        Sampler::Sequential
    }

    /// The model evaluation runs: the trained model with its parameters marked `no_grad`,
    /// so its forward records no autodiff graph (as reference models run).
    fn eval_model(&self, model: &Self::Model) -> Self::Model {
        model.clone().no_grad()
    }

    /// One evaluation batch (`per_device_eval_batch_size` examples, in dataset order) through
    /// `model` (from [`Method::eval_model`]): the batch's loss as TRL computes it in eval
    /// mode (normalised by the batch's own items, `num_items_in_batch=None`) and the method's
    /// metrics with TRL's names (the loop averages them over batches and adds `eval_`).
    fn eval_batch(
        &mut self,
        _model: &Self::Model,
        _examples: &[&Self::Example],
        _ctx: &EvalContext,
    ) -> Result<(f64, StepMetrics)> {
        Err(eval_unsupported())
    }
}

/// The error a method without evaluation gives when asked to evaluate.
pub fn eval_unsupported() -> Error {
    Error::Config {
        path: "--eval_strategy".into(),
        message: "this method does not support evaluation yet: leave eval_strategy at `no` \
                  and eval_on_start at false"
            .into(),
    }
}
