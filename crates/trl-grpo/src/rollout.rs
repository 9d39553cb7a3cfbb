//! One generation batch: completions for its prompts, their masks and the completion-length
//! metrics TRL logs (`GRPOTrainer._generate`), kept row by row so the batch can be shuffled,
//! split into micro-batches, and written into a checkpoint.

use serde::{Deserialize, Serialize};
use trl_core::Result;
use trl_core::generate::{GenerationOptions, generate};
use trl_core::model::CausalLm;
use trl_core::train::StepMetrics;
use trl_core::train::sampler::torch_randperm;

/// One completion of a generation batch, with what the loss needs about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRow {
    /// The prompt's tokens.
    pub prompt_ids: Vec<u32>,
    /// The completion up to and including its first end-of-sequence id.
    pub completion_ids: Vec<u32>,
    /// Whether the loss (and the forward's attention) covers the completion: false for a
    /// truncated completion under `mask_truncated_completions`.
    pub trained: bool,
    /// The completion's advantage.
    pub advantage: f64,
    /// Per-token log-probs of the completion under the policy at generation time, when the
    /// update is off-policy (`num_iterations > 1` or `steps_per_generation` out of step).
    pub old_logps: Option<Vec<f32>>,
    /// Per-token log-probs under the frozen reference (`beta != 0`).
    pub ref_logps: Option<Vec<f32>>,
}

impl RolloutRow {
    /// Tokens the loss counts for this row (TRL's `completion_mask` sum).
    pub fn loss_tokens(&self) -> usize {
        if self.trained {
            self.completion_ids.len()
        } else {
            0
        }
    }
}

/// A micro-batch of rollout rows: what GRPO's loss runs on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RolloutBatch {
    pub rows: Vec<RolloutRow>,
    /// Loss tokens of the whole generation batch (TRL's `num_items_in_batch`).
    pub generation_tokens: f64,
    /// Metrics of the generation (rewards, lengths), logged once: only the first
    /// micro-batch cut from a fresh generation carries them.
    pub generation_metrics: Vec<(String, f64)>,
    /// Prompt + completion tokens of the generation batch, counted once (`num_tokens`).
    pub generation_input_tokens: f64,
}

/// Where completions come from: the policy's own sampling, or (replay tests) recorded ones.
pub trait CompletionSource: Send {
    /// Completion ids (each up to and including its first EOS) for every prompt row, in
    /// order; `generation` counts the generation batches of the run from 0, `first_row` is
    /// the index of `prompts[0]` in the global generation batch (a data-parallel rank's share
    /// starts at `rank * rows`; 0 in one process), so row `i` samples as global row
    /// `first_row + i` whatever the number of processes.
    fn complete(
        &mut self,
        model: &CausalLm,
        prompts: &[Vec<u32>],
        generation: u64,
        first_row: u64,
    ) -> Result<Vec<Vec<u32>>>;

    /// Completions for eval batch `batch` of the evaluation after `step` optimizer steps
    /// (TRL's eval mode; `first_row` as in [`CompletionSource::complete`]). By default [`CompletionSource::complete`] with a generation number
    /// of its own (high bit set, never a training batch's), so evaluation draws from seeds
    /// training never uses and leaves the training trajectory unchanged.
    fn complete_eval(
        &mut self,
        model: &CausalLm,
        prompts: &[Vec<u32>],
        step: u64,
        batch: usize,
        first_row: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let generation = EVAL_GENERATIONS | (step << 24) | batch as u64;
        self.complete(model, prompts, generation, first_row)
    }

    /// The order the `rows` of generation batch `generation` are trained in (TRL shuffles
    /// each generation batch before cutting it into micro-batches): by default a permutation
    /// seeded by the run's `seed` and the batch number, so a resumed run repeats it.
    fn order(&mut self, rows: usize, generation: u64, seed: u64) -> Vec<usize> {
        torch_randperm(rows, generation_seed(seed ^ 0x5EED, generation))
    }
}

/// The high bit marks an eval batch's generation number (see
/// [`CompletionSource::complete_eval`]).
const EVAL_GENERATIONS: u64 = 1 << 63;

/// The policy samples with `options`; each generation batch gets its own seed, derived from
/// the run's seed and the batch's number, so a resumed run draws the same completions.
pub struct PolicySampler {
    pub options: GenerationOptions,
}

impl CompletionSource for PolicySampler {
    fn complete(
        &mut self,
        model: &CausalLm,
        prompts: &[Vec<u32>],
        generation: u64,
        first_row: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let options = GenerationOptions {
            seed: generation_seed(self.options.seed, generation),
            first_sequence: first_row,
            num_return_sequences: 1,
            ..self.options.clone()
        };
        let completions = generate(model, prompts, &options, None, &mut |_, _| {})?;
        Ok(completions.into_iter().map(|c| c.token_ids).collect())
    }
}

/// A seed per generation batch, from the run's seed and the batch number.
pub fn generation_seed(seed: u64, generation: u64) -> u64 {
    trl_core::train::sampler::derived_seed(seed, generation, 0)
}

/// Whether a completion ran out of room: its last token is neither an end-of-sequence id
/// nor the pad id (TRL's `is_truncated`).
pub fn is_truncated(completion: &[u32], eos_and_pad: &[u32]) -> bool {
    completion
        .last()
        .is_none_or(|last| !eos_and_pad.contains(last))
}

/// TRL's completion-length metrics of one generation batch.
pub fn completion_length_metrics(completions: &[Vec<u32>], eos_and_pad: &[u32]) -> StepMetrics {
    let lengths: Vec<f64> = completions.iter().map(|c| c.len() as f64).collect();
    let truncated: Vec<bool> = completions
        .iter()
        .map(|c| is_truncated(c, eos_and_pad))
        .collect();
    length_metrics(&lengths, &truncated)
}

/// [`completion_length_metrics`] from each completion's length and whether it was
/// truncated (what data-parallel ranks gather: TRL's `agg_completion_lengths`,
/// `agg_is_truncated`).
pub fn length_metrics(lengths: &[f64], truncated: &[bool]) -> StepMetrics {
    let mut terminated: Vec<f64> = lengths
        .iter()
        .zip(truncated)
        .filter(|(_, t)| !**t)
        .map(|(l, _)| *l)
        .collect();
    if terminated.is_empty() {
        terminated.push(0.0);
    }
    let mut metrics = StepMetrics::default();
    let (mean, min, max) = mean_min_max(lengths);
    metrics.push("completions/mean_length", mean);
    metrics.push("completions/min_length", min);
    metrics.push("completions/max_length", max);
    let clipped = truncated.iter().filter(|t| **t).count() as f64;
    metrics.push(
        "completions/clipped_ratio",
        clipped / truncated.len().max(1) as f64,
    );
    let (mean, min, max) = mean_min_max(&terminated);
    metrics.push("completions/mean_terminated_length", mean);
    metrics.push("completions/min_terminated_length", min);
    metrics.push("completions/max_terminated_length", max);
    metrics
}

fn mean_min_max(values: &[f64]) -> (f64, f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(metrics: &StepMetrics, name: &str) -> f64 {
        metrics
            .values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap()
    }

    #[test]
    fn length_metrics_separate_terminated_from_clipped() {
        // eos = 9: rows 0 and 2 ended, row 1 ran out of room
        let completions = vec![vec![1, 9], vec![1, 2, 3, 4], vec![5, 6, 9]];
        let m = completion_length_metrics(&completions, &[9, 0]);
        assert_eq!(value(&m, "completions/mean_length"), 3.0);
        assert_eq!(value(&m, "completions/max_length"), 4.0);
        assert!((value(&m, "completions/clipped_ratio") - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(value(&m, "completions/mean_terminated_length"), 2.5);
        assert_eq!(value(&m, "completions/max_terminated_length"), 3.0);
    }

    #[test]
    fn all_clipped_reports_zero_terminated_length() {
        let m = completion_length_metrics(&[vec![1, 2]], &[9]);
        assert_eq!(value(&m, "completions/min_terminated_length"), 0.0);
    }

    #[test]
    fn generation_seeds_differ_per_batch_and_repeat_per_seed() {
        assert_ne!(generation_seed(42, 0), generation_seed(42, 1));
        assert_eq!(generation_seed(42, 3), generation_seed(42, 3));
    }
}
