//! One rollout batch, as the first half of TRL 1.12's `PPOTrainer.train()` loop body builds
//! it (`ppo_trainer.py` l.697-798): responses sampled from the policy, the policy's and the
//! reference's log-probs, value estimates, reward-model scores of the truncated responses,
//! then the KL-shaped rewards, advantages and returns ([`crate::gae`]). Everything here runs
//! without autodiff.

use trl_core::Result;
use trl_core::generate::{GenerationOptions, generate};
use trl_core::model::{CausalLm, SequenceClassifier};

use crate::forward::{host_matrix, response_logprobs, response_values, scores_at, token_batch};
use crate::gae::{RewardSettings, RolloutInputs, RolloutTargets, rollout_targets};
use crate::response::{
    apply_missing_eos_penalty, contains_eos, sequence_lengths, truncate_response,
};

/// Where responses come from: the policy's sampling, or (replay tests) recorded ones.
pub trait ResponseSource: Send {
    /// One response per query (token ids, no padding) for rollout batch `step`; query `i` is
    /// row `first_row + i` of the (global) rollout batch.
    fn respond(
        &mut self,
        policy: &CausalLm,
        queries: &[Vec<u32>],
        step: u64,
        first_row: u64,
    ) -> Result<Vec<Vec<u32>>>;
}

/// The policy samples with `options` (TRL: `max_new_tokens = response_length`, temperature
/// `+ 1e-7`, no top-k, top-p 1); each rollout batch gets its own seed from the run's seed and
/// its number, so a resumed run draws the same responses, and each row its own stream of it
/// (by its global row number), so data-parallel ranks draw what one process would.
pub struct PolicySampler {
    pub options: GenerationOptions,
}

impl ResponseSource for PolicySampler {
    fn respond(
        &mut self,
        policy: &CausalLm,
        queries: &[Vec<u32>],
        step: u64,
        first_row: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let options = GenerationOptions {
            seed: step_seed(self.options.seed, step, 0),
            first_sequence: first_row,
            ..self.options.clone()
        };
        let completions = generate(policy, queries, &options, None, &mut |_, _| {})?;
        Ok(completions.into_iter().map(|c| c.token_ids).collect())
    }
}

/// Recorded `(query, response)` pairs, one list per rollout batch (replaying another
/// trainer's rollouts): each query gets the response recorded for the same prompt ids, so the
/// order the prompts arrive in does not matter.
pub struct Recorded {
    pub batches: Vec<Vec<(Vec<u32>, Vec<u32>)>>,
}

impl ResponseSource for Recorded {
    fn respond(
        &mut self,
        _policy: &CausalLm,
        queries: &[Vec<u32>],
        step: u64,
        _first_row: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let missing = |message: String| trl_core::Error::Config {
            path: "ppo".into(),
            message,
        };
        let batch = self
            .batches
            .get(step as usize)
            .ok_or_else(|| missing(format!("no recorded responses for rollout batch {step}")))?;
        queries
            .iter()
            .map(|q| {
                batch
                    .iter()
                    .find(|(recorded, _)| recorded == q)
                    .map(|(_, response)| response.clone())
                    .ok_or_else(|| {
                        missing(format!(
                            "rollout batch {step}: no recorded response for query {q:?}"
                        ))
                    })
            })
            .collect()
    }
}

/// A seed for stream `stream` of rollout batch `step` (see `derived_seed`).
pub fn step_seed(seed: u64, step: u64, stream: u64) -> u64 {
    trl_core::train::sampler::derived_seed(seed, step, stream)
}

/// The frozen and current models a rollout reads, all without autodiff.
pub struct RolloutModels<'a> {
    pub policy: &'a CausalLm,
    pub reference: &'a CausalLm,
    pub value: &'a SequenceClassifier,
    pub reward: &'a SequenceClassifier,
}

/// The token settings and PPOConfig keys a rollout needs.
#[derive(Debug, Clone)]
pub struct RolloutSettings {
    pub pad_token_id: u32,
    /// The tokenizer's EOS (missing-EOS penalty, `val/num_eos_tokens`).
    pub eos_token_id: Option<u32>,
    /// Truncation point (`stop_token` / `stop_token_id`).
    pub stop_token_id: Option<u32>,
    pub temperature: f64,
    pub missing_eos_penalty: Option<f64>,
    /// Rows per no-grad forward (`local_rollout_forward_batch_size`).
    pub forward_batch_size: usize,
    pub rewards: RewardSettings,
}

/// A scored rollout batch and its training targets.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Width of the left-padded query block.
    pub context_length: usize,
    /// `[rows][context_length + response_length]`: left-padded query, raw response, pads.
    pub query_responses: Vec<Vec<u32>>,
    /// Scores after the missing-EOS penalty.
    pub scores: Vec<f32>,
    pub targets: RolloutTargets,
}

impl Rollout {
    /// The response block of row `r`.
    pub fn response(&self, r: usize) -> &[u32] {
        &self.query_responses[r][self.context_length..]
    }
}

/// Left-pads `queries` and appends `responses` right-padded to the longest.
pub fn query_responses(
    queries: &[Vec<u32>],
    responses: &[Vec<u32>],
    pad: u32,
) -> (usize, Vec<Vec<u32>>) {
    let context = queries.iter().map(Vec::len).max().unwrap_or(0);
    let width = responses.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let rows = padded_rows(queries, responses, pad, context, width);
    (context, rows)
}

/// `[rows][context + width]`: each query left-padded to `context`, its response right-padded
/// to `width` (both at least the longest; data-parallel ranks pass the global maxima, so a
/// row is laid out as in one process holding the whole batch).
pub fn padded_rows(
    queries: &[Vec<u32>],
    responses: &[Vec<u32>],
    pad: u32,
    context: usize,
    width: usize,
) -> Vec<Vec<u32>> {
    queries
        .iter()
        .zip(responses)
        .map(|(q, r)| {
            let mut row = vec![pad; context.saturating_sub(q.len())];
            row.extend(q);
            row.extend(r);
            row.resize(context + width, pad);
            row
        })
        .collect()
}

/// Scores `responses` to `queries` and computes the training targets.
pub fn score_rollout(
    models: &RolloutModels,
    queries: &[Vec<u32>],
    responses: &[Vec<u32>],
    settings: &RolloutSettings,
) -> Result<Rollout> {
    let (context, query_responses) = query_responses(queries, responses, settings.pad_token_id);
    let inputs = rollout_inputs(models, &query_responses, context, settings)?;
    finish_rollout(context, query_responses, inputs, settings)
}

/// The per-token log-probs, values, scores and lengths of `query_responses` (`[rows][context
/// + response width]`, queries left-padded to `context`), without the targets.
pub fn rollout_inputs(
    models: &RolloutModels,
    query_responses: &[Vec<u32>],
    context: usize,
    settings: &RolloutSettings,
) -> Result<RolloutInputs> {
    let pad = settings.pad_token_id;
    let (mut logprobs, mut ref_logprobs, mut values, mut scores, mut lengths) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut post_all = Vec::new();
    for chunk in query_responses.chunks(settings.forward_batch_size.max(1)) {
        let rows: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let batch = token_batch(&rows, pad);
        let t = settings.temperature;
        logprobs.extend(host_matrix(
            response_logprobs(models.policy, &batch, context, t).logps,
        )?);
        ref_logprobs.extend(host_matrix(
            response_logprobs(models.reference, &batch, context, t).logps,
        )?);
        let responses: Vec<Vec<u32>> = chunk.iter().map(|r| r[context..].to_vec()).collect();
        let post = match settings.stop_token_id {
            Some(stop) => truncate_response(stop, pad, &responses),
            None => responses,
        };
        let chunk_lengths = sequence_lengths(&post, pad);
        values.extend(host_matrix(response_values(models.value, &batch, context))?);
        let post_rows: Vec<Vec<u32>> = chunk
            .iter()
            .zip(&post)
            .map(|(qr, p)| [&qr[..context], p].concat())
            .collect();
        let post_refs: Vec<&[u32]> = post_rows.iter().map(Vec::as_slice).collect();
        scores.extend(scores_at(
            models.reward,
            &token_batch(&post_refs, pad),
            context,
            &chunk_lengths,
        )?);
        lengths.extend(chunk_lengths);
        post_all.extend(post);
    }
    apply_missing_eos_penalty(
        &mut scores,
        &contains_eos(&post_all, settings.eos_token_id),
        settings.missing_eos_penalty,
    );
    Ok(RolloutInputs {
        logprobs,
        ref_logprobs,
        values,
        scores,
        sequence_lengths: lengths,
    })
}

/// The rollout of `query_responses` scored as `inputs`, with its training targets (the
/// whitening runs over every row given: under data parallelism, the global batch).
pub fn finish_rollout(
    context: usize,
    query_responses: Vec<Vec<u32>>,
    inputs: RolloutInputs,
    settings: &RolloutSettings,
) -> Result<Rollout> {
    let scores = inputs.scores.clone();
    let targets = rollout_targets(inputs, &settings.rewards)?;
    Ok(Rollout {
        context_length: context,
        query_responses,
        scores,
        targets,
    })
}
