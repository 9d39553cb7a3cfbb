//! The forward passes PPO runs over `query + response` rows, as TRL 1.12's `forward` and
//! `get_reward` do: attention on every token that is not the pad id (so a pad-valued EOS is
//! masked too), response log-probs from the logits at `context_length - 1 ..` divided by
//! `temperature + 1e-7`, and one value per response token from the score head.

use burn::tensor::{Tensor, TensorData};
use trl_core::Result;
use trl_core::logprobs::{IGNORE_INDEX, LabelLogProbs, head_label_log_probs};
use trl_core::model::{CausalLm, SequenceClassifier, TokenBatch};

/// `[rows][seq]` token ids as a batch whose attention mask is `id != pad_token_id`.
pub fn token_batch(rows: &[&[u32]], pad_token_id: u32) -> TokenBatch {
    let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.to_vec()).collect();
    let mask = ids
        .iter()
        .map(|r| r.iter().map(|&t| i64::from(t != pad_token_id)).collect())
        .collect();
    TokenBatch::new(ids, mask)
}

/// Log-probs `[rows, response_length]` of the response tokens (columns `context_length..`)
/// at `temperature`, with the statistics of each position's distribution (entropy).
pub fn response_logprobs(
    policy: &CausalLm,
    batch: &TokenBatch,
    context_length: usize,
    temperature: f64,
) -> LabelLogProbs {
    let [_, seq] = batch.dims();
    let start = context_length - 1;
    // [rows, seq - start, hidden]: position start + j predicts response token j
    let hidden = policy
        .decoder()
        .forward(batch)
        .narrow(1, start, seq - start);
    let labels: Vec<Vec<i64>> = batch
        .input_ids
        .iter()
        .map(|row| {
            std::iter::once(IGNORE_INDEX)
                .chain(row[context_length..].iter().map(|&t| i64::from(t)))
                .collect()
        })
        .collect();
    head_label_log_probs(policy, hidden, &labels, temperature + 1e-7)
}

/// Per-token scores `[rows, response_length]` read before each response token (TRL's
/// `full_value[:, context_length - 1 : -1]`).
pub fn response_values(
    model: &SequenceClassifier,
    batch: &TokenBatch,
    context_length: usize,
) -> Tensor<2> {
    let [rows, seq] = batch.dims();
    let width = seq - context_length;
    model
        .forward_tokens(batch)
        .narrow(1, context_length - 1, width)
        .reshape([rows, width])
}

/// The reward model's score of each row at column `context_length + sequence_length` (TRL's
/// `get_reward`: the last real token of the truncated response).
pub fn scores_at(
    reward: &SequenceClassifier,
    batch: &TokenBatch,
    context_length: usize,
    sequence_lengths: &[i64],
) -> Result<Vec<f32>> {
    let [rows, seq] = batch.dims();
    let all = host_matrix(reward.forward_tokens(batch).reshape([rows, seq]))?;
    Ok(all
        .iter()
        .zip(sequence_lengths)
        .map(|(row, &len)| row[(context_length as i64 + len) as usize])
        .collect())
}

/// A `[rows, cols]` tensor as host rows.
pub fn host_matrix(values: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [rows, cols] = values.dims();
    let flat = trl_core::host::f32_values(values, "a PPO rollout tensor")?;
    Ok((0..rows)
        .map(|r| flat[r * cols..(r + 1) * cols].to_vec())
        .collect())
}

/// Host rows as a `[rows, cols]` tensor on `device`.
pub fn matrix_tensor(rows: &[&[f32]], device: &burn::tensor::Device) -> Tensor<2> {
    let cols = rows.first().map_or(0, |r| r.len());
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), cols]), device)
}
